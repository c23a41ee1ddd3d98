//! When an object is looked at again: after a reconcile (Ready, stalled, progressing),
//! after a failure (per-object exponential backoff, held through early triggers; a
//! rate-limited token's own time), and the polls of what is never watched.

use std::collections::HashMap;
use std::time::Duration;

use super::error::{error_reason, is_waiting, rate_limited_for};
use super::{Context, Error};
use crate::cloudflare::ApiError;

/// An object whose reconciles fail: how often in a row, the generation they failed
/// for, and when the next attempt is due.
pub(super) struct Failing {
    pub(super) count: u32,
    generation: Option<i64>,
    until: tokio::time::Instant,
}

impl Context {
    pub(super) fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failing>> {
        crate::lock(&self.failures)
    }

    /// How long an object that keeps failing still waits before its next attempt, when
    /// a trigger other than a spec change (the periodic resync, a watched change)
    /// comes early: the backoff holds through a Cloudflare outage.
    pub(super) fn backing_off(&self, key: &str, generation: Option<i64>) -> Option<Duration> {
        let failures = self.failures();
        let f = failures.get(key)?;
        let now = tokio::time::Instant::now();
        (f.generation == generation && now < f.until).then(|| f.until - now)
    }
}

/// What comes after a reconcile of either kind, counted in the metrics: a terminal
/// Cloudflare error or a stall waits for a change, another error backs off, Ready
/// comes back at the resync, anything else after `progress`.
pub(super) fn next_action(
    ctx: &Context,
    key: &str,
    ready: bool,
    stalled: bool,
    error: Option<ApiError>,
    progress: Duration,
) -> Result<kube::runtime::controller::Action, Error> {
    use kube::runtime::controller::Action;
    ctx.metrics.set_ready(key, Some(ready));
    if let Some(e) = error {
        if e.is_terminal() {
            ctx.metrics
                .reconciliations
                .with_label_values(&["stalled"])
                .inc();
            return Ok(Action::await_change());
        }
        return Err(Error::Cloudflare(e));
    }
    ctx.failures().remove(key);
    let (result, action) = if ready {
        ("ready", Action::requeue(jittered(ctx.settings.resync)))
    } else if stalled {
        ("stalled", Action::await_change())
    } else {
        ("progressing", Action::requeue(progress))
    };
    ctx.metrics
        .reconciliations
        .with_label_values(&[result])
        .inc();
    Ok(action)
}

/// Per-object exponential backoff: 2ⁿ seconds (jittered), at most 5 minutes; early
/// triggers of the same generation wait it out too ([`Context::backing_off`]). A
/// rate-limited token is the exception: its object comes back when the token may send
/// again (the time its status names), neither sooner nor on the backoff's schedule.
pub(super) fn backoff(
    ctx: &Context,
    key: &str,
    generation: Option<i64>,
    error: &Error,
) -> kube::runtime::controller::Action {
    if is_waiting(error) {
        // A cleanup waiting for something to go (an asynchronous delete) is no failure:
        // looked at again soon, with no growing backoff.
        return kube::runtime::controller::Action::requeue(jittered(WAITING_POLL));
    }
    let mut failures = ctx.failures();
    let previous = failures
        .get(key)
        .filter(|f| f.generation == generation)
        .map(|f| f.count);
    let (count, delay) = match rate_limited_for(error) {
        // Not the object's failure: the count stays; a little late, never early.
        Some(wait) => (
            previous.unwrap_or(0),
            wait + Duration::from_millis(fastrand::u64(0..1000)),
        ),
        None => {
            let count = previous.map_or(1, |c| c.saturating_add(1));
            let delay = jittered(Duration::from_secs(1u64 << count.min(8)).min(MAX_BACKOFF));
            (count, delay)
        }
    };
    failures.insert(
        key.to_string(),
        Failing {
            count,
            generation,
            until: tokio::time::Instant::now() + delay,
        },
    );
    let reason = error_reason(error);
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[reason])
        .inc();
    tracing::warn!(object = %key, error = %error, reason, retry_in_s = delay.as_secs(), "reconcile failed");
    kube::runtime::controller::Action::requeue(delay)
}

/// How often a Ready object that reads Secrets (a Worker's `secrets`, a container's
/// `env[].valueFrom`) reads them again: Secrets are never watched.
pub(super) const SECRET_POLL: Duration = Duration::from_secs(60);
/// How often a Ready CloudflareWorker whose code is a ConfigMap reads it again:
/// ConfigMaps are read by name, never watched (least privilege, deploy/base/rbac.yaml).
pub(super) const CONFIG_MAP_POLL: Duration = Duration::from_secs(15);

/// How often a cleanup that waits (for Cloudflare to finish deleting an application,
/// or for the containers of a Worker) looks again.
pub(super) const WAITING_POLL: Duration = Duration::from_secs(3);

/// The longest wait between two attempts of a failing object.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A duration with ±10% jitter.
pub(super) fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.9 + fastrand::f64() * 0.2)
}

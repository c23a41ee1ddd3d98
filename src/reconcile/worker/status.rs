//! A CloudflareWorker's status: kstatus conditions (`Ready`, `Reconciling`, `Stalled`)
//! plus what the script list shows. Ready only when the script carries the desired
//! upload, which holds every class that names the Worker.

use super::model::{DesiredWorker, RecordedTags};
use super::plan::ObservedWorker;
use crate::cloudflare::ApiError;
use crate::reconcile::plan::{Blocked, Plan};
use crate::reconcile::reason::Reason;
use crate::reconcile::status::condition_since;
use crate::spec::CloudflareWorkerStatus;

/// Everything the status is derived from.
pub struct WorkerStatusInput<'a> {
    pub generation: Option<i64>,
    pub script_name: &'a str,
    pub desired: Option<&'a DesiredWorker>,
    pub observed: Option<&'a ObservedWorker>,
    /// The plan against the observation after acting (or what blocked resolving).
    pub remaining: Option<&'a Plan>,
    pub error: Option<&'a ApiError>,
}

pub fn derive(
    previous: Option<&CloudflareWorkerStatus>,
    input: &WorkerStatusInput<'_>,
    now: jiff::Timestamp,
) -> CloudflareWorkerStatus {
    let blocked = input.remaining.and_then(|p| p.blocked.as_ref());
    // Keeping the record on the script is bookkeeping, not a difference.
    let converged = input.error.is_none()
        && input.remaining.is_some_and(super::reach::only_records)
        && input.observed.is_some_and(|o| o.script.is_some());
    let stalled = match (input.error, blocked) {
        (Some(e), _) if e.is_terminal() => Some((e.reason(), e.to_string())),
        (_, Some(Blocked::Refused { reason, message })) => Some((reason.as_str(), message.clone())),
        _ => None,
    };
    let script = input.observed.and_then(|o| o.script.as_ref());
    let recorded = script.map(RecordedTags::read);
    let (reason, message) = if converged {
        let classes = recorded
            .as_ref()
            .map(|r| r.containers.join(", "))
            .unwrap_or_default();
        (
            Reason::Ready.as_str(),
            if classes.is_empty() {
                format!("Worker script {} is uploaded", input.script_name)
            } else {
                format!(
                    "Worker script {} is uploaded with containers {classes}",
                    input.script_name
                )
            },
        )
    } else if let Some((r, m)) = &stalled {
        (*r, m.clone())
    } else if let Some(e) = input.error {
        (e.reason(), e.to_string())
    } else if let Some(b) = blocked {
        (b.reason().as_str(), b.message().to_string())
    } else {
        (
            Reason::Uploading.as_str(),
            "the script differs from the spec".to_string(),
        )
    };
    let (url, routes, domains) = match input.observed {
        Some(o) => {
            super::reach::status_of(input.script_name, input.desired.map(|d| &d.reach), &o.reach)
        }
        // Not observed: what was recorded stays recorded.
        None => (
            previous.and_then(|p| p.url.clone()),
            previous.map(|p| p.routes.clone()).unwrap_or_default(),
            previous.map(|p| p.domains.clone()).unwrap_or_default(),
        ),
    };
    let prev = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let cond = |kind: &str, ok: bool, r: &str, m: &str| {
        condition_since(prev, kind, ok, r, m, input.generation, now)
    };
    let conditions = vec![
        cond("Ready", converged, reason, &message),
        match &stalled {
            Some((r, m)) => cond("Stalled", true, r, m),
            None => cond(
                "Stalled",
                false,
                Reason::NotStalled.as_str(),
                "no terminal error",
            ),
        },
        if converged || stalled.is_some() {
            cond(
                "Reconciling",
                false,
                Reason::Idle.as_str(),
                "nothing left to do",
            )
        } else {
            cond("Reconciling", true, reason, &message)
        },
    ];
    CloudflareWorkerStatus {
        observed_generation: input.generation,
        protected_secret: previous.and_then(|p| p.protected_secret.clone()),
        last_handled_reconcile_at: previous.and_then(|p| p.last_handled_reconcile_at.clone()),
        conditions,
        script_name: Some(input.script_name.to_string()),
        migration_tag: script
            .and_then(|s| s.migration_tag.clone())
            .or_else(|| previous.and_then(|p| p.migration_tag.clone())),
        upload_hash: recorded
            .as_ref()
            .and_then(|r| r.hashes.as_ref())
            .map(|h| h.combined())
            .or_else(|| {
                input
                    .desired
                    .filter(|_| converged)
                    .map(|d| d.hashes.combined())
            }),
        upload_etag: script
            .filter(|_| converged)
            .and_then(|s| s.etag.clone())
            .or_else(|| previous.and_then(|p| p.upload_etag.clone())),
        containers: recorded.map(|r| r.containers).unwrap_or_default(),
        drift: previous
            .filter(|p| p.observed_generation == input.generation)
            .map(|p| p.drift.clone())
            .unwrap_or_default(),
        pending_adoption: None,
        url,
        routes,
        domains,
    }
}

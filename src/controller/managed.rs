//! The one controller wrapper every managed kind goes through: finalizer, credentials
//! and their protection, pull credentials, a refusal written to status, the reconcile
//! through the core, Events and logs, status, what comes next, cleanup and the error
//! policy. What differs between kinds (the inputs a kind reads from Kubernetes, its
//! reconcile, the words of its Events, what its cleanup waits for) is behind
//! [`ManagedKind`], implemented in [`super::container`] and [`super::worker`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::credentials::{
    CredentialsOwner, SecretProblem, credentials, protect_secret, pull_credentials,
    release_previous_secret, secret_still_used,
};
use super::{Context, Error};
use crate::cloudflare::ApiError;
use crate::reconcile::plan::Change;
use crate::reconcile::reason::Reason;
use crate::reconcile::status::is_true;
use crate::reconcile::{DeleteOutcome, Outcome, Reconciler};
use crate::spec::{ReconcileRequest, SecretRef};

/// What the wrapper needs of one kind flaredock manages.
pub trait ManagedKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + ReconcileRequest
    + Send
    + Sync
    + 'static
{
    type Status: Clone + Send + Sync;
    type Outcome: Outcome + Send + Sync;

    /// What the drift Event says drifted.
    const DRIFT_LEAD: &'static str;

    /// The object's name in logs (`namespace/name`).
    fn log_key(&self) -> String;
    /// The key of the object's metrics and backoff.
    fn metric_key(&self) -> String;
    fn credentials_owner(&self) -> CredentialsOwner<'_>;
    fn current_status(&self) -> Option<&Self::Status>;
    fn conditions(status: &Self::Status) -> &[Condition];
    /// The credentials Secret the status says is protected.
    fn protected_secret(status: &Self::Status) -> Option<&str>;
    /// The Secret with pull credentials for the object's image or bundle, and the key
    /// they are kept under.
    fn pull_secret(&self) -> (String, Option<&SecretRef>);
    /// The status of one problem that stops the reconcile before Cloudflare (Stalled).
    fn problem_status(&self, reason: Reason, message: &str) -> Self::Status;
    fn write_status(
        ctx: &Context,
        obj: &Self,
        status: &Self::Status,
    ) -> impl Future<Output = Result<(), kube::Error>> + Send;

    /// Reads what the kind needs from Kubernetes, then reconciles through the core.
    /// `Ok(Err(problem))`: an input could not be had (refused or transient).
    fn run(
        ctx: &Context,
        obj: &Self,
        reconciler: &Reconciler,
    ) -> impl Future<Output = Result<Result<Self::Outcome, SecretProblem>, Error>> + Send;
    fn outcome_status(outcome: &Self::Outcome) -> &Self::Status;
    fn drift(outcome: &Self::Outcome) -> &[Change];
    fn take_error(outcome: Self::Outcome) -> Option<ApiError>;
    /// The reconcile was dropped at its deadline.
    fn timed_out(outcome: &Self::Outcome) -> bool;
    /// How soon an object that is neither Ready nor Stalled is looked at again.
    fn progress_poll(ctx: &Context) -> Duration;
    /// Reads Secrets (never watched): a Ready object reads them again soon.
    fn reads_secrets(&self) -> bool;
    /// Reads a ConfigMap (never watched: least privilege gives `get` only): Ready or
    /// Stalled, it is read again within CONFIG_MAP_POLL (an edit is uploaded, or fixes
    /// what stalls it).
    fn reads_config_map(&self) -> bool {
        false
    }
    /// The reason of the Event of a new stall.
    fn stall_event(_outcome: &Self::Outcome) -> &'static str {
        "Refused"
    }
    /// What the kind reports besides the common Events (after `run`, before the
    /// status is written).
    fn report_more(
        _ctx: &Context,
        _obj: &Self,
        _previous: Option<&Self::Status>,
        _outcome: &Self::Outcome,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// What has to go before the object's resources are deleted (`Err(Waiting)`).
    fn before_cleanup(ctx: &Context, obj: &Self) -> impl Future<Output = Result<(), Error>> + Send;
    /// `deletionPolicy: Orphan`: nothing is deleted at Cloudflare.
    fn orphans(&self) -> bool;
    fn delete(
        obj: &Self,
        reconciler: &Reconciler,
    ) -> impl Future<Output = Result<DeleteOutcome, ApiError>> + Send;
    /// The Event of a finished or waiting delete, if it says anything.
    fn delete_event(&self, outcome: &DeleteOutcome) -> Option<(EventType, &'static str, String)>;
    /// Forgets the object's metrics once it is gone.
    fn forget(&self, ctx: &Context) {
        ctx.metrics.set_ready(&self.metric_key(), None);
    }
}

/// The kube-runtime entry point of a kind.
pub async fn reconcile<K: ManagedKind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = obj.metric_key();
    super::with_finalizer(
        obj,
        ctx,
        key,
        |o, c| bounded(c.clone(), apply::<K>(o, c)),
        |o, c| bounded(c.clone(), cleanup::<K>(o, c)),
    )
    .await
}

/// What a reconcile may take beyond its core's deadline: the Kubernetes reads before
/// it and the status write after it.
const KUBERNETES_SLACK: Duration = Duration::from_secs(30);

/// Bounds a whole apply or cleanup (Kubernetes calls included): past the reconcile's
/// deadline and the slack, it is dropped and retried with backoff, its slot freed.
/// (The core's own deadline comes first and says so in status.)
async fn bounded(
    ctx: Arc<Context>,
    work: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let limit = ctx.settings.reconcile_timeout + KUBERNETES_SLACK;
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or(Err(Error::TimedOut(limit)))
}

/// Per-object exponential backoff: 2ⁿ seconds, at most 5 minutes.
pub fn error_policy<K: ManagedKind>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    super::backoff(&ctx, &obj.metric_key(), obj.meta().generation, error)
}

async fn apply<K: ManagedKind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (account_id, token) = match credentials(&obj.credentials_owner(), &ctx).await {
        Ok(c) => c,
        Err(problem) => return refuse(&ctx, obj.as_ref(), problem).await,
    };
    protect_secret(&ctx, &obj.credentials_owner(), true).await?;
    let previous_secret = obj.current_status().and_then(K::protected_secret);
    release_previous_secret(&ctx, &obj.credentials_owner(), previous_secret).await?;
    let account = ctx.account(&account_id, &token).await?;
    let reconciler = &account.reconciler;
    if obj.reconcile_requested() {
        // Asked to reconcile now: from a fresh read of the account, not the cache.
        reconciler.view.invalidate().await;
    }
    let ns = obj.meta().namespace.as_deref().unwrap_or("default");
    let (pull_key, pull_ref) = obj.pull_secret();
    match pull_credentials(ns, pull_ref, &ctx).await {
        Ok(pull) => reconciler.images.set_pull_credentials(&pull_key, pull),
        Err(problem) => return refuse(&ctx, obj.as_ref(), problem).await,
    }
    let outcome = match K::run(&ctx, &obj, reconciler).await? {
        Ok(o) => o,
        Err(problem) => return refuse(&ctx, obj.as_ref(), problem).await,
    };
    let previous = obj.current_status();
    report(&ctx, obj.as_ref(), previous, &outcome).await;
    K::report_more(&ctx, &obj, previous, &outcome).await;
    K::write_status(&ctx, &obj, K::outcome_status(&outcome)).await?;
    let key = obj.metric_key();
    if K::timed_out(&outcome) {
        // Its status says so; the slot is free and the object comes back after the
        // backoff.
        ctx.metrics.set_ready(&key, Some(false));
        return Err(Error::TimedOut(ctx.settings.reconcile_timeout));
    }
    if (outcome.suspended() || outcome.awaiting_approval()) && outcome.error().is_none() {
        // Observed again at the resync; a spec change (suspend: false) comes at once.
        ctx.metrics.set_ready(&key, Some(false));
        return Ok(Action::requeue(super::jittered(ctx.settings.resync)));
    }
    let (ready, stalled) = (outcome.ready(), outcome.stalled());
    let action = super::next_action(
        &ctx,
        &key,
        ready,
        stalled,
        K::take_error(outcome),
        K::progress_poll(&ctx),
    )?;
    if (ready || stalled) && obj.reads_config_map() {
        return Ok(Action::requeue(super::jittered(super::CONFIG_MAP_POLL)));
    }
    // Secrets are not watched: a Ready object that reads some reads them again within
    // SECRET_POLL (Cloudflare sees a change only when a value changed).
    if ready && obj.reads_secrets() {
        let soon = ctx.settings.resync.min(super::SECRET_POLL);
        return Ok(Action::requeue(super::jittered(soon)));
    }
    Ok(action)
}

/// A problem before anything reached Cloudflare. A refusal is written to the status
/// (Stalled, with its reason; an Event the first time) and looked at again after its
/// delay (nothing watches Secrets); a transient failure backs off.
async fn refuse<K: ManagedKind>(
    ctx: &Context,
    obj: &K,
    problem: SecretProblem,
) -> Result<Action, Error> {
    let retry = problem.retry_after();
    let (reason, message) = match problem {
        SecretProblem::Transient(message) => return Err(Error::Credentials(message)),
        SecretProblem::Refused { reason, message } => (reason, message),
    };
    let status = obj.problem_status(reason, &message);
    let was_stalled = obj.current_status().is_some_and(|s| {
        K::conditions(s)
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True" && reason.is(&c.reason))
    });
    K::write_status(ctx, obj, &status).await?;
    if !was_stalled {
        ctx.publish(obj, EventType::Warning, reason.as_str(), message.clone())
            .await;
    }
    tracing::warn!(object = %obj.log_key(), %message, "{reason}");
    ctx.metrics
        .reconciliations
        .with_label_values(&["stalled"])
        .inc();
    ctx.metrics.set_ready(&obj.metric_key(), Some(false));
    Ok(Action::requeue(super::jittered(retry)))
}

/// Events and logs for what a reconcile did: drift corrected, each change, a new stall,
/// the error.
async fn report<K: ManagedKind>(
    ctx: &Context,
    obj: &K,
    previous: Option<&K::Status>,
    outcome: &K::Outcome,
) {
    let key = obj.log_key();
    super::publish_changes(
        ctx,
        obj,
        &key,
        K::drift(outcome),
        outcome.events(),
        K::DRIFT_LEAD,
    )
    .await;
    let stalled_before = previous.is_some_and(|s| is_true(K::conditions(s), "Stalled"));
    if outcome.stalled() && !stalled_before {
        let message = outcome
            .conditions()
            .iter()
            .find(|c| c.type_ == "Stalled")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        tracing::warn!(object = %key, %message, "refused");
        ctx.publish(obj, EventType::Warning, K::stall_event(outcome), message)
            .await;
    }
    if let Some(e) = outcome.error() {
        tracing::warn!(object = %key, error = %e, "reconcile failed");
    }
}

/// Deletes what the object made at Cloudflare as its policy says, once what has to
/// go first is gone; the finalizer stays while the delete waits.
async fn cleanup<K: ManagedKind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    K::before_cleanup(&ctx, &obj).await?;
    let deleted = match credentials(&obj.credentials_owner(), &ctx).await {
        Ok((account_id, token)) => {
            let account = ctx.account(&account_id, &token).await?;
            // The object's pull credentials are not kept past it.
            let (pull_key, _) = obj.pull_secret();
            account
                .reconciler
                .images
                .set_pull_credentials(&pull_key, None);
            K::delete(&obj, &account.reconciler).await
        }
        Err(problem) if obj.orphans() => {
            tracing::info!(object = %obj.log_key(), %problem, "deletionPolicy Orphan: nothing to delete");
            Ok(DeleteOutcome::Orphaned(vec![]))
        }
        Err(problem) => {
            let message = problem.to_string();
            ctx.publish(
                obj.as_ref(),
                EventType::Warning,
                "CleanupBlocked",
                message.clone(),
            )
            .await;
            return Err(Error::Credentials(message));
        }
    };
    match deleted {
        Ok(outcome) => {
            let event = obj.delete_event(&outcome);
            if let Some((type_, reason, message)) = event {
                ctx.publish(obj.as_ref(), type_, reason, message.clone())
                    .await;
                // Cloudflare deletes asynchronously: the finalizer stays until a fresh
                // read no longer lists what goes (looked at again in a few seconds).
                if !outcome.finished() {
                    return Err(Error::Waiting(message));
                }
            } else if !outcome.finished() {
                return Err(Error::Waiting(format!("{outcome:?}")));
            }
        }
        Err(e) => {
            ctx.publish(
                obj.as_ref(),
                EventType::Warning,
                "DeleteFailed",
                e.to_string(),
            )
            .await;
            return Err(Error::Cloudflare(e));
        }
    }
    if !secret_still_used(&ctx, &obj.credentials_owner()) {
        protect_secret(&ctx, &obj.credentials_owner(), false).await?;
    }
    obj.forget(&ctx);
    ctx.failures().remove(&obj.metric_key());
    ctx.metrics
        .reconciliations
        .with_label_values(&["deleted"])
        .inc();
    Ok(Action::await_change())
}

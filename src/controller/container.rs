//! The CloudflareContainer controller: finalizer, credentials, reconcile through the
//! core, status, Events and drift reports, cleanup.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::credentials::{
    CredentialsOwner, SecretProblem, credentials, protect_secret, pull_credentials, read_secrets,
    release_previous_secret, secret_still_used,
};
use super::status::{container_problem, write_container_status};
use super::{Context, Error};
use crate::reconcile::reason::Reason;
use crate::reconcile::status::{condition, is_stalled};
use crate::reconcile::{DeleteOutcome, ReconcileOutcome};
use crate::spec::ReconcileRequest;
use crate::spec::{CloudflareContainer, CloudflareContainerStatus, RolloutPhase};

fn owner(obj: &CloudflareContainer) -> CredentialsOwner<'_> {
    CredentialsOwner {
        namespace: obj.namespace_or_default(),
        uid: obj.metadata.uid.as_deref(),
        secret: obj.spec.credentials_secret_ref.as_ref(),
    }
}

/// Reconciles one object (the kube-runtime entry point).
pub async fn reconcile(obj: Arc<CloudflareContainer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = obj.key();
    super::with_finalizer(obj, ctx, key, apply, cleanup).await
}

async fn apply(obj: Arc<CloudflareContainer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = obj.key();
    let (account_id, token) = match credentials(&owner(&obj), &ctx).await {
        Ok(c) => c,
        Err(problem) => return refuse(&ctx, &obj, problem).await,
    };
    protect_secret(&ctx, &owner(&obj), true).await?;
    let previous_secret = obj
        .status
        .as_ref()
        .and_then(|s| s.protected_secret.as_deref());
    release_previous_secret(&ctx, &owner(&obj), previous_secret).await?;
    let account = ctx.account(&account_id, &token).await?;
    let reconciler = &account.reconciler;
    if obj.reconcile_requested() {
        // Asked to reconcile now: from a fresh read of the account, not the cache.
        reconciler.view.invalidate().await;
    }
    let pull_ref = obj
        .spec
        .image
        .as_ref()
        .and_then(|i| i.pull_secret_ref.as_ref());
    match pull_credentials(obj.namespace_or_default(), pull_ref, &ctx).await {
        Ok(pull) => reconciler.images.set_pull_credentials(&key, pull),
        Err(problem) => return refuse(&ctx, &obj, problem).await,
    }
    let previous = obj.status.clone();
    if previous.as_ref().is_some_and(|s| {
        s.rollout
            .as_ref()
            .is_some_and(|r| r.status == RolloutPhase::Progressing)
    }) {
        reconciler
            .view
            .expire_applications(ctx.settings.progress_poll)
            .await;
    }
    let mut peers = ctx.peers();
    // The Secrets `env` reads, by name in the object's namespace (never listed).
    let env_secrets = obj
        .spec
        .env
        .iter()
        .filter_map(|e| e.value_from.as_ref())
        .map(|f| f.secret_key_ref.name.as_str());
    match read_secrets(&ctx, obj.namespace_or_default(), env_secrets, "spec.env").await {
        Ok(secrets) => peers.data.secrets = secrets,
        Err(problem) => return refuse(&ctx, &obj, problem).await,
    }
    let outcome = reconciler.reconcile(&obj, previous.as_ref(), &peers).await;
    report(&ctx, &obj, previous.as_ref(), &outcome).await;
    let rolling = outcome
        .status
        .rollout
        .as_ref()
        .is_some_and(|r| r.status == RolloutPhase::Progressing);
    ctx.metrics.set_rollout(&key, rolling);
    write_container_status(&ctx, &obj, &outcome.status).await?;
    if (outcome.suspended() || outcome.awaiting_approval()) && outcome.error.is_none() {
        // Observed again at the resync; a spec change (suspend: false) comes at once.
        ctx.metrics.set_ready(&key, Some(false));
        return Ok(Action::requeue(super::jittered(ctx.settings.resync)));
    }
    let ready = outcome.ready();
    let action = super::next_action(
        &ctx,
        &key,
        ready,
        outcome.stalled(),
        outcome.error,
        ctx.settings.progress_poll,
    )?;
    // Secrets are not watched: a Ready container whose environment reads some reads
    // them again within SECRET_POLL (from the cached account view: Cloudflare sees a
    // rollout only when a value changed).
    if ready && obj.spec.env.iter().any(|e| e.value_from.is_some()) {
        let soon = ctx.settings.resync.min(super::SECRET_POLL);
        return Ok(Action::requeue(super::jittered(soon)));
    }
    Ok(action)
}

/// A Secret problem before anything reached Cloudflare. A refusal is written to the
/// status (Stalled, with its reason; an Event the first time) and looked at again
/// after its delay (nothing watches Secrets); a transient failure backs off.
async fn refuse(
    ctx: &Context,
    obj: &CloudflareContainer,
    problem: SecretProblem,
) -> Result<Action, Error> {
    let key = obj.key();
    let retry = problem.retry_after();
    let (reason, message) = match problem {
        SecretProblem::Transient(message) => return Err(Error::Credentials(message)),
        SecretProblem::Refused { reason, message } => (reason, message),
    };
    let status = container_problem(obj, reason, &message, true);
    let was_stalled = obj.status.as_ref().is_some_and(|s| {
        is_stalled(s) && condition(s, "Stalled").is_some_and(|c| reason.is(&c.reason))
    });
    write_container_status(ctx, obj, &status).await?;
    if !was_stalled {
        ctx.publish(obj, EventType::Warning, reason.as_str(), message.clone())
            .await;
    }
    tracing::warn!(object = %key, %message, "{reason}");
    ctx.metrics
        .reconciliations
        .with_label_values(&["stalled"])
        .inc();
    ctx.metrics.set_ready(&key, Some(false));
    Ok(Action::requeue(super::jittered(retry)))
}

/// Events and logs for what a reconcile did and what changed in the status.
async fn report(
    ctx: &Context,
    obj: &CloudflareContainer,
    previous: Option<&CloudflareContainerStatus>,
    outcome: &ReconcileOutcome,
) {
    let key = obj.key();
    super::publish_changes(
        ctx,
        obj,
        &key,
        &outcome.drift,
        &outcome.events,
        "Cloudflare drifted from the spec; corrected",
    )
    .await;
    let rollout_was = previous
        .and_then(|s| s.rollout.as_ref())
        .map(|r| (r.id.clone(), r.status.clone()));
    if let (Some((id, was)), Some(now)) = (rollout_was, outcome.status.rollout.as_ref())
        && was == RolloutPhase::Progressing
        && now.status == RolloutPhase::Completed
        && now.id == id
    {
        ctx.publish(
            obj,
            EventType::Normal,
            "RolloutCompleted",
            format!("rollout {id} completed"),
        )
        .await;
    }
    let stalled_before = previous.is_some_and(is_stalled);
    if outcome.stalled() && !stalled_before {
        let message = condition(&outcome.status, "Stalled")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        tracing::warn!(object = %key, %message, "refused");
        let build_failed = condition(&outcome.status, "ImageReady")
            .is_some_and(|c| Reason::BuildFailed.is(&c.reason));
        let reason = if build_failed {
            "BuildFailed"
        } else {
            "Refused"
        };
        ctx.publish(obj, EventType::Warning, reason, message).await;
    }
    if let Some(e) = &outcome.error {
        tracing::warn!(object = %key, error = %e, "reconcile failed");
    }
}

async fn cleanup(obj: Arc<CloudflareContainer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = obj.key();
    let deleted = match credentials(&owner(&obj), &ctx).await {
        Ok((account_id, token)) => {
            let account = ctx.account(&account_id, &token).await?;
            // The object's pull credentials are not kept past it.
            account.reconciler.images.set_pull_credentials(&key, None);
            account.reconciler.delete(&obj).await
        }
        Err(problem) if obj.spec.deletion_policy == crate::spec::DeletionPolicy::Orphan => {
            tracing::info!(object = %key, %problem, "deletionPolicy Orphan: nothing to delete");
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
        Ok(DeleteOutcome::Deleted(names)) => {
            if !names.is_empty() {
                ctx.publish(
                    obj.as_ref(),
                    EventType::Normal,
                    "Deleted",
                    format!("deleted application(s) {}", names.join(", ")),
                )
                .await;
            }
        }
        Ok(DeleteOutcome::Orphaned(names)) => {
            if !names.is_empty() {
                ctx.publish(
                    obj.as_ref(),
                    EventType::Normal,
                    "Orphaned",
                    format!("left application(s) {} running", names.join(", ")),
                )
                .await;
            }
        }
        // Cloudflare deletes asynchronously: the finalizer stays until a fresh read no
        // longer lists the application (looked at again in a few seconds).
        Ok(DeleteOutcome::Waiting { names, on }) => {
            let message = format!(
                "deleting application(s) {}: waiting, {on}",
                names.join(", ")
            );
            ctx.publish(obj.as_ref(), EventType::Normal, "Deleting", message.clone())
                .await;
            return Err(Error::Waiting(message));
        }
        // Not a container's outcome; nothing was deleted.
        Ok(DeleteOutcome::KeptData { .. } | DeleteOutcome::DeletedWithData { .. }) => {}
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
    if !secret_still_used(&ctx, &owner(&obj)) {
        protect_secret(&ctx, &owner(&obj), false).await?;
    }
    ctx.metrics.set_ready(&key, None);
    ctx.metrics.set_rollout(&key, false);
    ctx.failures().remove(&key);
    ctx.metrics
        .reconciliations
        .with_label_values(&["deleted"])
        .inc();
    Ok(Action::await_change())
}

/// Per-object exponential backoff: 2ⁿ seconds, at most 5 minutes.
pub fn error_policy(obj: Arc<CloudflareContainer>, error: &Error, ctx: Arc<Context>) -> Action {
    super::backoff(&ctx, &obj.key(), obj.metadata.generation, error)
}

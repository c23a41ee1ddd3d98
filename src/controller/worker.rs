//! The CloudflareWorker controller: finalizer, credentials, the code from a ConfigMap or
//! a registry and the secret values from Secrets, the container classes of the
//! CloudflareContainers that name the Worker, reconcile through the core, status,
//! Events, and cleanup that waits until no CloudflareContainer names the Worker.

use std::sync::Arc;
use std::time::Duration;

use kube::Api;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::credentials::{
    CredentialsOwner, SecretProblem, config_map_data, credentials, protect_secret,
    pull_credentials, read_config_map, read_secrets, release_previous_secret, secret_still_used,
};
use super::status::{worker_problem, write_worker_status};
use super::{Context, Error};
use crate::reconcile::worker::inputs::SourceData;
use crate::reconcile::worker::{WorkerOutcome, classes_for};
use crate::reconcile::{DeleteOutcome, Reconciler};
use crate::spec::ReconcileRequest;
use crate::spec::{CloudflareContainer, CloudflareWorker, CloudflareWorkerStatus};

fn owner(obj: &CloudflareWorker) -> CredentialsOwner<'_> {
    CredentialsOwner {
        namespace: obj.namespace_or_default(),
        uid: obj.metadata.uid.as_deref(),
        secret: obj.spec.credentials_secret_ref.as_ref(),
    }
}

/// The metrics and failure key of a Worker.
fn metric_key(obj: &CloudflareWorker) -> String {
    format!("CloudflareWorker/{}", obj.key())
}

/// Reconciles one CloudflareWorker (the kube-runtime entry point).
pub async fn reconcile_worker(
    obj: Arc<CloudflareWorker>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let key = metric_key(&obj);
    super::with_finalizer(obj, ctx, key, apply, cleanup).await
}

/// The ConfigMap and Secrets the Worker reads, from the API server. A missing one is
/// simply absent (the core says what it waits for); an unreadable one is an error.
async fn source_data(obj: &CloudflareWorker, ctx: &Context) -> Result<SourceData, SecretProblem> {
    let ns = obj.namespace_or_default();
    let mut data = SourceData::default();
    if let Some(c) = &obj.spec.source.config_map_ref
        && let Some(cm) = read_config_map(ctx, ns, &c.name).await?
    {
        data.config_maps
            .insert(format!("{ns}/{}", c.name), config_map_data(&cm));
    }
    let names = obj
        .spec
        .secrets
        .iter()
        .map(|s| s.secret_key_ref.name.as_str());
    data.secrets = read_secrets(ctx, ns, names, "spec.secrets").await?;
    Ok(data)
}

/// A Secret problem before anything reached Cloudflare. A refusal is written to the
/// status (Stalled, with its reason; an Event the first time) and looked at again
/// after its delay (nothing watches Secrets); a transient failure backs off.
async fn refuse(
    ctx: &Context,
    obj: &CloudflareWorker,
    problem: SecretProblem,
) -> Result<Action, Error> {
    let retry = problem.retry_after();
    let (reason, message) = match problem {
        SecretProblem::Transient(message) => return Err(Error::Credentials(message)),
        SecretProblem::Refused { reason, message } => (reason, message),
    };
    let status = worker_problem(obj, reason, &message, true);
    let was_stalled = obj.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == reason)
    });
    write_worker_status(ctx, obj, &status).await?;
    if !was_stalled {
        ctx.publish(obj, EventType::Warning, reason, message.clone())
            .await;
    }
    tracing::warn!(worker = %obj.key(), %message, "{reason}");
    ctx.metrics
        .reconciliations
        .with_label_values(&["stalled"])
        .inc();
    ctx.metrics.set_ready(&metric_key(obj), Some(false));
    Ok(Action::requeue(super::jittered(retry)))
}

async fn apply(obj: Arc<CloudflareWorker>, ctx: Arc<Context>) -> Result<Action, Error> {
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
        .source
        .image
        .as_ref()
        .and_then(|i| i.pull_secret_ref.as_ref());
    match pull_credentials(obj.namespace_or_default(), pull_ref, &ctx).await {
        Ok(pull) => reconciler
            .images
            .set_pull_credentials(&Reconciler::worker_pull_key(&obj), pull),
        Err(problem) => return refuse(&ctx, &obj, problem).await,
    }
    let data = match source_data(&obj, &ctx).await {
        Ok(d) => d,
        Err(problem) => return refuse(&ctx, &obj, problem).await,
    };
    let containers = ctx.containers();
    let refs: Vec<&CloudflareContainer> = containers.iter().map(|c| c.as_ref()).collect();
    let mut classes = classes_for(&obj, &refs);
    // A class of the last upload that the store no longer shows is dropped only on a
    // fresh list: a store behind a failing watch is no evidence that the container went.
    let dropped = obj.status.as_ref().is_some_and(|s| {
        s.containers
            .iter()
            .any(|c| !classes.iter().any(|k| &k.class_name == c))
    });
    if dropped {
        let api: Api<CloudflareContainer> =
            Api::namespaced(ctx.client.clone(), obj.namespace_or_default());
        let listed = api.list(&ListParams::default()).await?;
        classes = classes_for(&obj, &listed.items.iter().collect::<Vec<_>>());
    }
    let previous = obj.status.clone();
    let outcome = reconciler
        .reconcile_worker(&obj, classes, &data, previous.as_ref())
        .await;
    report(&ctx, &obj, previous.as_ref(), &outcome).await;
    write_worker_status(&ctx, &obj, &outcome.status).await?;
    // Waiting for a ConfigMap, a bundle, a registry or a Secret: the requeue brings it
    // back (none of them is watched).
    if (outcome.suspended() || outcome.awaiting_approval()) && outcome.error.is_none() {
        // Observed again at the resync; a spec change (suspend: false) comes at once.
        ctx.metrics.set_ready(&metric_key(&obj), Some(false));
        return Ok(Action::requeue(super::jittered(ctx.settings.resync)));
    }
    let (ready, stalled) = (outcome.ready(), outcome.stalled());
    let action = super::next_action(
        &ctx,
        &metric_key(&obj),
        ready,
        stalled,
        outcome.error,
        ctx.settings.progress_poll.max(Duration::from_secs(5)),
    )?;
    // Secrets are not watched: a Worker binding some reads them again within a minute
    // (Kubernetes reads only; Cloudflare sees an upload only when a value changed).
    if (ready || stalled) && obj.spec.source.config_map_ref.is_some() {
        // Nor ConfigMaps: the one it names is read again soon (an edit is uploaded, or
        // fixes what stalls it).
        return Ok(Action::requeue(super::jittered(super::CONFIG_MAP_POLL)));
    }
    if ready && !obj.spec.secrets.is_empty() {
        let soon = ctx.settings.resync.min(super::SECRET_POLL);
        return Ok(Action::requeue(super::jittered(soon)));
    }
    Ok(action)
}

/// Events and logs for what a reconcile did.
async fn report(
    ctx: &Context,
    obj: &CloudflareWorker,
    previous: Option<&CloudflareWorkerStatus>,
    outcome: &WorkerOutcome,
) {
    let key = obj.key();
    super::publish_changes(
        ctx,
        obj,
        &key,
        &outcome.drift,
        &outcome.events,
        "the Worker script differs from what flaredock uploaded (or its inputs changed); uploaded again",
    )
    .await;
    let stalled_before =
        previous.is_some_and(|s| crate::reconcile::status::is_true(&s.conditions, "Stalled"));
    if outcome.stalled() && !stalled_before {
        let message = outcome
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        tracing::warn!(worker = %key, %message, "refused");
        ctx.publish(obj, EventType::Warning, "Refused", message)
            .await;
    }
    if let Some(e) = &outcome.error {
        tracing::warn!(worker = %key, error = %e, "reconcile failed");
    }
}

/// Deletes the script as the policy says, once no CloudflareContainer of its namespace
/// binds it, by `worker.name` (this object) or `worker.scriptName` (its script), on a
/// fresh list, and no application runs on its classes (a fresh read of Cloudflare,
/// which also covers containers of other namespaces and applications being deleted).
async fn cleanup(obj: Arc<CloudflareWorker>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = obj.namespace_or_default();
    let api: Api<CloudflareContainer> = Api::namespaced(ctx.client.clone(), ns);
    let list = api.list(&ListParams::default()).await?;
    let naming: Vec<String> = list
        .items
        .iter()
        .filter(|c| {
            c.worker_object() == Some(obj.name())
                || c.spec.worker.script_name.as_deref() == Some(obj.script_name())
        })
        .map(|c| c.name().to_string())
        .collect();
    if !naming.is_empty() {
        let message = format!(
            "waiting for CloudflareContainer(s) {} that bind this Worker's script to be deleted first",
            naming.join(", ")
        );
        ctx.publish(
            obj.as_ref(),
            EventType::Normal,
            "WaitingForContainers",
            message.clone(),
        )
        .await;
        return Err(Error::Waiting(message));
    }
    let deleted = match credentials(&owner(&obj), &ctx).await {
        Ok((account_id, token)) => {
            let account = ctx.account(&account_id, &token).await?;
            account.reconciler.delete_worker(&obj).await
        }
        Err(problem) if obj.spec.deletion_policy == crate::spec::WorkerDeletionPolicy::Orphan => {
            tracing::info!(worker = %obj.key(), %problem, "deletionPolicy Orphan: nothing to delete");
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
        Ok(DeleteOutcome::Deleted(names)) if !names.is_empty() => {
            ctx.publish(
                obj.as_ref(),
                EventType::Normal,
                "Deleted",
                format!("deleted Worker script {}", names.join(", ")),
            )
            .await;
        }
        Ok(DeleteOutcome::DeletedWithData { script, classes }) => {
            ctx.publish(
                obj.as_ref(),
                EventType::Warning,
                "DeletedWithData",
                format!(
                    "deleted Worker script {script} with force=true (deletionPolicy DeleteWithData): the Durable Object namespaces of {} and all their data are destroyed",
                    classes.join(", ")
                ),
            )
            .await;
        }
        Ok(DeleteOutcome::Orphaned(names)) if !names.is_empty() => {
            ctx.publish(
                obj.as_ref(),
                EventType::Normal,
                "Orphaned",
                format!(
                    "left Worker script {} in place with its Durable Objects and their data (deletionPolicy Orphan)",
                    names.join(", ")
                ),
            )
            .await;
        }
        Ok(DeleteOutcome::KeptData { script, classes }) => {
            ctx.publish(
                obj.as_ref(),
                EventType::Warning,
                "KeptDurableObjectData",
                format!(
                    "left Worker script {script} in place: the Durable Object namespaces of {} may hold data, which deletionPolicy Delete never destroys (DeleteWithData does)",
                    classes.join(", ")
                ),
            )
            .await;
        }
        Ok(DeleteOutcome::Waiting { names, on }) => {
            let message = format!(
                "waiting for application(s) {} before deleting Worker script {}: {on}",
                names.join(", "),
                obj.script_name()
            );
            ctx.publish(
                obj.as_ref(),
                EventType::Normal,
                "WaitingForApplications",
                message.clone(),
            )
            .await;
            return Err(Error::Waiting(message));
        }
        Ok(_) => {}
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
    let key = metric_key(&obj);
    ctx.metrics.set_ready(&key, None);
    ctx.failures().remove(&key);
    ctx.metrics
        .reconciliations
        .with_label_values(&["deleted"])
        .inc();
    Ok(Action::await_change())
}

/// Per-object exponential backoff: 2ⁿ seconds, at most 5 minutes.
pub fn worker_error_policy(obj: Arc<CloudflareWorker>, error: &Error, ctx: Arc<Context>) -> Action {
    super::backoff(&ctx, &metric_key(&obj), obj.metadata.generation, error)
}

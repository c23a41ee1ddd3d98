//! The CloudflareWorker in the controller: what it reads from Kubernetes (the code from
//! a ConfigMap, the secret values from Secrets, the container classes of the
//! CloudflareContainers that name it), its reconcile through the core, the words of its
//! Events, and a cleanup that waits until no CloudflareContainer names the Worker.
//! Finalizer, credentials, status and backoff are the shared wrapper's
//! ([`super::managed`]).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::credentials::{
    CredentialsOwner, SecretProblem, config_map_data, read_config_map, read_secrets,
};
use super::managed::{self, ManagedKind};
use super::status::{worker_problem, write_worker_status};
use super::{Context, Error};
use crate::cloudflare::ApiError;
use crate::reconcile::plan::Change;
use crate::reconcile::reason::Reason;
use crate::reconcile::worker::inputs::SourceData;
use crate::reconcile::worker::{WorkerOutcome, classes_for};
use crate::reconcile::{DeleteOutcome, Reconciler};
use crate::spec::{CloudflareContainer, CloudflareWorker, CloudflareWorkerStatus, SecretRef};

/// Reconciles one CloudflareWorker (the kube-runtime entry point).
pub async fn reconcile_worker(
    obj: Arc<CloudflareWorker>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    managed::reconcile(obj, ctx).await
}

/// Per-object exponential backoff: 2ⁿ seconds, at most 5 minutes.
pub fn worker_error_policy(obj: Arc<CloudflareWorker>, error: &Error, ctx: Arc<Context>) -> Action {
    managed::error_policy(obj, error, ctx)
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

impl ManagedKind for CloudflareWorker {
    type Status = CloudflareWorkerStatus;
    type Outcome = WorkerOutcome;

    const DRIFT_LEAD: &'static str = "the Worker script differs from what flaredock uploaded (or its inputs changed); uploaded again";

    fn log_key(&self) -> String {
        self.key()
    }

    fn metric_key(&self) -> String {
        format!("CloudflareWorker/{}", self.key())
    }

    fn credentials_owner(&self) -> CredentialsOwner<'_> {
        CredentialsOwner {
            namespace: self.namespace_or_default(),
            uid: self.metadata.uid.as_deref(),
            secret: self.spec.credentials_secret_ref.as_ref(),
        }
    }

    fn current_status(&self) -> Option<&CloudflareWorkerStatus> {
        self.status.as_ref()
    }

    fn conditions(status: &CloudflareWorkerStatus) -> &[Condition] {
        &status.conditions
    }

    fn protected_secret(status: &CloudflareWorkerStatus) -> Option<&str> {
        status.protected_secret.as_deref()
    }

    fn pull_secret(&self) -> (String, Option<&SecretRef>) {
        let pull_ref = self
            .spec
            .source
            .image
            .as_ref()
            .and_then(|i| i.pull_secret_ref.as_ref());
        (Reconciler::worker_pull_key(self), pull_ref)
    }

    fn problem_status(&self, reason: Reason, message: &str) -> CloudflareWorkerStatus {
        worker_problem(self, reason, message, true)
    }

    async fn write_status(
        ctx: &Context,
        obj: &Self,
        status: &CloudflareWorkerStatus,
    ) -> Result<(), kube::Error> {
        write_worker_status(ctx, obj, status).await
    }

    async fn run(
        ctx: &Context,
        obj: &Self,
        reconciler: &Reconciler,
    ) -> Result<Result<WorkerOutcome, SecretProblem>, Error> {
        let data = match source_data(obj, ctx).await {
            Ok(d) => d,
            Err(problem) => return Ok(Err(problem)),
        };
        let containers = ctx.containers();
        let refs: Vec<&CloudflareContainer> = containers.iter().map(|c| c.as_ref()).collect();
        let mut classes = classes_for(obj, &refs);
        // A class of the last upload that the store no longer shows is dropped only on
        // a fresh list: a store behind a failing watch is no evidence that the
        // container went.
        let dropped = obj.status.as_ref().is_some_and(|s| {
            s.containers
                .iter()
                .any(|c| !classes.iter().any(|k| &k.class_name == c))
        });
        if dropped {
            let api: Api<CloudflareContainer> =
                Api::namespaced(ctx.client.clone(), obj.namespace_or_default());
            let listed = api.list(&ListParams::default()).await?;
            classes = classes_for(obj, &listed.items.iter().collect::<Vec<_>>());
        }
        Ok(Ok(reconciler
            .reconcile_worker(obj, classes, &data, obj.status.as_ref())
            .await))
    }

    fn outcome_status(outcome: &WorkerOutcome) -> &CloudflareWorkerStatus {
        &outcome.status
    }

    fn drift(outcome: &WorkerOutcome) -> &[Change] {
        &outcome.drift
    }

    fn take_error(outcome: WorkerOutcome) -> Option<ApiError> {
        outcome.error
    }

    fn timed_out(outcome: &WorkerOutcome) -> bool {
        outcome.timed_out
    }

    fn progress_poll(ctx: &Context) -> Duration {
        ctx.settings.progress_poll.max(Duration::from_secs(5))
    }

    fn reads_secrets(&self) -> bool {
        !self.spec.secrets.is_empty()
    }

    fn reads_config_map(&self) -> bool {
        self.spec.source.config_map_ref.is_some()
    }

    /// No CloudflareContainer of its namespace may bind the Worker, by `worker.name`
    /// (this object) or `worker.scriptName` (its script), on a fresh list. (That no
    /// application runs on its classes is read from Cloudflare by the delete, which
    /// also covers containers of other namespaces and applications being deleted.)
    async fn before_cleanup(ctx: &Context, obj: &Self) -> Result<(), Error> {
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
        if naming.is_empty() {
            return Ok(());
        }
        let message = format!(
            "waiting for CloudflareContainer(s) {} that bind this Worker's script to be deleted first",
            naming.join(", ")
        );
        ctx.publish(
            obj,
            EventType::Normal,
            "WaitingForContainers",
            message.clone(),
        )
        .await;
        Err(Error::Waiting(message))
    }

    fn orphans(&self) -> bool {
        self.spec.deletion_policy == crate::spec::WorkerDeletionPolicy::Orphan
    }

    async fn delete(obj: &Self, reconciler: &Reconciler) -> Result<DeleteOutcome, ApiError> {
        reconciler.delete_worker(obj).await
    }

    fn delete_event(&self, outcome: &DeleteOutcome) -> Option<(EventType, &'static str, String)> {
        match outcome {
            DeleteOutcome::Deleted(names) if !names.is_empty() => Some((
                EventType::Normal,
                "Deleted",
                format!("deleted Worker script {}", names.join(", ")),
            )),
            DeleteOutcome::DeletedWithData { script, classes } => Some((
                EventType::Warning,
                "DeletedWithData",
                format!(
                    "deleted Worker script {script} with force=true (deletionPolicy DeleteWithData): the Durable Object namespaces of {} and all their data are destroyed",
                    classes.join(", ")
                ),
            )),
            DeleteOutcome::Orphaned(names) if !names.is_empty() => Some((
                EventType::Normal,
                "Orphaned",
                format!(
                    "left Worker script {} in place with its Durable Objects and their data (deletionPolicy Orphan)",
                    names.join(", ")
                ),
            )),
            DeleteOutcome::KeptData { script, classes } => Some((
                EventType::Warning,
                "KeptDurableObjectData",
                format!(
                    "left Worker script {script} in place: the Durable Object namespaces of {} may hold data, which deletionPolicy Delete never destroys (DeleteWithData does)",
                    classes.join(", ")
                ),
            )),
            DeleteOutcome::Waiting { names, on } => Some((
                EventType::Normal,
                "WaitingForApplications",
                format!(
                    "waiting for application(s) {} before deleting Worker script {}: {on}",
                    names.join(", "),
                    self.script_name()
                ),
            )),
            _ => None,
        }
    }
}

//! The CloudflareContainer in the controller: what it reads from Kubernetes (the
//! Secrets its environment reads, the Ready peers it may promote from), its reconcile
//! through the core and the words of its Events. Finalizer, credentials, status,
//! cleanup and backoff are the shared wrapper's ([`super::managed`]).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::credentials::{CredentialsOwner, SecretProblem, read_secrets};
use super::managed::{self, ManagedKind};
use super::status::{container_problem, write_container_status};
use super::{Context, Error};
use crate::cloudflare::ApiError;
use crate::reconcile::plan::Change;
use crate::reconcile::reason::Reason;
use crate::reconcile::status::condition;
use crate::reconcile::{DeleteOutcome, ReconcileOutcome, Reconciler};
use crate::spec::{CloudflareContainer, CloudflareContainerStatus, RolloutPhase, SecretRef};

/// Reconciles one object (the kube-runtime entry point).
pub async fn reconcile(obj: Arc<CloudflareContainer>, ctx: Arc<Context>) -> Result<Action, Error> {
    managed::reconcile(obj, ctx).await
}

/// Per-object exponential backoff: 2ⁿ seconds, at most 5 minutes.
pub fn error_policy(obj: Arc<CloudflareContainer>, error: &Error, ctx: Arc<Context>) -> Action {
    managed::error_policy(obj, error, ctx)
}

fn rolling(status: Option<&CloudflareContainerStatus>) -> bool {
    status
        .and_then(|s| s.rollout.as_ref())
        .is_some_and(|r| r.status == RolloutPhase::Progressing)
}

impl ManagedKind for CloudflareContainer {
    type Status = CloudflareContainerStatus;
    type Outcome = ReconcileOutcome;

    const DRIFT_LEAD: &'static str = "Cloudflare drifted from the spec; corrected";

    fn log_key(&self) -> String {
        self.key()
    }

    fn metric_key(&self) -> String {
        self.key()
    }

    fn credentials_owner(&self) -> CredentialsOwner<'_> {
        CredentialsOwner {
            namespace: self.namespace_or_default(),
            uid: self.metadata.uid.as_deref(),
            secret: self.spec.credentials_secret_ref.as_ref(),
        }
    }

    fn current_status(&self) -> Option<&CloudflareContainerStatus> {
        self.status.as_ref()
    }

    fn conditions(status: &CloudflareContainerStatus) -> &[Condition] {
        &status.conditions
    }

    fn protected_secret(status: &CloudflareContainerStatus) -> Option<&str> {
        status.protected_secret.as_deref()
    }

    fn pull_secret(&self) -> (String, Option<&SecretRef>) {
        let pull_ref = self
            .spec
            .image
            .as_ref()
            .and_then(|i| i.pull_secret_ref.as_ref());
        (self.key(), pull_ref)
    }

    fn problem_status(&self, reason: Reason, message: &str) -> CloudflareContainerStatus {
        container_problem(self, reason, message, true)
    }

    async fn write_status(
        ctx: &Context,
        obj: &Self,
        status: &CloudflareContainerStatus,
    ) -> Result<(), kube::Error> {
        write_container_status(ctx, obj, status).await
    }

    async fn run(
        ctx: &Context,
        obj: &Self,
        reconciler: &Reconciler,
    ) -> Result<Result<ReconcileOutcome, SecretProblem>, Error> {
        let previous = obj.status.as_ref();
        if rolling(previous) {
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
        match read_secrets(ctx, obj.namespace_or_default(), env_secrets, "spec.env").await {
            Ok(secrets) => peers.data.secrets = secrets,
            Err(problem) => return Ok(Err(problem)),
        }
        Ok(Ok(reconciler.reconcile(obj, previous, &peers).await))
    }

    fn outcome_status(outcome: &ReconcileOutcome) -> &CloudflareContainerStatus {
        &outcome.status
    }

    fn drift(outcome: &ReconcileOutcome) -> &[Change] {
        &outcome.drift
    }

    fn take_error(outcome: ReconcileOutcome) -> Option<ApiError> {
        outcome.error
    }

    fn timed_out(outcome: &ReconcileOutcome) -> bool {
        outcome.timed_out
    }

    fn progress_poll(ctx: &Context) -> Duration {
        ctx.settings.progress_poll
    }

    fn reads_secrets(&self) -> bool {
        self.spec.env.iter().any(|e| e.value_from.is_some())
    }

    fn stall_event(outcome: &ReconcileOutcome) -> &'static str {
        let build_failed = condition(&outcome.status, "ImageReady")
            .is_some_and(|c| Reason::BuildFailed.is(&c.reason));
        if build_failed {
            Reason::BuildFailed.as_str()
        } else {
            "Refused"
        }
    }

    async fn report_more(
        ctx: &Context,
        obj: &Self,
        previous: Option<&CloudflareContainerStatus>,
        outcome: &ReconcileOutcome,
    ) {
        let was = previous.and_then(|s| s.rollout.as_ref());
        if let (Some(was), Some(now)) = (was, outcome.status.rollout.as_ref())
            && was.status == RolloutPhase::Progressing
            && now.status == RolloutPhase::Completed
            && now.id == was.id
        {
            ctx.publish(
                obj,
                EventType::Normal,
                "RolloutCompleted",
                format!("rollout {} completed", was.id),
            )
            .await;
        }
        ctx.metrics
            .set_rollout(&obj.key(), rolling(Some(&outcome.status)));
    }

    async fn before_cleanup(_ctx: &Context, _obj: &Self) -> Result<(), Error> {
        Ok(())
    }

    fn orphans(&self) -> bool {
        self.spec.deletion_policy == crate::spec::DeletionPolicy::Orphan
    }

    async fn delete(obj: &Self, reconciler: &Reconciler) -> Result<DeleteOutcome, ApiError> {
        reconciler.delete(obj).await
    }

    fn delete_event(&self, outcome: &DeleteOutcome) -> Option<(EventType, &'static str, String)> {
        match outcome {
            DeleteOutcome::Deleted(names) if !names.is_empty() => Some((
                EventType::Normal,
                "Deleted",
                format!("deleted application(s) {}", names.join(", ")),
            )),
            DeleteOutcome::Orphaned(names) if !names.is_empty() => Some((
                EventType::Normal,
                "Orphaned",
                format!("left application(s) {} running", names.join(", ")),
            )),
            DeleteOutcome::Waiting { names, on } => Some((
                EventType::Normal,
                "Deleting",
                format!(
                    "deleting application(s) {}: waiting, {on}",
                    names.join(", ")
                ),
            )),
            // Nothing was deleted (a Worker's outcomes are not a container's).
            _ => None,
        }
    }

    fn forget(&self, ctx: &Context) {
        ctx.metrics.set_ready(&self.key(), None);
        ctx.metrics.set_rollout(&self.key(), false);
    }
}

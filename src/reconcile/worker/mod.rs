//! CloudflareWorkers in the reconcile core: resolve the code and secrets
//! ([`inputs`]), compare the desired upload with the script list's tags ([`model`],
//! [`plan`]), upload only on a difference, derive the status ([`status`]). The
//! CloudflareContainers that name a Worker add their classes to its upload; the Worker
//! is uploaded (container-enabling the classes) before any of their applications exist.

mod delete;
pub mod inputs;
pub mod model;
pub mod plan;
pub mod status;

use crate::cloudflare::ApiError;
use crate::oci::Reference;
use crate::spec::{
    CloudflareContainer, CloudflareWorker, CloudflareWorkerStatus, ManagementPolicy,
};

use super::plan::{Blocked, Plan};
use super::{Happening, Reconciler, holds};
use inputs::{SourceData, modules_from, resolve_local, resolve_secrets};
use model::{ContainerClass, DesiredWorker, WorkerInputs};
use plan::{ObservedWorker, blocked_plan, plan_worker};
use status::WorkerStatusInput;

/// The result of one reconcile of one CloudflareWorker.
#[derive(Clone, Debug)]
pub struct WorkerOutcome {
    pub plan: Plan,
    pub status: CloudflareWorkerStatus,
    pub events: Vec<Happening>,
    /// The changes that correct drift (a Ready Worker of this generation whose script
    /// differs: changed behind flaredock's back, or its inputs changed).
    pub drift: Vec<super::plan::Change>,
    pub error: Option<ApiError>,
}

impl WorkerOutcome {
    pub fn ready(&self) -> bool {
        crate::reconcile::status::is_true(&self.status.conditions, "Ready")
    }

    pub fn stalled(&self) -> bool {
        crate::reconcile::status::is_true(&self.status.conditions, "Stalled")
    }

    /// Is this outcome waiting for an adoption's approval?
    pub fn awaiting_approval(&self) -> bool {
        self.status.pending_adoption.is_some()
    }

    /// `spec.suspend`: observed, nothing written.
    pub fn suspended(&self) -> bool {
        crate::reconcile::status::is_suspended(&self.status.conditions)
    }
}

/// The container classes the CloudflareContainers among `containers` ask of `worker`
/// (same namespace, `spec.worker.name` naming it). A container being deleted keeps its
/// class until it is gone: its application still runs on the class.
pub fn classes_for(
    worker: &CloudflareWorker,
    containers: &[&CloudflareContainer],
) -> Vec<ContainerClass> {
    let ns = worker.namespace_or_default();
    let mut out: Vec<ContainerClass> = containers
        .iter()
        .filter(|c| c.namespace_or_default() == ns && c.worker_object() == Some(worker.name()))
        .map(|c| ContainerClass {
            class_name: c.spec.class_name.clone(),
            binding_name: c.spec.worker.binding_name.clone().unwrap_or_default(),
            container: c.key(),
        })
        .collect();
    out.sort();
    out
}

fn registry_blocked(e: &crate::oci::RegistryError) -> Blocked {
    use crate::oci::RegistryError as R;
    match e {
        R::NotFound { .. } | R::Transport { .. } | R::NotLeader { .. } => Blocked::Waiting {
            reason: "BundleUnavailable".into(),
            message: e.to_string(),
        },
        _ => Blocked::Refused {
            reason: "BundleInvalid".into(),
            message: e.to_string(),
        },
    }
}

impl Reconciler {
    /// The object key under which a Worker's pull credentials are kept.
    pub fn worker_pull_key(obj: &CloudflareWorker) -> String {
        format!("CloudflareWorker/{}", obj.key())
    }

    /// The Worker's modules and secret values: inline or from a ConfigMap (in `data`),
    /// or pulled from the registry for an image source (the files of a digest, once).
    pub async fn worker_inputs(
        &self,
        obj: &CloudflareWorker,
        data: &SourceData,
    ) -> Result<WorkerInputs, Blocked> {
        if let Some(local) = resolve_local(obj, data) {
            return local;
        }
        let Some(image) = &obj.spec.source.image else {
            return Err(Blocked::Refused {
                reason: "NoSource".into(),
                message: "spec.source names no code".into(),
            });
        };
        let reference = Reference::parse(&image.reference).map_err(|e| Blocked::Refused {
            reason: "BundleInvalid".into(),
            message: e.to_string(),
        })?;
        let host = reference.api_host().unwrap_or_default().to_string();
        let creds = self
            .images
            .source_credentials(&Self::worker_pull_key(obj), &host);
        let registry = self.images.registry();
        let cached = self.bundles.lock().await.get(&image.reference).cloned();
        let files = match cached {
            Some((digest, files))
                if registry
                    .head_manifest(
                        &host,
                        &reference.repository,
                        reference.manifest_reference(),
                        creds.as_ref(),
                    )
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|m| m.digest == digest) =>
            {
                files
            }
            _ => {
                let (digest, files) =
                    crate::oci::bundle::fetch_bundle(registry, &reference, creds.as_ref())
                        .await
                        .map_err(|e| registry_blocked(&e))?;
                self.bundles
                    .lock()
                    .await
                    .insert(image.reference.clone(), (digest, files.clone()));
                files
            }
        };
        if !files.iter().any(|(n, _)| *n == image.main_module) {
            return Err(Blocked::Refused {
                reason: "MainModuleMissing".into(),
                message: format!(
                    "the bundle {} has no file {} (spec.source.image.mainModule)",
                    image.reference, image.main_module
                ),
            });
        }
        Ok(WorkerInputs {
            modules: modules_from(files),
            secrets: resolve_secrets(obj, data)?,
        })
    }

    /// The desired upload of `obj`, or what blocks it.
    pub async fn desired_worker(
        &self,
        obj: &CloudflareWorker,
        containers: Vec<ContainerClass>,
        data: &SourceData,
    ) -> Result<DesiredWorker, Blocked> {
        let inputs = self.worker_inputs(obj, data).await?;
        let key = self.view.client().token_fingerprint();
        Ok(DesiredWorker::new(
            obj,
            inputs,
            containers,
            &key,
            &self.cluster,
        ))
    }

    async fn observe_worker(&self, script: &str) -> Result<ObservedWorker, ApiError> {
        Ok(ObservedWorker {
            script: self.view.script(script).await?,
            namespaced_classes: self.view.namespaced_classes(script).await?,
        })
    }

    /// The Worker plan, without acting (what `flaredock plan` prints).
    pub async fn preview_worker(
        &self,
        obj: &CloudflareWorker,
        containers: Vec<ContainerClass>,
        data: &SourceData,
    ) -> Result<Plan, ApiError> {
        match self.desired_worker(obj, containers, data).await {
            Err(b) => Ok(blocked_plan(b)),
            Ok(desired) => {
                let observed = self.observe_worker(&desired.script_name).await?;
                Ok(plan_worker(&desired, &observed))
            }
        }
    }

    /// One full reconcile of a Worker: resolve, observe, plan, upload, observe again.
    pub async fn reconcile_worker(
        &self,
        obj: &CloudflareWorker,
        containers: Vec<ContainerClass>,
        data: &SourceData,
        previous: Option<&CloudflareWorkerStatus>,
    ) -> WorkerOutcome {
        let now = jiff::Timestamp::now();
        let script = obj.script_name().to_string();
        let status_of = |desired: Option<&DesiredWorker>,
                         observed: Option<&ObservedWorker>,
                         remaining: Option<&Plan>,
                         error: Option<&ApiError>| {
            status::derive(
                previous,
                &WorkerStatusInput {
                    generation: obj.metadata.generation,
                    script_name: &script,
                    desired,
                    observed,
                    remaining,
                    error,
                },
                now,
            )
        };
        // An approval is checked against a fresh read: the script may have been
        // uploaded again since the changes were put up for review.
        if holds::approval_offered(
            previous.and_then(|p| p.pending_adoption.as_ref()),
            obj.metadata.annotations.as_ref(),
        ) {
            self.view.invalidate_scripts().await;
        }
        let desired = match self.desired_worker(obj, containers, data).await {
            Ok(d) => d,
            Err(blocked) => {
                let plan = blocked_plan(blocked);
                // Show what the account has while the inputs are missing.
                let observed = self.observe_worker(&script).await.ok();
                return WorkerOutcome {
                    status: status_of(None, observed.as_ref(), Some(&plan), None),
                    plan,
                    events: vec![],
                    drift: vec![],
                    error: None,
                };
            }
        };
        let first = match self.observe_worker(&script).await {
            Ok(o) => o,
            Err(e) => {
                return WorkerOutcome {
                    status: status_of(Some(&desired), None, None, Some(&e)),
                    plan: Plan::default(),
                    events: vec![],
                    drift: vec![],
                    error: Some(e),
                };
            }
        };
        let mut the_plan = plan_worker(&desired, &first);
        // Suspended or observed only: the plan says what is pending, nothing is done.
        let observe_only = obj.spec.management_policy == ManagementPolicy::Observe;
        let suspend = obj.spec.suspend || observe_only;
        if suspend {
            the_plan.actions.clear();
        }
        // Taking over a script flaredock did not upload waits for approval.
        let pending_adoption = holds::gate_adoption(
            &mut the_plan,
            obj.spec.adoption_approval,
            obj.metadata.annotations.as_ref(),
            now,
        );
        // A Ready Worker of this generation whose script differs was changed behind
        // flaredock's back (or its ConfigMap, Secrets or containers changed).
        let generation = obj.metadata.generation;
        let drifted = !the_plan.actions.is_empty()
            && previous.is_some_and(|p| {
                p.observed_generation == generation
                    && crate::reconcile::status::is_true(&p.conditions, "Ready")
            });
        let mut events = Vec::new();
        let acted = self
            .act(&desired.owner, &script, &the_plan, &mut events)
            .await;
        let (observed, error) = match acted {
            Ok(()) if the_plan.actions.is_empty() => (Ok(first), None),
            Ok(()) => (self.observe_worker(&script).await, None),
            Err(e) => (Ok(first), Some(e)),
        };
        let (observed, mut error) = match observed {
            Ok(o) => (Some(o), error),
            Err(e) => (None, Some(e)),
        };
        // Cloudflare may quote the upload in an error; it carries the secret values.
        if let Some(e) = error.as_mut() {
            let values: Vec<&str> = desired
                .inputs
                .secrets
                .iter()
                .map(|s| s.value.expose())
                .collect();
            e.redact(&values);
        }
        let remaining = observed.as_ref().map(|o| plan_worker(&desired, o));
        let mut status = status_of(
            Some(&desired),
            observed.as_ref(),
            remaining.as_ref(),
            error.as_ref(),
        );
        let drift = if drifted {
            status.drift = crate::reconcile::status::drift_of(&the_plan.changes, &[], now);
            the_plan.changes.clone()
        } else {
            vec![]
        };
        if let Some(p) = pending_adoption {
            status.conditions = holds::adoption_pending(
                status.conditions,
                &p,
                &format!("Worker script {script}"),
                "cfw",
                obj.name(),
                generation,
                now,
            );
            status.pending_adoption = Some(p);
        }
        if observe_only && !obj.spec.suspend {
            let left = remaining.unwrap_or_default();
            let previous_drift = previous.map(|p| p.drift.as_slice()).unwrap_or(&[]);
            (status.conditions, status.drift) = holds::observing(
                status.conditions,
                &left,
                previous_drift,
                "the Worker script",
                generation,
                now,
            );
        } else if suspend {
            let left = remaining.unwrap_or_default();
            status.conditions =
                crate::reconcile::status::suspended(status.conditions, &left, generation, now);
        }
        WorkerOutcome {
            status,
            plan: the_plan,
            events,
            drift,
            error,
        }
    }
}

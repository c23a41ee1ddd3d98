//! A CloudflareWorker through the [`super::pipeline`]: what flaredock wants
//! is its [`model::DesiredWorker`] (the code and secrets resolved by [`inputs`], the
//! classes of the CloudflareContainers that name it), what Cloudflare has is observed
//! in `observe.rs` (the script list's tags), what to do is planned in [`plan`] (upload
//! only on a difference), and the shared actor ([`super::act`]) does it; [`status`]
//! derives its status. The Worker is uploaded (container-enabling the classes) before
//! any of their applications exist. How it is reached (workers.dev, routes, custom
//! domains, cron triggers) goes through the same steps, in [`reach`]: observed with the
//! script, planned after the upload, part of `Ready`.

pub mod bindings;
mod delete;
pub mod inputs;
pub mod model;
mod observe;
pub mod plan;
pub mod reach;
pub mod status;

use crate::cloudflare::ApiError;
use crate::oci::Reference;
use crate::spec::{CloudflareContainer, CloudflareWorker, CloudflareWorkerStatus};

use super::pipeline::{self, Pipeline, Policy, StatusInput};
use super::plan::{Blocked, Plan};
use super::reason::Reason;
use super::{Happening, Reconciled, Reconciler};
use inputs::{SourceData, modules_from, resolve_local, resolve_secrets};
use model::{ContainerClass, DesiredWorker, WorkerInputs};
use plan::{ObservedWorker, plan_worker};
use status::WorkerStatusInput;

/// The result of one reconcile of one CloudflareWorker.
pub type WorkerOutcome = Reconciled<CloudflareWorkerStatus>;

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
            reason: Reason::BundleUnavailable,
            message: e.to_string(),
        },
        _ => Blocked::Refused {
            reason: Reason::BundleInvalid,
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
                reason: Reason::NoSource,
                message: "spec.source names no code".into(),
            });
        };
        let reference = Reference::parse(&image.reference).map_err(|e| Blocked::Refused {
            reason: Reason::BundleInvalid,
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
                reason: Reason::MainModuleMissing,
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
        if let Some(message) = bindings::invalid(obj) {
            return Err(Blocked::Refused {
                reason: Reason::BindingInvalid,
                message,
            });
        }
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

    /// The Worker plan, without acting (what `flaredock plan` prints), through the
    /// pipeline's inputs, observe and plan ([`pipeline::preview`]); the object's status,
    /// when it has one, says what it made and uploaded last, as in a reconcile.
    pub async fn preview_worker(
        &self,
        obj: &CloudflareWorker,
        containers: Vec<ContainerClass>,
        data: &SourceData,
    ) -> Result<Plan, ApiError> {
        let run = WorkerRun {
            r: self,
            obj,
            containers,
            data,
            previous: obj.status.as_ref(),
            script: obj.script_name().to_string(),
            now: jiff::Timestamp::now(),
            uploaded_etag: Default::default(),
        };
        Ok(pipeline::preview(&run).await?.0)
    }

    /// One full reconcile of a Worker: resolve, observe, plan, upload, observe again.
    pub async fn reconcile_worker(
        &self,
        obj: &CloudflareWorker,
        containers: Vec<ContainerClass>,
        data: &SourceData,
        previous: Option<&CloudflareWorkerStatus>,
    ) -> WorkerOutcome {
        let run = WorkerRun {
            r: self,
            obj,
            containers,
            data,
            previous,
            script: obj.script_name().to_string(),
            now: jiff::Timestamp::now(),
            uploaded_etag: Default::default(),
        };
        pipeline::run(&run, self.deadline).await
    }
}

/// One reconcile of one CloudflareWorker.
struct WorkerRun<'a> {
    r: &'a Reconciler,
    obj: &'a CloudflareWorker,
    containers: Vec<ContainerClass>,
    data: &'a SourceData,
    previous: Option<&'a CloudflareWorkerStatus>,
    script: String,
    now: jiff::Timestamp,
    /// The etag of this run's own upload (not someone else's).
    uploaded_etag: std::sync::Mutex<Option<String>>,
}

impl WorkerRun<'_> {
    /// The etag of the version this object uploaded in this run, or saw in sync last.
    fn last_etag(&self) -> Option<String> {
        crate::lock(&self.uploaded_etag)
            .clone()
            .or_else(|| self.previous.and_then(|p| p.upload_etag.clone()))
    }

    fn observe_only(&self) -> bool {
        self.obj.spec.management_policy == crate::spec::ManagementPolicy::Observe
    }
}

impl Pipeline for WorkerRun<'_> {
    type Desired = DesiredWorker;
    type Observed = ObservedWorker;
    type Status = CloudflareWorkerStatus;
    type Hold = ();

    const OBSERVED: &'static str = "the Worker script";

    fn policy(&self) -> Policy<'_> {
        let spec = &self.obj.spec;
        Policy {
            generation: self.obj.metadata.generation,
            suspend: spec.suspend,
            management: spec.management_policy,
            adoption_approval: spec.adoption_approval,
            annotations: self.obj.metadata.annotations.as_ref(),
            resource: "cfw",
            name: self.obj.name(),
        }
    }

    fn previous(&self) -> Option<&CloudflareWorkerStatus> {
        self.previous
    }

    fn adopted(&self, _desired: &DesiredWorker) -> String {
        format!("Worker script {}", self.script)
    }

    async fn fresh_read(&self) {
        self.r.view.invalidate_scripts().await;
    }

    async fn inputs(&self) -> Result<DesiredWorker, Blocked> {
        self.r
            .desired_worker(self.obj, self.containers.clone(), self.data)
            .await
    }

    async fn observe(&self, desired: &DesiredWorker) -> Result<ObservedWorker, ApiError> {
        let recorded = reach::RecordedReach::of(self.previous);
        self.r
            .observe_worker(
                &self.script,
                Some((&desired.reach, recorded)),
                self.last_etag().as_deref(),
                self.observe_only(),
            )
            .await
    }

    async fn observe_without_inputs(&self) -> Option<ObservedWorker> {
        // The reachability too: what this object recorded it made stays recorded.
        let want = reach::DesiredReach::from_spec(self.obj);
        let recorded = reach::RecordedReach::of(self.previous);
        self.r
            .observe_worker(
                &self.script,
                Some((&want, recorded)),
                self.last_etag().as_deref(),
                self.observe_only(),
            )
            .await
            .ok()
    }

    async fn after_failed_write(&self) {
        // An upload may have half-happened: what the view says is stale.
        self.r.view.invalidate_scripts().await;
    }

    fn plan(&self, desired: &DesiredWorker, observed: &ObservedWorker) -> Plan {
        plan_worker(desired, observed)
    }

    async fn act(
        &self,
        desired: &DesiredWorker,
        plan: &Plan,
        events: &mut Vec<Happening>,
    ) -> Result<(), ApiError> {
        let done = self.r.act(&desired.owner, &self.script, plan, events).await;
        // What our upload left (the view records it from the answer, no call).
        if done.is_ok()
            && !plan.actions.is_empty()
            && let Ok(Some(info)) = self.r.view.script(&self.script).await
        {
            *crate::lock(&self.uploaded_etag) = info.etag;
        }
        done
    }

    fn secret_values<'d>(&self, desired: &'d DesiredWorker) -> Vec<&'d str> {
        desired
            .inputs
            .secrets
            .iter()
            .map(|s| s.value.expose())
            .collect()
    }

    fn status(&self, input: StatusInput<'_, Self>) -> CloudflareWorkerStatus {
        status::derive(
            self.previous,
            &WorkerStatusInput {
                generation: self.obj.metadata.generation,
                script_name: &self.script,
                desired: input.desired,
                observed: input.observed,
                remaining: input.remaining,
                error: input.error,
            },
            self.now,
        )
    }
}

//! The reconcile core, free of Kubernetes plumbing: **observe** the account (through a
//! shared cached [`view::AccountView`] and the [`images::ImageResolver`]), compute a
//! [`plan::Plan`] with a pure function, **act** on it idempotently, observe again and
//! derive the **status**. The CLI and the controller both drive [`Reconciler`].

pub mod images;
pub mod model;
pub mod plan;
pub mod status;
pub mod view;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::cloudflare::ApiError;
use crate::spec::{CloudflareContainer, CloudflareContainerStatus, DeletionPolicy};
use images::{ImageResolver, PeerImages};
use model::{Desired, Observed, ScriptState, owner_of};
use plan::{Action, Plan, plan, worker_action};
use status::StatusInput;
use view::AccountView;

/// Something flaredock changed at Cloudflare: a reason (`PascalCase`, for Kubernetes
/// Events and metrics) and a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Happening {
    pub reason: &'static str,
    pub message: String,
}

impl Happening {
    fn new(reason: &'static str, message: String) -> Self {
        Happening { reason, message }
    }
}

impl std::fmt::Display for Happening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The result of one reconcile of one object.
#[derive(Clone, Debug)]
pub struct ReconcileOutcome {
    /// The plan that was acted on.
    pub plan: Plan,
    pub status: CloudflareContainerStatus,
    /// What was changed, in order.
    pub events: Vec<Happening>,
    pub error: Option<ApiError>,
}

impl ReconcileOutcome {
    pub fn ready(&self) -> bool {
        status::is_ready(&self.status)
    }

    /// Nothing more will happen without a change of spec or credentials.
    pub fn stalled(&self) -> bool {
        status::is_stalled(&self.status)
    }
}

/// What deleting an object did.
#[derive(Clone, Debug, PartialEq)]
pub enum DeleteOutcome {
    /// These applications were deleted.
    Deleted(Vec<String>),
    /// `deletionPolicy: Orphan`: these applications were left running.
    Orphaned(Vec<String>),
}

/// Observe → plan → act → status for objects of one account.
pub struct Reconciler {
    pub view: Arc<AccountView>,
    pub images: Arc<ImageResolver>,
}

type Observation = (Observed, Option<(String, i64)>);

impl Reconciler {
    pub fn new(view: Arc<AccountView>, images: Arc<ImageResolver>) -> Self {
        Reconciler { view, images }
    }

    /// Reads what Cloudflare has for this object (mostly from the cached view), getting
    /// its image into Cloudflare's registry.
    pub async fn observe(
        &self,
        obj: &CloudflareContainer,
        desired: &Desired,
        peers: &dyn PeerImages,
    ) -> Result<Observation, ApiError> {
        let image = self.images.resolve(obj, peers).await;
        self.observe_with(image, desired).await
    }

    async fn observe_with(
        &self,
        image: model::ImageState,
        desired: &Desired,
    ) -> Result<Observation, ApiError> {
        let view = &self.view;
        let application = view.application_by_name(&desired.application_name).await?;
        let namespace = view
            .namespace(&desired.script_name, &desired.class_name)
            .await?;
        let mut progress = None;
        let mut target_configuration = None;
        if let Some(app) = &application
            && let Some(rollout_id) = &app.active_rollout_id
        {
            let versions = view.client().list_versions(&app.id).await?;
            let newest = versions.iter().max_by_key(|v| v.version);
            progress = newest.map(|v| (rollout_id.clone(), v.percentage));
            target_configuration = match view.rollout_target(rollout_id).await {
                Some(t) => Some(t),
                None => newest.map(|v| v.configuration.clone()),
            };
        }
        let owned_elsewhere = view
            .applications_owned_by(&desired.owner)
            .await?
            .into_iter()
            .filter(|a| a.name != desired.application_name)
            .collect();
        let namespace_application = match &namespace {
            Some(ns) => view
                .application_by_namespace(&ns.id)
                .await?
                .filter(|a| application.as_ref().is_none_or(|b| b.id != a.id)),
            None => None,
        };
        let script = if desired.binding_name.is_some() || namespace.is_none() {
            view.script(&desired.script_name).await?
        } else {
            ScriptState::NotRead
        };
        Ok((
            Observed {
                image,
                application,
                target_configuration,
                owned_elsewhere,
                namespace,
                namespace_application,
                script,
            },
            progress,
        ))
    }

    /// The plan for this object, without acting (what `flaredock plan` prints).
    pub async fn preview(
        &self,
        obj: &CloudflareContainer,
        peers: &dyn PeerImages,
    ) -> Result<(Plan, Observed), ApiError> {
        let desired = Desired::from_spec(obj);
        // Nothing is copied or built for a preview.
        let image = self.images.preview(obj, peers).await;
        let (observed, _) = self.observe_with(image, &desired).await?;
        Ok((plan(&desired, &observed), observed))
    }

    /// One full reconcile: observe, plan, act, observe again, derive the status.
    pub async fn reconcile(
        &self,
        obj: &CloudflareContainer,
        previous: Option<&CloudflareContainerStatus>,
        peers: &dyn PeerImages,
    ) -> ReconcileOutcome {
        let desired = Desired::from_spec(obj);
        let generation = obj.metadata.generation;
        let now = jiff::Timestamp::now();
        let first = match self.observe(obj, &desired, peers).await {
            Ok(o) => o,
            Err(e) => {
                let status = status::derive(
                    previous,
                    &StatusInput {
                        generation,
                        desired: &desired,
                        observed: None,
                        remaining: None,
                        error: Some(&e),
                        rollout_progress: None,
                    },
                    now,
                );
                return ReconcileOutcome {
                    plan: Plan::default(),
                    status,
                    events: vec![],
                    error: Some(e),
                };
            }
        };
        let the_plan = plan(&desired, &first.0);
        let mut events = Vec::new();
        let acted = self.act(&desired, &the_plan, &mut events).await;
        let (after, error) = match acted {
            Ok(()) if the_plan.actions.is_empty() => (Ok(first), None),
            Ok(()) => (self.observe(obj, &desired, peers).await, None),
            Err(e) => (Ok(first), Some(e)),
        };
        let (observed, progress, error) = match after {
            Ok((o, p)) => (Some(o), p, error),
            Err(e) => (None, None, Some(e)),
        };
        let remaining = observed.as_ref().map(|o| plan(&desired, o));
        let status = status::derive(
            previous,
            &StatusInput {
                generation,
                desired: &desired,
                observed: observed.as_ref(),
                remaining: remaining.as_ref(),
                error: error.as_ref(),
                rollout_progress: progress,
            },
            now,
        );
        ReconcileOutcome {
            plan: the_plan,
            status,
            events,
            error,
        }
    }

    /// Runs the plan's actions in order. Safe to re-run after a crash at any point.
    async fn act(
        &self,
        desired: &Desired,
        plan: &Plan,
        events: &mut Vec<Happening>,
    ) -> Result<(), ApiError> {
        let view = &self.view;
        let client = view.client();
        for action in &plan.actions {
            match action {
                Action::BindWorker { script, .. } => {
                    // Re-decide under the script's lock from the view, which every
                    // holder of the lock keeps current: two objects never race.
                    let lock = view.script_lock(script);
                    let _guard = lock.lock().await;
                    let current = view.script(script).await?;
                    let namespace = view
                        .namespace(&desired.script_name, &desired.class_name)
                        .await?;
                    let Ok(Some((Action::BindWorker { settings, .. }, _))) =
                        worker_action(desired, &current, namespace.as_ref())
                    else {
                        continue;
                    };
                    let updated = client.patch_script_settings(script, &settings).await;
                    view.invalidate_namespaces().await;
                    match updated {
                        Ok(s) => view.set_script(script, s).await,
                        Err(e) => {
                            view.invalidate_script(script).await;
                            return Err(e);
                        }
                    }
                    events.push(Happening::new(
                        "WorkerBound",
                        format!("bound class {} in Worker {script}", desired.class_name),
                    ));
                }
                Action::CreateApplication { request } => {
                    match client.create_application(request).await {
                        Ok(app) => {
                            events.push(Happening::new(
                                "Created",
                                format!("created application {} ({})", app.name, app.id),
                            ));
                            view.upsert_application(app).await;
                        }
                        Err(e) => {
                            let maybe_applied = matches!(
                                e,
                                ApiError::NameTaken { .. }
                                    | ApiError::Server { .. }
                                    | ApiError::InvalidResponse { .. }
                                    | ApiError::Transport {
                                        maybe_applied: true,
                                        ..
                                    }
                            );
                            if !maybe_applied {
                                view.invalidate_applications().await;
                                return Err(e);
                            }
                            // The answer was lost, or someone created it meanwhile: look by name.
                            view.refresh_applications().await?;
                            match view.application_by_name(&request.name).await? {
                                Some(app) if owner_of(&app) == Some(desired.owner.as_str()) => {
                                    events.push(Happening::new(
                                    "Created",
                                    format!(
                                        "created application {} ({}); the answer was lost and it was found by name",
                                        app.name, app.id
                                    ),
                                ));
                                }
                                _ => return Err(e),
                            }
                        }
                    }
                }
                Action::DeleteApplication { id, name, why } => {
                    client.delete_application(id).await?;
                    view.remove_application(id).await;
                    events.push(Happening::new(
                        "Replaced",
                        format!("deleted application {name} ({id}): {why}"),
                    ));
                }
                Action::ModifyApplication { id, request } => {
                    let app = client.modify_application(id, request).await?;
                    view.upsert_application(app).await;
                    let fields: Vec<&str> = plan
                        .changes
                        .iter()
                        .map(|c| c.field.as_str())
                        .filter(|f| !f.starts_with("configuration.") && !f.starts_with("worker."))
                        .collect();
                    events.push(Happening::new(
                        "Updated",
                        format!(
                            "updated application {} in place: {}",
                            desired.application_name,
                            fields.join(", ")
                        ),
                    ));
                }
                Action::CreateRollout {
                    id,
                    request,
                    adopts,
                } => match client.create_rollout(id, request).await {
                    Ok(r) => {
                        view.record_rollout(id, &r).await;
                        if *adopts {
                            events.push(Happening::new(
                                "Adopted",
                                format!("adopted application {}", desired.application_name),
                            ));
                        }
                        events.push(Happening::new(
                            "RolloutStarted",
                            format!(
                                "started rollout {} of application {}",
                                r.id, desired.application_name
                            ),
                        ));
                    }
                    Err(e) => {
                        view.invalidate_applications().await;
                        return Err(e);
                    }
                },
            }
        }
        Ok(())
    }

    /// Deletes what this object owns, as its `deletionPolicy` says. Applications it does
    /// not own are never touched.
    pub async fn delete(&self, obj: &CloudflareContainer) -> Result<DeleteOutcome, ApiError> {
        let desired = Desired::from_spec(obj);
        let owned = self.view.applications_owned_by(&desired.owner).await?;
        let names: Vec<String> = owned.iter().map(|a| a.name.clone()).collect();
        if desired.deletion_policy == DeletionPolicy::Orphan {
            return Ok(DeleteOutcome::Orphaned(names));
        }
        for app in &owned {
            self.view.client().delete_application(&app.id).await?;
            self.view.remove_application(&app.id).await;
        }
        Ok(DeleteOutcome::Deleted(names))
    }
}

/// How [`converge`] runs.
#[derive(Clone, Debug)]
pub struct ConvergeOptions {
    /// Keep going until every object is Ready (or stalled), or the timeout.
    pub wait: bool,
    pub timeout: Duration,
    /// Objects reconciled at once.
    pub concurrency: usize,
    /// Pause between rounds.
    pub poll: Duration,
}

impl Default for ConvergeOptions {
    fn default() -> Self {
        ConvergeOptions {
            wait: true,
            timeout: Duration::from_secs(300),
            concurrency: 16,
            poll: Duration::from_millis(250),
        }
    }
}

/// Reconciles objects in rounds (one account view refresh per round, shared by all)
/// until each is Ready or stalled, the timeout passes, or after one round without wait.
pub async fn converge(
    reconciler: &Reconciler,
    objects: &[CloudflareContainer],
    options: &ConvergeOptions,
    mut on_round: impl FnMut(usize, &HashMap<String, ReconcileOutcome>),
) -> HashMap<String, ReconcileOutcome> {
    let deadline = tokio::time::Instant::now() + options.timeout;
    let mut outcomes: HashMap<String, ReconcileOutcome> = HashMap::new();
    let mut pending: Vec<&CloudflareContainer> = objects.iter().collect();
    let mut round = 0usize;
    loop {
        round += 1;
        if round > 1 {
            reconciler.view.invalidate().await;
            reconciler.images.new_round().await;
        }
        let peers: HashMap<String, String> = outcomes
            .iter()
            .filter(|(_, o)| o.ready())
            .filter_map(|(k, o)| o.status.image.clone().map(|i| (k.clone(), i)))
            .collect();
        let results: Vec<(String, ReconcileOutcome)> =
            futures::stream::iter(pending.iter().copied())
                .map(|obj| {
                    let previous = outcomes.get(&obj.key()).map(|o| o.status.clone());
                    let peers = &peers;
                    async move {
                        let outcome = reconciler.reconcile(obj, previous.as_ref(), peers).await;
                        (obj.key(), outcome)
                    }
                })
                .buffer_unordered(options.concurrency.max(1))
                .collect()
                .await;
        for (key, mut outcome) in results {
            // Keep what earlier rounds did: the events tell the whole story.
            if let Some(previous) = outcomes.remove(&key) {
                let mut events = previous.events;
                events.append(&mut outcome.events);
                outcome.events = events;
            }
            outcomes.insert(key, outcome);
        }
        on_round(round, &outcomes);
        pending.retain(|o| {
            outcomes
                .get(&o.key())
                .is_none_or(|x| !x.ready() && !x.stalled())
        });
        if pending.is_empty() || !options.wait || tokio::time::Instant::now() >= deadline {
            return outcomes;
        }
        tokio::time::sleep(
            options
                .poll
                .min(deadline.saturating_duration_since(tokio::time::Instant::now())),
        )
        .await;
    }
}

#[cfg(test)]
mod send_checks {
    use super::*;
    fn is_send<T: Send>(_: T) {}
    #[allow(dead_code)]
    fn futures_are_send(
        r: &'static Reconciler,
        o: &'static CloudflareContainer,
        d: &'static Desired,
        p: &'static Plan,
    ) {
        let peers: &'static HashMap<String, String> = Box::leak(Box::default());
        is_send(r.observe(o, d, peers));
        is_send(r.reconcile(o, None, peers));
        is_send(r.delete(o));
        let mut ev = Vec::new();
        is_send(r.act(d, p, &mut ev));
    }
}

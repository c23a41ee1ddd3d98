//! The reconcile core, free of Kubernetes plumbing: **observe** the account (through a
//! shared cached [`view::AccountView`] and the [`images::ImageResolver`]), compute a
//! [`plan::Plan`] with a pure function, **act** on it idempotently, observe again and
//! derive the **status**. The CLI and the controller both drive [`Reconciler`].

mod bundle_cache;
pub mod converge;
mod delete;
pub mod holds;
pub mod images;
pub mod model;
mod outcome;
pub mod plan;
pub mod status;
pub mod view;
pub mod worker;

use std::sync::Arc;

use crate::cloudflare::ApiError;
use crate::spec::{CloudflareContainer, CloudflareContainerStatus};
pub use converge::{ConvergeOptions, Converged, converge, converge_all};
use images::{ImageResolver, Peers};
use model::{Desired, ImageAction, ImageState, Observed, owner_of};
pub use outcome::{DeleteOutcome, Happening, Outcome, ReconcileOutcome, WaitingOn};
use plan::{Action, Plan, plan};
use status::StatusInput;
use view::AccountView;

/// A Worker bundle's manifest digest and files.
type Bundle = (String, Vec<(String, Vec<u8>)>);

/// Observe → plan → act → status for objects of one account.
pub struct Reconciler {
    pub view: Arc<AccountView>,
    pub images: Arc<ImageResolver>,
    /// Who records ownership: every owner id and image repository names it.
    pub cluster: crate::spec::ClusterIdentity,
    /// Worker bundles pulled from registries: reference → (manifest digest, files).
    bundles: tokio::sync::Mutex<bundle_cache::BundleCache>,
}

type Observation = (Observed, Option<(String, i64)>);

impl Reconciler {
    pub fn new(
        view: Arc<AccountView>,
        images: Arc<ImageResolver>,
        cluster: crate::spec::ClusterIdentity,
    ) -> Self {
        Reconciler {
            view,
            images,
            cluster,
            bundles: Default::default(),
        }
    }

    /// Reads what Cloudflare has for this object (mostly from the cached view) and
    /// what it takes to get its image there. Reads only: nothing is copied, built,
    /// pushed or minted.
    pub async fn observe(
        &self,
        obj: &CloudflareContainer,
        desired: &Desired,
        peers: &dyn Peers,
        confirm: bool,
    ) -> Result<Observation, ApiError> {
        let image = self.images.observe(obj, peers, self.cluster.id()).await;
        // What objects being deleted recorded is being deleted, restart or not.
        self.view
            .set_apart_being_deleted(peers.being_deleted(), &self.cluster)
            .await?;
        self.observe_with(image, desired, confirm).await
    }

    /// `confirm`: read the application's versions even without an active rollout, so
    /// that Ready rests on what Cloudflare says runs (the first Ready of a generation).
    async fn observe_with(
        &self,
        image: model::ImageState,
        desired: &Desired,
        confirm: bool,
    ) -> Result<Observation, ApiError> {
        let view = &self.view;
        let application = view.application_by_name(&desired.application_name).await?;
        let (namespace, script) = match desired.worker.script() {
            Some(script) => (
                view.namespace(script, &desired.class_name).await?,
                view.script(script).await?,
            ),
            None => (None, None),
        };
        let mut progress = None;
        let mut target_configuration = None;
        let mut on_spec = None;
        if let Some(app) = &application
            && (confirm || app.active_rollout_id.is_some())
        {
            let versions = view.client().list_versions(&app.id).await?;
            if let model::ImageState::Ready(reference) = &image {
                let pct: i64 = versions
                    .iter()
                    .filter(|v| plan::runs_spec(desired, reference, &v.configuration))
                    .map(|v| v.percentage)
                    .sum();
                on_spec = Some(pct.clamp(0, 100));
            }
            if let Some(rollout_id) = &app.active_rollout_id {
                let newest = versions.iter().max_by_key(|v| v.version);
                progress = Some((rollout_id.clone(), on_spec.unwrap_or(0)));
                target_configuration = match view.rollout_target(rollout_id).await {
                    Some(t) => Some(t),
                    None => newest.map(|v| v.configuration.clone()),
                };
            }
        }
        let owned_elsewhere = view
            .applications_owned_by(&desired.owner)
            .await?
            .into_iter()
            // A rename's leftover is the application this object's status recorded,
            // nothing else carrying the label: a label can be copied, an id cannot.
            .filter(|a| {
                a.name != desired.application_name
                    && desired.recorded_application.as_deref() == Some(a.id.as_str())
            })
            .collect();
        let namespace_application = match &namespace {
            Some(ns) => view
                .application_by_namespace(&ns.id)
                .await?
                .filter(|a| application.as_ref().is_none_or(|b| b.id != a.id)),
            None => None,
        };
        let deleting = view
            .deleting_in_the_way(
                &desired.application_name,
                namespace.as_ref().map(|n| n.id.as_str()),
            )
            .await?;
        Ok((
            Observed {
                deleting,
                image,
                application,
                target_configuration,
                owned_elsewhere,
                namespace,
                namespace_application,
                script,
                on_spec,
            },
            progress,
        ))
    }

    /// The desired state of a container, its Worker looked up among the peers.
    pub fn desired_of(&self, obj: &CloudflareContainer, peers: &dyn Peers) -> Desired {
        Desired::from_spec(obj, peers, &self.cluster)
    }

    /// The plan for this object, without acting (what `flaredock plan` prints).
    pub async fn preview(
        &self,
        obj: &CloudflareContainer,
        peers: &dyn Peers,
    ) -> Result<(Plan, Observed), ApiError> {
        let desired = self.desired_of(obj, peers);
        let (observed, _) = self.observe(obj, &desired, peers, false).await?;
        Ok((plan(&desired, &observed), observed))
    }

    /// One full reconcile: observe, plan, act, observe again, derive the status.
    pub async fn reconcile(
        &self,
        obj: &CloudflareContainer,
        previous: Option<&CloudflareContainerStatus>,
        peers: &dyn Peers,
    ) -> ReconcileOutcome {
        let desired = self.desired_of(obj, peers);
        let generation = obj.metadata.generation;
        let now = jiff::Timestamp::now();
        // Ready is confirmed from the application's versions (what runs), not from its
        // configuration: whenever a rollout is active (its progress), and while an
        // earlier status of this object is not Ready for this generation. An object
        // seen Ready, seen for the first time with nothing to do, or just created
        // (its only version is the configuration it was created with) costs no
        // versions read: API calls per object stay flat.
        let confirm =
            previous.is_some_and(|s| !(status::is_ready(s) && s.observed_generation == generation));
        // An approval is checked against a fresh read: the application may have changed
        // since the changes were put up for review.
        if holds::approval_offered(
            previous.and_then(|p| p.pending_adoption.as_ref()),
            obj.metadata.annotations.as_ref(),
        ) {
            self.view.invalidate_applications().await;
        }
        let first = match self.observe(obj, &desired, peers, confirm).await {
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
                        reverted: None,
                        retry: None,
                    },
                    now,
                );
                return ReconcileOutcome {
                    plan: Plan::default(),
                    status,
                    events: vec![],
                    drift: vec![],
                    error: Some(e),
                };
            }
        };
        let retry = obj
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::spec::RETRY_ROLLOUT_ANNOTATION))
            .cloned();
        let mut the_plan = plan(&desired, &first.0);
        let observe_only = obj.spec.management_policy == crate::spec::ManagementPolicy::Observe;
        let suspend = obj.spec.suspend || observe_only;
        // Suspended or observed only: the plan says what is pending, nothing is done.
        let pending = suspend.then(|| std::mem::take(&mut the_plan.actions));
        // Drift: a Ready object of this generation that needs changes was changed at
        // Cloudflare behind flaredock's back.
        let drifted = !suspend
            && !the_plan.actions.is_empty()
            && previous.is_some_and(|s| status::is_ready(s) && s.observed_generation == generation);
        let drift_changes: Vec<plan::Change> = the_plan
            .changes
            .iter()
            .filter(|c| drifted && !desired.is_from_secret(&c.field))
            .cloned()
            .collect();
        let drift = (!drift_changes.is_empty()).then(|| status::drift_of(&drift_changes, &[], now));
        // An adoption waits for a person's approval of exactly these changes.
        let pending_adoption = holds::gate_adoption(
            &mut the_plan,
            obj.spec.adoption_approval,
            obj.metadata.annotations.as_ref(),
            now,
        );
        let reverted =
            reverted_rollout(previous, generation, retry.as_deref(), &first.0, &the_plan);
        if let Some(r) = &reverted {
            hold_rollout(&mut the_plan, r, &first.0);
        }
        let mut events = Vec::new();
        // Getting the image comes first; when its digest was not known to the plan
        // (a build, a tag read), what it found is planned again and acted on, once.
        // (`get_image` leaves the plan's other actions only when they were planned with
        // the digest it got.)
        let acquired = self.get_image(obj, &mut the_plan, &mut events).await;
        let replanned = match &acquired {
            Some(ready @ ImageState::Ready(_)) if the_plan.actions.is_empty() => self
                .observe_with(ready.clone(), &desired, confirm)
                .await
                .map(|(again, _)| the_plan = plan(&desired, &again)),
            _ => Ok(()),
        };
        let acted = match replanned {
            Ok(()) => {
                self.act(
                    &desired.owner,
                    &desired.application_name,
                    &the_plan,
                    &mut events,
                )
                .await
            }
            Err(e) => Err(e),
        };
        let (after, error) = match acted {
            Ok(()) if the_plan.actions.is_empty() && acquired.is_none() => (Ok(first), None),
            Ok(()) => match acquired {
                Some(image) => (self.observe_with(image, &desired, confirm).await, None),
                None => (self.observe(obj, &desired, peers, confirm).await, None),
            },
            Err(e) => {
                // A failed write may have half-happened: what the view says is stale.
                self.view.invalidate_applications().await;
                (Ok(first), Some(e))
            }
        };
        let (observed, progress, mut error) = match after {
            Ok((o, p)) => (Some(o), p, error),
            Err(e) => (None, None, Some(e)),
        };
        // Cloudflare may quote the request in an error; the request carries the
        // Secrets' values.
        if let Some(e) = error.as_mut() {
            e.redact(&desired.secret_values());
        }
        let remaining = observed.as_ref().map(|o| {
            let mut p = plan(&desired, o);
            if let Some(r) = &reverted {
                hold_rollout(&mut p, r, o);
            }
            p
        });
        let status = status::derive(
            previous,
            &StatusInput {
                generation,
                desired: &desired,
                observed: observed.as_ref(),
                remaining: remaining.as_ref(),
                error: error.as_ref(),
                rollout_progress: progress,
                reverted: reverted.as_ref(),
                retry: retry.as_deref(),
            },
            now,
        );
        let mut status = status;
        if let Some(d) = drift {
            status.drift = d;
        }
        if let Some(p) = pending_adoption {
            status.conditions = holds::adoption_pending(
                status.conditions,
                &p,
                &format!("application {}", desired.application_name),
                "cfc",
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
                "the application",
                generation,
                now,
            );
        } else if pending.is_some() {
            let left = remaining.unwrap_or_default();
            status.conditions = status::suspended(status.conditions, &left, generation, now);
        }
        ReconcileOutcome {
            plan: the_plan,
            status,
            events,
            drift: drift_changes,
            error,
        }
    }

    /// Runs the plan's image action, when it has one (always first), taking it out of
    /// the plan: what it found, or `None` when there was nothing to get.
    async fn get_image(
        &self,
        obj: &CloudflareContainer,
        plan: &mut Plan,
        events: &mut Vec<Happening>,
    ) -> Option<ImageState> {
        let Some(Action::GetImage(action)) = plan.actions.first().cloned() else {
            return None;
        };
        plan.actions.remove(0);
        let state = self.images.acquire(obj, &action).await;
        match (&state, &action) {
            (ImageState::Ready(image), ImageAction::Copy { source, .. }) => events.push(
                Happening::new("ImageCopied", format!("copied image {source} to {image}")),
            ),
            (ImageState::Ready(image), ImageAction::Build { .. }) => {
                events.push(Happening::new("ImageBuilt", format!("built image {image}")))
            }
            _ => {}
        }
        // A copy whose digest the plan knew deploys as planned; otherwise (a build,
        // a tag read, another host) the rest is planned again from what was found.
        let planned = action.deploys();
        match &state {
            ImageState::Ready(image) if planned.as_deref() == Some(image.as_str()) => {}
            _ => plan.actions.clear(),
        }
        Some(state)
    }

    /// Runs the plan's actions in order. Safe to re-run after a crash at any point.
    /// `owner` is the owner label of what this object creates, `name` what events call
    /// it (the application name, or the Worker script).
    async fn act(
        &self,
        owner: &str,
        name: &str,
        plan: &Plan,
        events: &mut Vec<Happening>,
    ) -> Result<(), ApiError> {
        let view = &self.view;
        let client = view.client();
        for action in &plan.actions {
            match action {
                // Taken out of the plan and run first by `get_image`.
                Action::GetImage(_) => {}
                Action::UploadScript {
                    script,
                    upload,
                    creates,
                    adopts,
                } => {
                    // One upload at a time per script: two reconciles never race.
                    let lock = view.script_lock(script);
                    let _guard = lock.lock().await;
                    let uploaded = client.upload_script(script, upload).await;
                    view.invalidate_namespaces().await;
                    match uploaded {
                        Ok(mut info) => {
                            // The answer carries the tags; keep what the list would show.
                            info.id = script.clone();
                            if info.tags.is_none() {
                                info.tags = Some(upload.metadata.tags.clone());
                            }
                            if let Some(m) = &upload.metadata.migrations {
                                info.migration_tag = m.new_tag.clone();
                            } else if info.migration_tag.is_none() {
                                info.migration_tag = view
                                    .script(script)
                                    .await
                                    .ok()
                                    .flatten()
                                    .and_then(|s| s.migration_tag);
                            }
                            view.set_script(info).await;
                        }
                        Err(e) => {
                            view.invalidate_scripts().await;
                            return Err(e);
                        }
                    }
                    if *adopts {
                        events.push(Happening::new(
                            "Adopted",
                            format!("adopted Worker script {script}"),
                        ));
                    }
                    let fields: Vec<&str> = plan.changes.iter().map(|c| c.field.as_str()).collect();
                    events.push(Happening::new(
                        "Uploaded",
                        format!(
                            "{} Worker script {script}: {}",
                            if *creates { "created" } else { "uploaded" },
                            fields.join(", ")
                        ),
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
                                Some(app) if owner_of(&app) == Some(owner) => {
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
                    // Decided again on a fresh read: only what still carries this
                    // object's owner label is deleted.
                    match client.get_application(id).await {
                        Ok(app) if owner_of(&app) == Some(owner) => {}
                        Ok(_) | Err(ApiError::NotFound { .. }) => {
                            view.invalidate_applications().await;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
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
                            name,
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
                                format!("adopted application {name}"),
                            ));
                        }
                        events.push(Happening::new(
                            "RolloutStarted",
                            format!("started rollout {} of application {}", r.id, name),
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
}

/// The rollout Cloudflare reverted, when no new rollout may start for it: the one the
/// previous status followed (progressing, or already known reverted) for this same
/// generation, gone from the application while the application still differs from the
/// spec, unless the retry annotation changed since it started.
fn reverted_rollout(
    previous: Option<&CloudflareContainerStatus>,
    generation: Option<i64>,
    retry: Option<&str>,
    observed: &Observed,
    plan: &Plan,
) -> Option<crate::spec::RolloutProgressStatus> {
    let previous = previous?;
    let r = previous.rollout.as_ref()?;
    if previous.observed_generation != generation
        || (retry.is_some() && r.retry.as_deref() != retry)
    {
        return None;
    }
    let app = observed.application.as_ref()?;
    let still_wanted = plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::CreateRollout { .. }));
    let ended = app.active_rollout_id.as_deref() != Some(r.id.as_str());
    match r.status.as_str() {
        "reverted" if still_wanted => Some(r.clone()),
        "progressing" if ended && still_wanted => Some(crate::spec::RolloutProgressStatus {
            status: "reverted".into(),
            progress: 0,
            ..r.clone()
        }),
        _ => None,
    }
}

/// Takes the rollout out of a plan and says why: Cloudflare reverted the last one.
fn hold_rollout(
    plan: &mut Plan,
    reverted: &crate::spec::RolloutProgressStatus,
    observed: &Observed,
) {
    plan.actions
        .retain(|a| !matches!(a, Action::CreateRollout { .. }));
    let version = observed
        .application
        .as_ref()
        .map(|a| format!("version {} ({})", a.version, a.configuration.image))
        .unwrap_or_else(|| "the previous version".into());
    plan.blocked = Some(plan::Blocked::Refused {
        reason: "RolloutReverted".into(),
        message: format!(
            "rollout {} was reverted by Cloudflare; {version} runs. flaredock starts no new rollout for this generation: change the spec, or set the annotation {}",
            reverted.id,
            crate::spec::RETRY_ROLLOUT_ANNOTATION
        ),
    });
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
        let peers: &'static std::collections::HashMap<String, String> = Box::leak(Box::default());
        is_send(r.observe(o, d, peers, true));
        is_send(r.reconcile(o, None, peers));
        is_send(r.delete(o));
        let mut ev = Vec::new();
        is_send(r.act(&d.owner, "x", p, &mut ev));
    }
}

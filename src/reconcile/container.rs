//! A CloudflareContainer through the [`pipeline`](super::pipeline): what flaredock
//! wants is its [`Desired`](super::model::Desired) (`model.rs`), what Cloudflare has
//! is observed in `observe.rs`, what to do is planned in `plan.rs`, and `act.rs` does
//! it. What only a container has: its image is got first (and what a build or a tag
//! read found is planned again), and a rollout Cloudflare reverted is not started
//! again for the same generation.

use super::images::Peers;
use super::model::{Desired, ImageState, Observed};
use super::observe::Observation;
use super::outcome::{Happening, ReconcileOutcome};
use super::pipeline::{self, Pipeline, Policy, Prepared, StatusInput};
use super::plan::{self, Action, Change, Plan};
use super::reason::Reason;
use super::{Reconciler, status};
use crate::cloudflare::ApiError;
use crate::spec::{
    CloudflareContainer, CloudflareContainerStatus, RolloutPhase, RolloutProgressStatus,
};

/// One reconcile of one CloudflareContainer.
struct ContainerRun<'a> {
    r: &'a Reconciler,
    obj: &'a CloudflareContainer,
    previous: Option<&'a CloudflareContainerStatus>,
    peers: &'a dyn Peers,
    desired: Desired,
    /// Read the application's versions even without an active rollout (cleared once
    /// this run created the application: its only version is what it was created with).
    confirm: std::sync::atomic::AtomicBool,
    /// The retry annotation's value now.
    retry: Option<String>,
    /// The image act got, observed instead of the spec's from then on.
    acquired: std::sync::Mutex<Option<ImageState>>,
    now: jiff::Timestamp,
}

impl<'a> ContainerRun<'a> {
    fn new(
        r: &'a Reconciler,
        obj: &'a CloudflareContainer,
        previous: Option<&'a CloudflareContainerStatus>,
        peers: &'a dyn Peers,
    ) -> Self {
        let generation = obj.metadata.generation;
        // Ready is confirmed from the application's versions (what runs), not from its
        // configuration: whenever a rollout is active (its progress), and while an
        // earlier status of this object is not Ready for this generation. An object
        // seen Ready, seen for the first time with nothing to do, or just created
        // (its only version is the configuration it was created with) costs no
        // versions read: API calls per object stay flat.
        let confirm =
            previous.is_some_and(|s| !(status::is_ready(s) && s.observed_generation == generation));
        ContainerRun {
            r,
            obj,
            previous,
            peers,
            desired: r.desired_of(obj, peers),
            confirm: confirm.into(),
            retry: obj
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::spec::RETRY_ROLLOUT_ANNOTATION))
                .cloned(),
            acquired: Default::default(),
            now: jiff::Timestamp::now(),
        }
    }
}

impl ContainerRun<'_> {
    fn confirms(&self) -> bool {
        self.confirm.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Pipeline for ContainerRun<'_> {
    type Desired = Desired;
    type Observed = Observation;
    type Status = CloudflareContainerStatus;
    type Hold = RolloutProgressStatus;

    const OBSERVED: &'static str = "the application";

    fn policy(&self) -> Policy<'_> {
        let spec = &self.obj.spec;
        Policy {
            generation: self.obj.metadata.generation,
            suspend: spec.suspend,
            management: spec.management_policy,
            adoption_approval: spec.adoption_approval,
            annotations: self.obj.metadata.annotations.as_ref(),
            resource: "cfc",
            name: self.obj.name(),
        }
    }

    fn previous(&self) -> Option<&CloudflareContainerStatus> {
        self.previous
    }

    fn adopted(&self, desired: &Desired) -> String {
        format!("application {}", desired.application_name)
    }

    async fn fresh_read(&self) {
        self.r.view.invalidate_applications().await;
    }

    async fn inputs(&self) -> Result<Desired, plan::Blocked> {
        // What the spec's Secrets and Worker block is in the plan (`env_blocked`).
        Ok(self.desired.clone())
    }

    async fn observe(&self, desired: &Desired) -> Result<Observation, ApiError> {
        let acquired = crate::lock(&self.acquired).clone();
        match acquired {
            Some(image) => self.r.observe_with(image, desired, self.confirms()).await,
            None => {
                self.r
                    .observe(self.obj, desired, self.peers, self.confirms())
                    .await
            }
        }
    }

    fn plan(&self, desired: &Desired, observed: &Observation) -> Plan {
        plan::plan(desired, &observed.0)
    }

    fn is_drift(&self, desired: &Desired, change: &Change) -> bool {
        // A new value of a Secret the environment reads is not drift.
        !desired.is_from_secret(&change.field)
    }

    fn hold(&self, observed: &Observation, plan: &Plan) -> Option<RolloutProgressStatus> {
        reverted_rollout(
            self.previous,
            self.obj.metadata.generation,
            self.retry.as_deref(),
            &observed.0,
            plan,
        )
    }

    fn apply_hold(&self, hold: &RolloutProgressStatus, plan: &mut Plan, observed: &Observation) {
        hold_rollout(plan, hold, &observed.0);
    }

    async fn prepare(&self, plan: &mut Plan, events: &mut Vec<Happening>) -> Prepared {
        // Getting the image comes first; when its digest was not known to the plan
        // (a build, a tag read), what it found is planned again and acted on, once.
        // (`get_image` leaves the plan's other actions only when they were planned
        // with the digest it got.)
        let Some(state) = self.r.get_image(self.obj, plan, events).await else {
            return Prepared::Nothing;
        };
        let ready = matches!(state, ImageState::Ready(_));
        *crate::lock(&self.acquired) = Some(state);
        if ready && plan.actions.is_empty() {
            Prepared::Replan
        } else {
            Prepared::Got
        }
    }

    async fn act(
        &self,
        desired: &Desired,
        plan: &Plan,
        events: &mut Vec<Happening>,
    ) -> Result<(), ApiError> {
        self.r
            .act(&desired.owner, &desired.application_name, plan, events)
            .await?;
        // Just created, its only version is the configuration it was created with (as
        // for an object seen for the first time): the observe that follows reads no
        // versions for it.
        if plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateApplication { .. }))
        {
            self.confirm
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    async fn after_failed_write(&self) {
        // A failed write may have half-happened: what the view says is stale.
        self.r.view.invalidate_applications().await;
    }

    fn secret_values<'d>(&self, desired: &'d Desired) -> Vec<&'d str> {
        desired.secret_values()
    }

    fn status(&self, input: StatusInput<'_, Self>) -> CloudflareContainerStatus {
        status::derive(
            self.previous,
            &status::StatusInput {
                generation: self.obj.metadata.generation,
                desired: input.desired.unwrap_or(&self.desired),
                observed: input.observed.map(|o| &o.0),
                remaining: input.remaining,
                error: input.error,
                rollout_progress: input.observed.and_then(|o| o.1.clone()),
                reverted: input.hold,
                retry: self.retry.as_deref(),
            },
            self.now,
        )
    }
}

impl Reconciler {
    /// The plan for this object, without acting (what `flaredock plan` prints), through
    /// the pipeline's observe and plan ([`pipeline::preview`]).
    pub async fn preview(
        &self,
        obj: &CloudflareContainer,
        peers: &dyn Peers,
    ) -> Result<(Plan, Option<Observed>), ApiError> {
        let run = ContainerRun::new(self, obj, None, peers);
        let (plan, observed) = pipeline::preview(&run).await?;
        Ok((plan, observed.map(|o| o.0)))
    }
    /// One full reconcile: observe, plan, act, observe again, derive the status.
    pub async fn reconcile(
        &self,
        obj: &CloudflareContainer,
        previous: Option<&CloudflareContainerStatus>,
        peers: &dyn Peers,
    ) -> ReconcileOutcome {
        pipeline::run(
            &ContainerRun::new(self, obj, previous, peers),
            self.deadline,
        )
        .await
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
) -> Option<RolloutProgressStatus> {
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
    match r.status {
        RolloutPhase::Reverted if still_wanted => Some(r.clone()),
        RolloutPhase::Progressing if ended && still_wanted => Some(RolloutProgressStatus {
            status: RolloutPhase::Reverted,
            progress: 0,
            ..r.clone()
        }),
        _ => None,
    }
}

/// Takes the rollout out of a plan and says why: Cloudflare reverted the last one.
fn hold_rollout(plan: &mut Plan, reverted: &RolloutProgressStatus, observed: &Observed) {
    plan.actions
        .retain(|a| !matches!(a, Action::CreateRollout { .. }));
    let version = observed
        .application
        .as_ref()
        .map(|a| format!("version {} ({})", a.version, a.configuration.image))
        .unwrap_or_else(|| "the previous version".into());
    plan.blocked = Some(plan::Blocked::Refused {
        reason: Reason::RolloutReverted,
        message: format!(
            "rollout {} was reverted by Cloudflare; {version} runs. flaredock starts no new rollout for this generation: change the spec, or set the annotation {}",
            reverted.id,
            crate::spec::RETRY_ROLLOUT_ANNOTATION
        ),
    });
}

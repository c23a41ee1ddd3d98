//! The one pipeline every managed kind goes through, and the policy that holds back
//! its writes. Per kind, a [`Pipeline`] says what flaredock wants (`inputs`), what
//! Cloudflare has (`observe`, reads only), what to do (`plan`, pure) and does it
//! (`act`); [`run`] drives them in the same order for every kind:
//!
//! 1. an approval put up for review is checked against a fresh read;
//! 2. inputs (missing ones block the plan: nothing is observed as changing);
//! 3. observe, plan;
//! 4. the policy: `suspend` and `managementPolicy: Observe` take every action away,
//!    an adoption waits for a person's approval of exactly its changes, the kind's
//!    own holds (a rollout Cloudflare reverted) take what they hold;
//! 5. drift: a Ready object of this generation that still needs changes was changed
//!    behind flaredock's back, and the changes that correct it are reported;
//! 6. act (getting what the plan needs first, planned again when what was found
//!    changes the plan), observe again, plan what is left;
//! 7. the status: the kind's conditions, then what the policy held and why.
//!
//! Nothing is written at Cloudflare, in a registry or in the cluster before step 6.
//!
//! Each run has a deadline (`--reconcile-timeout`): past it, the run is dropped where it
//! is (like a crash, which every action survives), the cached reads it may have left
//! stale are forgotten, and the status says `ReconcileTimedOut` (transient: the object
//! is looked at again, its concurrency slot freed meanwhile).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::outcome::{Happening, Reconciled};
use super::plan::{Blocked, Change, Plan};
use super::reason::Reason;
use super::{holds, status};
use crate::cloudflare::ApiError;
use crate::spec::{
    AdoptionApproval, CloudflareContainerStatus, CloudflareWorkerStatus, DriftEntry,
    ManagementPolicy, PendingAdoption,
};

/// The parts of a kind's status the policy reads and writes.
pub trait ManagedStatus: Clone + Default {
    fn conditions(&self) -> &[Condition];
    fn observed_generation(&self) -> Option<i64>;
    fn drift(&self) -> &[DriftEntry];
    fn pending_adoption(&self) -> Option<&PendingAdoption>;
    fn held_parts(
        &mut self,
    ) -> (
        &mut Vec<Condition>,
        &mut Vec<DriftEntry>,
        &mut Option<PendingAdoption>,
    );

    /// `Ready=True`?
    fn is_ready(&self) -> bool {
        status::is_true(self.conditions(), "Ready")
    }
}

macro_rules! managed_status {
    ($t:ty) => {
        impl ManagedStatus for $t {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
            fn observed_generation(&self) -> Option<i64> {
                self.observed_generation
            }
            fn drift(&self) -> &[DriftEntry] {
                &self.drift
            }
            fn pending_adoption(&self) -> Option<&PendingAdoption> {
                self.pending_adoption.as_ref()
            }
            fn held_parts(
                &mut self,
            ) -> (
                &mut Vec<Condition>,
                &mut Vec<DriftEntry>,
                &mut Option<PendingAdoption>,
            ) {
                (
                    &mut self.conditions,
                    &mut self.drift,
                    &mut self.pending_adoption,
                )
            }
        }
    };
}
managed_status!(CloudflareContainerStatus);
managed_status!(CloudflareWorkerStatus);

/// What [`Pipeline::prepare`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// The plan needed nothing first.
    Nothing,
    /// It got (or failed to get) what the plan needed; the plan's other actions stand
    /// only when they were planned with what it got.
    Got,
    /// What it found changes the plan (a digest the plan could not know): planned
    /// again from a new observation.
    Replan,
}

/// What the policy reads of the object's spec and metadata.
pub struct Policy<'a> {
    pub generation: Option<i64>,
    pub suspend: bool,
    pub management: ManagementPolicy,
    pub adoption_approval: AdoptionApproval,
    pub annotations: Option<&'a BTreeMap<String, String>>,
    /// The kubectl short name (`cfc`, `cfw`) and the object's name, for the
    /// `kubectl annotate` an adoption's status proposes.
    pub resource: &'static str,
    pub name: &'a str,
}

impl Policy<'_> {
    fn observe_only(&self) -> bool {
        self.management == ManagementPolicy::Observe
    }

    /// Nothing is written: suspended, or observed only.
    fn holds_everything(&self) -> bool {
        self.suspend || self.observe_only()
    }
}

/// What the status of a kind is derived from.
pub struct StatusInput<'a, P: Pipeline + ?Sized> {
    /// `None` when the inputs are missing (the plan says why).
    pub desired: Option<&'a P::Desired>,
    /// Observed after acting (`None`: Cloudflare could not be read).
    pub observed: Option<&'a P::Observed>,
    /// What is left to do against that observation.
    pub remaining: Option<&'a Plan>,
    pub error: Option<&'a ApiError>,
    pub hold: Option<&'a P::Hold>,
}

/// One kind, for one reconcile of one object: the four steps and what the policy
/// needs to know about them.
pub trait Pipeline: Sync {
    /// What flaredock wants at Cloudflare.
    type Desired: Send + Sync;
    /// What Cloudflare has (read only).
    type Observed: Send + Sync;
    type Status: ManagedStatus + Send;
    /// A hold of the kind's own, carried from the plan to what is left.
    type Hold: Send + Sync;

    /// What the object is called when the policy speaks of what it would change
    /// (`the application`, `the Worker script`).
    const OBSERVED: &'static str;

    fn policy(&self) -> Policy<'_>;
    fn previous(&self) -> Option<&Self::Status>;
    /// What adopting takes over, in words (`application shop`).
    fn adopted(&self, desired: &Self::Desired) -> String;

    /// Forgets the cached reads an approval is checked against.
    fn fresh_read(&self) -> impl Future<Output = ()> + Send;
    /// What flaredock wants, from the spec and what Kubernetes holds; what blocks it.
    fn inputs(&self) -> impl Future<Output = Result<Self::Desired, Blocked>> + Send;
    /// What Cloudflare has: reads only.
    fn observe(
        &self,
        desired: &Self::Desired,
    ) -> impl Future<Output = Result<Self::Observed, ApiError>> + Send;
    /// What Cloudflare has when the inputs are missing (shown in status), if anything.
    fn observe_without_inputs(&self) -> impl Future<Output = Option<Self::Observed>> + Send {
        async { None }
    }
    /// What to do: pure.
    fn plan(&self, desired: &Self::Desired, observed: &Self::Observed) -> Plan;
    /// Is a change drift (made behind flaredock's back), or expected (a new value
    /// of a Secret)?
    fn is_drift(&self, _desired: &Self::Desired, _change: &Change) -> bool {
        true
    }
    /// A hold of the kind's own over this plan, from what earlier reconciles saw.
    fn hold(&self, _observed: &Self::Observed, _plan: &Plan) -> Option<Self::Hold> {
        None
    }
    /// Takes out of `plan` what `hold` holds, saying why in `plan.blocked`.
    fn apply_hold(&self, _hold: &Self::Hold, _plan: &mut Plan, _observed: &Self::Observed) {}
    /// Gets what the plan's writes need first (a container's image), taking that
    /// action out of the plan.
    fn prepare(
        &self,
        _plan: &mut Plan,
        _events: &mut Vec<Happening>,
    ) -> impl Future<Output = Prepared> + Send {
        async { Prepared::Nothing }
    }
    /// Does it: the plan's actions in order.
    fn act(
        &self,
        desired: &Self::Desired,
        plan: &Plan,
        events: &mut Vec<Happening>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// A write failed and may have half-happened: forget what the cache says.
    fn after_failed_write(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// The Secret values the desired state carries (redacted from errors).
    fn secret_values<'d>(&self, desired: &'d Self::Desired) -> Vec<&'d str>;
    /// The kind's status.
    fn status(&self, input: StatusInput<'_, Self>) -> Self::Status;
}

/// What `kind` would do, without acting (what `flaredock plan` prints), through the same
/// steps as [`run`]: its inputs (what blocks them is the plan's `blocked`, and nothing
/// is observed), what Cloudflare has (reads only), the plan. Never the policy, never act.
pub async fn preview<P: Pipeline>(kind: &P) -> Result<(Plan, Option<P::Observed>), ApiError> {
    let desired = match kind.inputs().await {
        Ok(d) => d,
        Err(blocked) => {
            let plan = Plan {
                blocked: Some(blocked),
                ..Default::default()
            };
            return Ok((plan, None));
        }
    };
    let observed = kind.observe(&desired).await?;
    Ok((kind.plan(&desired, &observed), Some(observed)))
}

/// What the policy found of an adoption in a plan.
enum AdoptionState {
    /// Waits for a person's approval of these changes.
    Pending(PendingAdoption),
    /// Approved, but held until what blocks the plan clears (the hash is kept).
    ApprovedHeld(PendingAdoption),
}

/// The policy over a fresh plan: suspend and Observe take every action; an adoption
/// waits for its approval; the kind's holds hold what they hold. Returns the
/// adoption's state and the kind's hold.
fn gate<P: Pipeline>(
    kind: &P,
    policy: &Policy<'_>,
    plan: &mut Plan,
    observed: &P::Observed,
    now: jiff::Timestamp,
) -> (Option<AdoptionState>, Option<P::Hold>) {
    if policy.holds_everything() {
        plan.actions.clear();
        plan.held.clear();
    }
    let adoption = holds::gate_adoption(plan, policy.adoption_approval, policy.annotations, now)
        .map(AdoptionState::Pending)
        .or_else(|| {
            holds::approved_held(plan, policy.adoption_approval, policy.annotations, now)
                .map(AdoptionState::ApprovedHeld)
        });
    let hold = kind.hold(observed, plan);
    if let Some(h) = &hold {
        kind.apply_hold(h, plan, observed);
    }
    (adoption, hold)
}

/// One full reconcile of one object of any kind, within `deadline`.
pub async fn run<P: Pipeline>(kind: &P, deadline: Duration) -> Reconciled<P::Status> {
    match tokio::time::timeout(deadline, drive(kind)).await {
        Ok(out) => out,
        Err(_) => {
            // Dropped where it was, as a crash would: a write may have half-happened.
            kind.after_failed_write().await;
            let status = timed_out(
                kind.previous(),
                kind.policy().generation,
                deadline,
                jiff::Timestamp::now(),
            );
            let mut out = Reconciled::new(Plan::default(), status);
            out.timed_out = true;
            out
        }
    }
}

/// The status of a run dropped at its deadline: what was last observed, with `Ready`
/// and `Reconciling` saying `ReconcileTimedOut` (not Stalled: it is looked at again).
fn timed_out<S: ManagedStatus>(
    previous: Option<&S>,
    generation: Option<i64>,
    deadline: Duration,
    now: jiff::Timestamp,
) -> S {
    let mut status = previous.cloned().unwrap_or_default();
    let message = format!(
        "the reconcile did not finish within its deadline ({}s, --reconcile-timeout): Cloudflare or a registry answers slowly; it is retried",
        deadline.as_secs_f64()
    );
    let (conditions, _, _) = status.held_parts();
    let before = std::mem::take(conditions);
    let reason = Reason::ReconcileTimedOut.as_str();
    let cond = |kind: &str, ok: bool, reason: &str, message: &str| {
        status::condition_since(&before, kind, ok, reason, message, generation, now)
    };
    let mut fresh = vec![
        cond("Ready", false, reason, &message),
        cond(
            "Stalled",
            false,
            Reason::NotStalled.as_str(),
            "no terminal error",
        ),
        cond("Reconciling", true, reason, &message),
    ];
    fresh.extend(
        before
            .iter()
            .filter(|c| !matches!(c.type_.as_str(), "Ready" | "Stalled" | "Reconciling"))
            .cloned(),
    );
    *conditions = fresh;
    status
}

async fn drive<P: Pipeline>(kind: &P) -> Reconciled<P::Status> {
    let now = jiff::Timestamp::now();
    let policy = kind.policy();
    let previous = kind.previous();
    let generation = policy.generation;
    // An approval is checked against a fresh read: what it approves may have changed
    // since the changes were put up for review.
    if holds::approval_offered(
        previous.and_then(ManagedStatus::pending_adoption),
        policy.annotations,
    ) {
        kind.fresh_read().await;
    }
    let desired = match kind.inputs().await {
        Ok(d) => d,
        Err(blocked) => {
            let plan = Plan {
                blocked: Some(blocked),
                ..Default::default()
            };
            // Show what the account has while the inputs are missing.
            let observed = kind.observe_without_inputs().await;
            let status = kind.status(StatusInput {
                desired: None,
                observed: observed.as_ref(),
                remaining: Some(&plan),
                error: None,
                hold: None,
            });
            return Reconciled::new(plan, status);
        }
    };
    let first = match kind.observe(&desired).await {
        Ok(o) => o,
        Err(e) => {
            let status = kind.status(StatusInput {
                desired: Some(&desired),
                observed: None,
                remaining: None,
                error: Some(&e),
                hold: None,
            });
            let mut out = Reconciled::new(Plan::default(), status);
            out.error = Some(e);
            return out;
        }
    };
    let mut the_plan = kind.plan(&desired, &first);
    // Suspended or observed only: the plan says what is pending (in status), nothing
    // is done.
    let held_all = policy.holds_everything();
    let (adoption, hold) = gate(kind, &policy, &mut the_plan, &first, now);
    // Drift: a Ready object of this generation that needs changes was changed at
    // Cloudflare behind flaredock's back; these changes correct it.
    let drifted = !the_plan.actions.is_empty()
        && previous.is_some_and(|s| s.is_ready() && s.observed_generation() == generation);
    let drift: Vec<Change> = the_plan
        .changes
        .iter()
        .filter(|c| drifted && kind.is_drift(&desired, c))
        .cloned()
        .collect();

    let mut events = Vec::new();
    let prepared = if the_plan.actions.is_empty() {
        Prepared::Nothing
    } else {
        kind.prepare(&mut the_plan, &mut events).await
    };
    let replanned = if prepared == Prepared::Replan {
        // What was found is planned again and acted on, once, behind the kind's holds
        // (the approval, if one was needed, was of these changes).
        kind.observe(&desired).await.map(|again| {
            the_plan = kind.plan(&desired, &again);
            if let Some(h) = &hold {
                kind.apply_hold(h, &mut the_plan, &again);
            }
        })
    } else {
        Ok(())
    };
    let acted = match replanned {
        Ok(()) => kind.act(&desired, &the_plan, &mut events).await,
        Err(e) => Err(e),
    };
    let (after, error) = match acted {
        Ok(()) if the_plan.actions.is_empty() && prepared == Prepared::Nothing => (Ok(first), None),
        Ok(()) => (kind.observe(&desired).await, None),
        Err(e) => {
            kind.after_failed_write().await;
            (Ok(first), Some(e))
        }
    };
    let (observed, mut error) = match after {
        Ok(o) => (Some(o), error),
        Err(e) => (None, Some(e)),
    };
    // Cloudflare may quote the request in an error; the request carries the Secrets'
    // values.
    if let Some(e) = error.as_mut() {
        e.redact(&kind.secret_values(&desired));
    }
    let remaining = observed.as_ref().map(|o| {
        let mut p = kind.plan(&desired, o);
        if let Some(h) = &hold {
            kind.apply_hold(h, &mut p, o);
        }
        p
    });
    let mut status = kind.status(StatusInput {
        desired: Some(&desired),
        observed: observed.as_ref(),
        remaining: remaining.as_ref(),
        error: error.as_ref(),
        hold: hold.as_ref(),
    });
    let previous_drift = previous.map(ManagedStatus::drift).unwrap_or(&[]).to_vec();
    let (conditions, status_drift, status_pending) = status.held_parts();
    if !drift.is_empty() {
        *status_drift = status::drift_of(&drift, &[], now);
    }
    match adoption {
        Some(AdoptionState::Pending(p)) => {
            *conditions = holds::adoption_pending(
                std::mem::take(conditions),
                &p,
                &kind.adopted(&desired),
                policy.resource,
                policy.name,
                generation,
                now,
            );
            *status_pending = Some(p);
        }
        // The conditions say what it waits for; the approval is kept.
        Some(AdoptionState::ApprovedHeld(p)) => *status_pending = Some(p),
        None => {}
    }
    if policy.observe_only() && !policy.suspend {
        let left = remaining.unwrap_or_default();
        (*conditions, *status_drift) = holds::observing(
            std::mem::take(conditions),
            &left,
            &previous_drift,
            P::OBSERVED,
            generation,
            now,
        );
    } else if held_all {
        let left = remaining.unwrap_or_default();
        *conditions = status::suspended(std::mem::take(conditions), &left, generation, now);
    }
    Reconciled {
        plan: the_plan,
        status,
        events,
        drift,
        error,
        timed_out: false,
    }
}

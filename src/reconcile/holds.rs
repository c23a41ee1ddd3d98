//! What flaredock holds back, for every kind (the building blocks of the policy that
//! [`super::pipeline`] applies): an adoption waiting for a person's approval, and
//! `managementPolicy: Observe`. Each takes a plan's actions away and says in status
//! what it would have done.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::plan::{Action, Plan};
use super::reason::Reason;
use super::status;
use crate::spec::{APPROVE_ADOPTION_ANNOTATION, AdoptionApproval, DriftEntry, PendingAdoption};

/// Whether the plan takes over something flaredock does not own (now, or once what
/// blocks it clears: its held actions).
fn adopts(plan: &Plan) -> bool {
    plan.actions.iter().chain(&plan.held).any(|a| {
        matches!(
            a,
            Action::CreateRollout { adopts: true, .. } | Action::UploadScript { adopts: true, .. }
        )
    })
}

/// An adoption waits for approval of exactly its changes: with `Manual` approval and
/// no annotation `flaredock.dev/approve-adoption` carrying the hash of these changes,
/// the plan's actions are taken away and the pending adoption returned. A stale hash
/// (changes since approved) approves nothing.
///
/// A container's image is approved as the spec names it: a tag of Cloudflare's
/// registry stands for the digest act pins it to, in one form whether this pass read
/// the digest (registry credentials held, minted for another object) or left the read
/// to act, so holding credentials never makes an approval stale; a tag moved between
/// review and act is still the approved tag (see `plan::adopted_tag`).
pub fn gate_adoption(
    plan: &mut Plan,
    approval: AdoptionApproval,
    annotations: Option<&BTreeMap<String, String>>,
    now: jiff::Timestamp,
) -> Option<PendingAdoption> {
    if approval != AdoptionApproval::Manual || !adopts(plan) {
        return None;
    }
    let hash = status::adoption_hash(&plan.changes);
    if annotations.and_then(|a| a.get(APPROVE_ADOPTION_ANNOTATION)) == Some(&hash) {
        return None;
    }
    plan.actions.clear();
    Some(PendingAdoption {
        hash,
        changes: status::drift_of(&plan.changes, &[], now),
    })
}

/// An approved adoption that cannot be acted on yet: the plan holds its actions (a
/// container's, while its Worker's adoption is awaited). The status keeps it, hash and
/// changes, so that it is read afresh (like any approval offered) when it can be acted
/// on; the conditions say what is awaited, not `AdoptionPending`.
pub fn approved_held(
    plan: &Plan,
    approval: AdoptionApproval,
    annotations: Option<&BTreeMap<String, String>>,
    now: jiff::Timestamp,
) -> Option<PendingAdoption> {
    if approval != AdoptionApproval::Manual || plan.held.is_empty() || !adopts(plan) {
        return None;
    }
    let hash = status::adoption_hash(&plan.changes);
    (annotations.and_then(|a| a.get(APPROVE_ADOPTION_ANNOTATION)) == Some(&hash)).then(|| {
        PendingAdoption {
            hash,
            changes: status::drift_of(&plan.changes, &[], now),
        }
    })
}

/// Whether the object carries an approval for the adoption its status puts up for
/// review (then what it approves is read afresh before it is acted on).
pub fn approval_offered(
    pending: Option<&PendingAdoption>,
    annotations: Option<&BTreeMap<String, String>>,
) -> bool {
    pending.is_some_and(|p| {
        annotations.and_then(|a| a.get(APPROVE_ADOPTION_ANNOTATION)) == Some(&p.hash)
    })
}

/// The conditions of an object whose adoption waits: `AdoptionPending`, naming what
/// adopting `what` would change and the `kubectl annotate` that approves it.
pub fn adoption_pending(
    conditions: Vec<Condition>,
    pending: &PendingAdoption,
    what: &str,
    resource: &str,
    name: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Vec<Condition> {
    let fields: Vec<&str> = pending.changes.iter().map(|c| c.field.as_str()).collect();
    let message = format!(
        "adopting {what} would change: {}; approve with the annotation {APPROVE_ADOPTION_ANNOTATION}={hash} (kubectl annotate {resource} {name} {APPROVE_ADOPTION_ANNOTATION}={hash})",
        fields.join(", "),
        hash = pending.hash,
    );
    status::held(
        conditions,
        Reason::AdoptionPending,
        &message,
        generation,
        now,
    )
}

/// `managementPolicy: Observe`: what is left to do, `left`, is listed as drift (keeping
/// when each difference was first seen in `previous`), and while anything differs the
/// conditions say `Observing` with the fields.
pub fn observing(
    conditions: Vec<Condition>,
    left: &Plan,
    previous: &[DriftEntry],
    what: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> (Vec<Condition>, Vec<DriftEntry>) {
    let drift = status::drift_of(&left.changes, previous, now);
    if left.changes.is_empty() && left.blocked.is_none() {
        return (conditions, drift);
    }
    let fields: Vec<&str> = left.changes.iter().map(|c| c.field.as_str()).collect();
    let mut message = format!(
        "managementPolicy Observe: flaredock writes nothing; {what} differs from the spec in: {}",
        if fields.is_empty() {
            "(nothing)".to_string()
        } else {
            fields.join(", ")
        }
    );
    if let Some(b) = &left.blocked {
        message.push_str(&format!("; {}", b.message()));
    }
    let conditions = status::held(conditions, Reason::Observing, &message, generation, now);
    (conditions, drift)
}

//! Status derived from what was observed after acting: kstatus conditions (`Ready`,
//! `Reconciling`, `Stalled`) plus `ImageReady`, `WorkerBound`, `ApplicationSynced` and
//! `RolloutComplete`. Pure; a condition keeps its transition time while it holds, so a
//! resync that changed nothing changes nothing in the status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::model::*;
use super::plan::{Action, Blocked, Plan};
use super::reason::Reason;
use crate::cloudflare::ApiError;
use crate::spec::{CloudflareContainerStatus, HealthSummary, RolloutPhase, RolloutProgressStatus};

/// Everything the status is derived from.
pub struct StatusInput<'a> {
    pub generation: Option<i64>,
    pub desired: &'a Desired,
    /// Observed after acting.
    pub observed: Option<&'a Observed>,
    /// The plan against that observation: what is still left to do.
    pub remaining: Option<&'a Plan>,
    /// The error that stopped this reconcile, if any.
    pub error: Option<&'a ApiError>,
    /// Percentage of instances on the target version of the active rollout.
    pub rollout_progress: Option<(String, i64)>,
    /// The rollout Cloudflare reverted, when no new one may start.
    pub reverted: Option<&'a RolloutProgressStatus>,
    /// The retry annotation's value now (recorded on a new rollout).
    pub retry: Option<&'a str>,
}

struct Cond {
    kind: &'static str,
    ok: bool,
    /// A [`Reason`], or a Cloudflare error's reason.
    reason: &'static str,
    message: String,
}

fn cond(
    kind: &'static str,
    ok: bool,
    reason: impl Into<&'static str>,
    message: impl Into<String>,
) -> Cond {
    Cond {
        kind,
        ok,
        reason: reason.into(),
        message: message.into(),
    }
}

/// Is this observation and remaining plan the converged state?
/// Converged: nothing left to do, no rollout active, and (when the versions were read)
/// every instance on a version whose configuration is the spec's.
pub fn is_converged(observed: &Observed, remaining: &Plan) -> bool {
    !remaining.changes_anything()
        && remaining.blocked.is_none()
        && observed
            .application
            .as_ref()
            .is_some_and(|a| a.active_rollout_id.is_none())
        && observed.on_spec.is_none_or(|p| p == 100)
}

/// An error as the status says it, with the way out where flaredock knows it.
fn explain(e: &ApiError, desired: &Desired) -> String {
    match e {
        ApiError::NotContainerEnabled { .. } => format!(
            "class {class} of Worker {script} is not container-enabled: deploy that Worker with {class} in its containers (wrangler deploy), or manage it as a CloudflareWorker (spec.worker.name) ({e})",
            class = desired.class_name,
            script = desired.worker.script().unwrap_or("?"),
        ),
        _ => e.to_string(),
    }
}

/// Derives the status; `previous` supplies transition times of unchanged conditions.
pub fn derive(
    previous: Option<&CloudflareContainerStatus>,
    input: &StatusInput<'_>,
    now: jiff::Timestamp,
) -> CloudflareContainerStatus {
    // Cloudflare unreachable (or failing) before anything was observed: the last
    // observed state stands, with a condition saying since when the API is not
    // answering. Healthy objects do not all turn Progressing during an outage.
    if input.observed.is_none()
        && let (Some(previous), Some(e)) = (previous, input.error)
        && e.is_retryable()
        && previous.observed_generation == input.generation
    {
        let mut kept = previous.clone();
        kept.conditions = with_unreachable(&previous.conditions, e, input.generation, now);
        return kept;
    }
    let mut conds: Vec<Cond> = Vec::new();
    let observed = input.observed;
    let remaining = input.remaining;
    let blocked = remaining.and_then(|p| p.blocked.as_ref());
    let app = observed.and_then(|o| o.application.as_ref());

    // ImageReady
    let image_ready = match observed.map(|o| &o.image) {
        Some(ImageState::Ready(image)) => cond(
            "ImageReady",
            true,
            Reason::ImageResolved,
            format!("image {image} is in Cloudflare's registry"),
        ),
        Some(ImageState::Pending { reason, message })
        | Some(ImageState::Failed { reason, message }) => {
            cond("ImageReady", false, *reason, message.clone())
        }
        Some(ImageState::Needs(action)) => cond(
            "ImageReady",
            false,
            Reason::ImagePending,
            format!("to do: {action}"),
        ),
        None => cond(
            "ImageReady",
            false,
            Reason::NotObserved,
            "the image has not been resolved yet",
        ),
    };
    conds.push(image_ready);

    // WorkerBound: the class has a container-enabled namespace.
    let worker = match (observed, blocked) {
        (_, Some(b)) if matches!(b.reason(), Reason::WorkerNotFound | Reason::WorkerNotReady) => {
            cond("WorkerBound", false, b.reason(), b.message())
        }
        (Some(o), _) => match &o.namespace {
            Some(ns) => cond(
                "WorkerBound",
                true,
                Reason::NamespaceBound,
                format!(
                    "class {} of Worker {} has Durable Object namespace {}",
                    input.desired.class_name,
                    input.desired.worker.script().unwrap_or(""),
                    ns.id
                ),
            ),
            None => cond(
                "WorkerBound",
                false,
                Reason::WorkerNotReady,
                "the class has no Durable Object namespace yet",
            ),
        },
        (None, _) => cond(
            "WorkerBound",
            false,
            Reason::NotObserved,
            "the Worker has not been observed yet",
        ),
    };
    conds.push(worker);

    // ApplicationSynced
    let app_pending = remaining.is_some_and(|p| {
        p.actions.iter().any(|a| {
            matches!(
                a,
                Action::CreateApplication { .. }
                    | Action::ModifyApplication { .. }
                    | Action::CreateRollout { .. }
                    | Action::DeleteApplication { .. }
            )
        })
    });
    let synced = match (app, blocked, app_pending) {
        (_, Some(Blocked::Refused { reason, message }), _) => {
            cond("ApplicationSynced", false, *reason, message.clone())
        }
        (Some(a), None, false) => cond(
            "ApplicationSynced",
            true,
            Reason::Synced,
            format!("application {} matches the spec", a.name),
        ),
        (Some(_), _, true) => cond(
            "ApplicationSynced",
            false,
            Reason::ChangesPending,
            "the application differs from the spec",
        ),
        // What keeps the application from being created or updated (a Secret the
        // environment reads, the image, the Worker).
        (_, Some(b), false) => cond("ApplicationSynced", false, b.reason(), b.message()),
        (None, _, _) => cond(
            "ApplicationSynced",
            false,
            Reason::ApplicationAbsent,
            "the application does not exist yet",
        ),
    };
    conds.push(synced);

    // RolloutComplete
    let rollout = match app {
        Some(a) if a.active_rollout_id.is_some() => {
            let pct = input
                .rollout_progress
                .as_ref()
                .map(|(_, p)| *p)
                .unwrap_or(0);
            cond(
                "RolloutComplete",
                false,
                Reason::RolloutInProgress,
                format!("rollout in progress: {pct}% of instances updated"),
            )
        }
        Some(_) => match observed.and_then(|o| o.on_spec) {
            Some(pct) if pct < 100 => cond(
                "RolloutComplete",
                false,
                Reason::VersionsDiffer,
                format!("{pct}% of instances run a version with the spec's configuration"),
            ),
            // The same words whether or not the versions were read this time, so
            // that a quiet resync writes no status.
            _ => cond(
                "RolloutComplete",
                true,
                Reason::RolloutComplete,
                "no rollout in progress",
            ),
        },
        None => cond(
            "RolloutComplete",
            false,
            Reason::ApplicationAbsent,
            "the application does not exist yet",
        ),
    };
    conds.push(rollout);

    // Ready / Stalled / Reconciling
    let converged = matches!((observed, remaining), (Some(o), Some(p)) if is_converged(o, p))
        && input.error.is_none();
    let stalled = match (input.error, blocked) {
        (Some(e), _) if e.is_terminal() => Some((e.reason(), explain(e, input.desired))),
        (_, Some(Blocked::Refused { reason, message })) => Some((reason.as_str(), message.clone())),
        _ => None,
    };
    let (ready_reason, ready_message) = if converged {
        (
            Reason::Ready.as_str(),
            format!(
                "application {} runs {}",
                app.map(|a| a.name.as_str()).unwrap_or(""),
                app.map(|a| a.configuration.image.as_str()).unwrap_or("")
            ),
        )
    } else if let Some((r, m)) = &stalled {
        (*r, m.clone())
    } else if let Some(e) = input.error {
        (e.reason(), explain(e, input.desired))
    } else if let Some(Blocked::Waiting { reason, message }) = blocked {
        // What the plan waits for says more than an image not fetched yet.
        (reason.as_str(), message.clone())
    } else if let Some(c) = conds.iter().find(|c| !c.ok) {
        (c.reason, c.message.clone())
    } else {
        (
            Reason::Progressing.as_str(),
            "changes are being applied".to_string(),
        )
    };
    conds.insert(
        0,
        cond("Ready", converged, ready_reason, ready_message.clone()),
    );
    conds.insert(
        1,
        match &stalled {
            Some((r, m)) => cond("Stalled", true, *r, m.clone()),
            None => cond("Stalled", false, Reason::NotStalled, "no terminal error"),
        },
    );
    conds.insert(
        2,
        if converged || stalled.is_some() {
            cond("Reconciling", false, Reason::Idle, "nothing left to do")
        } else {
            cond("Reconciling", true, ready_reason, ready_message)
        },
    );

    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let conditions = conds
        .into_iter()
        .map(|c| {
            condition_since(
                previous_conditions,
                c.kind,
                c.ok,
                c.reason,
                &c.message,
                input.generation,
                now,
            )
        })
        .collect();

    let image = match observed.map(|o| &o.image) {
        Some(ImageState::Ready(i)) if converged => Some(i.clone()),
        _ => app
            .map(|a| a.configuration.image.clone())
            .or_else(|| previous.and_then(|p| p.image.clone())),
    };
    let rollout = match (
        app.and_then(|a| a.active_rollout_id.clone()),
        previous.and_then(|p| p.rollout.clone()),
    ) {
        (Some(id), prev) => Some(RolloutProgressStatus {
            progress: input
                .rollout_progress
                .as_ref()
                .filter(|(rid, _)| *rid == id)
                .map(|(_, p)| *p)
                .unwrap_or(0),
            // A rollout keeps the retry value it started under.
            retry: match prev {
                Some(p) if p.id == id => p.retry,
                _ => input.retry.map(str::to_string),
            },
            id,
            status: RolloutPhase::Progressing,
        }),
        (None, _) if input.reverted.is_some() => input.reverted.cloned(),
        (None, Some(prev)) if app.is_some() => Some(RolloutProgressStatus {
            status: RolloutPhase::Completed,
            progress: 100,
            ..prev
        }),
        _ => None,
    };
    CloudflareContainerStatus {
        observed_generation: input.generation,
        protected_secret: previous.and_then(|p| p.protected_secret.clone()),
        last_handled_reconcile_at: previous.and_then(|p| p.last_handled_reconcile_at.clone()),
        drift: previous
            .filter(|p| p.observed_generation == input.generation)
            .map(|p| p.drift.clone())
            .unwrap_or_default(),
        pending_adoption: None,
        conditions,
        application_id: app.map(|a| a.id.clone()),
        application_name: app.map(|a| a.name.clone()),
        image,
        durable_object_namespace_id: observed
            .and_then(|o| o.namespace.as_ref().map(|n| n.id.clone())),
        rollout,
        health: app.and_then(|a| a.health.as_ref()).map(|h| HealthSummary {
            active: h.instances.active,
            assigned: h.instances.assigned,
            errors: h.errors.len() as i64,
        }),
    }
}

/// The conditions of a suspended object (`spec.suspend`): `Ready=False`,
/// `Reconciling=False` and `Stalled=False`, each with reason `Suspended`; the message
/// names what is pending. The other conditions are observed as usual.
pub fn suspended(
    conditions: Vec<Condition>,
    pending: &Plan,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Vec<Condition> {
    let fields: Vec<&str> = pending.changes.iter().map(|c| c.field.as_str()).collect();
    let mut message = if fields.is_empty() {
        "spec.suspend is true: flaredock makes no change at Cloudflare (nothing pending)"
            .to_string()
    } else {
        format!(
            "spec.suspend is true: flaredock makes no change at Cloudflare (pending: {})",
            fields.join(", ")
        )
    };
    if let Some(b) = &pending.blocked {
        message.push_str(&format!("; and then: {}", b.message()));
    }
    held(conditions, Reason::Suspended, &message, generation, now)
}

/// `Ready`, `Reconciling` and `Stalled` all False with `reason`: an object flaredock
/// deliberately writes nothing for (suspended, observed only).
pub fn held(
    conditions: Vec<Condition>,
    reason: Reason,
    message: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Vec<Condition> {
    let previous = conditions.clone();
    conditions
        .into_iter()
        .map(|c| match c.type_.as_str() {
            "Ready" | "Reconciling" | "Stalled" => condition_since(
                &previous,
                match c.type_.as_str() {
                    "Ready" => "Ready",
                    "Reconciling" => "Reconciling",
                    _ => "Stalled",
                },
                false,
                reason.as_str(),
                message,
                generation,
                now,
            ),
            _ => c,
        })
        .collect()
}

/// The hash a person approves an adoption by: of the changes it would make.
pub fn adoption_hash(changes: &[crate::reconcile::plan::Change]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for c in changes {
        h.update(c.field.as_bytes());
        h.update([0]);
        h.update(c.from.as_bytes());
        h.update([0]);
        // The wanted value as shown: a destructive change's consequence included.
        h.update(c.shown_to().as_bytes());
        if c.is_destructive() {
            h.update([2]);
        }
        h.update([1]);
    }
    hex::encode(h.finalize())[..12].to_string()
}

/// `changes` as drift entries, keeping when each was first seen in `previous`.
pub fn drift_of(
    changes: &[crate::reconcile::plan::Change],
    previous: &[crate::spec::DriftEntry],
    now: jiff::Timestamp,
) -> Vec<crate::spec::DriftEntry> {
    changes
        .iter()
        .map(|c| {
            let wanted = c.shown_to();
            let at = previous
                .iter()
                .find(|p| p.field == c.field && p.found == c.from && p.wanted == wanted)
                .map(|p| p.at.clone())
                .unwrap_or_else(|| now.to_string());
            crate::spec::DriftEntry {
                field: c.field.clone(),
                found: c.from.clone(),
                wanted,
                destructive: c.is_destructive(),
                at,
            }
        })
        .collect()
}

/// Is this status an object flaredock deliberately writes nothing for (suspended, or
/// observed only and differing)? Nothing to wait for.
pub fn is_suspended(conditions: &[Condition]) -> bool {
    conditions.iter().any(|c| {
        c.type_ == "Ready"
            && matches!(
                Reason::parse(&c.reason),
                Some(Reason::Suspended | Reason::Observing)
            )
    })
}

/// The condition type saying the Cloudflare API does not answer.
pub const UNREACHABLE: &str = "CloudflareReachable";

/// `previous` conditions with `CloudflareReachable=False` (its transition time is when
/// the outage was first seen). The condition goes away with the next observation.
pub fn with_unreachable(
    previous: &[Condition],
    e: &ApiError,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Vec<Condition> {
    let outage = condition_since(
        previous,
        UNREACHABLE,
        false,
        e.reason(),
        &format!(
            "Cloudflare's API is not answering; the conditions above are the last observed state ({e})"
        ),
        generation,
        now,
    );
    let mut out: Vec<Condition> = previous
        .iter()
        .filter(|c| c.type_ != UNREACHABLE)
        .cloned()
        .collect();
    out.push(outage);
    out
}

/// A condition of `kind` evaluated for `generation`, keeping the previous transition
/// time while its status holds (so a resync that changed nothing changes nothing).
pub fn condition_since(
    previous: &[Condition],
    kind: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Condition {
    let status = if ok { "True" } else { "False" }.to_string();
    let last_transition_time = match previous.iter().find(|p| p.type_ == kind) {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(now),
    };
    Condition {
        type_: kind.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time,
        observed_generation: generation,
    }
}

/// The condition of this type, if present.
pub fn condition<'a>(status: &'a CloudflareContainerStatus, kind: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == kind)
}

/// Is the condition of this type `True` (either kind's conditions)?
pub fn is_true(conditions: &[Condition], kind: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == kind && c.status == "True")
}

/// `Ready=True`?
pub fn is_ready(status: &CloudflareContainerStatus) -> bool {
    is_true(&status.conditions, "Ready")
}

/// `Stalled=True`?
pub fn is_stalled(status: &CloudflareContainerStatus) -> bool {
    is_true(&status.conditions, "Stalled")
}

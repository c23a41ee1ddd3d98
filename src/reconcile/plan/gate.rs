//! The Worker gate of a container's plan: nothing is done before the Worker has
//! uploaded the class container-enabled; while a script not yet flaredock's hosts the
//! class live (a wrangler deploy awaiting adoption), the plan is made against what
//! Cloudflare has and held, reviewed and approved with the Worker's.

use super::application::plan_actions_ungated;
use super::{Blocked, Plan};
use crate::cloudflare::types::*;
use crate::reconcile::model::*;
use crate::reconcile::reason::Reason;
use crate::reconcile::worker::model::RecordedTags;

/// Does the Worker's live script host the class as a container (whoever uploaded
/// it): the class's Durable Object namespace exists and an application is linked to
/// it. Enough to plan against what Cloudflare has, never to act.
fn hosted_live(desired: &Desired, observed: &Observed) -> bool {
    let Some(ns) = &observed.namespace else {
        return false;
    };
    let linked = |a: &Application| a.namespace_id() == Some(ns.id.as_str());
    matches!(
        desired.worker,
        WorkerTarget::Managed {
            script: Some(_),
            ..
        }
    ) && observed.script.is_some()
        && (observed.application.as_ref().is_some_and(linked)
            || observed.namespace_application.as_ref().is_some_and(linked))
}

/// Is the Worker ready to host this container's class? `Err` says what is awaited.
pub fn worker_gate(desired: &Desired, observed: &Observed) -> Result<(), Blocked> {
    let class = &desired.class_name;
    match &desired.worker {
        WorkerTarget::Managed {
            object,
            script: None,
        } => Err(Blocked::Waiting {
            reason: Reason::WorkerNotReady,
            message: format!(
                "CloudflareWorker {object} (spec.worker.name) does not exist in this namespace"
            ),
        }),
        WorkerTarget::Managed {
            object,
            script: Some(script),
        } => {
            let enabled = observed
                .script
                .as_ref()
                .is_some_and(|s| RecordedTags::read(s).has_container(class));
            if enabled && observed.namespace.is_some() {
                Ok(())
            } else {
                Err(Blocked::Waiting {
                    reason: Reason::WorkerNotReady,
                    message: format!(
                        "waiting for CloudflareWorker {object} to upload script {script} with class {class} in containers"
                    ),
                })
            }
        }
        WorkerTarget::External { script } => match (&observed.script, &observed.namespace) {
            (_, Some(_)) => Ok(()),
            (None, None) => Err(Blocked::Waiting {
                reason: Reason::WorkerNotFound,
                message: format!(
                    "Worker script {script} does not exist in the account; deploy it with class {class} in its containers (wrangler deploy), or manage it as a CloudflareWorker"
                ),
            }),
            (Some(_), None) => Err(Blocked::Waiting {
                reason: Reason::WorkerNotFound,
                message: format!(
                    "Worker script {script} has no Durable Object namespace for class {class}; deploy it with {class} in its containers (wrangler deploy), or manage it as a CloudflareWorker"
                ),
            }),
        },
    }
}

pub(super) fn plan_actions(desired: &Desired, observed: &Observed, adopted: Option<&str>) -> Plan {
    // The Worker must have uploaded the class container-enabled before anything is
    // done. While its script is not yet flaredock's but hosts the class live (a
    // wrangler deploy awaiting adoption), what this object would change is planned
    // against what Cloudflare has, and held: reviewed, and approved, with the Worker's.
    let Err(awaited) = worker_gate(desired, observed) else {
        return plan_actions_ungated(desired, observed, adopted);
    };
    if !hosted_live(desired, observed) {
        return Plan {
            blocked: Some(awaited),
            ..Default::default()
        };
    }
    let mut plan = plan_actions_ungated(desired, observed, adopted);
    plan.held = std::mem::take(&mut plan.actions);
    // A refusal stands whatever the Worker does; anything else waits for it.
    if !matches!(plan.blocked, Some(Blocked::Refused { .. })) {
        let message = if plan.changes.is_empty() {
            awaited.message().to_string()
        } else {
            format!(
                "{}; the changes shown are made once it has (approve an adoption with the Worker's)",
                awaited.message()
            )
        };
        plan.blocked = Some(Blocked::Waiting {
            reason: awaited.reason(),
            message,
        });
    }
    plan
}

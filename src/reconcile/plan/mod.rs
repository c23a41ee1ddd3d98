//! The plan of a CloudflareContainer: a pure function from (desired, observed) to
//! ordered actions with a field-level diff. No I/O; the CLI prints it, the actor runs
//! it, most tests hit it.
//!
//! [`plan()`] (here) gets the image first, then goes through the parts, each named after
//! what it decides:
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | [`Plan`], [`Blocked`], the JSON of `plan -o json`, and [`plan()`]: the image action first (a copy's digest pinned, a tag's re-read) |
//! | `actions.rs` | [`Action`]: the changes to make at Cloudflare, as shown and named |
//! | `diff.rs` | [`Change`], [`ChangeEffect`]: the field-level diff, the environment's, and [`runs_spec`] |
//! | `gate.rs` | [`worker_gate`]: whether the Worker hosts the class, and the plan held while it does not |
//! | `adoption.rs` | the tag an adoption deploys and approves, as the spec names it |
//! | `application.rs` | the application: create, replace, modify in place, roll out, and creates deferred behind deletions |

mod actions;
mod adoption;
mod application;
mod diff;
mod gate;

use std::fmt;

use super::model::*;
use super::reason::Reason;

pub use actions::Action;
use adoption::{adopted_tag, names_tag};
use application::defer_blocked_creates;
pub use diff::{Change, ChangeEffect, runs_spec};
use gate::plan_actions;
pub use gate::worker_gate;

/// Ordered actions, the diff that motivates them, and what blocks the rest.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub changes: Vec<Change>,
    pub blocked: Option<Blocked>,
    /// Actions that make `changes` once `blocked` clears, shown for review (and
    /// covered by an adoption's approval) but never acted on: a container's adoption
    /// while its Worker's awaits.
    pub held: Vec<Action>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.actions.is_empty() && self.blocked.is_none()
    }

    /// Whether the plan would change anything: an action other than re-reading the
    /// tag of the repository the application already runs from (which changes
    /// something only if the tag moved: then the plan made after it says so), or
    /// keeping the record of a Worker's reachability on its script.
    pub fn changes_anything(&self) -> bool {
        !self.changes.is_empty()
            || self.actions.iter().any(|a| {
                !matches!(
                    a,
                    Action::GetImage(ImageAction::Resolve { .. })
                        | Action::Reach(super::worker::reach::ReachAction::Record { .. })
                )
            })
    }

    pub(crate) fn refuse(reason: Reason, message: String) -> Plan {
        Plan {
            blocked: Some(Blocked::Refused { reason, message }),
            ..Default::default()
        }
    }

    pub(super) fn wait(mut self, reason: Reason, message: String) -> Plan {
        self.blocked = Some(Blocked::Waiting { reason, message });
        self
    }

    pub(super) fn change(&mut self, field: &str, from: impl fmt::Display, to: impl fmt::Display) {
        self.changes
            .push(Change::new(field, from.to_string(), to.to_string()));
    }
}

impl Plan {
    /// The plan as the stable JSON of `flaredock plan -o json` (one object's entry;
    /// `schemas/plan.schema.json`). Secret values never appear: changes name secrets
    /// by their hash or source only.
    pub fn to_json(&self) -> serde_json::Value {
        let action =
            |a: &Action| serde_json::json!({"kind": a.kind(), "description": a.to_string()});
        let mut j = serde_json::json!({
            "changes": self.changes.iter().map(|c| {
                let mut j = serde_json::json!({
                    "field": c.field, "from": c.from, "to": c.to,
                    "destructive": c.is_destructive(),
                });
                if let Some(why) = c.consequence() {
                    j["consequence"] = serde_json::json!(why);
                }
                j
            }).collect::<Vec<_>>(),
            "actions": self.actions.iter().map(action).collect::<Vec<_>>(),
            "blocked": self.blocked.as_ref().map(|b| serde_json::json!({
                "waiting": matches!(b, Blocked::Waiting { .. }),
                "reason": b.reason().as_str(),
                "message": b.message(),
            })),
        });
        if !self.held.is_empty() {
            j["held"] = self.held.iter().map(action).collect();
        }
        j
    }
}

/// Why nothing (more) can be done now.
#[derive(Clone, Debug, PartialEq)]
pub enum Blocked {
    /// Will not proceed until the spec changes (status `Stalled`).
    Refused { reason: Reason, message: String },
    /// Waiting on something outside (image, Worker script): retried later.
    Waiting { reason: Reason, message: String },
}

impl Blocked {
    pub fn reason(&self) -> Reason {
        match self {
            Blocked::Refused { reason, .. } | Blocked::Waiting { reason, .. } => *reason,
        }
    }
    pub fn message(&self) -> &str {
        match self {
            Blocked::Refused { message, .. } | Blocked::Waiting { message, .. } => message,
        }
    }
}

/// Desired vs observed → the plan.
pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
    // Getting the image is the first action. A copy's digest is known before it is
    // made: the plan deploys that digest, unless the application already runs it. A
    // build's or a tag's digest is known only once act has it: the plan shows the
    // tagged reference, and act plans again from what it found.
    let mut get = None;
    let mut reread = None;
    let adopted = adopted_tag(desired, observed);
    let pinned;
    let observed = match &observed.image {
        ImageState::Needs(action) => {
            let image = match action.deploys() {
                Some(deploys) => match running_image(observed) {
                    Some(r) if same_image(r, &deploys) => r.to_string(),
                    _ => {
                        get = Some(action.clone());
                        deploys
                    }
                },
                // A tag of the repository the application already runs from: until
                // act re-reads it, the plan assumes the digest it runs (the read is
                // not a change, and is always done).
                // (A build is never taken for one: it always goes to the object's own
                // repository, the one the application runs from.)
                // In an adoption, only when it runs that very tag: any other image
                // it runs is shown replaced by the tag (see `adopted_tag`).
                None if matches!(action, ImageAction::Resolve { .. })
                    && running_image(observed)
                        .is_some_and(|r| same_repository(r, &action.placeholder()))
                    && adopted.as_deref().is_none_or(|tag| {
                        running_image(observed).is_some_and(|r| names_tag(r, tag))
                    }) =>
                {
                    reread = Some(action.clone());
                    running_image(observed).unwrap_or_default().to_string()
                }
                None => {
                    get = Some(action.clone());
                    action.placeholder()
                }
            };
            pinned = Observed {
                image: ImageState::Ready(image),
                ..observed.clone()
            };
            &pinned
        }
        _ => observed,
    };
    let mut plan = plan_actions(desired, observed, adopted.as_deref());
    defer_blocked_creates(&mut plan, observed);
    let planned = if plan.held.is_empty() {
        &mut plan.actions
    } else {
        &mut plan.held
    };
    if let Some(get) = get
        && !planned.is_empty()
    {
        // The tagged reference standing in for a digest act has yet to find says so.
        let shown = match &get {
            ImageAction::Build { .. } => Some("digest once built"),
            ImageAction::Resolve { .. } => Some("digest read at apply"),
            ImageAction::Copy { .. } => None,
        };
        if let Some(shown) = shown {
            let p = get.placeholder();
            for c in plan.changes.iter_mut().filter(|c| c.to == p) {
                c.to = format!("{p} ({shown})");
            }
        }
        planned.insert(0, Action::GetImage(get));
    }
    if let Some(reread) = reread {
        // A held plan holds it too: nothing is read with minted credentials (a write)
        // for an object that waits, and its changes stay those put up for review.
        if plan.held.is_empty() {
            plan.actions.insert(0, Action::GetImage(reread));
        } else {
            plan.held.insert(0, Action::GetImage(reread));
        }
    }
    plan
}

/// The image the application runs, or is rolling out to.
fn running_image(observed: &Observed) -> Option<&str> {
    observed
        .target_configuration
        .as_ref()
        .or(observed.application.as_ref().map(|a| &a.configuration))
        .map(|c| c.image.as_str())
}

//! What a reconcile reports, for either kind: what it changed (`Happening`), its
//! outcome, and what deleting an object did.

use super::pipeline::ManagedStatus;
use super::plan::{self, Plan};
use super::status;
use crate::cloudflare::ApiError;
use crate::spec::CloudflareContainerStatus;

/// Something flaredock changed at Cloudflare: a reason (`PascalCase`, for Kubernetes
/// Events and metrics) and a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Happening {
    pub reason: &'static str,
    pub message: String,
}

impl Happening {
    pub(crate) fn new(reason: &'static str, message: String) -> Self {
        Happening { reason, message }
    }
}

impl std::fmt::Display for Happening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The result of one reconcile of one object of either kind.
#[derive(Clone, Debug)]
pub struct Reconciled<S> {
    /// The plan that was acted on.
    pub plan: Plan,
    pub status: S,
    /// What was changed, in order.
    pub events: Vec<Happening>,
    /// The changes that correct drift: what Cloudflare changed behind flaredock's back
    /// on a Ready object whose spec did not change (a new value of a Secret that the
    /// environment reads is not drift).
    pub drift: Vec<plan::Change>,
    pub error: Option<ApiError>,
    /// The reconcile was dropped at its deadline (the status says
    /// `ReconcileTimedOut`).
    pub timed_out: bool,
}

/// The result of one reconcile of one CloudflareContainer.
pub type ReconcileOutcome = Reconciled<CloudflareContainerStatus>;

impl<S: ManagedStatus> Reconciled<S> {
    pub(crate) fn new(plan: Plan, status: S) -> Self {
        Reconciled {
            plan,
            status,
            events: vec![],
            drift: vec![],
            error: None,
            timed_out: false,
        }
    }

    pub fn ready(&self) -> bool {
        self.status.is_ready()
    }

    /// Nothing more will happen without a change of spec or credentials.
    pub fn stalled(&self) -> bool {
        status::is_true(self.status.conditions(), "Stalled")
    }

    /// `spec.suspend`: observed, nothing written.
    pub fn suspended(&self) -> bool {
        status::is_suspended(self.status.conditions())
    }

    /// An adoption waits for a person's approval (`status.pendingAdoption`, and `Ready`
    /// says `AdoptionPending`; an approved one held for its Worker waits on that).
    pub fn awaiting_approval(&self) -> bool {
        self.status.pending_adoption().is_some()
            && self
                .status
                .conditions()
                .iter()
                .any(|c| c.type_ == "Ready" && super::reason::Reason::AdoptionPending.is(&c.reason))
    }
}

/// What the command line reports of a reconcile, for either kind.
pub trait Outcome {
    fn ready(&self) -> bool;
    fn stalled(&self) -> bool;
    /// Held back on purpose: `spec.suspend`, or `Observe` with differences.
    fn suspended(&self) -> bool;
    fn awaiting_approval(&self) -> bool;
    fn error(&self) -> Option<&ApiError>;
    /// Over a whole converge, every round's changes and actions (see `Converged`).
    fn plan(&self) -> &Plan;
    fn events(&self) -> &[Happening];
    fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition];
    /// The status as the controller writes it.
    fn status_json(&self) -> serde_json::Value;
}

impl<S: ManagedStatus + serde::Serialize> Outcome for Reconciled<S> {
    fn ready(&self) -> bool {
        Reconciled::ready(self)
    }
    fn stalled(&self) -> bool {
        Reconciled::stalled(self)
    }
    fn suspended(&self) -> bool {
        Reconciled::suspended(self)
    }
    fn awaiting_approval(&self) -> bool {
        Reconciled::awaiting_approval(self)
    }
    fn error(&self) -> Option<&ApiError> {
        self.error.as_ref()
    }
    fn plan(&self) -> &Plan {
        &self.plan
    }
    fn events(&self) -> &[Happening] {
        &self.events
    }
    fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
        self.status.conditions()
    }
    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
}

/// What deleting an object did. Only `Deleted`, `Orphaned`, `KeptData` and
/// `DeletedWithData` are final; `Waiting` asks to be called again (the controller keeps
/// its finalizer meanwhile).
#[derive(Clone, Debug, PartialEq)]
pub enum DeleteOutcome {
    /// Nothing this object owns is left at Cloudflare; these went in this call (empty:
    /// there was nothing left to delete).
    Deleted(Vec<String>),
    /// `deletionPolicy: Orphan`: these were left in place.
    Orphaned(Vec<String>),
    /// Under way: `names` are still there, for the reason `on`. Calling again is safe (a
    /// delete sent again to an application being deleted is harmless).
    Waiting { names: Vec<String>, on: WaitingOn },
    /// A Worker's `deletionPolicy: Delete` left its script in place, data kept: these
    /// classes have Durable Object namespaces (only `DeleteWithData` destroys them).
    KeptData {
        script: String,
        classes: Vec<String>,
    },
    /// `deletionPolicy: DeleteWithData`: the script went with the Durable Object
    /// namespaces of these classes and all their data.
    DeletedWithData {
        script: String,
        classes: Vec<String>,
    },
}

impl DeleteOutcome {
    /// Nothing more will happen: the finalizer may go.
    pub fn finished(&self) -> bool {
        !matches!(self, DeleteOutcome::Waiting { .. })
    }
}

/// What an unfinished delete waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitingOn {
    /// Cloudflare still lists the applications: it deletes them asynchronously.
    Deletion,
    /// These applications run on the Worker script's Durable Object classes: the
    /// script is deleted after them.
    Applications,
}

impl std::fmt::Display for WaitingOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WaitingOn::Deletion => "Cloudflare still lists them (it deletes asynchronously)",
            WaitingOn::Applications => {
                "they run on the Worker script's Durable Object classes and go first"
            }
        })
    }
}

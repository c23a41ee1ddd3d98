//! What both kinds share of the policy: adoption approval (and a pending adoption),
//! the management policy, and the drift they report.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How an adoption is approved.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AdoptionApproval {
    /// A person approves the plan, by its hash.
    #[default]
    Manual,
    /// Adopt at once.
    Automatic,
}

impl AdoptionApproval {
    pub fn is_manual(&self) -> bool {
        *self == AdoptionApproval::Manual
    }
}

/// The annotation that approves a pending adoption, by its plan's hash.
pub const APPROVE_ADOPTION_ANNOTATION: &str = "flaredock.dev/approve-adoption";

/// An adoption waiting for approval: what it would change, and the hash to approve.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PendingAdoption {
    /// Approve with the annotation `flaredock.dev/approve-adoption: <hash>`.
    pub hash: String,
    pub changes: Vec<DriftEntry>,
}

/// Management policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ManagementPolicy {
    /// Make Cloudflare match the spec.
    #[default]
    Manage,
    /// Only read and report; never write.
    Observe,
}

impl ManagementPolicy {
    pub fn is_manage(&self) -> bool {
        *self == ManagementPolicy::Manage
    }
}

/// A field Cloudflare had otherwise than the spec: corrected (`Manage`, found at a
/// resync of a Ready object) or only reported (`Observe`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DriftEntry {
    pub field: String,
    pub found: String,
    pub wanted: String,
    /// Making it removes something live (a binding, setting or route the spec leaves
    /// out): `wanted` says what is lost.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destructive: bool,
    /// When it was first seen (RFC 3339).
    pub at: String,
}

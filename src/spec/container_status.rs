//! The `CloudflareContainer` status: conditions, the rollout as last observed, health.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DriftEntry, PendingAdoption};

/// Where a rollout stands (`status.rollout.status`, as the lowercase word). A word
/// flaredock does not know (written by another version) is kept as it is, never a
/// parse failure.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum RolloutPhase {
    #[default]
    Pending,
    Progressing,
    Completed,
    Reverted,
    Replaced,
    Other(String),
}

impl RolloutPhase {
    const KNOWN: [(RolloutPhase, &'static str); 5] = [
        (RolloutPhase::Pending, "pending"),
        (RolloutPhase::Progressing, "progressing"),
        (RolloutPhase::Completed, "completed"),
        (RolloutPhase::Reverted, "reverted"),
        (RolloutPhase::Replaced, "replaced"),
    ];

    pub fn as_str(&self) -> &str {
        match self {
            RolloutPhase::Other(s) => s,
            known => RolloutPhase::KNOWN
                .iter()
                .find(|(p, _)| p == known)
                .map(|(_, s)| *s)
                .unwrap_or_default(),
        }
    }

    pub fn parse(s: &str) -> RolloutPhase {
        RolloutPhase::KNOWN
            .iter()
            .find(|(_, w)| *w == s)
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| RolloutPhase::Other(s.to_string()))
    }
}

impl std::fmt::Display for RolloutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RolloutPhase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RolloutPhase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(RolloutPhase::parse(&s))
    }
}

/// Rollout progress as last observed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutProgressStatus {
    pub id: String,
    /// pending, progressing, completed, reverted or replaced.
    #[schemars(with = "String")]
    pub status: RolloutPhase,
    /// Share of instances on the new version, in percent.
    #[serde(default)]
    pub progress: i64,
    /// The `flaredock.dev/retry-rollout` annotation when this rollout started; another
    /// value retries a reverted rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
}

/// Instance health as Cloudflare reports it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HealthSummary {
    pub active: i64,
    pub assigned: i64,
    pub errors: i64,
}

/// Observed state, kstatus compatible.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CloudflareContainerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The credentials Secret that carries this object's finalizer
    /// `flaredock.dev/credentials-in-use` (released when `credentialsSecretRef` changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_secret: Option<String>,
    /// The last `reconcile.fluxcd.io/requestedAt` annotation value handled (Flux's
    /// "reconcile now").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// Differences from the spec found at Cloudflare: corrected at the last resync
    /// (`Manage`), or standing (`Observe`). Cleared by a new generation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftEntry>,
    /// An adoption waiting for approval (`adoptionApproval: Manual`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_adoption: Option<PendingAdoption>,

    /// Ready, Reconciling, Stalled, ImageReady, WorkerReady, ApplicationSynced, RolloutComplete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    /// Deployed image, as a digest reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_object_namespace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutProgressStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSummary>,
}

#[cfg(test)]
mod rollout_phase_tests {
    use super::RolloutPhase;

    #[test]
    fn known_words_parse_and_an_unknown_one_is_kept_as_it_is() {
        let read: Vec<RolloutPhase> =
            serde_json::from_str(r#"["progressing", "reverted", "paused_by_cloudflare"]"#)
                .expect("never a parse failure");
        assert_eq!(
            read,
            [
                RolloutPhase::Progressing,
                RolloutPhase::Reverted,
                RolloutPhase::Other("paused_by_cloudflare".into()),
            ]
        );
        // Written back as it was read.
        assert_eq!(
            serde_json::to_string(&read).expect("json"),
            r#"["progressing","reverted","paused_by_cloudflare"]"#
        );
    }
}

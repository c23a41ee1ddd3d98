//! Wire types of the containers API (`cc_*`): applications, their configuration,
//! rollouts, versions and registry credentials.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cloudflare::token::Secret;

/// `cc_InstanceType`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InstanceType {
    #[serde(rename = "lite")]
    Lite,
    #[serde(rename = "basic")]
    Basic,
    #[serde(rename = "standard-1")]
    Standard1,
    #[serde(rename = "standard-2")]
    Standard2,
    #[serde(rename = "standard-3")]
    Standard3,
    #[serde(rename = "standard-4")]
    Standard4,
    /// A value this version of flaredock does not know (responses only).
    #[serde(other, rename = "unknown")]
    Unknown,
}

impl InstanceType {
    /// The named types, smallest first.
    pub const NAMED: [InstanceType; 6] = [
        InstanceType::Lite,
        InstanceType::Basic,
        InstanceType::Standard1,
        InstanceType::Standard2,
        InstanceType::Standard3,
        InstanceType::Standard4,
    ];

    /// Cloudflare's published size of a named type: (vCPU, memory MiB, disk MB), from
    /// developers.cloudflare.com/containers/platform/limits (lite 1/16 vCPU, 256 MiB,
    /// 2 GB … standard-4 4 vCPU, 12 GiB, 20 GB). The API may answer a configuration in
    /// this expanded form (wrangler rebuilds `instance_type` from it).
    pub fn resources(self) -> Option<(f64, i64, i64)> {
        Some(match self {
            InstanceType::Lite => (0.0625, 256, 2000),
            InstanceType::Basic => (0.25, 1024, 4000),
            InstanceType::Standard1 => (0.5, 4096, 8000),
            InstanceType::Standard2 => (1.0, 6144, 12000),
            InstanceType::Standard3 => (2.0, 8192, 16000),
            InstanceType::Standard4 => (4.0, 12288, 20000),
            InstanceType::Unknown => return None,
        })
    }

    /// The named type of exactly these resources (a missing disk matches any).
    pub fn from_resources(
        vcpu: f64,
        memory_mib: i64,
        disk_mb: Option<i64>,
    ) -> Option<InstanceType> {
        InstanceType::NAMED.into_iter().find(|t| {
            t.resources().is_some_and(|(v, m, d)| {
                (v - vcpu).abs() < 1e-9 && m == memory_mib && disk_mb.is_none_or(|x| x == d)
            })
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InstanceType::Lite => "lite",
            InstanceType::Basic => "basic",
            InstanceType::Standard1 => "standard-1",
            InstanceType::Standard2 => "standard-2",
            InstanceType::Standard3 => "standard-3",
            InstanceType::Standard4 => "standard-4",
            InstanceType::Unknown => "unknown",
        }
    }
}

/// `cc_SchedulingPolicy` (the official schema knows only `default`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SchedulingPolicy {
    #[default]
    Default,
    #[serde(other)]
    Unknown,
}

/// `cc_EnvironmentVariable`. Its `Debug` never shows the value, which may have come
/// from a Secret.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EnvironmentVariable {
    pub name: String,
    pub value: String,
}

impl std::fmt::Debug for EnvironmentVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvironmentVariable")
            .field("name", &self.name)
            .field("value", &"[redacted]")
            .finish()
    }
}

/// `cc_Label`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Label {
    pub name: String,
    pub value: String,
}

/// `cc_Disk`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Disk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_mb: Option<i64>,
}

/// `cc_ObservabilityLogs`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ObservabilityLogs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `cc_DeploymentObservability` / `cc_ApplicationObservability` (the fields flaredock uses).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Observability {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<ObservabilityLogs>,
}

impl Observability {
    pub fn logs_enabled(&self) -> bool {
        self.logs.as_ref().and_then(|l| l.enabled).unwrap_or(false)
    }
}

/// `cc_UserDeploymentConfiguration` / `cc_ModifyUserDeploymentConfiguration`: the fields
/// flaredock manages.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct DeploymentConfiguration {
    #[serde(default)]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<InstanceType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Disk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<Vec<EnvironmentVariable>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<Label>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<Observability>,
}

impl DeploymentConfiguration {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .as_ref()?
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }
}

/// `cc_ApplicationConstraints`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ApplicationConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    /// Not in the official schema: what `wrangler deploy` sends (`[1, 2]` by default)
    /// and Cloudflare returns. flaredock never sets it and leaves it out of comparisons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<i64>>,
}

/// `cc_DurableObjectsConfiguration`: by namespace id, or by script and class.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum DurableObjectsConfiguration {
    NamespaceId {
        namespace_id: String,
    },
    ScriptAndClass {
        script_name: String,
        class_name: String,
    },
}

/// `cc_ApplicationDurableObjectsConfiguration` (what an application reports).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ApplicationDurableObjects {
    pub namespace_id: String,
}

/// `cc_ApplicationHealthInstances`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct HealthInstances {
    #[serde(default)]
    pub active: i64,
    #[serde(default)]
    pub assigned: i64,
}

/// `cc_ApplicationHealth`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ApplicationHealth {
    #[serde(default)]
    pub instances: HealthInstances,
    #[serde(default)]
    pub errors: Vec<Value>,
}

/// `cc_Application`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Application {
    pub id: String,
    #[serde(default)]
    pub account_id: String,
    pub name: String,
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub scheduling_policy: SchedulingPolicy,
    #[serde(default)]
    pub instances: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<i64>,
    #[serde(default)]
    pub configuration: DeploymentConfiguration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<ApplicationConstraints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_objects: Option<ApplicationDurableObjects>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<ApplicationHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_rollout_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<Observability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_active_grace_period: Option<i64>,
}

impl Application {
    pub fn namespace_id(&self) -> Option<&str> {
        self.durable_objects
            .as_ref()
            .map(|d| d.namespace_id.as_str())
    }
}

/// `cc_CreateApplicationRequest`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CreateApplicationRequest {
    pub name: String,
    pub scheduling_policy: SchedulingPolicy,
    pub instances: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<i64>,
    pub configuration: DeploymentConfiguration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<ApplicationConstraints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_objects: Option<DurableObjectsConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<Observability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_active_grace_period: Option<i64>,
}

/// `cc_ContainersModifyApplicationRequestBody` (only what can change without a rollout).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ModifyApplicationRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<ApplicationConstraints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<Observability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_active_grace_period: Option<i64>,
}

impl ModifyApplicationRequest {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Rollout `strategy` of `cc_CreateApplicationRolloutRequest`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStrategy {
    Rolling,
    NewInstances,
    #[serde(other)]
    Unknown,
}

/// Rollout `kind`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RolloutKind {
    FullAuto,
    FullManual,
    DurableObjectsAuto,
    #[serde(other)]
    Unknown,
}

/// Rollout `status` of `cc_ApplicationRollout`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    Pending,
    Progressing,
    Completed,
    Reverted,
    Replaced,
    #[serde(other)]
    Unknown,
}

impl RolloutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStatus::Pending => "pending",
            RolloutStatus::Progressing => "progressing",
            RolloutStatus::Completed => "completed",
            RolloutStatus::Reverted => "reverted",
            RolloutStatus::Replaced => "replaced",
            RolloutStatus::Unknown => "unknown",
        }
    }
}

/// The step sizes Cloudflare accepts for rolling rollouts.
pub const STEP_PERCENTAGES: [i64; 6] = [5, 10, 20, 25, 50, 100];

/// `cc_CreateApplicationRolloutRequest`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CreateRolloutRequest {
    pub description: String,
    pub strategy: RolloutStrategy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RolloutKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_percentage: Option<i64>,
    /// Explicit steps, used when `step_percentage` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<RolloutStepRequest>>,
    pub target_configuration: DeploymentConfiguration,
}

/// `cc_RolloutStepRequest`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RolloutStepRequest {
    pub description: String,
    pub step_size: StepSize,
}

/// `cc_ApplicationRolloutProgress`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct RolloutProgress {
    #[serde(default)]
    pub total_steps: i64,
    #[serde(default)]
    pub current_step: i64,
    #[serde(default)]
    pub updated_instances: i64,
    #[serde(default)]
    pub total_instances: i64,
}

/// `cc_RolloutStep` step size.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct StepSize {
    pub percentage: i64,
}

/// `cc_RolloutStep`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct RolloutStep {
    pub id: i64,
    pub step_size: StepSize,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub status: String,
}

/// `cc_ApplicationRollout`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ApplicationRollout {
    pub id: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub last_updated_at: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "unknown_kind")]
    pub kind: RolloutKind,
    #[serde(default = "unknown_strategy")]
    pub strategy: RolloutStrategy,
    #[serde(default)]
    pub current_version: i64,
    #[serde(default)]
    pub target_version: i64,
    #[serde(default)]
    pub current_configuration: DeploymentConfiguration,
    #[serde(default)]
    pub target_configuration: DeploymentConfiguration,
    #[serde(default = "unknown_status")]
    pub status: RolloutStatus,
    #[serde(default)]
    pub health: ApplicationHealth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RolloutProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<RolloutStep>>,
}

fn unknown_kind() -> RolloutKind {
    RolloutKind::Unknown
}
fn unknown_strategy() -> RolloutStrategy {
    RolloutStrategy::Unknown
}
fn unknown_status() -> RolloutStatus {
    RolloutStatus::Unknown
}

/// `cc_ApplicationVersion`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ApplicationVersion {
    pub version: i64,
    pub percentage: i64,
    #[serde(default)]
    pub configuration: DeploymentConfiguration,
}

/// `cc_ContainersDeleteApplicationResponseBody`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct DeleteApplicationResponse {
    #[serde(default)]
    pub message: String,
}

/// `cc_ImageRegistryPermissions`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RegistryPermission {
    Pull,
    Push,
    List,
    #[serde(other)]
    Unknown,
}

/// `cc_ImageRegistryCredentialsConfiguration`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RegistryCredentialsRequest {
    pub permissions: Vec<RegistryPermission>,
    pub expiration_minutes: i64,
}

/// `cc_ContainersAccountRegistryToken`. The password is a [`Secret`].
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RegistryCredentials {
    pub account_id: String,
    pub registry_host: String,
    pub username: String,
    pub password: Secret,
}

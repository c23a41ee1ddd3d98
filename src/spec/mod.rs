//! The `CloudflareContainer` resource (`flaredock.dev/v1alpha1`): its spec, status and
//! validation. The schema carries the rules for the API server (enums, ranges,
//! patterns, CEL); [`validate`] enforces the same rules for the command line, naming
//! the field.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::oci::Reference;

pub mod bindings;
mod crd;
pub mod crd_rules;
pub mod reach;
mod validate;
pub mod worker;
pub mod worker_settings;

pub use bindings::WorkerBinding;
pub use crd::{all_crds_yaml, container_crd, crd_yaml, worker_crd, worker_crd_yaml};
pub use validate::{FieldError, is_js_identifier, validate, validate_worker};
pub use worker::*;

/// Annotation that retries a reverted rollout (any new value) without a spec change.
pub const RETRY_ROLLOUT_ANNOTATION: &str = "flaredock.dev/retry-rollout";

/// Label on the Cloudflare application's configuration naming the object that owns it.
pub const OWNER_LABEL: &str = "flaredock.dev/owner";

/// Pattern of a JavaScript identifier (Durable Object class, binding name).
pub const JS_IDENTIFIER: &str = r"^[A-Za-z_$][A-Za-z0-9_$]*$";
/// Pattern of an environment variable name.
pub const ENV_NAME: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";
/// Pattern of a Cloudflare application name.
pub const APPLICATION_NAME: &str = r"^[a-zA-Z0-9]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?$";
/// Pattern of a Worker script name.
pub const SCRIPT_NAME: &str = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$";
/// Pattern of an image tag.
pub const TAG: &str = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";

/// A Docker image run on Cloudflare Containers, owned by a Durable Object class of a
/// Worker. flaredock copies or builds the image into Cloudflare's registry, creates or
/// updates the container application, binds it to the Worker and rolls changes out.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flaredock.dev",
    version = "v1alpha1",
    kind = "CloudflareContainer",
    plural = "cloudflarecontainers",
    shortname = "cfc",
    category = "flaredock",
    namespaced,
    status = "CloudflareContainerStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".status.image","priority":0}"#,
    printcolumn = r#"{"name":"Application","type":"string","jsonPath":".status.applicationName"}"#,
    printcolumn = r#"{"name":"Rollout","type":"integer","jsonPath":".status.rollout.progress","description":"Percent of instances on the new version during a rollout"}"#,
    printcolumn = r#"{"name":"Suspended","type":"boolean","jsonPath":".spec.suspend"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("has(self.image) != has(self.build)").message("exactly one of image or build must be set"),
    validation = Rule::new("!(has(self.instanceType) && has(self.resources))").message("instanceType and resources are mutually exclusive")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudflareContainerSpec {
    /// Durable Object class that owns the container instances (a JavaScript identifier
    /// exported by the Worker script).
    #[schemars(
        regex(pattern = r"^[A-Za-z_$][A-Za-z0-9_$]*$"),
        length(min = 1, max = 128)
    )]
    pub class_name: String,

    /// Name of the Cloudflare container application. Defaults to metadata.name.
    /// Changing it replaces the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?$"))]
    pub application_name: Option<String>,

    /// A prebuilt image to run (exactly one of image or build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSource>,

    /// Build the image from a Dockerfile (exactly one of image or build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSpec>,

    /// Tag in Cloudflare's registry. Defaults to the source tag (image) or a tag derived
    /// from the build inputs (build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"))]
    pub tag: Option<String>,

    /// Predefined instance size; `lite` when neither instanceType nor resources is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<InstanceTypeName>,

    /// Custom instance size, instead of instanceType.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,

    /// Upper bound of instances the application may run.
    #[serde(default = "default_max_instances")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_instances: i64,

    /// Scheduling policy of the application.
    #[serde(default)]
    pub scheduling_policy: SchedulingPolicyName,

    /// Where instances may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Constraints>,

    /// Logging of the container instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<ObservabilitySpec>,

    /// Environment variables of the container, as a Pod's: `{name, value}` or
    /// `{name, valueFrom: {secretKeyRef: {name, key}}}` (a Secret of this namespace;
    /// its value is sent to Cloudflare and never printed, logged or put in status).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub env: Vec<EnvVar>,

    /// How image, resource and environment changes are rolled out.
    #[serde(default)]
    pub rollout: RolloutSpec,

    /// The Worker whose Durable Object class owns the instances.
    pub worker: WorkerRef,

    /// Stop every write to Cloudflare for this object (Flux's convention): it is still
    /// observed, its status says `Ready=False, Suspended` with what is pending.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,

    /// Take over an existing application of the same name that flaredock did not create.
    #[serde(default)]
    pub adopt: bool,

    /// With `adopt`: `Manual` (default) writes the adoption's changes and their hash to
    /// `status.pendingAdoption` and waits for the annotation
    /// `flaredock.dev/approve-adoption: <hash>`; `Automatic` adopts at once.
    #[serde(default, skip_serializing_if = "AdoptionApproval::is_manual")]
    pub adoption_approval: AdoptionApproval,

    /// What happens to the Cloudflare application when this object is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// `Manage` (default): make Cloudflare match. `Observe`: read the application,
    /// report its state and its differences from the spec (`status.drift`), never
    /// write — how an application made elsewhere is imported and reviewed.
    #[serde(default, skip_serializing_if = "ManagementPolicy::is_manage")]
    pub management_policy: ManagementPolicy,

    /// Secret with keys apiToken and accountId (the controller only; the command line
    /// reads CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

fn default_max_instances() -> i64 {
    20
}

/// A prebuilt image: a reference, or the image another CloudflareContainer deployed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.reference) != has(self.fromContainer)").message("exactly one of reference or fromContainer must be set"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSource {
    /// Image reference. A name without registry (`shop:v1`) is in the account's
    /// Cloudflare registry; others (`docker.io/…`, `ghcr.io/…`, `…@sha256:…`) are copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub reference: Option<String>,

    /// Promotion: deploy the digest that this other CloudflareContainer (same namespace)
    /// has deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub from_container: Option<String>,

    /// Secret of type kubernetes.io/dockerconfigjson for a private source registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret_ref: Option<SecretRef>,
}

/// A Dockerfile build.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildSpec {
    /// Build context: a git URL (`https://…/repo.git#ref:subdir`), an HTTPS tarball URL,
    /// or (command line only) a local directory.
    #[schemars(length(min = 1, max = 2048))]
    pub context: String,
    /// Dockerfile path relative to the context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// Build arguments.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// Target stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Target platform; only linux/amd64 runs on Cloudflare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^linux/amd64$"))]
    pub platform: Option<String>,
}

/// Predefined instance types.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceTypeName {
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
}

/// A custom instance size.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// vCPUs (at least 0.0625).
    #[schemars(range(min = 0.0625, max = 64))]
    // The API server checks a fractional `minimum` against a whole-number value after
    // truncating the bound (`vcpu: 0` passes `minimum: 0.0625`, tests/apiserver.rs);
    // CEL compares the number as a double.
    #[x_kube(validation = Rule::new("self >= 0.0625").message("vcpu must be at least 0.0625"))]
    pub vcpu: f64,
    /// Memory in MiB.
    #[schemars(range(min = 128, max = 262144))]
    pub memory_mib: i64,
    /// Disk in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 512, max = 1048576))]
    pub disk_mb: Option<i64>,
}

/// Scheduling policy (Cloudflare's official schema knows only `default`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum SchedulingPolicyName {
    #[default]
    Default,
}

/// Regions Cloudflare can place instances in.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum Region {
    AFR,
    APAC,
    EEUR,
    ENAM,
    WNAM,
    ME,
    OC,
    SAM,
    WEUR,
}

/// Jurisdictions.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Jurisdiction {
    Eu,
    Fedramp,
}

/// Placement constraints.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Constraints {
    /// Regions instances may run in (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<Region>,
    /// Keep instances inside this jurisdiction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<Jurisdiction>,
}

/// Observability settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObservabilitySpec {
    /// Send container logs to Workers Logs.
    #[serde(default)]
    pub logs: bool,
}

/// Rollout strategy: `rolling` in steps, `immediate` all at once.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum RolloutStrategyName {
    #[default]
    Rolling,
    Immediate,
}

/// Rollout progression: automatic, or each step confirmed by hand.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RolloutKindName {
    #[default]
    #[serde(rename = "full_auto")]
    FullAuto,
    #[serde(rename = "full_manual")]
    FullManual,
}

/// How changes that need a rollout go out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    /// `rolling` (default) or `immediate` (100% at once).
    #[serde(default)]
    pub strategy: RolloutStrategyName,
    /// Share of instances updated per step: 5, 10, 20, 25, 50 or 100. When unset, as
    /// wrangler: 10% then 100% (100% at once when maxInstances < 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self in [5, 10, 20, 25, 50, 100]").message("stepPercentage must be one of 5, 10, 20, 25, 50, 100"))]
    pub step_percentage: Option<i64>,
    /// `full_auto` (default) or `full_manual`.
    #[serde(default)]
    pub kind: RolloutKindName,
    /// Seconds active instances may keep running before a rollout stops them.
    #[serde(default)]
    #[schemars(range(min = 0, max = 604800))]
    pub active_grace_period_seconds: i64,
}

/// The Worker whose Durable Object class owns the container: a `CloudflareWorker` of
/// this namespace (`name`, flaredock uploads it with the class container-enabled), or a
/// Worker deployed by someone else (`scriptName`, never uploaded or patched).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("has(self.name) != has(self.scriptName)").message("exactly one of name (a CloudflareWorker) or scriptName (a Worker deployed elsewhere) must be set"),
    validation = Rule::new("has(self.name) == has(self.bindingName)").message("bindingName is required with name and not allowed with scriptName")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerRef {
    /// A CloudflareWorker in the same namespace. Its upload gains this class in
    /// `containers`, the binding `bindingName` and, for a new class, a migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    /// Durable Object namespace binding the CloudflareWorker gets for the class (a
    /// JavaScript identifier); required with `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_$][A-Za-z0-9_$]*$"), length(max = 128))]
    pub binding_name: Option<String>,
    /// A Worker script deployed by someone else (wrangler, another pipeline) whose
    /// class is already container-enabled. flaredock never uploads or patches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"))]
    pub script_name: Option<String>,
}

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

/// Deletion policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Delete the Cloudflare application (only if this object owns it).
    #[default]
    Delete,
    /// Leave the Cloudflare application running.
    Orphan,
}

/// A Secret in the same namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One environment variable: a literal value, or a key of a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("exactly one of value or valueFrom must be set"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// Letters, digits and '_', not starting with a digit.
    #[schemars(
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"),
        length(min = 1, max = 256)
    )]
    pub name: String,
    /// The value, in clear in the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32768))]
    pub value: Option<String>,
    /// Where the value comes from instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

impl EnvVar {
    /// A literal variable.
    pub fn literal(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }
}

/// The source of an environment variable's value.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVarSource {
    /// A key of a Secret in the object's namespace.
    pub secret_key_ref: SecretKeyRef,
}

/// A key of a Secret in the same namespace.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Default,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

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

/// The naming helpers both kinds share: `key`, `namespace_or_default`, `name` and
/// `owner_id` (the owner recorded at Cloudflare).
macro_rules! object_names {
    ($kind:ty) => {
        impl $kind {
            /// `namespace/name` (namespace `default` when unset).
            pub fn key(&self) -> String {
                format!("{}/{}", self.namespace_or_default(), self.name())
            }

            pub fn namespace_or_default(&self) -> &str {
                self.metadata.namespace.as_deref().unwrap_or("default")
            }

            pub fn name(&self) -> &str {
                self.metadata.name.as_deref().unwrap_or("")
            }

            /// The `reconcile.fluxcd.io/requestedAt` annotation, when set.
            pub fn reconcile_requested_at(&self) -> Option<&str> {
                self.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(RECONCILE_REQUEST_ANNOTATION))
                    .map(String::as_str)
            }

            /// The owner flaredock records at Cloudflare for this object,
            /// `<cluster id>/<namespace>.<name>`: two clusters sharing an account never
            /// take each other's applications or scripts.
            pub fn owner_id(&self, cluster: &ClusterIdentity) -> String {
                cluster.owner(self.namespace_or_default(), self.name())
            }
        }

        impl ReconcileRequest for $kind {
            fn requested_at(&self) -> Option<&str> {
                self.reconcile_requested_at()
            }
            fn handled_at(&self) -> Option<&str> {
                self.status
                    .as_ref()
                    .and_then(|s| s.last_handled_reconcile_at.as_deref())
            }
        }
    };
}

/// Who records ownership at Cloudflare: a cluster id that is unique without any
/// configuration, and a readable name. The controller's id is taken from the UID of
/// its cluster's `kube-system` namespace (`--cluster-id` overrides it); the command
/// line's is [`ClusterIdentity::CLI`] unless `--cluster-id` says otherwise. Owner ids
/// are `<id>/<namespace>.<name>`, so two clusters sharing an account never look alike,
/// whatever they are called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterIdentity {
    id: String,
    name: Option<String>,
}

impl ClusterIdentity {
    /// The command line's cluster id.
    pub const CLI: &'static str = "cli";

    /// `id`: 1 to 40 lowercase letters, digits or `-`; `name` is only shown.
    pub fn new(id: &str, name: Option<&str>) -> Result<Self, String> {
        let valid = !id.is_empty()
            && id.len() <= 40
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(format!(
                "cluster id {id:?}: use 1 to 40 lowercase letters, digits or '-'"
            ));
        }
        Ok(ClusterIdentity {
            id: id.to_string(),
            name: name.filter(|n| !n.is_empty()).map(str::to_string),
        })
    }

    /// The id of a cluster whose `kube-system` namespace has this UID: its first 16
    /// hexadecimal digits.
    pub fn from_uid(uid: &str, name: Option<&str>) -> Result<Self, String> {
        let hex: String = uid
            .chars()
            .filter(char::is_ascii_hexdigit)
            .map(|c| c.to_ascii_lowercase())
            .take(16)
            .collect();
        if hex.len() < 16 {
            return Err(format!(
                "the kube-system namespace's UID {uid:?} is not a UUID"
            ));
        }
        ClusterIdentity::new(&hex, name)
    }

    /// The command line's identity.
    pub fn cli() -> Self {
        ClusterIdentity {
            id: Self::CLI.into(),
            name: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The readable name, when one was given.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The owner id of `namespace/name` in this cluster.
    pub fn owner(&self, namespace: &str, name: &str) -> String {
        owner_id(&self.id, namespace, name)
    }
}

/// The owner id of `namespace/name` in the cluster with id `cluster`.
pub fn owner_id(cluster: &str, namespace: &str, name: &str) -> String {
    format!("{cluster}/{namespace}.{name}")
}

/// The annotation that asks for a reconcile now (Flux's convention; any new value).
pub const RECONCILE_REQUEST_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";

/// An object that can be asked to reconcile now.
pub trait ReconcileRequest {
    /// The annotation's value, when set.
    fn requested_at(&self) -> Option<&str>;
    /// The value the status says was last handled.
    fn handled_at(&self) -> Option<&str>;
    /// A request not handled yet?
    fn reconcile_requested(&self) -> bool {
        self.requested_at().is_some() && self.requested_at() != self.handled_at()
    }
}

object_names!(CloudflareContainer);
object_names!(CloudflareWorker);

impl CloudflareContainer {
    /// The Cloudflare application name.
    pub fn application_name(&self) -> &str {
        self.spec.application_name.as_deref().unwrap_or(self.name())
    }

    /// The CloudflareWorker this container names (`spec.worker.name`), if any.
    pub fn worker_object(&self) -> Option<&str> {
        self.spec.worker.name.as_deref()
    }
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

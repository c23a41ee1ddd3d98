//! The `CloudflareContainer` spec: the image, its size and placement, the rollout, the
//! Worker class that owns it, and its deletion policy.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AdoptionApproval, CloudflareContainerStatus, EnvVar, ManagementPolicy, SecretRef};

/// Annotation that retries a reverted rollout (any new value) without a spec change.
pub const RETRY_ROLLOUT_ANNOTATION: &str = "flaredock.dev/retry-rollout";

/// Label on the Cloudflare application's configuration naming the object that owns it.
pub const OWNER_LABEL: &str = "flaredock.dev/owner";

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

/// Deletion policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Delete the Cloudflare application (only if this object owns it).
    #[default]
    Delete,
    /// Leave the Cloudflare application running.
    Orphan,
}

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

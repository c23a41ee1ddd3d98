//! The `CloudflareContainer` resource (`flaredock.dev/v1alpha1`): its spec, status and
//! validation. The schema carries the rules for the API server (enums, ranges,
//! patterns, CEL); [`validate`] enforces the same rules for the command line, naming
//! the field.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::oci::Reference;

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
    namespaced,
    status = "CloudflareContainerStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".status.image","priority":0}"#,
    printcolumn = r#"{"name":"Application","type":"string","jsonPath":".status.applicationName"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("has(self.image) != has(self.build)").message("exactly one of image or build must be set"),
    validation = Rule::new("!(has(self.instanceType) && has(self.resources))").message("instanceType and resources are mutually exclusive"),
    validation = Rule::new("self.instances <= self.maxInstances").message("instances must not exceed maxInstances")
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

    /// Instances kept running (0 for Durable Object backed applications, which start
    /// instances on demand).
    #[serde(default)]
    #[schemars(range(min = 0, max = 100000))]
    pub instances: i64,

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

    /// Environment variables of the container (names are letters, digits and '_').
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$'))").message("environment variable names must match ^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub env: BTreeMap<String, String>,

    /// How image, resource and environment changes are rolled out.
    #[serde(default)]
    pub rollout: RolloutSpec,

    /// The Worker whose Durable Object class owns the instances.
    pub worker: WorkerRef,

    /// Take over an existing application of the same name that flaredock did not create.
    #[serde(default)]
    pub adopt: bool,

    /// What happens to the Cloudflare application when this object is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

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
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// vCPUs (at least 0.0625).
    #[schemars(range(min = 0.0625, max = 64))]
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

/// The Worker script and binding of the Durable Object class.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerRef {
    /// Worker script that exports className.
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"))]
    pub script_name: String,
    /// Durable Object namespace binding the Worker gets for the class (a JavaScript
    /// identifier). When unset, flaredock does not touch the Worker's bindings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_$][A-Za-z0-9_$]*$"))]
    pub binding_name: Option<String>,
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

/// Rollout progress as last observed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutProgressStatus {
    pub id: String,
    /// pending, progressing, completed, reverted or replaced.
    pub status: String,
    /// Share of instances on the new version, in percent.
    #[serde(default)]
    pub progress: i64,
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
    /// Ready, Reconciling, Stalled, ImageReady, WorkerBound, ApplicationSynced, RolloutComplete.
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

impl CloudflareContainer {
    /// `namespace/name` (namespace `default` when unset).
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.namespace_or_default(),
            self.metadata.name.as_deref().unwrap_or("")
        )
    }

    pub fn namespace_or_default(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }

    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    /// The Cloudflare application name.
    pub fn application_name(&self) -> &str {
        self.spec.application_name.as_deref().unwrap_or(self.name())
    }

    /// The value of [`OWNER_LABEL`] for this object: `namespace.name`.
    pub fn owner_id(&self) -> String {
        format!("{}.{}", self.namespace_or_default(), self.name())
    }
}

/// The CRD as YAML (what `flaredock crd` prints and `crds/` holds).
pub fn crd_yaml() -> String {
    let crd = CloudflareContainer::crd();
    serde_yaml_ng::to_string(&crd).unwrap_or_else(|e| format!("# cannot render the CRD: {e}\n"))
}

/// A value for an error message: quoted, and cut short when long.
fn shown(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head:?}… ({} characters)", value.chars().count())
    }
}

/// One broken rule, with the field it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path, e.g. `spec.rollout.stepPercentage`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn matches_pattern(value: &str, first: impl Fn(char) -> bool, rest: impl Fn(char) -> bool) -> bool {
    let mut chars = value.chars();
    chars.next().is_some_and(first) && chars.all(rest)
}

/// JavaScript identifier (the rule of [`JS_IDENTIFIER`]).
pub fn is_js_identifier(s: &str) -> bool {
    matches_pattern(
        s,
        |c| c.is_ascii_alphabetic() || c == '_' || c == '$',
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '$',
    )
}

fn is_env_name(s: &str) -> bool {
    matches_pattern(
        s,
        |c| c.is_ascii_alphabetic() || c == '_',
        |c| c.is_ascii_alphanumeric() || c == '_',
    )
}

/// `^[a-zA-Z0-9]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?$` (or lowercase only for scripts).
fn is_dns_like(s: &str, lowercase: bool) -> bool {
    let ok_edge = |c: char| {
        c.is_ascii_digit() || c.is_ascii_lowercase() || (!lowercase && c.is_ascii_uppercase())
    };
    let ok_mid = |c: char| ok_edge(c) || c == '-' || c == '_';
    !s.is_empty()
        && s.len() <= 63
        && s.chars().next().is_some_and(ok_edge)
        && s.chars().last().is_some_and(ok_edge)
        && s.chars().all(ok_mid)
}

fn is_tag(s: &str) -> bool {
    matches_pattern(
        s,
        |c| c.is_ascii_alphanumeric() || c == '_',
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-',
    ) && s.len() <= 128
}

/// DNS-1123 subdomain (metadata.name, metadata.namespace).
fn is_dns1123(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Every rule of the schema and its CEL rules, checked locally. Empty when valid.
pub fn validate(obj: &CloudflareContainer) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.to_string(),
            message,
        })
    };
    match obj.metadata.name.as_deref() {
        None | Some("") => err("metadata.name", "is required".into()),
        Some(n) if !is_dns1123(n) => err(
            "metadata.name",
            format!(
                "{} must be a DNS-1123 name (lowercase letters, digits, '-', '.')",
                shown(n)
            ),
        ),
        _ => {}
    }
    if let Some(ns) = obj.metadata.namespace.as_deref()
        && !is_dns1123(ns)
    {
        err(
            "metadata.namespace",
            format!("{} must be a DNS-1123 label", shown(ns)),
        );
    }
    let s = &obj.spec;
    if !is_js_identifier(&s.class_name) || s.class_name.len() > 128 {
        err(
            "spec.className",
            format!(
                "{} must be a JavaScript identifier ({JS_IDENTIFIER}, at most 128 characters)",
                shown(&s.class_name)
            ),
        );
    }
    let app_name = obj.application_name();
    if !is_dns_like(app_name, false) {
        let field = if s.application_name.is_some() {
            "spec.applicationName"
        } else {
            "metadata.name"
        };
        err(
            field,
            format!(
                "{} is not a valid application name ({APPLICATION_NAME})",
                shown(app_name)
            ),
        );
    }
    match (&s.image, &s.build) {
        (Some(_), Some(_)) => err(
            "spec",
            "exactly one of image or build must be set, not both".into(),
        ),
        (None, None) => err("spec", "exactly one of image or build must be set".into()),
        _ => {}
    }
    if let Some(image) = &s.image {
        match (&image.reference, &image.from_container) {
            (Some(_), Some(_)) | (None, None) => err(
                "spec.image",
                "exactly one of reference or fromContainer must be set".into(),
            ),
            _ => {}
        }
        if let Some(r) = &image.reference
            && let Err(e) = Reference::parse(r)
        {
            err("spec.image.reference", e.reason.clone());
        }
        if let Some(c) = &image.from_container {
            if !is_dns1123(c) {
                err(
                    "spec.image.fromContainer",
                    format!("{} must be the name of a CloudflareContainer", shown(c)),
                );
            } else if c == obj.name() {
                err(
                    "spec.image.fromContainer",
                    "cannot promote from itself".into(),
                );
            }
        }
    }
    if let Some(b) = &s.build {
        if b.context.trim().is_empty() {
            err("spec.build.context", "is required".into());
        }
        if let Some(p) = &b.platform
            && p != "linux/amd64"
        {
            err(
                "spec.build.platform",
                format!("{}: only linux/amd64 runs on Cloudflare", shown(p)),
            );
        }
    }
    if let Some(t) = &s.tag
        && !is_tag(t)
    {
        err("spec.tag", format!("{} must match {TAG}", shown(t)));
    }
    if s.instance_type.is_some() && s.resources.is_some() {
        err(
            "spec.resources",
            "instanceType and resources are mutually exclusive".into(),
        );
    }
    if let Some(r) = &s.resources {
        if !(r.vcpu.is_finite() && (0.0625..=64.0).contains(&r.vcpu)) {
            err(
                "spec.resources.vcpu",
                format!("{} must be between 0.0625 and 64", r.vcpu),
            );
        }
        if !(128..=262_144).contains(&r.memory_mib) {
            err(
                "spec.resources.memoryMib",
                format!("{} must be between 128 and 262144", r.memory_mib),
            );
        }
        if let Some(d) = r.disk_mb
            && !(512..=1_048_576).contains(&d)
        {
            err(
                "spec.resources.diskMb",
                format!("{d} must be between 512 and 1048576"),
            );
        }
    }
    if !(0..=100_000).contains(&s.instances) {
        err(
            "spec.instances",
            format!("{} must be between 0 and 100000", s.instances),
        );
    }
    if !(0..=100_000).contains(&s.max_instances) {
        err(
            "spec.maxInstances",
            format!("{} must be between 0 and 100000", s.max_instances),
        );
    }
    if s.instances > s.max_instances {
        err(
            "spec.instances",
            format!(
                "{} must not exceed maxInstances ({})",
                s.instances, s.max_instances
            ),
        );
    }
    for k in s.env.keys() {
        if !is_env_name(k) {
            let key: String = k.chars().take(64).collect();
            err(
                &format!("spec.env.{key}"),
                format!("environment variable name must match {ENV_NAME}"),
            );
        }
    }
    if let Some(p) = s.rollout.step_percentage
        && !crate::cloudflare::types::STEP_PERCENTAGES.contains(&p)
    {
        err(
            "spec.rollout.stepPercentage",
            format!("{p} must be one of 5, 10, 20, 25, 50, 100"),
        );
    }
    if !(0..=604_800).contains(&s.rollout.active_grace_period_seconds) {
        err(
            "spec.rollout.activeGracePeriodSeconds",
            format!(
                "{} must be between 0 and 604800",
                s.rollout.active_grace_period_seconds
            ),
        );
    }
    if !is_dns_like(&s.worker.script_name, true) {
        err(
            "spec.worker.scriptName",
            format!("{} must match {SCRIPT_NAME}", shown(&s.worker.script_name)),
        );
    }
    if let Some(b) = &s.worker.binding_name
        && !is_js_identifier(b)
    {
        err(
            "spec.worker.bindingName",
            format!("{} must be a JavaScript identifier", shown(b)),
        );
    }
    errors
}

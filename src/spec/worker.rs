//! The `CloudflareWorker` resource (`flaredock.dev/v1alpha1`): a Worker script that
//! flaredock uploads, with the Durable Object classes of the CloudflareContainers that
//! name it container-enabled (`metadata.containers` of the upload).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::reach::{
    DomainStatus, RouteStatus, WorkerDomain, WorkerRoute, default_workers_dev,
    is_default_workers_dev,
};
use super::{
    AdoptionApproval, DriftEntry, ManagementPolicy, PendingAdoption, SecretKeyRef, SecretRef,
};

/// A Worker script uploaded by flaredock. CloudflareContainers name it in
/// `spec.worker.name`; each adds its class to the upload's `containers`, a Durable
/// Object binding and, for a class the script did not have, a migration.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flaredock.dev",
    version = "v1alpha1",
    kind = "CloudflareWorker",
    plural = "cloudflareworkers",
    shortname = "cfw",
    category = "flaredock",
    namespaced,
    status = "CloudflareWorkerStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Script","type":"string","jsonPath":".status.scriptName"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Containers","type":"string","jsonPath":".status.containers","priority":1}"#,
    printcolumn = r#"{"name":"Suspended","type":"boolean","jsonPath":".spec.suspend"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudflareWorkerSpec {
    /// Name of the Worker script. Defaults to metadata.name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"))]
    pub script_name: Option<String>,

    /// Workers runtime compatibility date (YYYY-MM-DD).
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))]
    pub compatibility_date: String,

    /// Workers runtime compatibility flags (e.g. nodejs_compat).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub compatibility_flags: Vec<String>,

    /// Where the code comes from: exactly one of inline, configMapRef or image.
    pub source: WorkerSource,

    /// Plain-text bindings (`plain_text`), visible in the dashboard.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[A-Za-z_$][A-Za-z0-9_$]*$'))").message("variable names must be JavaScript identifiers"))]
    pub vars: BTreeMap<String, String>,

    /// Secret bindings (`secret_text`), values read from Kubernetes Secrets of this
    /// namespace. Values are never logged, printed or written to status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<WorkerSecret>,

    /// Bindings of every other kind of the official `workers_binding_item`, keyed by
    /// name: each entry is `{name, <kind>: {<official fields in camelCase>}}`, e.g.
    /// `{name: CACHE, kvNamespace: {namespaceId: …}}` (see `super::bindings`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]), length(max = 256))]
    pub bindings: Vec<super::WorkerBinding>,

    /// Stop every write to Cloudflare for this object (Flux's convention): it is still
    /// observed, its status says `Ready=False, Suspended` with what is pending.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,

    /// Take over an existing script of the same name that flaredock did not upload
    /// (its migration tag is kept).
    #[serde(default)]
    pub adopt: bool,

    /// With `adopt`: `Manual` (default) writes what the adopting upload would change
    /// and its hash to `status.pendingAdoption` and waits for the annotation
    /// `flaredock.dev/approve-adoption: <hash>`; `Automatic` adopts at once.
    #[serde(default, skip_serializing_if = "AdoptionApproval::is_manual")]
    pub adoption_approval: AdoptionApproval,

    /// `Manage` (default): upload what the spec says. `Observe`: read the script and
    /// report how it differs from the spec (`status.drift`), never upload.
    #[serde(default, skip_serializing_if = "ManagementPolicy::is_manage")]
    pub management_policy: ManagementPolicy,

    /// What happens to the script when this object is deleted. `Orphan` (default)
    /// leaves the script, its Durable Object namespaces and their data in place.
    /// `Delete` removes a script this object owns only while it has no Durable Object
    /// namespace (it never forces). `DeleteWithData` removes it with `force=true`,
    /// destroying its Durable Object namespaces and all the data they store.
    #[serde(default)]
    pub deletion_policy: WorkerDeletionPolicy,

    // ---- script settings (spec/worker_settings.rs) ----
    /// Observability settings for the Worker (official `workers_observability`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<super::worker_settings::WorkerObservability>,

    /// Smart or targeted placement (official `workers_placement_info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<super::worker_settings::WorkerPlacement>,

    /// Limits to apply for this Worker (official `workers_limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<super::worker_settings::WorkerLimits>,

    /// Workers that will consume logs from this Worker (official
    /// `workers_tail_consumers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "atomic"))]
    pub tail_consumers: Vec<super::worker_settings::TailConsumer>,

    // ---- reachability (spec/reach.rs) ----
    /// Serve the script on the account's `workers.dev` subdomain (default true, as
    /// wrangler's `workers_dev`); `status.url` is its URL.
    #[serde(
        default = "default_workers_dev",
        skip_serializing_if = "is_default_workers_dev"
    )]
    pub workers_dev: bool,

    /// Zone routes that run this Worker. A pattern another script holds is never
    /// taken: the object is Stalled naming that script.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["pattern"]))]
    pub routes: Vec<WorkerRoute>,

    /// Workers custom domains (Cloudflare makes the DNS record and certificate). A
    /// hostname another script holds is never taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["hostname"]))]
    pub domains: Vec<WorkerDomain>,

    /// Cron triggers (five-field cron expressions); the list replaces the script's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(regex(pattern = r"^\S+(\s+\S+){4,5}$"), length(max = 128)), extend("x-kubernetes-list-type" = "set"))]
    pub crons: Vec<String>,

    /// Secret with keys apiToken and accountId (the controller only; the command line
    /// reads CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// What deleting a CloudflareWorker does to its script. Only a script this object owns
/// (its flaredock owner tag) is ever deleted; the script waits until no
/// CloudflareContainer binds it and no application runs on its classes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WorkerDeletionPolicy {
    /// Leave the script in place, with its Durable Object namespaces and their data (its
    /// flaredock tags stay: a CloudflareWorker of the same name takes it back).
    #[default]
    Orphan,
    /// Delete the script without `force`: only while it has no Durable Object namespace.
    /// A script whose classes have namespaces is left in place, data kept, with a
    /// Warning Event naming them.
    Delete,
    /// Delete the script with `force=true`: its Durable Object namespaces and all the
    /// data they store are destroyed, irreversibly.
    DeleteWithData,
}

/// The Worker's modules: exactly one source.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("(has(self.inline) ? 1 : 0) + (has(self.configMapRef) ? 1 : 0) + (has(self.image) ? 1 : 0) == 1").message("exactly one of inline, configMapRef or image must be set"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerSource {
    /// Modules written in the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<InlineSource>,
    /// A ConfigMap of this namespace: each key is a module (binaryData for Wasm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapSource>,
    /// An OCI artifact or image whose files are the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageBundleSource>,
}

/// Modules in the manifest.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("self.mainModule in self.modules").message("mainModule must be one of the modules"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InlineSource {
    /// The module exporting the default handler and the Durable Object classes.
    #[schemars(length(min = 1, max = 256))]
    pub main_module: String,
    /// Module name → source text.
    #[schemars(length(min = 1))]
    pub modules: BTreeMap<String, String>,
}

/// Modules from a ConfigMap.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapSource {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 256))]
    pub main_module: String,
}

/// Modules from an OCI artifact or image in a registry.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageBundleSource {
    /// Reference of the artifact (`ghcr.io/acme/shop-worker:1.4`, or by digest).
    #[schemars(length(min = 1, max = 512))]
    pub reference: String,
    /// Secret of type kubernetes.io/dockerconfigjson for a private registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret_ref: Option<SecretRef>,
    #[schemars(length(min = 1, max = 256))]
    pub main_module: String,
}

/// One `secret_text` binding.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerSecret {
    /// Binding name (a JavaScript identifier).
    #[schemars(regex(pattern = r"^[A-Za-z_$][A-Za-z0-9_$]*$"), length(max = 128))]
    pub name: String,
    pub secret_key_ref: SecretKeyRef,
}

/// Observed state, kstatus compatible.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CloudflareWorkerStatus {
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

    /// Ready, Reconciling, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_name: Option<String>,
    /// Durable Object migration tag of the script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_tag: Option<String>,
    /// Hash of what was uploaded (keyed: it reveals nothing of secret values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_hash: Option<String>,
    /// The etag of the script version flaredock saw in sync last: another etag on a
    /// script flaredock owns means someone uploaded over it (`wrangler deploy`), and its
    /// settings are compared field by field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_etag: Option<String>,
    /// Container-enabled classes of the upload, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
    /// What differs from the spec: for `managementPolicy: Observe`, the differences
    /// found; otherwise what the last resync corrected. Part hashes only, never values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftEntry>,
    /// An adoption waiting for approval (`adopt: true`, `adoptionApproval: Manual`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_adoption: Option<PendingAdoption>,

    // ---- reachability (spec/reach.rs) ----
    /// The workers.dev URL (`https://<script>.<account subdomain>.workers.dev`), while
    /// `workersDev` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The zone routes this object made (only these are ever deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteStatus>,
    /// The custom domains this object made (only these are ever deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<DomainStatus>,
}

impl CloudflareWorker {
    /// What `plan` and `delete` say, in words, when deleting this object destroys
    /// Durable Object data (`deletionPolicy: DeleteWithData`); `None` when it keeps it.
    pub fn deletion_warning(&self) -> Option<String> {
        (self.spec.deletion_policy == WorkerDeletionPolicy::DeleteWithData).then(|| {
            format!(
                "deletionPolicy DeleteWithData: deleting this object deletes Worker script {} with force=true, DESTROYING its Durable Object namespaces and all the data they store",
                self.script_name()
            )
        })
    }

    /// The Worker script name.
    pub fn script_name(&self) -> &str {
        self.spec.script_name.as_deref().unwrap_or(self.name())
    }

    /// The main module's name, whatever the source.
    pub fn main_module(&self) -> &str {
        let s = &self.spec.source;
        if let Some(i) = &s.inline {
            &i.main_module
        } else if let Some(c) = &s.config_map_ref {
            &c.main_module
        } else if let Some(i) = &s.image {
            &i.main_module
        } else {
            ""
        }
    }
}

//! `spec.bindings` of a CloudflareWorker: every binding kind of the official
//! `workers_binding_item`, one camelCase member per kind, keyed by name.
//!
//! Each member holds the official fields of its kind in camelCase (`kvNamespace:
//! {namespaceId: …}` is `{"type": "kv_namespace", "namespace_id": …}`). The members are
//! free-form objects in the CRD; each entry is checked against the official schema
//! (`cloudflare-api/workers-routing-storage-openapi-subset.json`, which holds all the
//! binding kinds) before any call, by [`binding_violations`]. `plain_text` and
//! `secret_text` stay `spec.vars` and `spec.secrets`; `inherit` is an upload mechanism,
//! not a binding one declares.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cloudflare::types::Binding;

/// The official extract that holds all the binding kinds (the emulator's schema
/// checker fills the Workers extract's omitted kinds from it).
pub const ROUTING_STORAGE_JSON: &str =
    include_str!("../../cloudflare-api/workers-routing-storage-openapi-subset.json");

/// Fields of one binding kind, as the official schema names them but in camelCase.
pub type BindingFields = Map<String, Value>;

fn fields_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

macro_rules! binding_kinds {
    ($( $(#[$doc:meta])* $field:ident => $kind:literal, $member:literal; )*) => {
        /// One binding of the Worker: its name and exactly one kind.
        #[derive(kube::KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        #[x_kube(validation = Rule::new(EXACTLY_ONE_KIND).message("each binding has exactly one kind"))]
        pub struct WorkerBinding {
            /// Binding name (a JavaScript identifier), unique among bindings, vars,
            /// secrets and container bindings.
            #[schemars(regex(pattern = r"^[A-Za-z_$][A-Za-z0-9_$]*$"), length(max = 128))]
            pub name: String,
            $(
                $(#[$doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                #[schemars(schema_with = "fields_schema")]
                pub $field: Option<BindingFields>,
            )*
        }

        /// `(camelCase member, official type)` of every kind, in declaration order.
        pub const BINDING_KINDS: &[(&str, &str)] = &[$(($member, $kind)),*];

        const EXACTLY_ONE_KIND: &str = concat!($("(has(self.", $member, ") ? 1 : 0) + ",)* "0 == 1");

        impl WorkerBinding {
            /// `(member, official type, fields)` of every kind this entry sets.
            pub fn kinds(&self) -> Vec<(&'static str, &'static str, &BindingFields)> {
                let mut out = Vec::new();
                $(
                    if let Some(f) = &self.$field {
                        out.push(($member, $kind, f));
                    }
                )*
                out
            }
        }
    };
}

binding_kinds! {
    /// `ai`: Workers AI.
    ai => "ai", "ai";
    /// `ai_search`: {instanceName, namespace?}.
    ai_search => "ai_search", "aiSearch";
    /// `ai_search_namespace`: {namespace}.
    ai_search_namespace => "ai_search_namespace", "aiSearchNamespace";
    /// `analytics_engine`: {dataset}.
    analytics_engine => "analytics_engine", "analyticsEngine";
    /// `assets`: the Worker's static assets.
    assets => "assets", "assets";
    /// `browser`: Browser Rendering.
    browser => "browser", "browser";
    /// `d1`: {databaseId}.
    d1 => "d1", "d1";
    /// `data_blob`: {part}.
    data_blob => "data_blob", "dataBlob";
    /// `dispatch_namespace`: {namespace, outbound?}.
    dispatch_namespace => "dispatch_namespace", "dispatchNamespace";
    /// `durable_object_namespace`: {className, scriptName?, environment?, namespaceId?}.
    /// A class of this Worker without a container gets a migration as container classes
    /// do.
    durable_object => "durable_object_namespace", "durableObject";
    /// `flagship`: {appId}.
    flagship => "flagship", "flagship";
    /// `hyperdrive`: {id}.
    hyperdrive => "hyperdrive", "hyperdrive";
    /// `images`: Cloudflare Images.
    images => "images", "images";
    /// `json`: {json}.
    json => "json", "json";
    /// `kv_namespace`: {namespaceId}.
    kv_namespace => "kv_namespace", "kvNamespace";
    /// `media`: Media Transformations.
    media => "media", "media";
    /// `messaging`: {namespace}.
    messaging => "messaging", "messaging";
    /// `mtls_certificate`: {certificateId}.
    mtls_certificate => "mtls_certificate", "mtlsCertificate";
    /// `pipelines`: {pipeline}.
    pipelines => "pipelines", "pipelines";
    /// `queue`: {queueName}.
    queue => "queue", "queue";
    /// `r2_bucket`: {bucketName, jurisdiction?}.
    r2_bucket => "r2_bucket", "r2Bucket";
    /// `ratelimit`: {namespaceId, simple: {limit, period}}.
    ratelimit => "ratelimit", "ratelimit";
    /// `secret_key`: {format, algorithm, usages, keyBase64? | keyJwk?}.
    secret_key => "secret_key", "secretKey";
    /// `secrets_store_secret`: {storeId, secretName}.
    secrets_store_secret => "secrets_store_secret", "secretsStoreSecret";
    /// `send_email`: {destinationAddress?, allowedDestinationAddresses?, allowedSenderAddresses?}.
    send_email => "send_email", "sendEmail";
    /// `service`: {service, environment?, entrypoint?}.
    service => "service", "service";
    /// `text_blob`: {part}.
    text_blob => "text_blob", "textBlob";
    /// `vectorize`: {indexName}.
    vectorize => "vectorize", "vectorize";
    /// `version_metadata`: the version's id and tag.
    version_metadata => "version_metadata", "versionMetadata";
    /// `vpc_network`: {networkId? | tunnelId?}.
    vpc_network => "vpc_network", "vpcNetwork";
    /// `vpc_service`: {serviceId}.
    vpc_service => "vpc_service", "vpcService";
    /// `wasm_module`: {part}.
    wasm_module => "wasm_module", "wasmModule";
    /// `workflow`: {workflowName, className?, scriptName?}.
    workflow => "workflow", "workflow";
}

/// `fooBar` → `foo_bar`.
fn snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `foo_bar` → `fooBar`.
pub fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl WorkerBinding {
    /// The binding as the upload's `metadata.bindings` carries it (the first kind set;
    /// [`binding_violations`] refuses an entry with more or fewer). Top-level field
    /// names become snake_case; values (a `json` document, `simple`, `outbound`) are
    /// kept as written.
    pub fn to_official(&self) -> Option<Binding> {
        let (_, kind, fields) = self.kinds().into_iter().next()?;
        let rest: Map<String, Value> = fields.iter().map(|(k, v)| (snake(k), v.clone())).collect();
        Some(Binding {
            kind: kind.to_string(),
            name: self.name.clone(),
            rest,
        })
    }
}

/// The official binding schema, parsed once.
fn binding_spec() -> &'static crate::emulator::schema::Spec {
    static SPEC: std::sync::OnceLock<crate::emulator::schema::Spec> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| crate::emulator::schema::Spec::parse(ROUTING_STORAGE_JSON))
}

/// What is wrong with `spec.bindings[index]` against the official schema of its kind
/// (`workers_binding_kind_<type>`, the target of `workers_binding_item`'s discriminator): `(field, message)`, the field named as in the manifest.
pub fn binding_violations(index: usize, b: &WorkerBinding) -> Vec<(String, String)> {
    let at = format!("spec.bindings[{index}]");
    let kinds = b.kinds();
    if kinds.len() != 1 {
        let set: Vec<&str> = kinds.iter().map(|(m, ..)| *m).collect();
        return vec![(
            at,
            format!(
                "binding {} must set exactly one kind, not {}",
                b.name,
                if set.is_empty() {
                    "none".to_string()
                } else {
                    set.join(", ")
                }
            ),
        )];
    }
    let (member, kind, _) = kinds[0];
    let Some(official) = b.to_official() else {
        return vec![];
    };
    let value = serde_json::to_value(&official).unwrap_or(Value::Null);
    // The kind's own schema (what `workers_binding_item`'s discriminator maps `type` to).
    let schema =
        serde_json::json!({"$ref": format!("#/components/schemas/workers_binding_kind_{kind}")});
    binding_spec()
        .violations(&schema, &value, "binding")
        .into_iter()
        .map(|m| {
            // The official names back to the manifest's camelCase.
            let m = m.replace("binding.", &format!("{at}.{member}."));
            let words: Vec<String> = m
                .split(' ')
                .map(|w| {
                    if w.contains('_') && !w.contains('/') && !w.contains('[') {
                        camel(w)
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            (format!("{at}.{member}"), words.join(" "))
        })
        .collect()
}

/// Every problem of `spec.bindings`: each entry against the official schema, and a
/// name used twice or equal to a var or secret, naming the field.
pub fn validate_bindings(spec: &super::CloudflareWorkerSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    for (i, b) in spec.bindings.iter().enumerate() {
        out.extend(binding_violations(i, b));
        let at = format!("spec.bindings[{i}].name");
        if let Some(first) = seen.insert(b.name.as_str(), i) {
            out.push((
                at,
                format!("binding {} is also spec.bindings[{first}]", b.name),
            ));
        } else if spec.vars.contains_key(&b.name) {
            out.push((at, format!("binding {} is also a var (spec.vars)", b.name)));
        } else if let Some(j) = spec.secrets.iter().position(|s| s.name == b.name) {
            out.push((at, format!("binding {} is also spec.secrets[{j}]", b.name)));
        }
    }
    out
}

/// The value of a binding as `plan` shows it: its kind and fields, never a secret's
/// (a `secret_key`'s key material and a `secret_text`'s text are not shown).
pub fn shown(b: &Binding) -> String {
    let mut fields: Vec<String> = b
        .rest
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "text" | "key_base64" | "key_jwk"))
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    if b.kind == "secret_text" || b.kind == "secret_key" {
        fields.push("(value not shown)".into());
    }
    if b.kind == "plain_text"
        && let Some(t) = b.str_field("text")
    {
        fields.push(format!("text={t}"));
    }
    if fields.is_empty() {
        b.kind.clone()
    } else {
        format!("{} {}", b.kind, fields.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(yaml: &str) -> WorkerBinding {
        serde_yaml_ng::from_str(yaml).expect("binding")
    }

    #[test]
    fn every_official_kind_is_a_member() {
        let doc: Value =
            serde_json::from_str(crate::emulator::schema::WORKERS_JSON).expect("extract");
        let mapping = doc
            .pointer("/components/schemas/workers_binding_item/discriminator/mapping")
            .and_then(Value::as_object)
            .expect("mapping");
        for kind in mapping.keys() {
            if matches!(kind.as_str(), "plain_text" | "secret_text" | "inherit") {
                continue;
            }
            assert!(
                BINDING_KINDS.iter().any(|(_, k)| k == kind),
                "binding kind {kind} is not declarable"
            );
            let full: Value = serde_json::from_str(ROUTING_STORAGE_JSON).expect("extract");
            assert!(
                full.pointer(&format!("/components/schemas/workers_binding_kind_{kind}"))
                    .is_some_and(|s| s.get("x-omitted-from-subset").is_none()),
                "the official schema of {kind} is vendored"
            );
        }
    }

    #[test]
    fn official_form_and_schema_check() {
        let kv = binding("{name: CACHE, kvNamespace: {namespaceId: 0f2a}}");
        let official = kv.to_official().expect("one kind");
        assert_eq!(official.kind, "kv_namespace");
        assert_eq!(official.str_field("namespace_id"), Some("0f2a"));
        assert!(binding_violations(0, &kv).is_empty());

        let missing = binding("{name: JOBS, queue: {}}");
        let v = binding_violations(2, &missing);
        assert!(
            v.iter()
                .any(|(f, m)| f == "spec.bindings[2].queue" && m.contains("queueName")),
            "{v:?}"
        );
        let misspelt = binding("{name: DB, d1: {databaseId: x, databaseID: y}}");
        let v = binding_violations(0, &misspelt);
        assert!(!v.is_empty(), "an unknown field is refused: {v:?}");
        let two = binding("{name: X, ai: {}, browser: {}}");
        let v = binding_violations(0, &two);
        assert!(v[0].1.contains("ai, browser"), "{v:?}");
    }
}

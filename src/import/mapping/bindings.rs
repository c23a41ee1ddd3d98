//! wrangler's binding lists (`kv_namespaces`, `r2_buckets`, …, `queues.producers`) and
//! single bindings (`ai`, `browser`, …) as `spec.bindings` entries.

use serde_json::{Map, Value, json};

use super::Findings;
use super::keys::{Taken, string};

/// A binding list of wrangler and the `spec.bindings` member it maps to.
pub(super) struct ListKind {
    pub(super) key: &'static str,
    /// The entry's binding-name key (`binding`, or `name` for a few kinds).
    name_key: &'static str,
    member: &'static str,
    /// `(wrangler field, camelCase official field)`.
    fields: &'static [(&'static str, &'static str)],
    /// Wrangler fields the binding cannot do without.
    required: &'static [&'static str],
}

pub(super) const LISTS: &[ListKind] = &[
    ListKind {
        key: "kv_namespaces",
        name_key: "binding",
        member: "kvNamespace",
        fields: &[("id", "namespaceId")],
        required: &["id"],
    },
    ListKind {
        key: "r2_buckets",
        name_key: "binding",
        member: "r2Bucket",
        fields: &[
            ("bucket_name", "bucketName"),
            ("jurisdiction", "jurisdiction"),
        ],
        required: &["bucket_name"],
    },
    ListKind {
        key: "d1_databases",
        name_key: "binding",
        member: "d1",
        fields: &[("database_id", "databaseId")],
        required: &["database_id"],
    },
    ListKind {
        key: "services",
        name_key: "binding",
        member: "service",
        fields: &[
            ("service", "service"),
            ("environment", "environment"),
            ("entrypoint", "entrypoint"),
        ],
        required: &["service"],
    },
    ListKind {
        key: "hyperdrive",
        name_key: "binding",
        member: "hyperdrive",
        fields: &[("id", "id")],
        required: &["id"],
    },
    ListKind {
        key: "analytics_engine_datasets",
        name_key: "binding",
        member: "analyticsEngine",
        fields: &[("dataset", "dataset")],
        required: &["dataset"],
    },
    ListKind {
        key: "vectorize",
        name_key: "binding",
        member: "vectorize",
        fields: &[("index_name", "indexName")],
        required: &["index_name"],
    },
    ListKind {
        key: "mtls_certificates",
        name_key: "binding",
        member: "mtlsCertificate",
        fields: &[("certificate_id", "certificateId")],
        required: &["certificate_id"],
    },
    ListKind {
        key: "dispatch_namespaces",
        name_key: "binding",
        member: "dispatchNamespace",
        fields: &[("namespace", "namespace")],
        required: &["namespace"],
    },
    ListKind {
        key: "send_email",
        name_key: "name",
        member: "sendEmail",
        fields: &[
            ("destination_address", "destinationAddress"),
            (
                "allowed_destination_addresses",
                "allowedDestinationAddresses",
            ),
            ("allowed_sender_addresses", "allowedSenderAddresses"),
        ],
        required: &[],
    },
    ListKind {
        key: "pipelines",
        name_key: "binding",
        member: "pipelines",
        fields: &[("pipeline", "pipeline")],
        required: &["pipeline"],
    },
    ListKind {
        key: "secrets_store_secrets",
        name_key: "binding",
        member: "secretsStoreSecret",
        fields: &[("store_id", "storeId"), ("secret_name", "secretName")],
        required: &["store_id", "secret_name"],
    },
    ListKind {
        key: "ratelimits",
        name_key: "name",
        member: "ratelimit",
        fields: &[("namespace_id", "namespaceId"), ("simple", "simple")],
        required: &["namespace_id", "simple"],
    },
    ListKind {
        key: "vpc_services",
        name_key: "binding",
        member: "vpcService",
        fields: &[("service_id", "serviceId")],
        required: &["service_id"],
    },
    ListKind {
        key: "vpc_networks",
        name_key: "binding",
        member: "vpcNetwork",
        fields: &[("tunnel_id", "tunnelId"), ("network_id", "networkId")],
        required: &[],
    },
    ListKind {
        key: "ai_search",
        name_key: "binding",
        member: "aiSearch",
        fields: &[("instance_name", "instanceName")],
        required: &["instance_name"],
    },
    ListKind {
        key: "ai_search_namespaces",
        name_key: "binding",
        member: "aiSearchNamespace",
        fields: &[("namespace", "namespace")],
        required: &["namespace"],
    },
    ListKind {
        key: "flagship",
        name_key: "binding",
        member: "flagship",
        fields: &[("app_id", "appId")],
        required: &["app_id"],
    },
    ListKind {
        key: "workflows",
        name_key: "binding",
        member: "workflow",
        fields: &[
            ("name", "workflowName"),
            ("class_name", "className"),
            ("script_name", "scriptName"),
        ],
        required: &["name"],
    },
];

/// Single bindings of wrangler (`ai = {binding = "AI"}`) and their member.
pub(super) const SINGLES: &[(&str, &str)] = &[
    ("ai", "ai"),
    ("browser", "browser"),
    ("images", "images"),
    ("media", "media"),
    ("version_metadata", "versionMetadata"),
];

pub(super) const QUEUE: ListKind = ListKind {
    key: "queues.producers",
    name_key: "binding",
    member: "queue",
    fields: &[("queue", "queueName")],
    required: &["queue"],
};

/// One entry of a binding list as a `spec.bindings` entry.
pub(super) fn list_binding(
    kind: &ListKind,
    path: &str,
    entry: Value,
    f: &mut Findings,
) -> Option<Value> {
    let mut t = Taken::new(path.to_string(), entry, f)?;
    let name = string(t.take(kind.name_key));
    let mut fields = Map::new();
    for (w, c) in kind.fields {
        if let Some(v) = t.take(w) {
            fields.insert((*c).into(), v);
        }
    }
    let missing: Vec<&str> = kind
        .required
        .iter()
        .copied()
        .filter(|w| {
            let c = kind.fields.iter().find(|(k, _)| k == w).map(|(_, c)| *c);
            c.is_none_or(|c| !fields.contains_key(c))
        })
        .collect();
    let at = t.at(kind.name_key);
    t.finish(f);
    let Some(name) = name else {
        f.unsupported(&at, "missing");
        return None;
    };
    if !missing.is_empty() {
        f.unsupported(
            path,
            &format!(
                "binding {name} has no {} (wrangler looks it up or creates it at deploy; give it)",
                missing.join(", ")
            ),
        );
        return None;
    }
    Some(json!({"name": name, kind.member: fields}))
}

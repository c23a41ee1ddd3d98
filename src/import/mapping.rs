//! A resolved wrangler configuration mapped onto flaredock's objects: one
//! CloudflareWorker (`adopt: true`) and one CloudflareContainer per `containers[]`
//! entry. Every key is either mapped, noted (it changes nothing flaredock uploads:
//! `$schema`, `account_id`, what `wrangler dev` alone reads) or reported unsupported
//! by its path; nothing is dropped silently.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::config::Resolved;

/// What a mapping found that is not in the objects: unsupported keys (by path, with
/// why) and notes.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    pub unsupported: Vec<String>,
    pub notes: Vec<String>,
}

impl Findings {
    fn unsupported(&mut self, path: &str, why: &str) {
        self.unsupported.push(format!("{path}: {why}"));
    }
    fn note(&mut self, path: &str, what: &str) {
        self.notes.push(format!("{path}: {what}"));
    }
}

/// The objects, as JSON documents (validated by the caller through the manifest
/// loader), plus the Secret to create.
#[derive(Debug, Clone)]
pub struct Mapped {
    pub worker: Value,
    pub containers: Vec<Value>,
    /// `(Secret name, keys)` the Worker's `secretKeyRef`s name.
    pub secret: Option<(String, Vec<String>)>,
    /// `metadata.name` of the Worker.
    pub worker_name: String,
}

/// Keys `wrangler dev` or wrangler's own commands alone read: noted, not mapped.
const DEV_ONLY: &[&str] = &[
    "remote",
    "preview_id",
    "preview_bucket_name",
    "preview_database_id",
    "database_name",
    "migrations_dir",
    "migrations_table",
    "localConnectionString",
];

/// Keys that change how wrangler bundles the code: with `--bundle` they are already
/// applied; without, the `main` file is taken as it is, so they are unsupported.
pub const BUNDLING: &[&str] = &[
    "no_bundle",
    "minify",
    "keep_names",
    "build",
    "tsconfig",
    "rules",
    "base_dir",
    "find_additional_modules",
    "preserve_file_names",
    "define",
    "alias",
    "jsx_factory",
    "jsx_fragment",
];

/// Top-level keys flaredock has no field for (yet), with the reason shown.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "streaming_tail_consumers",
        "CloudflareWorker has no streaming tail consumers",
    ),
    ("logpush", "CloudflareWorker has no logpush field"),
    ("assets", "static assets are not uploaded by flaredock"),
    ("site", "Workers Sites are not uploaded by flaredock"),
    ("unsafe", "unsafe bindings and metadata are not supported"),
    (
        "cloudchamber",
        "cloudchamber is not supported (use containers)",
    ),
    (
        "data_blobs",
        "service-worker format bindings are not supported (modules only)",
    ),
    (
        "text_blobs",
        "service-worker format bindings are not supported (modules only)",
    ),
    (
        "wasm_modules",
        "service-worker format bindings are not supported (modules only)",
    ),
    ("legacy_env", "service environments are not supported"),
    (
        "compliance_region",
        "the FedRAMP API endpoint is not supported",
    ),
    ("preview_urls", "preview URLs are not managed by flaredock"),
    ("previews", "previews are not managed by flaredock"),
    (
        "first_party_worker",
        "first-party Workers are not supported",
    ),
    ("logfwdr", "logfwdr bindings are not supported"),
    (
        "keep_vars",
        "flaredock sets exactly the vars of the spec (no dashboard vars kept)",
    ),
    ("worker_loaders", "worker loader bindings are not supported"),
    ("artifacts", "artifacts bindings are not supported"),
    ("stream", "stream bindings are not supported"),
    ("unsafe_hello_world", "unsafe bindings are not supported"),
    ("cache", "cache settings are not supported"),
    ("python_modules", "Python Workers are not supported"),
    ("pages_build_output_dir", "a Pages project is not a Worker"),
    (
        "upload_source_maps",
        "source maps are not uploaded by flaredock",
    ),
];

/// A binding list of wrangler and the `spec.bindings` member it maps to.
struct ListKind {
    key: &'static str,
    /// The entry's binding-name key (`binding`, or `name` for a few kinds).
    name_key: &'static str,
    member: &'static str,
    /// `(wrangler field, camelCase official field)`.
    fields: &'static [(&'static str, &'static str)],
    /// Wrangler fields the binding cannot do without.
    required: &'static [&'static str],
}

const LISTS: &[ListKind] = &[
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
const SINGLES: &[(&str, &str)] = &[
    ("ai", "ai"),
    ("browser", "browser"),
    ("images", "images"),
    ("media", "media"),
    ("version_metadata", "versionMetadata"),
];

/// A JSON object whose keys are taken one by one; what is left is reported.
struct Taken {
    path: String,
    map: Map<String, Value>,
}

impl Taken {
    fn new(path: String, value: Value, f: &mut Findings) -> Option<Taken> {
        match value {
            Value::Object(map) => Some(Taken { path, map }),
            _ => {
                f.unsupported(&path, "expected an object");
                None
            }
        }
    }
    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }
    fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }
    /// What is left: dev-only keys noted, the others unsupported.
    fn finish(self, f: &mut Findings) {
        for (k, _) in self.map {
            let path = format!("{}.{k}", self.path);
            if DEV_ONLY.contains(&k.as_str()) {
                f.note(
                    &path,
                    "read by wrangler dev or wrangler's own commands only; ignored",
                );
            } else {
                f.unsupported(&path, "not supported by flaredock import");
            }
        }
    }
}

/// `Some(list)` of a JSON array, else reported.
fn list(path: &str, v: Value, f: &mut Findings) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        _ => {
            f.unsupported(path, "expected a list");
            vec![]
        }
    }
}

fn string(v: Option<Value>) -> Option<String> {
    v.and_then(|v| v.as_str().map(str::to_string))
}

/// A Kubernetes object name from a script or application name (`shop_api` →
/// `shop-api`).
pub fn object_name(name: &str) -> String {
    let s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let s = s.trim_matches('-').to_string();
    s.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

/// The wrangler image of a container as a flaredock image source: a Cloudflare registry
/// image by its short name (`shop:v1`), another registry's as it is.
fn image_reference(image: &str) -> String {
    let registries = [
        std::env::var("CLOUDFLARE_CONTAINER_REGISTRY").ok(),
        Some(crate::cloudflare::client::CLOUDFLARE_REGISTRY.to_string()),
    ];
    for host in registries.into_iter().flatten() {
        if let Some(rest) = image.strip_prefix(&format!("{host}/")) {
            // `<account id>/name:tag` → `name:tag`.
            return match rest.split_once('/') {
                Some((acct, name))
                    if acct.len() == 32 && acct.chars().all(|c| c.is_ascii_hexdigit()) =>
                {
                    name.to_string()
                }
                _ => rest.to_string(),
            };
        }
    }
    image.to_string()
}

/// Everything the Worker's spec and the containers take from the configuration.
pub struct Inputs<'a> {
    pub resolved: Resolved,
    /// The name container applications are named after
    /// ([`super::config::container_base_name`]).
    pub top_name: Option<String>,
    pub namespace: &'a str,
    /// The Worker's `spec.source`.
    pub source: Value,
    /// The modules came from `--bundle` (bundling keys are then applied already).
    pub bundled: bool,
}

/// Maps the configuration; `Err` only when no Worker can be written at all (no name, no
/// compatibility date).
pub fn map(inputs: Inputs<'_>, f: &mut Findings) -> Result<Mapped, super::ImportError> {
    let Inputs {
        resolved,
        top_name,
        namespace,
        source,
        bundled,
    } = inputs;
    f.notes.extend(resolved.notes.iter().cloned());
    let mut config = resolved.config.clone();
    let script = string(config.remove("name")).ok_or(super::ImportError::Missing("name"))?;
    let compatibility_date = string(config.remove("compatibility_date"))
        .ok_or(super::ImportError::Missing("compatibility_date"))?;
    let worker_name = object_name(&script);
    let mut spec = Map::new();
    spec.insert("scriptName".into(), json!(script));
    spec.insert("compatibilityDate".into(), json!(compatibility_date));
    spec.insert("adopt".into(), json!(true));
    spec.insert("source".into(), source);
    config.remove("main");
    let mut bindings: Vec<Value> = Vec::new();
    let mut vars = Map::new();
    let mut secrets: Vec<String> = Vec::new();
    let mut routes: Vec<Value> = Vec::new();
    let mut domains: Vec<Value> = Vec::new();
    let mut crons: Option<Vec<Value>> = None;
    let mut workers_dev: Option<bool> = None;
    let mut do_bindings: Vec<(String, Map<String, Value>)> = Vec::new();
    let mut containers_raw: Option<(String, Value)> = None;
    let observability = config.get("observability").cloned();

    for (key, value) in std::mem::take(&mut config) {
        let path = resolved.path_of(&key);
        if let Some(kind) = LISTS.iter().find(|k| k.key == key) {
            for (i, entry) in list(&path, value, f).into_iter().enumerate() {
                if let Some(b) = list_binding(kind, &format!("{path}[{i}]"), entry, f) {
                    bindings.push(b);
                }
            }
            continue;
        }
        if let Some((_, member)) = SINGLES.iter().find(|(k, _)| *k == key) {
            if let Some(mut t) = Taken::new(path.clone(), value, f) {
                match string(t.take("binding")) {
                    Some(name) => bindings.push(json!({"name": name, *member: {}})),
                    None => f.unsupported(&t.at("binding"), "missing"),
                }
                t.finish(f);
            }
            continue;
        }
        if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
            f.unsupported(&path, why);
            continue;
        }
        if BUNDLING.contains(&key.as_str()) {
            if bundled {
                f.note(&path, "applied by wrangler when it wrote the bundle");
            } else {
                f.unsupported(
                    &path,
                    "changes the code wrangler uploads: bundle with `wrangler deploy --dry-run --outdir DIR` and pass --bundle DIR",
                );
            }
            continue;
        }
        match key.as_str() {
            "$schema" => {}
            "account_id" => f.note(
                &path,
                "flaredock takes the account from CLOUDFLARE_ACCOUNT_ID or spec.credentialsSecretRef",
            ),
            "dev" | "send_metrics" => f.note(&path, "read by wrangler alone; ignored"),
            "compatibility_flags" => {
                spec.insert("compatibilityFlags".into(), value);
            }
            "workers_dev" => match value.as_bool() {
                Some(b) => workers_dev = Some(b),
                None => f.unsupported(&path, "expected true or false"),
            },
            "vars" => {
                if let Some(t) = Taken::new(path.clone(), value, f) {
                    for (k, v) in t.map {
                        match v {
                            Value::String(s) => {
                                vars.insert(k, Value::String(s));
                            }
                            // A JSON var is a `json` binding, as wrangler uploads it.
                            other => bindings.push(json!({"name": k, "json": {"json": other}})),
                        }
                    }
                }
            }
            "secrets" => {
                if let Some(mut t) = Taken::new(path.clone(), value, f) {
                    if let Some(req) = t.take("required") {
                        for (i, s) in list(&t.at("required"), req, f).into_iter().enumerate() {
                            match s.as_str() {
                                Some(s) => secrets.push(s.to_string()),
                                None => f.unsupported(
                                    &format!("{}.required[{i}]", t.path),
                                    "expected a name",
                                ),
                            }
                        }
                    }
                    t.finish(f);
                }
            }
            "route" => match route(&path, value, f) {
                Some(Reach::Route(r)) => routes.push(r),
                Some(Reach::Domain(d)) => domains.push(d),
                None => {}
            },
            "routes" => {
                for (i, r) in list(&path, value, f).into_iter().enumerate() {
                    match route(&format!("{path}[{i}]"), r, f) {
                        Some(Reach::Route(r)) => routes.push(r),
                        Some(Reach::Domain(d)) => domains.push(d),
                        None => {}
                    }
                }
            }
            "triggers" => {
                if let Some(mut t) = Taken::new(path.clone(), value, f) {
                    if let Some(c) = t.take("crons") {
                        crons = Some(list(&t.at("crons"), c, f));
                    }
                    t.finish(f);
                }
            }
            "queues" => {
                if let Some(mut t) = Taken::new(path.clone(), value, f) {
                    if let Some(p) = t.take("producers") {
                        let at = t.at("producers");
                        for (i, entry) in list(&at, p, f).into_iter().enumerate() {
                            if let Some(b) = list_binding(&QUEUE, &format!("{at}[{i}]"), entry, f)
                            {
                                bindings.push(b);
                            }
                        }
                    }
                    if t.map.contains_key("consumers") {
                        t.take("consumers");
                        f.unsupported(
                            &t.at("consumers"),
                            "queue consumers are a setting of the queue, not managed by flaredock",
                        );
                    }
                    t.finish(f);
                }
            }
            "durable_objects" => {
                if let Some(mut t) = Taken::new(path.clone(), value, f) {
                    if let Some(b) = t.take("bindings") {
                        let at = t.at("bindings");
                        for (i, entry) in list(&at, b, f).into_iter().enumerate() {
                            let p = format!("{at}[{i}]");
                            if let Some(mut e) = Taken::new(p.clone(), entry, f) {
                                match string(e.take("name")) {
                                    Some(name) => {
                                        let mut fields = Map::new();
                                        for (w, c) in [
                                            ("class_name", "className"),
                                            ("script_name", "scriptName"),
                                            ("environment", "environment"),
                                        ] {
                                            if let Some(v) = e.take(w) {
                                                fields.insert(c.into(), v);
                                            }
                                        }
                                        do_bindings.push((name, fields));
                                    }
                                    None => f.unsupported(&e.at("name"), "missing"),
                                }
                                e.finish(f);
                            }
                        }
                    }
                    t.finish(f);
                }
            }
            "observability" => {
                if let Some(o) = settings::observability(&path, value, f) {
                    spec.insert("observability".into(), o);
                }
            }
            "placement" => {
                if let Some(p) = settings::placement(&path, value, f) {
                    spec.insert("placement".into(), p);
                }
            }
            "limits" => {
                if let Some(l) = settings::limits(&path, value, f) {
                    spec.insert("limits".into(), l);
                }
            }
            "tail_consumers" => {
                let t = settings::tail_consumers(&path, value, f);
                if !t.is_empty() {
                    spec.insert("tailConsumers".into(), Value::Array(t));
                }
            }
            "migrations" => migrations(&path, value, f),
            "containers" => containers_raw = Some((path, value)),
            _ => f.unsupported(&path, "not known to flaredock import"),
        }
    }

    // Containers: each names its Durable Object binding.
    let mut containers = Vec::new();
    let mut container_classes = BTreeSet::new();
    if let Some((path, value)) = containers_raw {
        let logs = observability
            .as_ref()
            .map(|o| {
                o.pointer("/logs/enabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(o.get("enabled") == Some(&Value::Bool(true)))
            })
            .unwrap_or(false);
        for (i, entry) in list(&path, value, f).into_iter().enumerate() {
            let ctx = ContainerContext {
                path: format!("{path}[{i}]"),
                script: &script,
                top_name: top_name.as_deref(),
                env: resolved.env.as_deref(),
                worker: &worker_name,
                namespace,
                logs,
                dir: &resolved.dir,
            };
            if let Some((class, doc)) = container(&ctx, entry, &do_bindings, f) {
                container_classes.insert(class);
                containers.push(doc);
            }
        }
    }
    for (name, mut fields) in do_bindings {
        let class = fields
            .get("className")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let own = fields
            .get("scriptName")
            .and_then(Value::as_str)
            .is_none_or(|s| s == script);
        if own && container_classes.contains(&class) {
            continue; // the CloudflareContainer binds it (spec.worker.bindingName)
        }
        if fields.get("scriptName").and_then(Value::as_str) == Some(script.as_str()) {
            fields.remove("scriptName");
        }
        bindings.push(json!({"name": name, "durableObject": fields}));
    }

    let has_reach = !routes.is_empty() || !domains.is_empty();
    // wrangler: workers_dev defaults to true only without routes.
    let workers_dev = workers_dev.unwrap_or(!has_reach);
    spec.insert("workersDev".into(), json!(workers_dev));
    if !vars.is_empty() {
        spec.insert("vars".into(), Value::Object(vars));
    }
    let secret_name = format!("{worker_name}-secrets");
    if !secrets.is_empty() {
        let refs: Vec<Value> = secrets
            .iter()
            .map(|s| json!({"name": s, "secretKeyRef": {"name": secret_name, "key": s}}))
            .collect();
        spec.insert("secrets".into(), Value::Array(refs));
    }
    if !bindings.is_empty() {
        spec.insert("bindings".into(), Value::Array(bindings));
    }
    if !routes.is_empty() {
        spec.insert("routes".into(), Value::Array(routes));
    }
    if !domains.is_empty() {
        spec.insert("domains".into(), Value::Array(domains));
    }
    if let Some(c) = crons
        && !c.is_empty()
    {
        spec.insert("crons".into(), Value::Array(c));
    }
    let worker = json!({
        "apiVersion": crate::manifest::API_VERSION,
        "kind": crate::manifest::WORKER_KIND,
        "metadata": {"name": worker_name, "namespace": namespace},
        "spec": spec,
    });
    Ok(Mapped {
        worker,
        containers,
        secret: (!secrets.is_empty()).then_some((secret_name, secrets)),
        worker_name,
    })
}

const QUEUE: ListKind = ListKind {
    key: "queues.producers",
    name_key: "binding",
    member: "queue",
    fields: &[("queue", "queueName")],
    required: &["queue"],
};

/// One entry of a binding list as a `spec.bindings` entry.
fn list_binding(kind: &ListKind, path: &str, entry: Value, f: &mut Findings) -> Option<Value> {
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

enum Reach {
    Route(Value),
    Domain(Value),
}

/// A wrangler route: `{pattern, zone_name | zone_id}` is a zone route,
/// `{pattern, custom_domain: true}` a custom domain.
fn route(path: &str, value: Value, f: &mut Findings) -> Option<Reach> {
    if value.is_string() {
        f.unsupported(
            path,
            "a route without its zone: write it as {pattern, zone_name} (flaredock resolves the zone by name)",
        );
        return None;
    }
    let mut t = Taken::new(path.to_string(), value, f)?;
    let pattern = string(t.take("pattern"));
    let zone_name = string(t.take("zone_name"));
    let zone_id = string(t.take("zone_id"));
    let custom = t.take("custom_domain").and_then(|v| v.as_bool()) == Some(true);
    let at = t.at("pattern");
    t.finish(f);
    let Some(pattern) = pattern else {
        f.unsupported(&at, "missing");
        return None;
    };
    if custom {
        let mut d = json!({"hostname": pattern});
        if let Some(z) = zone_name {
            d["zoneName"] = json!(z);
        }
        if zone_id.is_some() {
            f.unsupported(
                &format!("{path}.zone_id"),
                "a custom domain's zone is given by name (zone_name) in flaredock",
            );
        }
        return Some(Reach::Domain(d));
    }
    let mut r = json!({"pattern": pattern});
    match (zone_name, zone_id) {
        (Some(z), _) => r["zoneName"] = json!(z),
        (None, Some(z)) => r["zoneId"] = json!(z),
        (None, None) => {
            f.unsupported(path, "a route without zone_name or zone_id");
            return None;
        }
    }
    Some(Reach::Route(r))
}

/// `migrations`: flaredock writes its own (a class it does not know gets one, the
/// script's tag is kept on adoption); renames and deletions it cannot express.
fn migrations(path: &str, value: Value, f: &mut Findings) {
    for (i, m) in list(path, value, f).into_iter().enumerate() {
        let p = format!("{path}[{i}]");
        if let Some(mut t) = Taken::new(p, m, f) {
            t.take("tag");
            t.take("new_classes");
            t.take("new_sqlite_classes");
            for k in ["renamed_classes", "deleted_classes", "transferred_classes"] {
                if let Some(v) = t.take(k)
                    && v.as_array().is_none_or(|a| !a.is_empty())
                {
                    f.unsupported(
                        &t.at(k),
                        "flaredock writes new-class migrations only (renames and deletions are not expressed)",
                    );
                }
            }
            t.finish(f);
        }
    }
    f.note(
        path,
        "flaredock writes its own Durable Object migrations (a class the script lacks gets one); the script's migration tag is kept on adoption",
    );
}

struct ContainerContext<'a> {
    path: String,
    script: &'a str,
    top_name: Option<&'a str>,
    env: Option<&'a str>,
    worker: &'a str,
    namespace: &'a str,
    logs: bool,
    dir: &'a std::path::Path,
}

/// One `containers[]` entry as a CloudflareContainer; `(class, document)`.
fn container(
    ctx: &ContainerContext<'_>,
    entry: Value,
    do_bindings: &[(String, Map<String, Value>)],
    f: &mut Findings,
) -> Option<(String, Value)> {
    let mut t = Taken::new(ctx.path.clone(), entry, f)?;
    let Some(class) = string(t.take("class_name")) else {
        f.unsupported(&t.at("class_name"), "missing");
        t.finish(f);
        return None;
    };
    let binding = do_bindings.iter().find(|(_, fields)| {
        fields.get("className").and_then(Value::as_str) == Some(class.as_str())
            && fields
                .get("scriptName")
                .and_then(Value::as_str)
                .is_none_or(|s| s == ctx.script)
    });
    let Some((binding, _)) = binding else {
        f.unsupported(
            &ctx.path,
            &format!("container class {class} has no Durable Object binding (durable_objects.bindings) in this Worker"),
        );
        t.finish(f);
        return None;
    };
    // wrangler's application name: `name`, else `<name>-<class>[-<env>]`.
    let application = match (string(t.take("name")), ctx.top_name) {
        (Some(n), _) => n,
        (None, Some(base)) => {
            let mut n = format!("{base}-{class}");
            if let Some(e) = ctx.env {
                n.push('-');
                n.push_str(e);
            }
            n.to_lowercase().replace(' ', "-")
        }
        (None, None) => {
            f.unsupported(
                &t.at("name"),
                "wrangler needs a name here: containers[].name, or the environment's own name",
            );
            t.finish(f);
            return None;
        }
    };
    let mut spec = Map::new();
    spec.insert("className".into(), json!(class));
    spec.insert("applicationName".into(), json!(application));
    spec.insert("adopt".into(), json!(true));
    spec.insert(
        "worker".into(),
        json!({"name": ctx.worker, "bindingName": binding}),
    );
    let image = string(t.take("image"));
    let build_context = string(t.take("image_build_context"));
    let image_vars = t.take("image_vars");
    match image {
        None => f.unsupported(&t.at("image"), "missing"),
        Some(image) => {
            let file = ctx.dir.join(&image);
            if file.is_file() || image.ends_with("Dockerfile") {
                // A Dockerfile: built by flaredock from the local directory.
                let dockerfile = std::path::absolute(&file).unwrap_or(file);
                let context = match &build_context {
                    Some(c) => std::path::absolute(ctx.dir.join(c)).unwrap_or_default(),
                    None => dockerfile
                        .parent()
                        .map(|p| p.to_path_buf())
                        .unwrap_or_default(),
                };
                let mut build = json!({
                    "context": context.display().to_string(),
                    "dockerfile": dockerfile
                        .strip_prefix(&context)
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| dockerfile.display().to_string()),
                });
                if let Some(v) = image_vars {
                    build["args"] = v;
                }
                spec.insert("build".into(), build);
                f.note(
                    &t.at("image"),
                    "a Dockerfile: spec.build with a local context (built by the command line only)",
                );
            } else {
                spec.insert(
                    "image".into(),
                    json!({"reference": image_reference(&image)}),
                );
                if build_context.is_some() {
                    f.unsupported(&t.at("image_build_context"), "only with a Dockerfile image");
                }
                if image_vars.is_some() {
                    f.unsupported(&t.at("image_vars"), "only with a Dockerfile image");
                }
            }
        }
    }
    let max = t
        .take("max_instances")
        .and_then(|v| v.as_i64())
        .unwrap_or(20);
    spec.insert("maxInstances".into(), json!(max));
    match t.take("instance_type") {
        None => {
            spec.insert("instanceType".into(), json!("lite"));
        }
        Some(Value::String(s)) => match s.as_str() {
            "dev" | "lite" => {
                spec.insert("instanceType".into(), json!("lite"));
            }
            "basic" | "standard-1" | "standard-2" | "standard-3" | "standard-4" => {
                spec.insert("instanceType".into(), json!(s));
            }
            _ => f.unsupported(
                &t.at("instance_type"),
                "an instance type flaredock does not know (deprecated `standard`: use standard-1 or a custom size)",
            ),
        },
        Some(Value::Object(size)) => {
            let num = |k: &str| size.get(k).and_then(Value::as_f64);
            spec.insert(
                "resources".into(),
                json!({
                    "vcpu": num("vcpu").unwrap_or(0.0625),
                    "memoryMib": num("memory_mib").unwrap_or(256.0) as i64,
                    "diskMb": num("disk_mb").unwrap_or(2000.0) as i64,
                }),
            );
        }
        Some(_) => f.unsupported(&t.at("instance_type"), "expected a name or a size"),
    }
    if let Some(p) = string(t.take("scheduling_policy"))
        && p != "default"
    {
        f.unsupported(
            &t.at("scheduling_policy"),
            "only the default scheduling policy is supported",
        );
    }
    if let Some(c) = t.take("constraints")
        && let Some(mut c) = Taken::new(t.at("constraints"), c, f)
    {
        let mut out = Map::new();
        if let Some(r) = c.take("regions") {
            let regions: Vec<Value> = list(&c.at("regions"), r, f)
                .into_iter()
                .filter_map(|r| r.as_str().map(|s| json!(s.to_uppercase())))
                .collect();
            out.insert("regions".into(), Value::Array(regions));
        }
        if let Some(j) = string(c.take("jurisdiction")) {
            out.insert("jurisdiction".into(), json!(j.to_lowercase()));
        }
        c.finish(f);
        if !out.is_empty() {
            spec.insert("constraints".into(), Value::Object(out));
        }
    }
    let mut rollout = Map::new();
    match t.take("rollout_step_percentage") {
        None => {}
        Some(Value::Number(n)) => {
            rollout.insert("stepPercentage".into(), Value::Number(n));
        }
        Some(Value::Array(steps)) => {
            let steps: Vec<i64> = steps.iter().filter_map(Value::as_i64).collect();
            let fallback: &[i64] = if max < 2 { &[100] } else { &[10, 100] };
            if steps == [100] {
                rollout.insert("stepPercentage".into(), json!(100));
            } else if steps != fallback {
                f.unsupported(
                    &t.at("rollout_step_percentage"),
                    "a list of cumulative steps other than wrangler's default (flaredock takes one step size)",
                );
            }
        }
        Some(_) => f.unsupported(&t.at("rollout_step_percentage"), "expected a number"),
    }
    if let Some(k) = string(t.take("rollout_kind")) {
        match k.as_str() {
            "full_auto" | "full_manual" => {
                rollout.insert("kind".into(), json!(k));
            }
            _ => f.unsupported(&t.at("rollout_kind"), "flaredock always rolls out changes"),
        }
    }
    if let Some(g) = t.take("rollout_active_grace_period") {
        rollout.insert("activeGracePeriodSeconds".into(), g);
    }
    if !rollout.is_empty() {
        spec.insert("rollout".into(), Value::Object(rollout));
    }
    if ctx.logs {
        spec.insert("observability".into(), json!({"logs": true}));
    }
    t.finish(f);
    let doc = json!({
        "apiVersion": crate::manifest::API_VERSION,
        "kind": crate::manifest::KIND,
        "metadata": {"name": object_name(&application), "namespace": ctx.namespace},
        "spec": spec,
    });
    Some((class, doc))
}

/// Wrangler's script settings (`observability`, `placement`, `limits`,
/// `tail_consumers`, as wrangler 4.86's config validation allows them) onto the
/// CloudflareWorker's fields of the same names (`src/spec/worker_settings.rs`). What
/// the fields cannot hold is reported by its path.
mod settings {
    use serde_json::{Map, Value, json};

    use super::{Findings, Taken, list, string};

    /// A sampling rate (0 to 1), else reported.
    fn rate(path: &str, v: Value, f: &mut Findings) -> Option<Value> {
        match v.as_f64() {
            Some(r) if (0.0..=1.0).contains(&r) => Some(v),
            _ => {
                f.unsupported(path, "expected a rate from 0 to 1");
                None
            }
        }
    }

    fn boolean(path: &str, v: Option<Value>, f: &mut Findings) -> Option<bool> {
        match v {
            Some(Value::Bool(b)) => Some(b),
            Some(_) => {
                f.unsupported(path, "expected true or false");
                None
            }
            None => None,
        }
    }

    /// `observability {enabled, head_sampling_rate, logs {enabled, head_sampling_rate,
    /// invocation_logs, persist, destinations}, traces}`.
    pub fn observability(path: &str, value: Value, f: &mut Findings) -> Option<Value> {
        let mut t = Taken::new(path.to_string(), value, f)?;
        let mut out = Map::new();
        let at = t.at("enabled");
        match t.take("enabled") {
            None => f.unsupported(
                &at,
                "missing: CloudflareWorker's observability needs enabled (wrangler allows logs.enabled or traces.enabled alone)",
            ),
            v => {
                if let Some(b) = boolean(&at, v, f) {
                    out.insert("enabled".into(), json!(b));
                }
            }
        }
        if let Some(r) = t.take("head_sampling_rate")
            && let Some(r) = rate(&t.at("head_sampling_rate"), r, f)
        {
            out.insert("headSamplingRate".into(), r);
        }
        if let Some(l) = t.take("logs")
            && let Some(mut l) = Taken::new(t.at("logs"), l, f)
        {
            let mut logs = Map::new();
            let at = l.at("enabled");
            match l.take("enabled") {
                None => f.unsupported(&at, "missing: CloudflareWorker's logs need enabled"),
                v => {
                    if let Some(b) = boolean(&at, v, f) {
                        logs.insert("enabled".into(), json!(b));
                    }
                }
            }
            let at = l.at("invocation_logs");
            match l.take("invocation_logs") {
                None => {
                    // wrangler: "Set to false to disable invocation logs".
                    f.note(&at, "not set: true, as wrangler documents it");
                    logs.insert("invocationLogs".into(), json!(true));
                }
                v => {
                    if let Some(b) = boolean(&at, v, f) {
                        logs.insert("invocationLogs".into(), json!(b));
                    }
                }
            }
            if let Some(r) = l.take("head_sampling_rate")
                && let Some(r) = rate(&l.at("head_sampling_rate"), r, f)
            {
                logs.insert("headSamplingRate".into(), r);
            }
            let at = l.at("persist");
            match l.take("persist") {
                Some(Value::Bool(true)) => f.note(&at, "true is the default; nothing to set"),
                Some(_) => f.unsupported(&at, "CloudflareWorker's logs are always persisted"),
                None => {}
            }
            let at = l.at("destinations");
            match l.take("destinations") {
                Some(Value::Array(a)) if a.is_empty() => {}
                Some(_) => f.unsupported(&at, "CloudflareWorker has no log destinations"),
                None => {}
            }
            l.finish(f);
            if logs.contains_key("enabled") && logs.contains_key("invocationLogs") {
                out.insert("logs".into(), Value::Object(logs));
            }
        }
        if t.take("traces").is_some() {
            f.unsupported(&t.at("traces"), "CloudflareWorker has no trace settings");
        }
        t.finish(f);
        out.contains_key("enabled").then_some(Value::Object(out))
    }

    /// `placement {mode: off | smart | targeted, hint, region | host | hostname}`, as
    /// wrangler uploads it (`parseConfigPlacement`): `off` without a hint is no
    /// placement, a hint or `smart` is Smart Placement, else the one target.
    pub fn placement(path: &str, value: Value, f: &mut Findings) -> Option<Value> {
        let mut t = Taken::new(path.to_string(), value, f)?;
        let mode_at = t.at("mode");
        let mode = t.take("mode");
        let hint = t.take("hint");
        let mut targets = Vec::new();
        for key in ["region", "host", "hostname"] {
            if let Some(v) = t.take(key) {
                targets.push((key, t.at(key), v));
            }
        }
        t.finish(f);
        let mode = match mode {
            None => None,
            Some(Value::String(m)) if ["off", "smart", "targeted"].contains(&m.as_str()) => Some(m),
            Some(_) => {
                f.unsupported(&mode_at, "expected off, smart or targeted");
                return None;
            }
        };
        if hint.is_some() {
            f.unsupported(
                &format!("{path}.hint"),
                "CloudflareWorker has no placement hint",
            );
        }
        if hint.is_none() && mode.as_deref() == Some("off") {
            f.note(path, "mode off: wrangler uploads no placement");
            return None;
        }
        if hint.is_some() || mode.as_deref() == Some("smart") {
            for (_, at, _) in &targets {
                f.unsupported(at, "not with Smart Placement");
            }
            return Some(json!({"mode": "smart"}));
        }
        match targets.as_slice() {
            [] => {
                f.unsupported(
                    path,
                    "expected mode smart, or one of region, host or hostname",
                );
                None
            }
            [(key, at, v)] => match v.as_str() {
                Some(s) if !s.is_empty() && s.len() <= 256 => {
                    Some(json!({"mode": "targeted", *key: s}))
                }
                _ => {
                    f.unsupported(at, "expected a name of 1 to 256 characters");
                    None
                }
            },
            _ => {
                f.unsupported(path, "region, host and hostname are mutually exclusive");
                None
            }
        }
    }

    /// `limits {cpu_ms, subrequests}`: whole numbers of at least 1.
    pub fn limits(path: &str, value: Value, f: &mut Findings) -> Option<Value> {
        let mut t = Taken::new(path.to_string(), value, f)?;
        let mut out = Map::new();
        for (w, c) in [("cpu_ms", "cpuMs"), ("subrequests", "subrequests")] {
            let at = t.at(w);
            match t.take(w).map(|v| v.as_i64()) {
                Some(Some(n)) if n >= 1 => {
                    out.insert(c.into(), json!(n));
                }
                Some(_) => f.unsupported(&at, "expected a whole number of at least 1"),
                None => {}
            }
        }
        t.finish(f);
        (!out.is_empty()).then_some(Value::Object(out))
    }

    /// `tail_consumers [{service, environment}]`.
    pub fn tail_consumers(path: &str, value: Value, f: &mut Findings) -> Vec<Value> {
        let mut out = Vec::new();
        for (i, entry) in list(path, value, f).into_iter().enumerate() {
            let Some(mut t) = Taken::new(format!("{path}[{i}]"), entry, f) else {
                continue;
            };
            let service = string(t.take("service"));
            let environment = t.take("environment");
            let mut c = Map::new();
            match service {
                Some(s) => {
                    c.insert("service".into(), json!(s));
                }
                None => f.unsupported(&t.at("service"), "missing"),
            }
            match environment {
                Some(Value::String(e)) => {
                    c.insert("environment".into(), json!(e));
                }
                Some(_) => f.unsupported(&t.at("environment"), "expected a name"),
                None => {}
            }
            t.finish(f);
            if c.contains_key("service") {
                out.push(Value::Object(c));
            }
        }
        out
    }
}

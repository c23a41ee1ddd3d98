//! A resolved wrangler configuration mapped onto flaredock's objects: one
//! CloudflareWorker (`adopt: true`) and one CloudflareContainer per `containers[]`
//! entry. Every key is either mapped, noted (it changes nothing flaredock uploads:
//! `$schema`, `account_id`, what `wrangler dev` alone reads) or reported unsupported
//! by its path; nothing is dropped silently.
//!
//! The parts: `keys` (taking keys one by one; what is left is noted or reported),
//! `bindings` (binding lists and single bindings), `worker` (routes, custom domains,
//! migrations), `settings` (observability, placement, limits, tail consumers) and
//! `containers`; [`map`] here walks the top-level keys and writes the objects.

mod bindings;
mod containers;
mod keys;
mod settings;
mod worker;

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::config::Resolved;
use bindings::{LISTS, QUEUE, SINGLES, list_binding};
use containers::{ContainerContext, container};
pub use keys::BUNDLING;
use keys::{Taken, UNSUPPORTED, list, string};
use worker::{Reach, migrations, route};

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

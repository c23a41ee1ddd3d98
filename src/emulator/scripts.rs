//! The emulated account's Worker scripts and Durable Object namespaces: module uploads
//! (`PUT /workers/scripts/{name}`), the script list with `tags` and `migration_tag`,
//! deletes, script settings, and **container enablement**: only a class listed in an
//! upload's `metadata.containers` gets a namespace that can host containers.
//!
//! Requests are read as JSON values, never through the client's types. What is checked,
//! as Cloudflare does: the main module is among the parts; the upload loads in the
//! local runtime ([`super::workerd`]: a module that fails to start is refused with the
//! runtime's message, code 10021); every class named in `containers`, a binding or a
//! migration is a class the main module exports, as the runtime reports its exports; `migrations.old_tag` equals the script's current tag; a class
//! that has a namespace stays exported unless a migration deletes it; tags are at most
//! ten strings without `,` or `&`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::state::{AccountState, Failure, Outcome, codes, timestamp};
use crate::cloudflare::types::{DurableObjectNamespace, ResultInfo};

/// Error code of an upload that breaks a Durable Object rule (Cloudflare's number for
/// these is not public; 10021 is the schema's "failed validation checks").
pub const SCRIPT_VALIDATION: i64 = 10021;
/// The content types the official upload encoding lists for module parts.
pub const MODULE_CONTENT_TYPES: [&str; 10] = [
    "application/javascript+module",
    "text/javascript+module",
    "application/javascript",
    "text/javascript",
    "text/x-python",
    "text/x-python-requirement",
    "application/wasm",
    "text/plain",
    "application/octet-stream",
    "application/source-map",
];

/// One module as uploaded.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct StoredModule {
    pub content_type: String,
    pub content: String,
}

/// A Worker script.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ScriptRecord {
    pub exported_classes: BTreeSet<String>,
    /// Bindings as uploaded (JSON values; `secret_text` values are never shown).
    #[serde(default)]
    pub bindings: Vec<Value>,
    pub migrated_classes: BTreeSet<String>,
    /// Classes of the latest upload's `containers`.
    #[serde(default)]
    pub containers: BTreeSet<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub migration_tag: Option<String>,
    #[serde(default)]
    pub etag: String,
    #[serde(default)]
    pub compatibility_date: Option<String>,
    #[serde(default)]
    pub created_on: String,
    #[serde(default)]
    pub modified_on: String,
    #[serde(default)]
    pub main_module: Option<String>,
    #[serde(default)]
    pub compatibility_flags: Vec<String>,
    /// The main module's exports as the runtime reported them (name → kind).
    #[serde(default)]
    pub exports: super::workerd::Exports,
    #[serde(default)]
    pub modules: BTreeMap<String, StoredModule>,
    /// How many uploads the script has had (for tests and benchmarks).
    #[serde(default)]
    pub uploads: u64,
    /// The script settings of the latest upload (or settings PATCH), by official
    /// field: [`SCRIPT_SETTINGS`].
    #[serde(default)]
    pub settings: BTreeMap<String, Value>,
}

/// The settings an upload's metadata sets and `GET …/settings` returns, as uploaded
/// (the upload replaces them: a field the upload leaves out is gone).
pub const SCRIPT_SETTINGS: [&str; 4] = ["observability", "placement", "limits", "tail_consumers"];

/// Checks the value of script setting `key` (one of [`SCRIPT_SETTINGS`]) against its
/// official schema; `at` names it in the error.
pub(super) fn check_setting(key: &str, value: &Value, at: &str) -> Outcome<()> {
    let schema = match key {
        "observability" => "workers_observability",
        "placement" => "workers_placement_info",
        "limits" => "workers_limits",
        "tail_consumers" => "workers_tail_consumers",
        _ => return Err(Failure::invalid(format!("{at}: not a script setting"))),
    };
    let schema = json!({"$ref": format!("#/components/schemas/{schema}")});
    match super::schema::Spec::workers()
        .violations(&schema, value, at)
        .first()
    {
        Some(first) => Err(Failure::invalid(first.clone())),
        None => Ok(()),
    }
}

fn settings_of(metadata: &Value) -> BTreeMap<String, Value> {
    SCRIPT_SETTINGS
        .iter()
        .filter_map(|k| match metadata.get(*k) {
            None | Some(Value::Null) => None,
            Some(v) => Some((k.to_string(), v.clone())),
        })
        .collect()
}

impl ScriptRecord {
    /// `workers_script-response`.
    fn response(&self, name: &str) -> Value {
        let mut v = json!({
            "id": name,
            "etag": self.etag,
            "tags": self.tags,
            "created_on": self.created_on,
            "modified_on": self.modified_on,
            "handlers": ["fetch"],
            "has_modules": self.main_module.is_some(),
            "named_handlers": self.exported_classes.iter().map(|c| json!({"name": c, "handlers": ["class"]})).collect::<Vec<_>>(),
        });
        if let Some(t) = &self.migration_tag {
            v["migration_tag"] = json!(t);
        }
        if let Some(d) = &self.compatibility_date {
            v["compatibility_date"] = json!(d);
        }
        v
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(400, SCRIPT_VALIDATION, message)
}

fn strings(v: Option<&Value>, field: &str) -> Outcome<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Failure::invalid(format!("{field}: must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(Failure::invalid(format!("{field}: must be a list"))),
    }
}

/// The migration steps of an upload's `migrations` (single-step or `steps`).
struct Migration {
    old_tag: Option<String>,
    new_tag: Option<String>,
    new_classes: Vec<(String, bool)>,
    deleted_classes: Vec<String>,
}

fn read_migration(v: &Value) -> Outcome<Migration> {
    let tag = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let mut m = Migration {
        old_tag: tag("old_tag"),
        new_tag: tag("new_tag"),
        new_classes: vec![],
        deleted_classes: vec![],
    };
    let steps: Vec<&Value> = match v.get("steps") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(_) => return Err(Failure::invalid("migrations.steps: must be a list")),
        None => vec![v],
    };
    for step in steps {
        for (field, sqlite) in [("new_classes", false), ("new_sqlite_classes", true)] {
            for c in strings(step.get(field), &format!("migrations.{field}"))? {
                m.new_classes.push((c, sqlite));
            }
        }
        m.deleted_classes.extend(strings(
            step.get("deleted_classes"),
            "migrations.deleted_classes",
        )?);
        for unsupported in ["renamed_classes", "transferred_classes"] {
            if step
                .get(unsupported)
                .is_some_and(|x| x.as_array().is_some_and(|a| !a.is_empty()))
            {
                return Err(invalid(format!(
                    "migrations.{unsupported}: not emulated by flaredock's emulator"
                )));
            }
        }
    }
    Ok(m)
}

/// The main module's name and the modules of an upload's parts `(name, content type,
/// content)`: the main module among them, content types the official encoding lists,
/// text modules only.
pub fn decode_modules(
    metadata: &Value,
    parts: Vec<(String, String, Vec<u8>)>,
) -> Outcome<(String, BTreeMap<String, StoredModule>)> {
    let main = match (
        metadata.get("main_module").and_then(Value::as_str),
        metadata.get("body_part"),
    ) {
        (Some(m), _) => m.to_string(),
        (None, Some(_)) => {
            return Err(invalid(
                "metadata.body_part: service-worker uploads are not emulated; upload modules with main_module",
            ));
        }
        (None, None) => return Err(invalid("metadata.main_module: is required")),
    };
    let mut modules = BTreeMap::new();
    for (part, content_type, content) in parts {
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if !MODULE_CONTENT_TYPES.contains(&ct.as_str()) {
            return Err(Failure::new(
                400,
                10001,
                format!("part {part}: unsupported content type {content_type:?}"),
            ));
        }
        let content = String::from_utf8(content)
            .map_err(|_| invalid(format!("part {part}: only text modules are emulated")))?;
        modules.insert(
            part,
            StoredModule {
                content_type: ct,
                content,
            },
        );
    }
    if !modules.contains_key(&main) {
        return Err(invalid(format!(
            "metadata.main_module: {main:?} is not among the uploaded parts"
        )));
    }
    Ok((main, modules))
}

impl AccountState {
    fn namespace_of(&self, script: &str, class: &str) -> Option<&DurableObjectNamespace> {
        self.namespaces
            .iter()
            .find(|n| n.script.as_deref() == Some(script) && n.class.as_deref() == Some(class))
    }

    fn create_namespace(&mut self, script: &str, class: &str, sqlite: bool) -> String {
        let id = self.new_id();
        self.namespaces.push(DurableObjectNamespace {
            id: id.clone(),
            name: Some(format!("{script}_{class}")),
            class: Some(class.to_string()),
            script: Some(script.to_string()),
            use_sqlite: Some(sqlite),
        });
        id
    }

    /// Seeds a script as a `wrangler deploy` would leave it: these classes exported,
    /// and (with `namespaces`) their namespaces created, container-enabled when
    /// `container_enabled`.
    pub fn seed_script(
        &mut self,
        name: &str,
        classes: Vec<String>,
        bindings: Option<Vec<Value>>,
        namespaces: bool,
        container_enabled: bool,
    ) {
        let now = timestamp();
        let script = self.scripts.entry(name.to_string()).or_default();
        script.exported_classes = classes.iter().cloned().collect();
        if let Some(b) = bindings {
            script.bindings = b;
        }
        if script.created_on.is_empty() {
            script.created_on = now.clone();
        }
        // Every deployment is a new version with a new etag, as at Cloudflare.
        script.etag = format!(
            "{:x}",
            Sha256::digest(format!("{name}{classes:?}{}{now}", script.etag))
        );
        script.modified_on = now;
        if !namespaces {
            return;
        }
        for class in &classes {
            let id = match self.namespace_of(name, class) {
                Some(n) => n.id.clone(),
                None => self.create_namespace(name, class, true),
            };
            if container_enabled {
                self.container_enabled.insert(id);
            }
            if let Some(s) = self.scripts.get_mut(name) {
                s.migrated_classes.insert(class.clone());
                if container_enabled {
                    s.containers.insert(class.clone());
                }
                s.migration_tag.get_or_insert_with(|| "v1".into());
            }
        }
    }

    /// `GET /workers/scripts`.
    pub fn list_scripts(&self) -> Vec<Value> {
        self.scripts
            .iter()
            .map(|(name, s)| s.response(name))
            .collect()
    }

    /// How many uploads a script has had.
    pub fn upload_count(&self, name: &str) -> u64 {
        self.scripts.get(name).map(|s| s.uploads).unwrap_or(0)
    }

    /// `PUT /workers/scripts/{name}`: `metadata` (already checked against the official
    /// schema), the modules ([`decode_modules`]) and the main module's exports as the
    /// runtime reported them (or the static fallback without workerd).
    pub fn upload_script(
        &mut self,
        name: &str,
        metadata: &Value,
        main: String,
        modules: BTreeMap<String, StoredModule>,
        exports: super::workerd::Exports,
    ) -> Outcome<Value> {
        let exported: BTreeSet<String> = exports
            .iter()
            .filter(|(_, kind)| kind.as_str() == "class")
            .map(|(n, _)| n.clone())
            .collect();
        let current = self.scripts.get(name).cloned().unwrap_or_default();
        let not_exported = |what: &str, class: &str| {
            invalid(format!(
                "{what}: class {class} is not exported by the main module {main} (export class {class})"
            ))
        };

        // Migrations: tags, then the classes they create or delete.
        let migration = match metadata.get("migrations") {
            None | Some(Value::Null) => None,
            Some(v) => Some(read_migration(v)?),
        };
        let mut created: Vec<(String, bool)> = vec![];
        let mut deleted: Vec<String> = vec![];
        if let Some(m) = &migration {
            if m.old_tag != current.migration_tag {
                return Err(invalid(format!(
                    "migrations.old_tag: {} does not match the script's current migration tag {}",
                    m.old_tag
                        .as_deref()
                        .map(|t| format!("{t:?}"))
                        .unwrap_or("(unset)".into()),
                    current
                        .migration_tag
                        .as_deref()
                        .map(|t| format!("{t:?}"))
                        .unwrap_or("(unset)".into()),
                )));
            }
            for (class, sqlite) in &m.new_classes {
                if !exported.contains(class) {
                    return Err(not_exported("migrations.new_sqlite_classes", class));
                }
                if self.namespace_of(name, class).is_some() {
                    return Err(invalid(format!(
                        "migrations: class {class} already has a Durable Object namespace"
                    )));
                }
                created.push((class.clone(), *sqlite));
            }
            for class in &m.deleted_classes {
                if exported.contains(class) {
                    return Err(invalid(format!(
                        "migrations.deleted_classes: class {class} is still exported"
                    )));
                }
                if let Some(ns) = self.namespace_of(name, class)
                    && let Some(app) = self
                        .applications
                        .values()
                        .find(|a| a.namespace_id() == Some(ns.id.as_str()))
                {
                    return Err(invalid(format!(
                        "migrations.deleted_classes: class {class} backs container application {} ({})",
                        app.name, app.id
                    )));
                }
                deleted.push(class.clone());
            }
        }
        let has_namespace = |class: &str| {
            self.namespace_of(name, class).is_some() || created.iter().any(|(c, _)| c == class)
        };

        // Classes with data must stay exported.
        for ns in self
            .namespaces
            .iter()
            .filter(|n| n.script.as_deref() == Some(name))
        {
            let class = ns.class.as_deref().unwrap_or("");
            if !exported.contains(class) && !deleted.iter().any(|d| d == class) {
                return Err(invalid(format!(
                    "the new version does not export class {class}, which has Durable Objects; keep exporting it or delete it with a deleted_classes migration"
                )));
            }
        }

        // Bindings.
        let bindings: Vec<Value> = match metadata.get("bindings") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return Err(Failure::invalid("metadata.bindings: must be a list")),
        };
        let mut names = BTreeSet::new();
        let mut stored = Vec::new();
        for b in bindings {
            let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
            let bname = b
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if !names.insert(bname.clone()) {
                return Err(Failure::invalid(format!(
                    "metadata.bindings: duplicate binding name {bname}"
                )));
            }
            let mut b = b.clone();
            match kind {
                "durable_object_namespace"
                    if b.get("script_name")
                        .and_then(Value::as_str)
                        .is_none_or(|s| s == name) =>
                {
                    let class = b
                        .get("class_name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    if !exported.contains(&class) {
                        return Err(not_exported(&format!("metadata.bindings.{bname}"), &class));
                    }
                    if !has_namespace(&class) {
                        return Err(invalid(format!(
                            "metadata.bindings.{bname}: class {class} has no Durable Object namespace; add a migration with new_sqlite_classes"
                        )));
                    }
                }
                "inherit" => {
                    match current
                        .bindings
                        .iter()
                        .find(|x| x.get("name").and_then(Value::as_str) == Some(bname.as_str()))
                    {
                        Some(kept) => b = kept.clone(),
                        None => continue,
                    }
                }
                _ => {}
            }
            stored.push(b);
        }

        // Containers: each class exported and with a namespace.
        let mut containers = BTreeSet::new();
        for item in metadata
            .get("containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(class) = item.get("class_name").and_then(Value::as_str) else {
                return Err(invalid(
                    "metadata.containers: each item needs class_name (containers linked by name through exports are not emulated)",
                ));
            };
            if !exported.contains(class) {
                return Err(not_exported("metadata.containers", class));
            }
            if !has_namespace(class) {
                return Err(invalid(format!(
                    "metadata.containers: class {class} has no Durable Object namespace; add a migration with new_sqlite_classes"
                )));
            }
            containers.insert(class.to_string());
        }

        let flags = strings(
            metadata.get("compatibility_flags"),
            "metadata.compatibility_flags",
        )?;
        let tags = strings(metadata.get("tags"), "metadata.tags")?;
        if tags.len() > 10 {
            return Err(Failure::invalid("metadata.tags: at most 10 tags"));
        }
        if let Some(t) = tags
            .iter()
            .find(|t| t.contains(',') || t.contains('&') || t.len() > 1024)
        {
            return Err(Failure::invalid(format!(
                "metadata.tags: {t:?} must not contain ',' or '&' and is at most 1024 characters"
            )));
        }

        // Apply.
        for (class, sqlite) in &created {
            self.create_namespace(name, class, *sqlite);
        }
        for class in &deleted {
            if let Some(i) = self.namespaces.iter().position(|n| {
                n.script.as_deref() == Some(name) && n.class.as_deref() == Some(class.as_str())
            }) {
                let ns = self.namespaces.remove(i);
                self.container_enabled.remove(&ns.id);
            }
        }
        for ns in self
            .namespaces
            .iter()
            .filter(|n| n.script.as_deref() == Some(name))
        {
            if containers.contains(ns.class.as_deref().unwrap_or("")) {
                self.container_enabled.insert(ns.id.clone());
            } else {
                self.container_enabled.remove(&ns.id);
            }
        }
        let ids: BTreeMap<String, String> = self
            .namespaces
            .iter()
            .filter(|n| n.script.as_deref() == Some(name))
            .map(|n| (n.class.clone().unwrap_or_default(), n.id.clone()))
            .collect();
        for b in stored.iter_mut() {
            if b.get("type").and_then(Value::as_str) == Some("durable_object_namespace")
                && let Some(id) = b
                    .get("class_name")
                    .and_then(Value::as_str)
                    .and_then(|c| ids.get(c))
            {
                b["namespace_id"] = json!(id);
            }
        }
        let mut hasher = Sha256::new();
        hasher.update(metadata.to_string());
        for (n, m) in &modules {
            hasher.update(n);
            hasher.update(&m.content);
        }
        let now = timestamp();
        let script = self.scripts.entry(name.to_string()).or_default();
        if script.created_on.is_empty() {
            script.created_on = now.clone();
        }
        script.modified_on = now;
        script.etag = format!("{:x}", hasher.finalize());
        script.exported_classes = exported;
        script.bindings = stored;
        script
            .migrated_classes
            .extend(created.iter().map(|(c, _)| c.clone()));
        for d in &deleted {
            script.migrated_classes.remove(d);
        }
        script.containers = containers;
        script.tags = tags;
        if let Some(t) = migration.and_then(|m| m.new_tag) {
            script.migration_tag = Some(t);
        }
        script.compatibility_date = metadata
            .get("compatibility_date")
            .and_then(Value::as_str)
            .map(str::to_string);
        script.main_module = Some(main);
        script.modules = modules;
        script.exports = exports;
        script.compatibility_flags = flags;
        script.settings = settings_of(metadata);
        script.uploads += 1;
        let mut response = script.response(name);
        response["startup_time_ms"] = json!(0);
        Ok(response)
    }

    /// `DELETE /workers/scripts/{name}`: with `force`, its namespaces (and their data)
    /// go too; a namespace that backs a container application blocks the delete.
    pub fn delete_script(&mut self, name: &str, force: bool) -> Outcome<()> {
        if !self.scripts.contains_key(name) {
            return Err(script_not_found(name));
        }
        let owned: Vec<DurableObjectNamespace> = self
            .namespaces
            .iter()
            .filter(|n| n.script.as_deref() == Some(name))
            .cloned()
            .collect();
        for ns in &owned {
            if let Some(app) = self
                .applications
                .values()
                .find(|a| a.namespace_id() == Some(ns.id.as_str()))
            {
                return Err(invalid(format!(
                    "class {} backs container application {} ({}); delete the application first",
                    ns.class.as_deref().unwrap_or(""),
                    app.name,
                    app.id
                )));
            }
        }
        if !owned.is_empty() && !force {
            return Err(invalid(
                "the script has Durable Object namespaces; delete with force=true to delete them and their data",
            ));
        }
        self.namespaces
            .retain(|n| n.script.as_deref() != Some(name));
        for ns in owned {
            self.container_enabled.remove(&ns.id);
        }
        self.scripts.remove(name);
        self.forget_routing(name);
        Ok(())
    }

    /// `GET …/settings` (bindings as stored; secret values never shown).
    pub fn script_settings(&self, name: &str) -> Outcome<Value> {
        let script = self
            .scripts
            .get(name)
            .ok_or_else(|| script_not_found(name))?;
        let bindings: Vec<Value> = script
            .bindings
            .iter()
            .map(|b| {
                let mut b = b.clone();
                if b.get("type").and_then(Value::as_str) == Some("secret_text")
                    && let Some(o) = b.as_object_mut()
                {
                    o.remove("text");
                }
                b
            })
            .collect();
        let mut out = json!({
            "bindings": bindings,
            "compatibility_date": script.compatibility_date.clone().unwrap_or_else(|| "2025-01-01".into()),
        });
        // `workers_script-and-version-settings-item.compatibility_flags`: the upload's.
        if !script.compatibility_flags.is_empty() {
            out["compatibility_flags"] = json!(script.compatibility_flags);
        }
        for (k, v) in &script.settings {
            out[k.as_str()] = v.clone();
        }
        Ok(out)
    }

    /// `PATCH …/settings`: `bindings` (when present) replaces the list, `inherit` keeping
    /// a binding; a migration creates namespaces, which are **not** container-enabled
    /// (only an upload's `containers` does that).
    pub fn patch_script_settings(&mut self, name: &str, raw: &Value) -> Outcome<Value> {
        let script = self
            .scripts
            .get(name)
            .cloned()
            .ok_or_else(|| script_not_found(name))?;
        // The settings it names, each against its official schema (the part is not
        // JSON-checked on the way in: it is multipart).
        for k in SCRIPT_SETTINGS {
            if let Some(v) = raw.get(k).filter(|v| !v.is_null()) {
                check_setting(k, v, &format!("settings.{k}"))?;
            }
        }
        let migration = match raw.get("migrations") {
            None | Some(Value::Null) => None,
            Some(v) => Some(read_migration(v)?),
        };
        let mut created = vec![];
        if let Some(m) = &migration {
            for (class, sqlite) in &m.new_classes {
                if !script.exported_classes.contains(class) {
                    return Err(Failure::new(
                        400,
                        codes::INVALID_DURABLE_OBJECT,
                        format!("migrations: class {class} is not exported by script {name}"),
                    ));
                }
                if self.namespace_of(name, class).is_some() {
                    return Err(Failure::new(
                        400,
                        codes::INVALID_DURABLE_OBJECT,
                        format!("migrations: class {class} already has a Durable Object namespace"),
                    ));
                }
                created.push((class.clone(), *sqlite));
            }
        }
        let bindings = match raw.get("bindings") {
            None => None,
            Some(Value::Array(list)) => {
                let mut out = Vec::new();
                for b in list {
                    let bname = b.get("name").and_then(Value::as_str).unwrap_or("");
                    if b.get("type").and_then(Value::as_str) == Some("inherit") {
                        let kept = script
                            .bindings
                            .iter()
                            .find(|x| x.get("name").and_then(Value::as_str) == Some(bname))
                            .ok_or_else(|| {
                                Failure::invalid(format!(
                                    "bindings: inherit {bname}: no such binding on the latest version"
                                ))
                            })?;
                        out.push(kept.clone());
                        continue;
                    }
                    if b.get("type").and_then(Value::as_str) == Some("durable_object_namespace") {
                        let class = b.get("class_name").and_then(Value::as_str).unwrap_or("");
                        let has = self.namespace_of(name, class).is_some()
                            || created.iter().any(|(c, _)| c == class);
                        if !script.exported_classes.contains(class) || !has {
                            return Err(Failure::new(
                                400,
                                codes::INVALID_DURABLE_OBJECT,
                                format!(
                                    "bindings: {bname}: class {class:?} is not exported by script {name} or has no namespace"
                                ),
                            ));
                        }
                    }
                    out.push(b.clone());
                }
                Some(out)
            }
            Some(_) => return Err(Failure::invalid("settings.bindings: must be a list")),
        };
        for (class, sqlite) in &created {
            self.create_namespace(name, class, *sqlite);
        }
        if let Some(s) = self.scripts.get_mut(name) {
            s.migrated_classes
                .extend(created.into_iter().map(|(c, _)| c));
            if let Some(b) = bindings {
                s.bindings = b;
            }
            // A setting the PATCH names is replaced (null removes it); the others stay.
            for k in SCRIPT_SETTINGS {
                match raw.get(k) {
                    None => {}
                    Some(Value::Null) => {
                        s.settings.remove(k);
                    }
                    Some(v) => {
                        s.settings.insert(k.to_string(), v.clone());
                    }
                }
            }
        }
        self.script_settings(name)
    }

    pub fn list_namespaces(
        &self,
        page: usize,
        per_page: usize,
    ) -> (Vec<DurableObjectNamespace>, ResultInfo) {
        let total = self.namespaces.len();
        let items: Vec<_> = self
            .namespaces
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .cloned()
            .collect();
        let info = ResultInfo {
            page: Some(page as f64),
            per_page: Some(per_page as f64),
            count: Some(items.len() as f64),
            total_count: Some(total as f64),
            total_pages: Some(total.div_ceil(per_page).max(1) as f64),
        };
        (items, info)
    }
}

fn script_not_found(name: &str) -> Failure {
    Failure::new(
        404,
        codes::SCRIPT_NOT_FOUND,
        format!("This Worker does not exist on your account: {name}"),
    )
}

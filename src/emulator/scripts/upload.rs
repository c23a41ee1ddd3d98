//! A module upload (`PUT /workers/scripts/{name}`): the parts decoded into modules,
//! and every check of the module docs of [`super`] before anything is stored.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::namespaces::read_migration;
use super::settings::settings_of;
use super::{StoredModule, invalid, strings};
use crate::emulator::state::{AccountState, Failure, Outcome, timestamp};

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
    /// `PUT /workers/scripts/{name}`: `metadata` (already checked against the official
    /// schema), the modules ([`decode_modules`]) and the main module's exports as the
    /// runtime reported them (or the static fallback without workerd).
    pub fn upload_script(
        &mut self,
        name: &str,
        metadata: &Value,
        main: String,
        modules: BTreeMap<String, StoredModule>,
        exports: crate::emulator::workerd::Exports,
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
}

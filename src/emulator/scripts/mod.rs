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
//!
//! **The parts.** This file holds the script record ([`ScriptRecord`], its modules),
//! the script list, seeding and deletes; `upload.rs` the upload and its checks
//! ([`decode_modules`], `upload_script`); `settings.rs` the script settings
//! ([`SCRIPT_SETTINGS`], `GET` and `PATCH …/settings`); `namespaces.rs` the Durable
//! Object namespaces and the migrations that create and delete them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::state::{AccountState, Failure, Outcome, codes, timestamp};
use crate::cloudflare::types::DurableObjectNamespace;

mod namespaces;
mod settings;
mod upload;

pub use settings::SCRIPT_SETTINGS;
pub(super) use settings::check_setting;
pub use upload::{MODULE_CONTENT_TYPES, decode_modules};

/// Error code of an upload that breaks a Durable Object rule (Cloudflare's number for
/// these is not public; 10021 is the schema's "failed validation checks").
pub const SCRIPT_VALIDATION: i64 = 10021;

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

impl AccountState {
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
}

fn script_not_found(name: &str) -> Failure {
    Failure::new(
        404,
        codes::SCRIPT_NOT_FOUND,
        format!("This Worker does not exist on your account: {name}"),
    )
}

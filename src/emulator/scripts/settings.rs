//! Script settings: what an upload's metadata sets and `GET …/settings` returns, and
//! `PATCH …/settings`, each setting checked against its official schema.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::namespaces::read_migration;
use super::script_not_found;
use crate::emulator::state::{AccountState, Failure, Outcome, codes};

/// The settings an upload's metadata sets and `GET …/settings` returns, as uploaded
/// (the upload replaces them: a field the upload leaves out is gone).
pub const SCRIPT_SETTINGS: [&str; 4] = ["observability", "placement", "limits", "tail_consumers"];

/// Checks the value of script setting `key` (one of [`SCRIPT_SETTINGS`]) against its
/// official schema; `at` names it in the error.
pub(in crate::emulator) fn check_setting(key: &str, value: &Value, at: &str) -> Outcome<()> {
    let schema = match key {
        "observability" => "workers_observability",
        "placement" => "workers_placement_info",
        "limits" => "workers_limits",
        "tail_consumers" => "workers_tail_consumers",
        _ => return Err(Failure::invalid(format!("{at}: not a script setting"))),
    };
    let schema = json!({"$ref": format!("#/components/schemas/{schema}")});
    match crate::emulator::schema::Spec::workers()
        .violations(&schema, value, at)
        .first()
    {
        Some(first) => Err(Failure::invalid(first.clone())),
        None => Ok(()),
    }
}

pub(super) fn settings_of(metadata: &Value) -> BTreeMap<String, Value> {
    SCRIPT_SETTINGS
        .iter()
        .filter_map(|k| match metadata.get(*k) {
            None | Some(Value::Null) => None,
            Some(v) => Some((k.to_string(), v.clone())),
        })
        .collect()
}

impl AccountState {
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
}

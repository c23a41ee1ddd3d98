//! Durable Object namespaces: one per migrated class of a script, created and deleted
//! by the migrations of an upload or a settings PATCH, and listed.

use serde_json::Value;

use super::{invalid, strings};
use crate::cloudflare::types::{DurableObjectNamespace, ResultInfo};
use crate::emulator::state::{AccountState, Failure, Outcome};

/// The migration steps of an upload's `migrations` (single-step or `steps`).
pub(super) struct Migration {
    pub(super) old_tag: Option<String>,
    pub(super) new_tag: Option<String>,
    pub(super) new_classes: Vec<(String, bool)>,
    pub(super) deleted_classes: Vec<String>,
}

pub(super) fn read_migration(v: &Value) -> Outcome<Migration> {
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

impl AccountState {
    pub(super) fn namespace_of(
        &self,
        script: &str,
        class: &str,
    ) -> Option<&DurableObjectNamespace> {
        self.namespaces
            .iter()
            .find(|n| n.script.as_deref() == Some(script) && n.class.as_deref() == Some(class))
    }

    pub(super) fn create_namespace(&mut self, script: &str, class: &str, sqlite: bool) -> String {
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

//! The Worker plan: a pure function from (desired upload, observed script) to at most
//! one upload, with a diff per part. Uploads happen only on a difference; a class that
//! leaves the Worker keeps its namespace and data (no `deleted_classes`, ever).

use super::model::*;
use crate::cloudflare::types::*;
use crate::reconcile::plan::{Action, Change, Plan};
use crate::reconcile::reason::Reason;

/// What the account shows of one script.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ObservedWorker {
    /// The script from `GET /workers/scripts`, when it exists.
    pub script: Option<ScriptInfo>,
    /// Classes of this script that have a Durable Object namespace.
    pub namespaced_classes: Vec<String>,
    /// workers.dev, routes, domains, crons ([`super::reach`]).
    pub reach: super::reach::ObservedReach,
    /// The script's settings, read when flaredock did not upload it (adoption,
    /// `managementPolicy: Observe`): compared field by field.
    pub settings: Option<ScriptSettings>,
    /// Classes of this script whose namespace runs a container application (read with
    /// the settings): container-enabled whoever uploaded the script.
    pub container_enabled: Vec<String>,
    /// The content hash of the script's modules as Cloudflare has them
    /// (`bindings::content_hash`), read with the settings.
    pub live_modules_hash: Option<String>,
    /// The script carries flaredock's tags but not the version flaredock saw in sync
    /// last (someone uploaded over it): compared field by field, as drift.
    pub uploaded_elsewhere: bool,
}

/// How the migration of an upload moves the script's tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationStep {
    pub old_tag: Option<String>,
    pub new_tag: String,
    pub new_sqlite_classes: Vec<String>,
}

fn change(plan: &mut Plan, field: String, from: impl Into<String>, to: impl Into<String>) {
    plan.changes.push(Change::new(field, from, to));
}

/// Two containers asking for the same class with different bindings, one binding for
/// two classes, or a binding that is also a var or secret.
fn conflicts(desired: &DesiredWorker) -> Option<String> {
    for pair in desired.containers.windows(2) {
        if pair[0].class_name == pair[1].class_name && pair[0].binding_name != pair[1].binding_name
        {
            return Some(format!(
                "CloudflareContainers {} and {} bind class {} under different names ({} and {})",
                pair[0].container,
                pair[1].container,
                pair[0].class_name,
                pair[0].binding_name,
                pair[1].binding_name
            ));
        }
    }
    let mut seen: std::collections::BTreeMap<&str, &ContainerClass> = Default::default();
    for c in &desired.containers {
        if let Some(other) = seen.insert(&c.binding_name, c)
            && other.class_name != c.class_name
        {
            return Some(format!(
                "binding {} is asked for classes {} ({}) and {} ({})",
                c.binding_name, other.class_name, other.container, c.class_name, c.container
            ));
        }
        if desired.vars.contains_key(&c.binding_name)
            || desired
                .inputs
                .secrets
                .iter()
                .any(|s| s.name == c.binding_name)
        {
            return Some(format!(
                "binding {} of CloudflareContainer {} is also a var or secret of the Worker",
                c.binding_name, c.container
            ));
        }
    }
    None
}

/// The metadata and parts of the upload that makes the script match.
pub fn upload_for(
    desired: &DesiredWorker,
    tags: Vec<String>,
    migration: Option<&MigrationStep>,
) -> ScriptUpload {
    let mut bindings: Vec<Binding> = desired
        .vars
        .iter()
        .map(|(k, v)| Binding::plain_text(k, v))
        .collect();
    bindings.extend(desired.bindings.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    for c in &desired.containers {
        if seen.insert(&c.binding_name) {
            bindings.push(Binding::durable_object(&c.binding_name, &c.class_name));
        }
    }
    ScriptUpload {
        metadata: UploadMetadata {
            main_module: desired.main_module.clone(),
            compatibility_date: desired.compatibility_date.clone(),
            compatibility_flags: desired.compatibility_flags.clone(),
            bindings,
            secrets: desired
                .inputs
                .secrets
                .iter()
                .map(|s| SecretBinding {
                    name: s.name.clone(),
                    text: s.value.clone(),
                })
                .collect(),
            migrations: migration.map(|m| Migrations {
                old_tag: m.old_tag.clone(),
                new_tag: Some(m.new_tag.clone()),
                new_sqlite_classes: m.new_sqlite_classes.clone(),
                ..Default::default()
            }),
            containers: desired
                .classes()
                .into_iter()
                .map(|class_name| ContainerItem { class_name })
                .collect(),
            tags,
            observability: desired.settings.observability.clone(),
            placement: desired.settings.placement.clone(),
            limits: desired.settings.limits.clone(),
            tail_consumers: desired.settings.tail_consumers.clone(),
        },
        modules: desired.inputs.modules.clone(),
    }
}

/// Desired vs observed → at most one upload, then what makes the Worker reachable as
/// the spec says ([`super::reach::plan_reach`]).
pub fn plan_worker(desired: &DesiredWorker, observed: &ObservedWorker) -> Plan {
    let mut plan = plan_script(desired, observed);
    if plan.blocked.is_none() {
        // The tags the script carries once the upload (if any) is done.
        let tags_after = plan
            .actions
            .iter()
            .find_map(|a| match a {
                Action::UploadScript { upload, .. } => Some(upload.metadata.tags.clone()),
                _ => None,
            })
            .or_else(|| observed.script.as_ref().map(|s| s.tags().to_vec()));
        let uploads = plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::UploadScript { .. }));
        super::reach::plan_reach(
            &desired.script_name,
            &desired.reach,
            &observed.reach,
            uploads,
            &mut plan,
        );
        super::reach::plan_record(
            &desired.script_name,
            &desired.reach,
            &observed.reach,
            tags_after,
            &mut plan,
        );
    }
    plan
}

/// Desired vs observed script → at most one upload.
fn plan_script(desired: &DesiredWorker, observed: &ObservedWorker) -> Plan {
    let mut plan = Plan::default();
    if let Some(message) = super::bindings::container_conflict(desired) {
        return Plan::refuse(Reason::BindingConflict, message);
    }
    if let Some(message) = conflicts(desired) {
        return Plan::refuse(Reason::BindingConflict, message);
    }
    let recorded = observed.script.as_ref().map(RecordedTags::read);
    let foreign = recorded
        .as_ref()
        .map(|r| r.foreign.clone())
        .unwrap_or_default();
    // The reachability record is carried as it is: it changes only once what it
    // records is done (`reach::ReachAction::Record`).
    let live_reach = recorded.as_ref().and_then(|r| r.reach.clone());
    let tags = match desired.tags_with_reach(&foreign, live_reach.as_deref()) {
        Ok(t) => t,
        Err(message) => return Plan::refuse(Reason::TooManyContainers, message),
    };
    let script = &desired.script_name;
    let mut adopts = false;
    if let (Some(info), Some(recorded)) = (&observed.script, &recorded) {
        match &recorded.owner {
            Some(o) if *o == desired.owner => {}
            Some(o) => {
                return Plan::refuse(
                    Reason::ScriptOwnedElsewhere,
                    format!(
                        "Worker script {script} is owned by flaredock object {o}; flaredock never takes a script another object owns"
                    ),
                );
            }
            None if !desired.adopt => {
                return Plan::refuse(
                    Reason::ScriptNotOwned,
                    format!(
                        "Worker script {script} already exists and was not uploaded by flaredock; set spec.adopt: true to take it over (its migration tag {} is kept)",
                        info.migration_tag.as_deref().unwrap_or("(none)")
                    ),
                );
            }
            None => {
                adopts = true;
                // The version taken over is named, so that an approval of this
                // adoption is stale once someone uploads the script again.
                let version = info
                    .etag
                    .as_deref()
                    .map(|e| format!(" (etag {})", e.chars().take(16).collect::<String>()))
                    .or_else(|| {
                        info.modified_on
                            .as_deref()
                            .map(|m| format!(" (modified {m})"))
                    })
                    .unwrap_or_default();
                change(
                    &mut plan,
                    format!("worker.{script}.owner"),
                    format!("not flaredock{version}"),
                    &desired.owner,
                );
            }
        }
        let live = recorded.hashes.clone().unwrap_or_default();
        // A script flaredock did not upload: its settings, read from Cloudflare, are
        // compared field by field instead of by the hash tag it does not carry.
        let by_field = (recorded.hashes.is_none() || observed.uploaded_elsewhere)
            && observed.settings.is_some();
        if let (true, Some(settings)) = (by_field, &observed.settings) {
            if let Some(live_code) = &observed.live_modules_hash {
                plan.changes
                    .extend(super::bindings::modules_change(desired, live_code, script));
            }
            plan.changes.extend(super::bindings::settings_changes(
                desired,
                settings,
                script,
                recorded.hashes.is_none(),
            ));
        }
        for ((part, want), (_, have)) in desired.hashes.parts().iter().zip(live.parts()) {
            if by_field && (*part != "code" || observed.live_modules_hash.is_some()) {
                continue;
            }
            if want != &have && PartHashes::is_setting(part) {
                // A setting is shown by its value; flaredock's tag without its part
                // means flaredock's upload set none.
                let from = if have.is_empty() {
                    "(none)".to_string()
                } else {
                    format!("hash {have}")
                };
                change(
                    &mut plan,
                    format!("worker.{script}.{part}"),
                    from,
                    shown_setting(desired, part),
                );
            } else if want != &have {
                let what = match *part {
                    "code" => "modules",
                    "config" => "compatibility",
                    "secrets" => "secrets (values not shown)",
                    p => p,
                };
                let from = if have.is_empty() {
                    "unknown".to_string()
                } else {
                    format!("hash {have}")
                };
                change(
                    &mut plan,
                    format!("worker.{script}.{what}"),
                    from,
                    format!("hash {want}"),
                );
            }
        }
    } else {
        change(&mut plan, format!("worker.{script}"), "absent", "uploaded");
        for b in &desired.bindings {
            change(
                &mut plan,
                format!("worker.{script}.bindings.{}", b.name),
                "absent",
                crate::spec::bindings::shown(b),
            );
        }
        for (field, _, value) in desired.settings.fields() {
            if value.is_some() {
                change(
                    &mut plan,
                    format!("worker.{script}.{field}"),
                    "absent",
                    shown_setting(desired, field),
                );
            }
        }
    }

    let mut live_classes: Vec<String> = recorded
        .as_ref()
        .map(|r| r.containers.clone())
        .unwrap_or_default();
    live_classes.extend(observed.container_enabled.iter().cloned());
    live_classes.sort();
    live_classes.dedup();
    let classes = desired.classes();
    for c in &desired.containers {
        if !live_classes.contains(&c.class_name) {
            change(
                &mut plan,
                format!("worker.{script}.containers.{}", c.class_name),
                "absent",
                format!(
                    "container-enabled, binding {} (for {})",
                    c.binding_name, c.container
                ),
            );
        }
    }
    for gone in live_classes.iter().filter(|c| !classes.contains(c)) {
        change(
            &mut plan,
            format!("worker.{script}.containers.{gone}"),
            "container-enabled",
            "removed (the class, its namespace and its Durable Object data are kept: flaredock never sends deleted_classes; keep exporting the class)",
        );
    }
    let new_classes: Vec<String> = desired
        .all_classes()
        .iter()
        .filter(|c| !observed.namespaced_classes.contains(c))
        .cloned()
        .collect();
    let current_tag = observed
        .script
        .as_ref()
        .and_then(|s| s.migration_tag.clone());
    let migration = (!new_classes.is_empty()).then(|| MigrationStep {
        old_tag: current_tag.clone(),
        new_tag: next_migration_tag(current_tag.as_deref()),
        new_sqlite_classes: new_classes.clone(),
    });
    if let Some(m) = &migration {
        change(
            &mut plan,
            format!("worker.{script}.migration"),
            m.old_tag.clone().unwrap_or_else(|| "(none)".into()),
            format!(
                "{} (new_sqlite_classes {})",
                m.new_tag,
                m.new_sqlite_classes.join(", ")
            ),
        );
    }
    let tags_match = observed
        .script
        .as_ref()
        .is_some_and(|s| s.tags() == tags.as_slice());
    if plan.changes.is_empty() && migration.is_none() && tags_match {
        return plan;
    }
    if plan.changes.is_empty() {
        change(
            &mut plan,
            format!("worker.{script}.tags"),
            "differ",
            "flaredock's tags",
        );
    }
    plan.actions.push(Action::UploadScript {
        script: script.clone(),
        upload: Box::new(upload_for(desired, tags, migration.as_ref())),
        creates: observed.script.is_none(),
        adopts,
    });
    plan
}

/// A script setting of the upload as `plan` shows it: its official JSON, or `(none)`.
pub fn shown_setting(desired: &DesiredWorker, field: &str) -> String {
    desired
        .settings
        .fields()
        .iter()
        .find(|(f, ..)| *f == field)
        .and_then(|(_, _, v)| v.as_ref())
        .map(|v| v.to_string())
        .unwrap_or_else(|| "(none)".into())
}

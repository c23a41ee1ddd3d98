//! `spec.bindings` in the Worker plan, and what adopting a script compares: its live
//! settings (`GET /workers/scripts/{script}/settings`: bindings by name and value,
//! compatibility, placement, observability, limits, tail consumers) against what the
//! upload would set. Pure functions; the settings are read by `observe.rs`.
//!
//! A script flaredock did not upload carries no hash tag, so its parts cannot be
//! compared by hash: they are compared field by field. Every live binding the upload
//! would not carry is a removal, typed destructive ([`Change::destructive`]), so that the adoption plan (and
//! the approval hash that covers it) names it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::model::DesiredWorker;
use crate::cloudflare::types::{Binding, ScriptSettings};
use crate::reconcile::plan::Change;
use crate::spec::CloudflareWorker;
use crate::spec::bindings::shown;
use crate::spec::worker_settings::{SettingDiff, compare};

/// `spec.bindings` in the official form, sorted by name (entries the official schema
/// refuses are refused before this, by [`invalid`]).
pub fn declared(obj: &CloudflareWorker) -> Vec<Binding> {
    let mut out: Vec<Binding> = obj
        .spec
        .bindings
        .iter()
        .filter_map(|b| b.to_official())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Classes of the script itself bound without a container: a `durable_object_namespace`
/// binding with a `class_name` and no other script.
pub fn own_classes(bindings: &[Binding]) -> Vec<String> {
    let mut out: Vec<String> = bindings
        .iter()
        .filter(|b| b.kind == "durable_object_namespace" && b.str_field("script_name").is_none())
        .filter_map(|b| b.str_field("class_name").map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The first problem of `spec.bindings` (official schema, duplicate names, a name that
/// is also a var or secret), as `field: message`.
pub fn invalid(obj: &CloudflareWorker) -> Option<String> {
    crate::spec::bindings::validate_bindings(&obj.spec)
        .into_iter()
        .next()
        .map(|(field, message)| format!("{field}: {message}"))
}

/// A `spec.bindings` name that a container of the Worker also binds.
pub fn container_conflict(desired: &DesiredWorker) -> Option<String> {
    desired.containers.iter().find_map(|c| {
        desired
            .bindings
            .iter()
            .position(|b| b.name == c.binding_name)
            .map(|_| {
                format!(
                    "spec.bindings: binding {} is also the binding of CloudflareContainer {} (class {})",
                    c.binding_name, c.container, c.class_name
                )
            })
    })
}

/// Every non-secret binding the upload carries, by name: vars, `spec.bindings`, and
/// the Durable Object bindings of the container classes.
pub fn upload_bindings(desired: &DesiredWorker) -> BTreeMap<String, Binding> {
    let mut out: BTreeMap<String, Binding> = desired
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), Binding::plain_text(k, v)))
        .collect();
    for b in &desired.bindings {
        out.insert(b.name.clone(), b.clone());
    }
    for c in &desired.containers {
        out.entry(c.binding_name.clone())
            .or_insert_with(|| Binding::durable_object(&c.binding_name, &c.class_name));
    }
    out
}

/// Does a live binding say what the upload says? Fields Cloudflare fills in (a Durable
/// Object binding's `namespace_id`, a `d1` binding's `id` beside `database_id`) are not
/// differences.
fn same(live: &Binding, want: &Binding) -> bool {
    if live.kind != want.kind {
        return false;
    }
    want.rest.iter().all(|(k, v)| live.rest.get(k) == Some(v))
        && live.rest.iter().all(|(k, v)| {
            want.rest.contains_key(k)
                || matches!(
                    (live.kind.as_str(), k.as_str()),
                    ("durable_object_namespace", "namespace_id") | ("d1", "id")
                )
                || v.is_null()
        })
}

/// A hash of module contents by name (what Cloudflare's download gives back: names
/// and bytes, not which module is the main one), to compare a script flaredock did not
/// upload with the spec's code.
pub fn content_hash<'a>(modules: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<(&str, &[u8])> = modules.into_iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    for (name, content) in sorted {
        for p in [name.as_bytes(), content] {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
    }
    hex::encode(&h.finalize()[..8])
}

/// The modules line of an adoption plan: `None` when the live modules are the spec's.
pub fn modules_change(desired: &DesiredWorker, live: &str, script: &str) -> Option<Change> {
    let want = content_hash(
        desired
            .inputs
            .modules
            .iter()
            .map(|m| (m.name.as_str(), m.content.as_slice())),
    );
    (want != live).then(|| {
        Change::new(
            format!("worker.{script}.modules"),
            format!("content hash {live} (as Cloudflare has it)"),
            format!("content hash {want}"),
        )
    })
}

fn push(out: &mut Vec<Change>, field: String, from: impl Into<String>, to: impl Into<String>) {
    out.push(Change::new(field, from, to));
}

fn json_or_default(v: &Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => "(none)".into(),
        Some(v) => v.to_string(),
    }
}

/// What the upload changes of a script's live settings, field by field (`settings`
/// read from Cloudflare). Secrets are compared by name only: Cloudflare never shows a
/// value, and neither does the plan.
pub fn settings_changes(
    desired: &DesiredWorker,
    settings: &ScriptSettings,
    script: &str,
    adopting: bool,
) -> Vec<Change> {
    let mut out = Vec::new();
    let at = |f: &str| format!("worker.{script}.{f}");
    let live_date = settings.compatibility_date.clone().unwrap_or_default();
    if live_date != desired.compatibility_date {
        push(
            &mut out,
            at("compatibilityDate"),
            if live_date.is_empty() {
                "(none)".to_string()
            } else {
                live_date
            },
            &desired.compatibility_date,
        );
    }
    let mut live_flags = settings.compatibility_flags.clone();
    live_flags.sort();
    let mut want_flags = desired.compatibility_flags.clone();
    want_flags.sort();
    if live_flags != want_flags {
        push(
            &mut out,
            at("compatibilityFlags"),
            format!("[{}]", live_flags.join(", ")),
            format!("[{}]", want_flags.join(", ")),
        );
    }
    // The settings the upload carries (the spec's): a live value the spec leaves out is
    // a removal.
    for (field, official, want) in desired.settings.fields() {
        let live = match official {
            "observability" => &settings.observability,
            "placement" => &settings.placement,
            "limits" => &settings.limits,
            _ => &settings.tail_consumers,
        };
        let spec_field = format!("spec.{field}");
        match compare(official, live.as_ref(), want.as_ref()) {
            SettingDiff::Same => {}
            SettingDiff::Changed => push(
                &mut out,
                at(field),
                json_or_default(live),
                json_or_default(want),
            ),
            SettingDiff::Drops(paths) => {
                let consequence = if want.is_none() {
                    format!("the live setting is removed; set {spec_field} to keep it")
                } else {
                    format!(
                        "the live {} is removed; set it in {spec_field} to keep it",
                        paths
                            .iter()
                            .map(|p| format!("{field}.{p}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                out.push(Change::destructive(
                    at(field),
                    json_or_default(live),
                    json_or_default(want),
                    consequence,
                ));
            }
        }
    }

    let want = upload_bindings(desired);
    let secrets: Vec<&str> = desired
        .inputs
        .secrets
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let mut live: BTreeMap<&str, &Binding> = BTreeMap::new();
    for b in &settings.bindings {
        live.insert(b.name.as_str(), b);
    }
    for (name, w) in &want {
        match live.get(name.as_str()) {
            None => push(
                &mut out,
                at(&format!("bindings.{name}")),
                "absent",
                shown(w),
            ),
            Some(l) if !same(l, w) => push(
                &mut out,
                at(&format!("bindings.{name}")),
                shown(l),
                shown(w),
            ),
            Some(_) => {}
        }
    }
    for s in &secrets {
        match live.get(s) {
            // Drift of a script flaredock owns: a value cannot be compared, so a secret
            // that is there is not a difference (its hash tag says the rest).
            Some(l) if l.kind == "secret_text" && !adopting => {}
            Some(l) if l.kind == "secret_text" => push(
                &mut out,
                at(&format!("secrets.{s}")),
                "set (value not shown)",
                "set from the spec (value not shown; rewritten)",
            ),
            Some(l) => push(
                &mut out,
                at(&format!("bindings.{s}")),
                shown(l),
                "secret_text (value not shown)",
            ),
            None => push(
                &mut out,
                at(&format!("secrets.{s}")),
                "absent",
                "secret_text (value not shown)",
            ),
        }
    }
    for (name, l) in &live {
        if !want.contains_key(*name) && !secrets.contains(name) {
            out.push(Change::destructive(
                at(&format!("bindings.{name}")),
                shown(l),
                "removed",
                "the Worker loses this binding; declare it in spec.bindings to keep it",
            ));
        }
    }
    out
}

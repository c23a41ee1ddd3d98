//! The script settings of a CloudflareWorker (`observability`, `placement`, `limits`,
//! `tailConsumers`): table tests of the Worker plan (unset → set, changed, a live value
//! the spec leaves out on adoption is a named destructive removal, an approved removal
//! happens once, an unchanged re-apply makes zero writes), the validation before any
//! call, and end to end against the emulator, which checks them against the official
//! schema, keeps them and returns them from `GET …/settings`.

mod common;

use flaredock::cloudflare::types::*;
use flaredock::reconcile::plan::{Action, Change, Plan};
use flaredock::reconcile::worker::inputs::{SourceData, resolve_local};
use flaredock::reconcile::worker::model::DesiredWorker;
use flaredock::reconcile::worker::plan::{ObservedWorker, plan_worker};
use flaredock::spec::CloudflareWorker;
use serde_json::{Value, json};

const KEY: [u8; 32] = [7; 32];
const CODE: &str = "export class Room {}\nexport default { fetch: () => new Response('hi') };\n";

fn parse(extra: &str) -> Result<CloudflareWorker, String> {
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareWorker\nmetadata: {{name: shop, namespace: apps}}\nspec:\n  compatibilityDate: '2026-06-01'\n  source:\n    inline:\n      mainModule: index.js\n      modules:\n        index.js: {CODE:?}\n  vars: {{MODE: live}}\n  workersDev: false\n  bindings:\n    - {{name: ROOMS, durableObject: {{className: Room}}}}\n{extra}"
    );
    match flaredock::manifest::parse_any(&doc, "w.yaml", 1) {
        Ok(flaredock::manifest::Document::Worker(w)) => Ok(*w),
        Ok(other) => Err(format!("not a Worker: {other:?}")),
        Err(e) => Err(format!("{e:?}")),
    }
}

fn worker(extra: &str) -> CloudflareWorker {
    parse(extra).unwrap_or_else(|e| panic!("valid manifest: {e}"))
}

fn desired(extra: &str) -> DesiredWorker {
    let obj = worker(extra);
    let inputs = resolve_local(&obj, &SourceData::default())
        .expect("local source")
        .expect("inputs");
    DesiredWorker::new(
        &obj,
        inputs,
        vec![],
        &KEY,
        &flaredock::spec::ClusterIdentity::cli(),
    )
}

/// The script as the upload of `d` left it (flaredock's tags).
fn uploaded(d: &DesiredWorker) -> ObservedWorker {
    ObservedWorker {
        script: Some(ScriptInfo {
            id: d.script_name.clone(),
            tags: Some(d.tags(&[]).unwrap()),
            migration_tag: Some("v1".into()),
            ..Default::default()
        }),
        namespaced_classes: d.all_classes(),
        ..Default::default()
    }
}

fn upload(p: &Plan) -> &ScriptUpload {
    match p.actions.as_slice() {
        [Action::UploadScript { upload, .. }] => upload,
        other => panic!("expected one upload, got {other:?} ({p:?})"),
    }
}

fn change<'p>(p: &'p Plan, field: &str) -> Option<&'p Change> {
    p.changes.iter().find(|c| c.field == field)
}

fn metadata_field(m: &UploadMetadata, official: &str) -> Option<Value> {
    match official {
        "observability" => m.observability.clone(),
        "placement" => m.placement.clone(),
        "limits" => m.limits.clone(),
        _ => m.tail_consumers.clone(),
    }
}

/// `(spec field, official field, manifest lines, the official value uploaded)`.
fn settings_table() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    vec![
        (
            "observability",
            "observability",
            "  observability:\n    enabled: true\n    headSamplingRate: 0.5\n    logs: {enabled: true, invocationLogs: false, headSamplingRate: 0.25}\n",
            json!({"enabled": true, "head_sampling_rate": 0.5, "logs": {"enabled": true, "invocation_logs": false, "head_sampling_rate": 0.25}}),
        ),
        (
            "placement",
            "placement",
            "  placement: {mode: smart}\n",
            json!({"mode": "smart"}),
        ),
        (
            "limits",
            "limits",
            "  limits: {cpuMs: 50}\n",
            json!({"cpu_ms": 50}),
        ),
        (
            "tailConsumers",
            "tail_consumers",
            "  tailConsumers:\n    - {service: logs, environment: production}\n    - {service: audit, namespace: tenants}\n",
            json!([{"service": "logs", "environment": "production"}, {"service": "audit", "namespace": "tenants"}]),
        ),
    ]
}

#[test]
fn each_setting_unset_to_set_is_uploaded_shown_by_field_and_then_left_alone() {
    let without = desired("");
    for (field, official, yaml, value) in settings_table() {
        let d = desired(yaml);
        let at = format!("worker.shop.{field}");
        // A new script: shown by value, uploaded in the metadata.
        let p = plan_worker(&d, &ObservedWorker::default());
        let c = change(&p, &at).unwrap_or_else(|| panic!("{field} shown: {:?}", p.changes));
        assert_eq!(c.from, "absent", "{c}");
        assert_eq!(serde_json::from_str::<Value>(&c.to).unwrap(), value, "{c}");
        assert_eq!(
            metadata_field(&upload(&p).metadata, official),
            Some(value.clone())
        );
        // A script flaredock uploaded without it: one upload that sets it.
        let p = plan_worker(&d, &uploaded(&without));
        let c = change(&p, &at).unwrap_or_else(|| panic!("{field} shown: {:?}", p.changes));
        assert_eq!(c.from, "(none)", "{c}");
        assert!(!c.is_destructive(), "{c}");
        assert_eq!(serde_json::from_str::<Value>(&c.to).unwrap(), value, "{c}");
        assert_eq!(p.changes.len(), 1, "only {field} differs: {:?}", p.changes);
        let m = &upload(&p).metadata;
        assert_eq!(metadata_field(m, official), Some(value.clone()));
        // On the wire, in the metadata part, under its official name.
        let wire = serde_json::to_value(m).unwrap();
        assert_eq!(wire[official], value, "{wire}");
        // Unchanged: nothing to do.
        let again = plan_worker(&d, &uploaded(&d));
        assert!(
            again.changes.is_empty() && again.actions.is_empty(),
            "{field}: {again:?}"
        );
    }
}

#[test]
fn a_worker_without_settings_keeps_the_hash_tag_it_had() {
    let d = desired("");
    let tags = d.tags(&[]).unwrap();
    let hash = tags
        .iter()
        .find(|t| t.starts_with("flaredock.dev/hash="))
        .expect("hash tag");
    let parts: Vec<&str> = hash
        .trim_start_matches("flaredock.dev/hash=")
        .split(';')
        .map(|p| p.split(':').next().unwrap())
        .collect();
    assert_eq!(parts, ["code", "config", "vars", "secrets", "bindings"]);
    let with = desired("  limits: {cpuMs: 50}\n");
    let tag = with.tags(&[]).unwrap()[1].clone();
    assert!(tag.contains(";limits:"), "{tag}");
    assert!(!tag.contains("placement:"), "{tag}");
}

#[test]
fn a_changed_setting_reuploads_with_the_new_value() {
    for (before, after, field, official, want) in [
        (
            "  limits: {cpuMs: 50}\n",
            "  limits: {cpuMs: 80}\n",
            "limits",
            "limits",
            json!({"cpu_ms": 80}),
        ),
        (
            "  placement: {mode: smart}\n",
            "  placement: {mode: targeted, region: 'aws:us-east-1'}\n",
            "placement",
            "placement",
            json!({"mode": "targeted", "region": "aws:us-east-1"}),
        ),
        (
            "  observability: {enabled: true}\n",
            "  observability: {enabled: false}\n",
            "observability",
            "observability",
            json!({"enabled": false}),
        ),
        (
            "  tailConsumers: [{service: logs}]\n",
            "  tailConsumers: [{service: audit}]\n",
            "tailConsumers",
            "tail_consumers",
            json!([{"service": "audit"}]),
        ),
    ] {
        let old = desired(before);
        let new = desired(after);
        let p = plan_worker(&new, &uploaded(&old));
        let c = change(&p, &format!("worker.shop.{field}")).expect("shown by field");
        assert!(c.from.starts_with("hash "), "{c}");
        assert_eq!(serde_json::from_str::<Value>(&c.to).unwrap(), want);
        assert_eq!(
            metadata_field(&upload(&p).metadata, official),
            Some(want.clone())
        );
        // Taken out of the spec: the upload carries none (the spec said so: not a
        // surprise, so not marked destructive).
        let p = plan_worker(&desired(""), &uploaded(&old));
        let c = change(&p, &format!("worker.shop.{field}")).expect("removal shown");
        assert_eq!(c.to, "(none)", "{c}");
        assert_eq!(metadata_field(&upload(&p).metadata, official), None);
    }
}

/// A script deployed elsewhere with every setting, as `GET …/settings` returns it.
fn deployed_elsewhere() -> ObservedWorker {
    let binding = |v: Value| -> Binding { serde_json::from_value(v).expect("binding") };
    ObservedWorker {
        script: Some(ScriptInfo {
            id: "shop".into(),
            tags: Some(vec!["team-a".into()]),
            migration_tag: Some("v1".into()),
            etag: Some("e7a9".into()),
            ..Default::default()
        }),
        namespaced_classes: vec!["Room".into()],
        settings: Some(ScriptSettings {
            bindings: vec![
                binding(
                    json!({"type": "durable_object_namespace", "name": "ROOMS", "class_name": "Room", "namespace_id": "ns-room"}),
                ),
                binding(json!({"type": "plain_text", "name": "MODE", "text": "live"})),
            ],
            compatibility_date: Some("2026-06-01".into()),
            placement: Some(json!({"mode": "smart", "status": "SUCCESS"})),
            observability: Some(
                json!({"enabled": true, "head_sampling_rate": 1, "traces": {"enabled": true}}),
            ),
            limits: Some(json!({"cpu_ms": 50})),
            tail_consumers: Some(json!([{"service": "logs"}])),
            ..Default::default()
        }),
        live_modules_hash: Some(flaredock::reconcile::worker::bindings::content_hash([(
            "index.js",
            CODE.as_bytes(),
        )])),
        ..Default::default()
    }
}

const ALL_AS_LIVE: &str = "  adopt: true\n  placement: {mode: smart}\n  observability:\n    enabled: true\n  limits: {cpuMs: 50}\n  tailConsumers: [{service: logs}]\n";

#[test]
fn adopting_compares_each_setting_with_the_spec() {
    // The spec says what Cloudflare has (traces aside): only traces is a removal.
    let p = plan_worker(&desired(ALL_AS_LIVE), &deployed_elsewhere());
    assert!(p.blocked.is_none(), "{p:?}");
    for same in ["placement", "limits", "tailConsumers"] {
        assert!(
            change(&p, &format!("worker.shop.{same}")).is_none(),
            "{same} is as the spec says: {:?}",
            p.changes
        );
    }
    let o = change(&p, "worker.shop.observability").expect("traces are left out");
    assert!(o.is_destructive(), "{o}");
    assert!(
        o.consequence()
            .is_some_and(|c| c.contains("observability.traces")),
        "{o}"
    );
    assert!(!o.to_string().contains("unknown"), "{o}");

    // Nothing set: each live setting is a named destructive removal.
    let p = plan_worker(&desired("  adopt: true\n"), &deployed_elsewhere());
    for field in ["placement", "observability", "limits", "tailConsumers"] {
        let c = change(&p, &format!("worker.shop.{field}")).unwrap_or_else(|| panic!("{field}"));
        assert!(c.is_destructive(), "{c}");
        assert_eq!(c.to, "(none)", "{c}");
        assert!(
            c.to_string().contains(&format!(
                "(DESTRUCTIVE: the live setting is removed; set spec.{field} to keep it)"
            )),
            "{c}"
        );
    }

    // Another value, nothing lost: a change, not a removal.
    let p = plan_worker(
        &desired(&ALL_AS_LIVE.replace("cpuMs: 50", "cpuMs: 80")),
        &deployed_elsewhere(),
    );
    let l = change(&p, "worker.shop.limits").expect("limits differ");
    assert!(!l.is_destructive(), "{l}");
    assert_eq!(
        (l.from.as_str(), l.to.as_str()),
        (r#"{"cpu_ms":50}"#, r#"{"cpu_ms":80}"#)
    );
}

#[test]
fn observing_a_script_deployed_elsewhere_compares_the_settings_the_same_way() {
    let p = plan_worker(
        &desired("  managementPolicy: Observe\n  placement: {mode: smart}\n"),
        &deployed_elsewhere(),
    );
    assert!(
        change(&p, "worker.shop.placement").is_none(),
        "{:?}",
        p.changes
    );
    for field in ["observability", "limits", "tailConsumers"] {
        let c = change(&p, &format!("worker.shop.{field}")).unwrap_or_else(|| panic!("{field}"));
        assert!(c.is_destructive(), "{c}");
    }
}

#[test]
fn an_approved_removal_happens_once() {
    let d = desired("  adopt: true\n  placement: {mode: smart}\n");
    let first = plan_worker(&d, &deployed_elsewhere());
    let m = &upload(&first).metadata;
    assert_eq!(m.placement, Some(json!({"mode": "smart"})));
    assert_eq!(
        (&m.limits, &m.tail_consumers, &m.observability),
        (&None, &None, &None)
    );
    let removed: Vec<&str> = first
        .changes
        .iter()
        .filter(|c| c.is_destructive())
        .map(|c| c.field.as_str())
        .collect();
    assert_eq!(
        removed,
        [
            "worker.shop.observability",
            "worker.shop.limits",
            "worker.shop.tailConsumers"
        ]
    );
    // After that upload the script carries flaredock's tags: nothing more to write.
    let second = plan_worker(&d, &uploaded(&d));
    assert!(
        second.changes.is_empty() && second.actions.is_empty(),
        "{second:?}"
    );
}

#[test]
fn invalid_settings_are_refused_before_any_call_naming_the_field() {
    for (extra, field) in [
        (
            "  placement: {mode: smart, region: 'aws:us-east-1'}\n",
            "spec.placement",
        ),
        (
            "  placement: {region: 'aws:us-east-1', host: 'db:5432'}\n",
            "spec.placement",
        ),
        ("  placement: {mode: fast}\n", "spec.placement"),
        ("  placement: {}\n", "spec.placement"),
        (
            "  observability: {enabled: true, headSamplingRate: 2}\n",
            "spec.observability",
        ),
        (
            "  observability: {headSamplingRate: 0.5}\n",
            "spec.observability",
        ),
        (
            "  observability: {enabled: true, logs: {enabled: true}}\n",
            "spec.observability",
        ),
        ("  limits: {}\n", "spec.limits"),
        ("  limits: {cpuMs: 0}\n", "spec.limits"),
        ("  limits: {cpuMs: fifty}\n", "spec.limits"),
        (
            "  tailConsumers: [{environment: production}]\n",
            "spec.tailConsumers",
        ),
        (
            "  tailConsumers: [{service: 'Bad Name'}]\n",
            "spec.tailConsumers",
        ),
        (
            "  tailConsumers: [{service: logs}, {service: logs}]\n",
            "spec.tailConsumers",
        ),
    ] {
        let e = parse(extra).expect_err(extra);
        assert!(e.contains(field), "{extra}: wanted {field} in {e}");
    }
    for ok in [
        "  placement: {hostname: api.example.com}\n",
        "  placement: {mode: targeted, host: 'db.example.com:5432'}\n",
        "  limits: {subrequests: 100}\n",
        // The README's example.
        "  observability:\n    enabled: true\n    headSamplingRate: 1\n    logs: {enabled: true, invocationLogs: true, headSamplingRate: 0.1}\n  placement: {mode: smart}\n  limits: {cpuMs: 50}\n  tailConsumers:\n    - {service: logs, environment: production}\n",
        "  observability: {enabled: false, logs: {enabled: true, invocationLogs: true}}\n",
    ] {
        parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

// ---- against the emulator ----

/// Uploads `shop` as wrangler would, with `extra` merged into the metadata.
async fn deploy_elsewhere(em: &common::Emulator, extra: Value) -> (u16, Value) {
    let mut metadata = json!({
        "main_module": "index.js",
        "compatibility_date": "2026-06-01",
        "bindings": [
            {"type": "durable_object_namespace", "name": "ROOMS", "class_name": "Room"},
            {"type": "plain_text", "name": "MODE", "text": "live"},
        ],
        "migrations": {"new_tag": "v1", "new_sqlite_classes": ["Room"]},
    });
    if let (Some(m), Value::Object(extra)) = (metadata.as_object_mut(), extra) {
        m.extend(extra);
        // `null` takes a field out (a later upload without the migration).
        m.retain(|_, v| !v.is_null());
    }
    let form = common::module_upload(&metadata, CODE);
    common::account_api(
        em,
        reqwest::Method::PUT,
        "/workers/scripts/shop",
        Some(form),
        None,
    )
    .await
}

async fn settings(em: &common::Emulator) -> Value {
    let (status, body) = common::account_api(
        em,
        reqwest::Method::GET,
        "/workers/scripts/shop/settings",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["result"].clone()
}

fn writes(em: &common::Emulator) -> Vec<String> {
    em.shared
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_checks_keeps_and_returns_the_settings() {
    let em = common::start_emulator(|_| {}).await;
    for (wrong, field) in [
        (json!({"placement": {"mode": "fast"}}), "placement"),
        (
            json!({"observability": {"head_sampling_rate": 0.5}}),
            "observability",
        ),
        (
            json!({"observability": {"enabled": true, "logs": {"enabled": true}}}),
            "observability",
        ),
        (json!({"limits": {"cpu_ms": "fifty"}}), "limits"),
        (
            json!({"tail_consumers": [{"environment": "production"}]}),
            "tail_consumers",
        ),
    ] {
        let (status, body) = deploy_elsewhere(&em, wrong.clone()).await;
        assert_eq!(status, 400, "{wrong}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or("");
        assert!(message.contains(field), "{wrong}: {message}");
    }
    let all = json!({
        "placement": {"mode": "smart"},
        "observability": {"enabled": true, "head_sampling_rate": 0.5, "logs": {"enabled": true, "invocation_logs": true}},
        "limits": {"cpu_ms": 50},
        "tail_consumers": [{"service": "logs"}],
    });
    let (status, body) = deploy_elsewhere(&em, all.clone()).await;
    assert_eq!(status, 200, "{body}");
    let live = settings(&em).await;
    for k in ["placement", "observability", "limits", "tail_consumers"] {
        assert_eq!(live[k], all[k], "{k} kept: {live}");
    }
    // The next upload replaces them: what it leaves out is gone.
    let (status, body) =
        deploy_elsewhere(&em, json!({"limits": {"cpu_ms": 80}, "migrations": null})).await;
    assert_eq!(status, 200, "{body}");
    let live = settings(&em).await;
    assert_eq!(live["limits"], json!({"cpu_ms": 80}));
    assert!(live.get("placement").is_none(), "{live}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_settings_is_uploaded_with_them_and_a_reapply_writes_nothing() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let r = common::reconciler_for(&client);
    let obj = worker(
        "  placement: {mode: smart}\n  observability: {enabled: true, headSamplingRate: 0.25}\n  limits: {cpuMs: 50}\n  tailConsumers: [{service: logs}]\n",
    );
    let out = r
        .reconcile_worker(&obj, vec![], &SourceData::default(), None)
        .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let live = settings(&em).await;
    assert_eq!(live["placement"], json!({"mode": "smart"}));
    assert_eq!(
        live["observability"],
        json!({"enabled": true, "head_sampling_rate": 0.25})
    );
    assert_eq!(live["limits"], json!({"cpu_ms": 50}));
    assert_eq!(live["tail_consumers"], json!([{"service": "logs"}]));
    // Unchanged: zero writes.
    em.shared.clear_requests();
    r.view.invalidate().await;
    let again = r
        .reconcile_worker(&obj, vec![], &SourceData::default(), Some(&out.status))
        .await;
    assert!(again.error.is_none(), "{:?}", again.error);
    assert_eq!(writes(&em), Vec::<String>::new());
    // Changed: one upload, the new value kept.
    let changed = worker("  placement: {mode: smart}\n  limits: {cpuMs: 80}\n");
    em.shared.clear_requests();
    r.view.invalidate().await;
    let out = r
        .reconcile_worker(
            &changed,
            vec![],
            &SourceData::default(),
            Some(&again.status),
        )
        .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let w = writes(&em);
    assert!(
        w.len() == 1 && w[0].starts_with("PUT") && w[0].ends_with("/workers/scripts/shop"),
        "one upload: {w:?}"
    );
    let live = settings(&em).await;
    assert_eq!(live["limits"], json!({"cpu_ms": 80}));
    assert!(live.get("observability").is_none(), "{live}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopting_names_a_live_setting_the_spec_leaves_out_and_removes_it_once_approved() {
    let em = common::start_emulator(|_| {}).await;
    let (status, body) = deploy_elsewhere(
        &em,
        json!({"placement": {"mode": "smart"}, "limits": {"cpu_ms": 50}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let client = common::client_for(&em);
    let r = common::reconciler_for(&client);
    em.shared.clear_requests();
    let obj = worker("  adopt: true\n  placement: {mode: smart}\n");
    let (out, pending, limits) = common::pending_adoption_of(&r, &obj, "worker.shop.limits").await;
    assert!(limits.destructive, "{limits:?}");
    assert_eq!(limits.found, r#"{"cpu_ms":50}"#);
    assert!(
        !pending
            .changes
            .iter()
            .any(|c| c.field == "worker.shop.placement"),
        "placement is as the spec says: {:?}",
        pending.changes
    );
    assert_eq!(writes(&em), Vec::<String>::new(), "nothing before approval");

    let mut approved = obj.clone();
    approved.metadata.annotations = Some(
        [(
            "flaredock.dev/approve-adoption".to_string(),
            pending.hash.clone(),
        )]
        .into(),
    );
    let out = r
        .reconcile_worker(&approved, vec![], &SourceData::default(), Some(&out.status))
        .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let uploads = writes(&em)
        .iter()
        .filter(|w| w.starts_with("PUT") && w.ends_with("/workers/scripts/shop"))
        .count();
    assert_eq!(uploads, 1, "{:?}", writes(&em));
    let live = settings(&em).await;
    assert!(live.get("limits").is_none(), "{live}");
    assert_eq!(live["placement"], json!({"mode": "smart"}));
    // Once adopted, nothing more to write.
    em.shared.clear_requests();
    r.view.invalidate().await;
    let again = r
        .reconcile_worker(&approved, vec![], &SourceData::default(), Some(&out.status))
        .await;
    assert!(again.error.is_none(), "{:?}", again.error);
    assert_eq!(writes(&em), Vec::<String>::new());
}

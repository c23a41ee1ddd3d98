//! Table tests of `spec.bindings` and of adoption in the Worker plan: every binding
//! family is uploaded in `metadata.bindings` and shown by name; adopting a script
//! compares its live settings field by field, a live binding the spec leaves out being
//! a named destructive removal. No I/O.

use flaredock::cloudflare::types::*;
use flaredock::reconcile::plan::{Action, Blocked, Plan};
use flaredock::reconcile::worker::bindings::content_hash;
use flaredock::reconcile::worker::inputs::{SourceData, resolve_local};
use flaredock::reconcile::worker::model::{ContainerClass, DesiredWorker};
use flaredock::reconcile::worker::plan::{ObservedWorker, plan_worker};
use flaredock::spec::CloudflareWorker;
use serde_json::json;

const KEY: [u8; 32] = [7; 32];
/// The module of every Worker here, as YAML reads it (single quotes: a backslash and n).
const MODULE: &str = "export class Shop {}\\nexport class Room {}";

/// Every binding family of the issue, and more kinds of the official schema.
const ALL_FAMILIES: &str = "  bindings:
    - {name: CACHE, kvNamespace: {namespaceId: 0f2ac74b498b48028cb68387c421e279}}
    - {name: ASSETS_BUCKET, r2Bucket: {bucketName: shop-assets}}
    - {name: DB, d1: {databaseId: 5b1f0000-0000-0000-0000-000000000001}}
    - {name: JOBS, queue: {queueName: shop-jobs}}
    - {name: AUTH, service: {service: auth, environment: production}}
    - {name: ROOMS, durableObject: {className: Room}}
    - {name: PG, hyperdrive: {id: 9a1e}}
    - {name: AI, ai: {}}
    - {name: EVENTS, analyticsEngine: {dataset: shop_events}}
    - {name: BROWSER, browser: {}}
    - {name: INDEX, vectorize: {indexName: products}}
    - {name: VERSION, versionMetadata: {}}
    - {name: TENANTS, dispatchNamespace: {namespace: tenants}}
    - {name: MTLS, mtlsCertificate: {certificateId: c3rt}}
    - {name: MAIL, sendEmail: {destinationAddress: ops@example.com}}
    - {name: STRIPE, secretsStoreSecret: {storeId: st0re, secretName: stripe}}
    - {name: FLOW, workflow: {workflowName: checkout}}
    - {name: IMAGES, images: {}}
    - {name: PIPE, pipelines: {pipeline: clicks}}
    - {name: LIMITER, ratelimit: {namespaceId: '1001', simple: {limit: 100, period: 60}}}
";

fn parse(extra: &str) -> Result<CloudflareWorker, String> {
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareWorker\nmetadata: {{name: shop, namespace: apps}}\nspec:\n  compatibilityDate: '2026-06-01'\n  source:\n    inline:\n      mainModule: index.js\n      modules: {{index.js: 'export class Shop {{}}\\nexport class Room {{}}'}}\n  vars: {{MODE: live}}\n  secrets:\n    - {{name: API_KEY, secretKeyRef: {{name: keys, key: api}}}}\n  workersDev: false\n{extra}"
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

fn desired(obj: &CloudflareWorker, classes: Vec<ContainerClass>) -> DesiredWorker {
    let mut data = SourceData::default();
    data.secrets.insert(
        "apps/keys".into(),
        [("api".to_string(), b"s3cret".to_vec())].into(),
    );
    let inputs = resolve_local(obj, &data)
        .expect("local source")
        .expect("inputs");
    DesiredWorker::new(
        obj,
        inputs,
        classes,
        &KEY,
        &flaredock::spec::ClusterIdentity::cli(),
    )
}

fn shop() -> ContainerClass {
    ContainerClass {
        class_name: "Shop".into(),
        binding_name: "SHOP".into(),
        container: "apps/shop".into(),
    }
}

fn upload(p: &Plan) -> &ScriptUpload {
    match p.actions.as_slice() {
        [Action::UploadScript { upload, .. }] => upload,
        other => panic!("expected one upload, got {other:?} ({p:?})"),
    }
}

fn change<'p>(p: &'p Plan, field: &str) -> Option<&'p flaredock::reconcile::plan::Change> {
    p.changes.iter().find(|c| c.field == field)
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

#[test]
fn every_binding_family_is_uploaded_by_name_and_a_reapply_writes_nothing() {
    let d = desired(&worker(ALL_FAMILIES), vec![shop()]);
    let p = plan_worker(&d, &ObservedWorker::default());
    assert!(p.blocked.is_none(), "{p:?}");
    let cache = change(&p, "worker.shop.bindings.CACHE").expect("CACHE shown by name");
    assert_eq!(cache.from, "absent");
    assert!(
        cache
            .to
            .contains("kv_namespace namespace_id=0f2ac74b498b48028cb68387c421e279"),
        "{cache:?}"
    );
    let m = &upload(&p).metadata;
    let by_name = |n: &str| {
        m.bindings
            .iter()
            .find(|b| b.name == n)
            .unwrap_or_else(|| panic!("binding {n} uploaded: {:?}", m.bindings))
    };
    for (name, kind, field, value) in [
        (
            "CACHE",
            "kv_namespace",
            "namespace_id",
            "0f2ac74b498b48028cb68387c421e279",
        ),
        ("ASSETS_BUCKET", "r2_bucket", "bucket_name", "shop-assets"),
        (
            "DB",
            "d1",
            "database_id",
            "5b1f0000-0000-0000-0000-000000000001",
        ),
        ("JOBS", "queue", "queue_name", "shop-jobs"),
        ("AUTH", "service", "environment", "production"),
        ("ROOMS", "durable_object_namespace", "class_name", "Room"),
        ("PG", "hyperdrive", "id", "9a1e"),
        ("EVENTS", "analytics_engine", "dataset", "shop_events"),
        ("INDEX", "vectorize", "index_name", "products"),
        ("TENANTS", "dispatch_namespace", "namespace", "tenants"),
        ("MTLS", "mtls_certificate", "certificate_id", "c3rt"),
        (
            "MAIL",
            "send_email",
            "destination_address",
            "ops@example.com",
        ),
        ("STRIPE", "secrets_store_secret", "secret_name", "stripe"),
        ("FLOW", "workflow", "workflow_name", "checkout"),
        ("PIPE", "pipelines", "pipeline", "clicks"),
        ("LIMITER", "ratelimit", "namespace_id", "1001"),
    ] {
        let b = by_name(name);
        assert_eq!(b.kind, kind, "{name}");
        assert_eq!(b.str_field(field), Some(value), "{name}: {b:?}");
    }
    assert_eq!(
        by_name("LIMITER").rest["simple"],
        json!({"limit": 100, "period": 60}),
        "nested values are kept as written"
    );
    for (name, kind) in [
        ("AI", "ai"),
        ("BROWSER", "browser"),
        ("VERSION", "version_metadata"),
        ("IMAGES", "images"),
    ] {
        assert_eq!(by_name(name).kind, kind);
    }
    assert_eq!(by_name("MODE").kind, "plain_text", "vars keep their field");
    assert_eq!(by_name("SHOP").kind, "durable_object_namespace");
    // The Worker's own class without a container gets a migration, as container
    // classes do, and is not container-enabled.
    let migration = m.migrations.as_ref().expect("a migration");
    assert_eq!(migration.new_sqlite_classes, ["Room", "Shop"]);
    assert_eq!(
        m.containers,
        [ContainerItem {
            class_name: "Shop".into()
        }]
    );
    // The whole upload is what the official schema accepts.
    let v = flaredock::emulator::schema::upload_metadata_violations(
        &serde_json::to_value(m).expect("metadata"),
    );
    assert!(v.is_empty(), "{v:?}");

    // Re-apply of the same Worker: nothing to do, no upload.
    let again = plan_worker(&d, &uploaded(&d));
    assert!(
        again.changes.is_empty() && again.actions.is_empty(),
        "{again:?}"
    );
}

#[test]
fn a_changed_or_removed_binding_is_planned_and_uploaded() {
    let before = desired(&worker(ALL_FAMILIES), vec![]);
    let changed = ALL_FAMILIES.replace("shop-jobs", "shop-jobs-2");
    let after = desired(&worker(&changed), vec![]);
    let p = plan_worker(&after, &uploaded(&before));
    assert!(
        change(&p, "worker.shop.bindings").is_some(),
        "{:?}",
        p.changes
    );
    let m = &upload(&p).metadata;
    let jobs = m.bindings.iter().find(|b| b.name == "JOBS").expect("JOBS");
    assert_eq!(jobs.str_field("queue_name"), Some("shop-jobs-2"));

    let fewer = desired(&worker(""), vec![]);
    let p = plan_worker(&fewer, &uploaded(&before));
    let m = &upload(&p).metadata;
    assert!(
        !m.bindings.iter().any(|b| b.name == "CACHE"),
        "a binding taken out of the spec is not uploaded"
    );
}

#[test]
fn invalid_and_conflicting_bindings_are_refused_naming_the_field() {
    for (extra, field, words) in [
        (
            "  bindings:\n    - {name: JOBS, queue: {}}\n",
            "spec.bindings[0].queue",
            "queueName",
        ),
        (
            "  bindings:\n    - {name: DB, d1: {databaseId: x, databaseID: y}}\n",
            "spec.bindings[0].d1",
            "databaseID",
        ),
        (
            "  bindings:\n    - {name: X, ai: {}, browser: {}}\n",
            "spec.bindings[0]",
            "exactly one kind",
        ),
        (
            "  bindings:\n    - {name: X}\n",
            "spec.bindings[0]",
            "exactly one kind",
        ),
        (
            "  bindings:\n    - {name: A, ai: {}}\n    - {name: A, browser: {}}\n",
            "spec.bindings[1].name",
            "spec.bindings[0]",
        ),
        (
            "  bindings:\n    - {name: MODE, ai: {}}\n",
            "spec.bindings[0].name",
            "spec.vars",
        ),
        (
            "  bindings:\n    - {name: API_KEY, ai: {}}\n",
            "spec.bindings[0].name",
            "spec.secrets[0]",
        ),
    ] {
        let e = parse(extra).expect_err(extra);
        assert!(
            e.contains(field) && e.contains(words),
            "{extra}: wanted {field} and {words} in {e}"
        );
    }

    // A binding name equal to a container's binding: refused by the plan.
    let obj = worker("  bindings:\n    - {name: SHOP, ai: {}}\n");
    let p = plan_worker(&desired(&obj, vec![shop()]), &ObservedWorker::default());
    match &p.blocked {
        Some(Blocked::Refused { reason, message }) => {
            assert_eq!(reason.as_str(), "BindingConflict");
            assert!(
                message.contains("spec.bindings") && message.contains("apps/shop"),
                "{message}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(p.actions.is_empty());
}

/// The adoption scenario of issue 21: a script deployed elsewhere with a KV binding
/// `CACHE`, a Durable Object binding `ROOMS` of its own class, a container class `Shop`
/// (its namespace runs an application), a var and a secret.
fn deployed_elsewhere() -> ObservedWorker {
    let binding = |v: serde_json::Value| -> Binding { serde_json::from_value(v).expect("binding") };
    ObservedWorker {
        script: Some(ScriptInfo {
            id: "shop".into(),
            tags: Some(vec!["team-a".into()]),
            migration_tag: Some("v2".into()),
            etag: Some("e7a9".into()),
            ..Default::default()
        }),
        reach: Default::default(),
        namespaced_classes: vec!["Room".into(), "Shop".into()],
        settings: Some(ScriptSettings {
            bindings: vec![
                binding(
                    json!({"type": "kv_namespace", "name": "CACHE", "namespace_id": "0f2ac74b498b48028cb68387c421e279"}),
                ),
                binding(
                    json!({"type": "durable_object_namespace", "name": "ROOMS", "class_name": "Room", "namespace_id": "ns-room"}),
                ),
                binding(
                    json!({"type": "durable_object_namespace", "name": "SHOP", "class_name": "Shop", "namespace_id": "ns-shop"}),
                ),
                binding(json!({"type": "plain_text", "name": "MODE", "text": "live"})),
                binding(json!({"type": "secret_text", "name": "API_KEY"})),
            ],
            compatibility_date: Some("2026-06-01".into()),
            ..Default::default()
        }),
        container_enabled: vec!["Shop".into()],
        // Cloudflare has the spec's code.
        live_modules_hash: Some(content_hash([("index.js", MODULE.as_bytes())])),
        uploaded_elsewhere: false,
    }
}

const ROOMS_ONLY: &str =
    "  adopt: true\n  bindings:\n    - {name: ROOMS, durableObject: {className: Room}}\n";

#[test]
fn adopting_compares_the_live_settings_and_names_each_removal() {
    let obj = worker(ROOMS_ONLY);
    let p = plan_worker(&desired(&obj, vec![shop()]), &deployed_elsewhere());
    assert!(p.blocked.is_none(), "{p:?}");
    for c in &p.changes {
        assert!(
            !c.from.contains("unknown"),
            "nothing is unknown where Cloudflare was asked: {c}"
        );
    }
    let cache = change(&p, "worker.shop.bindings.CACHE").expect("the removal is named");
    assert!(
        cache
            .from
            .contains("kv_namespace namespace_id=0f2ac74b498b48028cb68387c421e279"),
        "{cache}"
    );
    assert!(cache.is_destructive(), "{cache}");
    assert_eq!(cache.to, "removed", "{cache}");
    assert!(
        cache
            .to_string()
            .contains("(DESTRUCTIVE: the Worker loses this binding"),
        "shown in words in the text plan: {cache}"
    );
    assert!(
        change(&p, "worker.shop.containers.Shop").is_none(),
        "the container class was enabled: {:?}",
        p.changes
    );
    for same in ["ROOMS", "SHOP", "MODE"] {
        assert!(
            change(&p, &format!("worker.shop.bindings.{same}")).is_none(),
            "{same} is as the spec says: {:?}",
            p.changes
        );
    }
    for hashed in ["vars", "bindings", "compatibility"] {
        assert!(change(&p, &format!("worker.shop.{hashed}")).is_none());
    }
    let secret = change(&p, "worker.shop.secrets.API_KEY").expect("the secret is named");
    assert!(
        !format!("{secret}").contains("s3cret"),
        "never a secret's value: {secret}"
    );
    assert!(change(&p, "worker.shop.owner").is_some());
    assert!(
        change(&p, "worker.shop.modules").is_none(),
        "the live modules are the spec's: {:?}",
        p.changes
    );
    assert!(
        upload(&p).metadata.migrations.is_none(),
        "both classes have namespaces"
    );
    // The upload does what the plan says: CACHE goes.
    assert!(
        !upload(&p)
            .metadata
            .bindings
            .iter()
            .any(|b| b.name == "CACHE")
    );

    // Naming CACHE keeps it, and the plan no longer mentions it.
    let keeps = worker(&format!(
        "{ROOMS_ONLY}    - {{name: CACHE, kvNamespace: {{namespaceId: 0f2ac74b498b48028cb68387c421e279}}}}\n"
    ));
    let p = plan_worker(&desired(&keeps, vec![shop()]), &deployed_elsewhere());
    assert!(
        change(&p, "worker.shop.bindings.CACHE").is_none(),
        "{:?}",
        p.changes
    );
    let cache = upload(&p)
        .metadata
        .bindings
        .iter()
        .find(|b| b.name == "CACHE")
        .expect("CACHE uploaded");
    assert_eq!(cache.kind, "kv_namespace");
}

#[test]
fn adopting_shows_settings_the_spec_does_not_set_as_destructive_removals() {
    let mut live = deployed_elsewhere();
    if let Some(s) = live.settings.as_mut() {
        s.compatibility_date = Some("2025-09-01".into());
        s.compatibility_flags = vec!["nodejs_compat".into()];
        s.placement = Some(json!({"mode": "smart"}));
        s.observability = Some(json!({"enabled": true}));
        s.tail_consumers = Some(json!([{"service": "logs"}]));
    }
    let obj = worker(ROOMS_ONLY);
    let p = plan_worker(&desired(&obj, vec![shop()]), &live);
    let date = change(&p, "worker.shop.compatibilityDate").expect("date");
    assert_eq!(
        (date.from.as_str(), date.to.as_str()),
        ("2025-09-01", "2026-06-01")
    );
    let flags = change(&p, "worker.shop.compatibilityFlags").expect("flags");
    assert_eq!(flags.from, "[nodejs_compat]");
    for f in ["placement", "observability", "tailConsumers"] {
        let c = change(&p, &format!("worker.shop.{f}")).unwrap_or_else(|| panic!("{f}"));
        assert!(c.is_destructive(), "{c}");
    }
}

#[test]
fn a_destructive_change_is_typed_in_json_and_covered_by_the_approval_hash() {
    use flaredock::reconcile::plan::ChangeEffect;
    use flaredock::reconcile::status::adoption_hash;
    let obj = worker(ROOMS_ONLY);
    let p = plan_worker(&desired(&obj, vec![shop()]), &deployed_elsewhere());
    let doc = p.to_json();
    let changes = doc["changes"].as_array().expect("changes");
    let cache = changes
        .iter()
        .find(|c| c["field"] == "worker.shop.bindings.CACHE")
        .expect("CACHE in the JSON plan");
    assert_eq!(cache["destructive"], true, "{cache}");
    assert_eq!(cache["to"], "removed", "{cache}");
    assert!(
        cache["consequence"]
            .as_str()
            .is_some_and(|c| c.contains("loses this binding")),
        "{cache}"
    );
    let kept: Vec<&serde_json::Value> = changes
        .iter()
        .filter(|c| c["destructive"] == false)
        .collect();
    assert!(
        kept.iter().all(|c| c.get("consequence").is_none()),
        "{kept:?}"
    );
    // The document is the one schemas/plan.schema.json describes.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/plan.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut entry = json!({"kind": "CloudflareWorker", "namespace": "apps", "name": "shop"});
    entry
        .as_object_mut()
        .unwrap()
        .extend(doc.as_object().unwrap().clone());
    let full = json!({"apiVersion": "flaredock.dev/plan/v1", "changes": true, "objects": [entry]});
    let validator = jsonschema::validator_for(&schema).unwrap();
    let problems: Vec<String> = validator
        .iter_errors(&full)
        .map(|e| e.to_string())
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    // The flag is part of what is approved: the same changes untyped hash otherwise.
    let mut untyped = p.changes.clone();
    for c in &mut untyped {
        c.effect = ChangeEffect::Update;
    }
    assert_ne!(adoption_hash(&p.changes), adoption_hash(&untyped));
}

#[test]
fn adopting_other_code_shows_the_modules_by_content_hash() {
    let mut live = deployed_elsewhere();
    live.live_modules_hash = Some(content_hash([(
        "index.js",
        b"export default {}".as_slice(),
    )]));
    let obj = worker(ROOMS_ONLY);
    let p = plan_worker(&desired(&obj, vec![shop()]), &live);
    let m = change(&p, "worker.shop.modules").expect("the code differs");
    assert!(m.from.starts_with("content hash "), "{m}");
    assert_ne!(
        m.from.replace("content hash ", ""),
        m.to.replace("content hash ", "")
    );
}

#[test]
fn an_approved_removal_happens_once() {
    let obj = worker(ROOMS_ONLY);
    let d = desired(&obj, vec![shop()]);
    let first = plan_worker(&d, &deployed_elsewhere());
    assert_eq!(first.actions.len(), 1, "one upload adopts and removes");
    // After that upload the script carries flaredock's tags: nothing more to write.
    let mut after = uploaded(&d);
    after.container_enabled = vec!["Shop".into()];
    let second = plan_worker(&d, &after);
    assert!(
        second.changes.is_empty() && second.actions.is_empty(),
        "{second:?}"
    );
}

#[test]
fn a_script_flaredock_owns_but_did_not_upload_last_is_drift_by_field() {
    let obj = worker("  bindings:\n    - {name: ROOMS, durableObject: {className: Room}}\n");
    let d = desired(&obj, vec![]);
    // Someone uploaded over it (its etag is not the one flaredock saw in sync) with a
    // KV binding and another date; flaredock's tags are still on it.
    let mut live = uploaded(&d);
    let mut elsewhere = deployed_elsewhere();
    if let Some(s) = elsewhere.settings.as_mut() {
        s.compatibility_date = Some("2025-01-01".into());
        s.bindings.retain(|b| b.name != "SHOP");
    }
    live.settings = elsewhere.settings;
    live.live_modules_hash = elsewhere.live_modules_hash;
    live.uploaded_elsewhere = true;
    let p = plan_worker(&d, &live);
    let date = change(&p, "worker.shop.compatibilityDate").expect("shown by field");
    assert_eq!(date.from, "2025-01-01");
    let cache = change(&p, "worker.shop.bindings.CACHE").expect("the extra binding");
    assert!(cache.is_destructive(), "{cache}");
    assert!(
        change(&p, "worker.shop.owner").is_none(),
        "still flaredock's"
    );
    assert_eq!(p.actions.len(), 1, "the drift is corrected by one upload");

    // The same script without the mark (its version is flaredock's): nothing to do.
    live.uploaded_elsewhere = false;
    let p = plan_worker(&d, &live);
    assert!(p.changes.is_empty() && p.actions.is_empty(), "{p:?}");
}

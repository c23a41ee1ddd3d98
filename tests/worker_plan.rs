//! Table tests of the Worker plan (desired upload vs the script list → at most one
//! upload, with a diff per part). No I/O.

use flaredock::cloudflare::Secret;
use flaredock::cloudflare::types::*;
use flaredock::reconcile::plan::{Action, Blocked, Plan};
use flaredock::reconcile::reason::Reason;
use flaredock::reconcile::worker::inputs::{SourceData, resolve_local};
use flaredock::reconcile::worker::model::{ContainerClass, DesiredWorker, RecordedTags};
use flaredock::reconcile::worker::plan::{ObservedWorker, plan_worker};
use flaredock::spec::CloudflareWorker;

const KEY: [u8; 32] = [7; 32];

fn worker(extra: &str) -> CloudflareWorker {
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareWorker\nmetadata: {{name: shop, namespace: apps}}\nspec:\n  compatibilityDate: '2026-06-01'\n  source:\n    inline:\n      mainModule: index.js\n      modules: {{index.js: 'export class Shop {{}}\\nexport class Cart {{}}'}}\n  secrets:\n    - {{name: API_KEY, secretKeyRef: {{name: keys, key: api}}}}\n  workersDev: false\n{extra}"
    );
    match flaredock::manifest::parse_any(&doc, "w.yaml", 1).expect("valid") {
        flaredock::manifest::Document::Worker(w) => *w,
        other => panic!("{other:?}"),
    }
}

fn data(secret: &str) -> SourceData {
    let mut d = SourceData::default();
    d.secrets.insert(
        "apps/keys".into(),
        [("api".to_string(), secret.as_bytes().to_vec())].into(),
    );
    d
}

fn class(name: &str, binding: &str) -> ContainerClass {
    ContainerClass {
        class_name: name.into(),
        binding_name: binding.into(),
        container: format!("apps/{}", name.to_lowercase()),
    }
}

fn desired_with(
    obj: &CloudflareWorker,
    secret: &str,
    classes: Vec<ContainerClass>,
) -> DesiredWorker {
    let inputs = resolve_local(obj, &data(secret))
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

fn desired(classes: Vec<ContainerClass>) -> DesiredWorker {
    desired_with(&worker(""), "s3cret", classes)
}

/// The script as the upload of `d` left it.
fn uploaded(d: &DesiredWorker, migration_tag: &str) -> ObservedWorker {
    ObservedWorker {
        script: Some(ScriptInfo {
            id: d.script_name.clone(),
            tags: Some(d.tags(&[]).unwrap()),
            migration_tag: Some(migration_tag.into()),
            ..Default::default()
        }),
        namespaced_classes: d.classes(),
        ..Default::default()
    }
}

fn upload(p: &Plan) -> &ScriptUpload {
    match p.actions.as_slice() {
        [Action::UploadScript { upload, .. }] => upload,
        other => panic!("expected one upload, got {other:?} ({p:?})"),
    }
}

fn fields(p: &Plan) -> Vec<String> {
    p.changes.iter().map(|c| c.field.clone()).collect()
}

fn refused(p: &Plan) -> (&str, &str) {
    match &p.blocked {
        Some(Blocked::Refused { reason, message }) => (reason.as_str(), message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_new_script_is_uploaded_with_its_classes_container_enabled() {
    let d = desired(vec![class("Shop", "SHOP")]);
    let p = plan_worker(&d, &ObservedWorker::default());
    let u = upload(&p);
    let m = &u.metadata;
    assert_eq!(m.main_module, "index.js");
    assert_eq!(
        m.containers,
        [ContainerItem {
            class_name: "Shop".into()
        }]
    );
    let migration = m.migrations.as_ref().unwrap();
    assert_eq!(
        (migration.old_tag.as_deref(), migration.new_tag.as_deref()),
        (None, Some("v1"))
    );
    assert_eq!(migration.new_sqlite_classes, ["Shop"]);
    assert!(migration.deleted_classes.is_empty());
    let kinds: Vec<(&str, &str)> = m
        .bindings
        .iter()
        .map(|b| (b.kind.as_str(), b.name.as_str()))
        .collect();
    assert_eq!(kinds, [("durable_object_namespace", "SHOP")]);
    assert_eq!(m.secrets.len(), 1);
    assert_eq!(m.secrets[0].text, Secret::new("s3cret"));
    let recorded = RecordedTags::read(&ScriptInfo {
        id: "shop".into(),
        tags: Some(m.tags.clone()),
        ..Default::default()
    });
    assert_eq!(recorded.owner.as_deref(), Some("cli/apps.shop"));
    assert_eq!(recorded.containers, ["Shop"]);
    assert_eq!(u.modules[0].content_type, "application/javascript+module");
    assert!(matches!(
        &p.actions[0],
        Action::UploadScript {
            creates: true,
            adopts: false,
            ..
        }
    ));
}

#[test]
fn an_unchanged_worker_is_not_uploaded() {
    let d = desired(vec![class("Shop", "SHOP")]);
    let p = plan_worker(&d, &uploaded(&d, "v1"));
    assert!(p.is_noop(), "{p:?}");
    assert!(p.changes.is_empty());
}

#[test]
fn a_new_class_is_one_upload_with_a_migration_from_the_reported_tag() {
    let before = desired(vec![class("Shop", "SHOP")]);
    let after = desired(vec![class("Shop", "SHOP"), class("Cart", "CART")]);
    let p = plan_worker(&after, &uploaded(&before, "v7"));
    let m = &upload(&p).metadata;
    let migration = m.migrations.as_ref().unwrap();
    assert_eq!(migration.old_tag.as_deref(), Some("v7"));
    assert_eq!(migration.new_tag.as_deref(), Some("v8"));
    assert_eq!(
        migration.new_sqlite_classes,
        ["Cart"],
        "only the class without a namespace"
    );
    let classes: Vec<&str> = m.containers.iter().map(|c| c.class_name.as_str()).collect();
    assert_eq!(classes, ["Cart", "Shop"]);
    assert!(fields(&p).contains(&"worker.shop.containers.Cart".to_string()));
    assert!(fields(&p).contains(&"worker.shop.bindings".to_string()));
}

#[test]
fn a_removed_container_keeps_its_class_and_never_deletes_data() {
    let before = desired(vec![class("Shop", "SHOP"), class("Cart", "CART")]);
    let after = desired(vec![class("Shop", "SHOP")]);
    let p = plan_worker(&after, &uploaded(&before, "v2"));
    let m = &upload(&p).metadata;
    assert!(
        m.migrations.is_none(),
        "no migration at all: {:?}",
        m.migrations
    );
    assert_eq!(
        m.containers,
        [ContainerItem {
            class_name: "Shop".into()
        }]
    );
    assert!(
        m.bindings.iter().all(|b| b.name != "CART"),
        "the binding goes"
    );
    let gone = p
        .changes
        .iter()
        .find(|c| c.field == "worker.shop.containers.Cart")
        .expect("the diff says what happens to the class");
    assert!(gone.to.contains("never sends deleted_classes"), "{gone}");
}

#[test]
fn a_code_change_is_one_upload_naming_the_modules() {
    let before = desired(vec![class("Shop", "SHOP")]);
    let mut obj = worker("");
    obj.spec.source.inline.as_mut().unwrap().modules.insert(
        "index.js".into(),
        "export class Shop { v2() {} }\nexport class Cart {}".into(),
    );
    let after = desired_with(&obj, "s3cret", vec![class("Shop", "SHOP")]);
    let p = plan_worker(&after, &uploaded(&before, "v1"));
    upload(&p);
    assert_eq!(fields(&p), ["worker.shop.modules"]);
    assert!(upload(&p).metadata.migrations.is_none());
}

#[test]
fn a_var_change_is_one_upload_naming_vars() {
    let before = desired(vec![]);
    let after = desired_with(&worker("  vars: {MODE: production}\n"), "s3cret", vec![]);
    let p = plan_worker(&after, &uploaded(&before, "v1"));
    let m = &upload(&p).metadata;
    assert_eq!(fields(&p), ["worker.shop.vars"]);
    let var = m.bindings.iter().find(|b| b.name == "MODE").unwrap();
    assert_eq!(
        (var.kind.as_str(), var.str_field("text")),
        ("plain_text", Some("production"))
    );
}

#[test]
fn a_secret_change_is_one_upload_and_the_diff_hides_the_value() {
    let before = desired_with(&worker(""), "old-value", vec![]);
    let after = desired_with(&worker(""), "new-value", vec![]);
    let p = plan_worker(&after, &uploaded(&before, "v1"));
    upload(&p);
    assert_eq!(fields(&p), ["worker.shop.secrets (values not shown)"]);
    let shown = format!(
        "{p:?} {}",
        p.changes
            .iter()
            .map(ToString::to_string)
            .collect::<String>()
    );
    assert!(
        !shown.contains("new-value") && !shown.contains("old-value"),
        "{shown}"
    );
    // The tag keyed by the token fingerprint reveals nothing: another key, another hash.
    let other_key = DesiredWorker::new(
        &worker(""),
        resolve_local(&worker(""), &data("new-value"))
            .unwrap()
            .unwrap(),
        vec![],
        &[9; 32],
        &flaredock::spec::ClusterIdentity::cli(),
    );
    assert_ne!(other_key.hashes.secrets, after.hashes.secrets);
    assert_eq!(other_key.hashes.code, after.hashes.code);
}

#[test]
fn a_script_flaredock_does_not_own_is_refused_naming_adopt() {
    let d = desired(vec![class("Shop", "SHOP")]);
    let foreign = ObservedWorker {
        script: Some(ScriptInfo {
            id: "shop".into(),
            tags: Some(vec!["team-a".into()]),
            migration_tag: Some("v3".into()),
            ..Default::default()
        }),
        namespaced_classes: vec!["Shop".into()],
        ..Default::default()
    };
    let p = plan_worker(&d, &foreign);
    let (reason, message) = refused(&p);
    assert_eq!(reason, "ScriptNotOwned");
    assert!(
        message.contains("spec.adopt") && message.contains("v3"),
        "{message}"
    );
    assert!(p.actions.is_empty());

    // With adopt: one upload that keeps the migration tag and the others' tags.
    let adopting = desired_with(
        &worker("  adopt: true\n"),
        "s3cret",
        vec![class("Shop", "SHOP")],
    );
    let p = plan_worker(&adopting, &foreign);
    assert!(matches!(
        &p.actions[0],
        Action::UploadScript {
            adopts: true,
            creates: false,
            ..
        }
    ));
    let m = &upload(&p).metadata;
    assert!(
        m.migrations.is_none(),
        "the class has its namespace; the tag v3 is kept"
    );
    assert!(m.tags.contains(&"team-a".to_string()));
    assert!(fields(&p).contains(&"worker.shop.owner".to_string()));
}

#[test]
fn a_script_another_flaredock_object_owns_is_never_taken() {
    let d = desired_with(&worker("  adopt: true\n"), "s3cret", vec![]);
    let owned = ObservedWorker {
        script: Some(ScriptInfo {
            id: "shop".into(),
            tags: Some(vec!["flaredock.dev/owner=other-ns.shop".into()]),
            ..Default::default()
        }),
        namespaced_classes: vec![],
        ..Default::default()
    };
    let p = plan_worker(&d, &owned);
    let (reason, message) = refused(&p);
    assert_eq!(reason, "ScriptOwnedElsewhere");
    assert!(message.contains("other-ns.shop"), "{message}");
}

#[test]
fn conflicting_bindings_are_refused() {
    let p = plan_worker(
        &desired(vec![class("Shop", "A"), class("Cart", "A")]),
        &ObservedWorker::default(),
    );
    assert_eq!(refused(&p).0, "BindingConflict");
    let p = plan_worker(
        &desired(vec![class("Shop", "API_KEY")]),
        &ObservedWorker::default(),
    );
    assert_eq!(
        refused(&p).0,
        "BindingConflict",
        "a binding that is also a secret"
    );
}

#[test]
fn a_missing_secret_or_config_map_waits_with_its_name() {
    let obj = worker("");
    let Some(Err(b)) = resolve_local(&obj, &SourceData::default()) else {
        panic!("expected a wait");
    };
    assert_eq!(b.reason(), Reason::SecretNotFound);
    assert!(b.message().contains("apps/keys"), "{}", b.message());

    let doc = "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareWorker\nmetadata: {name: cm, namespace: apps}\nspec:\n  compatibilityDate: '2026-06-01'\n  source: {configMapRef: {name: code, mainModule: index.js}}\n";
    let flaredock::manifest::Document::Worker(obj) =
        flaredock::manifest::parse_any(doc, "w.yaml", 1).unwrap()
    else {
        panic!()
    };
    let Some(Err(b)) = resolve_local(&obj, &SourceData::default()) else {
        panic!("expected a wait");
    };
    assert_eq!(b.reason(), Reason::ConfigMapNotFound);
    let mut d = SourceData::default();
    d.config_maps.insert(
        "apps/code".into(),
        [("other.js".to_string(), b"x".to_vec())].into(),
    );
    let Some(Err(b)) = resolve_local(&obj, &d) else {
        panic!("expected a refusal");
    };
    assert_eq!(b.reason(), Reason::MainModuleMissing);
    d.config_maps.insert(
        "apps/code".into(),
        [
            ("index.js".to_string(), b"export default {}".to_vec()),
            ("lib.wasm".to_string(), vec![0, 97]),
        ]
        .into(),
    );
    let inputs = resolve_local(&obj, &d).unwrap().unwrap();
    let types: Vec<&str> = inputs
        .modules
        .iter()
        .map(|m| m.content_type.as_str())
        .collect();
    assert_eq!(types, ["application/javascript+module", "application/wasm"]);
}

#[test]
fn too_many_classes_for_the_tags_are_refused() {
    let many: Vec<ContainerClass> = (0..2000)
        .map(|i| class(&format!("LongClassName{i:05}"), &format!("B{i}")))
        .collect();
    let p = plan_worker(&desired(many), &ObservedWorker::default());
    assert_eq!(refused(&p).0, "TooManyContainers");
    // A hundred classes fit.
    let hundred: Vec<ContainerClass> = (0..100)
        .map(|i| class(&format!("Class{i:03}"), &format!("B{i}")))
        .collect();
    let d = desired(hundred);
    let p = plan_worker(&d, &ObservedWorker::default());
    assert_eq!(upload(&p).metadata.containers.len(), 100);
    assert!(upload(&p).metadata.tags.len() <= 10);
    let back = RecordedTags::read(&ScriptInfo {
        id: "s".into(),
        tags: Some(upload(&p).metadata.tags.clone()),
        ..Default::default()
    });
    assert_eq!(back.containers.len(), 100);
}

//! Table tests of the pure plan (desired vs observed → actions and diff) and of the
//! status derivation. No I/O.

use flaredock::cloudflare::types::*;
use flaredock::manifest::parse_document;
use flaredock::reconcile::images::PeerIndex;
use flaredock::reconcile::model::{Desired, ImageAction, ImageState, Observed};
use flaredock::reconcile::plan::{Action, Blocked, Plan, plan, runs_spec};
use flaredock::reconcile::reason::Reason;
use flaredock::reconcile::status::{self, StatusInput};
use flaredock::spec::{CloudflareContainer, ClusterIdentity, OWNER_LABEL};

const IMAGE: &str = "registry.cloudflare.com/acc/shop@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const IMAGE2: &str = "registry.cloudflare.com/acc/shop@sha256:2222222222222222222222222222222222222222222222222222222222222222";
const NS: &str = "ns-shop";

fn object(extra: &str) -> CloudflareContainer {
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: shop, namespace: apps}}\nspec:\n  className: Shop\n  image: {{reference: 'shop:v1'}}\n  worker: {{scriptName: shop-worker}}\n{extra}"
    );
    parse_document(&doc, "test.yaml", 1)
        .expect("valid")
        .expect("an object")
}

fn no_peers() -> PeerIndex {
    PeerIndex::default()
}

fn desired(extra: &str) -> Desired {
    Desired::from_spec(&object(extra), &no_peers(), &ClusterIdentity::cli())
}

/// A container naming the CloudflareWorker `shop` (script `shop-worker`).
fn managed(extra: &str) -> Desired {
    let mut obj = object(extra);
    obj.spec.worker = flaredock::spec::WorkerRef {
        name: Some("shop".into()),
        binding_name: Some("SHOP".into()),
        script_name: None,
    };
    let peers = PeerIndex {
        workers: [("apps/shop".to_string(), "shop-worker".to_string())].into(),
        ..Default::default()
    };
    Desired::from_spec(&obj, &peers, &ClusterIdentity::cli())
}

fn script(tags: &[&str]) -> ScriptInfo {
    ScriptInfo {
        id: "shop-worker".into(),
        tags: Some(tags.iter().map(|t| t.to_string()).collect()),
        migration_tag: Some("v1".into()),
        ..Default::default()
    }
}

fn namespace() -> DurableObjectNamespace {
    DurableObjectNamespace {
        id: NS.into(),
        name: Some("shop-worker_Shop".into()),
        class: Some("Shop".into()),
        script: Some("shop-worker".into()),
        use_sqlite: Some(true),
    }
}

/// The application exactly as `desired` wants it (owned).
fn app_for(d: &Desired, image: &str) -> Application {
    Application {
        id: "app-1".into(),
        account_id: "acc".into(),
        name: d.application_name.clone(),
        version: 1,
        instances: 0,
        max_instances: Some(d.max_instances),
        configuration: d.configuration(image, None),
        constraints: d.constraints.clone(),
        durable_objects: Some(ApplicationDurableObjects {
            namespace_id: NS.into(),
        }),
        observability: Some(d.observability()),
        rollout_active_grace_period: Some(d.grace_period),
        ..Default::default()
    }
}

fn observed(app: Option<Application>) -> Observed {
    Observed {
        image: ImageState::Ready(IMAGE.into()),
        application: app,
        target_configuration: None,
        owned_elsewhere: vec![],
        namespace: Some(namespace()),
        namespace_application: None,
        script: Some(script(&[])),
        deleting: None,
        on_spec: None,
    }
}

fn kinds(p: &Plan) -> Vec<&'static str> {
    p.actions
        .iter()
        .map(|a| match a {
            Action::GetImage(ImageAction::Copy { .. }) => "copy",
            Action::GetImage(ImageAction::Build { .. }) => "build",
            Action::GetImage(ImageAction::Resolve { .. }) => "resolve",
            Action::UploadScript { .. } => "upload",
            Action::CreateApplication { .. } => "create",
            Action::DeleteApplication { .. } => "delete",
            Action::ModifyApplication { .. } => "modify",
            Action::CreateRollout { .. } => "rollout",
            Action::Reach(r) => r.kind(),
        })
        .collect()
}

fn fields(p: &Plan) -> Vec<&str> {
    p.changes.iter().map(|c| c.field.as_str()).collect()
}

fn refused(p: &Plan) -> &str {
    match &p.blocked {
        Some(Blocked::Refused { reason, .. }) => reason.as_str(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn no_application_creates_it_linked_to_the_namespace() {
    let d = desired("");
    let p = plan(&d, &observed(None));
    assert_eq!(kinds(&p), ["create"]);
    let Action::CreateApplication { request } = &p.actions[0] else {
        unreachable!()
    };
    assert_eq!(request.name, "shop");
    assert_eq!(
        request.durable_objects,
        Some(DurableObjectsConfiguration::NamespaceId {
            namespace_id: NS.into()
        })
    );
    assert_eq!(request.configuration.image, IMAGE);
    assert_eq!(
        request.configuration.label(OWNER_LABEL),
        Some("cli/apps.shop")
    );
    assert_eq!(
        request.configuration.instance_type,
        Some(InstanceType::Lite),
        "lite by default"
    );
    assert_eq!(request.max_instances, Some(20), "wrangler's default");
    assert_eq!(request.instances, 0);
}

#[test]
fn a_converged_application_plans_nothing() {
    let d = desired(
        "  env: [{name: B, value: '2'}, {name: A, value: '1'}]\n  constraints: {regions: [WEUR, ENAM], jurisdiction: eu}\n  observability: {logs: true}\n",
    );
    let mut app = app_for(&d, IMAGE);
    // Same meaning, other order and defaults left implicit.
    app.configuration
        .environment_variables
        .as_mut()
        .unwrap()
        .reverse();
    app.constraints
        .as_mut()
        .unwrap()
        .regions
        .as_mut()
        .unwrap()
        .reverse();
    app.configuration.instance_type = None;
    app.configuration.labels.as_mut().unwrap().push(Label {
        name: "team".into(),
        value: "x".into(),
    });
    let p = plan(&d, &observed(Some(app)));
    assert!(p.is_noop(), "{p:?}");
}

#[test]
fn a_named_size_and_its_expanded_form_are_the_same_size_both_ways() {
    // The spec names a type; the API answers it expanded.
    let d = desired("  instanceType: standard-1\n");
    let mut app = app_for(&d, IMAGE);
    app.configuration.instance_type = None;
    app.configuration.vcpu = Some(0.5);
    app.configuration.memory_mib = Some(4096);
    app.configuration.disk = Some(Disk {
        size_mb: Some(8000),
    });
    assert!(plan(&d, &observed(Some(app.clone()))).is_noop());
    // The spec writes the expanded form; the application names the type.
    let d2 = desired("  resources: {vcpu: 0.5, memoryMib: 4096, diskMb: 8000}\n");
    let mut named = app_for(&d2, IMAGE);
    named.configuration.vcpu = None;
    named.configuration.memory_mib = None;
    named.configuration.disk = None;
    named.configuration.instance_type = Some(InstanceType::Standard1);
    assert!(plan(&d2, &observed(Some(named))).is_noop());
    // Another size is a rollout.
    app.configuration.memory_mib = Some(6144);
    let p = plan(&d, &observed(Some(app)));
    assert!(fields(&p).contains(&"configuration.instance_type"), "{p:?}");
}

#[test]
fn observability_is_changed_in_the_form_the_application_uses() {
    // Made by wrangler: observability inside the configuration, none at the top level.
    let d = desired("  observability: {logs: true}\n  adopt: true\n");
    let mut app = app_for(&d, IMAGE);
    app.observability = None;
    app.configuration.labels = None;
    app.configuration.observability = Some(Observability {
        logs: Some(ObservabilityLogs {
            enabled: Some(false),
        }),
    });
    let p = plan(&d, &observed(Some(app.clone())));
    assert!(
        p.actions
            .iter()
            .all(|a| !matches!(a, Action::ModifyApplication { .. })),
        "no top-level observability PATCH: {p:?}"
    );
    let Some(Action::CreateRollout { request, .. }) = p.actions.last() else {
        panic!("{p:?}")
    };
    assert!(
        request
            .target_configuration
            .observability
            .as_ref()
            .is_some_and(Observability::logs_enabled),
        "the rollout writes it in the configuration"
    );
    assert!(fields(&p).contains(&"configuration.observability.logs.enabled"));
    // Already as wanted in that form: nothing to change about it.
    app.configuration.observability = Some(d.observability());
    app.configuration.labels = d.configuration(IMAGE, None).labels;
    assert!(plan(&d, &observed(Some(app))).is_noop());
}

#[test]
fn in_place_fields_are_one_patch_and_no_rollout() {
    let d = desired(
        "  maxInstances: 10\n  constraints: {regions: [WEUR]}\n  observability: {logs: true}\n  rollout: {activeGracePeriodSeconds: 30}\n",
    );
    let mut app = app_for(&desired(""), IMAGE);
    app.max_instances = Some(20);
    // The Durable Object scaled the application up: not flaredock's to undo.
    app.instances = 3;
    let p = plan(&d, &observed(Some(app)));
    assert_eq!(kinds(&p), ["modify"]);
    assert_eq!(
        fields(&p),
        [
            "max_instances",
            "constraints",
            "observability.logs.enabled",
            "rollout_active_grace_period"
        ]
    );
    let Action::ModifyApplication { request, .. } = &p.actions[0] else {
        unreachable!()
    };
    assert_eq!(request.max_instances, Some(10));
    assert_eq!(request.instances, None, "instances is never patched");
    assert_eq!(request.rollout_active_grace_period, Some(30));
}

#[test]
fn image_resources_and_env_need_exactly_one_rollout() {
    let d = desired("  instanceType: standard-1\n  env: [{name: A, value: '1'}]\n");
    let app = app_for(&desired(""), IMAGE2);
    let p = plan(&d, &observed(Some(app)));
    assert_eq!(kinds(&p), ["rollout"]);
    assert_eq!(
        fields(&p),
        [
            "configuration.image",
            "configuration.instance_type",
            "configuration.environment_variables.A"
        ]
    );
    let Action::CreateRollout {
        request, adopts, ..
    } = &p.actions[0]
    else {
        unreachable!()
    };
    assert!(!adopts);
    assert_eq!(request.target_configuration.image, IMAGE);
    assert_eq!(
        request.target_configuration.instance_type,
        Some(InstanceType::Standard1)
    );
    assert_eq!(request.strategy, RolloutStrategy::Rolling);
    // wrangler's default steps: 10% then 100%.
    let steps: Vec<i64> = request
        .steps
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| s.step_size.percentage)
        .collect();
    assert_eq!(steps, [10, 100]);
    assert_eq!(request.step_percentage, None);
}

#[test]
fn custom_resources_replace_the_instance_type() {
    let d = desired("  resources: {vcpu: 0.5, memoryMib: 1024, diskMb: 4000}\n");
    let p = plan(&d, &observed(Some(app_for(&desired(""), IMAGE))));
    let Action::CreateRollout { request, .. } = &p.actions[0] else {
        panic!("{p:?}")
    };
    let c = &request.target_configuration;
    assert_eq!(
        (c.instance_type, c.vcpu, c.memory_mib),
        (None, Some(0.5), Some(1024))
    );
    assert_eq!(c.disk.as_ref().and_then(|d| d.size_mb), Some(4000));
}

#[test]
fn rollout_strategy_follows_the_spec() {
    let cases = [
        ("  rollout: {strategy: immediate}\n", Some(100), None),
        ("  rollout: {stepPercentage: 25}\n", Some(25), None),
        ("  maxInstances: 1\n", Some(100), None),
        ("", None, Some(vec![10, 100])),
    ];
    for (extra, step, steps) in cases {
        let d = desired(&format!("{extra}  env: [{{name: NEW, value: '1'}}]\n"));
        let mut app = app_for(&d, IMAGE);
        app.configuration.environment_variables = None;
        let p = plan(&d, &observed(Some(app)));
        let Action::CreateRollout { request, .. } = p.actions.last().unwrap() else {
            panic!("{extra}: {p:?}")
        };
        assert_eq!(request.step_percentage, step, "{extra}");
        assert_eq!(
            request
                .steps
                .as_ref()
                .map(|s| s.iter().map(|x| x.step_size.percentage).collect::<Vec<_>>()),
            steps,
            "{extra}"
        );
    }
    let d = desired("  rollout: {kind: full_manual}\n  env: [{name: NEW, value: '1'}]\n");
    let p = plan(&d, &observed(Some(app_for(&desired(""), IMAGE))));
    let Action::CreateRollout { request, .. } = &p.actions[0] else {
        unreachable!()
    };
    assert_eq!(request.kind, Some(RolloutKind::FullManual));
}

#[test]
fn a_rollout_heading_to_the_spec_is_not_repeated() {
    let d = desired("");
    let mut app = app_for(&d, IMAGE2);
    app.active_rollout_id = Some("r-1".into());
    let mut o = observed(Some(app));
    o.target_configuration = Some(d.configuration(IMAGE, None));
    assert!(plan(&d, &o).is_noop());
}

#[test]
fn a_foreign_application_is_refused_unless_adopted() {
    let d = desired("");
    let mut app = app_for(&d, IMAGE);
    app.configuration.labels = None;
    let p = plan(&d, &observed(Some(app.clone())));
    assert_eq!(refused(&p), "ApplicationNotOwned");
    assert!(
        p.blocked
            .as_ref()
            .unwrap()
            .message()
            .contains("adopt: true")
    );
    assert!(p.actions.is_empty());

    let d = desired("  adopt: true\n");
    let p = plan(&d, &observed(Some(app.clone())));
    assert_eq!(
        kinds(&p),
        ["rollout"],
        "adoption takes ownership with a rollout, never a duplicate"
    );
    let Action::CreateRollout {
        request, adopts, ..
    } = &p.actions[0]
    else {
        unreachable!()
    };
    assert!(adopts);
    assert_eq!(
        request.target_configuration.label(OWNER_LABEL),
        Some("cli/apps.shop")
    );

    // Owned by another object: refused too.
    app.configuration.labels = Some(vec![Label {
        name: OWNER_LABEL.into(),
        value: "apps.other".into(),
    }]);
    let p = plan(&desired(""), &observed(Some(app)));
    assert_eq!(refused(&p), "ApplicationOwnedByAnother");
    assert!(p.blocked.as_ref().unwrap().message().contains("apps.other"));
}

#[test]
fn adopt_never_takes_another_objects_application() {
    // Another object of this namespace, of another namespace, of another cluster (by
    // its id, and one that recorded the same namespace and name in the old form).
    for owner in [
        "cli/apps.other",
        "cli/team-b.shop",
        "5f0c3c527a1e4d6b/apps.shop",
        "apps.shop",
    ] {
        let d = desired("  adopt: true\n");
        let mut app = app_for(&d, IMAGE);
        app.configuration.labels = Some(vec![Label {
            name: OWNER_LABEL.into(),
            value: owner.into(),
        }]);
        let p = plan(&d, &observed(Some(app)));
        assert_eq!(refused(&p), "ApplicationOwnedByAnother", "{owner}");
        assert!(p.actions.is_empty());
        let message = p.blocked.as_ref().unwrap().message();
        assert!(
            message.contains(owner),
            "the message names the owner: {message}"
        );
    }
}

#[test]
fn the_cluster_id_is_part_of_the_owner_and_needs_no_configuration() {
    // Two clusters with no --cluster-id and the same (or no) readable name: their
    // kube-system namespaces have different UIDs, so their owners differ.
    let a =
        ClusterIdentity::from_uid("5f0c3c52-7a1e-4d6b-9a0e-3f2b1c4d5e6f", Some("prod")).unwrap();
    let b =
        ClusterIdentity::from_uid("0b9e1f7a-2c3d-4e5f-8a9b-0c1d2e3f4a5b", Some("prod")).unwrap();
    assert_eq!(a.owner("apps", "shop"), "5f0c3c527a1e4d6b/apps.shop");
    assert_ne!(a.owner("apps", "shop"), b.owner("apps", "shop"));
    assert_eq!(
        ClusterIdentity::cli().owner("apps", "shop"),
        "cli/apps.shop"
    );
    assert!(ClusterIdentity::from_uid("not-a-uid", None).is_err());
    assert!(ClusterIdentity::new("Prod_EU", None).is_err());
}

#[test]
fn a_foreign_application_in_another_namespace_is_never_stolen() {
    let d = desired("  adopt: true\n");
    let mut app = app_for(&d, IMAGE);
    app.configuration.labels = None;
    app.durable_objects = Some(ApplicationDurableObjects {
        namespace_id: "someone-elses".into(),
    });
    let p = plan(&d, &observed(Some(app)));
    assert_eq!(refused(&p), "BoundToAnotherNamespace");
}

#[test]
fn a_changed_class_replaces_our_own_application() {
    let old = desired("");
    let d = Desired::from_spec(
        &object("").tap_class("Shop2"),
        &no_peers(),
        &ClusterIdentity::cli(),
    );
    let app = app_for(&old, IMAGE);
    let mut o = observed(Some(app));
    o.namespace = Some(DurableObjectNamespace {
        id: "ns-2".into(),
        class: Some("Shop2".into()),
        ..namespace()
    });
    let p = plan(&d, &o);
    // Cloudflare deletes asynchronously: the name stays taken, so the create waits.
    assert_eq!(kinds(&p), ["delete"]);
    assert_eq!(
        p.blocked.as_ref().unwrap().reason(),
        Reason::PreviousDeleting
    );
    assert!(fields(&p).contains(&"durable_objects.namespace_id"));
    // Still listed while it is being deleted: nothing to do but wait.
    let deleted = o.application.take().unwrap();
    o.deleting = Some(deleted);
    let p = plan(&d, &o);
    assert!(p.actions.is_empty(), "{p:?}");
    assert!(
        p.blocked
            .as_ref()
            .unwrap()
            .message()
            .contains("asynchronous deletion")
    );
    // Gone: the new application is created on the new namespace.
    o.deleting = None;
    let p = plan(&d, &o);
    assert_eq!(kinds(&p), ["create"]);
    let Action::CreateApplication { request } = &p.actions[0] else {
        unreachable!()
    };
    assert_eq!(
        request.durable_objects,
        Some(DurableObjectsConfiguration::NamespaceId {
            namespace_id: "ns-2".into()
        })
    );
}

trait TapClass {
    fn tap_class(self, class: &str) -> Self;
}

impl TapClass for CloudflareContainer {
    fn tap_class(mut self, class: &str) -> Self {
        self.spec.class_name = class.into();
        self
    }
}

#[test]
fn a_renamed_application_is_replaced() {
    let d = desired("  applicationName: shop-v2\n");
    let old = app_for(&desired(""), IMAGE);
    let mut o = observed(None);
    o.owned_elsewhere = vec![old.clone()];
    o.namespace_application = Some(old);
    let p = plan(&d, &o);
    // The namespace admits one application: the old one goes first, and the new one
    // waits until its asynchronous deletion is over.
    assert_eq!(kinds(&p), ["delete"]);
    assert_eq!(
        p.blocked.as_ref().unwrap().reason(),
        Reason::PreviousDeleting
    );
    let mut o = observed(None);
    o.deleting = Some(app_for(&desired(""), IMAGE));
    assert!(plan(&d, &o).actions.is_empty());
    let p = plan(&d, &observed(None));
    assert_eq!(kinds(&p), ["create"]);
    let Action::CreateApplication { request } = &p.actions[0] else {
        unreachable!()
    };
    assert_eq!(request.name, "shop-v2");

    // In another namespace, the new one comes first and the old one is cleaned up.
    let mut o = observed(None);
    let mut elsewhere = app_for(&desired(""), IMAGE);
    elsewhere.durable_objects = Some(ApplicationDurableObjects {
        namespace_id: "old-ns".into(),
    });
    o.owned_elsewhere = vec![elsewhere];
    let p = plan(&d, &o);
    assert_eq!(kinds(&p), ["create", "delete"]);
}

#[test]
fn a_namespace_serving_a_foreign_application_is_refused() {
    let d = desired("");
    let mut other = app_for(&d, IMAGE);
    other.name = "not-ours".into();
    other.configuration.labels = None;
    let mut o = observed(None);
    o.namespace_application = Some(other);
    assert_eq!(refused(&plan(&d, &o)), "NamespaceHasApplication");
}

#[test]
fn a_container_waits_until_its_cloudflare_worker_uploaded_the_class() {
    // The CloudflareWorker object is not known at all.
    let mut obj = object("");
    obj.spec.worker = flaredock::spec::WorkerRef {
        name: Some("missing".into()),
        binding_name: Some("SHOP".into()),
        script_name: None,
    };
    let d = Desired::from_spec(&obj, &no_peers(), &ClusterIdentity::cli());
    let p = plan(&d, &observed(None));
    assert_eq!(p.blocked.as_ref().unwrap().reason(), Reason::WorkerNotReady);
    assert!(
        p.blocked
            .as_ref()
            .unwrap()
            .message()
            .contains("apps/missing")
    );
    assert!(p.actions.is_empty());

    // The script exists, but its last flaredock upload does not hold the class.
    let d = managed("");
    let mut o = observed(None);
    o.script = Some(script(&[
        "flaredock.dev/owner=apps.shop",
        "flaredock.dev/containers=Other",
    ]));
    let p = plan(&d, &o);
    assert!(
        matches!(&p.blocked, Some(Blocked::Waiting { reason, .. }) if *reason == Reason::WorkerNotReady),
        "{p:?}"
    );
    assert!(p.actions.is_empty());

    // Uploaded with the class: the application is created on the class's namespace.
    o.script = Some(script(&[
        "flaredock.dev/owner=apps.shop",
        "flaredock.dev/containers=Other;Shop",
    ]));
    let p = plan(&d, &o);
    assert_eq!(kinds(&p), ["create"]);
    let Action::CreateApplication { request } = &p.actions[0] else {
        unreachable!()
    };
    assert_eq!(
        request.durable_objects,
        Some(DurableObjectsConfiguration::NamespaceId {
            namespace_id: NS.into()
        })
    );
}

/// What `wrangler deploy` leaves for a container naming a CloudflareWorker that awaits
/// adoption: the script (none of flaredock's tags), the class's namespace, and an
/// application no flaredock object owns, linked to it, running `image`.
/// The tag the spec names (`shop:v1`), as wrangler deploys it (by tag).
const TAG: &str = "registry.cloudflare.com/acc/shop:v1";

fn deployed_by_wrangler(d: &Desired, image: &str) -> Observed {
    let mut app = app_for(d, image);
    app.configuration.labels = None;
    let mut o = observed(Some(app));
    o.script = Some(script(&[]));
    o
}

fn held_kinds(p: &Plan) -> Vec<&'static str> {
    kinds(&Plan {
        actions: p.held.clone(),
        ..Default::default()
    })
}

#[test]
fn a_container_whose_worker_awaits_adoption_shows_only_the_ownership_it_takes() {
    let d = managed("  adopt: true\n");
    let p = plan(&d, &deployed_by_wrangler(&d, TAG));
    assert_eq!(
        fields(&p),
        [format!("configuration.labels.{OWNER_LABEL}")],
        "{p:?}"
    );
    assert_eq!(p.changes[0].from, "unset");
    assert_eq!(p.changes[0].to, d.owner);
    // Nothing is done while the script is not flaredock's: the rollout that takes the
    // application over is held, shown for review.
    assert!(p.actions.is_empty(), "{p:?}");
    assert_eq!(held_kinds(&p), ["rollout"]);
    assert!(
        matches!(&p.held[0], Action::CreateRollout { adopts: true, id, .. } if id == "app-1"),
        "{p:?}"
    );
    let Some(Blocked::Waiting { reason, message }) = &p.blocked else {
        panic!("waits for the Worker: {p:?}")
    };
    assert_eq!(*reason, Reason::WorkerNotReady);
    assert!(message.contains("CloudflareWorker apps/shop"), "{message}");
    let json = p.to_json();
    assert_eq!(json["actions"], serde_json::json!([]));
    assert_eq!(json["held"][0]["kind"], "create-rollout", "{json}");
    assert_eq!(json["blocked"]["reason"], "WorkerNotReady");

    // Once the Worker has uploaded the class, the same changes are acted on.
    let mut o = deployed_by_wrangler(&d, TAG);
    o.script = Some(script(&[
        "flaredock.dev/owner=apps.shop",
        "flaredock.dev/containers=Shop",
    ]));
    let after = plan(&d, &o);
    assert_eq!(after.changes, p.changes);
    assert_eq!(kinds(&after), ["rollout"]);
    assert!(
        after.held.is_empty() && after.blocked.is_none(),
        "{after:?}"
    );
    assert_eq!(
        status::adoption_hash(&after.changes),
        status::adoption_hash(&p.changes),
        "an approval given while the Worker awaited holds once it is adopted"
    );

    // The tag it runs, still to read: even its read is held (it mints registry
    // credentials), and the changes stay those reviewed.
    let mut o = deployed_by_wrangler(&d, TAG);
    o.image = ImageState::Needs(ImageAction::Resolve {
        reference: "registry.cloudflare.com/acc/shop:v1".into(),
    });
    let tagged = plan(&d, &o);
    assert_eq!(tagged.changes, p.changes);
    assert!(tagged.actions.is_empty(), "{tagged:?}");
    assert_eq!(held_kinds(&tagged), ["resolve", "rollout"]);

    // Nothing hosts the class live (no application linked to its namespace): nothing
    // to compare, the container only waits, as before.
    let mut o = deployed_by_wrangler(&d, IMAGE);
    o.application.as_mut().unwrap().durable_objects = Some(ApplicationDurableObjects {
        namespace_id: "another-ns".into(),
    });
    let p = plan(&d, &o);
    assert!(
        p.changes.is_empty() && p.actions.is_empty() && p.held.is_empty(),
        "{p:?}"
    );
    assert_eq!(p.blocked.as_ref().unwrap().reason(), Reason::WorkerNotReady);
    o.application = None;
    o.namespace = None;
    let p = plan(&d, &o);
    assert!(p.changes.is_empty() && p.held.is_empty(), "{p:?}");
    assert_eq!(p.blocked.as_ref().unwrap().reason(), Reason::WorkerNotReady);

    // Not adopted: the refusal shows now, whatever the Worker does.
    let d = managed("");
    assert_eq!(
        refused(&plan(&d, &deployed_by_wrangler(&d, IMAGE))),
        "ApplicationNotOwned"
    );
}

#[test]
fn a_container_whose_worker_awaits_adoption_shows_a_real_difference_too() {
    let d = managed("  adopt: true\n  maxInstances: 3\n");
    let mut o = deployed_by_wrangler(&d, IMAGE2);
    o.application.as_mut().unwrap().max_instances = Some(1);
    let p = plan(&d, &o);
    assert_eq!(
        fields(&p),
        [
            "max_instances".to_string(),
            "configuration.image".to_string(),
            format!("configuration.labels.{OWNER_LABEL}"),
        ],
        "{p:?}"
    );
    let image = p
        .changes
        .iter()
        .find(|c| c.field == "configuration.image")
        .unwrap();
    // Shown as the spec names it, the tag, whose digest (read with credentials held)
    // the rollout deploys.
    assert_eq!(
        (image.from.as_str(), image.to.as_str()),
        (
            IMAGE2,
            "registry.cloudflare.com/acc/shop:v1 (digest read at apply)"
        )
    );
    assert!(p.actions.is_empty(), "{p:?}");
    assert_eq!(held_kinds(&p), ["modify", "rollout"]);
    assert_eq!(p.blocked.as_ref().unwrap().reason(), Reason::WorkerNotReady);

    // An image whose tag is still to read: the read is held with the rest.
    let mut o = deployed_by_wrangler(&d, IMAGE2);
    o.application.as_mut().unwrap().max_instances = Some(3);
    o.image = ImageState::Needs(ImageAction::Resolve {
        reference: "registry.cloudflare.com/acc/other:v2".into(),
    });
    let p = plan(&d, &o);
    assert!(p.actions.is_empty(), "{p:?}");
    assert_eq!(held_kinds(&p), ["resolve", "rollout"], "{p:?}");
    assert!(
        p.changes
            .iter()
            .any(|c| c.field == "configuration.image" && c.to.contains("digest read at apply")),
        "{p:?}"
    );
}

#[test]
fn an_approved_container_adoption_waits_for_its_worker_keeping_the_approved_hash() {
    use flaredock::reconcile::holds;
    use flaredock::spec::{APPROVE_ADOPTION_ANNOTATION, AdoptionApproval};
    let d = managed("  adopt: true\n");
    let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
    let o = deployed_by_wrangler(&d, TAG);

    // Not approved: put up for review, the changes and their hash.
    let mut p = plan(&d, &o);
    let pending = holds::gate_adoption(&mut p, AdoptionApproval::Manual, None, now)
        .expect("the adoption is put up for review");
    let fields: Vec<&str> = pending.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, [format!("configuration.labels.{OWNER_LABEL}")]);
    assert!(holds::approved_held(&p, AdoptionApproval::Manual, None, now).is_none());

    // Approved while the Worker still awaits: nothing to act on, the approval kept.
    let annotations = [(
        APPROVE_ADOPTION_ANNOTATION.to_string(),
        pending.hash.clone(),
    )]
    .into();
    let mut p = plan(&d, &o);
    assert!(
        holds::gate_adoption(&mut p, AdoptionApproval::Manual, Some(&annotations), now).is_none()
    );
    assert!(p.actions.is_empty(), "nothing is written: {p:?}");
    let kept = holds::approved_held(&p, AdoptionApproval::Manual, Some(&annotations), now)
        .expect("the approved adoption is kept");
    assert_eq!(kept.hash, pending.hash);
    let s = status::derive(
        None,
        &StatusInput {
            generation: Some(1),
            desired: &d,
            observed: Some(&o),
            remaining: Some(&p),
            error: None,
            rollout_progress: None,
            reverted: None,
            retry: None,
        },
        now,
    );
    assert!(!status::is_ready(&s) && !status::is_stalled(&s));
    assert_eq!(
        status::condition(&s, "Ready").unwrap().reason,
        "WorkerNotReady"
    );
    assert_eq!(
        status::condition(&s, "WorkerBound").unwrap().reason,
        "WorkerNotReady"
    );

    // A stale approval (another hash) is not kept.
    let stale = [(
        APPROVE_ADOPTION_ANNOTATION.to_string(),
        "sha256:0".to_string(),
    )]
    .into();
    assert!(holds::approved_held(&p, AdoptionApproval::Manual, Some(&stale), now).is_none());

    // The Worker adopted: the same approval lets the rollout through.
    let mut o = o;
    o.script = Some(script(&[
        "flaredock.dev/owner=apps.shop",
        "flaredock.dev/containers=Shop",
    ]));
    let mut p = plan(&d, &o);
    assert!(
        holds::gate_adoption(&mut p, AdoptionApproval::Manual, Some(&annotations), now).is_none()
    );
    assert_eq!(kinds(&p), ["rollout"]);
    assert!(holds::approved_held(&p, AdoptionApproval::Manual, Some(&annotations), now).is_none());
}

#[test]
fn an_external_worker_is_never_changed_and_its_absence_is_explained() {
    let d = desired("");
    // No namespace for the class: wait, naming `containers` and the way out.
    let mut o = observed(None);
    o.namespace = None;
    let p = plan(&d, &o);
    let b = p.blocked.as_ref().unwrap();
    assert_eq!(b.reason(), Reason::WorkerNotFound);
    assert!(b.message().contains("containers"), "{}", b.message());
    assert!(b.message().contains("CloudflareWorker"), "{}", b.message());
    assert!(p.actions.is_empty());
    // With the namespace: only the application, never an upload.
    let p = plan(&d, &observed(None));
    assert_eq!(kinds(&p), ["create"]);
}

#[test]
fn waits_for_a_missing_worker_or_image() {
    let d = desired("");
    let mut o = observed(None);
    o.script = None;
    o.namespace = None;
    let p = plan(&d, &o);
    assert!(
        matches!(&p.blocked, Some(Blocked::Waiting { reason, .. }) if *reason == Reason::WorkerNotFound)
    );
    assert!(p.actions.is_empty());

    let mut o = observed(None);
    o.image = ImageState::Pending {
        reason: Reason::ImageNotFound,
        message: "no tag".into(),
    };
    let p = plan(&d, &o);
    assert!(
        matches!(&p.blocked, Some(Blocked::Waiting { reason, .. }) if *reason == Reason::ImageNotFound)
    );
    assert!(p.actions.is_empty());

    let mut o = observed(None);
    o.image = ImageState::Failed {
        reason: Reason::ForeignAccount,
        message: "other account".into(),
    };
    assert_eq!(refused(&plan(&d, &o)), "ForeignAccount");
}

#[test]
fn status_is_stable_across_a_resync_that_changed_nothing() {
    let obj = object("");
    let d = Desired::from_spec(&obj, &no_peers(), &ClusterIdentity::cli());
    let o = observed(Some(app_for(&d, IMAGE)));
    let remaining = plan(&d, &o);
    let input = StatusInput {
        generation: Some(3),
        desired: &d,
        observed: Some(&o),
        remaining: Some(&remaining),
        error: None,
        rollout_progress: None,
        reverted: None,
        retry: None,
    };
    let t1 = jiff::Timestamp::from_second(1_700_000_000).unwrap();
    let t2 = jiff::Timestamp::from_second(1_700_000_600).unwrap();
    let first = status::derive(None, &input, t1);
    assert!(status::is_ready(&first));
    assert_eq!(first.image.as_deref(), Some(IMAGE));
    assert_eq!(first.application_id.as_deref(), Some("app-1"));
    assert_eq!(first.durable_object_namespace_id.as_deref(), Some(NS));
    for kind in [
        "Ready",
        "Reconciling",
        "Stalled",
        "ImageReady",
        "WorkerBound",
        "ApplicationSynced",
        "RolloutComplete",
    ] {
        assert!(status::condition(&first, kind).is_some(), "{kind} missing");
    }
    let second = status::derive(Some(&first), &input, t2);
    assert_eq!(
        first, second,
        "a resync that changed nothing changes nothing"
    );
}

#[test]
fn status_is_not_ready_while_a_rollout_runs_and_stalled_on_refusal() {
    let d = desired("");
    let mut app = app_for(&d, IMAGE2);
    app.active_rollout_id = Some("r-9".into());
    let mut o = observed(Some(app));
    o.target_configuration = Some(d.configuration(IMAGE, None));
    let remaining = plan(&d, &o);
    let s = status::derive(
        None,
        &StatusInput {
            generation: None,
            desired: &d,
            observed: Some(&o),
            remaining: Some(&remaining),
            error: None,
            rollout_progress: Some(("r-9".into(), 10)),
            reverted: None,
            retry: None,
        },
        jiff::Timestamp::now(),
    );
    assert!(!status::is_ready(&s));
    assert_eq!(status::condition(&s, "Reconciling").unwrap().status, "True");
    assert_eq!(
        status::condition(&s, "RolloutComplete").unwrap().reason,
        "RolloutInProgress"
    );
    let r = s.rollout.unwrap();
    assert_eq!(
        (r.id.as_str(), r.status.as_str(), r.progress),
        ("r-9", "progressing", 10)
    );

    let mut app = app_for(&d, IMAGE);
    app.configuration.labels = None;
    let o = observed(Some(app));
    let remaining = plan(&d, &o);
    let s = status::derive(
        None,
        &StatusInput {
            generation: None,
            desired: &d,
            observed: Some(&o),
            remaining: Some(&remaining),
            error: None,
            rollout_progress: None,
            reverted: None,
            retry: None,
        },
        jiff::Timestamp::now(),
    );
    assert!(status::is_stalled(&s));
    assert!(!status::is_ready(&s));
    assert_eq!(
        status::condition(&s, "Stalled").unwrap().reason,
        "ApplicationNotOwned"
    );
}

#[test]
fn ready_needs_the_versions_at_one_hundred_percent_on_the_spec() {
    // The application's configuration is the spec's and no rollout is active, but the
    // versions say 40 % of instances still run something else: not Ready.
    let d = desired("");
    let mut o = observed(Some(app_for(&d, IMAGE)));
    let derive = |o: &Observed| {
        let remaining = plan(&d, o);
        status::derive(
            None,
            &StatusInput {
                generation: Some(1),
                desired: &d,
                observed: Some(o),
                remaining: Some(&remaining),
                error: None,
                rollout_progress: None,
                reverted: None,
                retry: None,
            },
            jiff::Timestamp::now(),
        )
    };
    o.on_spec = Some(60);
    let s = derive(&o);
    assert!(!status::is_ready(&s));
    let rollout = status::condition(&s, "RolloutComplete").unwrap();
    assert_eq!(rollout.status, "False");
    assert_eq!(rollout.reason, "VersionsDiffer");
    assert!(rollout.message.contains("60%"), "{}", rollout.message);
    assert_eq!(status::condition(&s, "Reconciling").unwrap().status, "True");
    o.on_spec = Some(100);
    assert!(status::is_ready(&derive(&o)));
}

#[test]
fn a_version_runs_the_spec_by_image_size_env_and_logs() {
    let d = desired("  env: [{name: A, value: '1'}]\n  instanceType: basic\n");
    let config = d.configuration(IMAGE, None);
    assert!(runs_spec(&d, IMAGE, &config));
    assert!(!runs_spec(&d, IMAGE2, &config));
    let mut other_env = config.clone();
    other_env.environment_variables = Some(vec![]);
    assert!(!runs_spec(&d, IMAGE, &other_env));
    // Cloudflare answers sizes expanded: the same size.
    let mut expanded = config.clone();
    expanded.instance_type = None;
    expanded.vcpu = Some(0.25);
    expanded.memory_mib = Some(1024);
    expanded.disk = Some(Disk {
        size_mb: Some(4000),
    });
    assert!(runs_spec(&d, IMAGE, &expanded));
    expanded.memory_mib = Some(2048);
    assert!(!runs_spec(&d, IMAGE, &expanded));
}

const DB_PASSWORD: &str = "correct-horse-battery-staple-9137";

/// A container whose `DB_PASSWORD` comes from Secret `shop-secrets`, key `db-password`
/// (holding `value`, or missing when `None`), and whose `MODE` is literal.
fn with_secret(value: Option<&str>) -> Desired {
    let obj = object(
        "  env:\n    - {name: MODE, value: live}\n    - name: DB_PASSWORD\n      valueFrom: {secretKeyRef: {name: shop-secrets, key: db-password}}\n",
    );
    let mut peers = PeerIndex::default();
    if let Some(v) = value {
        peers.data.secrets.insert(
            "apps/shop-secrets".into(),
            [("db-password".to_string(), v.as_bytes().to_vec())].into(),
        );
    }
    Desired::from_spec(&obj, &peers, &ClusterIdentity::cli())
}

/// Every way a plan can be shown: Display, Debug, the JSON of `plan -o json`, drift.
fn every_rendering(d: &Desired, p: &Plan) -> String {
    format!(
        "{d:?} {p:?} {} {} {}",
        p.actions
            .iter()
            .map(ToString::to_string)
            .collect::<String>(),
        p.changes
            .iter()
            .map(ToString::to_string)
            .collect::<String>(),
        p.to_json()
    )
}

#[test]
fn an_env_value_from_a_secret_is_sent_and_never_shown() {
    let d = with_secret(Some(DB_PASSWORD));
    // Created with the value…
    let p = plan(&d, &observed(None));
    let Action::CreateApplication { request } = &p.actions[0] else {
        panic!("{:?}", kinds(&p))
    };
    let env = request.configuration.environment_variables.clone().unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "DB_PASSWORD" && e.value == DB_PASSWORD),
        "the Secret's value is what Cloudflare gets"
    );
    assert!(!every_rendering(&d, &p).contains(DB_PASSWORD));

    // …changed in the Secret: one rollout, the diff naming the source only.
    let running = app_for(&with_secret(Some("an-older-password")), IMAGE);
    let p = plan(&d, &observed(Some(running)));
    assert_eq!(kinds(&p), ["rollout"]);
    assert_eq!(
        fields(&p),
        ["configuration.environment_variables.DB_PASSWORD"]
    );
    assert_eq!(p.changes[0].from, "(set)");
    assert_eq!(
        p.changes[0].to,
        "(from Secret shop-secrets/db-password, changed)"
    );
    let text = every_rendering(&d, &p);
    assert!(!text.contains(DB_PASSWORD), "{text}");
    assert!(!text.contains("an-older-password"), "{text}");
    // Rolled out once: the application now runs it, nothing more to do.
    let p = plan(&d, &observed(Some(app_for(&d, IMAGE))));
    assert!(p.is_noop(), "{:?}", p.changes);
}

#[test]
fn a_value_cloudflare_holds_is_never_shown_and_a_literal_one_is() {
    // The variable used to come from a Secret; the spec now sets it in clear, and
    // drops DB_PASSWORD: the old values stay unshown.
    let before = with_secret(Some(DB_PASSWORD));
    let d = desired("  env:\n    - {name: MODE, value: test}\n");
    let p = plan(&d, &observed(Some(app_for(&before, IMAGE))));
    let changes: Vec<String> = p.changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        changes,
        [
            "configuration.environment_variables.DB_PASSWORD: (set) → unset",
            "configuration.environment_variables.MODE: (set) → \"test\"",
        ]
    );
    assert!(!every_rendering(&d, &p).contains(DB_PASSWORD));
}

#[test]
fn a_missing_secret_or_key_waits_and_writes_nothing() {
    let d = with_secret(None);
    let p = plan(&d, &observed(None));
    assert!(p.actions.is_empty(), "{:?}", kinds(&p));
    match &p.blocked {
        Some(Blocked::Waiting { reason, message }) => {
            assert_eq!(*reason, Reason::SecretNotFound);
            assert!(
                message.contains("apps/shop-secrets") && message.contains("DB_PASSWORD"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The Secret exists without the key.
    let obj = object(
        "  env:\n    - name: DB_PASSWORD\n      valueFrom: {secretKeyRef: {name: shop-secrets, key: db-password}}\n",
    );
    let mut peers = PeerIndex::default();
    peers.data.secrets.insert(
        "apps/shop-secrets".into(),
        [("other".to_string(), b"x".to_vec())].into(),
    );
    let d = Desired::from_spec(&obj, &peers, &ClusterIdentity::cli());
    let app = app_for(&desired(""), IMAGE);
    let p = plan(&d, &observed(Some(app)));
    assert!(p.actions.is_empty());
    assert!(
        p.blocked
            .as_ref()
            .is_some_and(|b| b.message().contains("has no key db-password")),
        "{:?}",
        p.blocked
    );
}

#[test]
fn observing_an_application_made_elsewhere_lists_what_adopting_would_change() {
    // Made by wrangler: no owner label, two more instances allowed.
    let mut app = app_for(&desired(""), IMAGE);
    app.configuration.labels = None;
    app.max_instances = Some(22);
    let d = desired("  managementPolicy: Observe\n");
    let p = plan(&d, &observed(Some(app)));
    assert!(p.blocked.is_none(), "not refused: {:?}", p.blocked);
    let changes: Vec<String> = p.changes.iter().map(ToString::to_string).collect();
    assert!(
        changes.contains(&"max_instances: 22 → 20".to_string()),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with(&format!("configuration.labels.{OWNER_LABEL}: unset"))),
        "{changes:?}"
    );
}

// ---- Getting the image is an action ----------------------------------------------

const SOURCE: &str = "ghcr.io/team/shop:1.4";
const COPY_DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn copy_of(object: &str) -> ImageAction {
    ImageAction::Copy {
        source: SOURCE.into(),
        destination: format!("registry.cloudflare.com/acc/cli/apps/{object}:1.4"),
        digest: COPY_DIGEST.into(),
    }
}

#[test]
fn a_copy_is_the_first_action_and_the_application_deploys_its_digest() {
    let d = desired("");
    let mut o = observed(None);
    o.image = ImageState::Needs(copy_of("shop"));
    let p = plan(&d, &o);
    assert_eq!(kinds(&p), ["copy", "create"]);
    let Action::CreateApplication { request } = &p.actions[1] else {
        panic!("{p:?}")
    };
    assert_eq!(
        request.configuration.image,
        format!("registry.cloudflare.com/acc/cli/apps/shop@{COPY_DIGEST}")
    );
    let shown = p.actions[0].to_string();
    assert!(
        shown.contains(SOURCE)
            && shown.contains(COPY_DIGEST)
            && shown.contains("cli/apps/shop:1.4"),
        "plan names source, destination and digest: {shown}"
    );
    assert_eq!(p.to_json()["actions"][0]["kind"], "copy-image");
}

#[test]
fn a_copy_already_deployed_is_not_made_again_whatever_host_it_was_written_with() {
    let d = desired("");
    // The application runs the copy's digest under the host the credentials named.
    let running = format!("127.0.0.1:5000/acc/cli/apps/shop@{COPY_DIGEST}");
    let app = app_for(&d, &running);
    let mut o = observed(Some(app));
    o.image = ImageState::Needs(copy_of("shop"));
    let p = plan(&d, &o);
    assert!(p.actions.is_empty(), "{p:#?}");
}

#[test]
fn a_copy_waits_with_the_rest_of_the_plan() {
    // Nothing to deploy on yet (the Worker is not there): nothing is copied either.
    let d = desired("");
    let mut o = observed(None);
    o.namespace = None;
    o.script = None;
    o.image = ImageState::Needs(copy_of("shop"));
    let p = plan(&d, &o);
    assert!(p.actions.is_empty(), "{p:#?}");
    assert!(p.blocked.is_some());
}

#[test]
fn a_build_or_a_tag_read_comes_first_and_the_rest_shows_the_tag() {
    let d = desired("");
    let app = app_for(&d, IMAGE);
    for (action, kind, tag, says) in [
        (
            ImageAction::Build {
                destination: "registry.cloudflare.com/acc/cli/apps/shop:b-123".into(),
            },
            "build",
            "registry.cloudflare.com/acc/cli/apps/shop:b-123",
            "digest once built",
        ),
        (
            ImageAction::Resolve {
                reference: "registry.cloudflare.com/acc/shop-next:v2".into(),
            },
            "resolve",
            "registry.cloudflare.com/acc/shop-next:v2",
            "digest read at apply",
        ),
    ] {
        let mut o = observed(Some(app.clone()));
        o.image = ImageState::Needs(action);
        let p = plan(&d, &o);
        assert_eq!(kinds(&p), [kind, "rollout"]);
        let image = p
            .changes
            .iter()
            .find(|c| c.field == "configuration.image")
            .expect("the image change is shown");
        assert_eq!(image.from, IMAGE);
        assert_eq!(image.to, format!("{tag} ({says})"));
    }
}

#[test]
fn copies_go_to_a_repository_of_the_object_never_to_a_short_name() {
    use flaredock::reconcile::model::object_repository;
    assert_eq!(
        object_repository("cli", "team-a", "shop"),
        "cli/team-a/shop"
    );
    // Two namespaces' objects of one name, two clusters' objects of one namespace and
    // name: never the same repository, and never the short name `shop`.
    let repos = [
        object_repository("cli", "team-a", "shop"),
        object_repository("cli", "team-b", "shop"),
        object_repository("5f0c3c527a1e4d6b", "team-a", "shop"),
    ];
    for (i, a) in repos.iter().enumerate() {
        assert_ne!(a, "shop");
        for b in &repos[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn re_reading_the_tag_of_the_running_repository_is_done_but_is_not_a_change() {
    let d = desired("");
    let app = app_for(&d, IMAGE);
    let repository = IMAGE.split('@').next().unwrap();
    let mut o = observed(Some(app));
    o.image = ImageState::Needs(ImageAction::Resolve {
        reference: format!("{repository}:v1"),
    });
    let p = plan(&d, &o);
    assert_eq!(kinds(&p), ["resolve"], "apply re-reads the tag");
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert!(!p.changes_anything(), "a re-read alone changes nothing");
    // Another action makes it a change again.
    let mut more = p.clone();
    more.actions.push(p.actions[0].clone());
    more.changes.push(flaredock::reconcile::plan::Change::new(
        "max_instances",
        "2",
        "4",
    ));
    assert!(more.changes_anything());
}

#[test]
fn a_new_build_in_the_objects_own_repository_is_shown_as_an_image_change() {
    // The application runs an earlier build from the same (the object's own)
    // repository: a build with another content tag is a change, never taken for a
    // re-read of a tag.
    let d = desired("");
    let running = "registry.cloudflare.com/acc/cli/apps/shop@sha256:3333333333333333333333333333333333333333333333333333333333333333";
    let mut o = observed(Some(app_for(&d, running)));
    o.image = ImageState::Needs(ImageAction::Build {
        destination: "registry.cloudflare.com/acc/cli/apps/shop:build-new".into(),
    });
    let p = plan(&d, &o);
    assert_eq!(kinds(&p), ["build", "rollout"]);
    let image = p
        .changes
        .iter()
        .find(|c| c.field == "configuration.image")
        .expect("the image change is shown");
    assert_eq!(image.from, running);
    assert_eq!(
        image.to,
        "registry.cloudflare.com/acc/cli/apps/shop:build-new (digest once built)"
    );
    assert!(p.changes_anything());
}

/// A container adopted with `adopt: true` (script `shop-worker`, named directly) whose
/// application, made elsewhere, runs `live`; `held`: registry credentials are held at
/// plan time (minted for another object), so observe read the tag `shop:v1` (to
/// IMAGE); otherwise the read is left to act.
fn adoption_plan(d: &Desired, live: &str, held: bool) -> Plan {
    let mut o = deployed_by_wrangler(d, live);
    o.image = if held {
        ImageState::Ready(IMAGE.into())
    } else {
        ImageState::Needs(ImageAction::Resolve {
            reference: TAG.into(),
        })
    };
    plan(d, &o)
}

fn rollout_image(p: &Plan) -> Option<&str> {
    p.actions.iter().find_map(|a| match a {
        Action::CreateRollout { request, .. } => Some(request.target_configuration.image.as_str()),
        _ => None,
    })
}

#[test]
fn an_adoption_hash_does_not_depend_on_registry_credentials_held_at_plan_time() {
    use flaredock::reconcile::holds;
    use flaredock::spec::{APPROVE_ADOPTION_ANNOTATION, AdoptionApproval};
    let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
    let d = desired("  adopt: true\n");
    let label = format!("configuration.labels.{OWNER_LABEL}");
    for live in [
        // The tag itself (wrangler deploys by tag): pinning it is not a change.
        TAG,
        // The digest the tag names now, another digest, another repository, another
        // tag: the image is shown as the spec names it.
        IMAGE,
        IMAGE2,
        "registry.cloudflare.com/acc/legacy:v0",
        "registry.cloudflare.com/acc/shop:v0",
    ] {
        let with = adoption_plan(&d, live, true);
        let without = adoption_plan(&d, live, false);
        assert_eq!(with.changes, without.changes, "{live}");
        assert_eq!(
            status::adoption_hash(&with.changes),
            status::adoption_hash(&without.changes),
            "{live}"
        );
        if live == TAG {
            assert_eq!(fields(&with), [label.as_str()], "{with:?}");
        } else {
            assert_eq!(fields(&with), ["configuration.image", label.as_str()]);
            assert_eq!(with.changes[0].from, live);
            assert_eq!(with.changes[0].to, format!("{TAG} (digest read at apply)"));
        }
        // Both deploy the digest: read already (the rollout pins it), or read first
        // by act (which then plans again from what it read).
        assert_eq!(kinds(&with), ["rollout"], "{live}");
        assert_eq!(rollout_image(&with), Some(IMAGE), "{live}");
        assert_eq!(kinds(&without), ["resolve", "rollout"], "{live}");

        // An approval given on either plan lets the other through.
        for (reviewed, acted) in [(&with, &without), (&without, &with)] {
            let mut first = reviewed.clone();
            let pending = holds::gate_adoption(&mut first, AdoptionApproval::Manual, None, now)
                .expect("put up for review");
            let approved = [(APPROVE_ADOPTION_ANNOTATION.to_string(), pending.hash)].into();
            let mut later = acted.clone();
            assert!(
                holds::gate_adoption(&mut later, AdoptionApproval::Manual, Some(&approved), now)
                    .is_none(),
                "{live}"
            );
            assert_eq!(later.actions, acted.actions, "{live}");
        }
    }

    // The plan act makes once the tag is read (credentials minted): the approved
    // changes still, the digest it read rolled out.
    let mut o = deployed_by_wrangler(&d, TAG);
    o.image = ImageState::Ready(IMAGE2.into());
    let moved = plan(&d, &o);
    assert_eq!(
        status::adoption_hash(&moved.changes),
        status::adoption_hash(&adoption_plan(&d, TAG, false).changes),
        "the approved form is the tag: a tag moved since the review is what the spec asks"
    );
    assert_eq!(rollout_image(&moved), Some(IMAGE2));
}

#[test]
fn a_really_different_image_or_a_destructive_change_still_changes_the_adoption_hash() {
    let d = desired("  adopt: true\n");
    let hash = |p: &Plan| status::adoption_hash(&p.changes);
    let base = hash(&adoption_plan(&d, TAG, true));

    // Another image running than the tag: another hash, with credentials or without.
    for held in [true, false] {
        for live in [IMAGE2, "registry.cloudflare.com/acc/legacy:v0"] {
            assert_ne!(hash(&adoption_plan(&d, live, held)), base, "{live}");
        }
    }

    // The spec naming another tag: another hash, whichever shape.
    let mut obj = object("  adopt: true\n");
    obj.spec.image.as_mut().unwrap().reference = Some("shop:v2".into());
    let v2 = Desired::from_spec(&obj, &no_peers(), &ClusterIdentity::cli());
    let mut o = deployed_by_wrangler(&v2, TAG);
    o.image = ImageState::Ready(IMAGE2.into());
    let with = plan(&v2, &o);
    o.image = ImageState::Needs(ImageAction::Resolve {
        reference: "registry.cloudflare.com/acc/shop:v2".into(),
    });
    let without = plan(&v2, &o);
    assert_eq!(hash(&with), hash(&without));
    assert_ne!(hash(&with), base);
    assert_eq!(
        with.changes[0].to,
        "registry.cloudflare.com/acc/shop:v2 (digest read at apply)"
    );

    // A spec naming a digest is compared as it is (no tag to stand for it).
    let mut obj = object("  adopt: true\n");
    obj.spec.image.as_mut().unwrap().reference = Some(IMAGE2.into());
    let pinned = Desired::from_spec(&obj, &no_peers(), &ClusterIdentity::cli());
    let mut o = deployed_by_wrangler(&pinned, TAG);
    o.image = ImageState::Ready(IMAGE2.into());
    let p = plan(&pinned, &o);
    assert_eq!(
        (p.changes[0].from.as_str(), p.changes[0].to.as_str()),
        (TAG, IMAGE2)
    );

    // A live variable the spec leaves out: removed, another hash in both shapes.
    for held in [true, false] {
        let mut o = deployed_by_wrangler(&d, TAG);
        o.application
            .as_mut()
            .unwrap()
            .configuration
            .environment_variables = Some(vec![EnvironmentVariable {
            name: "LEGACY".into(),
            value: "1".into(),
        }]);
        if !held {
            o.image = ImageState::Needs(ImageAction::Resolve {
                reference: TAG.into(),
            });
        }
        let p = plan(&d, &o);
        assert!(fields(&p).contains(&"configuration.environment_variables.LEGACY"));
        assert_ne!(hash(&p), base);
    }

    // A destructive step is never canonicalised away: the same change marked
    // destructive hashes differently.
    let mut changes = adoption_plan(&d, TAG, true).changes;
    let plain = status::adoption_hash(&changes);
    let last = changes.last().unwrap().clone();
    changes.pop();
    changes.push(flaredock::reconcile::plan::Change::destructive(
        last.field,
        last.from,
        last.to,
        "drops a binding",
    ));
    assert_ne!(status::adoption_hash(&changes), plain);
}

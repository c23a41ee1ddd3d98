//! A Worker's reachability (issue 21): `workersDev`, `routes`, `domains`, `crons`.
//! Plan table tests (no I/O), then end-to-end against the emulator through the
//! pipeline, each part read back through the official endpoints.

mod common;

use flaredock::cloudflare::routing::{ScriptSubdomain, WorkerRoute, WorkersDomain};
use flaredock::reconcile::plan::{Action, Blocked, Plan};
use flaredock::reconcile::reason::Reason;
use flaredock::reconcile::worker::inputs::{SourceData, resolve_local};
use flaredock::reconcile::worker::model::{DesiredWorker, RecordedTags};
use flaredock::reconcile::worker::plan::{ObservedWorker, plan_worker};
use flaredock::reconcile::worker::reach::{ObservedReach, ReachAction, ReachRecord, RecordedReach};
use flaredock::spec::CloudflareWorker;
use flaredock::spec::reach::{DomainStatus, RouteStatus};

const ZONE: &str = "0123456789abcdef0123456789abcdef";

/// The `shop` Worker's document (a fetch and a scheduled handler) with `extra` spec lines.
fn shop_doc(extra: &str) -> String {
    format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareWorker\nmetadata: {{name: shop, namespace: apps}}\nspec:\n  compatibilityDate: '2026-06-01'\n  source:\n    inline:\n      mainModule: index.js\n      modules: {{index.js: 'export default {{ fetch() {{ return new Response(\"hi\") }}, scheduled() {{}} }}'}}\n{extra}"
    )
}

fn worker(extra: &str) -> CloudflareWorker {
    let doc = shop_doc(extra);
    match flaredock::manifest::parse_any(&doc, "w.yaml", 1).expect("valid") {
        flaredock::manifest::Document::Worker(w) => *w,
        other => panic!("{other:?}"),
    }
}

const REACH: &str = "  routes:\n    - {pattern: 'shop.example.com/*', zoneName: example.com}\n  domains:\n    - {hostname: api.example.com}\n  crons: ['*/5 * * * *']\n";

fn desired(obj: &CloudflareWorker) -> DesiredWorker {
    let inputs = resolve_local(obj, &SourceData::default())
        .expect("local source")
        .expect("inputs");
    DesiredWorker::new(
        obj,
        inputs,
        vec![],
        &[7; 32],
        &flaredock::spec::ClusterIdentity::cli(),
    )
}

fn route(id: &str, pattern: &str, script: &str) -> WorkerRoute {
    WorkerRoute {
        id: id.into(),
        pattern: pattern.into(),
        script: Some(script.into()),
    }
}

fn domain(id: &str, hostname: &str, service: &str) -> WorkersDomain {
    WorkersDomain {
        id: id.into(),
        hostname: hostname.into(),
        service: service.into(),
        ..Default::default()
    }
}

/// The script as uploaded by `d`, reached as `reach` says.
fn observed(d: &DesiredWorker, reach: ObservedReach) -> ObservedWorker {
    ObservedWorker {
        script: Some(flaredock::cloudflare::types::ScriptInfo {
            id: d.script_name.clone(),
            tags: Some(d.tags(&[]).unwrap()),
            ..Default::default()
        }),
        namespaced_classes: vec![],
        reach,
        ..Default::default()
    }
}

/// What the emulator shows of a Worker reached as [`REACH`] says.
fn reached(routes: Vec<WorkerRoute>, domains: Vec<WorkersDomain>) -> ObservedReach {
    ObservedReach {
        subdomain: Some(ScriptSubdomain {
            enabled: true,
            previews_enabled: false,
        }),
        account_subdomain: Some("acme".into()),
        crons: Some(vec!["*/5 * * * *".into()]),
        zones: [("example.com".to_string(), Some(ZONE.to_string()))].into(),
        routes: [(ZONE.to_string(), routes)].into(),
        domains,
        recorded: RecordedReach::default(),
        ..Default::default()
    }
}

/// The reach writes of a plan, the record that follows them left out.
fn reach_actions(p: &Plan) -> Vec<&ReachAction> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Reach(ReachAction::Record { .. }) => None,
            Action::Reach(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// The tags the plan's record writes, if it has one.
fn recorded_tags(p: &Plan) -> Option<Vec<String>> {
    p.actions.iter().find_map(|a| match a {
        Action::Reach(ReachAction::Record { tags, .. }) => Some(tags.clone()),
        _ => None,
    })
}

fn changes(p: &Plan) -> Vec<String> {
    p.changes.iter().map(ToString::to_string).collect()
}

#[test]
fn each_difference_is_shown_by_field_and_planned() {
    let obj = worker(REACH);
    let d = desired(&obj);
    let mut have = reached(vec![], vec![]);
    have.subdomain = Some(ScriptSubdomain::default());
    have.crons = Some(vec![]);
    let p = plan_worker(&d, &observed(&d, have));
    assert_eq!(
        changes(&p),
        [
            "worker.shop.workersDev: false → true",
            "worker.shop.crons: [] → [*/5 * * * *]",
            "worker.shop.route shop.example.com/*: absent → shop",
            "worker.shop.domain api.example.com: absent → shop",
        ]
    );
    assert_eq!(
        reach_actions(&p),
        [
            &ReachAction::SetWorkersDev {
                script: "shop".into(),
                enabled: true
            },
            &ReachAction::SetSchedules {
                script: "shop".into(),
                crons: vec!["*/5 * * * *".into()]
            },
            &ReachAction::CreateRoute {
                script: "shop".into(),
                zone_id: ZONE.into(),
                pattern: "shop.example.com/*".into()
            },
            &ReachAction::AttachDomain {
                script: "shop".into(),
                hostname: "api.example.com".into(),
                zone_id: None
            },
        ]
    );
    assert!(p.blocked.is_none(), "{p:?}");
}

#[test]
fn a_worker_reached_as_its_spec_says_plans_nothing() {
    let obj = worker(REACH);
    let d = desired(&obj);
    let have = reached(
        vec![route("r1", "shop.example.com/*", "shop")],
        vec![domain("d1", "api.example.com", "shop")],
    );
    // A script without a record (uploaded before records were kept): nothing to do.
    let p = plan_worker(&d, &observed(&d, have.clone()));
    assert!(p.is_noop(), "{p:?}");
    // A record that says otherwise (the crons were read as the spec says) is
    // corrected, with no change shown...
    let mut stale = have.clone();
    stale.record = ReachRecord::parse("flaredock.dev/reach=0000000000000000");
    let p = plan_worker(&d, &observed(&d, stale.clone()));
    assert!(p.changes.is_empty(), "{p:?}");
    assert!(reach_actions(&p).is_empty(), "{p:?}");
    let tags = recorded_tags(&p).expect("a record");
    // ... and once the script carries it, nothing at all.
    let mut recorded = observed(&d, have);
    recorded.script.as_mut().unwrap().tags = Some(tags);
    recorded.reach.record = RecordedTags::read(recorded.script.as_ref().unwrap())
        .reach
        .and_then(|t| ReachRecord::parse(&t));
    assert_ne!(recorded.reach.record, stale.record);
    let p = plan_worker(&d, &recorded);
    assert!(p.is_noop(), "{p:?}");
}

#[test]
fn a_route_held_by_another_script_is_refused_naming_it_and_left_untouched() {
    let obj = worker(REACH);
    let d = desired(&obj);
    let have = reached(
        vec![route("r9", "shop.example.com/*", "legacy-shop")],
        vec![domain("d1", "api.example.com", "shop")],
    );
    let p = plan_worker(&d, &observed(&d, have));
    match &p.blocked {
        Some(Blocked::Refused { reason, message }) => {
            assert_eq!(*reason, Reason::RouteHeldElsewhere);
            assert_eq!(
                reason.kind(),
                flaredock::reconcile::reason::ReasonKind::Stalled
            );
            assert!(message.contains("legacy-shop"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Nothing is planned against the other script's route.
    assert!(
        reach_actions(&p).iter().all(|a| !matches!(
            a,
            ReachAction::CreateRoute { .. } | ReachAction::DeleteRoute { .. }
        )),
        "{p:?}"
    );
}

#[test]
fn a_domain_held_by_another_script_is_refused_naming_it() {
    let obj = worker(REACH);
    let d = desired(&obj);
    let have = reached(
        vec![route("r1", "shop.example.com/*", "shop")],
        vec![domain("d7", "api.example.com", "billing")],
    );
    let p = plan_worker(&d, &observed(&d, have));
    match &p.blocked {
        Some(Blocked::Refused { reason, message }) => {
            assert_eq!(*reason, Reason::DomainHeldElsewhere);
            assert!(message.contains("billing"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        !reach_actions(&p)
            .iter()
            .any(|a| matches!(a, ReachAction::AttachDomain { .. })),
        "{p:?}"
    );
}

#[test]
fn a_removed_route_and_domain_flaredock_made_are_deleted_and_no_other() {
    // The spec lists neither any more; flaredock recorded r1 and d1 as its own. r2
    // serves the same script but flaredock did not make it; r3 serves another script.
    let obj = worker("  crons: ['*/5 * * * *']\n");
    let d = desired(&obj);
    let mut have = reached(
        vec![
            route("r1", "shop.example.com/*", "shop"),
            route("r2", "shop.example.com/by-hand/*", "shop"),
            route("r3", "other.example.com/*", "other"),
        ],
        vec![
            domain("d1", "api.example.com", "shop"),
            domain("d2", "www.example.com", "shop"),
        ],
    );
    have.recorded = RecordedReach {
        routes: vec![RouteStatus {
            pattern: "shop.example.com/*".into(),
            zone_id: ZONE.into(),
            id: "r1".into(),
        }],
        domains: vec![DomainStatus {
            hostname: "api.example.com".into(),
            id: "d1".into(),
        }],
    };
    let p = plan_worker(&d, &observed(&d, have));
    assert_eq!(
        reach_actions(&p),
        [
            &ReachAction::DeleteRoute {
                script: "shop".into(),
                zone_id: ZONE.into(),
                id: "r1".into(),
                pattern: "shop.example.com/*".into()
            },
            &ReachAction::DetachDomain {
                script: "shop".into(),
                id: "d1".into(),
                hostname: "api.example.com".into()
            },
        ]
    );
    assert!(
        changes(&p).contains(
            &"worker.shop.route shop.example.com/*: shop → absent (made by flaredock, no longer in spec) (DESTRUCTIVE: requests to this pattern no longer reach the Worker)"
                .to_string()
        ),
        "{p:?}"
    );
}

#[test]
fn a_recorded_route_that_now_serves_another_script_is_not_deleted() {
    let obj = worker("");
    let d = desired(&obj);
    let mut have = reached(
        vec![route("r1", "shop.example.com/*", "someone-else")],
        vec![],
    );
    have.crons = Some(vec![]);
    have.recorded.routes = vec![RouteStatus {
        pattern: "shop.example.com/*".into(),
        zone_id: ZONE.into(),
        id: "r1".into(),
    }];
    let p = plan_worker(&d, &observed(&d, have));
    assert!(reach_actions(&p).is_empty(), "{p:?}");
}

#[test]
fn an_unknown_zone_is_refused_naming_it() {
    let obj = worker("  routes:\n    - {pattern: 'shop.nowhere.dev/*', zoneName: nowhere.dev}\n");
    let d = desired(&obj);
    let mut have = reached(vec![], vec![]);
    have.crons = Some(vec![]);
    have.zones = [("nowhere.dev".to_string(), None)].into();
    let p = plan_worker(&d, &observed(&d, have));
    match &p.blocked {
        Some(Blocked::Refused { reason, message }) => {
            assert_eq!(*reason, Reason::ZoneNotFound);
            assert!(message.contains("nowhere.dev"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn workers_dev_false_turns_it_off_and_invalid_entries_are_refused_before_any_call() {
    let obj = worker("  workersDev: false\n");
    let d = desired(&obj);
    let mut have = reached(vec![], vec![]);
    have.crons = Some(vec![]);
    let p = plan_worker(&d, &observed(&d, have));
    assert_eq!(changes(&p), ["worker.shop.workersDev: true → false"]);

    let doc = "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareWorker\nmetadata: {name: shop, namespace: apps}\nspec:\n  compatibilityDate: '2026-06-01'\n  source: {inline: {mainModule: index.js, modules: {index.js: 'x'}}}\n  routes:\n    - {pattern: 'shop.other.org/*', zoneName: example.com}\n  crons: ['hourly']\n";
    let err = flaredock::manifest::parse_any(doc, "w.yaml", 1).expect_err("refused");
    let text = format!("{err:?}");
    assert!(text.contains("spec.routes[0].pattern"), "{text}");
    assert!(text.contains("spec.crons[0]"), "{text}");
}

// ---- end to end, against the emulator --------------------------------------------

use flaredock::cloudflare::types::{ScriptModule, ScriptUpload, UploadMetadata};
use flaredock::reconcile::Reconciler;
use flaredock::reconcile::worker::WorkerOutcome;
use flaredock::spec::CloudflareWorkerStatus;

async fn reconcile(
    r: &Reconciler,
    obj: &CloudflareWorker,
    previous: Option<&CloudflareWorkerStatus>,
) -> WorkerOutcome {
    r.view.invalidate().await;
    r.reconcile_worker(obj, vec![], &SourceData::default(), previous)
        .await
}

fn condition<'a>(s: &'a CloudflareWorkerStatus, kind: &str) -> (&'a str, &'a str, &'a str) {
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .unwrap_or_else(|| panic!("no {kind} condition in {s:?}"));
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

#[tokio::test]
async fn a_reachable_worker_becomes_ready_each_part_reads_back_and_re_apply_writes_nothing() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let r = common::reconciler_for(&client);
    let obj = worker(REACH);

    let first = reconcile(&r, &obj, None).await;
    assert!(first.ready(), "{:#?}", first.status);
    let zone = common::scripts::zone_id(&client).await;

    // Each part, read back through the official endpoints.
    assert!(client.script_subdomain("shop").await.unwrap().enabled);
    let crons: Vec<String> = client
        .schedules("shop")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.cron)
        .collect();
    assert_eq!(crons, ["*/5 * * * *"]);
    let routes = client.list_routes(&zone).await.unwrap();
    let ours = routes
        .iter()
        .find(|x| x.pattern == "shop.example.com/*")
        .expect("the route");
    assert_eq!(ours.script.as_deref(), Some("shop"));
    let domains = client.list_domains().await.unwrap();
    let api = domains
        .iter()
        .find(|d| d.hostname == "api.example.com")
        .expect("the domain");
    assert_eq!(api.service, "shop");

    // The status records the URL and what flaredock made.
    let s = &first.status;
    assert_eq!(s.url.as_deref(), Some("https://shop.flaredock.workers.dev"));
    assert_eq!(
        s.routes,
        [RouteStatus {
            pattern: "shop.example.com/*".into(),
            zone_id: zone.clone(),
            id: ours.id.clone(),
        }]
    );
    assert_eq!(
        s.domains,
        [DomainStatus {
            hostname: "api.example.com".into(),
            id: api.id.clone(),
        }]
    );

    // Re-apply: zero writes.
    let before = common::cloudflare_writes(&em);
    let again = reconcile(&r, &obj, Some(&first.status)).await;
    assert!(again.ready(), "{:#?}", again.status);
    assert!(again.plan.actions.is_empty(), "{:?}", again.plan);
    assert_eq!(common::cloudflare_writes(&em), before);

    // A route removed from the spec is deleted (it was flaredock's); workers.dev off.
    let fewer = worker(
        "  workersDev: false\n  domains:\n    - {hostname: api.example.com}\n  crons: ['*/5 * * * *']\n",
    );
    let third = reconcile(&r, &fewer, Some(&again.status)).await;
    assert!(third.ready(), "{:#?}", third.status);
    assert!(
        client
            .list_routes(&zone)
            .await
            .unwrap()
            .iter()
            .all(|x| x.id != ours.id)
    );
    assert!(!client.script_subdomain("shop").await.unwrap().enabled);
    assert_eq!(third.status.url, None);
    assert!(third.status.routes.is_empty(), "{:?}", third.status.routes);
    em.stop().await;
}

#[tokio::test]
async fn a_route_another_script_holds_stalls_naming_it_and_stays_its() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let r = common::reconciler_for(&client);
    common::scripts::upload_by_hand(&client, "legacy-shop", "legacy").await;
    let zone = common::scripts::zone_id(&client).await;
    let theirs = client
        .create_route(&zone, "shop.example.com/*", "legacy-shop")
        .await
        .unwrap();

    let out = reconcile(&r, &worker(REACH), None).await;
    assert!(!out.ready());
    let (stalled, reason, message) = condition(&out.status, "Stalled");
    assert_eq!((stalled, reason), ("True", "RouteHeldElsewhere"));
    assert!(message.contains("legacy-shop"), "{message}");
    let routes = client.list_routes(&zone).await.unwrap();
    let still = routes.iter().find(|x| x.id == theirs.id).expect("kept");
    assert_eq!(still.script.as_deref(), Some("legacy-shop"));
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(out.status.routes.is_empty());
    em.stop().await;
}

#[tokio::test]
async fn suspend_observe_and_a_pending_adoption_write_no_route_domain_or_cron() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let r = common::reconciler_for(&client);
    // Ready with workers.dev only; then the spec adds a route, a domain and a cron.
    let ready = reconcile(&r, &worker(""), None).await;
    assert!(ready.ready(), "{:#?}", ready.status);
    for hold in ["  suspend: true\n", "  managementPolicy: Observe\n"] {
        let before = common::cloudflare_writes(&em);
        let held = reconcile(&r, &worker(&format!("{REACH}{hold}")), Some(&ready.status)).await;
        assert!(!held.ready(), "{hold}: {:#?}", held.status);
        assert_eq!(common::cloudflare_writes(&em), before, "{hold}");
        let (_, reason, _) = condition(&held.status, "Ready");
        assert!(
            reason == "Suspended" || reason == "Observing",
            "{hold}: {reason}"
        );
    }
    // Adopting a script uploaded by hand waits for approval: nothing is written.
    common::scripts::upload_by_hand(&client, "legacy", "legacy").await;
    let adopt = worker(&format!(
        "  scriptName: legacy\n  adopt: true\n{}",
        REACH.replace("shop.example.com", "legacy.example.com")
    ));
    let before = common::cloudflare_writes(&em);
    let pending = reconcile(&r, &adopt, None).await;
    assert_eq!(common::cloudflare_writes(&em), before);
    let (_, reason, _) = condition(&pending.status, "Ready");
    assert_eq!(reason, "AdoptionPending");
    let changes: Vec<String> = pending
        .status
        .pending_adoption
        .as_ref()
        .expect("pending")
        .changes
        .iter()
        .map(|c| c.field.clone())
        .collect();
    assert!(
        changes
            .iter()
            .any(|f| f == "worker.legacy.route legacy.example.com/*"),
        "{changes:?}"
    );
    em.stop().await;
}

#[tokio::test]
async fn deleting_removes_only_the_routes_and_domains_flaredock_made() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let r = common::reconciler_for(&client);
    let mut obj = worker(REACH);
    let out = reconcile(&r, &obj, None).await;
    assert!(out.ready(), "{:#?}", out.status);
    let zone = common::scripts::zone_id(&client).await;
    // Made by hand: one for this script, one for another; a domain of another.
    let by_hand = client
        .create_route(&zone, "shop.example.com/by-hand/*", "shop")
        .await
        .unwrap();
    common::scripts::upload_by_hand(&client, "billing", "legacy").await;
    let other = client
        .create_route(&zone, "billing.example.com/*", "billing")
        .await
        .unwrap();
    let other_domain = client
        .attach_domain("pay.example.com", "billing", None)
        .await
        .unwrap();

    obj.status = Some(out.status.clone());
    r.delete_worker(&obj).await.expect("deleted");
    let ids: Vec<String> = client
        .list_routes(&zone)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert!(!ids.contains(&out.status.routes[0].id), "{ids:?}");
    assert!(
        ids.contains(&by_hand.id) && ids.contains(&other.id),
        "{ids:?}"
    );
    let domains: Vec<String> = client
        .list_domains()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(domains, [other_domain.id]);
    em.stop().await;
}

/// The command-line tests' set-up: an emulator, its client, and `shop.yaml` (the
/// [`shop_doc`] with `extra`) in a temporary directory kept alive by the caller.
async fn shop_file(
    extra: &str,
) -> (
    common::Emulator,
    flaredock::cloudflare::CloudflareClient,
    tempfile::TempDir,
    String,
) {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.yaml");
    std::fs::write(&file, shop_doc(extra)).unwrap();
    let path = file.to_str().unwrap().to_string();
    (em, client, dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_plans_by_field_applies_printing_the_url_and_deletes_what_it_made() {
    let (em, client, _dir, path) = shop_file(REACH).await;
    let path = path.as_str();

    let (_, plan, stderr) = common::flaredock_cli(&em, ["plan", "-f", path]);
    assert!(
        plan.contains("worker.shop.route shop.example.com/*: absent → shop"),
        "{plan}{stderr}"
    );
    assert!(
        plan.contains("worker.shop.crons: [] → [*/5 * * * *]"),
        "{plan}"
    );
    assert!(common::cloudflare_writes(&em).is_empty());

    let (code, out, stderr) = common::flaredock_cli(&em, ["apply", "--timeout", "10s", "-f", path]);
    assert_eq!(code, Some(0), "{out}{stderr}");
    assert!(
        out.contains("url: https://shop.flaredock.workers.dev"),
        "{out}"
    );
    let zone = common::scripts::zone_id(&client).await;
    assert!(
        client
            .list_routes(&zone)
            .await
            .unwrap()
            .iter()
            .any(|r| r.pattern == "shop.example.com/*")
    );

    // Another script's route in the zone stays through the delete.
    common::scripts::upload_by_hand(&client, "billing", "legacy").await;
    let theirs = client
        .create_route(&zone, "billing.example.com/*", "billing")
        .await
        .unwrap();
    let (code, out, stderr) =
        common::flaredock_cli(&em, ["delete", "--timeout", "10s", "-f", path]);
    assert_eq!(code, Some(0), "{out}{stderr}");
    let routes = client.list_routes(&zone).await.unwrap();
    assert_eq!(
        routes.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [theirs.id.as_str()]
    );
    assert!(
        client
            .list_domains()
            .await
            .unwrap()
            .iter()
            .all(|d| d.hostname != "api.example.com")
    );
    em.stop().await;
}

#[tokio::test]
async fn what_flaredock_made_stays_recorded_while_an_input_is_missing() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let r = common::reconciler_for(&client);
    let ready = reconcile(&r, &worker(REACH), None).await;
    assert!(ready.ready(), "{:#?}", ready.status);
    assert_eq!(ready.status.routes.len(), 1);
    // A Secret the spec now names does not exist: nothing is planned, the record stays.
    let waiting = worker(&format!(
        "{REACH}  secrets:\n    - {{name: API_KEY, secretKeyRef: {{name: missing, key: k}}}}\n"
    ));
    let before = common::cloudflare_writes(&em);
    let blocked = reconcile(&r, &waiting, Some(&ready.status)).await;
    assert!(!blocked.ready());
    assert_eq!(common::cloudflare_writes(&em), before);
    assert_eq!(blocked.status.routes, ready.status.routes);
    assert_eq!(blocked.status.domains, ready.status.domains);
    assert_eq!(blocked.status.url, ready.status.url);
    em.stop().await;
}

// ---- the record on the script: the re-apply budget, and drift at the resync --------

use flaredock::reconcile::worker::reach::ReachReads;

/// Reads of one script's workers.dev state or cron triggers, since request `from`.
fn reach_reads(em: &flaredock::emulator::RunningEmulator, from: usize, script: &str) -> usize {
    em.shared.requests()[from..]
        .iter()
        .filter(|r| {
            r.method == "GET"
                && (r.path.ends_with(&format!("/scripts/{script}/subdomain"))
                    || r.path.ends_with(&format!("/scripts/{script}/schedules")))
        })
        .count()
}

fn tags_of(script: &flaredock::cloudflare::types::ScriptInfo) -> Vec<String> {
    script.tags().to_vec()
}

#[tokio::test]
async fn a_re_apply_from_a_new_process_trusts_the_record_and_reads_no_reach_state() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let obj = worker("  crons: ['*/5 * * * *']\n");
    let first = common::reconciler_for(&client).with_reach_reads(ReachReads::WhenRecorded);
    let out = first
        .reconcile_worker(&obj, vec![], &SourceData::default(), None)
        .await;
    assert!(out.ready(), "{:#?}", out.status);
    // The record went on the script once the writes were done, without an upload.
    let info = client
        .list_scripts()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == "shop")
        .expect("the script");
    assert!(
        tags_of(&info)
            .iter()
            .any(|t| t.starts_with("flaredock.dev/reach=")),
        "{info:?}"
    );
    let uploads = common::cloudflare_writes(&em)
        .iter()
        .filter(|w| w.starts_with("PUT ") && w.ends_with("/workers/scripts/shop"))
        .count();
    assert_eq!(uploads, 1);

    // A new process (as `flaredock apply` run again): no per-Worker read, no write,
    // and the URL still in status (the record keeps the account's subdomain).
    let from = em.shared.requests().len();
    let again = common::reconciler_for(&client).with_reach_reads(ReachReads::WhenRecorded);
    let out = again
        .reconcile_worker(&obj, vec![], &SourceData::default(), None)
        .await;
    assert!(out.ready(), "{:#?}", out.status);
    assert_eq!(reach_reads(&em, from, "shop"), 0);
    let after: Vec<String> = em.shared.requests()[from..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        after
            .iter()
            .all(|r| r.starts_with("GET ") && !r.ends_with("/workers/subdomain")),
        "{after:?}"
    );
    assert_eq!(
        out.status.url.as_deref(),
        Some("https://shop.flaredock.workers.dev")
    );

    // A spec change of the crons is read, written and recorded again.
    let more = worker("  crons: ['*/5 * * * *', '0 1 * * *']\n");
    let out = common::reconciler_for(&client)
        .with_reach_reads(ReachReads::WhenRecorded)
        .reconcile_worker(&more, vec![], &SourceData::default(), None)
        .await;
    assert!(out.ready(), "{:#?}", out.status);
    let mut crons: Vec<String> = client
        .schedules("shop")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.cron)
        .collect();
    crons.sort();
    assert_eq!(crons, ["*/5 * * * *", "0 1 * * *"]);
    em.stop().await;
}

#[tokio::test]
async fn drift_made_outside_flaredock_is_found_at_the_next_resync() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    // The controller's reconciler: one account view for every reconcile.
    let r = common::reconciler_for(&client);
    let obj = worker("  crons: ['*/5 * * * *']\n");
    let data = SourceData::default();
    let ready = r.reconcile_worker(&obj, vec![], &data, None).await;
    assert!(ready.ready(), "{:#?}", ready.status);

    // Between resyncs a reconcile (a container changed, the Secret poll) reads neither.
    let from = em.shared.requests().len();
    let quiet = r
        .reconcile_worker(&obj, vec![], &data, Some(&ready.status))
        .await;
    assert!(quiet.ready(), "{:#?}", quiet.status);
    assert_eq!(reach_reads(&em, from, "shop"), 0);

    // Someone turns workers.dev off and removes the cron (as wrangler would).
    client.set_script_subdomain("shop", false).await.unwrap();
    client.set_schedules("shop", &[]).await.unwrap();

    // The periodic resync marks the account view stale (`Context::invalidate_all`):
    // the next reconcile reads both, finds the drift and corrects it.
    r.view.invalidate().await;
    let from = em.shared.requests().len();
    let resynced = r
        .reconcile_worker(&obj, vec![], &data, Some(&quiet.status))
        .await;
    assert_eq!(reach_reads(&em, from, "shop"), 2);
    let drift: Vec<String> = resynced.drift.iter().map(ToString::to_string).collect();
    assert!(
        drift.contains(&"worker.shop.workersDev: false → true".to_string()),
        "{drift:?}"
    );
    assert!(
        drift
            .iter()
            .any(|d| d.starts_with("worker.shop.crons: [] →")),
        "{drift:?}"
    );
    assert!(resynced.ready(), "{:#?}", resynced.status);
    assert!(client.script_subdomain("shop").await.unwrap().enabled);
    assert_eq!(client.schedules("shop").await.unwrap().len(), 1);
    em.stop().await;
}

#[tokio::test]
async fn a_script_uploaded_over_since_is_read_not_trusted() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let obj = worker("  crons: ['*/5 * * * *']\n");
    let data = SourceData::default();
    let cli = || common::reconciler_for(&client).with_reach_reads(ReachReads::WhenRecorded);
    let ready = cli().reconcile_worker(&obj, vec![], &data, None).await;
    assert!(ready.ready(), "{:#?}", ready.status);
    // Someone uploads the script again keeping its tags (its etag moves) and drops
    // the cron.
    let info = client
        .list_scripts()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == "shop")
        .unwrap();
    let upload = ScriptUpload {
        metadata: UploadMetadata {
            main_module: "index.js".into(),
            compatibility_date: "2026-06-01".into(),
            tags: tags_of(&info),
            ..Default::default()
        },
        modules: vec![ScriptModule {
            name: "index.js".into(),
            content_type: "application/javascript+module".into(),
            content: b"export default { fetch() { return new Response('over') }, scheduled() {} }"
                .to_vec(),
        }],
    };
    client.upload_script("shop", &upload).await.unwrap();
    client.set_schedules("shop", &[]).await.unwrap();
    let from = em.shared.requests().len();
    let out = cli()
        .reconcile_worker(&obj, vec![], &data, Some(&ready.status))
        .await;
    assert_eq!(reach_reads(&em, from, "shop"), 2);
    assert!(out.ready(), "{:#?}", out.status);
    assert_eq!(client.schedules("shop").await.unwrap().len(), 1);
    em.stop().await;
}

// ---- adoption and Observe: what the spec leaves out is a destructive removal ------

/// A script uploaded elsewhere (no flaredock tags), reached as `reach` says.
fn foreign(d: &DesiredWorker, mut reach: ObservedReach) -> ObservedWorker {
    reach.adopting = true;
    ObservedWorker {
        script: Some(flaredock::cloudflare::types::ScriptInfo {
            id: d.script_name.clone(),
            etag: Some("e7a9".into()),
            ..Default::default()
        }),
        reach,
        ..Default::default()
    }
}

fn change_of<'p>(p: &'p Plan, field: &str) -> &'p flaredock::reconcile::plan::Change {
    p.changes
        .iter()
        .find(|c| c.field == field)
        .unwrap_or_else(|| panic!("no change {field} in {p:?}"))
}

#[test]
fn adopting_shows_each_live_route_domain_and_cron_the_spec_leaves_out_as_a_destructive_removal() {
    let obj = worker(
        "  adopt: true\n  routes:\n    - {pattern: 'shop.example.com/*', zoneName: example.com}\n  crons: ['*/5 * * * *']\n",
    );
    let d = desired(&obj);
    let mut have = reached(
        vec![
            route("r1", "shop.example.com/*", "shop"),
            route("r2", "shop.example.com/old/*", "shop"),
            route("r3", "billing.example.com/*", "billing"),
        ],
        vec![
            domain("d1", "api.example.com", "shop"),
            domain("d2", "pay.example.com", "billing"),
        ],
    );
    have.crons = Some(vec!["*/5 * * * *".into(), "0 3 * * *".into()]);
    let p = plan_worker(&d, &foreign(&d, have));
    let crons = change_of(&p, "worker.shop.crons");
    assert_eq!(crons.from, "[*/5 * * * *, 0 3 * * *]");
    assert!(
        crons.is_destructive()
            && crons.to == "[*/5 * * * *]"
            && crons.consequence().is_some_and(|c| c.contains("0 3 * * *")),
        "{crons}"
    );
    let old = change_of(&p, "worker.shop.route shop.example.com/old/*");
    assert!(old.is_destructive(), "{old}");
    let api = change_of(&p, "worker.shop.domain api.example.com");
    assert!(api.is_destructive(), "{api}");
    // The route the spec keeps, and everything of another script, is not a change.
    assert!(
        p.changes.iter().all(|c| !c.field.contains("billing")
            && !c.field.contains("pay.example.com")
            && c.field != "worker.shop.route shop.example.com/*"),
        "{p:?}"
    );
    assert_eq!(
        reach_actions(&p),
        [
            &ReachAction::SetSchedules {
                script: "shop".into(),
                crons: vec!["*/5 * * * *".into()]
            },
            &ReachAction::DeleteRoute {
                script: "shop".into(),
                zone_id: ZONE.into(),
                id: "r2".into(),
                pattern: "shop.example.com/old/*".into()
            },
            &ReachAction::DetachDomain {
                script: "shop".into(),
                id: "d1".into(),
                hostname: "api.example.com".into()
            },
        ]
    );
    // It is an adoption: the policy holds all of it for approval.
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::UploadScript { adopts: true, .. }))
    );
}

#[test]
fn a_cron_removed_from_the_spec_is_marked_destructive_and_an_added_one_is_not() {
    let d = desired(&worker("  crons: ['*/5 * * * *']\n"));
    let mut have = reached(vec![], vec![]);
    have.crons = Some(vec!["*/5 * * * *".into(), "0 3 * * *".into()]);
    let p = plan_worker(&d, &observed(&d, have));
    assert!(
        change_of(&p, "worker.shop.crons")
            .shown_to()
            .contains("(DESTRUCTIVE: the cron triggers [0 3 * * *] are removed"),
        "{p:?}"
    );
    let mut have = reached(vec![], vec![]);
    have.crons = Some(vec![]);
    let p = plan_worker(&d, &observed(&d, have));
    let added = change_of(&p, "worker.shop.crons");
    assert_eq!(added.to, "[*/5 * * * *]");
    assert!(
        !added.is_destructive(),
        "an addition removes nothing: {added}"
    );
}

/// The requests `METHOD …suffix` since request `from`.
fn sent(em: &flaredock::emulator::RunningEmulator, from: usize, method: &str, part: &str) -> usize {
    em.shared.requests()[from..]
        .iter()
        .filter(|r| r.method == method && r.path.contains(part))
        .count()
}

#[tokio::test]
async fn an_adoption_writes_nothing_until_its_exact_plan_is_approved_and_an_approved_removal_happens_once()
 {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let r = common::reconciler_for(&client);
    // Deployed by hand: a route, a custom domain and two crons; another script's route
    // in the same zone.
    common::scripts::upload_by_hand(&client, "legacy", "legacy").await;
    common::scripts::upload_by_hand(&client, "billing", "legacy").await;
    let zone = common::scripts::zone_id(&client).await;
    let keep = client
        .create_route(&zone, "legacy.example.com/*", "legacy")
        .await
        .unwrap();
    let old = client
        .create_route(&zone, "legacy.example.com/old/*", "legacy")
        .await
        .unwrap();
    let theirs = client
        .create_route(&zone, "billing.example.com/*", "billing")
        .await
        .unwrap();
    let domain = client
        .attach_domain("legacy-api.example.com", "legacy", None)
        .await
        .unwrap();
    client
        .set_schedules("legacy", &["*/5 * * * *".into(), "0 3 * * *".into()])
        .await
        .unwrap();
    let mut obj = worker(
        "  scriptName: legacy\n  adopt: true\n  routes:\n    - {pattern: 'legacy.example.com/*', zoneName: example.com}\n  crons: ['*/5 * * * *']\n",
    );

    // Observe first: the removals are shown as drift, nothing is written.
    let mut observing = obj.clone();
    observing.spec.management_policy = flaredock::spec::ManagementPolicy::Observe;
    let before = common::cloudflare_writes(&em);
    let seen = reconcile(&r, &observing, None).await;
    assert_eq!(common::cloudflare_writes(&em), before);
    let drift: Vec<String> = seen
        .status
        .drift
        .iter()
        .map(|d| format!("{}: {}", d.field, d.wanted))
        .collect();
    for field in [
        "worker.legacy.route legacy.example.com/old/*",
        "worker.legacy.domain legacy-api.example.com",
        "worker.legacy.crons",
    ] {
        assert!(
            drift
                .iter()
                .any(|d| d.starts_with(field) && d.contains("DESTRUCTIVE")),
            "{field}: {drift:?}"
        );
    }

    // Managed, Manual approval (the default): held, nothing written.
    let pending = reconcile(&r, &obj, None).await;
    assert_eq!(common::cloudflare_writes(&em), before);
    let (_, reason, _) = condition(&pending.status, "Ready");
    assert_eq!(reason, "AdoptionPending");
    let offer = pending.status.pending_adoption.clone().expect("pending");
    assert!(
        offer.changes.iter().any(
            |c| c.field == "worker.legacy.route legacy.example.com/old/*"
                && c.wanted.contains("DESTRUCTIVE")
        ),
        "{offer:?}"
    );

    // A stale approval (another hash) approves nothing.
    obj.metadata.annotations = Some(
        [(
            flaredock::spec::APPROVE_ADOPTION_ANNOTATION.to_string(),
            "0000000000000000".to_string(),
        )]
        .into(),
    );
    let stale = reconcile(&r, &obj, Some(&pending.status)).await;
    assert_eq!(common::cloudflare_writes(&em), before);
    assert!(!stale.ready());

    // The exact plan approved: adopted, the removals done, once.
    obj.metadata.annotations = Some(
        [(
            flaredock::spec::APPROVE_ADOPTION_ANNOTATION.to_string(),
            offer.hash.clone(),
        )]
        .into(),
    );
    let from = em.shared.requests().len();
    let adopted = reconcile(&r, &obj, Some(&stale.status)).await;
    assert!(adopted.ready(), "{:#?}", adopted.status);
    assert_eq!(sent(&em, from, "DELETE", "/workers/routes/"), 1);
    assert_eq!(sent(&em, from, "DELETE", "/workers/domains/"), 1);
    let routes: Vec<String> = client
        .list_routes(&zone)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert!(!routes.contains(&old.id), "{routes:?}");
    assert!(
        routes.contains(&keep.id) && routes.contains(&theirs.id),
        "{routes:?}"
    );
    assert!(
        client
            .list_domains()
            .await
            .unwrap()
            .iter()
            .all(|d| d.id != domain.id)
    );
    let crons: Vec<String> = client
        .schedules("legacy")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.cron)
        .collect();
    assert_eq!(crons, ["*/5 * * * *"]);

    // The approval stays on the object; nothing is removed again.
    let from = em.shared.requests().len();
    let again = reconcile(&r, &obj, Some(&adopted.status)).await;
    assert!(again.ready(), "{:#?}", again.status);
    assert_eq!(sent(&em, from, "DELETE", ""), 0);
    assert!(again.plan.actions.is_empty(), "{:?}", again.plan);
    em.stop().await;
}

// ---- the command line: what an earlier run made is found by the record ------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_deletes_a_route_or_domain_removed_between_two_runs_and_no_other() {
    let (em, client, _dir, path) = shop_file("").await;
    let write = |reach: &str| std::fs::write(&path, shop_doc(reach)).unwrap();
    let apply = |what: &str| {
        let (code, out, stderr) =
            common::flaredock_cli(&em, ["apply", "--timeout", "10s", "-f", &path]);
        assert_eq!(code, Some(0), "{what}: {out}{stderr}");
        out
    };
    let two = "  routes:\n    - {pattern: 'shop.example.com/*', zoneName: example.com}\n    - {pattern: 'shop.example.com/api/*', zoneName: example.com}\n  domains:\n    - {hostname: api.example.com}\n";
    write(two);
    apply("two routes");
    let zone = common::scripts::zone_id(&client).await;
    // Another script's route in the same zone, and one made by hand for this script.
    common::scripts::upload_by_hand(&client, "billing", "legacy").await;
    let theirs = client
        .create_route(&zone, "billing.example.com/*", "billing")
        .await
        .unwrap();
    let by_hand = client
        .create_route(&zone, "shop.example.com/by-hand/*", "shop")
        .await
        .unwrap();
    let patterns = |routes: Vec<WorkerRoute>| {
        let mut p: Vec<String> = routes.into_iter().map(|r| r.pattern).collect();
        p.sort();
        p
    };

    // Run again with one route and no domain: the plan says so, the apply does it.
    write("  routes:\n    - {pattern: 'shop.example.com/*', zoneName: example.com}\n");
    let (_, plan, _) = common::flaredock_cli(&em, ["plan", "-f", &path]);
    assert!(
        plan.contains("worker.shop.route shop.example.com/api/*: shop → absent"),
        "{plan}"
    );
    assert!(
        plan.contains("worker.shop.domain api.example.com: shop → absent"),
        "{plan}"
    );
    apply("one route");
    assert_eq!(
        patterns(client.list_routes(&zone).await.unwrap()),
        [
            "billing.example.com/*",
            "shop.example.com/*",
            "shop.example.com/by-hand/*"
        ]
    );
    assert!(
        client
            .list_domains()
            .await
            .unwrap()
            .iter()
            .all(|d| d.hostname != "api.example.com")
    );

    // No route left in the spec (the zone is no longer named): still found.
    write("");
    apply("no route");
    let left = client.list_routes(&zone).await.unwrap();
    assert_eq!(
        patterns(left.clone()),
        ["billing.example.com/*", "shop.example.com/by-hand/*"]
    );
    let ids: Vec<&str> = left.iter().map(|r| r.id.as_str()).collect();
    assert!(ids.contains(&theirs.id.as_str()) && ids.contains(&by_hand.id.as_str()));
    let billing = left.iter().find(|r| r.id == theirs.id).unwrap();
    assert_eq!(billing.script.as_deref(), Some("billing"));
    em.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_with_refresh_reads_the_reach_state_and_corrects_a_change_made_elsewhere() {
    let (em, client, _dir, path) = shop_file("  crons: ['*/5 * * * *']\n").await;
    let path = path.as_str();
    let (code, out, stderr) = common::flaredock_cli(&em, ["apply", "--timeout", "10s", "-f", path]);
    assert_eq!(code, Some(0), "{out}{stderr}");
    // Turned off and the cron removed by hand.
    client.set_script_subdomain("shop", false).await.unwrap();
    client.set_schedules("shop", &[]).await.unwrap();
    let (_, plan, stderr) = common::flaredock_cli(&em, ["plan", "--refresh", "-f", path]);
    assert!(
        plan.contains("worker.shop.workersDev: false → true"),
        "{plan}{stderr}"
    );
    assert!(
        plan.contains("worker.shop.crons: [] → [*/5 * * * *]"),
        "{plan}"
    );
    let (code, out, stderr) =
        common::flaredock_cli(&em, ["apply", "--refresh", "--timeout", "10s", "-f", path]);
    assert_eq!(code, Some(0), "{out}{stderr}");
    assert!(client.script_subdomain("shop").await.unwrap().enabled);
    assert_eq!(client.schedules("shop").await.unwrap().len(), 1);
    em.stop().await;
}

/// Lists of the pass's shared reach reads since request `from`: (zone lookups, route
/// lists, domain lists).
fn reach_lists(em: &flaredock::emulator::RunningEmulator, from: usize) -> (usize, usize, usize) {
    let gets: Vec<String> = em.shared.requests()[from..]
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path.clone())
        .collect();
    let count = |f: &dyn Fn(&str) -> bool| gets.iter().filter(|p| f(p)).count();
    (
        count(&|p| p.ends_with("/zones")),
        count(&|p| p.ends_with("/workers/routes")),
        count(&|p| p.ends_with("/workers/domains")),
    )
}

/// A Worker `name` with a route on example.com and a custom domain of its own.
fn reached_worker(name: &str) -> CloudflareWorker {
    let mut obj = worker(&format!(
        "  routes:\n    - {{pattern: '{name}.example.com/*', zoneName: example.com}}\n  domains:\n    - {{hostname: {name}-api.example.com}}\n"
    ));
    obj.metadata.name = Some(name.to_string());
    obj
}

#[tokio::test]
async fn one_pass_resolves_the_zone_and_lists_its_routes_and_the_domains_once_for_every_worker() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let r = common::reconciler_for(&client);
    let data = SourceData::default();
    let names = ["w0", "w1", "w2", "w3"];
    let objs: Vec<CloudflareWorker> = names.iter().map(|n| reached_worker(n)).collect();

    // The first pass creates every route and domain: each write updates the shared
    // lists, so no Worker lists again.
    let from = em.shared.requests().len();
    let mut statuses = Vec::new();
    for obj in &objs {
        let out = r.reconcile_worker(obj, vec![], &data, None).await;
        assert!(out.ready(), "{:#?}", out.status);
        assert_eq!(out.status.routes.len(), 1, "{:?}", out.status);
        assert_eq!(out.status.domains.len(), 1, "{:?}", out.status);
        statuses.push(out.status);
    }
    assert_eq!(reach_lists(&em, from), (1, 1, 1));

    // A resync drops the lists; the re-apply of every Worker at once (as the command
    // line and the controller do) reads each once and writes nothing.
    r.view.invalidate().await;
    let from = em.shared.requests().len();
    let writes = common::cloudflare_writes(&em);
    let again = futures::future::join_all(
        objs.iter()
            .zip(&statuses)
            .map(|(obj, s)| r.reconcile_worker(obj, vec![], &data, Some(s))),
    )
    .await;
    for out in &again {
        assert!(out.ready(), "{:#?}", out.status);
        assert!(out.plan.actions.is_empty(), "{:?}", out.plan);
    }
    assert_eq!(reach_lists(&em, from), (0, 1, 1));
    assert_eq!(common::cloudflare_writes(&em), writes);

    // A route written in this pass is seen by the next observe without a list: a
    // Worker asking for w0's pattern is refused naming w0.
    let from = em.shared.requests().len();
    let w4 = reached_worker("w4");
    let made = r.reconcile_worker(&w4, vec![], &data, None).await;
    assert!(made.ready(), "{:#?}", made.status);
    let mut taker4 =
        worker("  routes:\n    - {pattern: 'w4.example.com/*', zoneName: example.com}\n");
    taker4.metadata.name = Some("taker4".into());
    let refused = r.reconcile_worker(&taker4, vec![], &data, None).await;
    let (stalled, reason, message) = condition(&refused.status, "Stalled");
    assert_eq!((stalled, reason), ("True", "RouteHeldElsewhere"));
    assert!(message.contains("w4"), "{message}");
    assert_eq!(reach_lists(&em, from), (0, 0, 0));

    // A route made elsewhere is found after the resync, which lists again.
    let zone = common::scripts::zone_id(&client).await;
    client
        .create_route(&zone, "legacy.example.com/*", "w1")
        .await
        .unwrap();
    r.view.invalidate().await;
    let from = em.shared.requests().len();
    let mut taker =
        worker("  routes:\n    - {pattern: 'legacy.example.com/*', zoneName: example.com}\n");
    taker.metadata.name = Some("taker5".into());
    let refused = r.reconcile_worker(&taker, vec![], &data, None).await;
    let (stalled, reason, message) = condition(&refused.status, "Stalled");
    assert_eq!((stalled, reason), ("True", "RouteHeldElsewhere"));
    assert!(message.contains("w1"), "{message}");
    assert_eq!(reach_lists(&em, from).1, 1);
    em.stop().await;
}

#[tokio::test]
async fn a_removal_planned_on_a_stale_shared_list_is_decided_again_on_a_fresh_read() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let r = common::reconciler_for(&client);
    let data = SourceData::default();
    let obj = reached_worker("w0");
    let made = r.reconcile_worker(&obj, vec![], &data, None).await;
    assert!(made.ready(), "{:#?}", made.status);
    let hostname = "w0-api.example.com";
    let id = made.status.domains[0].id.clone();

    // Elsewhere, between passes: the hostname now serves another script (same id). The
    // pass's shared list still says w0.
    common::scripts::upload_by_hand(&client, "billing", "billing").await;
    let moved = client
        .attach_domain(hostname, "billing", None)
        .await
        .unwrap();
    assert_eq!(
        moved.id, id,
        "the emulator keeps a re-attached hostname's id"
    );

    // The spec drops the domain: planned as a removal on the shared list, but the
    // fresh read before the DELETE shows another script's domain, so it stays.
    let mut without = obj.clone();
    without.spec.domains.clear();
    let from = em.shared.requests().len();
    let out = r
        .reconcile_worker(&without, vec![], &data, Some(&made.status))
        .await;
    assert!(
        out.plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Reach(ReachAction::DetachDomain { .. }))),
        "the stale list plans the removal: {:?}",
        out.plan
    );
    assert_eq!(
        sent(&em, from, "DELETE", "/workers/domains/"),
        0,
        "no DELETE of a domain that serves another script"
    );
    // One fresh read decides it (the plan's list is not read again).
    assert_eq!(sent(&em, from, "GET", "/workers/domains"), 1);
    let live = client.list_domains().await.unwrap();
    let d = live
        .iter()
        .find(|d| d.id == id)
        .expect("the domain is still there");
    assert_eq!(d.service, "billing");
    em.stop().await;
}

// ---- the record in full: the command line needs no zone lookup, routes or domains list

/// The record a plan writes for a Worker reached as [`REACH`] says (route `r1`, domain
/// `d1`), as a later read of the script parses it.
fn full_record() -> ReachRecord {
    let d = desired(&worker(REACH));
    let mut have = reached(
        vec![route("r1", "shop.example.com/*", "shop")],
        vec![domain("d1", "api.example.com", "shop")],
    );
    have.record = ReachRecord::parse("flaredock.dev/reach=0000000000000000");
    let p = plan_worker(&d, &observed(&d, have));
    let tags = recorded_tags(&p).expect("a record");
    let tag = tags
        .iter()
        .find(|t| t.starts_with("flaredock.dev/reach="))
        .expect("the record tag");
    assert!(tag.len() <= 1024 && !tag.contains([',', '&']), "{tag}");
    ReachRecord::parse(tag).expect("parses")
}

#[test]
fn the_record_stands_for_the_lists_only_while_it_names_just_what_the_spec_asks() {
    use flaredock::reconcile::worker::reach::DesiredReach;
    let record = full_record();
    let want = |extra: &str| DesiredReach::from_spec(&worker(extra));

    // As recorded: the zone id, the route and the domain, with their ids.
    let listed = record.stands_for("shop", &want(REACH)).expect("stands");
    assert_eq!(
        listed.zones,
        [("example.com".to_string(), Some(ZONE.to_string()))].into()
    );
    assert_eq!(
        listed.routes,
        [(
            ZONE.to_string(),
            vec![route("r1", "shop.example.com/*", "shop")]
        )]
        .into()
    );
    assert_eq!(listed.domains.len(), 1);
    assert_eq!(
        (
            listed.domains[0].id.as_str(),
            listed.domains[0].hostname.as_str()
        ),
        ("d1", "api.example.com")
    );
    // A plan on what the record stands for writes nothing.
    let d = desired(&worker(REACH));
    let mut have = reached(listed.routes.get(ZONE).cloned().unwrap(), listed.domains);
    have.zones = listed.zones;
    have.record = Some(record.clone());
    let mut o = observed(&d, have);
    o.script.as_mut().unwrap().tags = Some(with_reach(&d, &record));
    let p = plan_worker(&d, &o);
    assert!(p.is_noop(), "{p:?}");

    // Anything else the spec asks is read: each row a spec the record does not name.
    let crons = "  crons: ['*/5 * * * *']\n";
    let rows = [
        (
            "another pattern",
            format!(
                "  routes:\n    - {{pattern: 'shop.example.com/v2/*', zoneName: example.com}}\n  domains:\n    - {{hostname: api.example.com}}\n{crons}"
            ),
        ),
        (
            "another zone",
            format!(
                "  routes:\n    - {{pattern: 'shop.example.com/*', zoneName: shop.example.com}}\n  domains:\n    - {{hostname: api.example.com}}\n{crons}"
            ),
        ),
        (
            "another zone id",
            format!(
                "  routes:\n    - {{pattern: 'shop.example.com/*', zoneId: fedcba9876543210fedcba9876543210}}\n  domains:\n    - {{hostname: api.example.com}}\n{crons}"
            ),
        ),
        (
            "the route removed (to be deleted)",
            format!("  domains:\n    - {{hostname: api.example.com}}\n{crons}"),
        ),
        (
            "the domain removed (to be detached)",
            format!(
                "  routes:\n    - {{pattern: 'shop.example.com/*', zoneName: example.com}}\n{crons}"
            ),
        ),
        (
            "another hostname",
            format!(
                "  routes:\n    - {{pattern: 'shop.example.com/*', zoneName: example.com}}\n  domains:\n    - {{hostname: www.example.com}}\n{crons}"
            ),
        ),
        (
            "one more route",
            format!(
                "  routes:\n    - {{pattern: 'shop.example.com/*', zoneName: example.com}}\n    - {{pattern: 'shop.example.com/v2/*', zoneName: example.com}}\n  domains:\n    - {{hostname: api.example.com}}\n{crons}"
            ),
        ),
    ];
    for (what, spec) in rows {
        assert_eq!(record.stands_for("shop", &want(&spec)), None, "{what}");
    }
    // A record without the full section (older, or too long for the tag) stands for
    // no list.
    let mut short = record.clone();
    short.reached = None;
    assert_eq!(short.stands_for("shop", &want(REACH)), None);
}

/// `d`'s tags with `record` as the script carries it.
fn with_reach(d: &DesiredWorker, record: &ReachRecord) -> Vec<String> {
    flaredock::reconcile::worker::reach::with_record(&d.tags(&[]).unwrap(), &record.tag())
}

/// Requests other than `GET` since `from`.
fn writes_since(em: &flaredock::emulator::RunningEmulator, from: usize) -> Vec<String> {
    em.shared.requests()[from..]
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test]
async fn a_re_apply_from_a_new_process_reads_no_zone_route_or_domain_list_and_refresh_and_the_controller_find_what_changed()
 {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let obj = worker(REACH);
    let data = SourceData::default();
    let cli = || common::reconciler_for(&client).with_reach_reads(ReachReads::WhenRecorded);
    let made = cli().reconcile_worker(&obj, vec![], &data, None).await;
    assert!(made.ready(), "{:#?}", made.status);
    let zone = common::scripts::zone_id(&client).await;

    // Run again (as `flaredock apply`, no status): the record stands for the zone
    // lookup, the route list and the domain list; nothing is read of the Worker's
    // reachability, nothing written, and the status names the real ids.
    let from = em.shared.requests().len();
    let again = cli().reconcile_worker(&obj, vec![], &data, None).await;
    assert!(again.ready(), "{:#?}", again.status);
    assert_eq!(reach_lists(&em, from), (0, 0, 0));
    assert_eq!(reach_reads(&em, from, "shop"), 0);
    assert_eq!(writes_since(&em, from), Vec::<String>::new());
    let live = client.list_routes(&zone).await.unwrap();
    assert_eq!(again.status.routes, made.status.routes);
    assert_eq!(again.status.routes[0].id, live[0].id);
    assert_eq!(again.status.domains, made.status.domains);

    // Behind flaredock's back: the route is deleted. `--refresh` reads the lists,
    // finds it gone and makes it again.
    client
        .delete_route(&zone, &made.status.routes[0].id)
        .await
        .unwrap();
    let refresh = || common::reconciler_for(&client).with_reach_reads(ReachReads::OncePerResync);
    let from = em.shared.requests().len();
    let refreshed = refresh().reconcile_worker(&obj, vec![], &data, None).await;
    assert!(refreshed.ready(), "{:#?}", refreshed.status);
    let (_, routes_listed, domains_listed) = reach_lists(&em, from);
    assert!(routes_listed >= 1 && domains_listed >= 1);
    assert_eq!(sent(&em, from, "POST", "/workers/routes"), 1);
    let now = client.list_routes(&zone).await.unwrap();
    assert_eq!(now.len(), 1);
    assert_ne!(now[0].id, made.status.routes[0].id);
    assert_eq!(refreshed.status.routes[0].id, now[0].id);
    // ... and the record names the new route: the next run reads nothing again.
    let from = em.shared.requests().len();
    let quiet = cli().reconcile_worker(&obj, vec![], &data, None).await;
    assert!(quiet.ready(), "{:#?}", quiet.status);
    assert_eq!(reach_lists(&em, from), (0, 0, 0));
    assert_eq!(quiet.status.routes, refreshed.status.routes);

    // Taken over behind flaredock's back: the hostname now serves another script.
    // The controller reads at its resync and stalls naming that script.
    common::scripts::upload_by_hand(&client, "billing", "billing").await;
    client
        .detach_domain(&made.status.domains[0].id)
        .await
        .unwrap();
    client
        .attach_domain("api.example.com", "billing", None)
        .await
        .unwrap();
    let controller = common::reconciler_for(&client);
    let first = controller
        .reconcile_worker(&obj, vec![], &data, Some(&quiet.status))
        .await;
    let (stalled, reason, message) = condition(&first.status, "Stalled");
    assert_eq!(
        (stalled, reason),
        ("True", "DomainHeldElsewhere"),
        "{message}"
    );
    assert!(message.contains("billing"), "{message}");
    // So does `--refresh`; the other script's domain is untouched.
    let from = em.shared.requests().len();
    let refused = refresh().reconcile_worker(&obj, vec![], &data, None).await;
    let (stalled, reason, _) = condition(&refused.status, "Stalled");
    assert_eq!((stalled, reason), ("True", "DomainHeldElsewhere"));
    assert!(
        writes_since(&em, from)
            .iter()
            .all(|w| !w.contains("/workers/domains")),
        "{:?}",
        writes_since(&em, from)
    );
    let live = client.list_domains().await.unwrap();
    let api = live
        .iter()
        .find(|d| d.hostname == "api.example.com")
        .unwrap();
    assert_eq!(api.service, "billing");
    em.stop().await;
}

#[tokio::test]
async fn the_controller_finds_a_route_taken_over_at_its_resync() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let obj = worker(REACH);
    let data = SourceData::default();
    let r = common::reconciler_for(&client);
    let made = r.reconcile_worker(&obj, vec![], &data, None).await;
    assert!(made.ready(), "{:#?}", made.status);
    let zone = common::scripts::zone_id(&client).await;
    // Elsewhere: the route is deleted and its pattern given to another script.
    common::scripts::upload_by_hand(&client, "billing", "billing").await;
    client
        .delete_route(&zone, &made.status.routes[0].id)
        .await
        .unwrap();
    let theirs = client
        .create_route(&zone, "shop.example.com/*", "billing")
        .await
        .unwrap();
    // The resync marks the view stale: the next reconcile lists, and stalls naming it.
    r.view.invalidate().await;
    let out = r
        .reconcile_worker(&obj, vec![], &data, Some(&made.status))
        .await;
    let (stalled, reason, message) = condition(&out.status, "Stalled");
    assert_eq!(
        (stalled, reason),
        ("True", "RouteHeldElsewhere"),
        "{message}"
    );
    assert!(message.contains("billing"), "{message}");
    let live = client.list_routes(&zone).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, theirs.id);
    assert_eq!(live[0].script.as_deref(), Some("billing"));
    em.stop().await;
}

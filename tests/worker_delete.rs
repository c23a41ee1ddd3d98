//! Deleting a CloudflareWorker whose script is gone or no longer its (issue 21): the
//! routes and custom domains its status records are deleted on a fresh read, each only
//! while it serves the script (or, for a route, no script: what Cloudflare leaves of a
//! route whose script was deleted), never one that serves another script. Against the
//! emulator, read back through the official endpoints.

mod common;

use flaredock::cloudflare::CloudflareClient;
use flaredock::cloudflare::routing::WorkerRoute;
use flaredock::reconcile::worker::inputs::SourceData;
use flaredock::reconcile::{DeleteOutcome, Reconciler};
use flaredock::spec::reach::RouteStatus;
use flaredock::spec::{CloudflareWorker, CloudflareWorkerStatus};

const REACH: &str = "  routes:\n    - {pattern: 'shop.example.com/*', zoneName: example.com}\n  domains:\n    - {hostname: api.example.com}\n";

fn worker(extra: &str) -> CloudflareWorker {
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareWorker\nmetadata: {{name: shop, namespace: apps}}\nspec:\n  compatibilityDate: '2026-06-01'\n  source:\n    inline:\n      mainModule: index.js\n      modules: {{index.js: 'export default {{ fetch() {{ return new Response(\"hi\") }} }}'}}\n{REACH}{extra}"
    );
    match flaredock::manifest::parse_any(&doc, "w.yaml", 1).expect("valid") {
        flaredock::manifest::Document::Worker(w) => *w,
        other => panic!("{other:?}"),
    }
}

/// Reconciles `obj` until Ready and returns its status (with what it made).
async fn made(r: &Reconciler, obj: &CloudflareWorker) -> CloudflareWorkerStatus {
    r.view.invalidate().await;
    let out = r
        .reconcile_worker(obj, vec![], &SourceData::default(), None)
        .await;
    assert!(out.ready(), "{:#?}", out.status);
    assert_eq!(out.status.routes.len(), 1, "{:?}", out.status.routes);
    assert_eq!(out.status.domains.len(), 1, "{:?}", out.status.domains);
    out.status
}

/// What [`made_beside_billing`] sets up: the emulator, its client, the reconciler, the
/// Worker, its Ready status, the zone id, and `billing`'s route on that zone.
type Made = (
    common::Emulator,
    CloudflareClient,
    Reconciler,
    CloudflareWorker,
    CloudflareWorkerStatus,
    String,
    WorkerRoute,
);

/// The `shop` Worker (with `extra`) made Ready, then another script `billing` uploaded
/// by hand with a route `billing.example.com/*` on the same zone.
async fn made_beside_billing(extra: &str) -> Made {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let r = common::reconciler_for(&client);
    let obj = worker(extra);
    let status = made(&r, &obj).await;
    let zone = common::scripts::zone_id(&client).await;
    common::scripts::upload_by_hand(&client, "billing", "by hand").await;
    let other = client
        .create_route(&zone, "billing.example.com/*", "billing")
        .await
        .expect("route");
    (em, client, r, obj, status, zone, other)
}

async fn route_ids(client: &CloudflareClient, zone: &str) -> Vec<String> {
    client
        .list_routes(zone)
        .await
        .expect("routes")
        .into_iter()
        .map(|x| x.id)
        .collect()
}

async fn domain_ids(client: &CloudflareClient) -> Vec<String> {
    client
        .list_domains()
        .await
        .expect("domains")
        .into_iter()
        .map(|d| d.id)
        .collect()
}

#[tokio::test]
async fn a_script_deleted_by_hand_leaves_no_recorded_route_and_no_other_is_touched() {
    let (em, client, r, mut obj, status, zone, other) = made_beside_billing("").await;
    // Another script's route on the same zone (`other`), and a stale record naming it.
    let other_domain = client
        .attach_domain("pay.example.com", "billing", None)
        .await
        .expect("domain");

    // The script goes by hand, through the official endpoint.
    assert!(client.delete_script("shop", false).await.expect("deleted"));
    let ours = status.routes[0].clone();
    let left = client.list_routes(&zone).await.expect("routes");
    assert!(
        left.iter().any(|x| x.id == ours.id),
        "the route outlives its script: {left:?}"
    );

    let mut recorded = status.clone();
    recorded.routes.push(RouteStatus {
        pattern: other.pattern.clone(),
        zone_id: zone.clone(),
        id: other.id.clone(),
    });
    obj.status = Some(recorded);
    let out = r.delete_worker(&obj).await.expect("delete");
    assert!(
        matches!(out, DeleteOutcome::Deleted(ref v) if v.is_empty()),
        "{out:?}"
    );

    let ids = route_ids(&client, &zone).await;
    assert!(!ids.contains(&ours.id), "{ids:?}");
    assert_eq!(ids, vec![other.id.clone()]);
    let still = client.list_routes(&zone).await.expect("routes");
    assert_eq!(still[0].script.as_deref(), Some("billing"));
    let domains = domain_ids(&client).await;
    assert!(!domains.contains(&status.domains[0].id), "{domains:?}");
    assert_eq!(domains, [other_domain.id]);
    em.stop().await;
}

#[tokio::test]
async fn a_script_taken_over_by_hand_is_kept_and_its_recorded_route_and_domain_go() {
    let (em, client, r, mut obj, status, zone, other) =
        made_beside_billing("  deletionPolicy: Delete\n").await;
    // Someone deploys over the script by hand: it is no longer flaredock's.
    common::scripts::upload_by_hand(&client, "shop", "by hand").await;
    let before = domain_ids(&client).await;
    assert!(before.contains(&status.domains[0].id), "{before:?}");

    obj.status = Some(status.clone());
    let out = r.delete_worker(&obj).await.expect("delete");
    assert!(
        matches!(out, DeleteOutcome::Deleted(ref v) if v.is_empty()),
        "{out:?}"
    );

    let scripts: Vec<String> = client
        .list_scripts()
        .await
        .expect("scripts")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert!(scripts.iter().any(|s| s == "shop"), "{scripts:?}");
    assert_eq!(route_ids(&client, &zone).await, [other.id]);
    assert!(domain_ids(&client).await.is_empty());
    em.stop().await;
}

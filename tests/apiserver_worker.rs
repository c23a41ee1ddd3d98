//! The CloudflareWorker controller where it will run: a real kube-apiserver and etcd,
//! the install of `deploy/`, and the real `flaredock run` process as the
//! ServiceAccount `deploy/` creates (never the admin), against an in-process emulator
//! (set-up shared with tests/apiserver.rs through tests/common/cluster.rs). What the
//! tenant Role grants on ConfigMaps, the Worker finalizer's cleanup of the routes and
//! domains flaredock made, and the deadlines of a reconcile.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    Controller, Front, Rule, condition, controller_kubeconfig, controller_requests,
    create_namespace, credentials_secret, installed, kubectl_ok, onboard, wait_for,
};
use flaredock::reconcile::reason::Reason;
use flaredock::spec::{CloudflareContainer, CloudflareWorker};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// A CloudflareWorker whose code is the ConfigMap `shop-code` (module `index.js`);
/// with the credentials Secret `cloudflare` when `secret`, else the operator's default.
fn config_map_worker(name: &str, secret: bool) -> CloudflareWorker {
    let mut doc = json!({
        "apiVersion": "flaredock.dev/v1alpha1", "kind": "CloudflareWorker",
        "metadata": {"name": name},
        "spec": {
            "compatibilityDate": "2026-06-01",
            "source": {"configMapRef": {"name": "shop-code", "mainModule": "index.js"}},
        },
    });
    if secret {
        doc["spec"]["credentialsSecretRef"] = json!({"name": "cloudflare"});
    }
    serde_json::from_value(doc).unwrap()
}

fn code(answer: &str) -> String {
    format!("export default {{ async fetch() {{ return new Response('{answer}'); }} }};\n")
}

async fn create_code(admin: &Client, ns: &str, answer: &str) {
    let maps: Api<ConfigMap> = Api::namespaced(admin.clone(), ns);
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "shop-code"},
            "data": {"index.js": code(answer)},
        }))
        .unwrap(),
    )
    .await
    .unwrap_or_else(|e| panic!("create ConfigMap {ns}/shop-code: {e}"));
}

/// The uploads of script `name` the emulator took (`PUT …/workers/scripts/{name}`).
fn uploads_of(em: &common::Emulator, name: &str) -> usize {
    let tail = format!("/workers/scripts/{name}");
    em.shared
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with(&tail))
        .count()
}

fn worker_ready(w: &CloudflareWorker) -> bool {
    w.status
        .as_ref()
        .is_some_and(|s| flaredock::reconcile::status::is_true(&s.conditions, "Ready"))
}

fn worker_condition<'a>(
    w: &'a CloudflareWorker,
    kind: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    w.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
}

// ---------------------------------------------------------------------------------
// A Worker's code from a ConfigMap, read by name under the tenant Role.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reads_its_config_map_by_name_picks_up_an_edit_and_one_not_onboarded_is_forbidden()
{
    let (env, _) = installed();
    let admin = env.admin_client().await;
    let em = common::start_emulator(|c| c.capture_bodies = true).await;
    let onboarded = create_namespace(&admin, "code").await;
    onboard(env, &onboarded);
    credentials_secret(&admin, &onboarded, &em).await;
    create_code(&admin, &onboarded, "v1").await;
    // Not onboarded (no RoleBinding flaredock-tenant), but allowed the operator's
    // default credentials: the ConfigMap is the first thing the Role would grant.
    let stranger = create_namespace(&admin, "code-stranger").await;
    kubectl_ok(
        env,
        &[
            "label",
            "namespace",
            &stranger,
            "flaredock.dev/default-credentials=allow",
        ],
    );
    create_code(&admin, &stranger, "v1").await;

    let kubeconfig = controller_kubeconfig(env, &onboarded).await;
    let audit_from = env.audit_log().len();
    let mut controller = Controller::start(&kubeconfig, &onboarded, &em, &[]);
    let mut refused = Controller::start(
        &kubeconfig,
        &stranger,
        &em,
        &[
            ("CLOUDFLARE_API_TOKEN", em.api_token()),
            ("CLOUDFLARE_ACCOUNT_ID", em.account_id()),
        ],
    );
    let workers: Api<CloudflareWorker> = Api::namespaced(admin.clone(), &onboarded);
    workers
        .create(&PostParams::default(), &config_map_worker("shop", true))
        .await
        .unwrap();
    let strangers: Api<CloudflareWorker> = Api::namespaced(admin.clone(), &stranger);
    strangers
        .create(&PostParams::default(), &config_map_worker("refused", false))
        .await
        .unwrap();

    let ready = wait_for(&workers, "shop", &mut controller, "Ready", worker_ready).await;
    let first_hash = ready.status.as_ref().unwrap().upload_hash.clone();
    assert!(first_hash.is_some(), "{:?}", ready.status);
    let uploads = uploads_of(&em, "shop");
    assert_eq!(uploads, 1, "{:?}", common::cloudflare_writes(&em));

    // An edit of the ConfigMap (nothing watches it) is uploaded at the next read,
    // within CONFIG_MAP_POLL (15 s, jittered by 10 %) and the upload's own time.
    let maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &onboarded);
    maps.patch(
        "shop-code",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"index.js": code("v2")}})),
    )
    .await
    .unwrap();
    let edited = Instant::now();
    while uploads_of(&em, "shop") == uploads {
        controller.assert_running();
        assert!(
            edited.elapsed() < Duration::from_secs(20),
            "the edit of ConfigMap shop-code was not uploaded within 20 s\ncontroller log:\n{}",
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let updated = wait_for(&workers, "shop", &mut controller, "Ready again", |w| {
        worker_ready(w) && w.status.as_ref().unwrap().upload_hash != first_hash
    })
    .await;
    assert_eq!(
        updated.status.as_ref().unwrap().observed_generation,
        updated.metadata.generation
    );
    // The upload carried the edited module.
    let bodies = common::request_bodies(&em, "PUT", "/workers/scripts/shop");
    assert!(
        bodies.last().is_some_and(|b| b.contains("Response('v2')")),
        "the last upload is not the edited code: {:?}",
        bodies.last().map(|b| b.len())
    );

    // The namespace that is not onboarded: the API server's 403 on the ConfigMap.
    let stalled = wait_for(&strangers, "refused", &mut refused, "Stalled", |w| {
        worker_condition(w, "Stalled").is_some_and(|c| c.status == "True")
    })
    .await;
    let c = worker_condition(&stalled, "Stalled").unwrap();
    assert_eq!(
        Reason::parse(&c.reason),
        Some(Reason::ConfigMapForbidden),
        "{c:?}"
    );
    assert!(
        c.message.contains(&format!("{stranger}/shop-code"))
            && c.message.contains("flaredock-tenant"),
        "the message names the ConfigMap and the RoleBinding: {}",
        c.message
    );
    assert_eq!(
        uploads_of(&em, "refused"),
        0,
        "nothing of the refused Worker was uploaded: {:?}",
        common::cloudflare_writes(&em)
    );
    // A real 403: the same identity is refused the ConfigMap by the API server.
    let sa = common::testenv::client_from(&kubeconfig).await;
    match Api::<ConfigMap>::namespaced(sa, &stranger)
        .get("shop-code")
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
        other => panic!("the ServiceAccount read a ConfigMap it may not: {other:?}"),
    }
    // ConfigMaps are read by name only, in both namespaces: never listed or watched.
    for ns in [onboarded.as_str(), stranger.as_str()] {
        let verbs = controller_requests(env, audit_from, ns, "configmaps");
        assert!(!verbs.is_empty(), "{ns}: the controller read its ConfigMap");
        assert!(verbs.iter().all(|v| v == "get"), "{ns}: {verbs:?}");
    }
    controller.stop();
    refused.stop();
    em.stop().await;
}

// ---------------------------------------------------------------------------------
// The Worker finalizer: the routes and domains flaredock made go, no other.

/// Uploads script `name` through the official endpoint, as wrangler or a person would.
async fn foreign_script(client: &flaredock::cloudflare::CloudflareClient, name: &str) {
    use flaredock::cloudflare::types::{ScriptModule, ScriptUpload, UploadMetadata};
    let upload = ScriptUpload {
        metadata: UploadMetadata {
            main_module: "index.js".into(),
            compatibility_date: "2026-06-01".into(),
            ..Default::default()
        },
        modules: vec![ScriptModule {
            name: "index.js".into(),
            content_type: "application/javascript+module".into(),
            content: code(name).into_bytes(),
        }],
    };
    client.upload_script(name, &upload).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_finalizer_removes_only_its_routes_and_domains_and_lets_go_after_cloudflare() {
    let (env, _) = installed();
    let admin = env.admin_client().await;
    let em = common::start_emulator(|_| {}).await;
    let zone_name = flaredock::emulator::DEFAULT_ZONE;
    let client = common::client_for(&em);
    let zone = client.zone_by_name(zone_name).await.unwrap().unwrap().id;
    // Another script's route and custom domain in the same zone, made by hand first.
    foreign_script(&client, "billing").await;
    let theirs = client
        .create_route(&zone, &format!("billing.{zone_name}/*"), "billing")
        .await
        .unwrap();
    let their_domain = client
        .attach_domain(&format!("pay.{zone_name}"), "billing", None)
        .await
        .unwrap();

    let ns = create_namespace(&admin, "reach").await;
    onboard(env, &ns);
    credentials_secret(&admin, &ns, &em).await;
    // Cloudflare answers the DELETE of a custom domain 4 s late: the object must still
    // be there meanwhile.
    const LATE: Duration = Duration::from_secs(4);
    let rule: Rule = std::sync::Arc::new(|method: &http::Method, path: &str, _: &str| {
        (method == http::Method::DELETE && path.contains("/workers/domains/")).then_some(LATE)
    });
    let front = Front::of_emulator_with(&em, rule).await;
    let kubeconfig = controller_kubeconfig(env, &ns).await;
    // A single replica: no leader's write fence shortens the timeout of the DELETE.
    let mut controller = Controller::start_at(
        &kubeconfig,
        &ns,
        &front.api_base(),
        &[("FLAREDOCK_LEADER_ELECTION", "false")],
    );
    let workers: Api<CloudflareWorker> = Api::namespaced(admin.clone(), &ns);
    let worker: CloudflareWorker = serde_json::from_value(json!({
        "apiVersion": "flaredock.dev/v1alpha1", "kind": "CloudflareWorker",
        "metadata": {"name": "shop"},
        "spec": {
            "compatibilityDate": "2026-06-01",
            "credentialsSecretRef": {"name": "cloudflare"},
            "deletionPolicy": "Delete",
            "source": {"inline": {"mainModule": "index.js", "modules": {"index.js": code("shop")}}},
            "routes": [{"pattern": format!("shop.{zone_name}/*"), "zoneName": zone_name}],
            "domains": [{"hostname": format!("api.{zone_name}")}],
        },
    }))
    .unwrap();
    workers
        .create(&PostParams::default(), &worker)
        .await
        .unwrap();
    let ready = wait_for(&workers, "shop", &mut controller, "Ready", worker_ready).await;
    let status = ready.status.clone().unwrap();
    assert_eq!(status.routes.len(), 1, "{status:?}");
    assert_eq!(status.domains.len(), 1, "{status:?}");
    let ours = status.routes[0].id.clone();
    let our_domain = status.domains[0].id.clone();
    let routes = client.list_routes(&zone).await.unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r.id == ours && r.script.as_deref() == Some("shop")),
        "{routes:?}"
    );
    assert!(routes.iter().any(|r| r.id == theirs.id), "{routes:?}");

    workers
        .delete("shop", &Default::default())
        .await
        .expect("delete");
    // While Cloudflare has not answered the DELETE of the domain, the finalizer holds.
    let asked = Instant::now();
    let detach = format!("/workers/domains/{our_domain}");
    while !front
        .seen()
        .iter()
        .any(|r| r.starts_with("DELETE ") && r.ends_with(&detach))
    {
        controller.assert_running();
        assert!(
            asked.elapsed() < Duration::from_secs(60),
            "no DELETE of custom domain {our_domain}: {:?}\ncontroller log:\n{}",
            front.seen(),
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pending = workers.get_opt("shop").await.unwrap();
    let pending = pending.expect("the object stays while Cloudflare holds its domain");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(
        pending
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == flaredock::controller::FINALIZER),
        "{:?}",
        pending.metadata.finalizers
    );
    // Then it goes, after Cloudflare let go of everything it made.
    let started = Instant::now();
    while workers.get_opt("shop").await.unwrap().is_some() {
        controller.assert_running();
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "CloudflareWorker shop not gone within 90 s\ncontroller log:\n{}",
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let routes = client.list_routes(&zone).await.unwrap();
    assert!(routes.iter().all(|r| r.id != ours), "{routes:?}");
    let kept = routes
        .iter()
        .find(|r| r.id == theirs.id)
        .expect("the other script's route is kept");
    assert_eq!(kept.script.as_deref(), Some("billing"));
    assert_eq!(kept.pattern, theirs.pattern);
    let domains = client.list_domains().await.unwrap();
    assert!(domains.iter().all(|d| d.id != our_domain), "{domains:?}");
    assert!(
        domains
            .iter()
            .any(|d| d.id == their_domain.id && d.service == "billing"),
        "the other script's domain is kept: {domains:?}"
    );
    let scripts: Vec<String> = client
        .list_scripts()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert!(!scripts.iter().any(|s| s == "shop"), "{scripts:?}");
    assert!(scripts.iter().any(|s| s == "billing"), "{scripts:?}");
    // Nothing was ever sent to the other script's route or domain.
    let touched: Vec<String> = front
        .seen()
        .into_iter()
        .filter(|r| r.contains(&theirs.id) || r.contains(&their_domain.id))
        .collect();
    assert!(touched.is_empty(), "{touched:?}");
    controller.stop();
    drop(front);
    em.stop().await;
}

// ---------------------------------------------------------------------------------
// Deadlines: of one reconcile (--reconcile-timeout), and of a whole apply or cleanup.

/// A registry that accepts connections and never answers (a request to it ends only
/// with the registry client's own 30-minute timeout); counts the connections.
async fn black_hole() -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    (addr, accepted, task)
}

fn container_of(name: &str, image: &str) -> CloudflareContainer {
    serde_json::from_value(json!({
        "apiVersion": "flaredock.dev/v1alpha1", "kind": "CloudflareContainer",
        "metadata": {"name": name},
        "spec": {
            "className": flaredock::emulator::DEMO_CLASS,
            "image": {"reference": image},
            "worker": {"scriptName": flaredock::emulator::DEMO_SCRIPT},
            "credentialsSecretRef": {"name": "cloudflare"},
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_past_its_deadline_is_requeued_timed_out_while_another_object_becomes_ready() {
    let (env, _) = installed();
    let admin = env.admin_client().await;
    let em = common::start_emulator(|_| {}).await;
    let (hole, accepted, hole_task) = black_hole().await;
    let ns = create_namespace(&admin, "deadline").await;
    onboard(env, &ns);
    credentials_secret(&admin, &ns, &em).await;
    let kubeconfig = controller_kubeconfig(env, &ns).await;
    let mut controller = Controller::start(
        &kubeconfig,
        &ns,
        &em,
        &[("FLAREDOCK_RECONCILE_TIMEOUT", "5s")],
    );
    let api: Api<CloudflareContainer> = Api::namespaced(admin.clone(), &ns);
    api.create(
        &PostParams::default(),
        &container_of("slow", &format!("{hole}/shop:v1")),
    )
    .await
    .unwrap();
    api.create(&PostParams::default(), &container_of("fast", "hello:v1"))
        .await
        .unwrap();

    // The object whose registry never answers: Ready=False ReconcileTimedOut,
    // Reconciling (transient), not Stalled.
    let slow = wait_for(&api, "slow", &mut controller, "ReconcileTimedOut", |o| {
        condition(o.status.as_ref(), "Ready")
            .is_some_and(|c| c.status == "False" && Reason::ReconcileTimedOut.is(&c.reason))
    })
    .await;
    let ready = condition(slow.status.as_ref(), "Ready").unwrap();
    assert!(ready.message.contains("--reconcile-timeout"), "{ready:?}");
    let reconciling = condition(slow.status.as_ref(), "Reconciling").expect("Reconciling");
    assert_eq!(reconciling.status, "True", "{reconciling:?}");
    let stalled = condition(slow.status.as_ref(), "Stalled").expect("Stalled");
    assert_eq!(stalled.status, "False", "{stalled:?}");
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the reconcile reached the registry"
    );
    // The other object became Ready in the same controller meanwhile.
    let fast = wait_for(&api, "fast", &mut controller, "Ready", |o| {
        o.status
            .as_ref()
            .is_some_and(flaredock::reconcile::status::is_ready)
    })
    .await;
    let apps = common::client_for(&em).list_applications().await.unwrap();
    assert_eq!(
        apps.len(),
        1,
        "only the fast object's application: {apps:?}"
    );
    assert_eq!(
        fast.status.as_ref().unwrap().application_id.as_deref(),
        Some(apps[0].id.as_str())
    );
    // Requeued: a later reconcile goes to the registry again (the timed-out one's
    // connections were dropped with it), without any change of the object.
    let seen = accepted.load(std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    while accepted.load(std::sync::atomic::Ordering::SeqCst) == seen {
        controller.assert_running();
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the timed-out object was not reconciled again within 60 s\ncontroller log:\n{}",
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = api.get("slow").await.unwrap();
    assert_eq!(again.metadata.generation, slow.metadata.generation);
    let ready = condition(again.status.as_ref(), "Ready").unwrap();
    assert_eq!(ready.status, "False", "{ready:?}");
    controller.stop();
    hole_task.abort();
    em.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_kubernetes_read_is_dropped_at_the_deadline_plus_30_s_and_retried() {
    let (env, _) = installed();
    let admin = env.admin_client().await;
    let em = common::start_emulator(|_| {}).await;
    let ns = create_namespace(&admin, "cap").await;
    onboard(env, &ns);
    credentials_secret(&admin, &ns, &em).await;
    // The API server answers the GET of the credentials Secret 300 s late (the
    // client's own read timeout is 295 s); everything else passes through.
    let secret = format!("/api/v1/namespaces/{ns}/secrets/cloudflare");
    let held = secret.clone();
    let rule: Rule = std::sync::Arc::new(move |method: &http::Method, path: &str, _: &str| {
        (method == http::Method::GET && path == held).then_some(Duration::from_secs(300))
    });
    let front = Front::of_apiserver(env, rule).await;
    let kubeconfig = env
        .service_account_kubeconfig_via(
            common::cluster::SA_NAMESPACE,
            common::cluster::SA_NAME,
            &format!("sa-{ns}-front.kubeconfig"),
            Some(&front.url),
        )
        .await;
    // The core's deadline is 1 s; the whole apply may take 30 s more.
    let mut controller = Controller::start(
        &kubeconfig,
        &ns,
        &em,
        &[
            ("FLAREDOCK_RECONCILE_TIMEOUT", "1s"),
            ("FLAREDOCK_LEADER_ELECTION", "false"),
        ],
    );
    let api: Api<CloudflareContainer> = Api::namespaced(admin.clone(), &ns);
    api.create(&PostParams::default(), &container_of("held", "hello:v1"))
        .await
        .unwrap();
    let reads = || {
        front
            .seen()
            .iter()
            .filter(|r| **r == format!("GET {secret}"))
            .count()
    };
    let mut at = Vec::new();
    let started = Instant::now();
    while at.len() < 2 {
        controller.assert_running();
        if reads() > at.len() {
            at.push(Instant::now());
        }
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "{} read(s) of the Secret within 150 s: {:?}\ncontroller log:\n{}",
            at.len(),
            front.seen(),
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The first apply was dropped at 1 s + 30 s (not at the core's 1 s, not at the
    // client's 295 s) and retried after the backoff.
    let between = at[1] - at[0];
    assert!(
        between >= Duration::from_secs(30) && between < Duration::from_secs(90),
        "the Secret was read again {between:?} after the first read\ncontroller log:\n{}",
        controller.log()
    );
    controller
        .wait_log("the reconcile did not finish within 31s")
        .await;
    // It stopped before anything reached Cloudflare.
    assert!(
        common::cloudflare_writes(&em).is_empty(),
        "{:?}",
        common::cloudflare_writes(&em)
    );
    controller.stop();
    drop(front);
    em.stop().await;
}

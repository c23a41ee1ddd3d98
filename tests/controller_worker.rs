//! The CloudflareWorker controller against the fake Kubernetes API and the emulator:
//! the Worker is uploaded with the classes of the containers that name it, the
//! containers follow, a Secret change re-uploads once, and deleting a Worker waits for
//! the containers that still name it.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use flaredock::controller::{self, Context, FINALIZER, Settings};
use flaredock::spec::{CloudflareContainer, CloudflareWorker};
use flaredock::telemetry::metrics::Metrics;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::{Value, json};

use common::fake_kube::{FakeState, fake_kube};
use common::requeue_after;

const WORKER_PATH: &str = "/apis/flaredock.dev/v1alpha1/namespaces/apps/cloudflareworkers/shop";
const CONTAINER_PATH: &str =
    "/apis/flaredock.dev/v1alpha1/namespaces/apps/cloudflarecontainers/shop";
const CONTAINERS: &str = "/apis/flaredock.dev/v1alpha1/namespaces/apps/cloudflarecontainers";
const CREDENTIALS_PATH: &str = "/api/v1/namespaces/apps/secrets/cloudflare";
const SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/shop-secrets";
const SECRET_VALUE: &str = "first-secret-value";

fn worker_object() -> Value {
    let doc = "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareWorker\nmetadata:\n  name: shop\n  namespace: apps\n  uid: w-1\n  generation: 1\n  resourceVersion: '1'\n  finalizers: [flaredock.dev/cleanup]\nspec:\n  compatibilityDate: '2026-06-01'\n  source:\n    inline:\n      mainModule: index.js\n      modules: {index.js: 'export class Shop {}; export default {}'}\n  secrets:\n    - {name: API_KEY, secretKeyRef: {name: shop-secrets, key: api-key}}\n  credentialsSecretRef: {name: cloudflare}\n";
    serde_yaml_ng::from_str(doc).unwrap()
}

/// Sets the Worker's `spec.deletionPolicy`.
fn with_policy(s: &Setup, policy: &str) {
    s.fake.objects.lock().unwrap().get_mut(WORKER_PATH).unwrap()["spec"]["deletionPolicy"] =
        json!(policy);
}

/// Marks the object at `path` deleted (the API server sets the timestamp).
fn mark_deleted(s: &Setup, path: &str) {
    s.fake.objects.lock().unwrap().get_mut(path).unwrap()["metadata"]["deletionTimestamp"] =
        json!("2026-11-27T00:00:00Z");
}

/// The finalizers of the object at `path`; `None` once it is gone (its last finalizer
/// removed after its deletion, the API server lets it go).
fn finalizers(s: &Setup, path: &str) -> Option<Value> {
    s.fake
        .objects
        .lock()
        .unwrap()
        .get(path)
        .map(|o| o["metadata"]["finalizers"].clone())
}

/// Classes of the Durable Object namespaces Cloudflare lists for `script`.
async fn namespaces_of(s: &Setup, script: &str) -> Vec<String> {
    common::client_for(&s.em)
        .list_namespaces()
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.script.as_deref() == Some(script))
        .filter_map(|n| n.class)
        .collect()
}

fn container_object() -> Value {
    let doc = "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata:\n  name: shop\n  namespace: apps\n  uid: c-1\n  generation: 1\n  resourceVersion: '1'\n  finalizers: [flaredock.dev/cleanup]\nspec:\n  className: Shop\n  image: {reference: 'hello:v1'}\n  worker: {name: shop, bindingName: SHOP}\n  credentialsSecretRef: {name: cloudflare}\n";
    serde_yaml_ng::from_str(doc).unwrap()
}

struct Setup {
    em: common::Emulator,
    fake: Arc<FakeState>,
    ctx: Arc<Context>,
    containers: Writer<CloudflareContainer>,
    workers: Writer<CloudflareWorker>,
}

impl Setup {
    fn get<K: serde::de::DeserializeOwned>(&self, path: &str) -> Arc<K> {
        Arc::new(serde_json::from_value(self.fake.objects.lock().unwrap()[path].clone()).unwrap())
    }

    /// Feeds the fake API's current objects to the controller's stores (the watches).
    fn sync_stores(&mut self) {
        let objects = self.fake.objects.lock().unwrap().clone();
        self.containers.apply_watcher_event(&watcher::Event::Init);
        for (path, v) in &objects {
            if path.starts_with(CONTAINERS) {
                let c: CloudflareContainer = serde_json::from_value(v.clone()).unwrap();
                self.containers
                    .apply_watcher_event(&watcher::Event::InitApply(c));
            }
        }
        self.containers
            .apply_watcher_event(&watcher::Event::InitDone);
        self.workers.apply_watcher_event(&watcher::Event::Init);
        if let Some(v) = objects.get(WORKER_PATH) {
            let w: CloudflareWorker = serde_json::from_value(v.clone()).unwrap();
            self.workers
                .apply_watcher_event(&watcher::Event::InitApply(w));
        }
        self.workers.apply_watcher_event(&watcher::Event::InitDone);
    }

    async fn reconcile_worker(
        &mut self,
    ) -> Result<kube::runtime::controller::Action, controller::Error> {
        self.sync_stores();
        controller::reconcile_worker(self.get(WORKER_PATH), self.ctx.clone()).await
    }

    async fn reconcile_container(&mut self) {
        self.sync_stores();
        controller::reconcile(self.get(CONTAINER_PATH), self.ctx.clone())
            .await
            .unwrap();
    }

    fn uploads(&self) -> usize {
        self.em
            .shared
            .requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.path.contains("/workers/scripts/"))
            .count()
    }

    fn status(&self, path: &str) -> Value {
        self.fake.objects.lock().unwrap()[path]["status"].clone()
    }
}

/// The `Ready` condition of a status.
fn ready_condition(status: &Value) -> Value {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap_or_else(|| panic!("no Ready condition in {status}"))
}

fn ready(status: &Value) -> bool {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

async fn setup() -> Setup {
    let em = common::start_emulator(|_| {}).await;
    let (client, fake) = fake_kube();
    {
        let mut objects = fake.objects.lock().unwrap();
        objects.insert(WORKER_PATH.into(), worker_object());
        objects.insert(CONTAINER_PATH.into(), container_object());
        objects.insert(
            CREDENTIALS_PATH.into(),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "cloudflare", "namespace": "apps", "resourceVersion": "7"},
                   "stringData": {"apiToken": em.api_token(), "accountId": em.account_id()}}),
        );
        objects.insert(
            SECRET_PATH.into(),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "shop-secrets", "namespace": "apps", "resourceVersion": "3"},
                   "stringData": {"api-key": SECRET_VALUE}}),
        );
    }
    let settings = Settings {
        api_base_url: em.base_url(),
        progress_poll: Duration::from_millis(50),
        rate_limit: flaredock::cloudflare::RateLimit {
            requests: 1_000_000 + fastrand::u32(..1000),
            window: Duration::from_secs(1),
        },
        ..Default::default()
    };
    let ctx = Arc::new(Context::new(
        client,
        settings,
        Arc::new(Metrics::new()),
        Arc::new(AtomicBool::new(true)),
    ));
    let containers = Writer::<CloudflareContainer>::default();
    let workers = Writer::<CloudflareWorker>::default();
    ctx.set_stores(containers.as_reader(), workers.as_reader());
    Setup {
        em,
        fake,
        ctx,
        containers,
        workers,
    }
}

#[tokio::test]
async fn the_worker_is_uploaded_with_its_containers_class_then_the_container_follows() {
    let mut s = setup().await;
    // The container first: it waits for its Worker, writing nothing at Cloudflare.
    s.reconcile_container().await;
    let status = s.status(CONTAINER_PATH);
    assert!(!ready(&status));
    assert!(status.to_string().contains("WorkerNotReady"), "{status}");
    assert!(common::cloudflare_writes(&s.em).is_empty());

    s.reconcile_worker().await.unwrap();
    let status = s.status(WORKER_PATH);
    assert!(ready(&status), "{status}");
    assert_eq!(status["containers"], json!(["Shop"]));
    assert_eq!(status["migrationTag"], "v1");
    assert!(!status.to_string().contains(SECRET_VALUE));
    assert_eq!(s.uploads(), 1);
    let events: Vec<String> = s.fake.event_reasons();
    assert!(events.contains(&"Uploaded".to_string()), "{events:?}");
    assert!(
        !format!("{:?}", s.fake.requests()).contains(SECRET_VALUE),
        "no Secret value in any Kubernetes write"
    );

    s.reconcile_container().await;
    assert!(
        ready(&s.status(CONTAINER_PATH)),
        "{}",
        s.status(CONTAINER_PATH)
    );
    let apps = common::client_for(&s.em).list_applications().await.unwrap();
    assert_eq!(apps.len(), 1);

    // A resync that finds nothing changed uploads nothing and writes no status.
    s.em.shared.clear_requests();
    s.fake.requests.lock().unwrap().clear();
    s.ctx.invalidate_all().await;
    s.reconcile_worker().await.unwrap();
    assert_eq!(s.uploads(), 0);
    assert!(s.fake.writes("/status").is_empty());
}

#[tokio::test]
async fn a_secret_change_uploads_the_worker_once() {
    let mut s = setup().await;
    s.reconcile_worker().await.unwrap();
    let first_hash = s.status(WORKER_PATH)["uploadHash"].clone();
    s.em.shared.clear_requests();
    {
        let mut objects = s.fake.objects.lock().unwrap();
        objects.get_mut(SECRET_PATH).unwrap()["stringData"]["api-key"] = json!("rotated-value");
    }
    s.reconcile_worker().await.unwrap();
    assert_eq!(s.uploads(), 1, "{:?}", s.em.shared.requests());
    s.reconcile_worker().await.unwrap();
    s.reconcile_worker().await.unwrap();
    assert_eq!(s.uploads(), 1, "once, not on every reconcile");
    assert_ne!(s.status(WORKER_PATH)["uploadHash"], first_hash);
    let state = s.em.shared.account();
    let bindings = &state.scripts["shop"].bindings;
    let secret = bindings.iter().find(|b| b["name"] == "API_KEY").unwrap();
    assert_eq!(
        secret["text"], "rotated-value",
        "the new value reached Cloudflare"
    );
}

#[tokio::test]
async fn deleting_a_worker_waits_for_the_containers_that_name_it() {
    let mut s = setup().await;
    with_policy(&s, "DeleteWithData");
    s.reconcile_worker().await.unwrap();
    s.reconcile_container().await;
    assert!(ready(&s.status(CONTAINER_PATH)));

    // The Worker is deleted while the container still names it.
    s.fake.objects.lock().unwrap().get_mut(WORKER_PATH).unwrap()["metadata"]["deletionTimestamp"] =
        json!("2026-11-27T00:00:00Z");
    s.em.shared.clear_requests();
    let waited = s.reconcile_worker().await;
    assert!(waited.is_err(), "cleanup waits");
    assert!(format!("{:?}", waited.unwrap_err()).contains("shop"));
    assert_eq!(
        s.fake.objects.lock().unwrap()[WORKER_PATH]["metadata"]["finalizers"],
        json!([FINALIZER]),
        "the finalizer stays"
    );
    assert!(
        s.em.shared.requests().iter().all(|r| r.method != "DELETE"),
        "nothing deleted at Cloudflare: {:?}",
        s.em.shared.requests()
    );

    // The container goes (its application with it); then the Worker's script goes.
    s.fake
        .objects
        .lock()
        .unwrap()
        .get_mut(CONTAINER_PATH)
        .unwrap()["metadata"]["deletionTimestamp"] = json!("2026-11-27T00:00:00Z");
    s.reconcile_container().await;
    assert!(
        common::client_for(&s.em)
            .list_applications()
            .await
            .unwrap()
            .is_empty()
    );
    s.fake.objects.lock().unwrap().remove(CONTAINER_PATH);
    s.reconcile_worker().await.unwrap();
    let scripts = common::client_for(&s.em).list_scripts().await.unwrap();
    assert!(scripts.iter().all(|x| x.id != "shop"), "{scripts:?}");
    assert_eq!(
        finalizers(&s, WORKER_PATH),
        None,
        "cleanup done: the finalizer is removed, the object went"
    );
    assert!(
        namespaces_of(&s, "shop").await.is_empty(),
        "DeleteWithData: the namespaces go with the script"
    );
    let notes = format!("{:?}", s.fake.requests());
    assert!(
        notes.contains("DeletedWithData") && notes.contains("all their data are destroyed"),
        "the Event says in words that the data is destroyed"
    );
}

#[tokio::test]
async fn the_default_worker_deletion_keeps_its_durable_object_namespace() {
    let mut s = setup().await;
    s.reconcile_worker().await.unwrap();
    s.reconcile_container().await;
    assert!(ready(&s.status(CONTAINER_PATH)));
    assert_eq!(namespaces_of(&s, "shop").await, ["Shop"]);
    mark_deleted(&s, CONTAINER_PATH);
    s.reconcile_container().await;
    s.fake.objects.lock().unwrap().remove(CONTAINER_PATH);
    mark_deleted(&s, WORKER_PATH);
    s.em.shared.clear_requests();
    s.reconcile_worker().await.unwrap();
    assert_eq!(
        finalizers(&s, WORKER_PATH),
        None,
        "cleanup done: the object went"
    );
    assert!(
        s.em.shared
            .requests()
            .iter()
            .all(|r| !(r.method == "DELETE" && r.path.contains("/workers/scripts/"))),
        "no delete of the script: {:?}",
        s.em.shared.requests()
    );
    let scripts = common::client_for(&s.em).list_scripts().await.unwrap();
    assert!(scripts.iter().any(|x| x.id == "shop"), "the script stays");
    assert_eq!(
        namespaces_of(&s, "shop").await,
        ["Shop"],
        "the Durable Object namespace (and its data) stays"
    );
    assert!(s.fake.event_reasons().contains(&"Orphaned".to_string()));
}

#[tokio::test]
async fn a_plain_delete_keeps_a_script_with_durable_objects_and_never_forces() {
    let mut s = setup().await;
    with_policy(&s, "Delete");
    s.reconcile_worker().await.unwrap();
    s.reconcile_container().await;
    mark_deleted(&s, CONTAINER_PATH);
    s.reconcile_container().await;
    s.fake.objects.lock().unwrap().remove(CONTAINER_PATH);
    mark_deleted(&s, WORKER_PATH);
    s.em.shared.clear_requests();
    s.reconcile_worker().await.unwrap();
    assert!(
        s.em.shared.requests().iter().all(|r| r.method != "DELETE"),
        "{:?}",
        s.em.shared.requests()
    );
    assert_eq!(namespaces_of(&s, "shop").await, ["Shop"], "data kept");
    assert!(
        s.fake
            .event_reasons()
            .contains(&"KeptDurableObjectData".to_string()),
        "{:?}",
        s.fake.event_reasons()
    );
}

#[tokio::test]
async fn worker_cleanup_waits_for_a_container_bound_by_script_name() {
    let mut s = setup().await;
    with_policy(&s, "DeleteWithData");
    // The container binds the Worker's script by `scriptName`, not by `name`.
    {
        let mut objects = s.fake.objects.lock().unwrap();
        let c = objects.get_mut(CONTAINER_PATH).unwrap();
        c["spec"]["worker"] = json!({"scriptName": "shop"});
    }
    s.reconcile_worker().await.unwrap();
    mark_deleted(&s, WORKER_PATH);
    s.em.shared.clear_requests();
    let waited = s.reconcile_worker().await;
    let error = format!("{:?}", waited.expect_err("cleanup waits"));
    assert!(error.contains("shop"), "{error}");
    assert_eq!(finalizers(&s, WORKER_PATH), Some(json!([FINALIZER])));
    assert!(
        s.em.shared.requests().iter().all(|r| r.method != "DELETE"),
        "nothing deleted at Cloudflare: {:?}",
        s.em.shared.requests()
    );
    assert!(
        s.fake
            .event_reasons()
            .contains(&"WaitingForContainers".to_string())
    );
    // Once it is gone, the script goes.
    s.fake.objects.lock().unwrap().remove(CONTAINER_PATH);
    s.reconcile_worker().await.unwrap();
    assert_eq!(
        finalizers(&s, WORKER_PATH),
        None,
        "cleanup done: the object went"
    );
    let scripts = common::client_for(&s.em).list_scripts().await.unwrap();
    assert!(scripts.iter().all(|x| x.id != "shop"), "{scripts:?}");
}

#[tokio::test]
async fn adopting_a_script_waits_for_its_approval_and_observe_uploads_nothing() {
    let mut s = setup().await;
    // A script deployed by another tool (no flaredock tags), class Shop included.
    s.em.shared
        .account()
        .seed_script("shop", vec!["Shop".into()], None, true, true);
    s.fake.objects.lock().unwrap().get_mut(WORKER_PATH).unwrap()["spec"]["adopt"] = json!(true);
    s.reconcile_worker().await.unwrap();
    assert_eq!(s.uploads(), 0, "nothing uploaded before approval");
    let status = s.status(WORKER_PATH);
    let hash = status["pendingAdoption"]["hash"]
        .as_str()
        .unwrap_or_else(|| panic!("{status}"))
        .to_string();
    let fields: Vec<&str> = status["pendingAdoption"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"worker.shop.owner"), "{fields:?}");
    let ready_now = ready_condition(&status);
    assert_eq!(ready_now["reason"], "AdoptionPending");
    assert!(
        ready_now["message"].as_str().unwrap().contains(&format!(
            "kubectl annotate cfw shop flaredock.dev/approve-adoption={hash}"
        )),
        "{ready_now}"
    );
    assert!(!status.to_string().contains(SECRET_VALUE));

    // A stale hash approves nothing.
    let annotate = |s: &Setup, value: &str| {
        s.fake.objects.lock().unwrap().get_mut(WORKER_PATH).unwrap()["metadata"]["annotations"] =
            json!({"flaredock.dev/approve-adoption": value});
    };
    annotate(&s, "0123456789ab");
    s.reconcile_worker().await.unwrap();
    assert_eq!(s.uploads(), 0);
    assert_eq!(
        s.status(WORKER_PATH)["pendingAdoption"]["hash"],
        hash.as_str()
    );

    // The script is deployed again by its old tool after the review: the approval no
    // longer matches (read afresh, not from the cache).
    s.em.shared
        .account()
        .seed_script("shop", vec!["Shop".into()], None, true, true);
    let redeployed = s.em.shared.account().scripts["shop"].etag.clone();
    annotate(&s, &hash);
    s.reconcile_worker().await.unwrap();
    let status = s.status(WORKER_PATH);
    let new_hash = status["pendingAdoption"]["hash"]
        .as_str()
        .map(str::to_string);
    if s.uploads() == 0 {
        // The etag moved with the redeploy: a new hash is asked for.
        assert_ne!(new_hash.as_deref(), Some(hash.as_str()), "{status}");
    } else {
        panic!("a stale approval adopted a script changed since (etag {redeployed}): {status}");
    }

    // The matching hash adopts it: one upload, the migration tag kept.
    annotate(&s, new_hash.as_deref().unwrap());
    s.reconcile_worker().await.unwrap();
    assert_eq!(s.uploads(), 1);
    let status = s.status(WORKER_PATH);
    assert!(ready(&status), "{status}");
    assert!(status.get("pendingAdoption").is_none(), "{status}");
    let events: Vec<String> = s.fake.event_reasons();
    assert!(events.contains(&"Adopted".to_string()), "{events:?}");

    // Observe: a changed spec is reported, never uploaded.
    {
        let mut objects = s.fake.objects.lock().unwrap();
        let w = objects.get_mut(WORKER_PATH).unwrap();
        w["spec"]["managementPolicy"] = json!("Observe");
        w["spec"]["vars"] = json!({"MODE": "observed"});
        w["metadata"]["generation"] = json!(2);
    }
    s.em.shared.clear_requests();
    s.reconcile_worker().await.unwrap();
    assert_eq!(s.uploads(), 0, "Observe uploads nothing");
    assert!(common::cloudflare_writes(&s.em).is_empty());
    let status = s.status(WORKER_PATH);
    let drift: Vec<&str> = status["drift"]
        .as_array()
        .unwrap_or_else(|| panic!("{status}"))
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(drift, ["worker.shop.vars"], "{status}");
    let ready_now = ready_condition(&status);
    assert_eq!(ready_now["reason"], "Observing", "{status}");
}

#[tokio::test]
async fn a_suspended_worker_uploads_nothing_and_a_requested_reconcile_is_echoed() {
    let mut s = setup().await;
    s.fake.objects.lock().unwrap().get_mut(WORKER_PATH).unwrap()["spec"]["suspend"] = json!(true);
    s.reconcile_worker().await.unwrap();
    assert_eq!(s.uploads(), 0);
    assert!(common::cloudflare_writes(&s.em).is_empty());
    let status = s.status(WORKER_PATH);
    let ready_now = ready_condition(&status);
    assert_eq!(ready_now["reason"], "Suspended", "{status}");
    assert!(
        ready_now["message"]
            .as_str()
            .unwrap()
            .contains("pending: worker.shop"),
        "{ready_now}"
    );

    // Resumed, and asked to reconcile now: uploaded, the request echoed.
    {
        let mut objects = s.fake.objects.lock().unwrap();
        let w = objects.get_mut(WORKER_PATH).unwrap();
        w["spec"]["suspend"] = json!(false);
        w["metadata"]["annotations"] =
            json!({"reconcile.fluxcd.io/requestedAt": "2026-11-27T12:00:00Z"});
    }
    s.reconcile_worker().await.unwrap();
    assert_eq!(s.uploads(), 1);
    let status = s.status(WORKER_PATH);
    assert!(ready(&status), "{status}");
    assert_eq!(status["lastHandledReconcileAt"], "2026-11-27T12:00:00Z");
}

const CODE_PATH: &str = "/api/v1/namespaces/apps/configmaps/shop-code";

fn code_config_map(source: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "shop-code", "namespace": "apps", "resourceVersion": "4"},
           "data": {"index.js": source}})
}

#[tokio::test]
async fn a_failed_config_map_read_is_transient_and_a_named_config_map_is_read_again_soon() {
    let mut s = setup().await;
    {
        let mut objects = s.fake.objects.lock().unwrap();
        let worker = objects.get_mut(WORKER_PATH).unwrap();
        worker["spec"]["source"] =
            json!({"configMapRef": {"name": "shop-code", "mainModule": "index.js"}});
        objects.insert(
            CODE_PATH.into(),
            code_config_map("export class Shop {}\nexport default {}"),
        );
    }
    // The API server answers 500 for the ConfigMap: an error retried with backoff,
    // neither Stalled nor reported as a refusal, and nothing uploaded.
    s.fake.failing.lock().unwrap().push(CODE_PATH.into());
    let error = s
        .reconcile_worker()
        .await
        .expect_err("a failed ConfigMap read is an error, retried");
    let action = controller::worker_error_policy(s.get(WORKER_PATH), &error, s.ctx.clone());
    let backoff = requeue_after(&action);
    assert!(backoff <= Duration::from_secs(3), "backoff: {action:?}");
    let status = s.status(WORKER_PATH);
    let stalled = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Stalled" && c["status"] == "True");
    assert!(!stalled, "not Stalled: {status}");
    assert!(
        s.fake.event_reasons().is_empty(),
        "{:?}",
        s.fake.event_reasons()
    );
    assert_eq!(s.uploads(), 0);

    // It recovers: uploaded, and a Worker that names a ConfigMap comes back soon
    // (ConfigMaps are read by name, never watched).
    s.fake.failing.lock().unwrap().clear();
    tokio::time::sleep(backoff).await;
    let action = s.reconcile_worker().await.unwrap();
    assert!(ready(&s.status(WORKER_PATH)), "{}", s.status(WORKER_PATH));
    assert_eq!(s.uploads(), 1);
    assert!(
        requeue_after(&action) <= Duration::from_secs(20),
        "read again soon, not at the resync: {action:?}"
    );
    // The ConfigMap was read by name: never listed, never watched.
    let reads: Vec<String> = s
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("configmaps"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        !reads.is_empty()
            && reads
                .iter()
                .all(|r| r.starts_with("GET ") && r.contains(CODE_PATH) && !r.contains("watch")),
        "{reads:?}"
    );
    // An edit of the ConfigMap is uploaded at that next reconcile.
    s.fake.objects.lock().unwrap().insert(
        CODE_PATH.into(),
        code_config_map("export class Shop {}\nexport default {fetch() {}}"),
    );
    s.reconcile_worker().await.unwrap();
    assert_eq!(s.uploads(), 2);
}

#[tokio::test]
async fn a_container_adoption_is_reviewed_while_its_worker_awaits_and_an_early_approval_waits() {
    let mut s = setup().await;
    // What `wrangler deploy` leaves: the script (no flaredock tags) hosting Shop as a
    // container, and an application no flaredock object owns on the class's namespace.
    s.em.shared
        .account()
        .seed_script("shop", vec!["Shop".into()], None, true, true);
    let image = format!("{}/{}/hello:v1", s.em.registry_host(), s.em.account_id());
    let app = common::client_for(&s.em)
        .create_application(&common::foreign_application(
            "shop",
            &image,
            Some(
                flaredock::cloudflare::types::DurableObjectsConfiguration::ScriptAndClass {
                    script_name: "shop".into(),
                    class_name: "Shop".into(),
                },
            ),
        ))
        .await
        .expect("a foreign application");
    {
        let mut objects = s.fake.objects.lock().unwrap();
        objects.get_mut(WORKER_PATH).unwrap()["spec"]["adopt"] = json!(true);
        let c = objects.get_mut(CONTAINER_PATH).unwrap();
        c["spec"]["adopt"] = json!(true);
        c["spec"]["maxInstances"] = json!(2);
    }
    s.em.shared.clear_requests();

    // The container's adoption is put up for review before the Worker's is approved.
    s.reconcile_container().await;
    let status = s.status(CONTAINER_PATH);
    assert_eq!(
        ready_condition(&status)["reason"],
        "AdoptionPending",
        "{status}"
    );
    let fields: Vec<&str> = status["pendingAdoption"]["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("{status}"))
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"configuration.labels.flaredock.dev/owner"),
        "{status}"
    );
    let hash = status["pendingAdoption"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(common::cloudflare_writes(&s.em).is_empty());

    // Approved first: it waits for its Worker, keeping the approval; nothing written.
    s.fake
        .objects
        .lock()
        .unwrap()
        .get_mut(CONTAINER_PATH)
        .unwrap()["metadata"]["annotations"] = json!({"flaredock.dev/approve-adoption": hash});
    s.reconcile_container().await;
    let status = s.status(CONTAINER_PATH);
    assert_eq!(
        ready_condition(&status)["reason"],
        "WorkerNotReady",
        "{status}"
    );
    assert_eq!(status["pendingAdoption"]["hash"], hash.as_str(), "{status}");
    assert!(common::cloudflare_writes(&s.em).is_empty());

    // The Worker's adoption approved and applied: the container's approval, kept, lets
    // its one rollout through, on the same application.
    s.reconcile_worker().await.unwrap();
    let worker_hash = s.status(WORKER_PATH)["pendingAdoption"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    s.fake.objects.lock().unwrap().get_mut(WORKER_PATH).unwrap()["metadata"]["annotations"] =
        json!({"flaredock.dev/approve-adoption": worker_hash});
    s.reconcile_worker().await.unwrap();
    assert!(ready(&s.status(WORKER_PATH)), "{}", s.status(WORKER_PATH));
    s.reconcile_container().await;
    let rollouts: Vec<String> = common::cloudflare_writes(&s.em)
        .into_iter()
        .filter(|w| w.contains("/containers/"))
        .collect();
    assert_eq!(
        rollouts,
        [format!(
            "POST /client/v4/accounts/{}/containers/applications/{}/rollouts",
            s.em.account_id(),
            app.id
        )],
    );
    let status = s.status(CONTAINER_PATH);
    assert!(status.get("pendingAdoption").is_none(), "{status}");
    assert_eq!(status["applicationId"], app.id.as_str(), "{status}");
}

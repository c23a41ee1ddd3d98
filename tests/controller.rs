//! The controller against a fake Kubernetes API server (kube's client over a
//! tower-test mock service answering like the API server would) and the Cloudflare
//! emulator: finalizer, create to Ready, quiet resyncs, deletion with each policy, a
//! failing delete, refusal, leadership, credentials, metrics.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use flaredock::cloudflare::types::*;
use flaredock::controller::{self, Context, FINALIZER, SECRET_FINALIZER, Settings};
use flaredock::emulator::{DEMO_CLASS, DEMO_SCRIPT, ScriptedFault};
use flaredock::spec::CloudflareContainer;
use flaredock::telemetry::metrics::Metrics;
use serde_json::{Value, json};

use common::fake_kube::{FakeState, fake_kube};
use common::requeue_after;

const OBJECT_PATH: &str = "/apis/flaredock.dev/v1alpha1/namespaces/apps/cloudflarecontainers/shop";
const SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/cloudflare";

fn object(extra: &str, finalizers: &[&str]) -> Value {
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata:\n  name: shop\n  namespace: apps\n  uid: uid-1\n  generation: 1\n  resourceVersion: '1'\nspec:\n  className: {DEMO_CLASS}\n  image: {{reference: 'hello:v1'}}\n  worker: {{scriptName: {DEMO_SCRIPT}}}\n  credentialsSecretRef: {{name: cloudflare}}\n{extra}"
    );
    let mut v: Value = serde_yaml_ng::from_str(&doc).unwrap();
    // As the API server stores it: no finalizers means no field.
    if !finalizers.is_empty() {
        v["metadata"]["finalizers"] = json!(finalizers);
    }
    v
}

struct Setup {
    em: common::Emulator,
    fake: Arc<FakeState>,
    ctx: Arc<Context>,
}

async fn setup(obj: Value, leader: bool) -> Setup {
    setup_with(obj, leader, |_| {}).await
}

async fn setup_with(
    obj: Value,
    leader: bool,
    tweak: impl FnOnce(&mut flaredock::emulator::EmulatorConfig),
) -> Setup {
    let em = common::start_emulator(tweak).await;
    let (client, fake) = fake_kube();
    fake.objects.lock().unwrap().insert(OBJECT_PATH.into(), obj);
    fake.objects.lock().unwrap().insert(
        SECRET_PATH.into(),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "cloudflare", "namespace": "apps", "resourceVersion": "7"},
            "stringData": {"apiToken": em.api_token(), "accountId": em.account_id()},
        }),
    );
    let ctx = context(&em, client, leader);
    Setup { em, fake, ctx }
}

/// A controller's context, as a (re)started process builds it: its own account views
/// and reconcilers, nothing remembered.
fn context(em: &common::Emulator, client: kube::Client, leader: bool) -> Arc<Context> {
    let settings = Settings {
        api_base_url: em.base_url(),
        progress_poll: Duration::from_millis(50),
        rate_limit: flaredock::cloudflare::RateLimit {
            requests: 1_000_000 + fastrand::u32(..1000),
            window: Duration::from_secs(1),
        },
        ..Default::default()
    };
    Arc::new(Context::new(
        client,
        settings,
        Arc::new(Metrics::new()),
        Arc::new(AtomicBool::new(leader)),
    ))
}

fn current(s: &Setup) -> Arc<CloudflareContainer> {
    let v = s.fake.objects.lock().unwrap()[OBJECT_PATH].clone();
    Arc::new(serde_json::from_value(v).unwrap())
}

fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap()
}

#[tokio::test]
async fn the_finalizer_is_added_on_first_sight() {
    let s = setup(object("", &[]), true).await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let writes = s.fake.writes("cloudflarecontainers");
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(writes[0].body.to_string().contains(FINALIZER));
    assert_eq!(
        current(&s).metadata.finalizers.as_deref(),
        Some(&[FINALIZER.to_string()][..])
    );
    assert!(
        s.em.shared.requests().is_empty(),
        "nothing at Cloudflare before the finalizer is in place"
    );
}

#[tokio::test]
async fn create_path_to_ready_then_a_quiet_resync() {
    let s = setup(object("", &[FINALIZER]), true).await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    // The status was written by server-side apply, Ready.
    let status_writes = s.fake.writes("/status");
    assert_eq!(status_writes.len(), 1);
    let status = &status_writes[0].body["status"];
    assert_eq!(status_writes[0].body["kind"], "CloudflareContainer");
    assert_eq!(condition(status, "Ready")["status"], "True", "{status}");
    assert_eq!(condition(status, "Stalled")["status"], "False");
    assert_eq!(status["observedGeneration"], 1);
    assert!(status["image"].as_str().unwrap().contains("/hello@sha256:"));
    let apps = common::client_for(&s.em).list_applications().await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(status["applicationId"], apps[0].id.as_str());
    // An Event says what happened; the credentials Secret is protected.
    let events: Vec<String> = s.fake.event_reasons();
    assert!(events.contains(&"Created".to_string()), "{events:?}");
    assert!(
        s.fake.objects.lock().unwrap()[SECRET_PATH]["metadata"]["finalizers"]
            .to_string()
            .contains(SECRET_FINALIZER)
    );

    // A resync that finds nothing changed writes nothing, anywhere.
    s.fake.requests.lock().unwrap().clear();
    s.em.shared.clear_requests();
    s.ctx.invalidate_all().await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert!(
        s.fake.writes("/status").is_empty(),
        "no status write when nothing changed"
    );
    assert!(s.fake.writes("/events").is_empty());
    assert!(common::cloudflare_writes(&s.em).is_empty());
}

/// Someone sets the application's `max_instances` behind flaredock.
async fn change_max_instances(client: &flaredock::cloudflare::CloudflareClient, id: &str, n: i64) {
    client
        .modify_application(
            id,
            &ModifyApplicationRequest {
                max_instances: Some(n),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn drift_is_corrected_and_reported() {
    let s = setup(object("", &[FINALIZER]), true).await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let client = common::client_for(&s.em);
    let app = client.list_applications().await.unwrap().remove(0);
    change_max_instances(&client, &app.id, 99).await;
    s.ctx.invalidate_all().await;
    s.fake.requests.lock().unwrap().clear();
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        client.get_application(&app.id).await.unwrap().max_instances,
        Some(20)
    );
    let events: Vec<Value> = s
        .fake
        .writes("/events")
        .into_iter()
        .map(|r| r.body)
        .collect();
    let drift = events
        .iter()
        .find(|e| e["reason"] == "DriftCorrected")
        .expect("a DriftCorrected event");
    assert!(
        drift["note"]
            .as_str()
            .unwrap()
            .contains("max_instances: 99 → 20"),
        "{drift}"
    );
    // …and listed in status.drift: field, found, wanted, when.
    let status = current(&s).status.clone().unwrap();
    let entry = status
        .drift
        .iter()
        .find(|d| d.field == "max_instances")
        .unwrap_or_else(|| panic!("{:?}", status.drift));
    assert_eq!((entry.found.as_str(), entry.wanted.as_str()), ("99", "20"));
    assert!(entry.at.parse::<jiff::Timestamp>().is_ok(), "{}", entry.at);
}

#[tokio::test]
async fn an_observe_object_writes_nothing_and_lists_its_differences() {
    let s = setup(object("", &[FINALIZER]), true).await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    // Switched to Observe; then someone changes the application behind flaredock.
    s.fake.objects.lock().unwrap().get_mut(OBJECT_PATH).unwrap()["spec"]["managementPolicy"] =
        json!("Observe");
    let client = common::client_for(&s.em);
    let app = client.list_applications().await.unwrap().remove(0);
    change_max_instances(&client, &app.id, 77).await;
    s.ctx.invalidate_all().await;
    s.em.shared.clear_requests();
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert!(
        common::cloudflare_writes(&s.em).is_empty(),
        "{:?}",
        common::cloudflare_writes(&s.em)
    );
    assert_eq!(
        client.get_application(&app.id).await.unwrap().max_instances,
        Some(77),
        "left as found"
    );
    let status = current(&s).status.clone().unwrap();
    let ready = flaredock::reconcile::status::condition(&status, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Observing")
    );
    assert!(ready.message.contains("max_instances"), "{}", ready.message);
    assert_eq!(status.drift.len(), 1, "{:?}", status.drift);
    assert_eq!(status.drift[0].found, "77");
    // Seen again: the same entry, first-seen time kept.
    let first = status.drift[0].at.clone();
    s.ctx.invalidate_all().await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert_eq!(current(&s).status.clone().unwrap().drift[0].at, first);
    assert!(common::cloudflare_writes(&s.em).is_empty());
}

async fn delete_with(policy: &str) -> (Setup, Vec<Application>) {
    let s = setup(
        object(&format!("  deletionPolicy: {policy}\n"), &[FINALIZER]),
        true,
    )
    .await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        common::client_for(&s.em)
            .list_applications()
            .await
            .unwrap()
            .len(),
        1
    );
    let mut deleting = (*current(&s)).clone();
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
    );
    s.fake.requests.lock().unwrap().clear();
    controller::reconcile(Arc::new(deleting), s.ctx.clone())
        .await
        .unwrap();
    let apps = common::client_for(&s.em).list_applications().await.unwrap();
    (s, apps)
}

#[tokio::test]
async fn delete_path_with_delete_policy() {
    let (s, apps) = delete_with("Delete").await;
    assert!(apps.is_empty(), "the owned application was deleted");
    assert!(
        current(&s)
            .metadata
            .finalizers
            .as_deref()
            .unwrap_or_default()
            .is_empty(),
        "finalizer removed"
    );
    let secret = s.fake.objects.lock().unwrap()[SECRET_PATH].clone();
    assert!(
        !secret["metadata"]["finalizers"]
            .to_string()
            .contains(SECRET_FINALIZER),
        "Secret released"
    );
}

#[tokio::test]
async fn delete_path_with_orphan_policy() {
    let (s, apps) = delete_with("Orphan").await;
    assert_eq!(apps.len(), 1, "the application is left running");
    assert!(
        current(&s)
            .metadata
            .finalizers
            .as_deref()
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn the_finalizer_holds_through_an_asynchronous_delete_and_a_restart() {
    // Cloudflare deletes asynchronously: the application stays listed for 3 s.
    let s = setup_with(object("", &[FINALIZER]), true, |c| {
        c.delete_delay = Duration::from_secs(3)
    })
    .await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let client = common::client_for(&s.em);
    assert_eq!(client.list_applications().await.unwrap().len(), 1);
    let mut deleting = (*current(&s)).clone();
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
    );
    let deleting = Arc::new(deleting);
    let kept =
        |s: &Setup| current(s).metadata.finalizers.as_deref() == Some(&[FINALIZER.to_string()][..]);

    let first = controller::reconcile(deleting.clone(), s.ctx.clone()).await;
    let error = first.expect_err("the delete is under way: cleanup is not done");
    assert!(
        kept(&s),
        "the finalizer stays while Cloudflare lists the application"
    );
    assert_eq!(client.list_applications().await.unwrap().len(), 1);
    assert!(s.fake.event_reasons().contains(&"Deleting".to_string()));
    let again = requeue_after(&controller::error_policy(
        deleting.clone(),
        &error,
        s.ctx.clone(),
    ));
    assert!(
        again <= Duration::from_secs(5),
        "looked at again in a few seconds, not with a growing backoff: {again:?}"
    );

    // A restarted controller (new account views, nothing in memory) still waits.
    let restarted = context(&s.em, s.ctx.client.clone(), true);
    let mut waited_after_restart = 0;
    let mut released = false;
    for _ in 0..40 {
        let listed_before = !client.list_applications().await.unwrap().is_empty();
        match controller::reconcile(deleting.clone(), restarted.clone()).await {
            Err(_) => {
                assert!(
                    listed_before,
                    "it waits only while Cloudflare lists the application"
                );
                assert!(kept(&s), "the finalizer stays while the delete runs");
                waited_after_restart += 1;
            }
            Ok(_) => {
                assert!(
                    client.list_applications().await.unwrap().is_empty(),
                    "released only once Cloudflare no longer lists the application"
                );
                released = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(released, "the finalizer is released after the delete");
    assert!(
        waited_after_restart > 0,
        "the restarted controller waited too"
    );
    assert!(
        current(&s)
            .metadata
            .finalizers
            .as_deref()
            .unwrap_or_default()
            .is_empty()
    );
    // Every DELETE sent again to the application being deleted was answered as the first.
    let deletes: Vec<u16> =
        s.em.shared
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .map(|r| r.status)
            .collect();
    assert!(deletes.len() >= 2, "{deletes:?}");
    assert!(
        deletes.iter().all(|&st| st == 200 || st == 404),
        "{deletes:?}"
    );
}

#[tokio::test]
async fn a_failing_cloudflare_delete_keeps_the_finalizer() {
    let s = setup(object("", &[FINALIZER]), true).await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    for _ in 0..10 {
        s.em.shared
            .push_fault(Some("DELETE"), ScriptedFault::ServerError(500));
    }
    let mut deleting = (*current(&s)).clone();
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
    );
    s.fake.requests.lock().unwrap().clear();
    let result = controller::reconcile(Arc::new(deleting.clone()), s.ctx.clone()).await;
    assert!(result.is_err(), "the failure is retried with backoff");
    assert_eq!(
        current(&s).metadata.finalizers.as_deref(),
        Some(&[FINALIZER.to_string()][..]),
        "finalizer kept"
    );
    assert!(
        s.fake.writes("cloudflarecontainers/shop").is_empty(),
        "no finalizer removal"
    );
    let reasons: Vec<String> = s.fake.event_reasons();
    assert!(reasons.contains(&"DeleteFailed".to_string()), "{reasons:?}");
    let action = controller::error_policy(Arc::new(deleting), &result.unwrap_err(), s.ctx.clone());
    assert_ne!(action, kube::runtime::controller::Action::await_change());
}

#[tokio::test]
async fn a_foreign_application_stalls_with_no_writes() {
    let s = setup(object("", &[FINALIZER]), true).await;
    let client = common::client_for(&s.em);
    client
        .create_application(&common::foreign_application(
            "shop",
            &format!("{}/{}/hello:v1", s.em.registry_host(), s.em.account_id()),
            None,
        ))
        .await
        .unwrap();
    s.em.shared.clear_requests();
    let action = controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::await_change(),
        "not retried until the spec changes"
    );
    let status = &s.fake.writes("/status")[0].body["status"];
    assert_eq!(condition(status, "Stalled")["status"], "True");
    assert_eq!(
        condition(status, "Stalled")["reason"],
        "ApplicationNotOwned"
    );
    assert_eq!(condition(status, "Ready")["status"], "False");
    let container_writes: Vec<String> = common::cloudflare_writes(&s.em)
        .into_iter()
        .filter(|w| w.contains("/containers/"))
        .collect();
    assert!(container_writes.is_empty(), "{container_writes:?}");
    let reasons: Vec<String> = s.fake.event_reasons();
    assert!(reasons.contains(&"Refused".to_string()));
}

#[tokio::test]
async fn a_missing_credentials_secret_stalls_loudly() {
    let s = setup(object("", &[FINALIZER]), true).await;
    s.fake.objects.lock().unwrap().remove(SECRET_PATH);
    let action = controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    // Nothing watches Secrets: looked at again within about a minute, not in a loop.
    let again = requeue_after(&action);
    assert!(
        again >= Duration::from_secs(50) && again <= Duration::from_secs(70),
        "{action:?}"
    );
    let status = &s.fake.writes("/status")[0].body["status"];
    let stalled = condition(status, "Stalled");
    assert_eq!(stalled["status"], "True");
    assert_eq!(stalled["reason"], "CredentialsUnavailable");
    assert!(
        stalled["message"]
            .as_str()
            .unwrap()
            .contains("apps/cloudflare")
    );
    let events = s.fake.writes("/events");
    assert_eq!(events[0].body["type"], "Warning");
    assert!(s.em.shared.requests().is_empty());
}

#[tokio::test]
/// `/readyz` turning 200 once both watches synced, and 503 while one fails, is proven
/// on the real API server with the real process (tests/apiserver.rs:
/// `readyz_answers_200_once_both_watches_have_synced`,
/// `with_the_container_watch_forbidden_no_worker_loses_a_class_and_readyz_says_so`).
async fn metrics_count_a_reconcile_healthz_answers_and_readyz_waits_for_the_watches() {
    let s = setup(object("", &[FINALIZER]), true).await;
    let app = controller::server::router(s.ctx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("http://{addr}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503,
        "no watch has synced in this context"
    );
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("flaredock_reconciliations_total{result=\"ready\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "flaredock_cloudflare_api_calls_total{operation=\"createApplication\",status=\"201\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("flaredock_objects{ready=\"true\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("flaredock_reconcile_duration_seconds_count 1"),
        "{text}"
    );
    assert!(!text.contains(s.em.api_token()), "no secret in metrics");
}

#[test]
fn run_without_a_reachable_cluster_exits_quickly_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {token: t}\n",
    )
    .unwrap();
    for (env, expect) in [
        (
            kubeconfig.to_str().unwrap(),
            "cannot reach the Kubernetes API server",
        ),
        ("/nonexistent/kubeconfig", "no Kubernetes configuration"),
    ] {
        let started = std::time::Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_flaredock"))
            .args(["run", "--metrics-address", "127.0.0.1:0"])
            .env("KUBECONFIG", env)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0));
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "took {:?}",
            started.elapsed()
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{stderr}");
    }
}

#[tokio::test]
async fn a_rotated_token_is_used_at_the_next_reconcile() {
    let s = setup(object("", &[FINALIZER]), true).await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    // The Secret watch delivers the rotated (here: revoked) token.
    let rotated: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "cloudflare", "namespace": "apps"},
        "stringData": {"apiToken": "revoked-token", "accountId": s.em.account_id()},
    }))
    .unwrap();
    s.ctx.remember_secret(&rotated);
    s.fake.requests.lock().unwrap().clear();
    let action = controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::await_change(),
        "a refused token is terminal"
    );
    let status = &s.fake.writes("/status")[0].body["status"];
    assert_eq!(
        condition(status, "Stalled")["reason"],
        "Unauthorized",
        "{status}"
    );
    assert!(!status.to_string().contains("revoked-token"));
}

/// Not a timed test: a measurement, printed. Run with
/// `cargo test --release --test controller -- --ignored --nocapture controller_at_scale`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark; see BENCHMARKS.md"]
async fn controller_at_scale() {
    use futures::StreamExt;
    let count: usize = std::env::var("FLAREDOCK_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let s = setup(object("", &[FINALIZER]), true).await;
    {
        let classes: Vec<String> = (0..count).map(|i| format!("C{i}")).collect();
        let mut account = s.em.shared.account();
        account.seed_script("bench", classes, None, true, true);
    }
    let mut objects = Vec::new();
    for i in 0..count {
        let mut o = object("", &[FINALIZER]);
        o["metadata"]["name"] = json!(format!("app-{i}"));
        o["metadata"]["uid"] = json!(format!("uid-{i}"));
        o["spec"]["className"] = json!(format!("C{i}"));
        o["spec"]["worker"] = json!({"scriptName": "bench"});
        let path =
            format!("/apis/flaredock.dev/v1alpha1/namespaces/apps/cloudflarecontainers/app-{i}");
        s.fake.objects.lock().unwrap().insert(path.clone(), o);
        objects.push(path);
    }
    let get = |path: &String| -> Arc<CloudflareContainer> {
        Arc::new(serde_json::from_value(s.fake.objects.lock().unwrap()[path].clone()).unwrap())
    };
    let round = |ctx: Arc<Context>, objs: Vec<Arc<CloudflareContainer>>| async move {
        futures::stream::iter(objs)
            .map(|o| controller::reconcile(o, ctx.clone()))
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
    };
    let started = std::time::Instant::now();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let objs: Vec<_> = objects.iter().map(get).collect();
        round(s.ctx.clone(), objs).await;
        let ready = objects
            .iter()
            .filter(|p| {
                get(p)
                    .status
                    .as_ref()
                    .is_some_and(flaredock::reconcile::status::is_ready)
            })
            .count();
        if ready == count {
            break;
        }
        assert!(rounds < 20, "only {ready} of {count} Ready");
    }
    let to_ready = started.elapsed();
    let create_calls = s.em.shared.requests().len();
    s.em.shared.clear_requests();
    s.fake.requests.lock().unwrap().clear();
    s.ctx.invalidate_all().await;
    let resync_started = std::time::Instant::now();
    let objs: Vec<_> = objects.iter().map(get).collect();
    round(s.ctx.clone(), objs).await;
    let resync = resync_started.elapsed();
    let resync_calls: Vec<String> =
        s.em.shared
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
    let kube_calls = s.fake.requests().len();
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.to_string())
        })
        .unwrap_or_default();
    println!("controller at scale: {count} objects");
    println!(
        "  to all Ready: {:.2} s in {rounds} round(s), {create_calls} Cloudflare API calls",
        to_ready.as_secs_f64()
    );
    println!(
        "  one full resync: {:.2} s, {} Cloudflare API calls {:?}, {kube_calls} Kubernetes API calls",
        resync.as_secs_f64(),
        resync_calls.len(),
        resync_calls
    );
    println!("  peak RSS of the test process (controller, emulator and fake API together): {rss}");
    // The application list, the namespace list (pages of 1,000: 1,001 namespaces here)
    // and the script list.
    assert!(
        resync_calls.len() <= 4,
        "a resync lists, it does not read per object: {resync_calls:?}"
    );
    assert_eq!(
        kube_calls, 0,
        "a resync that changed nothing writes nothing to Kubernetes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_source_is_copied_with_the_pull_secret() {
    use base64::Engine;
    let private = common::DockerRegistry::start_with_auth("puller", "pull-pass");
    let image = common::synthetic_image(&[3000], 21);
    common::push_image(
        &private.host,
        "team/app",
        "v1",
        &image,
        private.credentials().as_ref(),
    )
    .await;
    let extra = format!(
        "  image: {{reference: '{}/team/app:v1', pullSecretRef: {{name: ghcr}}}}\n",
        private.host
    );
    let mut obj = object("", &[FINALIZER]);
    let patch: Value = serde_yaml_ng::from_str(&format!("spec:\n{extra}")).unwrap();
    obj["spec"]["image"] = patch["spec"]["image"].clone();
    let s = setup(obj, true).await;
    // Without the Secret: a clear problem in the status, nothing at Cloudflare.
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let status = &s.fake.writes("/status")[0].body["status"];
    let stalled = condition(status, "Stalled");
    assert_eq!(stalled["reason"], "CredentialsUnavailable", "{status}");
    assert!(
        stalled["message"]
            .as_str()
            .unwrap()
            .contains("pullSecretRef"),
        "{status}"
    );
    assert!(
        common::client_for(&s.em)
            .list_applications()
            .await
            .unwrap()
            .is_empty()
    );
    let auth = base64::engine::general_purpose::STANDARD.encode("puller:pull-pass");
    let config = json!({"auths": {private.host.clone(): {"auth": auth}}}).to_string();
    s.fake.objects.lock().unwrap().insert(
        "/api/v1/namespaces/apps/secrets/ghcr".into(),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
               "metadata": {"name": "ghcr", "namespace": "apps"},
               "stringData": {".dockerconfigjson": config}}),
    );
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let writes = s.fake.writes("/status");
    let status = &writes.last().unwrap().body["status"];
    assert_eq!(condition(status, "Ready")["status"], "True", "{status}");
    assert!(
        status["image"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/cli/apps/shop@{}", image.digest)),
        "copied into the object's own repository: {status}"
    );
}

/// A git URL at a pinned commit. Nothing answers it: the controller never fetches a
/// build context (the build Job does), and a 40-hex commit names the content.
async fn fake_git(commit: &'static str) -> String {
    format!("https://git.invalid/shop.git#{commit}")
}

const BUILDS: &str = "/api/v1/namespaces/flaredock-builds";

async fn build_setup(context: String, registry: &common::DockerRegistry) -> Setup {
    build_setup_with(context, registry, true).await
}

async fn build_setup_with(
    context: String,
    registry: &common::DockerRegistry,
    enabled: bool,
) -> Setup {
    let mut obj = object("", &[FINALIZER]);
    obj["spec"].as_object_mut().unwrap().remove("image");
    obj["spec"]["build"] = json!({ "context": context });
    let em = common::start_emulator(|c| {
        c.registry = Some(registry.as_external());
        c.capture_bodies = true;
    })
    .await;
    let (client, fake) = fake_kube();
    fake.objects.lock().unwrap().insert(OBJECT_PATH.into(), obj);
    fake.objects.lock().unwrap().insert(
        SECRET_PATH.into(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cloudflare", "namespace": "apps"},
               "stringData": {"apiToken": em.api_token(), "accountId": em.account_id()}}),
    );
    let mut settings = Settings {
        api_base_url: em.base_url(),
        ..Default::default()
    };
    settings.build.enabled = enabled;
    let ctx = Arc::new(Context::new(
        client,
        settings,
        Arc::new(Metrics::new()),
        Arc::new(AtomicBool::new(true)),
    ));
    Setup { em, fake, ctx }
}

fn the_job(s: &Setup) -> (String, Value) {
    let objects = s.fake.objects.lock().unwrap();
    let jobs: Vec<_> = objects
        .iter()
        .filter(|(k, _)| k.contains("/jobs/"))
        .collect();
    assert_eq!(jobs.len(), 1, "one build Job");
    (jobs[0].0.clone(), jobs[0].1.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_cluster_build_runs_as_a_job_then_deploys_by_digest() {
    let registry = common::DockerRegistry::start_with_auth("cf", "cf-pass");
    let git = fake_git("0123456789abcdef0123456789abcdef01234567").await;
    let s = build_setup(format!("{git}:services/shop"), &registry).await;

    // First look: a Job and its push Secret are created; the image is not ready.
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let (job_path, job) = the_job(&s);
    let name = job["metadata"]["name"].as_str().unwrap().to_string();
    assert!(
        job_path.starts_with("/apis/batch/v1/namespaces/flaredock-builds/jobs/"),
        "the Job runs in the build namespace, not the tenant's: {job_path}"
    );
    assert_eq!(
        job["metadata"]["labels"]["flaredock.dev/build-for-namespace"],
        "apps"
    );
    let secret_path = format!("{BUILDS}/secrets/{name}");
    assert!(
        s.fake.objects.lock().unwrap().contains_key(&secret_path),
        "push credentials Secret created"
    );
    // Its own credentials, minted to outlive the Job's deadline (30 min) by 10 minutes.
    let minted: Vec<i64> =
        s.em.shared
            .exchanges()
            .iter()
            .filter(|x| x.path.ends_with("/credentials"))
            .filter_map(|x| serde_json::from_slice::<Value>(&x.request_body).ok())
            .filter_map(|b| b["expiration_minutes"].as_i64())
            .collect();
    assert!(minted.contains(&40), "{minted:?}");
    let writes = s.fake.writes("/status");
    let status = &writes.last().unwrap().body["status"];
    assert_eq!(
        condition(status, "ImageReady")["reason"],
        "Building",
        "{status}"
    );
    assert!(
        common::client_for(&s.em)
            .list_applications()
            .await
            .unwrap()
            .is_empty()
    );
    // A second look while it runs creates nothing new.
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert_eq!(s.fake.writes("/jobs").len(), 1);

    // "BuildKit" builds the fetched subdirectory and the push container pushes the
    // image; the Job succeeds.
    let pod = &job["spec"]["template"]["spec"];
    let build_args = pod["initContainers"][1]["args"].as_array().unwrap().clone();
    assert!(build_args.iter().any(|a| {
        a.as_str()
            .is_some_and(|a| a == "context=/workspace/context/src/services/shop")
    }));
    let output = pod["containers"][0]["args"][3].as_str().unwrap();
    let destination = flaredock::oci::Reference::parse(output).unwrap();
    let image = common::synthetic_image(&[2000], 33);
    common::push_image(
        &registry.host,
        &destination.repository,
        destination.tag.as_deref().unwrap(),
        &image,
        registry.credentials().as_ref(),
    )
    .await;
    s.fake.objects.lock().unwrap().get_mut(&job_path).unwrap()["status"] = json!({"succeeded": 1});
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let writes = s.fake.writes("/status");
    let status = &writes.last().unwrap().body["status"];
    assert_eq!(condition(status, "Ready")["status"], "True", "{status}");
    assert!(
        status["image"]
            .as_str()
            .unwrap()
            .ends_with(&format!("@{}", image.digest))
    );
    assert!(
        !s.fake.objects.lock().unwrap().contains_key(&secret_path),
        "the push Secret is removed when the build ends"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_job_reports_its_log_tail() {
    let registry = common::DockerRegistry::start_with_auth("cf", "cf-pass");
    let git = fake_git("89abcdef0123456789abcdef0123456789abcdef").await;
    let s = build_setup(git, &registry).await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let (job_path, job) = the_job(&s);
    let name = job["metadata"]["name"].as_str().unwrap().to_string();
    {
        let mut objects = s.fake.objects.lock().unwrap();
        objects.get_mut(&job_path).unwrap()["status"] = json!({"failed": 1});
        // Another Job's pod, listed first: the label selector must leave it out.
        objects.insert(
            format!("{BUILDS}/pods/a-other-pod"),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a-other-pod", "namespace": "flaredock-builds", "labels": {"job-name": "another-build"}}}),
        );
        objects.insert(
            format!("{BUILDS}/pods/a-other-pod/log"),
            json!("someone else's log\n"),
        );
        objects.insert(
            format!("{BUILDS}/pods/{name}-x7k2p"),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("{name}-x7k2p"), "namespace": "flaredock-builds", "labels": {"job-name": name}}}),
        );
        objects.insert(
            format!("{BUILDS}/pods/{name}-x7k2p/log"),
            json!("#5 [2/3] RUN make\n#5 ERROR: process \"make\" did not complete successfully: exit code: 2\n"),
        );
    }
    let action = controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    let writes = s.fake.writes("/status");
    let status = &writes.last().unwrap().body["status"];
    let image = condition(status, "ImageReady");
    assert_eq!(image["reason"], "BuildFailed");
    assert!(
        image["message"]
            .as_str()
            .unwrap()
            .contains("did not complete successfully"),
        "{image}"
    );
    let reasons: Vec<String> = s.fake.event_reasons();
    assert!(reasons.contains(&"BuildFailed".to_string()), "{reasons:?}");
    assert!(
        !s.fake
            .objects
            .lock()
            .unwrap()
            .contains_key(&format!("{BUILDS}/secrets/{name}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_past_its_deadline_fails_and_its_secret_goes() {
    let registry = common::DockerRegistry::start_with_auth("cf", "cf-pass");
    let git = fake_git("1111111111111111111111111111111111111111").await;
    let s = build_setup(git, &registry).await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let (job_path, job) = the_job(&s);
    let name = job["metadata"]["name"].as_str().unwrap().to_string();
    assert!(
        s.fake
            .objects
            .lock()
            .unwrap()
            .contains_key(&format!("{BUILDS}/secrets/{name}"))
    );
    s.fake.objects.lock().unwrap().get_mut(&job_path).unwrap()["status"] = json!({
        "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
    });
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let writes = s.fake.writes("/status");
    let image = condition(&writes.last().unwrap().body["status"], "ImageReady").clone();
    assert_eq!(image["reason"], "BuildFailed");
    assert!(
        image["message"].as_str().unwrap().contains("deadline"),
        "{image}"
    );
    assert!(
        !s.fake
            .objects
            .lock()
            .unwrap()
            .contains_key(&format!("{BUILDS}/secrets/{name}")),
        "the push credentials are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_cluster_refuses_fails_the_build_at_once() {
    let registry = common::DockerRegistry::start_with_auth("cf", "cf-pass");
    let git = fake_git("2222222222222222222222222222222222222222").await;
    let s = build_setup(git, &registry).await;
    // A quota (or an admission policy) refuses Jobs in the build namespace.
    s.fake
        .forbidden
        .lock()
        .unwrap()
        .push("POST /apis/batch/v1/namespaces/flaredock-builds/jobs".into());
    let _ = controller::reconcile(current(&s), s.ctx.clone()).await;
    let writes = s.fake.writes("/status");
    let image = condition(&writes.last().unwrap().body["status"], "ImageReady").clone();
    assert_eq!(image["reason"], "BuildFailed", "{image}");
    assert!(
        image["message"]
            .as_str()
            .unwrap()
            .contains("cannot be created"),
        "{image}"
    );
    let objects = s.fake.objects.lock().unwrap();
    assert!(
        objects
            .keys()
            .all(|k| !k.contains("/secrets/flaredock-build-")),
        "no push credentials left behind: {:?}",
        objects.keys().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_are_off_unless_enabled() {
    let registry = common::DockerRegistry::start_with_auth("cf", "cf-pass");
    let git = fake_git("3333333333333333333333333333333333333333").await;
    let s = build_setup_with(git, &registry, false).await;
    let _ = controller::reconcile(current(&s), s.ctx.clone()).await;
    let writes = s.fake.writes("/status");
    let status = &writes.last().unwrap().body["status"];
    let image = condition(status, "ImageReady");
    assert!(
        image["message"]
            .as_str()
            .unwrap()
            .contains("--enable-builds"),
        "{status}"
    );
    assert!(s.fake.writes("/jobs").is_empty());
    assert!(s.fake.writes("/secrets/flaredock-build").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reconciles_protecting_one_secret_survive_the_conflict() {
    let s = setup(object("", &[FINALIZER]), true).await;
    let classes: Vec<String> = (0..8).map(|i| format!("C{i}")).collect();
    let refs: Vec<&str> = classes.iter().map(String::as_str).collect();
    s.em.put_script("many", &refs);
    let mut paths = Vec::new();
    for i in 0..8 {
        let mut o = object("", &[FINALIZER]);
        o["metadata"]["name"] = json!(format!("app-{i}"));
        o["metadata"]["uid"] = json!(format!("uid-{i}"));
        o["spec"]["className"] = json!(format!("C{i}"));
        o["spec"]["worker"] = json!({"scriptName": "many"});
        let path =
            format!("/apis/flaredock.dev/v1alpha1/namespaces/apps/cloudflarecontainers/app-{i}");
        s.fake.objects.lock().unwrap().insert(path.clone(), o);
        paths.push(path);
    }
    let objs: Vec<Arc<CloudflareContainer>> = paths
        .iter()
        .map(|p| {
            Arc::new(serde_json::from_value(s.fake.objects.lock().unwrap()[p].clone()).unwrap())
        })
        .collect();
    let results = futures::future::join_all(
        objs.into_iter()
            .map(|o| controller::reconcile(o, s.ctx.clone())),
    )
    .await;
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    let patches = s
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == SECRET_PATH)
        .count();
    assert!(patches >= 1, "the Secret was protected");
    let finalizers = s.fake.objects.lock().unwrap()[SECRET_PATH]["metadata"]["finalizers"].clone();
    assert_eq!(
        finalizers,
        json!([SECRET_FINALIZER]),
        "one finalizer, added once"
    );
}

/// No request of the run listed or watched Secrets (only `get` by name).
fn assert_no_secret_list_or_watch(fake: &FakeState) {
    for r in fake.requests() {
        assert!(
            !(r.path.ends_with("/secrets")
                || r.query.contains("watch") && r.path.contains("/secrets")),
            "flaredock listed or watched Secrets: {} {}?{}",
            r.method,
            r.path,
            r.query
        );
    }
}

#[tokio::test]
async fn a_namespace_not_onboarded_gives_credentials_forbidden_without_listing_secrets() {
    let s = setup(object("", &[FINALIZER]), true).await;
    // The tenant RoleBinding is missing: Secrets of `apps` answer 403.
    s.fake
        .forbidden
        .lock()
        .unwrap()
        .push("/api/v1/namespaces/apps/secrets".into());
    let action = controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let status = &s.fake.writes("/status")[0].body["status"];
    let stalled = condition(status, "Stalled");
    assert_eq!(stalled["status"], "True");
    assert_eq!(stalled["reason"], "CredentialsForbidden", "{status}");
    let message = stalled["message"].as_str().unwrap();
    assert!(
        message.contains("flaredock-tenant") && message.contains("deploy/tenant"),
        "the message names the RoleBinding to add: {message}"
    );
    // Not retried in a tight loop.
    assert!(
        requeue_after(&action) >= Duration::from_secs(240),
        "{action:?}"
    );
    assert!(s.em.shared.requests().is_empty(), "nothing at Cloudflare");
    // Onboarded, it goes through; Secrets were only ever read by name.
    s.fake.forbidden.lock().unwrap().clear();
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let writes = s.fake.writes("/status");
    let status = &writes.last().unwrap().body["status"];
    assert_eq!(condition(status, "Ready")["status"], "True", "{status}");
    assert_no_secret_list_or_watch(&s.fake);
}

/// The object without `credentialsSecretRef`, against a context whose default
/// credentials are the emulator's.
async fn default_credentials_setup(allowed_by_flag: bool) -> Setup {
    let mut obj = object("", &[FINALIZER]);
    obj["spec"]
        .as_object_mut()
        .unwrap()
        .remove("credentialsSecretRef");
    let mut s = setup(obj, true).await;
    let mut settings = s.ctx.settings.clone();
    settings.default_credentials = Some((
        s.em.account_id().to_string(),
        flaredock::cloudflare::Secret::new(s.em.api_token()),
    ));
    if allowed_by_flag {
        settings.default_credentials_namespaces = vec!["apps".into()];
    }
    s.ctx = Arc::new(Context::new(
        s.ctx.client.clone(),
        settings,
        Arc::new(Metrics::new()),
        Arc::new(AtomicBool::new(true)),
    ));
    s.fake.objects.lock().unwrap().insert(
        "/api/v1/namespaces/apps".into(),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}),
    );
    s
}

#[tokio::test]
async fn an_unlabelled_namespace_gets_no_default_credentials() {
    let s = default_credentials_setup(false).await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let status = &s.fake.writes("/status")[0].body["status"];
    let stalled = condition(status, "Stalled");
    assert_eq!(
        stalled["reason"], "DefaultCredentialsNotAllowed",
        "{status}"
    );
    assert!(
        stalled["message"]
            .as_str()
            .unwrap()
            .contains("flaredock.dev/default-credentials=allow")
    );
    assert!(s.em.shared.requests().is_empty(), "nothing at Cloudflare");

    // The label opts the namespace in (a fresh controller: the label is cached a minute).
    let labelled = default_credentials_setup(false).await;
    labelled.fake.objects.lock().unwrap().insert(
        "/api/v1/namespaces/apps".into(),
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "apps", "labels": {"flaredock.dev/default-credentials": "allow"}}}),
    );
    controller::reconcile(current(&labelled), labelled.ctx.clone())
        .await
        .unwrap();
    let status = &labelled.fake.writes("/status")[0].body["status"];
    assert_eq!(condition(status, "Ready")["status"], "True", "{status}");

    // So does --default-credentials-namespaces.
    let listed = default_credentials_setup(true).await;
    controller::reconcile(current(&listed), listed.ctx.clone())
        .await
        .unwrap();
    let status = &listed.fake.writes("/status")[0].body["status"];
    assert_eq!(condition(status, "Ready")["status"], "True", "{status}");
}

#[tokio::test]
async fn an_outage_keeps_the_last_observed_state_and_the_backoff_holds() {
    let s = setup(object("", &[FINALIZER]), true).await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    // Cloudflare stops answering (every attempt of the next call fails).
    for _ in 0..5 {
        s.em.shared
            .push_fault(None, ScriptedFault::ServerError(503));
    }
    s.ctx.invalidate_all().await;
    s.fake.requests.lock().unwrap().clear();
    let error = controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap_err();
    let action = controller::error_policy(current(&s), &error, s.ctx.clone());
    let writes = s.fake.writes("/status");
    assert_eq!(writes.len(), 1, "one status write says so");
    let status = &writes[0].body["status"];
    assert_eq!(
        condition(status, "Ready")["status"],
        "True",
        "a healthy object stays Ready (the last observed state): {status}"
    );
    let outage = condition(status, "CloudflareReachable");
    assert_eq!(outage["status"], "False");
    assert_eq!(outage["reason"], "CloudflareServerError");
    assert!(outage["lastTransitionTime"].is_string());
    // The periodic resync comes early: the backoff holds, nothing is sent anywhere.
    s.em.shared.clear_requests();
    s.fake.requests.lock().unwrap().clear();
    let early = controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert!(
        s.em.shared.requests().is_empty(),
        "no call during the backoff"
    );
    assert!(s.fake.requests().is_empty());
    assert!(requeue_after(&early) <= requeue_after(&action));
    // Once the backoff has passed and Cloudflare answers, the condition goes away.
    tokio::time::sleep(requeue_after(&early) + Duration::from_millis(50)).await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let writes = s.fake.writes("/status");
    let status = &writes.last().unwrap().body["status"];
    assert!(
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["type"] != "CloudflareReachable"),
        "{status}"
    );
    assert_eq!(condition(status, "Ready")["status"], "True");
}

#[tokio::test]
async fn a_changed_credentials_secret_ref_releases_the_old_secret() {
    let s = setup(object("", &[FINALIZER]), true).await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let finalizers =
        |path: &str| s.fake.objects.lock().unwrap()[path]["metadata"]["finalizers"].to_string();
    assert!(finalizers(SECRET_PATH).contains(SECRET_FINALIZER));
    // The object moves to another Secret (status written by the fake is kept).
    let new_path = "/api/v1/namespaces/apps/secrets/cloudflare-2";
    {
        let mut objects = s.fake.objects.lock().unwrap();
        let old = objects[SECRET_PATH].clone();
        let mut new = old.clone();
        new["metadata"]["name"] = json!("cloudflare-2");
        new["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("finalizers");
        objects.insert(new_path.into(), new);
        let obj = objects.get_mut(OBJECT_PATH).unwrap();
        obj["spec"]["credentialsSecretRef"]["name"] = json!("cloudflare-2");
        obj["metadata"]["generation"] = json!(2);
    }
    assert_eq!(
        current(&s)
            .status
            .clone()
            .unwrap()
            .protected_secret
            .as_deref(),
        Some("cloudflare")
    );
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert!(finalizers(new_path).contains(SECRET_FINALIZER));
    assert!(
        !finalizers(SECRET_PATH).contains(SECRET_FINALIZER),
        "the old Secret is released: {}",
        finalizers(SECRET_PATH)
    );
    assert_eq!(
        current(&s)
            .status
            .clone()
            .unwrap()
            .protected_secret
            .as_deref(),
        Some("cloudflare-2")
    );
}

#[tokio::test]
async fn a_suspended_object_is_observed_and_never_written_to_cloudflare() {
    let s = setup(object("  suspend: true\n", &[FINALIZER]), true).await;
    let action = controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert!(
        common::cloudflare_writes(&s.em).is_empty(),
        "{:?}",
        common::cloudflare_writes(&s.em)
    );
    let status = &s.fake.writes("/status")[0].body["status"];
    let ready = condition(status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "Suspended");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("pending: application"),
        "{ready}"
    );
    assert_eq!(condition(status, "Stalled")["status"], "False");
    assert!(
        requeue_after(&action) >= Duration::from_secs(500),
        "observed again at the resync, not polled: {action:?}"
    );
}

#[tokio::test]
async fn a_requested_reconcile_runs_once_and_is_echoed() {
    let s = setup(object("", &[FINALIZER]), true).await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    // Fail once, so that the object is in backoff.
    for _ in 0..5 {
        s.em.shared
            .push_fault(None, ScriptedFault::ServerError(503));
    }
    s.ctx.invalidate_all().await;
    let error = controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap_err();
    controller::error_policy(current(&s), &error, s.ctx.clone());
    // Someone runs `flux reconcile`-style: the annotation gets a new value.
    s.em.shared.clear_requests();
    s.fake.objects.lock().unwrap().get_mut(OBJECT_PATH).unwrap()["metadata"]["annotations"] =
        json!({"reconcile.fluxcd.io/requestedAt": "2026-11-27T10:05:00Z"});
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert!(
        !s.em.shared.requests().is_empty(),
        "the request is not held back by the backoff, and reads Cloudflare afresh"
    );
    let status = current(&s).status.clone().unwrap();
    assert_eq!(
        status.last_handled_reconcile_at.as_deref(),
        Some("2026-11-27T10:05:00Z")
    );
    // Handled: the same value does not trigger again while the backoff holds.
    for _ in 0..5 {
        s.em.shared
            .push_fault(None, ScriptedFault::ServerError(503));
    }
    s.ctx.invalidate_all().await;
    if let Err(e) = controller::reconcile(current(&s), s.ctx.clone()).await {
        controller::error_policy(current(&s), &e, s.ctx.clone());
    }
    s.em.shared.clear_requests();
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert!(
        s.em.shared.requests().is_empty(),
        "{:?}",
        s.em.shared.requests()
    );
}

const ENV_SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/shop-secrets";

#[tokio::test]
async fn env_from_a_secret_rolls_out_once_per_change_and_is_never_shown() {
    let s = setup(
        object(
            "  env:\n    - {name: MODE, value: live}\n    - name: DB_PASSWORD\n      valueFrom: {secretKeyRef: {name: shop-secrets, key: db-password}}\n",
            &[FINALIZER],
        ),
        true,
    )
    .await;
    // No Secret yet: waits, writes nothing at Cloudflare, says what it waits for.
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let status = current(&s).status.clone().unwrap();
    let ready = flaredock::reconcile::status::condition(&status, "Ready").unwrap();
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("apps/shop-secrets"),
        "{}",
        ready.message
    );
    assert!(
        !common::cloudflare_writes(&s.em)
            .iter()
            .any(|w| w.contains("applications")),
        "{:?}",
        common::cloudflare_writes(&s.em)
    );

    let set_secret = |value: &str, rv: &str| {
        s.fake.objects.lock().unwrap().insert(
            ENV_SECRET_PATH.into(),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "shop-secrets", "namespace": "apps", "resourceVersion": rv},
                "data": {"db-password": base64_of(value)},
            }),
        );
    };
    set_secret("first-password-3141", "20");
    s.ctx.invalidate_all().await;
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    let status = current(&s).status.clone().unwrap();
    assert!(
        flaredock::reconcile::status::is_ready(&status),
        "{status:?}"
    );
    let client = common::client_for(&s.em);
    let app = client.list_applications().await.unwrap().remove(0);
    let env = app.configuration.environment_variables.clone().unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "DB_PASSWORD" && e.value == "first-password-3141")
    );

    // The Secret changes; at the next resync exactly one rollout carries it, and the
    // one after does nothing.
    set_secret("second-password-2718", "21");
    s.em.shared.clear_requests();
    s.fake.requests.lock().unwrap().clear();
    for _ in 0..3 {
        s.ctx.invalidate_all().await;
        controller::reconcile(current(&s), s.ctx.clone())
            .await
            .unwrap();
    }
    let rollouts: Vec<String> = common::cloudflare_writes(&s.em)
        .into_iter()
        .filter(|w| w.contains("/rollouts"))
        .collect();
    assert_eq!(rollouts.len(), 1, "{rollouts:?}");
    let versions = client.list_versions(&app.id).await.unwrap();
    let newest = versions.iter().max_by_key(|v| v.version).unwrap();
    assert!(
        newest
            .configuration
            .environment_variables
            .iter()
            .flatten()
            .any(|e| e.value == "second-password-2718")
    );
    let status = current(&s).status.clone().unwrap();
    assert!(
        flaredock::reconcile::status::is_ready(&status),
        "{status:?}"
    );
    assert!(status.drift.is_empty(), "a Secret's change is not drift");
    let events: Vec<Value> = s
        .fake
        .writes("/events")
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert!(
        events.iter().any(|e| e["reason"] == "RolloutStarted"),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| e["reason"] == "DriftCorrected"));
    // Nothing flaredock wrote to Kubernetes holds either value.
    let written: String = s
        .fake
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| r.body.to_string())
        .collect();
    assert!(!written.is_empty());
    for value in ["first-password-3141", "second-password-2718"] {
        assert!(
            !written.contains(value),
            "a Secret's value reached Kubernetes"
        );
        assert!(!serde_json::to_string(&status).unwrap().contains(value));
    }
    // Secrets are polled, not watched: a Ready object comes back within a minute, and
    // that poll costs nothing at Cloudflare when nothing changed.
    s.em.shared.clear_requests();
    let action = controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert!(
        requeue_after(&action) <= Duration::from_secs(66),
        "{action:?}"
    );
    assert!(
        s.em.shared.requests().is_empty(),
        "{:?}",
        s.em.shared.requests()
    );
}

fn base64_of(value: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(value)
}

#[tokio::test]
async fn an_adoption_waits_for_the_approval_of_what_is_there_now() {
    let s = setup(object("  adopt: true\n", &[FINALIZER]), true).await;
    let client = common::client_for(&s.em);
    let foreign = client
        .create_application(&common::foreign_application(
            "shop",
            &format!("{}/{}/hello:v1", s.em.registry_host(), s.em.account_id()),
            Some(DurableObjectsConfiguration::ScriptAndClass {
                script_name: DEMO_SCRIPT.into(),
                class_name: DEMO_CLASS.into(),
            }),
        ))
        .await
        .unwrap();
    s.em.shared.clear_requests();
    let container_writes = |s: &Setup| -> Vec<String> {
        common::cloudflare_writes(&s.em)
            .into_iter()
            .filter(|w| w.contains("/containers/"))
            .collect()
    };
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert!(
        container_writes(&s).is_empty(),
        "{:?}",
        container_writes(&s)
    );
    let status = current(&s).status.clone().unwrap();
    let pending = status
        .pending_adoption
        .clone()
        .expect("an adoption to review");
    let ready = flaredock::reconcile::status::condition(&status, "Ready").unwrap();
    assert_eq!(ready.reason, "AdoptionPending");
    assert!(
        ready.message.contains(&format!(
            "kubectl annotate cfc shop flaredock.dev/approve-adoption={}",
            pending.hash
        )),
        "{}",
        ready.message
    );
    let annotate = |value: &str| {
        s.fake.objects.lock().unwrap().get_mut(OBJECT_PATH).unwrap()["metadata"]["annotations"] =
            json!({"flaredock.dev/approve-adoption": value});
    };
    // A stale hash: nothing.
    annotate("0123456789ab");
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert!(container_writes(&s).is_empty());
    // Someone changes the application after the review: the approved hash no longer
    // describes it, and it is read afresh (not from the cache) before anything is done.
    change_max_instances(&client, &foreign.id, 9).await;
    s.em.shared.clear_requests();
    annotate(&pending.hash);
    controller::reconcile(current(&s), s.ctx.clone())
        .await
        .unwrap();
    assert!(
        container_writes(&s).is_empty(),
        "{:?}",
        container_writes(&s)
    );
    let again = current(&s).status.clone().unwrap();
    let renewed = again.pending_adoption.clone().expect("still to review");
    assert_ne!(renewed.hash, pending.hash);
    assert!(
        renewed
            .changes
            .iter()
            .any(|c| c.field == "max_instances" && c.found == "9"),
        "{renewed:?}"
    );
    // The new hash approves it; the rollout that adopts it runs to the end.
    annotate(&renewed.hash);
    for _ in 0..50 {
        controller::reconcile(current(&s), s.ctx.clone())
            .await
            .unwrap();
        if current(&s)
            .status
            .as_ref()
            .is_some_and(flaredock::reconcile::status::is_ready)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = current(&s).status.clone().unwrap();
    assert!(
        flaredock::reconcile::status::is_ready(&status),
        "{status:?}"
    );
    assert!(status.pending_adoption.is_none());
    let app = client.get_application(&foreign.id).await.unwrap();
    assert_eq!(
        app.configuration.label(flaredock::spec::OWNER_LABEL),
        Some("cli/apps.shop")
    );
    let reasons: Vec<String> = s.fake.event_reasons();
    assert!(reasons.contains(&"Adopted".to_string()), "{reasons:?}");
}

//! Each reconcile has a deadline (`--reconcile-timeout`). An object whose reconcile
//! cannot finish (its image's registry accepts connections and never answers) reports
//! `ReconcileTimedOut`, transient (not Stalled), and is requeued; another object
//! reconciled at the same time by the same controller converges meanwhile. The same
//! deadline bounds the core the command line drives.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use flaredock::controller::{self, Context, FINALIZER, Settings};
use flaredock::emulator::{DEMO_CLASS, DEMO_SCRIPT};
use flaredock::manifest::parse_document;
use flaredock::reconcile::reason::{Reason, ReasonKind};
use flaredock::spec::CloudflareContainer;
use flaredock::telemetry::metrics::Metrics;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use common::fake_kube::fake_kube;

const CONTAINERS: &str = "/apis/flaredock.dev/v1alpha1/namespaces/apps/cloudflarecontainers";
const SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/cloudflare";
/// Long enough for the fast object on a loaded machine, far below the registry
/// client's timeout.
const DEADLINE: Duration = Duration::from_secs(3);

/// A registry that accepts connections and never answers: a request to it ends only
/// with the client's own (30-minute) timeout.
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr.to_string(), task)
}

fn object(name: &str, image: &str) -> Value {
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata:\n  name: {name}\n  namespace: apps\n  uid: uid-{name}\n  generation: 1\n  resourceVersion: '1'\n  finalizers: [{FINALIZER}]\nspec:\n  className: {DEMO_CLASS}\n  image: {{reference: '{image}'}}\n  worker: {{scriptName: {DEMO_SCRIPT}}}\n  credentialsSecretRef: {{name: cloudflare}}\n"
    );
    serde_yaml_ng::from_str(&doc).expect("an object")
}

fn conditions_of(status: &Value) -> Vec<(String, String, String)> {
    status["conditions"]
        .as_array()
        .unwrap_or_else(|| panic!("no conditions: {status}"))
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or_default().to_string(),
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn condition(status: &Value, kind: &str) -> (String, String) {
    conditions_of(status)
        .into_iter()
        .find(|(t, _, _)| t == kind)
        .map(|(_, s, r)| (s, r))
        .unwrap_or_else(|| panic!("no {kind}: {status}"))
}

#[tokio::test]
async fn a_reconcile_past_its_deadline_is_requeued_with_a_transient_reason_and_others_converge() {
    let (hole, hole_task) = black_hole().await;
    let em = common::start_emulator(|_| {}).await;
    let (client, fake) = fake_kube();
    let slow_path = format!("{CONTAINERS}/slow");
    let fast_path = format!("{CONTAINERS}/fast");
    {
        let mut objects = fake.objects.lock().expect("objects");
        objects.insert(
            slow_path.clone(),
            object("slow", &format!("{hole}/shop:v1")),
        );
        objects.insert(fast_path.clone(), object("fast", "hello:v1"));
        objects.insert(
            SECRET_PATH.into(),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "cloudflare", "namespace": "apps", "resourceVersion": "7"},
                "stringData": {"apiToken": em.api_token(), "accountId": em.account_id()},
            }),
        );
    }
    let settings = Settings {
        api_base_url: em.base_url(),
        progress_poll: Duration::from_millis(50),
        reconcile_timeout: DEADLINE,
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
    let get = |path: &str| -> Arc<CloudflareContainer> {
        let v = fake.objects.lock().expect("objects")[path].clone();
        Arc::new(serde_json::from_value(v).expect("a CloudflareContainer"))
    };
    let (slow, fast) = (get(&slow_path), get(&fast_path));

    // Both at once, as two concurrency slots of one controller. Without a deadline the
    // slow one would hold its slot for the registry client's 30 minutes: the outer
    // bound fails the test instead of hanging it.
    let (slow_result, fast_result) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(
            controller::reconcile(slow.clone(), ctx.clone()),
            controller::reconcile(fast.clone(), ctx.clone()),
        )
    })
    .await
    .expect("the deadline ended the slow reconcile");

    // The other object converged meanwhile.
    fast_result.expect("the fast object reconciles");
    let fast_status = fake
        .writes(&format!("{fast_path}/status"))
        .last()
        .map(|w| w.body["status"].clone())
        .expect("a status for the fast object");
    assert_eq!(condition(&fast_status, "Ready").0, "True", "{fast_status}");

    // The slow one: an error (so backoff applies), its status saying why, transient.
    let error = slow_result.expect_err("the slow reconcile fails at its deadline");
    assert!(error.to_string().contains("reconcile-timeout"), "{error}");
    let slow_status = fake
        .writes(&format!("{slow_path}/status"))
        .last()
        .map(|w| w.body["status"].clone())
        .expect("a status for the slow object");
    let (ready, ready_reason) = condition(&slow_status, "Ready");
    assert_eq!(ready, "False", "{slow_status}");
    assert_eq!(
        Reason::parse(&ready_reason),
        Some(Reason::ReconcileTimedOut),
        "{slow_status}"
    );
    assert_eq!(Reason::ReconcileTimedOut.kind(), ReasonKind::Transient);
    assert_eq!(
        condition(&slow_status, "Reconciling"),
        ("True".to_string(), ready_reason.clone())
    );
    assert_eq!(
        condition(&slow_status, "Stalled").0,
        "False",
        "{slow_status}"
    );
    // Requeued: the error policy brings it back (with backoff), not on a change only.
    let next = controller::error_policy(slow, &error, ctx.clone());
    assert_ne!(next, Action::await_change(), "{next:?}");
    // Nothing was written at Cloudflare for the slow object.
    let apps = common::client_for(&em)
        .list_applications()
        .await
        .expect("applications");
    assert_eq!(
        apps.len(),
        1,
        "only the fast object's application: {apps:?}"
    );

    hole_task.abort();
    em.stop().await;
}

#[tokio::test]
async fn the_core_the_command_line_drives_has_the_same_deadline() {
    let (hole, hole_task) = black_hole().await;
    let em = common::start_emulator(|_| {}).await;
    let r = common::reconciler_for(&common::client_for(&em)).with_reconcile_timeout(DEADLINE);
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: slow, namespace: apps, generation: 1}}\nspec:\n  className: {DEMO_CLASS}\n  image: {{reference: '{hole}/shop:v1'}}\n  worker: {{scriptName: {DEMO_SCRIPT}}}\n"
    );
    let obj: CloudflareContainer = parse_document(&doc, "t.yaml", 1)
        .expect("valid")
        .expect("object");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        r.reconcile(&obj, None, &std::collections::HashMap::new()),
    )
    .await
    .expect("the deadline ended the reconcile");
    assert!(out.timed_out);
    assert!(!out.ready() && !out.stalled(), "{:#?}", out.status);
    let ready = flaredock::reconcile::status::condition(&out.status, "Ready").expect("Ready");
    assert!(Reason::ReconcileTimedOut.is(&ready.reason), "{ready:?}");
    assert!(ready.message.contains("--reconcile-timeout"), "{ready:?}");
    hole_task.abort();
    em.stop().await;
}

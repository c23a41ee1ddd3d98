//! Bounded waits and one writer: a long `retry-after` never sleeps in a reconcile (the
//! token is blocked, its calls fail fast, its objects come back when it may send
//! again, other tenants go on); every write is fenced by the leadership's remaining
//! time (refused past the local deadline, its timeout cut before it); a failed read of
//! a namespace or a Secret is transient, never Stalled.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use flaredock::cloudflare::{
    ApiError, ClientConfig, CloudflareClient, Limiters, Secret, WriteGate,
};
use flaredock::controller::leadership::Leadership;
use flaredock::controller::{self, Context, FINALIZER, Settings};
use flaredock::emulator::ScriptedFault;
use flaredock::oci::{RegistryClient, RegistryError};
use flaredock::reconcile::DeleteOutcome;
use flaredock::reconcile::images::{PeerIndex, being_deleted};
use flaredock::reconcile::plan::Blocked;
use flaredock::spec::CloudflareContainer;
use flaredock::telemetry::metrics::Metrics;
use serde_json::{Value, json};
use tokio::time::Instant;

use common::fake_kube::{FakeState, fake_kube};
use common::requeue_after;

/// The second tenant's token (the first one's is the emulator's default).
const TOKEN_B: &str = "tenant-b-token-0000000000000000";

use common::app_request;

fn client_of(
    em: &flaredock::emulator::RunningEmulator,
    token: &str,
    limiters: &Limiters,
    tweak: impl FnOnce(&mut ClientConfig),
) -> CloudflareClient {
    let mut config = ClientConfig::new(em.base_url(), em.account_id(), Secret::new(token));
    config.backoff = Duration::from_millis(10);
    tweak(&mut config);
    let limiter = limiters.for_token(&config.token, config.rate_limit);
    CloudflareClient::with_limiter(config, limiter).expect("client")
}

// ---- 429 ----------------------------------------------------------------------------

#[tokio::test]
async fn a_long_retry_after_returns_at_once_and_blocks_only_that_token() {
    let em = common::start_emulator(|c| c.other_api_tokens = vec![TOKEN_B.into()]).await;
    let limiters = Limiters::new();
    let a = client_of(&em, em.api_token(), &limiters, |_| {});
    let b = client_of(&em, TOKEN_B, &limiters, |_| {});
    em.shared
        .push_fault_for_token(None, Some(em.api_token()), ScriptedFault::RateLimit(600));

    let started = Instant::now();
    let e = a.list_applications().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "returned after {:?}",
        started.elapsed()
    );
    match &e {
        ApiError::RateLimited {
            retry_after,
            answered,
            ..
        } => {
            assert!(*answered, "Cloudflare answered 429");
            assert_eq!(retry_after.as_secs(), 600);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(em.shared.requests().len(), 1);

    // Later calls with that token (another client of it too) fail fast, unsent.
    let again = client_of(&em, em.api_token(), &limiters, |_| {});
    let started = Instant::now();
    let e = again.list_applications().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(e, ApiError::RateLimited { answered: false, retry_after, .. } if retry_after > Duration::from_secs(590)),
        "{e:?}"
    );
    assert!(e.to_string().contains("flaredock tries again at"), "{e}");
    assert_eq!(em.shared.requests().len(), 1, "nothing sent while blocked");

    // The other tenant's token is not blocked, at Cloudflare or here.
    b.create_application(&app_request(&em, "tenant-b"))
        .await
        .unwrap();
    assert_eq!(b.list_applications().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_short_retry_after_is_waited_once_then_returned() {
    let em = common::start_emulator(|_| {}).await;
    let limiters = Limiters::new();
    let client = client_of(&em, em.api_token(), &limiters, |_| {});
    em.shared.push_fault(None, ScriptedFault::RateLimit(1));
    let started = Instant::now();
    assert!(client.list_applications().await.unwrap().is_empty());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the second waited"
    );
    assert_eq!(em.shared.requests().len(), 2);

    // Two in a row: the first is waited, the second returned.
    em.shared.clear_requests();
    em.shared.push_fault(None, ScriptedFault::RateLimit(1));
    em.shared.push_fault(None, ScriptedFault::RateLimit(1));
    let e = client.list_applications().await.unwrap_err();
    assert!(
        matches!(e, ApiError::RateLimited { answered: true, .. }),
        "{e:?}"
    );
    assert_eq!(em.shared.requests().len(), 2);
}

// ---- leadership fences writes --------------------------------------------------------

#[tokio::test]
async fn a_write_after_the_local_lease_deadline_is_refused() {
    let em = common::start_emulator(|_| {}).await;
    let request = app_request(&em, "fenced");
    let leadership = Arc::new(Leadership::elected(Duration::from_secs(15)));
    let limiters = Limiters::new();
    let client = client_of(&em, em.api_token(), &limiters, |c| {
        c.write_gate = Some(leadership.gate())
    });
    // The clock stands still from here: only refused writes follow (no I/O).
    tokio::time::pause();
    leadership.observe(true, Some("2026-11-27T10:00:00Z"));
    // Renewals stop; 1.5 s before the deadline too little is left for a write
    // (its timeout would have to end 1 s before it, leaving half a second).
    tokio::time::advance(Duration::from_millis(8_500)).await;
    assert!(leadership.may_write());
    let e = client.create_application(&request).await.unwrap_err();
    assert!(matches!(e, ApiError::NotLeader { .. }), "{e:?}");
    // Past the deadline: refused.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(!leadership.may_write());
    let e = client.create_application(&request).await.unwrap_err();
    assert!(matches!(e, ApiError::NotLeader { .. }), "{e:?}");
    let e = client.delete_application("any").await.unwrap_err();
    assert!(matches!(e, ApiError::NotLeader { .. }), "{e:?}");
    tokio::time::resume();
    assert!(
        em.shared.requests().is_empty(),
        "nothing reached Cloudflare: {:?}",
        em.shared.requests()
    );
    // A renewal seen again: the write goes.
    leadership.observe(true, Some("2026-11-27T10:00:14Z"));
    client.create_application(&request).await.unwrap();
}

#[tokio::test]
async fn a_writes_timeout_is_capped_by_the_remaining_lease() {
    // Every answer takes 4 s; the normal timeout (30 s) would wait for it.
    let em = common::start_emulator(|c| c.latency = Duration::from_secs(4)).await;
    let request = app_request(&em, "slow");
    let remaining = Arc::new(std::sync::Mutex::new(Some(Duration::from_millis(2_500))));
    let r = remaining.clone();
    let limiters = Limiters::new();
    let client = client_of(&em, em.api_token(), &limiters, |c| {
        c.write_gate = Some(WriteGate::new(move || *r.lock().unwrap()))
    });
    let started = Instant::now();
    let e = client.create_application(&request).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            e,
            ApiError::Transport {
                maybe_applied: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("timed out"), "{e}");
    // 2.5 s left, less the 1 s margin: the request gave up after 1.5 s.
    assert!(
        took >= Duration::from_millis(1_400) && took < Duration::from_millis(3_000),
        "gave up after {took:?}"
    );
    // Reads are not fenced: they wait the 4 s out.
    let started = Instant::now();
    client.list_applications().await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(4));
    // With time enough, the write waits for its answer.
    *remaining.lock().unwrap() = Some(Duration::from_secs(60));
    client
        .create_application(&app_request(&em, "slow-but-led"))
        .await
        .unwrap();
}

/// A TCP server that accepts connections, counts them and never answers.
async fn silent_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (host, count)
}

#[tokio::test]
async fn registry_pushes_pass_the_same_gate() {
    let (host, connections) = silent_server().await;
    let url = format!("http://{host}/v2/acct/app/manifests/v1");
    let open = Arc::new(std::sync::Mutex::new(None::<Duration>));
    let o = open.clone();
    let client = RegistryClient::new(vec![])
        .unwrap()
        .with_write_gate(WriteGate::new(move || *o.lock().unwrap()));
    // Closed: not sent.
    let e = client
        .send(&host, "acct/app", None, true, |c| c.put(&url))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not sent"), "{e}");
    assert!(
        matches!(&e, RegistryError::NotLeader { host: h, what } if *h == host && what.starts_with("PUT ")),
        "a typed refusal, not a transport failure: {e:?}"
    );
    assert!(!e.is_retryable(), "not retried within the copy");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0, "no connection made");
    // Open for 2.5 s: the manifest write gives up 1 s before the gate closes, not
    // after the registry's 30 minutes.
    *open.lock().unwrap() = Some(Duration::from_millis(2_500));
    let started = Instant::now();
    let e = client
        .send(&host, "acct/app", None, true, |c| c.put(&url))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_400) && took < Duration::from_secs(3),
        "{took:?}: {e}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

// ---- the controller ----------------------------------------------------------------

fn container(ns: &str, class: &str, secret: Option<&str>) -> Value {
    let mut v: Value = serde_yaml_ng::from_str(&format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata:\n  name: shop\n  namespace: {ns}\n  uid: uid-{ns}\n  generation: 1\n  resourceVersion: '1'\n  finalizers: ['{FINALIZER}']\nspec:\n  className: {class}\n  image: {{reference: 'hello:v1'}}\n  worker: {{scriptName: tenants}}\n"
    ))
    .unwrap();
    if let Some(s) = secret {
        v["spec"]["credentialsSecretRef"] = json!({"name": s});
    }
    v
}

fn object_path(ns: &str) -> String {
    format!("/apis/flaredock.dev/v1alpha1/namespaces/{ns}/cloudflarecontainers/shop")
}

fn current(fake: &FakeState, ns: &str) -> Arc<CloudflareContainer> {
    let v = fake.objects.lock().unwrap()[&object_path(ns)].clone();
    Arc::new(serde_json::from_value(v).unwrap())
}

fn secret(ns: &str, token: &str, account: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "cloudflare", "namespace": ns, "resourceVersion": "7"},
        "stringData": {"apiToken": token, "accountId": account},
    })
}

fn settings(em: &flaredock::emulator::RunningEmulator) -> Settings {
    Settings {
        api_base_url: em.base_url(),
        progress_poll: Duration::from_millis(50),
        ..Default::default()
    }
}

/// The last status written for the object of `ns`.
fn last_status(fake: &FakeState, ns: &str) -> Value {
    fake.writes(&format!("namespaces/{ns}/cloudflarecontainers/shop/status"))
        .last()
        .map(|w| w.body["status"].clone())
        .unwrap_or(Value::Null)
}

fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} in {status}"))
}

#[tokio::test]
async fn a_throttled_tenant_frees_its_slot_and_another_converges_meanwhile() {
    let em = common::start_emulator(|c| c.other_api_tokens = vec![TOKEN_B.into()]).await;
    em.put_script("tenants", &["ClassA", "ClassB"]);
    let (client, fake) = fake_kube();
    {
        let mut objects = fake.objects.lock().unwrap();
        for (ns, class, token) in [("a", "ClassA", em.api_token()), ("b", "ClassB", TOKEN_B)] {
            objects.insert(object_path(ns), container(ns, class, Some("cloudflare")));
            objects.insert(
                format!("/api/v1/namespaces/{ns}/secrets/cloudflare"),
                secret(ns, token, em.account_id()),
            );
        }
    }
    let ctx = Arc::new(Context::new(
        client,
        settings(&em),
        Arc::new(Metrics::new()),
        Arc::new(AtomicBool::new(true)),
    ));
    // Tenant a's token is throttled for ten minutes.
    em.shared
        .push_fault_for_token(None, Some(em.api_token()), ScriptedFault::RateLimit(600));

    let (a, b) = tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::join(
            controller::reconcile(current(&fake, "a"), ctx.clone()),
            controller::reconcile(current(&fake, "b"), ctx.clone()),
        ),
    )
    .await
    .expect("no reconcile sleeps out a 10-minute retry-after");
    b.expect("tenant b reconciles");
    let status_b = last_status(&fake, "b");
    assert_eq!(
        condition(&status_b, "Ready")["status"],
        "True",
        "{status_b}"
    );

    // Tenant a: an error that comes back when the token may send again, not on the
    // backoff's schedule (2 s for a first failure), with that time in its status.
    let error = a.expect_err("tenant a is rate limited");
    let action = controller::error_policy(current(&fake, "a"), &error, ctx.clone());
    let again = requeue_after(&action);
    assert!(
        again >= Duration::from_secs(590) && again <= Duration::from_secs(602),
        "{action:?}"
    );
    let status_a = last_status(&fake, "a").to_string();
    assert!(status_a.contains("RateLimited"), "{status_a}");
    assert!(status_a.contains("flaredock tries again at"), "{status_a}");
    let stalled = condition(&last_status(&fake, "a"), "Stalled")["status"].clone();
    assert_ne!(
        stalled, "True",
        "a throttled token is not Stalled: {status_a}"
    );

    // An early trigger (a watch event, the resync) waits it out: nothing is sent.
    let requests = em.shared.requests().len();
    let action = controller::reconcile(current(&fake, "a"), ctx.clone())
        .await
        .unwrap();
    assert!(
        requeue_after(&action) >= Duration::from_secs(580),
        "{action:?}"
    );
    assert_eq!(em.shared.requests().len(), requests);

    // Tenant b goes on converging: a change of its spec is applied at once.
    {
        let mut objects = fake.objects.lock().unwrap();
        let obj = objects.get_mut(&object_path("b")).unwrap();
        obj["spec"]["maxInstances"] = json!(4);
        obj["metadata"]["generation"] = json!(2);
    }
    controller::reconcile(current(&fake, "b"), ctx.clone())
        .await
        .unwrap();
    let apps = client_of(&em, TOKEN_B, &Limiters::new(), |_| {})
        .list_applications()
        .await
        .unwrap();
    assert_eq!(apps.len(), 1, "only tenant b has an application: {apps:?}");
    assert_eq!(apps[0].max_instances, Some(4));
}

#[tokio::test]
async fn a_transient_500_on_a_secret_read_is_not_stalled() {
    let em = common::start_emulator(|_| {}).await;
    em.put_script("tenants", &["ClassA"]);
    let (client, fake) = fake_kube();
    let secret_path = "/api/v1/namespaces/a/secrets/cloudflare".to_string();
    {
        let mut objects = fake.objects.lock().unwrap();
        objects.insert(
            object_path("a"),
            container("a", "ClassA", Some("cloudflare")),
        );
        objects.insert(
            secret_path.clone(),
            secret("a", em.api_token(), em.account_id()),
        );
    }
    fake.failing.lock().unwrap().push(secret_path.clone());
    let ctx = Arc::new(Context::new(
        client,
        settings(&em),
        Arc::new(Metrics::new()),
        Arc::new(AtomicBool::new(true)),
    ));
    let error = controller::reconcile(current(&fake, "a"), ctx.clone())
        .await
        .expect_err("a failed read is an error, retried");
    let action = controller::error_policy(current(&fake, "a"), &error, ctx.clone());
    let backoff = requeue_after(&action);
    assert!(
        backoff <= Duration::from_secs(3),
        "retried with backoff (2 s first): {action:?}"
    );
    let stalled = last_status(&fake, "a");
    assert!(
        stalled.is_null() || condition(&stalled, "Stalled")["status"] != "True",
        "not Stalled: {stalled}"
    );
    assert!(
        fake.event_reasons().is_empty(),
        "no refusal reported: {:?}",
        fake.event_reasons()
    );
    assert!(em.shared.requests().is_empty());

    // The API server recovers: the next attempt, after the backoff, converges.
    fake.failing.lock().unwrap().clear();
    tokio::time::sleep(backoff).await;
    controller::reconcile(current(&fake, "a"), ctx.clone())
        .await
        .unwrap();
    let status = last_status(&fake, "a");
    assert_eq!(condition(&status, "Ready")["status"], "True", "{status}");
}

#[tokio::test]
async fn a_failed_namespace_read_is_transient_and_not_cached_as_not_allowed() {
    let em = common::start_emulator(|_| {}).await;
    em.put_script("tenants", &["ClassA"]);
    let (client, fake) = fake_kube();
    {
        let mut objects = fake.objects.lock().unwrap();
        objects.insert(object_path("a"), container("a", "ClassA", None));
        objects.insert(
            "/api/v1/namespaces/a".into(),
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "a", "labels": {"flaredock.dev/default-credentials": "allow"}}}),
        );
    }
    fake.failing
        .lock()
        .unwrap()
        .push("/api/v1/namespaces/a".into());
    let mut settings = settings(&em);
    settings.default_credentials = Some((em.account_id().to_string(), Secret::new(em.api_token())));
    let ctx = Arc::new(Context::new(
        client,
        settings,
        Arc::new(Metrics::new()),
        Arc::new(AtomicBool::new(true)),
    ));
    let error = controller::reconcile(current(&fake, "a"), ctx.clone())
        .await
        .expect_err("a failed read is an error, retried");
    assert!(error.to_string().contains("namespace a"), "{error}");
    let status = last_status(&fake, "a");
    assert!(
        status.is_null() || condition(&status, "Stalled")["status"] != "True",
        "not Stalled, not DefaultCredentialsNotAllowed: {status}"
    );
    // Not remembered as "not allowed": the next attempt, a second later, reads it.
    fake.failing.lock().unwrap().clear();
    controller::reconcile(current(&fake, "a"), ctx.clone())
        .await
        .unwrap();
    let status = last_status(&fake, "a");
    assert_eq!(condition(&status, "Ready")["status"], "True", "{status}");
}

// ---- a restart in the middle of an asynchronous delete ------------------------------

fn named(ns: &str, name: &str, application: &str, extra: &str) -> CloudflareContainer {
    flaredock::manifest::parse_document(
        &format!(
            "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: {name}, namespace: {ns}, generation: 1}}\nspec:\n  applicationName: {application}\n  className: C0\n  image: {{reference: 'hello:v1'}}\n  worker: {{scriptName: w}}\n{extra}"
        ),
        "restart.yaml",
        1,
    )
    .unwrap()
    .unwrap()
}

async fn reconcile_until_ready(
    r: &flaredock::reconcile::Reconciler,
    obj: &mut CloudflareContainer,
    peers: &PeerIndex,
) {
    for _ in 0..30 {
        let out = r.reconcile(obj, obj.status.as_ref(), peers).await;
        obj.status = Some(out.status.clone());
        if out.ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} not Ready: {:?}", obj.name(), obj.status);
}

#[tokio::test]
async fn a_restart_mid_delete_adopts_and_patches_nothing_being_deleted() {
    // Cloudflare deletes asynchronously: the application stays listed, name and
    // namespace taken, for 3 s after its DELETE was accepted.
    let em = common::start_emulator(|c| c.delete_delay = Duration::from_secs(3)).await;
    em.shared
        .account()
        .seed_script("w", vec!["C0".into()], None, true, true);
    let client = common::client_for(&em);
    let none = PeerIndex::default();

    let first = common::reconciler_for(&client);
    let mut x = named("a", "x", "shop", "");
    reconcile_until_ready(&first, &mut x, &none).await;
    let shop = x.status.as_ref().unwrap().application_id.clone().unwrap();
    // `kubectl delete` of x: its finalizer holds, its status keeps the application id.
    x.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    let outcome = first.delete(&x).await.unwrap();
    assert!(
        matches!(outcome, DeleteOutcome::Waiting { .. }),
        "the finalizer holds while Cloudflare lists the application: {outcome:?}"
    );

    // The controller restarts: a new view and reconciler, nothing in memory. The
    // emulator still lists the application being deleted.
    let second = common::reconciler_for(&client);
    let listed = client.list_applications().await.unwrap();
    assert!(listed.iter().any(|a| a.id == shop), "still listed");
    em.shared.clear_requests();
    // Another object wants the same name and Durable Object namespace, adoption
    // automatic; it is reconciled first, before x's own delete pass runs again.
    let peers = PeerIndex {
        deleting: being_deleted([&x]),
        ..PeerIndex::default()
    };
    let mut y = named(
        "b",
        "y",
        "shop",
        "  adopt: true\n  adoptionApproval: Automatic\n",
    );
    let out = second.reconcile(&y, None, &peers).await;
    assert!(
        matches!(&out.plan.blocked, Some(Blocked::Waiting { reason, .. }) if *reason == flaredock::reconcile::reason::Reason::PreviousDeleting),
        "waits for the deletion, neither taken for live nor refused: {:?} {:?}",
        out.plan.blocked,
        out.status.conditions
    );
    assert!(!out.stalled(), "{:?}", out.status.conditions);
    assert_eq!(
        common::cloudflare_writes(&em),
        Vec::<String>::new(),
        "nothing adopted, patched or created while shop is being deleted"
    );
    // x's delete pass after the restart: the finalizer still holds.
    let outcome = second.delete(&x).await.unwrap();
    assert!(
        matches!(outcome, DeleteOutcome::Waiting { .. }),
        "{outcome:?}"
    );
    let out = second.reconcile(&y, None, &peers).await;
    assert!(
        !out.stalled() && !out.ready(),
        "{:?}",
        out.status.conditions
    );
    assert!(
        common::cloudflare_writes(&em).iter().all(|w| w
            == &format!(
                "DELETE /client/v4/accounts/{}/containers/applications/{shop}",
                em.account_id()
            )),
        "only x's DELETE was sent again: {:?}",
        common::cloudflare_writes(&em)
    );

    // Once Cloudflare no longer lists it: x lets go, and y gets its own application.
    let started = Instant::now();
    loop {
        match second.delete(&x).await.unwrap() {
            DeleteOutcome::Deleted(_) => break,
            other => assert!(started.elapsed() < Duration::from_secs(10), "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1_000),
        "held until gone"
    );
    reconcile_until_ready(&second, &mut y, &none).await;
    let ys = y.status.as_ref().unwrap().application_id.clone().unwrap();
    assert_ne!(ys, shop, "a new application, not the deleted one");
}

// ---- a mass delete lists the account once per poll, not once per object -------------

#[tokio::test]
async fn fifty_deletes_share_one_fresh_list_per_pass() {
    const N: usize = 50;
    let em = common::start_emulator(|c| c.delete_delay = Duration::from_secs(1)).await;
    let classes: Vec<String> = (0..N).map(|i| format!("C{i}")).collect();
    em.shared
        .account()
        .seed_script("w", classes, None, true, true);
    let client = common::client_for(&em);
    let r = common::reconciler_for(&client);
    let none = PeerIndex::default();
    let mut objs = Vec::new();
    for i in 0..N {
        let mut o = flaredock::manifest::parse_document(
            &format!(
                "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: o{i}, namespace: many, generation: 1}}\nspec:\n  applicationName: app{i}\n  className: C{i}\n  image: {{reference: 'hello:v1'}}\n  worker: {{scriptName: w}}\n"
            ),
            "many.yaml",
            1,
        )
        .unwrap()
        .unwrap();
        reconcile_until_ready(&r, &mut o, &none).await;
        o.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        ));
        objs.push(o);
    }
    assert_eq!(client.list_applications().await.unwrap().len(), N);
    em.shared.clear_requests();

    // Delete passes over all objects, as the controller's requeues would run them.
    let started = Instant::now();
    let mut pending: Vec<&CloudflareContainer> = objs.iter().collect();
    let mut passes = 0;
    let mut deleted = 0;
    while !pending.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} left",
            pending.len()
        );
        passes += 1;
        let mut still = Vec::new();
        for o in pending {
            match r.delete(o).await.unwrap() {
                DeleteOutcome::Deleted(_) => deleted += 1,
                DeleteOutcome::Waiting { names, .. } => {
                    assert_eq!(names, [o.spec.application_name.clone().unwrap()]);
                    still.push(o);
                }
                other => panic!("{other:?}"),
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(deleted, N);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "held until Cloudflare let go"
    );
    assert!(
        client.list_applications().await.unwrap().is_empty(),
        "all gone"
    );
    let requests = em.shared.requests();
    let lists = requests
        .iter()
        .filter(|q| q.method == "GET" && q.path.ends_with("/containers/applications"))
        .count();
    let deletes = requests.iter().filter(|q| q.method == "DELETE").count();
    assert!(passes >= 2, "{passes} passes");
    // At most one shared list per pass over all objects (plus the view's own refresh),
    // where each delete listing for itself would cost 50 or more per pass.
    assert!(
        lists <= 2 * passes,
        "{lists} list calls for {N} deletes in {passes} passes"
    );
    // One DELETE per application: while a list still shows it, it is only read again.
    assert_eq!(deletes, N, "every application got its DELETE, once");
    eprintln!("{N} deletes: {passes} passes, {lists} lists, {deletes} DELETEs");
}

#[tokio::test]
async fn a_delete_is_sent_once_while_listed_and_again_only_after_it_failed() {
    let em = common::start_emulator(|c| c.delete_delay = Duration::from_millis(800)).await;
    em.shared
        .account()
        .seed_script("w", vec!["C0".into()], None, true, true);
    // One attempt per call: a failed DELETE fails the pass.
    let client = common::client_with(&em, |c| c.max_attempts = 1);
    let r = common::reconciler_for(&client);
    let none = PeerIndex::default();
    let mut x = named("a", "x", "shop", "");
    reconcile_until_ready(&r, &mut x, &none).await;
    x.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    em.shared.clear_requests();
    let deletes = || {
        em.shared
            .requests()
            .iter()
            .filter(|q| q.method == "DELETE")
            .count()
    };

    // The first DELETE fails: the pass says so, and the next pass sends it again.
    em.shared
        .push_fault(Some("DELETE"), ScriptedFault::ServerError(500));
    assert!(r.delete(&x).await.is_err());
    assert_eq!(deletes(), 1);
    let mut passes = 0;
    loop {
        passes += 1;
        assert!(passes < 100, "still listed after {passes} passes");
        match r.delete(&x).await.unwrap() {
            DeleteOutcome::Deleted(_) => break,
            DeleteOutcome::Waiting { .. } => {}
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        passes >= 3,
        "Cloudflare kept it listed a while: {passes} passes"
    );
    // The failed one and the one accepted; none while it was still listed.
    assert_eq!(deletes(), 2);
    assert!(client.list_applications().await.unwrap().is_empty());
}

//! End-to-end `apply` against the emulator, with a real `docker-registry` process
//! (htpasswd basic auth) standing in for Cloudflare's registry.

mod common;

use std::process::Command;
use std::time::Duration;

use flaredock::cloudflare::types::*;
use flaredock::emulator::{DEMO_CLASS, DEMO_SCRIPT, RunningEmulator, ScriptedFault};
use flaredock::manifest::parse_document;
use flaredock::reconcile::{ConvergeOptions, ReconcileOutcome, Reconciler, converge};
use flaredock::spec::CloudflareContainer;

fn manifest(extra: &str) -> CloudflareContainer {
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: shop, namespace: apps}}\nspec:\n  className: {DEMO_CLASS}\n  worker: {{scriptName: {DEMO_SCRIPT}}}\n  maxInstances: 4\n{extra}"
    );
    parse_document(&doc, "t.yaml", 1)
        .expect("valid")
        .expect("object")
}

struct Setup {
    _registry: common::DockerRegistry,
    em: common::Emulator,
    v1: String,
    v2: String,
}

async fn setup() -> Setup {
    let registry = common::DockerRegistry::start_with_auth("cf-user", "cf-pass");
    let em = common::start_emulator(|c| c.registry = Some(registry.as_external())).await;
    let v1 = common::push_to_cloudflare(
        &em,
        "shop",
        "v1",
        &common::synthetic_image(&[2048, 4096], 1),
    )
    .await;
    let v2 = common::push_to_cloudflare(
        &em,
        "shop",
        "v2",
        &common::synthetic_image(&[2048, 4096], 2),
    )
    .await;
    em.shared.clear_requests();
    Setup {
        _registry: registry,
        em,
        v1,
        v2,
    }
}

async fn apply(reconciler: &Reconciler, obj: &CloudflareContainer) -> ReconcileOutcome {
    reconciler.view.invalidate().await;
    reconciler.images.new_round().await;
    let options = ConvergeOptions {
        timeout: Duration::from_secs(30),
        poll: Duration::from_millis(20),
        ..Default::default()
    };
    let mut outcomes = converge(reconciler, std::slice::from_ref(obj), &options, |_, _| {}).await;
    outcomes.remove(&obj.key()).expect("an outcome")
}

async fn apps(em: &RunningEmulator) -> Vec<Application> {
    common::client_for(em)
        .list_applications()
        .await
        .expect("list")
}

#[tokio::test]
async fn converges_then_reapply_writes_nothing() {
    let s = setup().await;
    let client = common::client_for(&s.em);
    let reconciler = common::reconciler_for(&client);
    let obj = manifest("  image: {reference: 'shop:v1'}\n");
    let out = apply(&reconciler, &obj).await;
    assert!(out.ready(), "{:#?}", out.status);
    assert_eq!(
        out.status.image.as_deref(),
        Some(s.v1.as_str()),
        "deployed by digest"
    );
    let live = apps(&s.em).await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].configuration.image, s.v1);
    assert_eq!(live[0].max_instances, Some(4));
    assert!(out.status.durable_object_namespace_id.is_some());

    s.em.shared.clear_requests();
    let fresh = common::reconciler_for(&common::client_for(&s.em));
    let again = apply(&fresh, &obj).await;
    assert!(again.ready());
    assert!(again.plan.is_noop(), "{:?}", again.plan);
    assert!(
        common::cloudflare_writes(&s.em).is_empty(),
        "re-apply wrote: {:?}",
        common::cloudflare_writes(&s.em)
    );
    let calls = s.em.shared.requests().len();
    assert!(
        calls <= 5,
        "re-apply made {calls} API calls: {:?}",
        s.em.shared.requests()
    );
}

#[tokio::test]
async fn max_instances_change_is_one_patch_and_no_rollout() {
    let s = setup().await;
    let reconciler = common::reconciler_for(&common::client_for(&s.em));
    assert!(
        apply(&reconciler, &manifest("  image: {reference: 'shop:v1'}\n"))
            .await
            .ready()
    );
    s.em.shared.clear_requests();
    let changed = manifest("  image: {reference: 'shop:v1'}\n").tap(|o| o.spec.max_instances = 9);
    let out = apply(&reconciler, &changed).await;
    assert!(out.ready());
    let w = common::cloudflare_writes(&s.em);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("PATCH "), "{w:?}");
    assert!(!w.iter().any(|x| x.ends_with("/rollouts")));
    assert_eq!(apps(&s.em).await[0].max_instances, Some(9));
}

#[tokio::test]
async fn image_change_is_one_rollout_to_the_new_digest() {
    let s = setup().await;
    let reconciler = common::reconciler_for(&common::client_for(&s.em));
    assert!(
        apply(&reconciler, &manifest("  image: {reference: 'shop:v1'}\n"))
            .await
            .ready()
    );
    s.em.shared.clear_requests();
    let out = apply(&reconciler, &manifest("  image: {reference: 'shop:v2'}\n")).await;
    assert!(out.ready(), "{:#?}", out.status);
    let w = common::cloudflare_writes(&s.em);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].ends_with("/rollouts"));
    let live = apps(&s.em).await;
    assert_eq!(live[0].configuration.image, s.v2);
    assert_eq!(live[0].version, 2);
    assert_eq!(out.status.image.as_deref(), Some(s.v2.as_str()));
    assert_eq!(
        out.status.rollout.as_ref().map(|r| r.status.as_str()),
        Some("completed")
    );
}

#[tokio::test]
async fn a_foreign_application_is_refused_then_adopted_never_duplicated() {
    let s = setup().await;
    let client = common::client_for(&s.em);
    client
        .create_application(&common::foreign_application("shop", &s.v1, None))
        .await
        .unwrap();
    s.em.shared.clear_requests();
    let reconciler = common::reconciler_for(&client);
    let out = apply(&reconciler, &manifest("  image: {reference: 'shop:v1'}\n")).await;
    assert!(out.stalled(), "{:#?}", out.status);
    assert!(!out.ready());
    let ready = flaredock::reconcile::status::condition(&out.status, "Ready").unwrap();
    assert!(ready.message.contains("adopt"), "{}", ready.message);
    assert!(
        common::cloudflare_writes(&s.em)
            .iter()
            .all(|x| !x.contains("/containers/")),
        "no container writes: {:?}",
        common::cloudflare_writes(&s.em)
    );

    // An app without a Durable Object binding cannot be taken for a DO class: still refused.
    let adopted = apply(
        &reconciler,
        &manifest(
            "  image: {reference: 'shop:v1'}\n  adopt: true\n  adoptionApproval: Automatic\n",
        ),
    )
    .await;
    assert!(adopted.stalled(), "{:#?}", adopted.status);
    assert_eq!(apps(&s.em).await.len(), 1, "never duplicated");
}

#[tokio::test]
async fn adopt_takes_over_an_application_in_the_same_namespace() {
    let s = setup().await;
    let client = common::client_for(&s.em);
    // Someone created the application by hand, bound to the class's namespace (the
    // demo Worker is seeded as wrangler deploys it: the class container-enabled).
    client
        .create_application(&common::foreign_application(
            "shop",
            &s.v1,
            Some(DurableObjectsConfiguration::ScriptAndClass {
                script_name: DEMO_SCRIPT.into(),
                class_name: DEMO_CLASS.into(),
            }),
        ))
        .await
        .unwrap();
    let reconciler = common::reconciler_for(&client);
    let refused = apply(&reconciler, &manifest("  image: {reference: 'shop:v1'}\n")).await;
    assert!(refused.stalled());
    // adopt: the changes adoption would make wait for a person's approval, by hash.
    s.em.shared.clear_requests();
    let pending = apply(
        &reconciler,
        &manifest("  image: {reference: 'shop:v1'}\n  adopt: true\n"),
    )
    .await;
    assert!(pending.awaiting_approval(), "{:#?}", pending.status);
    assert!(
        common::cloudflare_writes(&s.em).is_empty(),
        "nothing written before approval: {:?}",
        common::cloudflare_writes(&s.em)
    );
    let p = pending.status.pending_adoption.clone().unwrap();
    assert!(
        p.changes.iter().any(|c| c.field == "max_instances"),
        "{p:?}"
    );
    let ready = flaredock::reconcile::status::condition(&pending.status, "Ready").unwrap();
    assert_eq!(ready.reason, "AdoptionPending");
    assert!(ready.message.contains(&p.hash), "{}", ready.message);
    // A stale approval (another hash) is ignored.
    let stale = manifest("  image: {reference: 'shop:v1'}\n  adopt: true\n");
    let mut stale = stale;
    stale.metadata.annotations = Some(
        [(
            "flaredock.dev/approve-adoption".to_string(),
            "0123456789ab".to_string(),
        )]
        .into(),
    );
    let still = apply(&reconciler, &stale).await;
    assert!(still.awaiting_approval());
    assert!(common::cloudflare_writes(&s.em).is_empty());
    // The matching hash approves it.
    let mut approved = manifest("  image: {reference: 'shop:v1'}\n  adopt: true\n");
    approved.metadata.annotations =
        Some([("flaredock.dev/approve-adoption".to_string(), p.hash.clone())].into());
    let out = apply(&reconciler, &approved).await;
    assert!(out.ready(), "{:#?}", out.status);
    assert!(out.status.pending_adoption.is_none());
    assert!(
        out.events.iter().any(|e| e.reason == "Adopted"),
        "{:?}",
        out.events
    );
    let live = apps(&s.em).await;
    assert_eq!(live.len(), 1, "never duplicated");
    assert_eq!(
        live[0].configuration.label(flaredock::spec::OWNER_LABEL),
        Some("cli/apps.shop")
    );
    assert_eq!(live[0].max_instances, Some(4));
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_does_not_duplicate() {
    let s = setup().await;
    s.em.shared
        .push_fault(Some("POST"), ScriptedFault::DropAfter);
    // The bind is a PATCH; the first POST after credentials is the create.
    let client = common::client_for(&s.em);
    let reconciler = common::reconciler_for(&client);
    // Mint credentials first so that the scripted fault hits the create.
    reconciler.images.cloudflare_registry().await.unwrap();
    s.em.shared.clear_requests();
    let out = apply(&reconciler, &manifest("  image: {reference: 'shop:v1'}\n")).await;
    assert!(out.ready(), "{:#?}", out.status);
    let creates =
        s.em.shared
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/applications"))
            .count();
    assert_eq!(creates, 1, "the create was not repeated");
    assert_eq!(apps(&s.em).await.len(), 1);
}

#[tokio::test]
async fn a_missing_tag_waits_and_names_the_image() {
    let s = setup().await;
    let reconciler = common::reconciler_for(&common::client_for(&s.em));
    let obj = manifest("  image: {reference: 'shop:v9'}\n");
    let options = ConvergeOptions {
        wait: false,
        ..Default::default()
    };
    let out = converge(&reconciler, std::slice::from_ref(&obj), &options, |_, _| {})
        .await
        .remove(&obj.key())
        .unwrap();
    let image = flaredock::reconcile::status::condition(&out.status, "ImageReady").unwrap();
    assert_eq!(image.status, "False");
    assert_eq!(image.reason, "ImageNotFound");
    assert!(image.message.contains("shop:v9"));
    assert!(!out.stalled(), "a missing tag may appear later");
    assert!(apps(&s.em).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_applies_and_deletes_against_an_emulator() {
    let s = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: shop, namespace: apps}}\nspec:\n  className: {DEMO_CLASS}\n  image: {{reference: 'shop:v1'}}\n  worker: {{scriptName: {DEMO_SCRIPT}}}\n"
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flaredock"))
            .args(args)
            .env("CLOUDFLARE_API_BASE_URL", s.em.base_url())
            .env("CLOUDFLARE_ACCOUNT_ID", s.em.account_id())
            .env("CLOUDFLARE_API_TOKEN", s.em.api_token())
            .output()
            .expect("flaredock runs")
    };
    let f = file.to_str().unwrap();
    let plan = run(&["plan", "-f", f]);
    assert!(plan.status.success());
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("create application shop"), "{text}");
    assert!(apps(&s.em).await.is_empty(), "plan changes nothing");

    let out = run(&["apply", "-f", f, "--timeout", "30s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("apps/shop: Ready=True"), "{stdout}");
    assert!(stdout.contains(&s.v1), "{stdout}");

    let out = run(&["delete", "-f", f]);
    assert_eq!(out.status.code(), Some(0));
    assert!(apps(&s.em).await.is_empty());
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl Tap for CloudflareContainer {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_converges_on_the_embedded_emulator() {
    let out = Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["apply", "--emulator", "-f"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml"))
        .env_remove("CLOUDFLARE_API_TOKEN")
        .output()
        .expect("flaredock runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("default/hello: Ready=True"), "{stdout}");
    assert!(
        stdout.contains("CloudflareWorker default/hello: Ready=True")
            && stdout.contains("containers HelloContainer"),
        "the Worker was uploaded with its class container-enabled: {stdout}"
    );
    assert!(
        stdout.contains("/hello@sha256:"),
        "deployed by digest: {stdout}"
    );
}

#[test]
fn every_example_is_a_valid_manifest() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let loaded = flaredock::manifest::load(&[dir]);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert!(
        loaded.objects.len() >= 7,
        "{} objects",
        loaded.objects.len()
    );
    assert!(
        loaded.workers.len() >= 2,
        "{} Workers",
        loaded.workers.len()
    );
}

#[tokio::test]
async fn promotion_deploys_the_digest_the_source_deployed() {
    let em = common::start_emulator(|_| {}).await;
    em.put_script("prod-worker", &["Prod"]);
    let staging = parse_document(
        &format!("apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: staging}}\nspec:\n  className: {DEMO_CLASS}\n  image: {{reference: 'hello:v1'}}\n  worker: {{scriptName: {DEMO_SCRIPT}}}\n"),
        "s.yaml",
        1,
    )
    .unwrap()
    .unwrap();
    let production = parse_document(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {name: production}\nspec:\n  className: Prod\n  image: {fromContainer: staging}\n  worker: {scriptName: prod-worker}\n",
        "p.yaml",
        1,
    )
    .unwrap()
    .unwrap();
    let reconciler = common::reconciler_for(&common::client_for(&em));
    let options = ConvergeOptions {
        timeout: Duration::from_secs(30),
        poll: Duration::from_millis(20),
        ..Default::default()
    };
    // Production first: it must wait for staging, not fail.
    let outcomes = converge(
        &reconciler,
        &[production.clone(), staging.clone()],
        &options,
        |_, _| {},
    )
    .await;
    let s = &outcomes[&staging.key()];
    let p = &outcomes[&production.key()];
    assert!(s.ready() && p.ready(), "{:#?}\n{:#?}", s.status, p.status);
    assert_eq!(p.status.image, s.status.image);
    assert!(p.status.image.as_deref().unwrap().contains("@sha256:"));
}

#[test]
fn an_unreachable_api_fails_within_a_minute_naming_the_url() {
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}/client/v4");
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["apply", "-f"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml"))
        .env("CLOUDFLARE_API_BASE_URL", &base)
        .env("CLOUDFLARE_ACCOUNT_ID", "acc")
        .env("CLOUDFLARE_API_TOKEN", "token")
        .output()
        .expect("flaredock runs");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    assert!(
        stderr.contains("retrying Cloudflare call") && stderr.contains(&base),
        "each retry is reported as it happens, naming the URL: {stderr}"
    );
    assert!(
        stdout.contains(&base),
        "the final status names the URL: {stdout}"
    );
    assert!(
        !format!("{stdout}{stderr}").contains("Bearer"),
        "no credentials printed"
    );
}

#[tokio::test]
async fn adopting_an_application_with_observability_in_its_configuration_works() {
    let s = setup().await;
    let client = common::client_for(&s.em);
    // As wrangler makes it: observability inside the configuration.
    let mut request = common::foreign_application(
        "shop",
        &s.v1,
        Some(DurableObjectsConfiguration::ScriptAndClass {
            script_name: DEMO_SCRIPT.into(),
            class_name: DEMO_CLASS.into(),
        }),
    );
    request.configuration.observability = Some(Observability {
        logs: Some(ObservabilityLogs {
            enabled: Some(false),
        }),
    });
    client.create_application(&request).await.unwrap();
    let reconciler = common::reconciler_for(&client);
    let out = apply(
        &reconciler,
        &manifest(
            "  image: {reference: 'shop:v1'}\n  adopt: true\n  adoptionApproval: Automatic\n  observability: {logs: true}\n",
        ),
    )
    .await;
    assert!(out.ready(), "{:#?}", out.status);
    let live = apps(&s.em).await;
    assert_eq!(live.len(), 1);
    assert!(live[0].observability.is_none(), "still in wrangler's form");
    assert!(
        live[0]
            .configuration
            .observability
            .as_ref()
            .is_some_and(Observability::logs_enabled),
        "{:?}",
        live[0].configuration
    );
    // And a re-apply changes nothing.
    s.em.shared.clear_requests();
    let again = apply(
        &common::reconciler_for(&client),
        &manifest(
            "  image: {reference: 'shop:v1'}\n  adopt: true\n  adoptionApproval: Automatic\n  observability: {logs: true}\n",
        ),
    )
    .await;
    assert!(again.ready());
    assert!(
        common::cloudflare_writes(&s.em).is_empty(),
        "{:?}",
        common::cloudflare_writes(&s.em)
    );
}

#[tokio::test]
async fn a_replacement_under_asynchronous_deletes_converges_to_one_application() {
    let registry = common::DockerRegistry::start_with_auth("cf-user", "cf-pass");
    let em = common::start_emulator(|c| {
        c.registry = Some(registry.as_external());
        c.delete_delay = Duration::from_millis(600);
    })
    .await;
    common::push_to_cloudflare(&em, "shop", "v1", &common::synthetic_image(&[1024], 1)).await;
    let client = common::client_for(&em);
    let reconciler = common::reconciler_for(&client);
    assert!(
        apply(&reconciler, &manifest("  image: {reference: 'shop:v1'}\n"))
            .await
            .ready()
    );
    // A new applicationName replaces the application on the same namespace: the old one
    // is deleted, stays listed (name and namespace taken) for a while, then the new one
    // is created.
    let renamed = manifest("  image: {reference: 'shop:v1'}\n  applicationName: shop-v2\n");
    let out = apply(&reconciler, &renamed).await;
    assert!(out.ready(), "{:#?}", out.status);
    let live = apps(&em).await;
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].name, "shop-v2");
    let creates = em
        .shared
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/containers/applications"))
        .count();
    assert_eq!(
        creates, 2,
        "one create each, no failed attempt against the old one"
    );
    assert!(
        em.shared
            .requests()
            .iter()
            .all(|r| r.status != 400 && r.status != 409),
        "nothing refused: {:?}",
        em.shared.requests()
    );
}

#[tokio::test]
async fn a_reverted_rollout_stalls_and_is_not_retried_until_asked() {
    let s = setup().await;
    let client = common::client_for(&s.em);
    let reconciler = common::reconciler_for(&client);
    assert!(
        apply(&reconciler, &manifest("  image: {reference: 'shop:v1'}\n"))
            .await
            .ready()
    );
    // Cloudflare will revert the next rollout.
    reqwest::Client::new()
        .post(format!("http://{}/__emulator/faults", s.em.addr))
        .json(&serde_json::json!({"next": ["revert"]}))
        .send()
        .await
        .unwrap();
    let mut obj = manifest("  image: {reference: 'shop:v2'}\n");
    obj.metadata.generation = Some(2);
    let peers = std::collections::HashMap::new();
    let mut status = None;
    for _ in 0..40 {
        reconciler.view.invalidate().await;
        let out = reconciler.reconcile(&obj, status.as_ref(), &peers).await;
        status = Some(out.status.clone());
        if out.stalled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let stalled = status.clone().unwrap();
    let cond = flaredock::reconcile::status::condition(&stalled, "Stalled").unwrap();
    assert_eq!(cond.status, "True", "{stalled:#?}");
    assert_eq!(cond.reason, "RolloutReverted");
    assert!(cond.message.contains("version 1"), "{}", cond.message);
    assert_eq!(
        stalled.rollout.as_ref().unwrap().status,
        flaredock::spec::RolloutPhase::Reverted
    );
    assert!(!flaredock::reconcile::status::is_ready(&stalled));
    let rollouts = |em: &RunningEmulator| {
        em.shared
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/rollouts"))
            .count()
    };
    // Several more reconciles of the same generation: no new rollout.
    for _ in 0..3 {
        reconciler.view.invalidate().await;
        let out = reconciler.reconcile(&obj, status.as_ref(), &peers).await;
        assert!(out.stalled());
        status = Some(out.status);
    }
    assert_eq!(rollouts(&s.em), 1, "exactly one rollout");
    assert_eq!(
        apps(&s.em).await[0].configuration.image,
        s.v1,
        "v1 still runs"
    );

    // The retry annotation starts one new rollout, which completes.
    obj.metadata.annotations = Some(
        [(
            flaredock::spec::RETRY_ROLLOUT_ANNOTATION.to_string(),
            "1".to_string(),
        )]
        .into(),
    );
    for _ in 0..40 {
        reconciler.view.invalidate().await;
        let out = reconciler.reconcile(&obj, status.as_ref(), &peers).await;
        status = Some(out.status.clone());
        if out.ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        flaredock::reconcile::status::is_ready(status.as_ref().unwrap()),
        "{status:#?}"
    );
    assert_eq!(rollouts(&s.em), 2);
    assert_eq!(apps(&s.em).await[0].configuration.image, s.v2);
}

#[tokio::test]
async fn a_delete_decided_from_a_stale_view_still_deletes_the_application() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let reconciler = common::reconciler_for(&client);
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: late, namespace: apps}}\nspec:\n  className: {DEMO_CLASS}\n  image: {{reference: 'hello:v1'}}\n  worker: {{scriptName: {DEMO_SCRIPT}}}\n"
    );
    let obj: CloudflareContainer = parse_document(&doc, "late.yaml", 1).unwrap().unwrap();
    // The view is loaded: no application yet.
    assert!(reconciler.view.all_applications().await.unwrap().is_empty());
    // Then the application appears behind its back (another replica's create).
    let namespace = client
        .list_namespaces()
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.class.as_deref() == Some(DEMO_CLASS))
        .unwrap();
    let request = CreateApplicationRequest {
        name: "late".into(),
        scheduling_policy: SchedulingPolicy::Default,
        instances: 0,
        max_instances: Some(2),
        configuration: DeploymentConfiguration {
            image: format!("{}/{}/hello:v1", em.registry_host(), em.account_id()),
            instance_type: Some(InstanceType::Lite),
            labels: Some(vec![Label {
                name: "flaredock.dev/owner".into(),
                value: "cli/apps.late".into(),
            }]),
            ..Default::default()
        },
        constraints: None,
        durable_objects: Some(DurableObjectsConfiguration::NamespaceId {
            namespace_id: namespace.id,
        }),
        observability: None,
        rollout_active_grace_period: None,
    };
    client.create_application(&request).await.unwrap();
    let outcome = reconciler.delete(&obj).await.unwrap();
    assert_eq!(
        outcome,
        flaredock::reconcile::DeleteOutcome::Deleted(vec!["late".into()])
    );
    assert!(
        client.list_applications().await.unwrap().is_empty(),
        "nothing orphaned"
    );
}

/// A long-running reconciler holds registry credentials another object minted between
/// the review and the approval: the approved adoption is still the one acted on.
#[tokio::test]
async fn an_approved_adoption_holds_when_registry_credentials_were_minted_since_the_review() {
    let s = setup().await;
    let client = common::client_for(&s.em);
    // Deployed as wrangler does: by tag, bound to the class's namespace.
    let tag = format!("{}/{}/shop:v1", s.em.registry_host(), s.em.account_id());
    client
        .create_application(&common::foreign_application(
            "shop",
            &tag,
            Some(DurableObjectsConfiguration::ScriptAndClass {
                script_name: DEMO_SCRIPT.into(),
                class_name: DEMO_CLASS.into(),
            }),
        ))
        .await
        .unwrap();
    let reconciler = common::reconciler_for(&client);
    let spec = "  image: {reference: 'shop:v1'}\n  adopt: true\n";
    let pending = apply(&reconciler, &manifest(spec)).await;
    assert!(pending.awaiting_approval(), "{:#?}", pending.status);
    let hash = pending.status.pending_adoption.clone().unwrap().hash;

    // Another object's act mints credentials (it reads its own tag).
    let mut other = manifest("  image: {reference: 'shop:v2'}\n");
    other.metadata.name = Some("other".into());
    let read = reconciler
        .images
        .acquire(
            &other,
            &flaredock::reconcile::model::ImageAction::Resolve {
                reference: format!("{}/{}/shop:v2", s.em.registry_host(), s.em.account_id()),
            },
        )
        .await;
    assert!(
        matches!(&read, flaredock::reconcile::model::ImageState::Ready(i) if *i == s.v2),
        "{read:?}"
    );

    let mut approved = manifest(spec);
    approved.metadata.annotations =
        Some([("flaredock.dev/approve-adoption".to_string(), hash)].into());
    let out = apply(&reconciler, &approved).await;
    assert!(out.ready(), "the approval is not stale: {:#?}", out.status);
    assert!(out.status.pending_adoption.is_none());
    let live = apps(&s.em).await;
    assert_eq!(live.len(), 1);
    assert_eq!(
        live[0].configuration.image, s.v1,
        "the tag pinned to its digest"
    );
    assert_eq!(
        live[0].configuration.label(flaredock::spec::OWNER_LABEL),
        Some("cli/apps.shop")
    );
}

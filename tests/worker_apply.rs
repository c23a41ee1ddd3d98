//! End-to-end: CloudflareWorkers and CloudflareContainers from one directory, against
//! the emulator (which models container enablement), through the `flaredock` binary
//! and through the reconcile core.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flaredock::emulator::RunningEmulator;
use flaredock::reconcile::Reconciler;
use flaredock::reconcile::converge::Converged;

const WORKER: &str = r#"apiVersion: flaredock.dev/v1alpha1
kind: CloudflareWorker
metadata: {name: shop, namespace: apps}
spec:
  scriptName: shop-worker
  compatibilityDate: "2026-06-01"
  source:
    configMapRef: {name: shop-code, mainModule: index.js}
  vars: {MODE: production}
  secrets:
    - {name: API_KEY, secretKeyRef: {name: shop-secrets, key: api-key}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: shop-code, namespace: apps}
data:
  index.js: |
    import { hello } from "./lib.js";
    export class Shop {}
    export class Cart {}
    export default { fetch: () => new Response(hello()) };
  lib.js: |
    export const hello = () => "CODE_VERSION";
---
apiVersion: v1
kind: Secret
metadata: {name: shop-secrets, namespace: apps}
stringData: {api-key: SECRET_VALUE}
"#;

fn container(name: &str, class: &str, binding: &str) -> String {
    format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: {name}, namespace: apps}}\nspec:\n  className: {class}\n  image: {{reference: 'hello:v1'}}\n  maxInstances: 3\n  worker: {{name: shop, bindingName: {binding}}}\n"
    )
}

fn write_dir(dir: &Path, code_version: &str, secret: &str, containers: &[(&str, &str, &str)]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    std::fs::write(
        dir.join("worker.yaml"),
        WORKER
            .replace("CODE_VERSION", code_version)
            .replace("SECRET_VALUE", secret),
    )
    .unwrap();
    for (name, class, binding) in containers {
        std::fs::write(
            dir.join(format!("{name}.yaml")),
            container(name, class, binding),
        )
        .unwrap();
    }
}

async fn converge_dir(reconciler: &Reconciler, dir: &Path) -> Converged {
    common::converge_dir(reconciler, dir, Duration::from_secs(30)).await
}

fn count(em: &RunningEmulator, method: &str, fragment: &str) -> usize {
    em.shared
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.contains(fragment))
        .count()
}

fn all_ready(done: &Converged) -> bool {
    done.workers.values().all(|w| w.ready()) && done.containers.values().all(|c| c.ready())
}

#[tokio::test]
async fn worker_and_containers_converge_from_one_directory_and_stay_quiet() {
    let em = common::start_emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    write_dir(
        dir.path(),
        "v1",
        "s3cret",
        &[("shop", "Shop", "SHOP"), ("cart", "Cart", "CART")],
    );
    let client = common::client_for(&em);
    let reconciler = common::reconciler_for(&client);

    let done = converge_dir(&reconciler, dir.path()).await;
    assert!(all_ready(&done), "{done:#?}");
    assert_eq!(
        count(&em, "PUT", "/workers/scripts/shop-worker"),
        1,
        "one upload"
    );
    // Each application sits on the container-enabled namespace of (script, class).
    let namespaces = client.list_namespaces().await.unwrap();
    let apps = client.list_applications().await.unwrap();
    assert_eq!(apps.len(), 2);
    {
        let account = em.shared.account();
        for app in apps {
            let ns = namespaces
                .iter()
                .find(|n| Some(n.id.as_str()) == app.namespace_id())
                .expect("bound to a namespace");
            assert_eq!(ns.script.as_deref(), Some("shop-worker"));
            assert_eq!(
                ns.class.as_deref(),
                Some(if app.name == "shop" { "Shop" } else { "Cart" })
            );
            assert!(
                account.container_enabled.contains(&ns.id),
                "{ns:?} is container-enabled"
            );
        }
        let script = &account.scripts["shop-worker"];
        assert_eq!(script.migration_tag.as_deref(), Some("v1"));
        assert_eq!(
            script.containers.iter().collect::<Vec<_>>(),
            ["Cart", "Shop"]
        );
    }
    let worker_status = &done.workers["apps/shop"].status;
    assert_eq!(worker_status.containers, ["Cart", "Shop"]);
    assert_eq!(worker_status.migration_tag.as_deref(), Some("v1"));

    // Re-applying unchanged objects writes nothing and reads little.
    em.shared.clear_requests();
    let fresh = common::reconciler_for(&common::client_for(&em));
    let again = converge_dir(&fresh, dir.path()).await;
    assert!(all_ready(&again));
    assert!(
        common::cloudflare_writes(&em).is_empty(),
        "{:?}",
        common::cloudflare_writes(&em)
    );
    // The script list, namespaces, applications, registry credentials, and the
    // Worker's reachability: its workers.dev state, its cron triggers and the
    // account's workers.dev subdomain (for status.url), which no list carries.
    assert!(
        em.shared.requests().len() <= 7,
        "{:?}",
        em.shared.requests()
    );

    // A code change is one upload and no rollout; so is a secret change.
    for (code, secret) in [("v2", "s3cret"), ("v2", "rotated")] {
        write_dir(
            dir.path(),
            code,
            secret,
            &[("shop", "Shop", "SHOP"), ("cart", "Cart", "CART")],
        );
        em.shared.clear_requests();
        let done = converge_dir(&fresh, dir.path()).await;
        assert!(all_ready(&done), "{done:#?}");
        assert_eq!(
            count(&em, "PUT", "/workers/scripts/"),
            1,
            "{:?}",
            em.shared.requests()
        );
        assert_eq!(count(&em, "POST", "/rollouts"), 0, "no container rollout");
        assert_eq!(common::cloudflare_writes(&em).len(), 1);
    }
    let state = em.shared.account();
    assert!(
        state.scripts["shop-worker"].modules["lib.js"]
            .content
            .contains("v2")
    );
    drop(state);

    // No request ever went to /settings.
    assert_eq!(count(&em, "PATCH", "/settings"), 0);
}

#[tokio::test]
async fn a_removed_container_leaves_the_class_and_its_data() {
    let em = common::start_emulator(|c| c.capture_bodies = true).await;
    let dir = tempfile::tempdir().unwrap();
    write_dir(
        dir.path(),
        "v1",
        "s",
        &[("shop", "Shop", "SHOP"), ("cart", "Cart", "CART")],
    );
    let client = common::client_for(&em);
    let reconciler = common::reconciler_for(&client);
    assert!(all_ready(&converge_dir(&reconciler, dir.path()).await));
    // The cart container goes (its application deleted by `delete`), the Worker stays.
    let loaded =
        flaredock::manifest::load(&[dir.path().join("cart.yaml"), dir.path().join("worker.yaml")]);
    reconciler.delete(&loaded.objects[0].object).await.unwrap();
    write_dir(dir.path(), "v1", "s", &[("shop", "Shop", "SHOP")]);
    em.shared.clear_requests();
    let done = converge_dir(&reconciler, dir.path()).await;
    assert!(all_ready(&done), "{done:#?}");
    assert_eq!(done.workers["apps/shop"].status.containers, ["Shop"]);
    let uploads: Vec<_> = em
        .shared
        .exchanges()
        .into_iter()
        .filter(|x| x.method == "PUT")
        .collect();
    assert_eq!(
        uploads.len(),
        2,
        "the first upload, then one that drops the class from containers"
    );
    let body = String::from_utf8_lossy(&uploads[1].request_body);
    assert!(!body.contains("deleted_classes"), "{body}");
    assert!(!body.contains("\"CART\""), "the binding goes: {body}");
    let namespaces = client.list_namespaces().await.unwrap();
    assert!(
        namespaces
            .iter()
            .any(|n| n.class.as_deref() == Some("Cart")),
        "the Cart namespace (its Durable Object data) is kept"
    );
    assert_eq!(count(&em, "PUT", "/workers/scripts/"), 1);
}

/// `flaredock ARGS FILE` (an `apply` times out after 3 s).
fn flaredock(em: &RunningEmulator, args: &[&str], file: &Path) -> (Option<i32>, String, String) {
    let mut args: Vec<&str> = args.to_vec();
    if args[0] == "apply" {
        args.splice(1..1, ["--timeout", "3s"]);
    }
    let args = args.into_iter().map(std::ffi::OsStr::new);
    common::flaredock_cli(em, args.chain([file.as_os_str()]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_worker_without_the_class_container_enabled_fails_naming_containers() {
    let em = common::start_emulator(|_| {}).await;
    // Deployed with wrangler, but without the class in `containers`.
    em.shared
        .account()
        .seed_script("legacy", vec!["Legacy".into()], None, true, false);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("legacy.yaml");
    std::fs::write(
        &file,
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {name: legacy, namespace: apps}\nspec:\n  className: Legacy\n  image: {reference: 'hello:v1'}\n  worker: {scriptName: legacy}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = flaredock(&em, &["apply", "-f"], &file);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("NotContainerEnabled"), "{stdout}");
    assert!(
        stdout.contains("containers"),
        "the message says how to fix it: {stdout}"
    );
    assert!(stdout.contains("CloudflareWorker"), "{stdout}");
    assert!(
        stdout.contains("DURABLE_OBJECT_NOT_CONTAINER_ENABLED"),
        "the condition names Cloudflare's error enum: {stdout}"
    );
    assert!(
        em.shared
            .requests()
            .iter()
            .all(|r| !r.path.contains("/workers/scripts/legacy") || r.method == "GET"),
        "flaredock never uploads or patches an external Worker: {:?}",
        em.shared.requests()
    );
    assert_eq!(count(&em, "PATCH", "/settings"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_plans_applies_and_deletes_both_kinds() {
    let em = common::start_emulator(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    write_dir(
        dir.path(),
        "v1",
        "top-secret-value",
        &[("shop", "Shop", "SHOP")],
    );
    let (code, stdout, stderr) = flaredock(&em, &["plan", "-f"], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("CloudflareWorker apps/shop:"), "{stdout}");
    assert!(stdout.contains("worker.shop-worker.migration"), "{stdout}");
    assert!(stdout.contains("upload new Worker shop-worker"), "{stdout}");
    assert!(stdout.contains("WorkerNotReady"), "{stdout}");
    assert!(!format!("{stdout}{stderr}").contains("top-secret-value"));
    assert!(
        common::cloudflare_writes(&em).is_empty(),
        "plan writes nothing"
    );

    let (code, stdout, stderr) = flaredock(&em, &["apply", "-f"], dir.path());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("CloudflareWorker apps/shop: Ready=True"),
        "{stdout}"
    );
    assert!(stdout.contains("apps/shop: Ready=True"), "{stdout}");
    assert!(!format!("{stdout}{stderr}").contains("top-secret-value"));

    // A typo in worker.name is refused before any API call.
    std::fs::write(
        dir.path().join("bad.yaml"),
        container("bad", "Bad", "BAD").replace("name: shop,", "name: shpo,"),
    )
    .unwrap();
    em.shared.clear_requests();
    let (code, _, stderr) = flaredock(&em, &["apply", "-f"], dir.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("spec.worker.name") && stderr.contains("apps/shpo"),
        "{stderr}"
    );
    assert!(em.shared.requests().is_empty());
    std::fs::remove_file(dir.path().join("bad.yaml")).unwrap();

    // Delete: the container's application goes; by default the Worker's script stays,
    // with its Durable Object namespace and its data.
    em.shared.clear_requests();
    let (code, stdout, stderr) = flaredock(&em, &["delete", "-f"], dir.path());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("deleted application(s) shop"), "{stdout}");
    assert!(
        stdout.contains("deletionPolicy Orphan: left Worker script shop-worker in place"),
        "{stdout}"
    );
    let client = common::client_for(&em);
    assert!(client.list_applications().await.unwrap().is_empty());
    assert!(
        client
            .list_scripts()
            .await
            .unwrap()
            .iter()
            .any(|s| s.id == "shop-worker")
    );
    let namespaces = client.list_namespaces().await.unwrap();
    assert!(
        namespaces
            .iter()
            .any(|n| n.script.as_deref() == Some("shop-worker")
                && n.class.as_deref() == Some("Shop")),
        "the Durable Object namespace is kept: {namespaces:?}"
    );
    assert_eq!(count(&em, "DELETE", "/workers/scripts/"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_waits_for_the_asynchronous_application_delete_then_destroys_the_data_it_names() {
    // Cloudflare's asynchronous deletes: an application stays listed for 2 s.
    let em = common::start_emulator(|c| c.delete_delay = Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    write_dir(dir.path(), "v1", "s", &[("shop", "Shop", "SHOP")]);
    let worker = std::fs::read_to_string(dir.path().join("worker.yaml")).unwrap();
    std::fs::write(
        dir.path().join("worker.yaml"),
        worker.replacen(
            "  scriptName: shop-worker\n",
            "  scriptName: shop-worker\n  deletionPolicy: DeleteWithData\n",
            1,
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = flaredock(&em, &["apply", "-f"], dir.path());
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    // plan says in words what deleting the Worker destroys.
    let (code, stdout, stderr) = flaredock(&em, &["plan", "-f"], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("DeleteWithData") && stdout.contains("DESTROYING its Durable Object"),
        "{stdout}"
    );

    em.shared.clear_requests();
    let (code, stdout, stderr) = flaredock(&em, &["delete", "--timeout", "30s", "-f"], dir.path());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("deleting application(s) shop"),
        "it waited for Cloudflare: {stdout}"
    );
    assert!(stdout.contains("deleted application(s) shop"), "{stdout}");
    assert!(
        stdout.contains("deleted Worker script shop-worker with force=true")
            && stdout.contains("ALL THEIR DATA are destroyed"),
        "{stdout}"
    );
    assert!(stderr.contains("DESTROYING"), "{stderr}");
    // The script was deleted once, after the application had gone, and Cloudflare
    // accepted it.
    let script_deletes: Vec<u16> = em
        .shared
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("/workers/scripts/"))
        .map(|r| r.status)
        .collect();
    assert_eq!(script_deletes, [200], "{:?}", em.shared.requests());
    let client = common::client_for(&em);
    assert!(client.list_applications().await.unwrap().is_empty());
    assert!(
        client
            .list_namespaces()
            .await
            .unwrap()
            .iter()
            .all(|n| n.script.as_deref() != Some("shop-worker"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_script_waits_for_the_applications_on_its_classes_on_a_fresh_read() {
    use flaredock::reconcile::{DeleteOutcome, WaitingOn};
    let em = common::start_emulator(|c| c.delete_delay = Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().unwrap();
    write_dir(dir.path(), "v1", "s", &[("shop", "Shop", "SHOP")]);
    let client = common::client_for(&em);
    let reconciler = common::reconciler_for(&client);
    assert!(all_ready(&converge_dir(&reconciler, dir.path()).await));
    let loaded = flaredock::manifest::load(&[dir.path().to_path_buf()]);
    let container = &loaded.objects[0].object;
    let mut worker = loaded.workers[0].object.clone();
    worker.spec.deletion_policy = flaredock::spec::WorkerDeletionPolicy::DeleteWithData;
    let outcome = reconciler.delete(container).await.unwrap();
    assert_eq!(
        outcome,
        DeleteOutcome::Waiting {
            names: vec!["shop".into()],
            on: WaitingOn::Deletion
        }
    );
    // Another process (nothing in memory) sees the same: the application still runs on
    // the script's class, so the script is not deleted yet.
    let fresh = common::reconciler_for(&client);
    em.shared.clear_requests();
    assert_eq!(
        fresh.delete_worker(&worker).await.unwrap(),
        DeleteOutcome::Waiting {
            names: vec!["shop".into()],
            on: WaitingOn::Applications
        }
    );
    assert_eq!(count(&em, "DELETE", "/workers/scripts/"), 0);
    // The container's delete, sent again, is harmless until the application is gone.
    let mut rounds = 0;
    while !reconciler.delete(container).await.unwrap().finished() {
        rounds += 1;
        assert!(rounds < 40, "the application never went");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        em.shared
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .all(|r| r.status == 200 || r.status == 404),
        "{:?}",
        em.shared.requests()
    );
    assert_eq!(
        fresh.delete_worker(&worker).await.unwrap(),
        DeleteOutcome::DeletedWithData {
            script: "shop-worker".into(),
            classes: vec!["Shop".into()]
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_gives_up_at_its_timeout_and_keeps_the_script() {
    let em = common::start_emulator(|c| c.delete_delay = Duration::from_secs(30)).await;
    let dir = tempfile::tempdir().unwrap();
    write_dir(dir.path(), "v1", "s", &[("shop", "Shop", "SHOP")]);
    let (code, stdout, stderr) = flaredock(&em, &["apply", "-f"], dir.path());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, stdout, stderr) = flaredock(&em, &["delete", "--timeout", "2s", "-f"], dir.path());
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("timed out"), "{stderr}");
    assert_eq!(count(&em, "DELETE", "/workers/scripts/"), 0);
}

/// An OCI artifact as `oras push` makes it: one layer per file, named by its title.
fn artifact(files: &[(&str, &[u8])]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let config = b"{}".to_vec();
    let layers: Vec<Vec<u8>> = files.iter().map(|(_, c)| c.to_vec()).collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.flaredock.worker.bundle",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": common::digest_of(&config), "size": config.len()},
        "layers": files.iter().map(|(name, c)| serde_json::json!({
            "mediaType": "application/octet-stream", "digest": common::digest_of(c), "size": c.len(),
            "annotations": {"org.opencontainers.image.title": name}
        })).collect::<Vec<_>>(),
    });
    let mut blobs = layers;
    blobs.push(config);
    (blobs, manifest.to_string().into_bytes())
}

async fn push_artifact(host: &str, repo: &str, tag: &str, files: &[(&str, &[u8])]) {
    let http = reqwest::Client::new();
    let (blobs, manifest) = artifact(files);
    for b in &blobs {
        common::push_blob(&http, host, repo, b, None).await;
    }
    common::push_manifest(
        &http,
        host,
        repo,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
        None,
    )
    .await;
}

#[tokio::test]
async fn a_worker_bundle_is_read_from_an_oci_artifact_once_per_digest() {
    let registry = common::DockerRegistry::start_open();
    let host = registry.as_external().host;
    let em = common::start_emulator(|_| {}).await;
    push_artifact(
        &host,
        "acme/shop-worker",
        "1.4",
        &[
            ("index.js", b"import { v } from './lib.js';\nexport class Shop {}\nexport default { fetch: () => new Response(v) };\n"),
            ("lib.js", b"export const v = 'one';\n"),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("w.yaml"),
        format!("apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareWorker\nmetadata: {{name: shop, namespace: apps}}\nspec:\n  compatibilityDate: '2026-06-01'\n  source:\n    image: {{reference: '{host}/acme/shop-worker:1.4', mainModule: index.js}}\n---\n{}", container("shop", "Shop", "SHOP")),
    )
    .unwrap();
    let reconciler = common::reconciler_for(&common::client_for(&em));
    let done = converge_dir(&reconciler, dir.path()).await;
    assert!(all_ready(&done), "{done:#?}");
    {
        let account = em.shared.account();
        let script = &account.scripts["shop"];
        assert_eq!(script.modules.len(), 2);
        assert!(script.modules["lib.js"].content.contains("'one'"));
        assert_eq!(
            script.modules["index.js"].content_type,
            "application/javascript+module"
        );
    }
    // Unchanged: no upload. A new push under the same tag: one upload.
    em.shared.clear_requests();
    let again = converge_dir(&reconciler, dir.path()).await;
    assert!(all_ready(&again));
    assert_eq!(count(&em, "PUT", "/workers/scripts/"), 0);
    push_artifact(
        &host,
        "acme/shop-worker",
        "1.4",
        &[
            ("index.js", b"import { v } from './lib.js';\nexport class Shop {}\nexport default { fetch: () => new Response(v) };\n"),
            ("lib.js", b"export const v = 'two';\n"),
        ],
    )
    .await;
    let changed = converge_dir(&reconciler, dir.path()).await;
    assert!(all_ready(&changed));
    assert_eq!(count(&em, "PUT", "/workers/scripts/"), 1);
    assert!(
        em.shared.account().scripts["shop"].modules["lib.js"]
            .content
            .contains("'two'")
    );

    // A bundle without the main module is refused, naming it.
    push_artifact(
        &host,
        "acme/broken",
        "1",
        &[("other.js", b"export default {}")],
    )
    .await;
    std::fs::write(
        dir.path().join("w.yaml"),
        format!("apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareWorker\nmetadata: {{name: shop, namespace: apps}}\nspec:\n  compatibilityDate: '2026-06-01'\n  source:\n    image: {{reference: '{host}/acme/broken:1', mainModule: index.js}}\n"),
    )
    .unwrap();
    let broken = converge_dir(&reconciler, dir.path()).await;
    let w = &broken.workers["apps/shop"];
    assert!(w.stalled(), "{:#?}", w.status);
    assert!(
        w.status.conditions[0].message.contains("index.js"),
        "{:?}",
        w.status.conditions[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_cluster_never_takes_what_this_one_owns() {
    let em = common::start_emulator(|_| {}).await;
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml");
    let (code, stdout, stderr) = flaredock(&em, &["apply", "-f"], &quickstart);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // The same objects, with adopt, applied from another cluster sharing the account.
    let text = std::fs::read_to_string(&quickstart).unwrap();
    let adopting = text.replace("spec:\n", "spec:\n  adopt: true\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quickstart.yaml");
    std::fs::write(&file, adopting).unwrap();
    em.shared.clear_requests();
    let out = Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["apply", "--timeout", "3s", "--cluster-id", "prod-eu", "-f"])
        .arg(&file)
        .env("CLOUDFLARE_API_BASE_URL", em.base_url())
        .env("CLOUDFLARE_ACCOUNT_ID", em.account_id())
        .env("CLOUDFLARE_API_TOKEN", em.api_token())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("ApplicationOwnedByAnother") && stdout.contains("cli/default.hello"),
        "{stdout}"
    );
    assert!(
        common::cloudflare_writes(&em).is_empty(),
        "nothing of the other cluster's was touched: {:?}",
        common::cloudflare_writes(&em)
    );
    // A bad cluster name is refused before anything happens.
    let out = Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["plan", "--cluster-id", "Prod_EU", "-f"])
        .arg(&file)
        .env("CLOUDFLARE_API_BASE_URL", em.base_url())
        .env("CLOUDFLARE_ACCOUNT_ID", em.account_id())
        .env("CLOUDFLARE_API_TOKEN", em.api_token())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cluster-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_objects_are_observed_and_never_written() {
    let em = common::start_emulator(|_| {}).await;
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml");
    let text = std::fs::read_to_string(&quickstart).unwrap();
    let suspended = text.replace("spec:\n", "spec:\n  suspend: true\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quickstart.yaml");
    std::fs::write(&file, &suspended).unwrap();
    let (code, stdout, stderr) = flaredock(&em, &["apply", "-f"], &file);
    assert_eq!(
        code,
        Some(0),
        "suspended objects are reported, not failed: {stdout}{stderr}"
    );
    assert!(
        common::cloudflare_writes(&em).is_empty(),
        "zero writes: {:?}",
        common::cloudflare_writes(&em)
    );
    assert_eq!(
        stdout.matches("Ready=False Suspended").count(),
        2,
        "{stdout}"
    );
    assert!(
        stdout.contains("pending: worker.hello"),
        "the pending change is named: {stdout}"
    );
    // Resumed: it converges.
    let (code, stdout, _) = flaredock(&em, &["apply", "-f"], &quickstart);
    assert_eq!(code, Some(0), "{stdout}");
    // Suspended again with a change pending: still nothing written.
    em.shared.clear_requests();
    let changed = suspended.replace("hello from flaredock", "hello again");
    std::fs::write(&file, changed).unwrap();
    let (code, stdout, _) = flaredock(&em, &["apply", "-f"], &file);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(common::cloudflare_writes(&em).is_empty());
    assert!(stdout.contains("Suspended"), "{stdout}");
}

fn schema_validator(file: &str) -> (serde_json::Value, jsonschema::Validator) {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    (schema, validator)
}

#[test]
fn the_apply_document_shares_the_plan_documents_definitions() {
    let (plan, _) = schema_validator("schemas/plan.schema.json");
    let (apply, _) = schema_validator("schemas/apply.schema.json");
    for def in ["change", "action", "blocked"] {
        assert!(
            plan["$defs"][def].is_object(),
            "plan.schema.json lacks {def}"
        );
        assert_eq!(
            plan["$defs"][def], apply["$defs"][def],
            "$defs/{def} differs between the plan and apply schemas"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_json_is_documented_and_says_what_was_done() {
    let em = common::start_emulator(|c| c.capture_bodies = true).await;
    let (_, validator) = schema_validator("schemas/apply.schema.json");
    // The quickstart, its container's DB_PASSWORD from a Secret among the files.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    let password = "apply-json-password-8080";
    let text = include_str!("../examples/quickstart.yaml").replace(
        "  env:\n",
        "  env:\n    - {name: DB_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}\n",
    );
    // The manifests, with the Secret `db` holding `value`.
    let write = |manifests: &str, value: &str| {
        std::fs::write(
            &file,
            format!("{manifests}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: db}}\nstringData: {{password: {value}}}\n"),
        )
        .unwrap();
    };
    write(&text, password);
    let (code, stdout, stderr) = flaredock(&em, &["apply", "-o", "json", "-f"], &file);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("apply -o json is JSON");
    let problems: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(problems.is_empty(), "{problems:?}\n{doc:#}");
    assert_eq!(doc["apiVersion"], "flaredock.dev/apply/v1");
    assert_eq!(doc["converged"], true);
    let object = |kind: &str| {
        doc["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {doc:#}"))
            .clone()
    };
    let worker = object("CloudflareWorker");
    assert_eq!(worker["state"], "Ready");
    assert_eq!(worker["actions"][0]["kind"], "upload-script");
    let container = object("CloudflareContainer");
    assert_eq!(container["state"], "Ready");
    assert_eq!(container["actions"][0]["kind"], "create-application");
    assert!(
        container["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "Created"),
        "{container:#}"
    );
    let ready = container["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");
    assert!(!stdout.contains(password), "the Secret's value is printed");
    let created = common::request_bodies(&em, "POST", "/containers/applications").concat();
    assert!(created.contains(password), "the value reached Cloudflare");

    // The Secret changes: one rollout, named by its source in the document.
    write(&text, &format!("rotated-{password}"));
    let (code, stdout, stderr) = flaredock(&em, &["apply", "-o", "yaml", "-f"], &file);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let doc: serde_json::Value = serde_yaml_ng::from_str(&stdout).expect("apply -o yaml is YAML");
    assert!(validator.is_valid(&doc), "{doc:#}");
    assert!(!stdout.contains(password), "the Secret's value is printed");
    let container = doc["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "CloudflareContainer")
        .unwrap();
    let kinds: Vec<&str> = container["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["create-rollout"]);
    assert_eq!(
        container["changes"][0]["to"],
        "(from Secret db/password, changed)"
    );

    // Suspended: reported as such, exit 0, nothing written.
    let suspended = text.replace(
        "  className: HelloContainer\n",
        "  className: HelloContainer\n  suspend: true\n",
    );
    assert_ne!(suspended, text);
    write(
        &suspended.replace(
            "value: hello from flaredock",
            "value: changed while suspended",
        ),
        &format!("rotated-{password}"),
    );
    em.shared.clear_requests();
    let (code, stdout, stderr) = flaredock(&em, &["apply", "-o", "json", "-f"], &file);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(validator.is_valid(&doc), "{doc:#}");
    let container = doc["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "CloudflareContainer")
        .unwrap();
    assert_eq!(container["state"], "Suspended", "{container:#}");
    assert!(common::cloudflare_writes(&em).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_json_is_documented_and_exit_codes_gate_ci() {
    let em = common::start_emulator(|_| {}).await;
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml");
    let (_, validator) = schema_validator("schemas/plan.schema.json");
    // Something to change: 3, and the JSON says what.
    let (code, stdout, stderr) = flaredock(
        &em,
        &["plan", "-o", "json", "--exit-code", "-f"],
        &quickstart,
    );
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("plan -o json is JSON");
    let problems: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(problems.is_empty(), "{problems:?}\n{doc:#}");
    assert_eq!(doc["changes"], true);
    let worker = doc["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "CloudflareWorker")
        .unwrap();
    assert_eq!(worker["actions"][0]["kind"], "upload-script");
    assert!(
        common::cloudflare_writes(&em).is_empty(),
        "plan writes nothing"
    );
    // Without --exit-code, a plan with changes is a success.
    let (code, _, _) = flaredock(&em, &["plan", "-f"], &quickstart);
    assert_eq!(code, Some(0));
    // Nothing to change: 0.
    let (code, stdout, _) = flaredock(&em, &["apply", "-f"], &quickstart);
    assert_eq!(code, Some(0), "{stdout}");
    let (code, stdout, _) = flaredock(
        &em,
        &["plan", "-o", "json", "--exit-code", "-f"],
        &quickstart,
    );
    assert_eq!(code, Some(0), "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(validator.is_valid(&doc));
    assert_eq!(doc["changes"], false);
    // Invalid manifests: 2, before anything is read.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {name: Bad_Name}\nspec: {}\n").unwrap();
    let (code, _, stderr) = flaredock(&em, &["plan", "--exit-code", "-f"], &bad);
    assert_eq!(code, Some(2), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_shows_each_objects_step_and_the_rollout_percentage() {
    let em = common::start_emulator(|c| c.rollout_step = Duration::from_millis(700)).await;
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml");
    let (code, _, stderr) = flaredock(&em, &["apply", "-f"], &quickstart);
    assert_eq!(code, Some(0), "{stderr}");
    // Not a terminal (CI): a line each time an object's step changes.
    assert!(stderr.contains("default/hello: Ready"), "{stderr}");
    let changed = std::fs::read_to_string(&quickstart)
        .unwrap()
        .replace("value: hello from flaredock", "value: hello again");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quickstart.yaml");
    std::fs::write(&file, changed).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["apply", "--timeout", "30s", "-f"])
        .arg(&file)
        .env("CLOUDFLARE_API_BASE_URL", em.base_url())
        .env("CLOUDFLARE_ACCOUNT_ID", em.account_id())
        .env("CLOUDFLARE_API_TOKEN", em.api_token())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("default/hello: RolloutInProgress (rollout 10%)"),
        "the rollout's percentage is shown while it runs: {stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "no terminal control codes in CI logs: {stderr}"
    );
}

//! Cloudflare's own CLI against the emulator: `wrangler containers` (npm `wrangler`
//! 4.86, the last release that runs on Node 20) lists, shows and deletes an
//! application that flaredock created, and mints registry credentials; `wrangler deploy`
//! of a plain Worker succeeds and the Worker answers at its workers.dev host (served by
//! workerd through the emulator). wrangler is an
//! independent client, so this checks the emulator (and the wrangler-only endpoints it
//! serves) against something other than flaredock's own types.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

fn wrangler_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WRANGLER") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join("wrangler");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "this test needs wrangler 4.86 from npm: `npm install -g wrangler@4.86.0` (scripts/test.sh installs it), or set WRANGLER=/path/to/wrangler"
    );
}

struct Wrangler {
    bin: PathBuf,
    home: tempfile::TempDir,
    base_url: String,
    account: String,
    token: String,
    registry: String,
}

impl Wrangler {
    fn new(em: &common::Emulator) -> Wrangler {
        Wrangler {
            bin: wrangler_bin(),
            home: tempfile::tempdir().unwrap(),
            base_url: em.base_url(),
            account: em.account_id().to_string(),
            token: em.api_token().to_string(),
            registry: em.registry_host().to_string(),
        }
    }

    /// Runs wrangler (non-interactive, as in CI); exit code, stdout, stderr.
    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(&self.bin)
            .args(args)
            .current_dir(self.home.path())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("CI", "true")
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_API_BASE_URL", &self.base_url)
            .env("CLOUDFLARE_ACCOUNT_ID", &self.account)
            .env("CLOUDFLARE_API_TOKEN", &self.token)
            .env("CLOUDFLARE_CONTAINER_REGISTRY", &self.registry)
            .output()
            .expect("wrangler runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, Some(0), "wrangler {args:?} failed:\n{out}\n{err}");
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrangler_lists_shows_and_deletes_what_flaredock_created() {
    let em = common::start_emulator(|c| c.delete_delay = Duration::from_millis(1500)).await;
    let wrangler = Wrangler::new(&em);

    // flaredock creates the quickstart's Worker and application.
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["apply", "--timeout", "60s", "-f", quickstart])
        .env("CLOUDFLARE_API_BASE_URL", em.base_url())
        .env("CLOUDFLARE_ACCOUNT_ID", em.account_id())
        .env("CLOUDFLARE_API_TOKEN", em.api_token())
        .output()
        .expect("flaredock runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = common::client_for(&em);
    let apps = client.list_applications().await.unwrap();
    assert_eq!(apps.len(), 1);
    let id = apps[0].id.clone();

    // list, as a table and as JSON (wrangler-only `GET /containers/dash/applications`).
    let table = wrangler.ok(&["containers", "list"]);
    assert!(table.contains(&id) && table.contains("hello"), "{table}");
    let listed: Value = serde_json::from_str(&wrangler.ok(&["containers", "list", "--json"]))
        .expect("wrangler prints JSON");
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed[0]["name"], "hello");
    assert_eq!(listed[0]["image"], apps[0].configuration.image.as_str());

    // info: the application as the official GET returns it.
    let info: Value = serde_json::from_str(&wrangler.ok(&["containers", "info", &id]))
        .expect("wrangler prints the application as JSON");
    assert_eq!(info["id"], id.as_str());
    assert_eq!(info["name"], "hello");
    assert_eq!(
        info["durable_objects"]["namespace_id"],
        apps[0].namespace_id().unwrap()
    );

    // registry credentials that the emulator's registry accepts.
    let password = wrangler
        .ok(&[
            "containers",
            "registries",
            "credentials",
            "--push",
            "--pull",
        ])
        .trim()
        .to_string();
    assert!(!password.is_empty());
    let registry = format!("http://{}/v2/", em.addr);
    let http = reqwest::Client::new();
    let with = |p: String| http.get(&registry).basic_auth("v1", Some(p)).send();
    assert_eq!(with(password.clone()).await.unwrap().status().as_u16(), 200);
    assert_eq!(with("wrong".into()).await.unwrap().status().as_u16(), 401);

    // delete: asynchronous, as Cloudflare's.
    wrangler.ok(&["containers", "delete", &id]);
    let still = client.list_applications().await.unwrap();
    assert!(
        still.iter().any(|a| a.id == id),
        "a deleted application stays listed while Cloudflare deletes it"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(client.list_applications().await.unwrap().is_empty());
    let table = wrangler.ok(&["containers", "list"]);
    assert!(table.contains("No containers found"), "{table}");

    // An unknown id is a 404 that wrangler reports as an error.
    let (code, out, err) = wrangler.run(&[
        "containers",
        "delete",
        "00000000-0000-4000-8000-000000000000",
    ]);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(format!("{out}{err}").contains("not found"), "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_deployed_with_wrangler_answers_at_its_workers_dev_host() {
    let workerd = flaredock::emulator::workerd::locate().unwrap_or_else(|| {
        panic!(
            "this test needs workerd: `npm install -g workerd@1.20260426.1` (scripts/test.sh installs it), or set FLAREDOCK_WORKERD"
        )
    });
    let em = common::start_emulator(|c| c.workerd = Some(workerd)).await;
    let wrangler = Wrangler::new(&em);
    let project = wrangler.home.path();
    std::fs::write(
        project.join("wrangler.toml"),
        "name = \"greeter\"\nmain = \"index.js\"\ncompatibility_date = \"2026-04-01\"\n[vars]\nGREETING = \"hello from wrangler\"\n",
    )
    .unwrap();
    std::fs::write(
        project.join("index.js"),
        "export default { fetch(request, env) { return new Response(`${env.GREETING} at ${new URL(request.url).hostname}`); } };\n",
    )
    .unwrap();
    let out = wrangler.ok(&["deploy"]);
    assert!(
        out.contains("https://greeter.flaredock.workers.dev"),
        "{out}"
    );
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/", em.addr))
        .header("host", "greeter.flaredock.workers.dev")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(
        answer.text().await.unwrap(),
        "hello from wrangler at greeter.flaredock.workers.dev"
    );
    em.stop().await;
}

/// Creates a storage resource through the official endpoint (`path` relative to the
/// account, e.g. `storage/kv/namespaces`); its `result`.
async fn create_storage(em: &common::Emulator, path: &str, body: Value) -> Value {
    let answer: Value = reqwest::Client::new()
        .post(format!(
            "{}/accounts/{}/{path}",
            em.base_url(),
            em.account_id()
        ))
        .bearer_auth(em.api_token())
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["success"], true, "{answer}");
    answer["result"].clone()
}

/// The KV namespace `shop-cache` made through the official endpoint, then the
/// [`container_project`] binding it: (its id, the image reference).
async fn shop_project(wrangler: &Wrangler, em: &common::Emulator) -> (String, String) {
    let kv = create_storage(
        em,
        "storage/kv/namespaces",
        serde_json::json!({"title": "shop-cache"}),
    )
    .await;
    let kv = kv["id"].as_str().unwrap().to_string();
    let image = container_project(wrangler, em, &kv);
    (kv, image)
}

/// The example project (examples/wrangler: a container on the image the emulator's
/// registry holds, a KV binding, a var, workers.dev by default) copied into wrangler's
/// home, with this emulator's registry and the KV namespace `kv`; the image reference.
fn container_project(wrangler: &Wrangler, em: &common::Emulator, kv: &str) -> String {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wrangler");
    let config = std::fs::read_to_string(example.join("wrangler.jsonc"))
        .unwrap()
        .replace("127.0.0.1:8787", em.registry_host())
        .replace(flaredock::emulator::DEFAULT_ACCOUNT_ID, em.account_id())
        .replace("REPLACE_WITH_KV_NAMESPACE_ID", kv);
    let project = wrangler.home.path();
    std::fs::write(project.join("wrangler.jsonc"), config).unwrap();
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::copy(example.join("src/index.js"), project.join("src/index.js")).unwrap();
    format!("{}/{}/hello:v1", em.registry_host(), em.account_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrangler_deploys_a_worker_with_a_container_and_a_second_deploy_changes_nothing() {
    let em = common::start_emulator(|c| c.capture_bodies = true).await;
    let wrangler = Wrangler::new(&em);
    let (_, image) = shop_project(&wrangler, &em).await;

    let out = wrangler.ok(&["deploy"]);
    assert!(out.contains("Created application shop-shop"), "{out}");
    assert!(out.contains("https://shop.flaredock.workers.dev"), "{out}");
    let client = common::client_for(&em);
    let apps = client.list_applications().await.unwrap();
    assert_eq!(apps.len(), 1, "{apps:?}");
    let app = &apps[0];
    assert_eq!(app.name, "shop-shop");
    assert_eq!(
        app.configuration.image, image,
        "the registry image is deployed by the tag wrangler was given"
    );
    // The application backs the class's namespace, found in the version's bindings.
    let namespaces = client.list_namespaces().await.unwrap();
    let shop = namespaces
        .iter()
        .find(|n| n.class.as_deref() == Some("Shop"))
        .expect("Shop has a namespace");
    assert_eq!(app.namespace_id(), Some(shop.id.as_str()));
    let versions: Vec<_> = em
        .shared
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/workers/scripts/shop/versions/"))
        .collect();
    assert_eq!(versions.len(), 1, "wrangler read the uploaded version once");

    // Again: the application is the same, and nothing is written to it.
    let before = common::cloudflare_writes(&em).len();
    let out = wrangler.ok(&["deploy"]);
    assert!(out.contains("no changes shop-shop"), "{out}");
    let writes: Vec<String> = common::cloudflare_writes(&em)[before..].to_vec();
    assert!(
        !writes.iter().any(|w| w.contains("/containers/")),
        "a second deploy makes no container change: {writes:?}"
    );
    let again = client.list_applications().await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, app.id);
    assert_eq!(again[0].version, app.version, "no new application version");
    em.stop().await;
}

/// Runs the flaredock binary against the emulator in `dir`: exit code, stdout, stderr.
fn flaredock(em: &common::Emulator, dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(args)
        .current_dir(dir)
        .env("CLOUDFLARE_API_BASE_URL", em.base_url())
        .env("CLOUDFLARE_ACCOUNT_ID", em.account_id())
        .env("CLOUDFLARE_API_TOKEN", em.api_token())
        .env("CLOUDFLARE_CONTAINER_REGISTRY", em.registry_host())
        .output()
        .expect("flaredock runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `apply -o json` of `file`: the document.
fn apply_json(em: &common::Emulator, dir: &std::path::Path, file: &str) -> Value {
    let (_, out, err) = flaredock(
        em,
        dir,
        &["apply", "-f", file, "--timeout", "60s", "-o", "json"],
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("apply prints JSON ({e}):\n{out}\n{err}"))
}

fn object<'a>(doc: &'a Value, kind: &str) -> &'a Value {
    doc["objects"]
        .as_array()
        .and_then(|o| o.iter().find(|x| x["kind"] == kind))
        .unwrap_or_else(|| panic!("{kind} in {doc}"))
}

/// The manifests with the approval annotation on the object `name` (as printed by
/// `flaredock import`: `metadata` holds `name` then `namespace`).
fn approve(yaml: &str, name: &str, hash: &str) -> String {
    let at = format!("metadata:\n  name: {name}\n  namespace: default\n");
    assert!(yaml.contains(&at), "{yaml}");
    yaml.replacen(
        &at,
        &format!("{at}  annotations:\n    flaredock.dev/approve-adoption: {hash}\n"),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_deployed_with_wrangler_is_imported_planned_and_adopted_keeping_everything() {
    let em = common::start_emulator(|_| {}).await;
    let wrangler = Wrangler::new(&em);
    let (kv, tag) = shop_project(&wrangler, &em).await;
    // A script setting the import maps (`limits` → spec.limits).
    let config_file = wrangler.home.path().join("wrangler.jsonc");
    let config = std::fs::read_to_string(&config_file).unwrap().replacen(
        r#""compatibility_date": "2026-04-01","#,
        r#""compatibility_date": "2026-04-01", "limits": {"cpu_ms": 50},"#,
        1,
    );
    assert!(config.contains("cpu_ms"));
    std::fs::write(&config_file, config).unwrap();
    wrangler.ok(&["deploy"]);
    let client = common::client_for(&em);
    let app = client.list_applications().await.unwrap().remove(0);
    let settings_before = client.script_settings("shop").await.unwrap();
    assert_eq!(
        settings_before.limits,
        Some(serde_json::json!({"cpu_ms": 50})),
        "wrangler uploaded the limits"
    );

    // import: the bundle wrangler uploads, written by a dry run.
    let project = wrangler.home.path();
    wrangler.ok(&["deploy", "--dry-run", "--outdir", "out"]);
    let writes_after_deploy = common::cloudflare_writes(&em).len();
    let (code, yaml, err) = flaredock(&em, project, &["import", "--bundle", "out"]);
    assert_eq!(code, 0, "{err}");
    assert!(yaml.contains("cpuMs: 50"), "{yaml}");
    std::fs::write(project.join("shop.yaml"), &yaml).unwrap();

    // plan: nothing but ownership (the limits are the same).
    let (code, out, err) = flaredock(&em, project, &["plan", "-f", "shop.yaml", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let worker = object(&plan, "CloudflareWorker");
    let changes: Vec<&str> = worker["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(changes, vec!["worker.shop.owner"], "{worker}");
    assert_eq!(worker["actions"].as_array().unwrap().len(), 1, "{worker}");
    assert!(
        worker["actions"][0]["description"]
            .as_str()
            .unwrap()
            .ends_with("taking ownership"),
        "{worker}"
    );
    // The container too shows what adopting it changes (its owner label only), while
    // its Worker's adoption is awaited: nothing is done before, the rollout is held.
    let container = object(&plan, "CloudflareContainer");
    let changes: Vec<&str> = container["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        vec!["configuration.labels.flaredock.dev/owner"],
        "{container}"
    );
    assert_eq!(
        container["blocked"]["reason"], "WorkerNotReady",
        "{container}"
    );
    assert_eq!(container["actions"], serde_json::json!([]), "{container}");
    let held: Vec<&str> = container["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(held, vec!["resolve-image", "create-rollout"], "{container}");
    let (_, text, _) = flaredock(&em, project, &["plan", "-f", "shop.yaml"]);
    assert!(
        text.contains("~ worker.shop.owner: not flaredock"),
        "{text}"
    );
    assert!(
        text.contains("~ configuration.labels.flaredock.dev/owner: unset"),
        "{text}"
    );
    assert!(
        !text.contains("bindings") && !text.contains("modules"),
        "{text}"
    );

    // apply: both adoptions wait for their approval, put up for review together.
    let doc = apply_json(&em, project, "shop.yaml");
    let w = object(&doc, "CloudflareWorker");
    assert_eq!(w["state"], "AwaitingApproval", "{w}");
    let fields: Vec<&Value> = w["status"]["pendingAdoption"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["field"])
        .collect();
    assert_eq!(fields, vec!["worker.shop.owner"], "{w}");
    let c = object(&doc, "CloudflareContainer");
    assert_eq!(c["state"], "AwaitingApproval", "{c}");
    let fields: Vec<&str> = c["status"]["pendingAdoption"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec!["configuration.labels.flaredock.dev/owner"],
        "{c}"
    );
    assert_eq!(
        common::cloudflare_writes(&em)[writes_after_deploy..],
        [] as [String; 0],
        "nothing written before the approvals"
    );
    // One round of approval for both.
    let yaml = approve(
        &yaml,
        "shop",
        w["status"]["pendingAdoption"]["hash"].as_str().unwrap(),
    );
    let yaml = approve(
        &yaml,
        "shop-shop",
        c["status"]["pendingAdoption"]["hash"].as_str().unwrap(),
    );
    std::fs::write(project.join("shop.yaml"), &yaml).unwrap();
    let writes_before = common::cloudflare_writes(&em).len();
    let doc = apply_json(&em, project, "shop.yaml");
    assert_eq!(doc["converged"], true, "{doc}");
    assert_eq!(object(&doc, "CloudflareWorker")["state"], "Ready", "{doc}");
    assert_eq!(
        object(&doc, "CloudflareContainer")["state"],
        "Ready",
        "{doc}"
    );
    let writes: Vec<String> = common::cloudflare_writes(&em)[writes_before..].to_vec();
    assert!(
        writes.iter().any(|w| w.contains("/workers/scripts/shop")),
        "the Worker is adopted: {writes:?}"
    );
    let containers: Vec<&String> = writes
        .iter()
        .filter(|w| w.contains("/containers/"))
        .collect();
    assert_eq!(
        containers,
        vec![&format!(
            "POST /client/v4/accounts/{}/containers/applications/{}/rollouts",
            em.account_id(),
            app.id
        )],
        "one rollout, the one that pins the tag to its digest"
    );
    // The Worker's upload came first: the container waited for it.
    let upload = writes
        .iter()
        .position(|w| w.contains("/workers/scripts/shop"))
        .unwrap();
    let rollout = writes.iter().position(|w| w.contains("/rollouts")).unwrap();
    assert!(upload < rollout, "{writes:?}");

    // The application is the same, now on the digest of the tag wrangler deployed.
    let apps = client.list_applications().await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].id, app.id);
    let repo = tag.rsplit_once(':').unwrap().0;
    assert!(
        apps[0]
            .configuration
            .image
            .starts_with(&format!("{repo}@sha256:")),
        "{} pins {tag}",
        apps[0].configuration.image
    );
    assert_eq!(apps[0].namespace_id(), app.namespace_id());
    // Every binding kept, by name and value; workers.dev still on.
    let settings = client.script_settings("shop").await.unwrap();
    let shown = |s: &flaredock::cloudflare::types::ScriptSettings| {
        let mut b: Vec<String> = s
            .bindings
            .iter()
            .map(|b| format!("{} {}", b.name, flaredock::spec::bindings::shown(b)))
            .collect();
        b.sort();
        b
    };
    assert_eq!(shown(&settings), shown(&settings_before));
    assert!(
        shown(&settings).iter().any(|b| b.contains(&kv)),
        "{:?}",
        shown(&settings)
    );
    assert!(
        shown(&settings)
            .iter()
            .any(|b| b.contains("hello from wrangler"))
    );
    assert!(client.script_subdomain("shop").await.unwrap().enabled);
    assert_eq!(settings.limits, settings_before.limits);

    // Re-apply: nothing written.
    let before = common::cloudflare_writes(&em).len();
    let doc = apply_json(&em, project, "shop.yaml");
    assert_eq!(doc["converged"], true, "{doc}");
    assert!(common::cloudflare_writes(&em)[before..].is_empty());
    em.stop().await;
}

/// The `Ready` condition's reason in an apply document's entry.
fn ready_reason(entry: &Value) -> &str {
    entry["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_else(|| panic!("a Ready condition: {entry}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_approved_before_its_worker_waits_for_it_keeping_the_approval() {
    let em = common::start_emulator(|_| {}).await;
    let wrangler = Wrangler::new(&em);
    shop_project(&wrangler, &em).await;
    wrangler.ok(&["deploy"]);
    let app = common::client_for(&em)
        .list_applications()
        .await
        .unwrap()
        .remove(0);
    let project = wrangler.home.path();
    wrangler.ok(&["deploy", "--dry-run", "--outdir", "out"]);
    let (code, yaml, err) = flaredock(&em, project, &["import", "--bundle", "out"]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(project.join("shop.yaml"), &yaml).unwrap();
    let doc = apply_json(&em, project, "shop.yaml");
    let w = object(&doc, "CloudflareWorker");
    let c = object(&doc, "CloudflareContainer");
    assert_eq!(w["state"], "AwaitingApproval", "{w}");
    assert_eq!(c["state"], "AwaitingApproval", "{c}");
    let worker_hash = w["status"]["pendingAdoption"]["hash"].as_str().unwrap();
    let hash = c["status"]["pendingAdoption"]["hash"].as_str().unwrap();

    // The container's approval alone: it waits for its Worker, nothing is written, and
    // its status keeps the approved adoption (hash and changes).
    let approved = approve(&yaml, "shop-shop", hash);
    std::fs::write(project.join("shop.yaml"), &approved).unwrap();
    em.shared.clear_requests();
    let doc = apply_json(&em, project, "shop.yaml");
    assert_eq!(
        common::cloudflare_writes(&em),
        [] as [String; 0],
        "nothing is written before the Worker is adopted"
    );
    assert_eq!(
        object(&doc, "CloudflareWorker")["state"],
        "AwaitingApproval",
        "{doc}"
    );
    let c = object(&doc, "CloudflareContainer");
    assert_eq!(c["state"], "InProgress", "{c}");
    assert_eq!(ready_reason(c), "WorkerNotReady", "{c}");
    assert_eq!(c["status"]["pendingAdoption"]["hash"], hash, "{c}");
    assert_eq!(
        c["status"]["pendingAdoption"]["changes"][0]["field"],
        "configuration.labels.flaredock.dev/owner",
        "{c}"
    );
    // apply does not wait out its timeout for a Worker that waits for a person: one
    // round read the applications (a wait would read them every round).
    let lists = em
        .shared
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/containers/applications"))
        .count();
    assert!(lists <= 2, "{lists} reads of the application list");

    // The Worker's approval added: the container's approval, kept, lets it through.
    let both = approve(&approved, "shop", worker_hash);
    std::fs::write(project.join("shop.yaml"), &both).unwrap();
    let doc = apply_json(&em, project, "shop.yaml");
    assert_eq!(doc["converged"], true, "{doc}");
    let rollouts: Vec<String> = common::cloudflare_writes(&em)
        .into_iter()
        .filter(|w| w.contains("/containers/"))
        .collect();
    assert_eq!(
        rollouts,
        vec![format!(
            "POST /client/v4/accounts/{}/containers/applications/{}/rollouts",
            em.account_id(),
            app.id
        )],
        "{doc}"
    );
    let c = object(&doc, "CloudflareContainer");
    assert!(c["status"]["pendingAdoption"].is_null(), "{c}");
    em.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrangler_deploys_routes_a_cron_and_kv_and_d1_bindings() {
    let em = common::start_emulator(|_| {}).await;
    let wrangler = Wrangler::new(&em);
    let kv = create_storage(
        &em,
        "storage/kv/namespaces",
        serde_json::json!({"title": "edge-cache"}),
    )
    .await;
    let d1 = create_storage(&em, "d1/database", serde_json::json!({"name": "edge-db"})).await;
    let (kv, d1) = (kv["id"].as_str().unwrap(), d1["uuid"].as_str().unwrap());
    let project = wrangler.home.path();
    std::fs::write(
        project.join("wrangler.toml"),
        format!(
            "name = \"edge\"\nmain = \"index.js\"\ncompatibility_date = \"2026-04-01\"\nroutes = [{{ pattern = \"shop.example.com/*\", zone_name = \"example.com\" }}]\n\n[triggers]\ncrons = [\"*/5 * * * *\"]\n\n[[kv_namespaces]]\nbinding = \"CACHE\"\nid = \"{kv}\"\n\n[[d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"edge-db\"\ndatabase_id = \"{d1}\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        project.join("index.js"),
        "export default { fetch() { return new Response(\"edge\"); }, scheduled() {} };\n",
    )
    .unwrap();
    let out = wrangler.ok(&["deploy"]);
    assert!(
        out.contains("shop.example.com/* (zone name: example.com)"),
        "{out}"
    );
    assert!(out.contains("schedule: */5 * * * *"), "{out}");

    // Read back through the official endpoints.
    let client = common::client_for(&em);
    let zone = client
        .zone_by_name("example.com")
        .await
        .unwrap()
        .expect("zone");
    let routes = client.list_routes(&zone.id).await.unwrap();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0].pattern, "shop.example.com/*");
    assert_eq!(routes[0].script.as_deref(), Some("edge"));
    let crons: Vec<String> = client
        .schedules("edge")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.cron)
        .collect();
    assert_eq!(crons, vec!["*/5 * * * *"]);
    let settings = client.script_settings("edge").await.unwrap();
    let kv_binding = settings
        .bindings
        .iter()
        .find(|b| b.name == "CACHE")
        .expect("CACHE");
    assert_eq!(kv_binding.kind, "kv_namespace");
    assert_eq!(kv_binding.str_field("namespace_id"), Some(kv));
    // wrangler sends D1's renamed `id`; Cloudflare keeps it as `database_id`.
    let db = settings
        .bindings
        .iter()
        .find(|b| b.name == "DB")
        .expect("DB");
    assert_eq!(db.kind, "d1");
    assert_eq!(db.str_field("database_id"), Some(d1));
    // Routes only: wrangler leaves workers.dev off.
    assert!(!client.script_subdomain("edge").await.unwrap().enabled);

    // A second deploy of new code goes through the Versions API and takes effect.
    std::fs::write(
        project.join("index.js"),
        "export default { fetch() { return new Response(\"edge two\"); }, scheduled() {} };\n",
    )
    .unwrap();
    let out = wrangler.ok(&["deploy"]);
    assert!(out.contains("schedule: */5 * * * *"), "{out}");
    let posted: Vec<String> = em
        .shared
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.contains("/workers/scripts/edge/"))
        .map(|r| r.path.rsplit('/').next().unwrap_or("").to_string())
        .filter(|last| last != "subdomain")
        .collect();
    assert_eq!(posted, vec!["versions", "deployments"], "{posted:?}");
    let main = em.shared.account().scripts["edge"].modules["index.js"]
        .content
        .clone();
    assert!(main.contains("edge two"), "{main}");
    assert_eq!(client.list_routes(&zone.id).await.unwrap().len(), 1);

    // A D1 database that does not exist is refused with Cloudflare's error.
    let missing = "00000000-0000-4000-8000-000000000000";
    let text = std::fs::read_to_string(project.join("wrangler.toml"))
        .unwrap()
        .replace(d1, missing)
        .replace("name = \"edge\"", "name = \"edge-two\"")
        .replace("shop.example.com", "two.example.com");
    std::fs::write(project.join("wrangler.toml"), text).unwrap();
    let (code, out, err) = wrangler.run(&["deploy"]);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(
        format!("{out}{err}").contains(&format!(
            "D1 binding 'DB' references database '{missing}' which was not found."
        )),
        "{out}{err}"
    );
    em.stop().await;
}

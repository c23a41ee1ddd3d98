//! The controller where it will run: a real kube-apiserver and etcd
//! (`tests/common/testenv.rs`, `scripts/kube-testenv.sh`), `kubectl`, the install of
//! `deploy/`, and the real `flaredock run` process as the ServiceAccount `deploy/`
//! creates, against an in-process emulator. No controller-manager, scheduler or
//! kubelet: nothing here waits for a namespace to go or a Pod to run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::testenv::{TestEnv, client_from, testenv};
use flaredock::spec::{CloudflareContainer, CloudflareWorker};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

const CRDS: [&str; 2] = [
    "cloudflarecontainers.flaredock.dev",
    "cloudflareworkers.flaredock.dev",
];
/// The ServiceAccount of `deploy/`.
const SA_NAMESPACE: &str = "flaredock-system";
const SA_NAME: &str = "flaredock";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kubectl` as the admin; panics with its output unless it succeeds.
fn kubectl_ok(env: &TestEnv, args: &[&str]) -> Output {
    let out = env.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        text(&out)
    );
    out
}

/// `kubectl apply -k deploy/` once per test binary, then both CRDs Established.
struct Install {
    output: Output,
}

static INSTALL: OnceLock<Install> = OnceLock::new();

fn installed() -> (&'static TestEnv, &'static Install) {
    let env = testenv();
    let install = INSTALL.get_or_init(|| {
        let output = env
            .kubectl()
            .args(["apply", "-k", "deploy/"])
            .output()
            .expect("kubectl runs");
        if output.status.success() {
            let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
            let names: Vec<String> = CRDS.iter().map(|c| format!("crd/{c}")).collect();
            args.extend(names.iter().map(String::as_str));
            kubectl_ok(env, &args);
        }
        Install { output }
    });
    assert!(
        install.output.status.success(),
        "kubectl apply -k deploy/: {}",
        text(&install.output)
    );
    (env, install)
}

async fn create_namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{:06x}", fastrand::u32(..0xffffff));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
    name
}

async fn credentials_secret(client: &Client, ns: &str, em: &common::Emulator) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "cloudflare"},
                "stringData": {"apiToken": em.api_token(), "accountId": em.account_id()},
            }))
            .unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("create Secret {ns}/cloudflare: {e}"));
}

/// A `flaredock run` process (the real binary); killed on drop. Its log is printed
/// by [`Controller::log`] for failures.
struct Controller {
    child: Child,
    log: PathBuf,
    /// Of `/metrics`, `/healthz` and `/readyz`.
    port: u16,
}

impl Controller {
    /// As the identity of `kubeconfig`, watching `namespace`, its own Lease in
    /// `flaredock-system` (the Role of `deploy/` grants Leases there).
    fn start(
        kubeconfig: &Path,
        namespace: &str,
        em: &common::Emulator,
        env: &[(&str, &str)],
    ) -> Controller {
        let log = testenv().dir().join(format!(
            "controller-{namespace}-{:04x}.log",
            fastrand::u16(..)
        ));
        let file = std::fs::File::create(&log).expect("controller log");
        let port = common::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_flaredock"))
            .args(["run", "--namespace", namespace])
            .args(["--lease-name", &format!("flaredock-{namespace}")])
            .args(["--lease-namespace", SA_NAMESPACE, "--lease-duration", "6s"])
            .args(["--metrics-address", &format!("127.0.0.1:{port}")])
            .args(["--api-base-url", &em.base_url(), "--progress-poll", "1s"])
            .env("KUBECONFIG", kubeconfig)
            .env_remove("CLOUDFLARE_API_TOKEN")
            .env_remove("CLOUDFLARE_ACCOUNT_ID")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("flaredock run starts");
        Controller { child, log, port }
    }

    /// SIGTERM, as a rollout stops a pod (the Lease is released); SIGKILL after 15 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The status code of `/readyz` (`None`: not serving yet).
    async fn readyz(&self) -> Option<u16> {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        let answer = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        answer.ok().map(|r| r.status().as_u16())
    }

    /// Waits (60 s at most) until the log has `text`.
    async fn wait_log(&mut self, text: &str) {
        let started = Instant::now();
        while !self.log().contains(text) {
            self.assert_running();
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the controller never logged {text:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log) if the process has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("flaredock run exited ({status}):\n{}", self.log());
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The controller's kubeconfig: the ServiceAccount of `deploy/` with a token from the
/// TokenRequest API (never the admin).
async fn controller_kubeconfig(env: &TestEnv, tag: &str) -> PathBuf {
    env.service_account_kubeconfig(SA_NAMESPACE, SA_NAME, &format!("sa-{tag}.kubeconfig"))
        .await
}

/// Polls `get` until `done` says yes (or 90 s pass: then panics with the controller's log).
async fn wait_for<K, F>(
    api: &Api<K>,
    name: &str,
    controller: &mut Controller,
    what: &str,
    done: F,
) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(&K) -> bool,
{
    let started = Instant::now();
    loop {
        controller.assert_running();
        if let Some(obj) = api.get_opt(name).await.expect("get") {
            if done(&obj) {
                return obj;
            }
            if started.elapsed() > Duration::from_secs(90) {
                panic!(
                    "{name}: not {what} within 90 s: {obj:?}\ncontroller log:\n{}",
                    controller.log()
                );
            }
        } else if started.elapsed() > Duration::from_secs(90) {
            panic!(
                "{name} does not exist\ncontroller log:\n{}",
                controller.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[test]
fn deploy_installs_cleanly_and_both_crds_become_established() {
    let (env, install) = installed();
    let stdout = String::from_utf8_lossy(&install.output.stdout);
    let stderr = String::from_utf8_lossy(&install.output.stderr);
    // No warning from the API server (deprecated APIs, Pod Security of the operator's
    // own Deployment in its `restricted` namespace, unknown fields).
    assert!(
        stderr.trim().is_empty(),
        "kubectl apply -k deploy/ warned: {stderr}"
    );
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/cloudflarecontainers.flaredock.dev",
        "customresourcedefinition.apiextensions.k8s.io/cloudflareworkers.flaredock.dev",
        "namespace/flaredock-system",
        "serviceaccount/flaredock",
        "clusterrole.rbac.authorization.k8s.io/flaredock",
        "clusterrole.rbac.authorization.k8s.io/flaredock-tenant",
        "clusterrolebinding.rbac.authorization.k8s.io/flaredock",
        "role.rbac.authorization.k8s.io/flaredock-leader-election",
        "rolebinding.rbac.authorization.k8s.io/flaredock-leader-election",
        "deployment.apps/flaredock",
        "poddisruptionbudget.policy/flaredock",
        "service/flaredock-metrics",
    ] {
        assert!(
            stdout.contains(object),
            "{object} is not in the output of kubectl apply -k deploy/:\n{stdout}"
        );
    }
    let crds = kubectl_ok(env, &["get", "crd", "-o", "json"]);
    let crds: serde_json::Value = serde_json::from_slice(&crds.stdout).unwrap();
    for name in CRDS {
        let crd = crds["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not installed"));
        let conditions = crd["status"]["conditions"].as_array().unwrap();
        for kind in ["Established", "NamesAccepted"] {
            assert!(
                conditions
                    .iter()
                    .any(|c| c["type"] == kind && c["status"] == "True"),
                "{name}: {kind} is not True: {conditions:?}"
            );
        }
        // The API server took the schema as structural: no NonStructuralSchema.
        assert!(
            !conditions
                .iter()
                .any(|c| c["type"] == "NonStructuralSchema" && c["status"] == "True"),
            "{name}: {conditions:?}"
        );
    }
    // The API server serves both kinds (their short names too).
    let resources = kubectl_ok(
        env,
        &["api-resources", "--api-group=flaredock.dev", "-o", "name"],
    );
    let resources = String::from_utf8_lossy(&resources.stdout);
    for r in CRDS {
        assert!(resources.contains(r), "{resources}");
    }
}

// ---------------------------------------------------------------------------------
// One set of rules, checked twice.

/// What the API server says of one document: created (in a dry run, with strict field
/// validation) or refused, with its message.
async fn server_verdict(client: &Client, ns: &str, doc: &serde_json::Value) -> Result<(), String> {
    let Some(api_version) = doc["apiVersion"].as_str() else {
        return Err("no apiVersion (kubectl: apiVersion not set)".into());
    };
    let Some(kind) = doc["kind"].as_str() else {
        return Err("no kind (kubectl: kind not set)".into());
    };
    let mut doc = doc.clone();
    if let Some(meta) = doc.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.insert("namespace".into(), json!(ns));
    }
    let group = if api_version.contains('/') {
        "apis"
    } else {
        "api"
    };
    let plural = format!("{}s", kind.to_lowercase());
    let request = http::Request::post(format!(
        "/{group}/{api_version}/namespaces/{ns}/{plural}?dryRun=All&fieldValidation=Strict&fieldManager=verdicts"
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&doc).unwrap())
    .unwrap();
    match client.request_text(request).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) => Err(format!("{} {}: {}", e.code, e.reason, e.message)),
        Err(e) => panic!("the API server did not answer: {e}"),
    }
}

/// The API server's verdict on a file: refused when it refuses one of its documents
/// (as `kubectl apply` would), or when the file is not YAML of objects at all.
async fn server_verdict_on_file(client: &Client, ns: &str, path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut refusals = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let value = match <serde_json::Value as serde::Deserialize>::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                return Err(format!(
                    "not YAML (kubectl refuses it before the server): {e}"
                ));
            }
        };
        if value.is_null() {
            continue;
        }
        if !value.is_object() {
            return Err("a document that is not an object (kubectl refuses it)".into());
        }
        if let Err(e) = server_verdict(client, ns, &value).await {
            refusals.push(format!("document {}: {e}", i + 1));
        }
    }
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(refusals.join("; "))
    }
}

/// flaredock's own verdict (`flaredock plan -f`): exit code 2 is a refused manifest.
fn cli_verdict(em: &common::Emulator, path: &Path) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["plan", "-f"])
        .arg(path)
        .env("CLOUDFLARE_API_BASE_URL", em.base_url())
        .env("CLOUDFLARE_ACCOUNT_ID", em.account_id())
        .env("CLOUDFLARE_API_TOKEN", em.api_token())
        .output()
        .expect("flaredock runs");
    if out.status.code() == Some(2) {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    } else {
        Ok(())
    }
}

/// Manifests that only flaredock's code refuses: the API server takes them, because no
/// CRD schema or CEL rule can say what is wrong.
const ONLY_CODE_REFUSES: &[(&str, &str)] = &[
    (
        "bad-digest.yaml",
        "a reference's digest must parse (hex of the right length)",
    ),
    ("bad-reference.yaml", "an image reference must parse"),
    (
        "container-worker-not-in-files.yaml",
        "a rule across files: the Worker named must be among them",
    ),
    (
        "duplicate-object.yaml",
        "a rule across documents: one object twice",
    ),
    (
        "from-container-self.yaml",
        "a rule across objects: an image from another container",
    ),
    (
        "env-secret-not-among-files.yaml",
        "a rule across objects: the Secret must be among the files",
    ),
    (
        "env-secret-key-missing.yaml",
        "a rule across objects: the Secret must have the key",
    ),
    (
        "worker-module-escapes.yaml",
        "a path rule over a map's keys (no `..` out of the bundle)",
    ),
];

/// Manifests refused by the API server's own rules or by kubectl, not by a CRD: both
/// refuse them, for reasons of their own.
const SERVER_OR_KUBECTL_REFUSES: &[(&str, &str)] = &[
    (
        "bad-name.yaml",
        "object names are the API server's rule (DNS subdomain)",
    ),
    (
        "unknown-metadata-field.yaml",
        "ObjectMeta is the API server's, strict field validation refuses the field",
    ),
    (
        "missing-api-version.yaml",
        "kubectl cannot route a document without apiVersion",
    ),
    (
        "wrong-api-version.yaml",
        "the API server serves no such version",
    ),
    (
        "malformed-yaml.yaml",
        "not YAML: kubectl refuses it before any server",
    ),
    (
        "not-a-mapping.yaml",
        "not an object: kubectl refuses it before any server",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_and_the_command_line_give_one_verdict_on_every_manifest() {
    let (env, _) = installed();
    let client = env.admin_client().await;
    let ns = create_namespace(&client, "verdicts").await;
    let em = common::start_emulator(|_| {}).await;

    let yaml_files = |dir: &Path| {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        files
    };
    let invalid = yaml_files(&repo().join("tests/invalid"));
    assert!(invalid.len() >= 50, "{} invalid manifests", invalid.len());
    let mut disagreements = Vec::new();
    let mut refused_by_crd = 0;
    for path in &invalid {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let server = server_verdict_on_file(&client, &ns, path).await;
        let cli = cli_verdict(&em, path);
        if cli.is_ok() {
            disagreements.push(format!("{name}: the command line accepts it"));
        }
        let only_code = ONLY_CODE_REFUSES.iter().any(|(n, _)| *n == name);
        let server_own = SERVER_OR_KUBECTL_REFUSES.iter().any(|(n, _)| *n == name);
        match (&server, only_code) {
            (Ok(()), true) => {}
            (Ok(()), false) => disagreements.push(format!(
                "{name}: the API server accepts it, the command line refuses it: {}",
                cli.err().unwrap_or_default().trim()
            )),
            (Err(e), true) => disagreements.push(format!(
                "{name}: listed as only code refuses, but the API server refuses it: {e}"
            )),
            (Err(_), false) => {
                if !server_own {
                    refused_by_crd += 1;
                }
            }
        }
    }
    // Both lists name files of the corpus.
    for (name, _) in ONLY_CODE_REFUSES.iter().chain(SERVER_OR_KUBECTL_REFUSES) {
        assert!(
            invalid.iter().any(|p| p.ends_with(name)),
            "{name} is not in tests/invalid"
        );
    }

    let mut examples = yaml_files(&repo().join("examples"));
    examples.extend(yaml_files(&repo().join("examples/build")));
    assert!(examples.len() >= 8, "{examples:?}");
    for path in &examples {
        let name = path.strip_prefix(repo()).unwrap().display().to_string();
        if let Err(e) = server_verdict_on_file(&client, &ns, path).await {
            disagreements.push(format!(
                "{name}: a valid example the API server refuses: {e}"
            ));
        }
        if let Err(e) = cli_verdict(&em, path) {
            disagreements.push(format!(
                "{name}: a valid example the command line refuses: {e}"
            ));
        }
    }
    // A whole number where the schema says `number`: the CRD's rule on vcpu compares
    // it as a double on the server and in flaredock (0 refused, 1 taken).
    let edge = tempfile::tempdir().unwrap();
    for (vcpu, valid) in [("0", false), ("1", true), ("0.0625", true)] {
        let path = edge.path().join(format!("vcpu-{vcpu}.yaml"));
        std::fs::write(
            &path,
            format!("apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: shop}}\nspec: {{className: Shop, image: {{reference: 'shop:v1'}}, worker: {{scriptName: w}}, resources: {{vcpu: {vcpu}, memoryMib: 1024}}}}\n"),
        )
        .unwrap();
        let server = server_verdict_on_file(&client, &ns, &path).await;
        let cli = cli_verdict(&em, &path);
        if server.is_ok() != valid || cli.is_ok() != valid {
            disagreements.push(format!(
                "vcpu: {vcpu} should be {}: API server {server:?}, command line {cli:?}",
                if valid { "taken" } else { "refused" }
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    assert!(refused_by_crd >= 35, "{refused_by_crd} refused by the CRDs");
}

// ---------------------------------------------------------------------------------
// The controller as the ServiceAccount of deploy/.

fn container(name: &str) -> CloudflareContainer {
    serde_json::from_value(json!({
        "apiVersion": "flaredock.dev/v1alpha1", "kind": "CloudflareContainer",
        "metadata": {"name": name},
        "spec": {
            "className": flaredock::emulator::DEMO_CLASS,
            "image": {"reference": "hello:v1"},
            "worker": {"scriptName": flaredock::emulator::DEMO_SCRIPT},
            "credentialsSecretRef": {"name": "cloudflare"},
        },
    }))
    .unwrap()
}

fn condition<'a>(
    status: Option<&'a flaredock::spec::CloudflareContainerStatus>,
    kind: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status?.conditions.iter().find(|c| c.type_ == kind)
}

/// `kubectl auth can-i VERB RESOURCE -n NS` as the identity of `kubeconfig`.
fn can_i(kubeconfig: &Path, verb: &str, resource: &str, ns: &str) -> bool {
    let out = Command::new(common::testenv::kubectl_binary())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["auth", "can-i", verb, resource, "-n", ns])
        .output()
        .expect("kubectl runs");
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onboarded_namespace_reaches_ready_and_one_not_onboarded_is_forbidden() {
    let (env, _) = installed();
    let admin = env.admin_client().await;
    let em = common::start_emulator(|_| {}).await;
    // team-a, onboarded exactly as deploy/tenant-example says.
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap(),
        )
        .await
        .expect("create namespace team-a");
    kubectl_ok(env, &["apply", "-k", "deploy/tenant-example"]);
    let stranger = create_namespace(&admin, "stranger").await;
    for ns in ["team-a", stranger.as_str()] {
        credentials_secret(&admin, ns, &em).await;
    }

    let kubeconfig = controller_kubeconfig(env, "tenants").await;
    // The controller is the ServiceAccount, not the admin: what deploy/ grants, no more.
    assert!(can_i(&kubeconfig, "get", "secrets", "team-a"));
    assert!(!can_i(&kubeconfig, "get", "secrets", &stranger));
    assert!(!can_i(&kubeconfig, "list", "secrets", "team-a"));
    assert!(!can_i(
        &kubeconfig,
        "create",
        "cloudflarecontainers.flaredock.dev",
        "team-a"
    ));
    let who = Command::new(common::testenv::kubectl_binary())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .expect("kubectl runs");
    assert_eq!(
        String::from_utf8_lossy(&who.stdout),
        "system:serviceaccount:flaredock-system:flaredock",
        "{}",
        text(&who)
    );

    let mut onboarded = Controller::start(&kubeconfig, "team-a", &em, &[]);
    let mut forbidden = Controller::start(&kubeconfig, &stranger, &em, &[]);
    let in_team_a: Api<CloudflareContainer> = Api::namespaced(admin.clone(), "team-a");
    let in_stranger: Api<CloudflareContainer> = Api::namespaced(admin.clone(), &stranger);
    in_team_a
        .create(&PostParams::default(), &container("hello"))
        .await
        .unwrap();
    in_stranger
        .create(&PostParams::default(), &container("refused"))
        .await
        .unwrap();

    let ready = wait_for(&in_team_a, "hello", &mut onboarded, "Ready", |o| {
        o.status
            .as_ref()
            .is_some_and(flaredock::reconcile::status::is_ready)
    })
    .await;
    let apps = common::client_for(&em).list_applications().await.unwrap();
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(
        ready.status.as_ref().unwrap().application_id.as_deref(),
        Some(apps[0].id.as_str())
    );

    let stalled = wait_for(&in_stranger, "refused", &mut forbidden, "Stalled", |o| {
        condition(o.status.as_ref(), "Stalled").is_some_and(|c| c.status == "True")
    })
    .await;
    let c = condition(stalled.status.as_ref(), "Stalled").unwrap();
    assert_eq!(c.reason, "CredentialsForbidden", "{c:?}");
    assert!(
        c.message.contains("flaredock-tenant") && c.message.contains(&stranger),
        "the message names the RoleBinding and the namespace: {}",
        c.message
    );
    // Nothing of the refused object reached Cloudflare.
    let apps = common::client_for(&em).list_applications().await.unwrap();
    assert_eq!(apps.len(), 1, "{apps:?}");
    // The refusal was the API server's 403 on the Secret, as the controller logged it
    // nowhere else: the same identity is refused by the API server directly.
    let sa = client_from(&kubeconfig).await;
    let secrets: Api<Secret> = Api::namespaced(sa, &stranger);
    match secrets.get("cloudflare").await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
        other => panic!("the ServiceAccount read a Secret it may not: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// The quickstart, with kubectl.

/// The managedFields entries of `manager` for the status subresource.
fn status_managers(obj: &serde_json::Value) -> Vec<serde_json::Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["subresource"] == "status")
        .collect()
}

/// The default credentials, as the Deployment of deploy/ takes them: the Secret
/// `cloudflare-default` in flaredock-system (created here, read back as the admin).
async fn default_credentials(env: &TestEnv, em: &common::Emulator) -> (String, String) {
    let admin = env.admin_client().await;
    let secrets: Api<Secret> = Api::namespaced(admin, SA_NAMESPACE);
    let existing = secrets.get_opt("cloudflare-default").await.unwrap();
    if existing.is_none() {
        kubectl_ok(
            env,
            &[
                "-n",
                SA_NAMESPACE,
                "create",
                "secret",
                "generic",
                "cloudflare-default",
                &format!("--from-literal=apiToken={}", em.api_token()),
                &format!("--from-literal=accountId={}", em.account_id()),
            ],
        );
    }
    let secret = secrets.get("cloudflare-default").await.unwrap();
    let data = secret.data.unwrap_or_default();
    let value = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
    (value("apiToken"), value("accountId"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_applied_with_kubectl_reaches_ready_with_status_by_flaredock() {
    let (env, _) = installed();
    let em = common::start_emulator(|_| {}).await;
    let (token, account) = default_credentials(env, &em).await;
    assert_eq!(token, em.api_token());
    // The quickstart lives in `default` and uses the operator's default credentials.
    kubectl_ok(
        env,
        &[
            "label",
            "--overwrite",
            "namespace",
            "default",
            "flaredock.dev/default-credentials=allow",
        ],
    );
    let kubeconfig = controller_kubeconfig(env, "quickstart").await;
    let mut controller = Controller::start(
        &kubeconfig,
        "default",
        &em,
        &[
            ("CLOUDFLARE_API_TOKEN", &token),
            ("CLOUDFLARE_ACCOUNT_ID", &account),
        ],
    );
    kubectl_ok(env, &["apply", "-f", "examples/quickstart.yaml"]);
    let wait = env
        .kubectl()
        .args([
            "-n",
            "default",
            "wait",
            "--for=condition=Ready",
            "--timeout=120s",
        ])
        .args(["cloudflareworker/hello", "cloudflarecontainer/hello"])
        .output()
        .expect("kubectl runs");
    controller.assert_running();
    assert!(
        wait.status.success(),
        "kubectl wait: {}\ncontroller log:\n{}",
        text(&wait),
        controller.log()
    );

    // Status by server-side apply on the status subresource, under `flaredock` only.
    for kind in ["cloudflareworker", "cloudflarecontainer"] {
        let out = kubectl_ok(
            env,
            &[
                "-n",
                "default",
                "get",
                kind,
                "hello",
                "-o",
                "json",
                "--show-managed-fields",
            ],
        );
        let obj: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let managers = status_managers(&obj);
        assert_eq!(managers.len(), 1, "{kind}: {managers:?}");
        assert_eq!(managers[0]["manager"], "flaredock", "{kind}: {managers:?}");
        assert_eq!(managers[0]["operation"], "Apply", "{kind}: {managers:?}");
        let fields = &managers[0]["fieldsV1"]["f:status"];
        assert!(
            fields.get("f:conditions").is_some(),
            "{kind}: flaredock owns status.conditions: {fields}"
        );
        // The finalizer is on the object (a patch by the controller, not the status).
        assert!(
            obj["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == flaredock::controller::FINALIZER)),
            "{kind}: {obj}"
        );
        // kubectl's apply owns the spec; flaredock never wrote it.
        let spec_owners: Vec<_> = obj["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["fieldsV1"].get("f:spec").is_some())
            .map(|m| m["manager"].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(
            spec_owners.iter().all(|m| m.starts_with("kubectl")),
            "{kind}: {spec_owners:?}"
        );
    }
    let admin = env.admin_client().await;
    let containers: Api<CloudflareContainer> = Api::namespaced(admin.clone(), "default");
    let ready = containers.get("hello").await.unwrap();
    let status = ready.status.clone().unwrap();
    assert_eq!(
        status.observed_generation, ready.metadata.generation,
        "status is of the object's generation"
    );
    let apps = common::client_for(&em).list_applications().await.unwrap();
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(status.application_id.as_deref(), Some(apps[0].id.as_str()));

    // kubectl delete waits for the objects to go: the finalizer ran the cleanup.
    let delete = env
        .kubectl()
        .args(["delete", "-f", "examples/quickstart.yaml", "--timeout=120s"])
        .output()
        .expect("kubectl runs");
    assert!(
        delete.status.success(),
        "kubectl delete: {}\ncontroller log:\n{}",
        text(&delete),
        controller.log()
    );
    assert!(containers.get_opt("hello").await.unwrap().is_none());
    let workers: Api<CloudflareWorker> = Api::namespaced(admin, "default");
    assert!(workers.get_opt("hello").await.unwrap().is_none());
    assert!(
        common::client_for(&em)
            .list_applications()
            .await
            .unwrap()
            .is_empty(),
        "the cleanup deleted the application\ncontroller log:\n{}",
        controller.log()
    );
}

/// Onboards `ns` as a tenant's own kustomization does: `namespace: NS` and the
/// component deploy/tenant (kustomize wants a relative path).
fn onboard(env: &TestEnv, ns: &str) {
    let dir = tempfile::tempdir().unwrap();
    let up = "../".repeat(dir.path().components().count() - 1);
    let tenant = format!(
        "{up}{}",
        repo()
            .join("deploy/tenant")
            .display()
            .to_string()
            .trim_start_matches('/')
    );
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {ns}\ncomponents:\n  - {tenant}\n"
        ),
    )
    .unwrap();
    kubectl_ok(env, &["apply", "-k", dir.path().to_str().unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_returns_only_after_cloudflare_let_the_application_go() {
    let (env, _) = installed();
    let admin = env.admin_client().await;
    // Cloudflare deletes asynchronously: a deleted application stays listed a while.
    let em = common::start_emulator(|c| c.delete_delay = Duration::from_secs(5)).await;
    let ns = create_namespace(&admin, "deletes").await;
    onboard(env, &ns);
    credentials_secret(&admin, &ns, &em).await;
    let kubeconfig = controller_kubeconfig(env, &ns).await;
    let mut controller = Controller::start(&kubeconfig, &ns, &em, &[]);
    let api: Api<CloudflareContainer> = Api::namespaced(admin.clone(), &ns);
    api.create(&PostParams::default(), &container("hello"))
        .await
        .unwrap();
    wait_for(&api, "hello", &mut controller, "Ready", |o| {
        o.status
            .as_ref()
            .is_some_and(flaredock::reconcile::status::is_ready)
    })
    .await;
    assert_eq!(
        common::client_for(&em)
            .list_applications()
            .await
            .unwrap()
            .len(),
        1
    );
    let delete = env
        .kubectl()
        .args([
            "-n",
            &ns,
            "delete",
            "cloudflarecontainer/hello",
            "--timeout=120s",
        ])
        .output()
        .expect("kubectl runs");
    assert!(delete.status.success(), "{}", text(&delete));
    let listed = common::client_for(&em).list_applications().await.unwrap();
    assert!(
        listed.is_empty(),
        "kubectl delete returned while Cloudflare still lists {:?}\ncontroller log:\n{}",
        listed.iter().map(|a| &a.name).collect::<Vec<_>>(),
        controller.log()
    );
}

// ---------------------------------------------------------------------------------
// Restart: the stores sync before anything is reconciled.

/// `n` CloudflareWorkers `w{i}`, each with the class `C{i}` hosted by the
/// CloudflareContainer `c{i}` (binding `B{i}`), as one manifest.
fn bound_pairs(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        out.push_str(&format!(
            "---\napiVersion: flaredock.dev/v1alpha1\nkind: CloudflareWorker\nmetadata: {{name: w{i}}}\nspec:\n  compatibilityDate: \"2026-06-01\"\n  credentialsSecretRef: {{name: cloudflare}}\n  source:\n    inline:\n      mainModule: index.js\n      modules:\n        index.js: |\n          export class C{i} {{ constructor(ctx, env) {{ this.ctx = ctx; }} }}\n          export default {{ async fetch(request, env) {{ return env.B{i}.get(env.B{i}.idFromName(\"a\")).fetch(request); }} }};\n---\napiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: c{i}}}\nspec:\n  className: C{i}\n  image: {{reference: 'hello:v1'}}\n  credentialsSecretRef: {{name: cloudflare}}\n  worker: {{name: w{i}, bindingName: B{i}}}\n"
        ));
    }
    out
}

/// Waits until every object of both kinds in `ns` is Ready (`expect` of each).
async fn wait_all_ready(admin: &Client, ns: &str, expect: usize, controller: &mut Controller) {
    let containers: Api<CloudflareContainer> = Api::namespaced(admin.clone(), ns);
    let workers: Api<CloudflareWorker> = Api::namespaced(admin.clone(), ns);
    let started = Instant::now();
    loop {
        controller.assert_running();
        let lp = kube::api::ListParams::default();
        let c = containers.list(&lp).await.unwrap();
        let w = workers.list(&lp).await.unwrap();
        let ready_c = c
            .items
            .iter()
            .filter(|o| {
                o.status
                    .as_ref()
                    .is_some_and(flaredock::reconcile::status::is_ready)
            })
            .count();
        let ready_w = w
            .items
            .iter()
            .filter(|o| {
                o.status
                    .as_ref()
                    .is_some_and(|s| flaredock::reconcile::status::is_true(&s.conditions, "Ready"))
            })
            .count();
        if ready_c == expect && ready_w == expect {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "{ready_c}/{expect} containers and {ready_w}/{expect} Workers Ready\ncontroller log (tail):\n{}",
            controller
                .log()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A plain-HTTP front of the API server that answers every LIST of CloudflareContainers
/// `delay` late (the startup check, `limit=1`, excepted): a large or throttled
/// container list, as after a restart over many objects. Everything else, watches
/// included, is passed through as it comes.
async fn slow_container_lists(
    env: &TestEnv,
    delay: Duration,
) -> (String, tokio::task::JoinHandle<()>) {
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::response::Response;
    #[derive(Clone)]
    struct Front {
        http: reqwest::Client,
        server: String,
        delay: Duration,
    }
    async fn forward(State(front): State<Front>, request: Request) -> Response {
        let target = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let query = request.uri().query().unwrap_or_default().to_string();
        let container_list = request.uri().path().ends_with("/cloudflarecontainers")
            && request.method() == http::Method::GET
            && !query
                .split('&')
                .any(|p| p == "watch=true" || p == "watch=1" || p == "limit=1");
        if container_list {
            tokio::time::sleep(front.delay).await;
        }
        let method = request.method().clone();
        let mut headers = request.headers().clone();
        headers.remove(http::header::HOST);
        let body = axum::body::to_bytes(request.into_body(), 64 << 20)
            .await
            .unwrap_or_default();
        let answer = front
            .http
            .request(method, format!("{}{target}", front.server))
            .headers(headers)
            .body(body)
            .send()
            .await;
        match answer {
            Ok(a) => {
                let mut response = Response::builder().status(a.status());
                for (k, v) in a.headers() {
                    if k != http::header::TRANSFER_ENCODING
                        && k != http::header::CONNECTION
                        && k != http::header::CONTENT_LENGTH
                    {
                        response = response.header(k, v);
                    }
                }
                response.body(Body::from_stream(a.bytes_stream())).unwrap()
            }
            Err(e) => Response::builder()
                .status(502)
                .body(Body::from(e.to_string()))
                .unwrap(),
        }
    }
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&env.ca_pem()).unwrap())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let front = Front {
        http,
        server: env.server.clone(),
        delay,
    };
    let router = axum::Router::new().fallback(forward).with_state(front);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_strips_no_worker_and_writes_nothing_to_cloudflare() {
    const PAIRS: usize = 50;
    let (env, _) = installed();
    let admin = env.admin_client().await;
    let em = common::start_emulator(|_| {}).await;
    let ns = create_namespace(&admin, "restart").await;
    onboard(env, &ns);
    credentials_secret(&admin, &ns, &em).await;
    let kubeconfig = controller_kubeconfig(env, &ns).await;
    let manifest = env.dir().join(format!("{ns}.yaml"));
    std::fs::write(&manifest, bound_pairs(PAIRS)).unwrap();

    let mut first = Controller::start(&kubeconfig, &ns, &em, &[]);
    kubectl_ok(env, &["-n", &ns, "apply", "-f", manifest.to_str().unwrap()]);
    wait_all_ready(&admin, &ns, PAIRS, &mut first).await;
    // Let the last status writes and rollouts settle, then stop it as a rollout does:
    // the Lease is released and the next replica leads at once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.stop();
    let before = common::cloudflare_writes(&em);

    // Two restarts, each reaching the API server through a front that answers the
    // CloudflareContainer lists 10 s late: the Workers' store syncs first.
    const LATE: Duration = Duration::from_secs(10);
    let (front, front_task) = slow_container_lists(env, LATE).await;
    let slow = env
        .service_account_kubeconfig_via(
            SA_NAMESPACE,
            SA_NAME,
            &format!("sa-{ns}-front.kubeconfig"),
            Some(&front),
        )
        .await;
    for round in 0..2 {
        // A single replica (no Lease to wait for) reconciles every object at once.
        let mut next =
            Controller::start(&slow, &ns, &em, &[("FLAREDOCK_LEADER_ELECTION", "false")]);
        next.wait_log("serving /metrics").await;
        // Before the container list comes, and every object's first reconcile after.
        tokio::time::sleep(LATE + Duration::from_secs(6)).await;
        next.assert_running();
        let writes: Vec<String> = common::cloudflare_writes(&em)
            .into_iter()
            .skip(before.len())
            .collect();
        assert!(
            writes.is_empty(),
            "round {round}: a restart over {PAIRS} Ready pairs wrote to Cloudflare ({} writes): {:?}",
            writes.len(),
            writes.iter().take(10).collect::<Vec<_>>()
        );
        next.stop();
    }
    // No Worker lost its class (its status names the classes of its last upload).
    let workers: Api<CloudflareWorker> = Api::namespaced(admin.clone(), &ns);
    for w in workers
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
    {
        let i = w
            .metadata
            .name
            .as_deref()
            .unwrap()
            .trim_start_matches('w')
            .to_string();
        let status = w.status.clone().unwrap_or_default();
        assert_eq!(status.containers, vec![format!("C{i}")], "w{i}: {status:?}");
    }
    front_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_200_once_both_watches_have_synced() {
    let (env, _) = installed();
    let admin = env.admin_client().await;
    let em = common::start_emulator(|_| {}).await;
    let ns = create_namespace(&admin, "readyz").await;
    let kubeconfig = controller_kubeconfig(env, &ns).await;
    let mut controller = Controller::start(&kubeconfig, &ns, &em, &[]);
    let started = Instant::now();
    loop {
        controller.assert_running();
        if controller.readyz().await == Some(200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/readyz is {:?} after 30 s (the Deployment's readinessProbe would never pass):\n{}",
            controller.readyz().await,
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        controller.log().contains("watches synced"),
        "{}",
        controller.log()
    );
}

//! The controller where it will run: a real kube-apiserver and etcd
//! (`tests/common/testenv.rs`, `scripts/kube-testenv.sh`), `kubectl`, the install of
//! `deploy/`, and the real `flaredock run` process as the ServiceAccount `deploy/`
//! creates, against an in-process emulator. No controller-manager, scheduler or
//! kubelet: nothing here waits for a namespace to go or a Pod to run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{
    CRDS, Controller, Front, Rule, SA_NAME, SA_NAMESPACE, can_i, condition, controller_kubeconfig,
    controller_requests, create_namespace, credentials_secret, installed, kubectl_ok, onboard,
    repo, text, wait_for,
};
use common::testenv::{TestEnv, client_from, testenv};
use flaredock::spec::{CloudflareContainer, CloudflareWorker};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

/// Tests that restart the API server or edit the RBAC of `deploy/` hold this
/// exclusively; every other test holds it shared.
static DISRUPTION: std::sync::LazyLock<tokio::sync::RwLock<()>> =
    std::sync::LazyLock::new(|| tokio::sync::RwLock::new(()));

async fn shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    DISRUPTION.read().await
}

async fn exclusive() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    DISRUPTION.write().await
}

#[test]
fn deploy_installs_cleanly_and_both_crds_become_established() {
    let _shared = DISRUPTION.blocking_read();
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
    let args = [
        std::ffi::OsStr::new("plan"),
        "-f".as_ref(),
        path.as_os_str(),
    ];
    match common::flaredock_cli(em, args) {
        (Some(2), _, stderr) => Err(stderr),
        _ => Ok(()),
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

/// What a file under `examples/` is, by its content: a manifest (YAML or JSON whose
/// documents include a Kubernetes object, one with `apiVersion` or `kind`), or
/// something else (a Dockerfile, JavaScript, a README, a wrangler configuration). A
/// file named `.yaml`/`.yml` must be a manifest.
enum ExampleFile {
    Manifest,
    Other,
    NotAManifest(String),
}

fn example_file(path: &Path) -> ExampleFile {
    let yaml_named = matches!(
        path.extension().and_then(|x| x.to_str()),
        Some("yaml" | "yml")
    );
    let refused = |why: String| {
        if yaml_named {
            ExampleFile::NotAManifest(why)
        } else {
            ExampleFile::Other
        }
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return refused("not UTF-8 text".into());
    };
    let mut objects = 0;
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        match <serde_json::Value as serde::Deserialize>::deserialize(doc) {
            Ok(v) if v.get("apiVersion").is_some() || v.get("kind").is_some() => objects += 1,
            Ok(_) => {}
            Err(e) => return refused(format!("not YAML: {e}")),
        }
    }
    if objects > 0 {
        ExampleFile::Manifest
    } else {
        refused("no Kubernetes object in it".into())
    }
}

/// Every file under `dir` (at any depth), sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The local build contexts (directories, canonical) the CloudflareContainers of a
/// manifest name in `spec.build.context`, relative to the manifest's directory.
fn build_contexts(path: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|doc| <serde_json::Value as serde::Deserialize>::deserialize(doc).ok())
        .filter_map(|doc| doc["spec"]["build"]["context"].as_str().map(String::from))
        .filter_map(|context| path.parent().unwrap().join(context).canonicalize().ok())
        .filter(|dir| dir.is_dir())
        .collect()
}

/// The wrangler configuration of a wrangler project directory, if it is one.
fn wrangler_config(dir: &Path) -> Option<PathBuf> {
    ["wrangler.jsonc", "wrangler.json", "wrangler.toml"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// What [`check_examples`] found.
struct Examples {
    /// The manifests both the API server and the command line were given.
    checked: Vec<String>,
    disagreements: Vec<String>,
}

/// The API server's and the command line's verdicts on `files` (manifests): the server
/// is given each file, the command line `target` (the file, or the directory they are
/// applied from together: rules across files hold only there).
async fn check_manifests(
    client: &Client,
    ns: &str,
    em: &common::Emulator,
    files: &[PathBuf],
    target: &Path,
    out: &mut Examples,
) {
    let shown = |p: &Path| p.strip_prefix(repo()).unwrap_or(p).display().to_string();
    for path in files {
        if let Err(e) = server_verdict_on_file(client, ns, path).await {
            out.disagreements.push(format!(
                "{}: a valid example the API server refuses: {e}",
                shown(path)
            ));
        }
        out.checked.push(shown(path));
    }
    if let Err(e) = cli_verdict(em, target) {
        out.disagreements.push(format!(
            "{}: a valid example the command line refuses: {e}",
            shown(target)
        ));
    }
}

/// Every manifest of `examples/`: the files at its top (each on its own, as their
/// comments apply them) and every file of every example directory that is a manifest
/// (the directory as a whole to the command line, as its README applies it). A
/// directory holding no manifest must be what a checked manifest builds from (its
/// `build.context`) or a wrangler project, whose `flaredock import` output is checked
/// in its place; any other is a disagreement.
async fn check_examples(client: &Client, ns: &str, em: &common::Emulator) -> Examples {
    let root = repo().join("examples");
    let mut out = Examples {
        checked: Vec::new(),
        disagreements: Vec::new(),
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let (dirs, top): (Vec<PathBuf>, Vec<PathBuf>) = entries.into_iter().partition(|p| p.is_dir());
    let mut contexts = Vec::new();
    let mut sort = |files: &[PathBuf], out: &mut Examples| {
        let mut manifests = Vec::new();
        for path in files {
            match example_file(path) {
                ExampleFile::Manifest => {
                    contexts.extend(build_contexts(path));
                    manifests.push(path.clone());
                }
                ExampleFile::Other => {}
                ExampleFile::NotAManifest(why) => out.disagreements.push(format!(
                    "{}: a YAML file in examples/ that is not a manifest: {why}",
                    path.strip_prefix(repo()).unwrap().display()
                )),
            }
        }
        manifests
    };
    let top = sort(&top, &mut out);
    let dirs: Vec<(PathBuf, Vec<PathBuf>)> = dirs
        .into_iter()
        .map(|dir| {
            let manifests = sort(&files_under(&dir), &mut out);
            (dir, manifests)
        })
        .collect();
    for path in &top {
        check_manifests(client, ns, em, std::slice::from_ref(path), path, &mut out).await;
    }
    let imported = tempfile::tempdir().unwrap();
    for (dir, manifests) in &dirs {
        let name = dir.strip_prefix(repo()).unwrap().display().to_string();
        if !manifests.is_empty() {
            check_manifests(client, ns, em, manifests, dir, &mut out).await;
        } else if contexts.contains(&dir.canonicalize().unwrap()) {
            // A build context (a Dockerfile and what it copies): its manifest is checked.
        } else if let Some(config) = wrangler_config(dir) {
            let import = Command::new(env!("CARGO_BIN_EXE_flaredock"))
                .arg("import")
                .arg(&config)
                .current_dir(dir)
                .output()
                .expect("flaredock runs");
            if !import.status.success() {
                out.disagreements.push(format!(
                    "{name}: `flaredock import` of the wrangler project fails: {}",
                    String::from_utf8_lossy(&import.stderr)
                ));
                continue;
            }
            let file = imported.path().join(format!(
                "{}.yaml",
                dir.file_name().unwrap().to_string_lossy()
            ));
            std::fs::write(&file, &import.stdout).unwrap();
            if !matches!(example_file(&file), ExampleFile::Manifest) {
                out.disagreements
                    .push(format!("{name}: `flaredock import` printed no manifest"));
                continue;
            }
            check_manifests(client, ns, em, std::slice::from_ref(&file), &file, &mut out).await;
        } else {
            out.disagreements.push(format!(
                "{name}: an example directory that holds no manifest this test checked (nor \
                 is it the build context of one, nor a wrangler project)"
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_and_the_command_line_give_one_verdict_on_every_manifest() {
    let _shared = shared().await;
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

    let examples = check_examples(&client, &ns, &em).await;
    assert!(
        examples.checked.len() >= 14,
        "manifests checked: {:?}",
        examples.checked
    );
    disagreements.extend(examples.disagreements);
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

/// A test's namespace: created from `prefix`, onboarded, with the credentials Secret
/// for `em`; the controller's kubeconfig for it, and where its manifest goes
/// (`{ns}.yaml`, not written yet).
struct Tenant {
    ns: String,
    kubeconfig: PathBuf,
    manifest: PathBuf,
}

async fn tenant(env: &TestEnv, admin: &Client, em: &common::Emulator, prefix: &str) -> Tenant {
    let ns = create_namespace(admin, prefix).await;
    onboard(env, &ns);
    credentials_secret(admin, &ns, em).await;
    let kubeconfig = controller_kubeconfig(env, &ns).await;
    let manifest = env.dir().join(format!("{ns}.yaml"));
    Tenant {
        ns,
        kubeconfig,
        manifest,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onboarded_namespace_reaches_ready_and_one_not_onboarded_is_forbidden() {
    let _shared = shared().await;
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
    // Secrets are read by name only: never listed or watched, in either namespace.
    for ns in ["team-a", stranger.as_str()] {
        let verbs = controller_requests(env, 0, ns, "secrets");
        assert!(!verbs.is_empty(), "{ns}: the controller read its Secret");
        assert!(
            verbs.iter().all(|v| v != "list" && v != "watch"),
            "{ns}: the controller sent {verbs:?} on Secrets"
        );
    }
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
    let _shared = shared().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_returns_only_after_cloudflare_let_the_application_go() {
    let _shared = shared().await;
    let (env, _) = installed();
    let admin = env.admin_client().await;
    // Cloudflare deletes asynchronously: a deleted application stays listed a while.
    let em = common::start_emulator(|c| c.delete_delay = Duration::from_secs(5)).await;
    let Tenant { ns, kubeconfig, .. } = tenant(env, &admin, &em, "deletes").await;
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
    bound_pairs_in(0..n, "v1")
}

/// The pairs `range` of [`bound_pairs`], their Worker's code marked `version`.
fn bound_pairs_in(range: std::ops::Range<usize>, version: &str) -> String {
    let mut out = String::new();
    for i in range {
        out.push_str(&format!(
            "---\napiVersion: flaredock.dev/v1alpha1\nkind: CloudflareWorker\nmetadata: {{name: w{i}}}\nspec:\n  compatibilityDate: \"2026-06-01\"\n  credentialsSecretRef: {{name: cloudflare}}\n  source:\n    inline:\n      mainModule: index.js\n      modules:\n        index.js: |\n          // {version}\n          export class C{i} {{ constructor(ctx, env) {{ this.ctx = ctx; }} }}\n          export default {{ async fetch(request, env) {{ return env.B{i}.get(env.B{i}.idFromName(\"a\")).fetch(request); }} }};\n---\napiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: c{i}}}\nspec:\n  className: C{i}\n  image: {{reference: 'hello:v1'}}\n  credentialsSecretRef: {{name: cloudflare}}\n  worker: {{name: w{i}, bindingName: B{i}}}\n"
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

/// A front of the API server that answers every LIST of CloudflareContainers `delay`
/// late (the startup check, `limit=1`, excepted): a large or throttled container
/// list, as after a restart over many objects. Everything else, watches included, is
/// passed through as it comes.
async fn slow_container_lists(env: &TestEnv, delay: Duration) -> Front {
    let rule: Rule = std::sync::Arc::new(move |method: &http::Method, path: &str, query: &str| {
        let container_list = path.ends_with("/cloudflarecontainers")
            && method == http::Method::GET
            && !query
                .split('&')
                .any(|p| p == "watch=true" || p == "watch=1" || p == "limit=1");
        container_list.then_some(delay)
    });
    Front::of_apiserver(env, rule).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_strips_no_worker_and_writes_nothing_to_cloudflare() {
    const PAIRS: usize = 50;
    let _shared = shared().await;
    let (env, _) = installed();
    let admin = env.admin_client().await;
    let em = common::start_emulator(|_| {}).await;
    let Tenant {
        ns,
        kubeconfig,
        manifest,
    } = tenant(env, &admin, &em, "restart").await;
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
    let front = slow_container_lists(env, LATE).await;
    let slow = env
        .service_account_kubeconfig_via(
            SA_NAMESPACE,
            SA_NAME,
            &format!("sa-{ns}-front.kubeconfig"),
            Some(&front.url),
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
    drop(front);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_200_once_both_watches_have_synced() {
    let _shared = shared().await;
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

// ---------------------------------------------------------------------------------
// Failing watches, API server restarts, two replicas.

/// Every Worker `w{i}` of `range` still has, at Cloudflare, its class `C{i}` among the
/// containers of its last upload and its binding `B{i}` to that class (the script's
/// settings as the emulator holds them).
fn assert_workers_keep_classes(em: &common::Emulator, range: std::ops::Range<usize>, when: &str) {
    let account = em.shared.account();
    for i in range {
        let script = account
            .scripts
            .get(&format!("w{i}"))
            .unwrap_or_else(|| panic!("{when}: script w{i} is gone"));
        assert!(
            script.containers.contains(&format!("C{i}")),
            "{when}: w{i} lost its container class C{i}: {:?}",
            script.containers
        );
        assert!(
            script
                .bindings
                .iter()
                .any(|b| b["name"] == format!("B{i}") && b["class_name"] == format!("C{i}")),
            "{when}: w{i} lost its binding B{i}: {:?}",
            script.bindings
        );
    }
}

/// Puts the rules of the ClusterRole `flaredock` of deploy/ back on drop (a failed
/// test included), as `kubectl apply -k deploy/` left them.
struct RestoreClusterRole(String);

impl RestoreClusterRole {
    /// Takes list and watch of CloudflareContainers from the ClusterRole `flaredock`
    /// (patch, for the finalizer, stays).
    fn forbid_container_watch(env: &TestEnv) -> RestoreClusterRole {
        let out = kubectl_ok(env, &["get", "clusterrole", "flaredock", "-o", "json"]);
        let role: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let rules = role["rules"].clone();
        let mut edited = Vec::new();
        for rule in rules.as_array().unwrap() {
            let resources = rule["resources"].as_array().cloned().unwrap_or_default();
            if resources.iter().any(|r| r == "cloudflarecontainers") {
                let others: Vec<_> = resources
                    .iter()
                    .filter(|r| *r != "cloudflarecontainers")
                    .cloned()
                    .collect();
                let mut kept = rule.clone();
                kept["resources"] = json!(others);
                edited.push(kept);
                edited.push(json!({
                    "apiGroups": ["flaredock.dev"],
                    "resources": ["cloudflarecontainers"],
                    "verbs": ["patch"],
                }));
            } else {
                edited.push(rule.clone());
            }
        }
        let patch = json!({"rules": edited}).to_string();
        kubectl_ok(
            env,
            &[
                "patch",
                "clusterrole",
                "flaredock",
                "--type=merge",
                "-p",
                &patch,
            ],
        );
        RestoreClusterRole(json!({"rules": rules}).to_string())
    }
}

impl Drop for RestoreClusterRole {
    fn drop(&mut self) {
        let env = testenv();
        let out = env
            .kubectl()
            .args([
                "patch",
                "clusterrole",
                "flaredock",
                "--type=merge",
                "-p",
                &self.0,
            ])
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success() || std::thread::panicking(),
            "restoring the ClusterRole: {}",
            text(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_container_watch_forbidden_no_worker_loses_a_class_and_readyz_says_so() {
    const PAIRS: usize = 4;
    let _exclusive = exclusive().await;
    let (env, _) = installed();
    let admin = env.admin_client().await;
    let em = common::start_emulator(|c| c.capture_bodies = true).await;
    let Tenant {
        ns,
        kubeconfig,
        manifest,
    } = tenant(env, &admin, &em, "nowatch").await;
    std::fs::write(&manifest, bound_pairs(PAIRS)).unwrap();
    // A resync every 5 s: every Worker is reconciled again while the watch fails.
    let mut controller = Controller::start(
        &kubeconfig,
        &ns,
        &em,
        &[
            ("FLAREDOCK_LEADER_ELECTION", "false"),
            ("FLAREDOCK_RESYNC", "5s"),
        ],
    );
    kubectl_ok(env, &["-n", &ns, "apply", "-f", manifest.to_str().unwrap()]);
    wait_all_ready(&admin, &ns, PAIRS, &mut controller).await;
    controller.wait_readyz(200, Duration::from_secs(30)).await;
    assert_workers_keep_classes(&em, 0..PAIRS, "all Ready");

    // The RBAC of the container watch is taken away. An open watch is not cut by an
    // RBAC change, so the API server restarts: every watch must be opened again, and
    // the container watches are refused (403) from then on.
    let restore = RestoreClusterRole::forbid_container_watch(env);
    assert!(!can_i(
        &kubeconfig,
        "watch",
        "cloudflarecontainers.flaredock.dev",
        &ns
    ));
    assert!(!can_i(
        &kubeconfig,
        "list",
        "cloudflarecontainers.flaredock.dev",
        &ns
    ));
    let uploads_before = common::request_bodies(&em, "PUT", "").len();
    let writes_before = common::cloudflare_writes(&em).len();
    env.restart_apiserver();

    // Every Worker's code changes: each must be uploaded again, with only the store
    // behind the failing watch to say which classes it hosts.
    std::fs::write(&manifest, bound_pairs_in(0..PAIRS, "v2")).unwrap();
    kubectl_ok(env, &["-n", &ns, "apply", "-f", manifest.to_str().unwrap()]);
    controller.wait_log("forbidden").await;
    // The controller says so: not ready while the watch fails, and a warning.
    controller.wait_readyz(503, Duration::from_secs(30)).await;
    assert!(
        controller
            .log()
            .lines()
            .any(|l| l.contains("a watch failed") && l.contains("cloudflarecontainers")),
        "{}",
        controller.log()
    );
    let workers: Api<CloudflareWorker> = Api::namespaced(admin.clone(), &ns);
    let started = Instant::now();
    loop {
        controller.assert_running();
        let listed = workers.list(&Default::default()).await.unwrap();
        let uploaded = listed
            .items
            .iter()
            .filter(|w| {
                w.status.as_ref().is_some_and(|s| {
                    s.observed_generation == w.metadata.generation
                        && flaredock::reconcile::status::is_true(&s.conditions, "Ready")
                })
            })
            .count();
        if uploaded == PAIRS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{uploaded}/{PAIRS} Workers uploaded again:\n{}",
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A few resyncs more with the watch still failing.
    tokio::time::sleep(Duration::from_secs(12)).await;
    controller.assert_running();
    let uploads: Vec<String> = common::request_bodies(&em, "PUT", "")
        .into_iter()
        .skip(uploads_before)
        .collect();
    assert!(
        uploads.iter().filter(|b| b.contains("// v2")).count() >= PAIRS,
        "every Worker was uploaded again while the watch failed ({} uploads)",
        uploads.len()
    );
    assert!(common::cloudflare_writes(&em).len() > writes_before);
    assert_workers_keep_classes(&em, 0..PAIRS, "with the container watch forbidden");
    for w in workers.list(&Default::default()).await.unwrap() {
        let name = w.metadata.name.clone().unwrap();
        let i = name.trim_start_matches('w');
        let status = w.status.clone().unwrap_or_default();
        assert_eq!(
            status.containers,
            vec![format!("C{i}")],
            "{name}: {status:?}"
        );
    }
    // The RBAC back: the watch answers again (its backoff is at most 30 s), and the
    // controller turns ready once it has not failed for a minute.
    drop(restore);
    controller.wait_readyz(200, Duration::from_secs(150)).await;
    assert_workers_keep_classes(&em, 0..PAIRS, "after the RBAC came back");
}

/// The `lastTransitionTime` of every Ready condition in `ns`, by object.
async fn ready_transitions(admin: &Client, ns: &str) -> Vec<(String, String)> {
    let lp = kube::api::ListParams::default();
    let containers: Api<CloudflareContainer> = Api::namespaced(admin.clone(), ns);
    let workers: Api<CloudflareWorker> = Api::namespaced(admin.clone(), ns);
    let mut out = Vec::new();
    for c in containers.list(&lp).await.unwrap() {
        let ready = condition(c.status.as_ref(), "Ready").cloned();
        out.push((
            format!("container {}", c.metadata.name.unwrap()),
            ready
                .map(|r| format!("{} {:?}", r.status, r.last_transition_time))
                .unwrap_or_default(),
        ));
    }
    for w in workers.list(&lp).await.unwrap() {
        let ready = w
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned());
        out.push((
            format!("worker {}", w.metadata.name.unwrap()),
            ready
                .map(|r| format!("{} {:?}", r.status, r.last_transition_time))
                .unwrap_or_default(),
        ));
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_restart_resumes_the_watches_by_a_relist_and_writes_nothing_twice() {
    const PAIRS: usize = 4;
    let _exclusive = exclusive().await;
    let (env, _) = installed();
    let admin = env.admin_client().await;
    let em = common::start_emulator(|_| {}).await;
    let Tenant {
        ns,
        kubeconfig,
        manifest,
    } = tenant(env, &admin, &em, "apirestart").await;
    std::fs::write(&manifest, bound_pairs(PAIRS)).unwrap();
    // With leader election, as deployed: the Lease is renewed across the restart.
    let mut controller = Controller::start(&kubeconfig, &ns, &em, &[]);
    kubectl_ok(env, &["-n", &ns, "apply", "-f", manifest.to_str().unwrap()]);
    wait_all_ready(&admin, &ns, PAIRS, &mut controller).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let transitions = ready_transitions(&admin, &ns).await;
    let writes_before = common::cloudflare_writes(&em);
    let apps_before = common::client_for(&em).list_applications().await.unwrap();
    assert_eq!(apps_before.len(), PAIRS);

    // Writes elsewhere move etcd's revision past what the watches last saw: the new
    // API server's watch cache starts after it, and a watch resumed from there is
    // answered 410 Gone.
    let side = create_namespace(&admin, "side").await;
    for i in 0..20 {
        kubectl_ok(
            env,
            &[
                "-n",
                &side,
                "create",
                "configmap",
                &format!("bump-{i}"),
                "--from-literal=a=b",
            ],
        );
    }
    let audit_from = env.audit_log().len();
    env.restart_apiserver();

    // The watches resumed: a new pair, applied after the restart, becomes Ready.
    std::fs::write(&manifest, bound_pairs_in(PAIRS..PAIRS + 1, "v1")).unwrap();
    kubectl_ok(env, &["-n", &ns, "apply", "-f", manifest.to_str().unwrap()]);
    wait_all_ready(&admin, &ns, PAIRS + 1, &mut controller).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    controller.assert_running();

    // Both kinds were listed again after the restart: the relist a 410 Gone asks for.
    for resource in ["cloudflarecontainers", "cloudflareworkers"] {
        let verbs = controller_requests(env, audit_from, &ns, resource);
        assert!(
            verbs.iter().any(|v| v == "list") && verbs.iter().any(|v| v == "watch"),
            "{resource}: after the restart the controller sent {verbs:?}\ncontroller log:\n{}",
            controller.log()
        );
    }
    // Nothing written twice: the new pair's application and script only.
    let writes: Vec<String> = common::cloudflare_writes(&em)
        .into_iter()
        .skip(writes_before.len())
        .collect();
    for app in &apps_before {
        assert!(
            !writes.iter().any(|w| w.contains(&app.id)),
            "a write to an existing application after the restart: {writes:?}"
        );
    }
    for i in 0..PAIRS {
        assert!(
            !writes
                .iter()
                .any(|w| w.ends_with(&format!("/scripts/w{i}"))),
            "w{i} was uploaded again after the restart: {writes:?}"
        );
    }
    let apps = common::client_for(&em).list_applications().await.unwrap();
    let mut names: Vec<_> = apps.iter().map(|a| a.name.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(apps.len(), PAIRS + 1, "{apps:?}");
    assert_eq!(names.len(), PAIRS + 1, "no application twice: {apps:?}");
    // Ready objects stayed Ready: no Ready condition of the first pairs moved.
    let after = ready_transitions(&admin, &ns).await;
    for (object, before) in &transitions {
        let now = after.iter().find(|(o, _)| o == object).map(|(_, t)| t);
        assert_eq!(now, Some(before), "{object}: its Ready condition moved");
    }
    assert_workers_keep_classes(&em, 0..PAIRS + 1, "after the API server restart");
}

/// Whether the lease manager of `replica` reported the leadership lost (text or JSON
/// logs).
fn gave_up(replica: &Controller) -> bool {
    replica.log().lines().any(|l| {
        l.contains("leadership changed")
            && (l.contains("leader=false") || l.contains("\"leader\":false"))
    })
}

/// The lease duration [`Controller::start`] gives every replica.
const LEASE: Duration = Duration::from_secs(6);

/// The holder of the Lease of the controllers of `ns`.
async fn lease_holder(admin: &Client, ns: &str) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(admin.clone(), SA_NAMESPACE);
    leases
        .get_opt(&format!("flaredock-{ns}"))
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
}

/// Waits (`limit` at most) until `who` holds the Lease of `ns`; returns how long it took.
async fn wait_holder(
    admin: &Client,
    ns: &str,
    who: &str,
    limit: Duration,
    log: &Controller,
) -> Duration {
    let started = Instant::now();
    loop {
        if lease_holder(admin, ns).await.as_deref() == Some(who) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{who} does not hold the Lease after {limit:?} (holder: {:?}):\n{}",
            lease_holder(admin, ns).await,
            log.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two replicas in `ns`, each reaching Cloudflare through its own front (who wrote
/// what is known): `replica-a` (with `kubeconfig_a`) started first and holding the
/// Lease, then `replica-b` up and serving.
async fn two_replicas(
    admin: &Client,
    em: &common::Emulator,
    ns: &str,
    kubeconfig_a: &Path,
    kubeconfig_b: &Path,
) -> (Front, Front, Controller, Controller) {
    let (to_a, to_b) = (Front::of_emulator(em).await, Front::of_emulator(em).await);
    let a = Controller::start_at(
        kubeconfig_a,
        ns,
        &to_a.api_base(),
        &[("POD_NAME", "replica-a")],
    );
    wait_holder(admin, ns, "replica-a", Duration::from_secs(30), &a).await;
    let mut b = Controller::start_at(
        kubeconfig_b,
        ns,
        &to_b.api_base(),
        &[("POD_NAME", "replica-b")],
    );
    b.wait_log("serving /metrics").await;
    (to_a, to_b, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_only_the_leader_writes_and_a_sigkilled_leader_hands_over_within_the_lease() {
    const PAIRS: usize = 3;
    let _shared = shared().await;
    let (env, _) = installed();
    let admin = env.admin_client().await;
    let em = common::start_emulator(|_| {}).await;
    let Tenant {
        ns,
        kubeconfig,
        manifest,
    } = tenant(env, &admin, &em, "replicas").await;
    std::fs::write(&manifest, bound_pairs(PAIRS)).unwrap();
    // Each replica reaches Cloudflare through its own front: who wrote what is known.
    let (to_a, to_b, mut a, mut b) = two_replicas(&admin, &em, &ns, &kubeconfig, &kubeconfig).await;
    kubectl_ok(env, &["-n", &ns, "apply", "-f", manifest.to_str().unwrap()]);
    wait_all_ready(&admin, &ns, PAIRS, &mut a).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.assert_running();
    assert!(
        !to_a.cloudflare_writes().is_empty(),
        "the leader applied the pairs"
    );
    assert_eq!(
        to_b.cloudflare_writes(),
        Vec::<String>::new(),
        "the standby wrote to Cloudflare:\n{}",
        b.log()
    );
    let apps_before = common::client_for(&em).list_applications().await.unwrap();

    // The leader dies without releasing the Lease: the standby takes over once the
    // Lease has expired, within its duration (and a poll of the standby) after the kill.
    a.sigkill();
    let handover = wait_holder(&admin, &ns, "replica-b", LEASE * 3, &b).await;
    eprintln!("handover after SIGKILL of the leader: {handover:?} (lease {LEASE:?})");
    assert!(
        handover <= LEASE + Duration::from_secs(2),
        "the standby took over {handover:?} after the kill (lease {LEASE:?})"
    );
    // The new leader applies the next change, and re-applies nothing of the old one's.
    std::fs::write(&manifest, bound_pairs_in(PAIRS..PAIRS + 1, "v1")).unwrap();
    kubectl_ok(env, &["-n", &ns, "apply", "-f", manifest.to_str().unwrap()]);
    wait_all_ready(&admin, &ns, PAIRS + 1, &mut b).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let by_b = to_b.cloudflare_writes();
    assert!(
        by_b.iter()
            .any(|w| w.ends_with(&format!("/scripts/w{PAIRS}"))),
        "the new leader uploaded the new Worker: {by_b:?}"
    );
    for app in &apps_before {
        assert!(
            !by_b.iter().any(|w| w.contains(&app.id)),
            "the new leader wrote to an application the old one had applied: {by_b:?}"
        );
    }
    for i in 0..PAIRS {
        assert!(
            !by_b.iter().any(|w| w.ends_with(&format!("/scripts/w{i}"))),
            "the new leader uploaded w{i} again: {by_b:?}"
        );
    }
    let apps = common::client_for(&em).list_applications().await.unwrap();
    let mut names: Vec<_> = apps.iter().map(|a| a.name.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(apps.len(), PAIRS + 1, "{apps:?}");
    assert_eq!(names.len(), PAIRS + 1, "no application twice: {apps:?}");
    assert_workers_keep_classes(&em, 0..PAIRS + 1, "after the handover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_lease_writes_nothing_after_its_local_deadline() {
    let _shared = shared().await;
    let (env, _) = installed();
    let admin = env.admin_client().await;
    let em = common::start_emulator(|_| {}).await;
    let Tenant {
        ns,
        kubeconfig,
        manifest,
    } = tenant(env, &admin, &em, "gate").await;
    // Replica a reaches the API server through a front that, once `cut`, holds every
    // request for Leases unanswered: its renewals hang, its lease manager keeps
    // saying it leads, and only its local deadline can stop it writing.
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let is_cut = cut.clone();
    let rule: Rule = std::sync::Arc::new(move |_: &http::Method, path: &str, _: &str| {
        (is_cut.load(std::sync::atomic::Ordering::SeqCst)
            && path.starts_with("/apis/coordination.k8s.io/"))
        .then_some(Duration::from_secs(3600))
    });
    let kube_a = Front::of_apiserver(env, rule).await;
    let kubeconfig_a = env
        .service_account_kubeconfig_via(
            SA_NAMESPACE,
            SA_NAME,
            &format!("sa-{ns}-a.kubeconfig"),
            Some(&kube_a.url),
        )
        .await;
    let (to_a, to_b, mut a, mut b) =
        two_replicas(&admin, &em, &ns, &kubeconfig_a, &kubeconfig).await;
    std::fs::write(&manifest, bound_pairs(1)).unwrap();
    kubectl_ok(env, &["-n", &ns, "apply", "-f", manifest.to_str().unwrap()]);
    wait_all_ready(&admin, &ns, 1, &mut a).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !to_a.cloudflare_writes().is_empty(),
        "a led and applied pair 0"
    );

    cut.store(true, std::sync::atomic::Ordering::SeqCst);
    let (a_writes, a_kube) = (to_a.cloudflare_writes().len(), kube_a.seen().len());
    wait_holder(&admin, &ns, "replica-b", LEASE * 3, &b).await;
    a.assert_running();
    assert!(
        !gave_up(&a),
        "a's lease manager gave the leadership up; the deadline is not what is tested:\n{}",
        a.log()
    );
    // A change both replicas see (a's watches pass the front): b applies it, a may not.
    std::fs::write(&manifest, bound_pairs_in(1..2, "v1")).unwrap();
    kubectl_ok(env, &["-n", &ns, "apply", "-f", manifest.to_str().unwrap()]);
    wait_all_ready(&admin, &ns, 2, &mut b).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    a.assert_running();
    assert!(
        !gave_up(&a),
        "a's lease manager gave the leadership up:\n{}",
        a.log()
    );
    let late: Vec<String> = to_a
        .cloudflare_writes()
        .into_iter()
        .skip(a_writes)
        .collect();
    assert_eq!(
        late,
        Vec::<String>::new(),
        "a wrote to Cloudflare past its deadline:\n{}",
        a.log()
    );
    let kube_late: Vec<String> = kube_a
        .seen()
        .into_iter()
        .skip(a_kube)
        .filter(|r| !r.starts_with("GET ") && !r.contains("/apis/coordination.k8s.io/"))
        .collect();
    assert_eq!(
        kube_late,
        Vec::<String>::new(),
        "a wrote to Kubernetes past its deadline"
    );
    assert!(
        to_b.cloudflare_writes()
            .iter()
            .any(|w| w.ends_with("/scripts/w1")),
        "b applied the change: {:?}",
        to_b.cloudflare_writes()
    );
    let apps = common::client_for(&em).list_applications().await.unwrap();
    assert_eq!(apps.len(), 2, "{apps:?}");
    assert_workers_keep_classes(&em, 0..2, "after the cut");
}

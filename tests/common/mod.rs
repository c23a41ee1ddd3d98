//! Shared test harness: in-process emulators, clients, a real `docker-registry`
//! process (the CNCF distribution registry) with htpasswd auth, and synthetic images.
#![allow(dead_code)]

pub mod cluster;
pub mod fake_kube;
pub mod scripts;
pub mod testenv;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flaredock::cloudflare::{ClientConfig, CloudflareClient, RateLimit, Secret};
use flaredock::emulator::{self, EmulatorConfig, ExternalRegistry, RunningEmulator};
use flaredock::oci::copy::CopyOptions;
use flaredock::oci::{Credentials, RegistryClient};
use flaredock::reconcile::Reconciler;
use flaredock::reconcile::images::{ImageResolver, SourceCredentials};
use flaredock::reconcile::view::AccountView;
use sha2::{Digest, Sha256};

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// An in-process emulator that holds every exchange of its test to the official
/// contract (`flaredock::emulator::contract`): dropping it fails the test when
/// flaredock sent a request, or the emulator gave an answer, that the extract does
/// not allow.
pub struct Emulator(Option<RunningEmulator>);

impl std::ops::Deref for Emulator {
    type Target = RunningEmulator;
    fn deref(&self) -> &RunningEmulator {
        self.0.as_ref().expect("the emulator is running")
    }
}

impl Emulator {
    /// Stops the server, after the contract check.
    pub async fn stop(mut self) {
        self.assert_contract();
        if let Some(inner) = self.0.take() {
            inner.stop().await;
        }
    }

    fn assert_contract(&self) {
        let Some(inner) = &self.0 else { return };
        let problems = inner.shared.contract_problems();
        assert!(
            problems.is_empty(),
            "contract violations in this test's exchanges:\n{}",
            problems.join("\n")
        );
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_contract();
        }
    }
}

pub async fn start_emulator(tweak: impl FnOnce(&mut EmulatorConfig)) -> Emulator {
    // Deletes are synchronous unless a test asks for Cloudflare's asynchronous ones.
    let mut config = EmulatorConfig {
        rollout_step: Duration::from_millis(5),
        delete_delay: Duration::ZERO,
        check_contract: true,
        ..Default::default()
    };
    tweak(&mut config);
    Emulator(Some(
        emulator::start(config).await.expect("emulator starts"),
    ))
}

pub fn client_for(em: &RunningEmulator) -> CloudflareClient {
    client_with(em, |_| {})
}

pub fn client_with(
    em: &RunningEmulator,
    tweak: impl FnOnce(&mut ClientConfig),
) -> CloudflareClient {
    let mut config = ClientConfig::new(em.base_url(), em.account_id(), Secret::new(em.api_token()));
    config.backoff = Duration::from_millis(10);
    // A private limiter per test client: the process-wide one is keyed by token and limit.
    config.rate_limit = RateLimit {
        requests: 100_000 + fastrand::u32(..100_000),
        window: Duration::from_secs(1),
    };
    tweak(&mut config);
    CloudflareClient::new(config).expect("client")
}

pub fn reconciler_for(client: &CloudflareClient) -> Reconciler {
    let registry = RegistryClient::new(vec![]).expect("registry client");
    let images = ImageResolver::new(
        client.clone(),
        registry,
        SourceCredentials::new(),
        CopyOptions::default(),
    );
    Reconciler::new(
        std::sync::Arc::new(AccountView::new(client.clone())),
        std::sync::Arc::new(images),
        flaredock::spec::ClusterIdentity::cli(),
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn require_tool(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "this test needs `{name}` (Debian package {package}); install it with `apt-get install -y {package}` or run .ci/run"
    );
}

/// A `docker-registry` process on a free loopback port; killed on drop.
pub struct DockerRegistry {
    pub host: String,
    pub username: Option<String>,
    pub password: Option<String>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl DockerRegistry {
    /// Without authentication.
    pub fn start_open() -> DockerRegistry {
        Self::start(None)
    }

    /// With htpasswd basic auth (as Cloudflare's registry).
    pub fn start_with_auth(username: &str, password: &str) -> DockerRegistry {
        Self::start(Some((username, password)))
    }

    fn start(auth: Option<(&str, &str)>) -> DockerRegistry {
        let binary = require_tool("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut auth_yaml = String::new();
        if let Some((u, p)) = auth {
            let htpasswd = require_tool("htpasswd", "apache2-utils");
            let file = dir.path().join("htpasswd");
            let status = Command::new(htpasswd)
                .args(["-Bbc", file.to_str().expect("path"), u, p])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("htpasswd runs");
            assert!(status.success(), "htpasswd failed");
            auth_yaml = format!(
                "auth:\n  htpasswd:\n    realm: flaredock-test\n    path: {}\n",
                file.display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_yaml}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write config");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        let host = format!("127.0.0.1:{port}");
        let mut child = child;
        for _ in 0..200 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("docker-registry exited at start ({status})");
            }
            if std::net::TcpStream::connect(&host).is_ok() {
                return DockerRegistry {
                    host,
                    username: auth.map(|(u, _)| u.to_string()),
                    password: auth.map(|(_, p)| p.to_string()),
                    child,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("docker-registry did not start on {host}");
    }

    pub fn credentials(&self) -> Option<Credentials> {
        Some(Credentials {
            username: self.username.clone()?,
            password: Secret::new(self.password.clone()?),
        })
    }

    pub fn as_external(&self) -> ExternalRegistry {
        ExternalRegistry {
            host: self.host.clone(),
            username: self.username.clone().unwrap_or_default(),
            password: self.password.clone().unwrap_or_default(),
        }
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A synthetic image: random layers, a config, a manifest.
pub struct SyntheticImage {
    pub layers: Vec<Vec<u8>>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub digest: String,
}

pub fn synthetic_image(layer_sizes: &[usize], seed: u64) -> SyntheticImage {
    let mut rng = fastrand::Rng::with_seed(seed);
    let layers: Vec<Vec<u8>> = layer_sizes
        .iter()
        .map(|n| (0..*n).map(|_| rng.u8(..)).collect())
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| digest_of(l)).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": [format!("SEED={seed}")]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(&config), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest_of(l), "size": l.len()
        })).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let digest = digest_of(&manifest);
    SyntheticImage {
        layers,
        config,
        manifest,
        digest,
    }
}

fn scheme_base(host: &str) -> String {
    format!("http://{host}")
}

/// Pushes a blob with a monolithic upload.
pub async fn push_blob(
    http: &reqwest::Client,
    host: &str,
    repo: &str,
    data: &[u8],
    creds: Option<&Credentials>,
) {
    let digest = digest_of(data);
    let mut req = http.post(format!("{}/v2/{repo}/blobs/uploads/", scheme_base(host)));
    if let Some(c) = creds {
        req = req.basic_auth(&c.username, Some(c.password.expose()));
    }
    let resp = req.send().await.expect("start upload");
    assert_eq!(
        resp.status().as_u16(),
        202,
        "start upload: {}",
        resp.status()
    );
    let location = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("{}{location}", scheme_base(host))
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let mut req = http
        .put(format!("{location}{sep}digest={digest}"))
        .body(data.to_vec());
    if let Some(c) = creds {
        req = req.basic_auth(&c.username, Some(c.password.expose()));
    }
    let resp = req.send().await.expect("put blob");
    assert_eq!(resp.status().as_u16(), 201, "put blob: {}", resp.status());
}

/// Pushes a manifest under `reference` (a tag or its digest).
pub async fn push_manifest(
    http: &reqwest::Client,
    host: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
    creds: Option<&Credentials>,
) {
    let mut req = http
        .put(format!(
            "{}/v2/{repo}/manifests/{reference}",
            scheme_base(host)
        ))
        .header("content-type", media_type)
        .body(bytes.to_vec());
    if let Some(c) = creds {
        req = req.basic_auth(&c.username, Some(c.password.expose()));
    }
    let resp = req.send().await.expect("put manifest");
    assert_eq!(
        resp.status().as_u16(),
        201,
        "put manifest: {}",
        resp.text().await.unwrap_or_default()
    );
}

/// Pushes a whole synthetic image and tags it.
pub async fn push_image(
    host: &str,
    repo: &str,
    tag: &str,
    image: &SyntheticImage,
    creds: Option<&Credentials>,
) {
    let http = reqwest::Client::new();
    for l in &image.layers {
        push_blob(&http, host, repo, l, creds).await;
    }
    push_blob(&http, host, repo, &image.config, creds).await;
    push_manifest(
        &http,
        host,
        repo,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        &image.manifest,
        creds,
    )
    .await;
}

/// Mints registry credentials from the emulator and pushes an image into "Cloudflare's"
/// registry (embedded or external) under `<account>/<repo>:<tag>`.
pub async fn push_to_cloudflare(
    em: &RunningEmulator,
    repo: &str,
    tag: &str,
    image: &SyntheticImage,
) -> String {
    let client = client_for(em);
    let c = client
        .registry_credentials(
            flaredock::cloudflare::CLOUDFLARE_REGISTRY,
            &[flaredock::cloudflare::types::RegistryPermission::Push],
            5,
        )
        .await
        .expect("credentials");
    let creds = Credentials {
        username: c.username,
        password: c.password,
    };
    let full = format!("{}/{repo}", em.account_id());
    push_image(&c.registry_host, &full, tag, image, Some(&creds)).await;
    format!("{}/{full}@{}", c.registry_host, image.digest)
}

/// Runs the `flaredock` binary with `args` against `em` (its URL, account and token in
/// the environment): the exit code, stdout and stderr.
pub fn flaredock_cli<S: AsRef<std::ffi::OsStr>>(
    em: &RunningEmulator,
    args: impl IntoIterator<Item = S>,
) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(args)
        .env("CLOUDFLARE_API_BASE_URL", em.base_url())
        .env("CLOUDFLARE_ACCOUNT_ID", em.account_id())
        .env("CLOUDFLARE_API_TOKEN", em.api_token())
        .output()
        .expect("flaredock runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The emulator's requests that change something (`METHOD path`), credential minting
/// left out.
pub fn cloudflare_writes(em: &RunningEmulator) -> Vec<String> {
    em.shared
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && !r.path.ends_with("/credentials"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The request bodies (as text) of the exchanges `method` to a path ending in `suffix`
/// (the emulator must capture bodies).
pub fn request_bodies(em: &RunningEmulator, method: &str, suffix: &str) -> Vec<String> {
    em.shared
        .exchanges()
        .iter()
        .filter(|x| x.method == method && x.path.ends_with(suffix))
        .map(|x| String::from_utf8_lossy(&x.request_body).to_string())
        .collect()
}

/// An application created by hand (no owner label), as wrangler or a person would.
pub fn foreign_application(
    name: &str,
    image: &str,
    durable_objects: Option<flaredock::cloudflare::types::DurableObjectsConfiguration>,
) -> flaredock::cloudflare::types::CreateApplicationRequest {
    use flaredock::cloudflare::types::*;
    CreateApplicationRequest {
        name: name.into(),
        scheduling_policy: SchedulingPolicy::Default,
        instances: 0,
        max_instances: Some(2),
        configuration: DeploymentConfiguration {
            image: image.into(),
            ..Default::default()
        },
        constraints: None,
        durable_objects,
        observability: None,
        rollout_active_grace_period: None,
    }
}

/// A plain application request for `name` on the emulator's demo image (lite).
pub fn app_request(
    em: &flaredock::emulator::RunningEmulator,
    name: &str,
) -> flaredock::cloudflare::types::CreateApplicationRequest {
    let image = format!("{}/{}/hello:v1", em.registry_host(), em.account_id());
    let mut request = foreign_application(name, &image, None);
    request.configuration.instance_type = Some(flaredock::cloudflare::types::InstanceType::Lite);
    request
}

/// A call straight to the emulator's account API with its token, as another tool would
/// make it: the status and the JSON answer (`null` when it is not JSON).
pub async fn account_api(
    em: &RunningEmulator,
    method: reqwest::Method,
    path: &str,
    form: Option<reqwest::multipart::Form>,
    json_body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let url = format!("{}/accounts/{}{path}", em.base_url(), em.account_id());
    let mut req = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(em.api_token());
    if let Some(form) = form {
        req = req.multipart(form);
    }
    if let Some(j) = json_body {
        req = req.json(&j);
    }
    let res = req.send().await.expect("the emulator answers");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

/// A module upload as wrangler sends it: the `metadata` part, then `index.js` holding
/// `code`.
pub fn module_upload(metadata: &serde_json::Value, code: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .part(
            "metadata",
            reqwest::multipart::Part::text(metadata.to_string())
                .mime_str("application/json")
                .unwrap(),
        )
        .part(
            "index.js",
            reqwest::multipart::Part::text(code.to_string())
                .file_name("index.js")
                .mime_str("application/javascript+module")
                .unwrap(),
        )
}

/// When a reconcile asked to come back (`Action` keeps its delay private; its Debug form
/// is `Action { requeue_after: Some(…) }`).
pub fn requeue_after(action: &kube::runtime::controller::Action) -> Duration {
    let text = format!("{action:?}");
    let secs = text
        .split("Some(")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no requeue in {text}"));
    Duration::from_secs_f64(secs)
}

/// A reconcile of `obj` that leaves its adoption waiting for approval: its outcome, the
/// pending adoption, and the change in it to `field` (the test fails when either is
/// missing).
pub async fn pending_adoption_of(
    r: &Reconciler,
    obj: &flaredock::spec::CloudflareWorker,
    field: &str,
) -> (
    flaredock::reconcile::worker::WorkerOutcome,
    flaredock::spec::PendingAdoption,
    flaredock::spec::DriftEntry,
) {
    let out = r
        .reconcile_worker(
            obj,
            vec![],
            &flaredock::reconcile::worker::inputs::SourceData::default(),
            None,
        )
        .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let pending = out
        .status
        .pending_adoption
        .clone()
        .expect("the adoption waits for approval");
    let change = pending
        .changes
        .iter()
        .find(|c| c.field == field)
        .cloned()
        .unwrap_or_else(|| panic!("{field} is named: {:?}", pending.changes));
    (out, pending, change)
}

/// A Reconciler that builds local contexts with `builder` (the emulator's registry as
/// target, as `flaredock apply` does with buildah).
pub fn reconciler_with_builder(
    em: &RunningEmulator,
    builder: std::sync::Arc<dyn flaredock::build::Builder>,
) -> Reconciler {
    let client = client_for(em);
    let images = ImageResolver::new(
        client.clone(),
        RegistryClient::new(vec![]).expect("registry client"),
        SourceCredentials::new(),
        CopyOptions::default(),
    )
    .with_builder(builder, true);
    Reconciler::new(
        std::sync::Arc::new(AccountView::new(client)),
        std::sync::Arc::new(images),
        flaredock::spec::ClusterIdentity::cli(),
    )
}

/// Loads the manifests of `dir` (none may fail to parse) and converges them all, within
/// `timeout`, polling every 20 ms.
pub async fn converge_dir(
    reconciler: &Reconciler,
    dir: &std::path::Path,
    timeout: Duration,
) -> flaredock::reconcile::converge::Converged {
    let loaded = flaredock::manifest::load(&[dir.to_path_buf()]);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let containers: Vec<_> = loaded.objects.iter().map(|l| l.object.clone()).collect();
    let workers: Vec<_> = loaded.workers.iter().map(|l| l.object.clone()).collect();
    reconciler.view.invalidate().await;
    let options = flaredock::reconcile::ConvergeOptions {
        timeout,
        poll: Duration::from_millis(20),
        ..Default::default()
    };
    let manifests = flaredock::reconcile::converge::Manifests {
        containers: &containers,
        workers: &workers,
        data: &loaded.data,
    };
    flaredock::reconcile::converge_all(reconciler, manifests, &options, |_, _| {}).await
}

/// A GET of `path` at the emulator's listener with this `Host` (a Worker's hostname):
/// status and body.
pub async fn visit(em: &RunningEmulator, host: &str, path: &str) -> (u16, String) {
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
        .get(format!("http://{}{path}", em.addr))
        .header("host", host)
        .send()
        .await
        .expect("the emulator answers");
    (r.status().as_u16(), r.text().await.expect("a text body"))
}

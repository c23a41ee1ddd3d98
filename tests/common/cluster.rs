//! The set-up of the tests against a real API server (tests/apiserver*.rs): the install
//! of `deploy/` (once per test binary, as its API server is), namespaces, onboarding,
//! the credentials Secret, the real `flaredock run` process as the ServiceAccount of
//! `deploy/`, and a recording [`Front`] of the API server or of an emulator.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

use super::testenv::{TestEnv, testenv};

pub const CRDS: [&str; 2] = [
    "cloudflarecontainers.flaredock.dev",
    "cloudflareworkers.flaredock.dev",
];
/// The ServiceAccount of `deploy/`.
pub const SA_NAMESPACE: &str = "flaredock-system";
pub const SA_NAME: &str = "flaredock";

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kubectl` as the admin; panics with its output unless it succeeds.
pub fn kubectl_ok(env: &TestEnv, args: &[&str]) -> Output {
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
pub struct Install {
    pub output: Output,
}

static INSTALL: OnceLock<Install> = OnceLock::new();

pub fn installed() -> (&'static TestEnv, &'static Install) {
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

pub async fn create_namespace(client: &Client, prefix: &str) -> String {
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

pub async fn credentials_secret(client: &Client, ns: &str, em: &super::Emulator) {
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
pub struct Controller {
    child: Child,
    log: PathBuf,
    /// Of `/metrics`, `/healthz` and `/readyz`.
    port: u16,
}

impl Controller {
    /// As the identity of `kubeconfig`, watching `namespace`, its own Lease in
    /// `flaredock-system` (the Role of `deploy/` grants Leases there).
    pub fn start(
        kubeconfig: &Path,
        namespace: &str,
        em: &super::Emulator,
        env: &[(&str, &str)],
    ) -> Controller {
        Controller::start_at(kubeconfig, namespace, &em.base_url(), env)
    }

    /// The same, reaching Cloudflare at `api_base` (a test's front of the emulator).
    pub fn start_at(
        kubeconfig: &Path,
        namespace: &str,
        api_base: &str,
        env: &[(&str, &str)],
    ) -> Controller {
        let log = testenv().dir().join(format!(
            "controller-{namespace}-{:04x}.log",
            fastrand::u16(..)
        ));
        let file = std::fs::File::create(&log).expect("controller log");
        let port = super::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_flaredock"))
            .args(["run", "--namespace", namespace])
            .args(["--lease-name", &format!("flaredock-{namespace}")])
            .args(["--lease-namespace", SA_NAMESPACE, "--lease-duration", "6s"])
            .args(["--metrics-address", &format!("127.0.0.1:{port}")])
            .args(["--api-base-url", api_base, "--progress-poll", "1s"])
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
    pub fn stop(mut self) {
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

    /// SIGKILL, as a node that dies: the Lease is not released.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (`limit` at most) until `/readyz` answers `code`.
    pub async fn wait_readyz(&mut self, code: u16, limit: Duration) {
        let started = Instant::now();
        loop {
            self.assert_running();
            let now = self.readyz().await;
            if now == Some(code) {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "/readyz is {now:?}, not {code}, after {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The status code of `/readyz` (`None`: not serving yet).
    pub async fn readyz(&self) -> Option<u16> {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        let answer = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        answer.ok().map(|r| r.status().as_u16())
    }

    /// Waits (60 s at most) until the log has `text`.
    pub async fn wait_log(&mut self, text: &str) {
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_running(&mut self) {
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
pub async fn controller_kubeconfig(env: &TestEnv, tag: &str) -> PathBuf {
    env.service_account_kubeconfig(SA_NAMESPACE, SA_NAME, &format!("sa-{tag}.kubeconfig"))
        .await
}

/// Polls `get` until `done` says yes (or 90 s pass: then panics with the controller's log).
pub async fn wait_for<K, F>(
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

pub fn condition<'a>(
    status: Option<&'a flaredock::spec::CloudflareContainerStatus>,
    kind: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status?.conditions.iter().find(|c| c.type_ == kind)
}

/// `kubectl auth can-i VERB RESOURCE -n NS` as the identity of `kubeconfig`.
pub fn can_i(kubeconfig: &Path, verb: &str, resource: &str, ns: &str) -> bool {
    let out = Command::new(super::testenv::kubectl_binary())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["auth", "can-i", verb, resource, "-n", ns])
        .output()
        .expect("kubectl runs");
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// Onboards `ns` as a tenant's own kustomization does: `namespace: NS` and the
/// component deploy/tenant (kustomize wants a relative path).
pub fn onboard(env: &TestEnv, ns: &str) {
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

/// What a [`Front`] does with one request: `Some(d)`: answers it `d` late.
pub type Rule = std::sync::Arc<dyn Fn(&http::Method, &str, &str) -> Option<Duration> + Send + Sync>;

/// A plain-HTTP front of a server (the API server, or an emulator): every request is
/// passed through as it comes (watches streamed), and recorded as `METHOD path`;
/// `rule` may answer some late (or, with a long delay, never while the test runs).
pub struct Front {
    pub url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    pub async fn start(upstream: String, http: reqwest::Client, rule: Rule) -> Front {
        use axum::body::Body;
        use axum::extract::{Request, State};
        use axum::response::Response;
        #[derive(Clone)]
        struct Shared {
            http: reqwest::Client,
            upstream: String,
            rule: Rule,
            seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        }
        async fn forward(State(front): State<Shared>, request: Request) -> Response {
            let target = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            let query = request.uri().query().unwrap_or_default().to_string();
            let path = request.uri().path().to_string();
            let method = request.method().clone();
            front.seen.lock().unwrap().push(format!("{method} {path}"));
            if let Some(delay) = (front.rule)(&method, &path, &query) {
                tokio::time::sleep(delay).await;
            }
            let mut headers = request.headers().clone();
            headers.remove(http::header::HOST);
            let body = axum::body::to_bytes(request.into_body(), 64 << 20)
                .await
                .unwrap_or_default();
            let answer = front
                .http
                .request(method, format!("{}{target}", front.upstream))
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
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let shared = Shared {
            http,
            upstream,
            rule,
            seen: seen.clone(),
        };
        let router = axum::Router::new().fallback(forward).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Front { url, seen, task }
    }

    /// A front of the API server.
    pub async fn of_apiserver(env: &TestEnv, rule: Rule) -> Front {
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&env.ca_pem()).unwrap())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        Front::start(env.server.clone(), http, rule).await
    }

    /// A front of the emulator; its base URL (for `--api-base-url`) is [`Front::api_base`].
    pub async fn of_emulator(em: &super::Emulator) -> Front {
        Front::of_emulator_with(
            em,
            std::sync::Arc::new(|_: &http::Method, _: &str, _: &str| None),
        )
        .await
    }

    /// A front of the emulator that answers as `rule` says.
    pub async fn of_emulator_with(em: &super::Emulator, rule: Rule) -> Front {
        let base = em.base_url();
        let origin = base.trim_end_matches("/client/v4").to_string();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        Front::start(origin, http, rule).await
    }

    pub fn api_base(&self) -> String {
        format!("{}/client/v4", self.url)
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// The Cloudflare writes seen (as [`super::cloudflare_writes`] counts them).
    pub fn cloudflare_writes(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|r| !r.starts_with("GET ") && !r.ends_with("/credentials"))
            .collect()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The audit log's requests of the controller's ServiceAccount for `resource` in `ns`
/// (`VERB`, as the audit log names it), from entry `from` on.
pub fn controller_requests(env: &TestEnv, from: usize, ns: &str, resource: &str) -> Vec<String> {
    env.audit_log()
        .into_iter()
        .skip(from)
        .filter(|e| {
            e["user"]["username"] == format!("system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}")
                && e["objectRef"]["resource"] == resource
                && e["objectRef"]["namespace"] == ns
                && e["objectRef"]["subresource"].is_null()
        })
        .map(|e| e["verb"].as_str().unwrap_or_default().to_string())
        .collect()
}

//! A real Kubernetes API server for the tests: kube-apiserver and etcd built from the
//! published Go modules (tools/kube-testenv) and started by `scripts/kube-testenv.sh`.
//! One per test binary, started by the first test that asks, stopped when the binary
//! exits (the script watches the test process). There is no controller-manager,
//! scheduler or kubelet: namespaces never finish terminating, Pods never run, no
//! `default` ServiceAccount exists; the tests create what they need.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// The running test environment of this test binary.
pub struct TestEnv {
    dir: PathBuf,
    kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// The API server's CA, base64 (as in a kubeconfig).
    ca_data: String,
    _script: Mutex<Child>,
}

static ENV: OnceLock<Result<TestEnv, String>> = OnceLock::new();

/// The API server of this test binary, started on first use. Panics with the script's
/// own message when it cannot start (no Go, no kubectl, a failed build).
pub fn testenv() -> &'static TestEnv {
    match ENV.get_or_init(start) {
        Ok(env) => env,
        Err(e) => panic!("the Kubernetes test environment did not start: {e}"),
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `kubectl`, or a clear failure naming the package.
pub fn kubectl_binary() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join("kubectl");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "this test needs `kubectl` (Debian package kubernetes-client); install it or run scripts/test.sh"
    );
}

fn start() -> Result<TestEnv, String> {
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| "tests".into());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("kube-testenv")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let log_path = dir.join("script.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut child = Command::new("bash")
        .arg(repo().join("scripts/kube-testenv.sh"))
        .arg(&dir)
        .env("FLAREDOCK_TESTENV_PARENT", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot run scripts/kube-testenv.sh: {e}"))?;
    let kubeconfig = dir.join("admin.kubeconfig");
    // A cold build of kube-apiserver takes minutes; a cached one starts in seconds.
    let started = Instant::now();
    while !kubeconfig.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("scripts/kube-testenv.sh exited ({status}):\n{log}"));
        }
        if started.elapsed() > Duration::from_secs(1800) {
            let _ = child.kill();
            return Err("scripts/kube-testenv.sh not ready within 30 minutes".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&kubeconfig).map_err(|e| e.to_string())?;
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    let cluster = &value["clusters"][0]["cluster"];
    let server = cluster["server"].as_str().unwrap_or_default().to_string();
    let ca_data = cluster["certificate-authority-data"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if server.is_empty() || ca_data.is_empty() {
        return Err(format!("{} names no server or CA", kubeconfig.display()));
    }
    Ok(TestEnv {
        dir,
        kubeconfig,
        server,
        ca_data,
        _script: Mutex::new(child),
    })
}

impl TestEnv {
    /// The admin's kubeconfig (a client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's audit log: one JSON line per request (level Metadata).
    pub fn audit_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Kills the API server (SIGKILL) and starts it again on the same port and etcd;
    /// returns once its `/readyz` answers again (the script does both on SIGUSR1).
    pub fn restart_apiserver(&self) {
        let log = self.dir.join("script.log");
        let restarts = || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("kube-testenv: restarted ")
                .count()
        };
        let before = restarts();
        let pid = self._script.lock().unwrap().id();
        let sent = Command::new("kill")
            .args(["-USR1", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGUSR1 to scripts/kube-testenv.sh");
        let started = Instant::now();
        while restarts() == before {
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "the API server did not come back within 180 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A directory of this environment for the test's own files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin's client (a new one per call: a client belongs to its test's runtime).
    pub async fn admin_client(&self) -> Client {
        client_from(&self.kubeconfig).await
    }

    /// `kubectl` as the admin, in the repository.
    pub fn kubectl(&self) -> Command {
        let mut c = Command::new(kubectl_binary());
        c.arg("--kubeconfig").arg(&self.kubeconfig);
        c.current_dir(repo());
        c
    }

    /// A token of ServiceAccount `namespace/name` from the TokenRequest API.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.admin_client().await, namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                bound_object_ref: None,
            },
            ..Default::default()
        };
        let answer = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"));
        let token = answer.status.map(|s| s.token).unwrap_or_default();
        assert!(
            !token.is_empty(),
            "TokenRequest for {namespace}/{name} gave no token"
        );
        token
    }

    /// The API server's CA certificate (PEM).
    pub fn ca_pem(&self) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&self.ca_data)
            .expect("the kubeconfig's CA is base64")
    }

    /// Writes a kubeconfig (in this environment's directory, named `file`) for
    /// ServiceAccount `namespace/name` with a token from the TokenRequest API.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        file: &str,
    ) -> PathBuf {
        self.service_account_kubeconfig_via(namespace, name, file, None)
            .await
    }

    /// The same, reaching the API server through `front` (a plain-HTTP URL of a test's
    /// own proxy) when given.
    pub async fn service_account_kubeconfig_via(
        &self,
        namespace: &str,
        name: &str,
        file: &str,
        front: Option<&str>,
    ) -> PathBuf {
        let token = self.service_account_token(namespace, name).await;
        let path = self.dir.join(file);
        let cluster = match front {
            Some(url) => format!("server: {url}"),
            None => format!(
                "server: {}\n      certificate-authority-data: {}",
                self.server, self.ca_data
            ),
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n  - name: kube-testenv\n    cluster:\n      {cluster}\nusers:\n  - name: {namespace}-{name}\n    user:\n      token: {token}\ncontexts:\n  - name: sa\n    context: {{cluster: kube-testenv, user: {namespace}-{name}, namespace: {namespace}}}\ncurrent-context: sa\n"
        );
        std::fs::write(&path, text).expect("write the ServiceAccount's kubeconfig");
        path
    }
}

/// A client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("read the kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a client configuration from the kubeconfig");
    Client::try_from(config).expect("a Kubernetes client")
}

//! **Container instances**: the emulator runs the image of a container-enabled class's
//! application, so that a request to a Worker reaches its Durable Object, which starts
//! the container and forwards the request to it, and the container's answer comes back.
//!
//! **The way in.** The served wrapper module (`workerd/serve.rs`) gives each
//! container-enabled class a `ctx.container` with the shape of workerd's and
//! Cloudflare's API (`running`, `start({envVars, entrypoint, enableInternet})`,
//! `monitor()`, `destroy()`, `signal()`, `getTcpPort(port).fetch(...)`). It calls the
//! emulator over the emulator's own listener (as service bindings do): workerd injects
//! [`CONTAINER_HEADER`] (the script), the wrapper adds the class ([`CLASS_HEADER`]), the
//! Durable Object id ([`ID_HEADER`]) and the operation ([`OP_HEADER`]). Only a loopback
//! peer is taken for one of these calls. The wrapper binds the service as
//! `env.__FLAREDOCK_CONTAINERS__`; the container classes and the default export get
//! `env` without it (the upload's other classes see it). Starts run one at a time.
//!
//! **What runs.** The class's Durable Object namespace, the application linked to it
//! (one being deleted does not count) and the image of its current version
//! (`configuration.image`, the rollout's target once the rollout is done) are looked
//! up at each `start()`. The image is pulled from the registry standing in for
//! Cloudflare's (the embedded one, with credentials minted for the pull, or the
//! external one with its credentials), through a private auth file, into a buildah
//! store (vfs) in a private temporary directory of the emulator, with the storage
//! options flaredock's builder uses ([`LocalBuilder::buildah_with_storage`]). It runs
//! with `buildah run --isolation chroot --network host`: the image's environment, then
//! the application's `environment_variables`, then `start()`'s `envVars`; the image's
//! `Entrypoint` + `Cmd` unless `start()` gives an `entrypoint`. One instance per Durable
//! Object id; at most [`MAX_CONTAINERS`] at once, and at most the application's
//! `max_instances` (when above 0) for one application. `start()` on an instance that
//! runs the current image does nothing.
//!
//! **Lifetime.** Every instance is a `buildah run` child of the emulator (buildah takes
//! the container's process along when it dies), killed on `destroy()`, `signal(9)`,
//! when the emulator stops, when the application or the script is deleted, and when the
//! application's image changes (a rollout): the instance on the old image is stopped
//! within [`SWEEP_EVERY`] of the rollout's end ([`Containers::sweep`]) or at the next
//! call of its Durable Object, whichever comes first (the wrapper asks before each
//! `fetch` of the class, so `running` turns false there and the next `start()` runs the
//! new image).
//! Other signals are passed to buildah, which forwards them to the container.
//!
//! **`getTcpPort(p).fetch`**: the emulator proxies the request to `127.0.0.1:p`, first
//! waiting up to [`PORT_TIMEOUT`] for the port to accept (Cloudflare's cold start); an
//! instance that exits meanwhile fails the request with the tail of its output.
//!
//! **Limitations.** The host network means ports are shared: an instance's port is
//! claimed by its first `fetch`, and another instance's `fetch` to a claimed port is
//! refused ([`ContainerError::PortInUse`]); two instances of an image that listens on
//! one fixed port cannot both serve (the second exits, and says why). `enableInternet`
//! is not enforced (the host network reaches what the host reaches). No CPU, memory or
//! disk limits (`instance_type`), no regions, no `getTcpPort().connect()`. The
//! environment values are on `buildah run`'s command line (readable by the same user
//! in `/proc`, as the workerd configs in the emulator's temporary directory hold the
//! Workers' secrets). An instance's output (stdout and stderr) is kept bounded (the
//! last [`LOG_LINES`] lines of at most [`LOG_LINE_BYTES`] bytes), with every environment
//! value replaced by [`super::redact::REDACTED`] wherever it is shown (an error
//! message, the emulator's debug log).
//!
//! **Without buildah** on `PATH` (or with `EmulatorConfig::buildah` `None`), `start()`
//! fails with [`NO_CONTAINER_RUNTIME`] (the Worker sees it as an error); the rest of the
//! emulator works as before. Nothing here panics: every failure is a
//! [`ContainerError`], answered to the wrapper with [`ERROR_HEADER`] set.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::{oneshot, watch};

use super::Shared;
use crate::build::local::{LocalBuilder, Tool};

/// The header workerd injects into the wrapper's calls: the script.
pub const CONTAINER_HEADER: &str = "x-flaredock-container";
/// The Durable Object class of a call.
pub const CLASS_HEADER: &str = "x-flaredock-container-class";
/// The Durable Object id of a call.
pub const ID_HEADER: &str = "x-flaredock-container-id";
/// The operation: `start`, `status`, `monitor`, `destroy`, `signal`, `fetch`.
pub const OP_HEADER: &str = "x-flaredock-container-op";
/// The container port of a `fetch`.
pub const PORT_HEADER: &str = "x-flaredock-container-port";
/// Set on the emulator's own failure answers (not the container's).
pub const ERROR_HEADER: &str = "x-flaredock-container-error";
/// What `start()` fails with when the emulator has no buildah.
pub const NO_CONTAINER_RUNTIME: &str = "no container runtime: the flaredock emulator runs containers with buildah, which is not on its PATH (apt-get install buildah), so ctx.container.start() cannot start one";
/// How many container instances run at once.
pub const MAX_CONTAINERS: usize = 8;
/// How long pulling an image and creating its working container may take.
pub const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a `fetch` waits for the container's port to accept.
pub const PORT_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the instances are checked against their applications.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// An instance's output kept: lines, and bytes per line.
pub const LOG_LINES: usize = 200;
pub const LOG_LINE_BYTES: usize = 1024;

/// buildah on `PATH`.
pub fn locate() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("buildah"))
        .find(|p| p.is_file())
}

/// Why a container call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContainerError {
    #[error("{NO_CONTAINER_RUNTIME}")]
    NoRuntime,
    #[error(
        "the Durable Object class {class} of the Worker {script} has no container application (create one on its namespace, e.g. a CloudflareContainer naming the Worker)"
    )]
    NoApplication { script: String, class: String },
    #[error(
        "the emulator runs at most {MAX_CONTAINERS} container instances at once: destroy one first"
    )]
    Full,
    #[error("the application {application} runs at most {max} instances (max_instances)")]
    MaxInstances { application: String, max: i64 },
    #[error(
        "port {port} is used by another container instance (Durable Object {other}): the emulator runs containers on the host network, so two instances cannot serve one port"
    )]
    PortInUse { port: u16, other: String },
    #[error("cannot pull the container image {image}: {why}")]
    Pull { image: String, why: String },
    #[error(
        "the container image {image} has no Entrypoint or Cmd and start() gave no entrypoint: nothing to run"
    )]
    NoCommand { image: String },
    #[error("the container did not start: {0}")]
    Start(String),
    #[error("the container exited with status {code}{log}")]
    Exited { code: i32, log: String },
    #[error("the container is not running: call ctx.container.start() first")]
    NotRunning,
    #[error("the container did not listen on port {port} within {secs} s{log}")]
    PortTimeout { port: u16, secs: u64, log: String },
    #[error("the container did not answer on port {port}: {why}")]
    Proxy { port: u16, why: String },
    #[error("flaredock emulator: bad container call: {0}")]
    BadRequest(String),
}

impl ContainerError {
    fn status(&self) -> StatusCode {
        match self {
            ContainerError::NoApplication { .. } | ContainerError::NotRunning => {
                StatusCode::NOT_FOUND
            }
            ContainerError::Full
            | ContainerError::MaxInstances { .. }
            | ContainerError::PortInUse { .. } => StatusCode::CONFLICT,
            ContainerError::BadRequest(_) | ContainerError::NoCommand { .. } => {
                StatusCode::BAD_REQUEST
            }
            ContainerError::PortTimeout { .. } | ContainerError::Proxy { .. } => {
                StatusCode::BAD_GATEWAY
            }
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A container instance: one Durable Object's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub script: String,
    pub class: String,
    pub id: String,
}

/// What an instance runs, from the account.
#[derive(Clone, Debug)]
struct Target {
    application: String,
    max_instances: Option<i64>,
    image: String,
    env: Vec<(String, String)>,
}

/// Bounded output of an instance.
#[derive(Default)]
struct Log {
    lines: VecDeque<String>,
}

impl Log {
    fn push(&mut self, line: &[u8]) {
        let end = line.len().min(LOG_LINE_BYTES);
        let text = String::from_utf8_lossy(&line[..end]).trim_end().to_string();
        if self.lines.len() == LOG_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(text);
    }

    fn tail(&self, n: usize) -> String {
        let skip = self.lines.len().saturating_sub(n);
        self.lines
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

struct Instance {
    application: String,
    image: String,
    pid: Option<u32>,
    /// `None` while it runs, then its exit status.
    exit: watch::Receiver<Option<i32>>,
    /// Dropped (with the instance): the process is killed.
    _kill: oneshot::Sender<()>,
    log: Arc<Mutex<Log>>,
    ports: BTreeSet<u16>,
    /// Environment values: never shown.
    secrets: Vec<String>,
    /// A sweep saw it exited (the next one forgets it).
    exit_seen: bool,
}

impl Instance {
    fn alive(&self) -> bool {
        self.exit.borrow().is_none()
    }
}

/// The container runtime of one emulator.
pub struct Containers {
    buildah: Option<(PathBuf, Vec<String>)>,
    root: Option<tempfile::TempDir>,
    instances: Mutex<HashMap<Key, Instance>>,
    /// One start at a time.
    starting: tokio::sync::Mutex<u64>,
    http: Option<reqwest::Client>,
}

/// `start()`'s options.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct StartOptions {
    #[serde(default)]
    env_vars: Option<BTreeMap<String, String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    enable_internet: Option<bool>,
}

/// Copies lines of `from` into `log` (bounded: a line longer than
/// [`LOG_LINE_BYTES`] is cut, never buffered whole).
async fn drain(mut from: impl AsyncRead + Unpin, log: Arc<Mutex<Log>>) {
    let mut buf = [0u8; 4096];
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                crate::lock(&log).push(&line);
                line.clear();
                cut = false;
            } else if line.len() < LOG_LINE_BYTES {
                line.push(b);
            } else if !cut {
                cut = true;
            }
        }
    }
    if !line.is_empty() {
        crate::lock(&log).push(&line);
    }
}

fn scrub(text: &str, secrets: &[String]) -> String {
    super::redact::scrub(text, secrets)
}

impl Containers {
    /// A runtime running `buildah` (none: every start fails with
    /// [`NO_CONTAINER_RUNTIME`]).
    pub fn new(buildah: Option<PathBuf>) -> Containers {
        let prepared = buildah.and_then(|bin| {
            let root = tempfile::Builder::new()
                .prefix("flaredock-containers-")
                .tempdir()
                .map_err(|e| tracing::warn!(error = %e, "emulator: no directory for containers: containers do not run"))
                .ok()?;
            let builder = LocalBuilder::buildah_with_storage(bin, root.path());
            match builder.tool {
                Tool::Buildah { binary, storage } => Some((root, binary, storage)),
                Tool::DockerBuildx { .. } => None,
            }
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(100))
            .build()
            .ok();
        let (root, buildah) = match prepared {
            Some((root, bin, storage)) => (Some(root), Some((bin, storage))),
            None => (None, None),
        };
        Containers {
            buildah,
            root,
            instances: Mutex::new(HashMap::new()),
            starting: tokio::sync::Mutex::new(0),
            http,
        }
    }

    /// Whether containers can run (buildah found).
    pub fn available(&self) -> bool {
        self.buildah.is_some()
    }

    /// How many instances run now.
    pub fn running(&self) -> usize {
        crate::lock(&self.instances)
            .values()
            .filter(|i| i.alive())
            .count()
    }

    /// The process ids (`buildah run`) of the instances that run now.
    pub fn pids(&self) -> Vec<u32> {
        crate::lock(&self.instances)
            .values()
            .filter(|i| i.alive())
            .filter_map(|i| i.pid)
            .collect()
    }

    /// Stops every instance of which `which` is true, waiting (up to 10 s) until they
    /// are gone.
    async fn stop_where(&self, which: impl Fn(&Key, &Instance) -> bool) {
        let stopped: Vec<Instance> = {
            let mut map = crate::lock(&self.instances);
            let keys: Vec<Key> = map
                .iter()
                .filter(|(k, i)| which(k, i))
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for i in stopped {
            end(i).await;
        }
    }

    /// Stops the instances of an application (it is deleted).
    pub async fn stop_application(&self, id: &str) {
        self.stop_where(|_, i| i.application == id).await;
    }

    /// Stops the instances of a script's classes (it is deleted).
    pub async fn stop_script(&self, name: &str) {
        self.stop_where(|k, _| k.script == name).await;
    }

    /// Kills every instance without waiting (the emulator is dropped).
    pub fn kill_all(&self) {
        crate::lock(&self.instances).clear();
    }

    /// Stops every instance (the emulator stops).
    pub async fn stop_all(&self) {
        self.stop_where(|_, _| true).await;
    }

    /// What `key` runs now, from the account.
    fn target(shared: &Shared, key: &Key) -> Result<Target, ContainerError> {
        let mut account = shared.account();
        let app = account
            .container_application(&key.script, &key.class)
            .ok_or_else(|| ContainerError::NoApplication {
                script: key.script.clone(),
                class: key.class.clone(),
            })?;
        Ok(Target {
            application: app.id.clone(),
            max_instances: app.max_instances,
            image: app.configuration.image.clone(),
            env: app
                .configuration
                .environment_variables
                .iter()
                .flatten()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect(),
        })
    }

    /// Forgets `key`'s instance when it exited or runs another image than `image`
    /// (`None`: the class has no application now), waiting until it is gone (it may
    /// hold a port the next instance needs); whether one runs after that.
    async fn settle(&self, key: &Key, image: Option<&str>) -> bool {
        let removed = {
            let mut map = crate::lock(&self.instances);
            let keep = map
                .get(key)
                .is_some_and(|i| i.alive() && image.is_some_and(|img| img == i.image));
            if keep {
                return true;
            }
            map.remove(key)
        };
        if let Some(i) = removed {
            if i.alive() {
                tracing::info!(script = %key.script, class = %key.class, "emulator: container instance stopped (its image changed, or its application is gone)");
            }
            end(i).await;
        }
        false
    }

    /// Stops the instances whose application is gone or runs another image now (a
    /// rollout finished), and forgets those that exited before the previous sweep (an
    /// exit stays readable for a while: a `fetch` may be on its way to report it).
    pub async fn sweep(&self, shared: &Shared) {
        let keys: Vec<Key> = {
            let mut map = crate::lock(&self.instances);
            map.retain(|_, i| i.alive() || !i.exit_seen);
            for i in map.values_mut() {
                i.exit_seen = !i.alive();
            }
            map.iter()
                .filter(|(_, i)| i.alive())
                .map(|(k, _)| k.clone())
                .collect()
        };
        for key in keys {
            let image = Self::target(shared, &key).ok().map(|t| t.image);
            self.settle(&key, image.as_deref()).await;
        }
    }

    async fn status(&self, shared: &Shared, key: &Key) -> Value {
        let image = Self::target(shared, key).ok().map(|t| t.image);
        json!({"running": self.settle(key, image.as_deref()).await})
    }

    async fn start(
        &self,
        shared: &Shared,
        key: &Key,
        options: StartOptions,
    ) -> Result<(), ContainerError> {
        let Some((bin, storage)) = &self.buildah else {
            return Err(ContainerError::NoRuntime);
        };
        let mut count = self.starting.lock().await;
        let target = Self::target(shared, key)?;
        if self.settle(key, Some(&target.image)).await {
            return Ok(());
        }
        {
            let map = crate::lock(&self.instances);
            if map.values().filter(|i| i.alive()).count() >= MAX_CONTAINERS {
                return Err(ContainerError::Full);
            }
            if let Some(max) = target.max_instances.filter(|m| *m > 0)
                && map
                    .values()
                    .filter(|i| i.alive() && i.application == target.application)
                    .count() as i64
                    >= max
            {
                return Err(ContainerError::MaxInstances {
                    application: target.application.clone(),
                    max,
                });
            }
        }
        *count += 1;
        let name = format!("flaredock-{}", *count);
        let mut env: BTreeMap<String, String> = target.env.iter().cloned().collect();
        env.extend(options.env_vars.unwrap_or_default());
        let secrets: Vec<String> = env.values().filter(|v| !v.is_empty()).cloned().collect();
        self.pull(shared, bin, storage, &target.image, &name)
            .await?;
        let argv = match options.entrypoint.filter(|e| !e.is_empty()) {
            Some(e) => e,
            None => match self.command(bin, storage, &name).await {
                Ok(c) if !c.is_empty() => c,
                Ok(_) => {
                    self.remove(bin, storage, &name).await;
                    return Err(ContainerError::NoCommand {
                        image: target.image.clone(),
                    });
                }
                Err(e) => {
                    self.remove(bin, storage, &name).await;
                    return Err(e);
                }
            },
        };
        let mut run = Command::new(bin);
        run.args(storage)
            .args(["run", "--isolation", "chroot", "--network", "host"]);
        for (k, v) in &env {
            run.arg("--env").arg(format!("{k}={v}"));
        }
        run.arg(&name).arg("--").args(&argv);
        run.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match run.spawn() {
            Ok(c) => c,
            Err(e) => {
                self.remove(bin, storage, &name).await;
                return Err(ContainerError::Start(format!("{}: {e}", bin.display())));
            }
        };
        let log = Arc::new(Mutex::new(Log::default()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(drain(out, log.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(drain(err, log.clone()));
        }
        let pid = child.id();
        let (exit_tx, exit_rx) = watch::channel(None);
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        let (bin2, storage2, name2) = (bin.clone(), storage.clone(), name.clone());
        let (log2, secrets2, script) = (log.clone(), secrets.clone(), key.script.clone());
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s,
                _ = kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let code = match status {
                Ok(s) => exit_code(s),
                Err(_) => -1,
            };
            let tail = crate::lock(&log2).tail(20);
            tracing::debug!(script = %script, code, "container exited: {}", scrub(&tail, &secrets2));
            let _ = exit_tx.send(Some(code));
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                Command::new(&bin2)
                    .args(&storage2)
                    .args(["rm", &name2])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .status(),
            )
            .await;
        });
        tracing::info!(script = %key.script, class = %key.class, image = %target.image, "emulator: container instance started");
        crate::lock(&self.instances).insert(
            key.clone(),
            Instance {
                application: target.application,
                image: target.image,
                pid,
                exit: exit_rx,
                _kill: kill_tx,
                log,
                ports: BTreeSet::new(),
                secrets,
                exit_seen: false,
            },
        );
        Ok(())
    }

    /// Pulls `image` and makes the working container `name` of it.
    async fn pull(
        &self,
        shared: &Shared,
        bin: &Path,
        storage: &[String],
        image: &str,
        name: &str,
    ) -> Result<(), ContainerError> {
        let fail = |why: String| ContainerError::Pull {
            image: image.to_string(),
            why,
        };
        let host = image.split('/').next().unwrap_or("").to_string();
        let (username, password) = match &shared.config.registry {
            Some(r) => (r.username.clone(), r.password.clone()),
            None => shared.mint(15),
        };
        let credentials = crate::oci::Credentials {
            username,
            password: crate::cloudflare::Secret::new(password.clone()),
        };
        let dir = self
            .root
            .as_ref()
            .map(|r| r.path().to_path_buf())
            .unwrap_or_else(std::env::temp_dir);
        // A private auth file (mode 0600), never the command line.
        let auth = tempfile::Builder::new()
            .prefix("auth-")
            .suffix(".json")
            .tempfile_in(&dir)
            .map_err(|e| fail(e.to_string()))?;
        std::fs::write(
            auth.path(),
            crate::build::docker_config_json(&host, &credentials),
        )
        .map_err(|e| fail(e.to_string()))?;
        let mut from = Command::new(bin);
        from.args(storage)
            .arg("from")
            .arg("--authfile")
            .arg(auth.path())
            .args(["--name", name]);
        if crate::oci::client::is_loopback(&host)
            || shared
                .config
                .registry
                .as_ref()
                .is_some_and(|r| r.host == host)
        {
            from.arg("--tls-verify=false");
        }
        from.arg(format!("docker://{image}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(START_TIMEOUT, from.output())
            .await
            .map_err(|_| fail(format!("not done within {} s", START_TIMEOUT.as_secs())))?
            .map_err(|e| fail(format!("{}: {e}", bin.display())))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            let text = scrub(text.trim(), &[password]);
            return Err(fail(tail_chars(&text, 2000)));
        }
        Ok(())
    }

    /// The image's `Entrypoint` + `Cmd`, read from the working container's config.
    async fn command(
        &self,
        bin: &Path,
        storage: &[String],
        name: &str,
    ) -> Result<Vec<String>, ContainerError> {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            Command::new(bin)
                .args(storage)
                .args(["inspect", "--type", "container", name])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .map_err(|_| ContainerError::Start("buildah inspect did not finish within 30 s".into()))?
        .map_err(|e| ContainerError::Start(e.to_string()))?;
        if !out.status.success() {
            return Err(ContainerError::Start(format!(
                "buildah inspect failed: {}",
                tail_chars(String::from_utf8_lossy(&out.stderr).trim(), 2000)
            )));
        }
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| ContainerError::Start(format!("buildah inspect: {e}")))?;
        let config = &v["OCIv1"]["config"];
        let strings = |f: &str| -> Vec<String> {
            config[f]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        };
        let mut argv = strings("Entrypoint");
        argv.extend(strings("Cmd"));
        Ok(argv)
    }

    async fn remove(&self, bin: &Path, storage: &[String], name: &str) {
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            Command::new(bin)
                .args(storage)
                .args(["rm", name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status(),
        )
        .await;
    }

    async fn monitor(&self, key: &Key) -> Result<Value, ContainerError> {
        let mut exit = crate::lock(&self.instances)
            .get(key)
            .map(|i| i.exit.clone())
            .ok_or(ContainerError::NotRunning)?;
        let code = match exit.wait_for(Option::is_some).await {
            Ok(c) => c.unwrap_or(-1),
            Err(_) => -1,
        };
        Ok(json!({"exitCode": code}))
    }

    async fn destroy(&self, key: &Key) {
        self.stop_where(|k, _| k == key).await;
    }

    async fn signal(&self, key: &Key, signo: i64) -> Result<(), ContainerError> {
        if signo == 9 {
            self.destroy(key).await;
            return Ok(());
        }
        let pid = crate::lock(&self.instances)
            .get(key)
            .filter(|i| i.alive())
            .and_then(|i| i.pid)
            .ok_or(ContainerError::NotRunning)?;
        // buildah forwards the signal to the container's process.
        let sent = tokio::time::timeout(
            Duration::from_secs(5),
            Command::new("kill")
                .arg(format!("-{signo}"))
                .arg(pid.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status(),
        )
        .await;
        match sent {
            Ok(Ok(s)) if s.success() => Ok(()),
            _ => Err(ContainerError::BadRequest(format!(
                "signal {signo} could not be sent"
            ))),
        }
    }

    /// The output tail of an instance, scrubbed, as ": …" (empty when none).
    fn log_tail(log: &Mutex<Log>, secrets: &[String]) -> String {
        let tail = crate::lock(log).tail(10);
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {}", scrub(&tail, secrets))
        }
    }

    async fn fetch(&self, key: &Key, port: u16, req: Request) -> Result<Response, ContainerError> {
        // What the instance left behind stays readable if it is forgotten meanwhile.
        let (mut exit, log, secrets) = {
            let mut map = crate::lock(&self.instances);
            if let Some((other, _)) = map
                .iter()
                .find(|(k, i)| *k != key && i.alive() && i.ports.contains(&port))
            {
                return Err(ContainerError::PortInUse {
                    port,
                    other: other.id.clone(),
                });
            }
            let i = map.get_mut(key).ok_or(ContainerError::NotRunning)?;
            i.ports.insert(port);
            (i.exit.clone(), i.log.clone(), i.secrets.clone())
        };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = tokio::time::Instant::now() + PORT_TIMEOUT;
        loop {
            if let Some(code) = *exit.borrow() {
                return Err(ContainerError::Exited {
                    code,
                    log: Self::log_tail(&log, &secrets),
                });
            }
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                    .await
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ContainerError::PortTimeout {
                    port,
                    secs: PORT_TIMEOUT.as_secs(),
                    log: Self::log_tail(&log, &secrets),
                });
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), exit.changed()).await;
        }
        let Some(http) = &self.http else {
            return Err(ContainerError::Proxy {
                port,
                why: "no HTTP client".into(),
            });
        };
        let (parts, body) = req.into_parts();
        let bytes = super::limits::read_bounded(body, 100 * 1024 * 1024)
            .await
            .map_err(|_| ContainerError::BadRequest("request body too large".into()))?;
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let mut headers = parts.headers.clone();
        for h in HOP_BY_HOP.iter().chain(&[
            CONTAINER_HEADER,
            CLASS_HEADER,
            ID_HEADER,
            OP_HEADER,
            PORT_HEADER,
            "host",
        ]) {
            headers.remove(*h);
        }
        let resp = http
            .request(parts.method, format!("http://127.0.0.1:{port}{pq}"))
            .headers(headers)
            .body(bytes)
            .send()
            .await
            .map_err(|e| ContainerError::Proxy {
                port,
                why: e.to_string(),
            })?;
        let status = resp.status();
        let mut headers = resp.headers().clone();
        for h in HOP_BY_HOP {
            headers.remove(h);
        }
        let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

/// Ends an instance and waits (up to 10 s) until its processes are gone: buildah, then
/// the container's own process, which buildah's death takes along a moment later (it
/// may hold a port the next instance needs).
async fn end(i: Instance) {
    let tree = if i.alive() {
        i.pid.map(descendants).unwrap_or_default()
    } else {
        vec![]
    };
    let mut exit = i.exit.clone();
    drop(i);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let _ = tokio::time::timeout_at(deadline, exit.wait_for(Option::is_some)).await;
    while tree.iter().any(|p| running(*p)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The processes under `pid` (Linux `/proc`; none elsewhere).
fn descendants(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let parents: Vec<(u32, u32)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // pid (comm) state ppid …: comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut out = vec![];
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (p, _) in parents.iter().filter(|(_, pp)| *pp == parent) {
            if !out.contains(p) && out.len() < 4096 {
                out.push(*p);
                frontier.push(*p);
            }
        }
    }
    out
}

/// Whether a process runs (a zombie does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

fn exit_code(s: std::process::ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            return 128 + sig;
        }
    }
    s.code().unwrap_or(-1)
}

fn tail_chars(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

fn failure(e: &ContainerError) -> Response {
    let mut r = (e.status(), e.to_string()).into_response();
    r.headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static("1"));
    r
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// A call of the wrapper's `ctx.container` for a class of `script`.
pub async fn handle(shared: &Shared, script: &str, req: Request) -> Response {
    let (Some(class), Some(id), Some(op)) = (
        header(&req, CLASS_HEADER),
        header(&req, ID_HEADER),
        header(&req, OP_HEADER),
    ) else {
        return failure(&ContainerError::BadRequest(format!(
            "{CLASS_HEADER}, {ID_HEADER} and {OP_HEADER} are required"
        )));
    };
    let key = Key {
        script: script.to_string(),
        class,
        id,
    };
    let c = &shared.containers;
    let body = |req: Request| async move {
        let bytes = super::limits::read_bounded(req.into_body(), 64 * 1024)
            .await
            .map_err(|_| ContainerError::BadRequest("body too large".into()))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| ContainerError::BadRequest(e.to_string()))
    };
    let outcome: Result<Response, ContainerError> = match op.as_str() {
        "status" => Ok(axum::Json(c.status(shared, &key).await).into_response()),
        "start" => match body(req).await {
            Ok(v) => {
                let options = if v.is_null() {
                    Ok(StartOptions::default())
                } else {
                    serde_json::from_value::<StartOptions>(v)
                        .map_err(|e| ContainerError::BadRequest(format!("start(): {e}")))
                };
                match options {
                    Ok(o) => c
                        .start(shared, &key, o)
                        .await
                        .map(|_| axum::Json(json!({})).into_response()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        },
        "monitor" => c.monitor(&key).await.map(|v| axum::Json(v).into_response()),
        "destroy" => {
            c.destroy(&key).await;
            Ok(axum::Json(json!({})).into_response())
        }
        "signal" => match body(req).await {
            Ok(v) => match v["signo"].as_i64() {
                Some(s) if (1..=64).contains(&s) => c
                    .signal(&key, s)
                    .await
                    .map(|_| axum::Json(json!({})).into_response()),
                _ => Err(ContainerError::BadRequest(
                    "signal(): signo must be 1..64".into(),
                )),
            },
            Err(e) => Err(e),
        },
        "fetch" => match header(&req, PORT_HEADER).and_then(|p| p.parse::<u16>().ok()) {
            Some(port) if port > 0 => c.fetch(&key, port, req).await,
            _ => Err(ContainerError::BadRequest(
                "getTcpPort(): the port must be 1..65535".into(),
            )),
        },
        other => Err(ContainerError::BadRequest(format!(
            "unknown operation {other:?}"
        ))),
    };
    outcome.unwrap_or_else(|e| failure(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_last_lines_cut() {
        let mut log = Log::default();
        for i in 0..(LOG_LINES + 5) {
            log.push(format!("line {i}").as_bytes());
        }
        assert_eq!(log.lines.len(), LOG_LINES);
        assert_eq!(log.tail(1), format!("line {}", LOG_LINES + 4));
        log.push(&vec![b'x'; LOG_LINE_BYTES * 3]);
        assert_eq!(log.tail(1).len(), LOG_LINE_BYTES);
    }

    #[tokio::test]
    async fn drain_bounds_a_line_without_end() {
        let log = Arc::new(Mutex::new(Log::default()));
        let data = vec![b'y'; 100_000];
        drain(&data[..], log.clone()).await;
        let tail = crate::lock(&log).tail(5);
        assert_eq!(tail.len(), LOG_LINE_BYTES);
    }

    #[test]
    fn without_buildah_a_start_says_so() {
        let c = Containers::new(None);
        assert!(!c.available());
        assert_eq!(ContainerError::NoRuntime.to_string(), NO_CONTAINER_RUNTIME);
        assert_eq!(
            ContainerError::NoRuntime.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}

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
//!
//! **The parts.** This file is the way in: the wrapper's calls ([`handle`]), their
//! headers, [`ContainerError`] and the runtime ([`Containers`]). `image.rs` finds
//! what a class runs (its application's current image and environment) and pulls it
//! with buildah; `instance.rs` starts, tracks and stops instances (`start()`,
//! `monitor()`, `destroy()`, `signal()`, the sweep); `proxy.rs` is
//! `getTcpPort(p).fetch` (the port claim, the wait, the forwarding); `log.rs` keeps
//! an instance's output bounded and redacted.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use crate::build::local::{LocalBuilder, Tool};

mod image;
mod instance;
mod log;
mod proxy;

pub use image::START_TIMEOUT;
use instance::Instance;
pub use instance::{MAX_CONTAINERS, SWEEP_EVERY};
pub use log::{LOG_LINE_BYTES, LOG_LINES};
pub use proxy::PORT_TIMEOUT;

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
    pub(super) env_vars: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(super) entrypoint: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    enable_internet: Option<bool>,
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

//! The local Workers runtime: uploads are loaded by **workerd**, the open-source runtime
//! behind Cloudflare Workers (the binary the npm package `workerd` ships, and the one
//! `wrangler dev` runs), driven directly with a generated Cap'n Proto text config; no
//! Node runtime in between.
//!
//! **Where workerd is found** ([`locate`]): `FLAREDOCK_WORKERD` (when set, that file or
//! nothing: `FLAREDOCK_WORKERD=/nonexistent` turns the runtime off), then `workerd` on
//! `PATH`, then the places npm puts it next to wrangler or the `workerd` package under
//! `/usr/lib/node_modules` and `/usr/local/lib/node_modules`. Without it the emulator
//! says so once at start, checks uploads statically ([`static_exports`]) and serves no
//! Worker.
//!
//! **Loading an upload** ([`Runtime::probe`]): the modules go to a private temporary
//! directory (removed afterwards) with a config whose main module is a generated probe
//! that imports the upload's main module and, from a `test` handler, prints the names
//! of its exports and whether each is a class; `workerd test` runs it (10 s timeout).
//! A module that does not load (syntax error, failing top-level code, unknown
//! compatibility flag) makes workerd fail: the upload is refused with the runtime's
//! message. The exports come from the runtime, never from reading the source.
//!
//! **Serving** ([`Runtime::serve`]): **one workerd process per script**, started on the
//! first request that reaches the script (never at upload, never for scripts the test
//! hooks seed until a request names them), listening on a loopback port it reports on
//! its control channel (stdout). Its config: the modules, compatibility date and flags,
//! `plain_text`/`secret_text` bindings as text, `json` as JSON, Durable Object bindings
//! to the script's own classes, namespaces keyed by the namespace id with their storage
//! on local disk (the emulator's temporary directory, kept across re-uploads while the
//! emulator runs), and `service` bindings to other scripts through the emulator's own
//! listener (header [`SERVICE_HEADER`]), which starts that script in turn. A new upload
//! or a delete stops the script's process; the next request starts the new version.
//! At most [`MAX_RUNNING`] processes run at once (the least recently used stops first);
//! every process is a child of the emulator, killed when the emulator stops (a
//! SIGKILLed emulator cannot take them along: they are `workerd serve` processes under
//! a `flaredock-workerd-*` temporary directory). Starting one holds the others' starts
//! back (one start at a time, each within [`LOAD_TIMEOUT`]).
//!
//! **Container-enabled classes**: workerd 2026-04-26 has a `ctx.container` API that
//! drives a local Docker daemon (and an egress sidecar image from Docker Hub). The
//! emulator has no container runtime to give it, so the served main module is a
//! generated wrapper that re-exports the upload's main module and, for each class in
//! `containers`, gives `ctx.container` a stand-in whose `start()`, `monitor()`,
//! `getTcpPort()` and `signal()` fail with [`NO_CONTAINER_RUNTIME`].
//!
//! **Not reproduced by the local runtime**: KV, R2, D1, Queues, Hyperdrive, AI,
//! Analytics Engine and the other binding kinds (the binding is absent from `env`);
//! Durable Object bindings to another script's class; `wasm`/binary modules and Python
//! Workers (refused: the emulator keeps text modules only); a compatibility date newer
//! than the workerd binary's own is run at the binary's date; CPU and memory limits,
//! `request.cf`, the `https` scheme of `request.url` (workerd sees `http`), Cron
//! Triggers (schedules are stored, never run), Smart Placement, observability and tail
//! Workers; containers (see above).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use super::scripts::StoredModule;

/// The environment variable naming the workerd binary.
pub const WORKERD_ENV: &str = "FLAREDOCK_WORKERD";
/// The header a service binding's request carries into the emulator: the script it is for.
pub const SERVICE_HEADER: &str = "x-flaredock-service";
/// What `ctx.container.start()` answers in a container-enabled class.
pub const NO_CONTAINER_RUNTIME: &str = "no container runtime: the flaredock emulator runs this Worker and its Durable Object in workerd, but it runs no containers, so ctx.container.start() cannot start one";
/// How many workerd processes serve at once.
pub const MAX_RUNNING: usize = 16;
/// How long workerd may take to load an upload or to start listening.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The name of the generated probe and wrapper modules (not an upload's module name).
const PROBE_MODULE: &str = "__flaredock_probe__.js";
const WRAPPER_MODULE: &str = "__flaredock_main__.js";
const EXPORTS_MARK: &str = "FLAREDOCK-EXPORTS ";

/// Finds workerd: `FLAREDOCK_WORKERD`, `PATH`, then npm's global install places.
pub fn locate() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(WORKERD_ENV) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(p) = std::env::split_paths(&path)
        .map(|d| d.join("workerd"))
        .find(|p| p.is_file())
    {
        return Some(p);
    }
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "64"
    };
    ["/usr/lib/node_modules", "/usr/local/lib/node_modules"]
        .iter()
        .flat_map(|root| {
            ["workerd", "wrangler"].map(|pkg| {
                PathBuf::from(format!(
                    "{root}/{pkg}/node_modules/@cloudflare/workerd-linux-{arch}/bin/workerd"
                ))
            })
        })
        .find(|p| p.is_file())
}

/// What the runtime says about an upload's main module: export name → `class`,
/// `function`, `object`, … (`typeof`, with classes told apart).
pub type Exports = BTreeMap<String, String>;

/// Why an upload did not load.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    /// workerd refused it: the runtime's message.
    #[error("{0}")]
    Refused(String),
    /// workerd could not be run, or timed out.
    #[error("the local Workers runtime (workerd) failed: {0}")]
    Runtime(String),
}

/// A script as the runtime runs it.
#[derive(Clone, Debug, Default)]
pub struct WorkerSpec {
    pub modules: BTreeMap<String, StoredModule>,
    pub main: String,
    pub compatibility_date: Option<String>,
    pub compatibility_flags: Vec<String>,
    /// Bindings as stored (JSON values of the upload).
    pub bindings: Vec<Value>,
    /// The script's Durable Object namespaces: (class, namespace id, SQLite).
    pub namespaces: Vec<(String, String, bool)>,
    /// Classes of `containers`.
    pub containers: Vec<String>,
    /// The upload's exports (from the probe): the wrapper re-exports `default` only
    /// when there is one.
    pub has_default: bool,
}

struct Instance {
    child: Child,
    port: u16,
    etag: String,
    used: Instant,
}

/// workerd, its working directory and its serving processes.
pub struct Runtime {
    bin: PathBuf,
    /// The newest compatibility date the binary supports (its version).
    max_date: String,
    /// The emulator's own address (service bindings come back through it).
    emulator: SocketAddr,
    root: tempfile::TempDir,
    running: tokio::sync::Mutex<HashMap<String, Instance>>,
    /// Requests to the serving processes (loopback, no proxy, Cloudflare's 100 s).
    http: reqwest::Client,
}

/// A Cap'n Proto text string literal.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JavaScript string literal (JSON is one).
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The import specifier of a module from the root (`./name`).
fn specifier(name: &str) -> String {
    js(&format!("./{}", name.trim_start_matches("./")))
}

/// The probe: imports the main module, prints its exports from a `test` handler.
fn probe_source(main: &str) -> String {
    format!(
        "import * as m from {spec};\n\
         export default {{ test() {{\n\
           const out = {{}};\n\
           for (const k of Object.keys(m)) {{\n\
             const v = m[k];\n\
             out[k] = typeof v === 'function' ? (/^class[\\s{{]/.test(Function.prototype.toString.call(v)) ? 'class' : 'function') : typeof v;\n\
           }}\n\
           console.log({mark} + JSON.stringify(out));\n\
         }} }};\n",
        spec = specifier(main),
        mark = js(EXPORTS_MARK),
    )
}

/// The served main module when the upload has container-enabled classes.
fn wrapper_source(spec: &WorkerSpec) -> String {
    let main = specifier(&spec.main);
    let mut out = format!("import * as user from {main};\nexport * from {main};\n");
    if spec.has_default {
        out.push_str(&format!("export {{ default }} from {main};\n"));
    }
    out.push_str(&format!(
        "const message = {};\n\
         const fail = () => {{ throw new Error(message); }};\n\
         const none = {{ get running() {{ return false; }}, start: fail, getTcpPort: fail, signal: fail,\n\
           async monitor() {{ throw new Error(message); }}, async destroy() {{}} }};\n\
         const withoutRuntime = (ctx) => {{ if (ctx && ctx.container === undefined) Object.defineProperty(ctx, 'container', {{ value: none, configurable: true }}); return ctx; }};\n",
        js(NO_CONTAINER_RUNTIME)
    ));
    for class in &spec.containers {
        let c = js(class);
        // An export name is a JavaScript identifier (the runtime listed it).
        out.push_str(&format!(
            "const Base_{class} = user[{c}];\nexport class {class} extends Base_{class} {{ constructor(ctx, env) {{ super(withoutRuntime(ctx), env); }} }}\n"
        ));
    }
    out
}

fn module_kind(content_type: &str) -> Option<&'static str> {
    match content_type {
        "application/javascript+module" | "text/javascript+module" => Some("esModule"),
        "application/javascript" | "text/javascript" => Some("commonJsModule"),
        "text/plain" => Some("text"),
        "application/octet-stream" => Some("data"),
        _ => None,
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

impl Runtime {
    /// A runtime for the emulator listening on `emulator`, when `bin` runs.
    pub fn new(bin: PathBuf, emulator: SocketAddr) -> std::io::Result<Runtime> {
        let out = std::process::Command::new(&bin).arg("--version").output()?;
        let version = String::from_utf8_lossy(&out.stdout);
        let max_date = version
            .split_whitespace()
            .nth(1)
            .filter(|d| d.len() == 10)
            .unwrap_or("2024-01-01")
            .to_string();
        let root = tempfile::Builder::new()
            .prefix("flaredock-workerd-")
            .tempdir()?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(100))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Runtime {
            bin,
            max_date,
            emulator,
            root,
            running: tokio::sync::Mutex::new(HashMap::new()),
            http,
        })
    }

    /// The client that forwards requests to the serving processes.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn binary(&self) -> &Path {
        &self.bin
    }

    /// The runtime's private working directory (probes in `probe-*`, removed after
    /// each; serving scripts under `scripts/`).
    pub fn work_dir(&self) -> &Path {
        self.root.path()
    }

    /// The date workerd runs a script at: the upload's, at most the binary's own.
    fn date(&self, date: Option<&str>) -> String {
        match date {
            Some(d) if d <= self.max_date.as_str() => d.to_string(),
            Some(_) => self.max_date.clone(),
            None => "2021-11-03".to_string(),
        }
    }

    /// Writes the modules of `spec` (plus `extra` generated ones first) into `dir` and
    /// returns the `modules = [...]` list.
    fn write_modules(
        dir: &Path,
        spec: &WorkerSpec,
        extra: &[(&str, String)],
    ) -> Result<String, LoadError> {
        let mdir = dir.join("m");
        std::fs::create_dir_all(&mdir).map_err(|e| LoadError::Runtime(e.to_string()))?;
        let mut items = Vec::new();
        let mut write = |i: usize, name: &str, kind: &str, content: &str| {
            let file = format!("m/{i}");
            std::fs::write(dir.join(&file), content)
                .map_err(|e| LoadError::Runtime(e.to_string()))?;
            items.push(format!(
                "(name = {}, {kind} = embed {})",
                text(name),
                text(&file)
            ));
            Ok::<(), LoadError>(())
        };
        let mut i = 0;
        for (name, content) in extra {
            write(i, name, "esModule", content)?;
            i += 1;
        }
        // The main module first when nothing generated is (workerd runs the first).
        let order = std::iter::once(spec.main.as_str()).chain(
            spec.modules
                .keys()
                .map(String::as_str)
                .filter(|n| *n != spec.main),
        );
        for name in order {
            let Some(m) = spec.modules.get(name) else {
                continue;
            };
            if m.content_type == "application/source-map" {
                continue;
            }
            let Some(kind) = module_kind(&m.content_type) else {
                return Err(LoadError::Refused(format!(
                    "module {name}: content type {} is not run by the emulator's local runtime",
                    m.content_type
                )));
            };
            write(i, name, kind, &m.content)?;
            i += 1;
        }
        Ok(format!("[ {} ]", items.join(", ")))
    }

    fn text_bindings(spec: &WorkerSpec) -> Vec<String> {
        let mut out = Vec::new();
        for b in &spec.bindings {
            let name = b.get("name").and_then(Value::as_str).unwrap_or("");
            match b.get("type").and_then(Value::as_str).unwrap_or("") {
                "plain_text" | "secret_text" => {
                    let t = b.get("text").and_then(Value::as_str).unwrap_or("");
                    out.push(format!("(name = {}, text = {})", text(name), text(t)));
                }
                "json" => {
                    let j = match b.get("json") {
                        Some(Value::String(s)) => s.clone(),
                        Some(v) => v.to_string(),
                        None => "null".into(),
                    };
                    out.push(format!("(name = {}, json = {})", text(name), text(&j)));
                }
                _ => {}
            }
        }
        out
    }

    fn flags(&self, spec: &WorkerSpec) -> String {
        let flags: Vec<String> = spec.compatibility_flags.iter().map(|f| text(f)).collect();
        format!("[ {} ]", flags.join(", "))
    }

    /// Loads an upload in workerd; its exports, or why it did not load. Nothing is
    /// left on disk.
    pub async fn probe(&self, spec: &WorkerSpec) -> Result<Exports, LoadError> {
        let dir = tempfile::Builder::new()
            .prefix("probe-")
            .tempdir_in(self.root.path())
            .map_err(|e| LoadError::Runtime(e.to_string()))?;
        let modules = Self::write_modules(
            dir.path(),
            spec,
            &[(PROBE_MODULE, probe_source(&spec.main))],
        )?;
        let config = format!(
            "using Workerd = import \"/workerd/workerd.capnp\";\n\
             const config :Workerd.Config = ( services = [ (name = \"upload\", worker = .w) ] );\n\
             const w :Workerd.Worker = ( modules = {modules}, compatibilityDate = {date}, compatibilityFlags = {flags}, bindings = [ {bindings} ] );\n",
            date = text(&self.date(spec.compatibility_date.as_deref())),
            flags = self.flags(spec),
            bindings = Self::text_bindings(spec).join(", "),
        );
        let path = dir.path().join("config.capnp");
        std::fs::write(&path, config).map_err(|e| LoadError::Runtime(e.to_string()))?;
        let child = Command::new(&self.bin)
            .arg("test")
            .arg(&path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LoadError::Runtime(format!("{}: {e}", self.bin.display())))?;
        let out = tokio::time::timeout(LOAD_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                LoadError::Refused(format!(
                    "the Worker did not load within {} s",
                    LOAD_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| LoadError::Runtime(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let exports = stdout
            .lines()
            .find_map(|l| l.strip_prefix(EXPORTS_MARK))
            .and_then(|j| serde_json::from_str::<Exports>(j).ok());
        match exports {
            Some(e) if out.status.success() => Ok(e),
            _ => Err(LoadError::Refused(runtime_message(&stderr))),
        }
    }

    /// The loopback port of the process serving `name` at version `etag`, started now
    /// when it is not running (or runs an older version).
    pub async fn serve(&self, name: &str, etag: &str, spec: &WorkerSpec) -> Result<u16, LoadError> {
        let mut running = self.running.lock().await;
        if let Some(i) = running.get_mut(name) {
            let alive = matches!(i.child.try_wait(), Ok(None));
            if alive && i.etag == etag {
                i.used = Instant::now();
                return Ok(i.port);
            }
        }
        running.remove(name);
        while running.len() >= MAX_RUNNING {
            let Some(oldest) = running
                .iter()
                .min_by_key(|(_, i)| i.used)
                .map(|(n, _)| n.clone())
            else {
                break;
            };
            running.remove(&oldest);
        }
        let instance = self.start(name, etag, spec).await?;
        let port = instance.port;
        running.insert(name.to_string(), instance);
        Ok(port)
    }

    /// Stops the process serving `name` (a new upload, a delete).
    pub async fn stop(&self, name: &str) {
        self.running.lock().await.remove(name);
    }

    /// Forgets the Durable Object storage of `name` (the script is deleted).
    pub async fn forget(&self, name: &str) {
        self.stop(name).await;
        let _ = std::fs::remove_dir_all(self.script_dir(name));
    }

    /// How many processes serve now.
    pub async fn running(&self) -> usize {
        self.running.lock().await.len()
    }

    fn script_dir(&self, name: &str) -> PathBuf {
        use sha2::Digest;
        let key = hex::encode(&sha2::Sha256::digest(name.as_bytes())[..8]);
        self.root.path().join("scripts").join(key)
    }

    async fn start(
        &self,
        name: &str,
        etag: &str,
        spec: &WorkerSpec,
    ) -> Result<Instance, LoadError> {
        let dir = self.script_dir(name);
        let _ = std::fs::remove_dir_all(dir.join("m"));
        std::fs::create_dir_all(dir.join("do")).map_err(|e| LoadError::Runtime(e.to_string()))?;
        let wrapped =
            !spec.containers.is_empty() && spec.containers.iter().all(|c| is_identifier(c));
        let extra = if wrapped {
            vec![(WRAPPER_MODULE, wrapper_source(spec))]
        } else {
            vec![]
        };
        let modules = Self::write_modules(&dir, spec, &extra)?;
        let mut bindings = Self::text_bindings(spec);
        let mut services = vec![
            "(name = \"main\", worker = .w)".to_string(),
            format!(
                "(name = \"do-disk\", disk = (path = {}, writable = true))",
                text(&dir.join("do").to_string_lossy())
            ),
        ];
        for b in &spec.bindings {
            let bname = b.get("name").and_then(Value::as_str).unwrap_or("");
            match b.get("type").and_then(Value::as_str).unwrap_or("") {
                "durable_object_namespace" => {
                    let class = b.get("class_name").and_then(Value::as_str).unwrap_or("");
                    if spec.namespaces.iter().any(|(c, _, _)| c == class) {
                        bindings.push(format!(
                            "(name = {}, durableObjectNamespace = {})",
                            text(bname),
                            text(class)
                        ));
                    }
                }
                "service" => {
                    let target = b.get("service").and_then(Value::as_str).unwrap_or("");
                    let service = format!("svc-{}", services.len());
                    services.push(format!(
                        "(name = {}, external = (address = {}, http = (injectRequestHeaders = [ (name = {}, value = {}) ])))",
                        text(&service),
                        text(&self.emulator.to_string()),
                        text(SERVICE_HEADER),
                        text(target)
                    ));
                    bindings.push(format!(
                        "(name = {}, service = {})",
                        text(bname),
                        text(&service)
                    ));
                }
                _ => {}
            }
        }
        let namespaces: Vec<String> = spec
            .namespaces
            .iter()
            .map(|(class, id, sqlite)| {
                format!(
                    "(className = {}, uniqueKey = {}, enableSql = {sqlite})",
                    text(class),
                    text(id)
                )
            })
            .collect();
        let storage = if namespaces.is_empty() {
            String::new()
        } else {
            ", durableObjectStorage = (localDisk = \"do-disk\")".to_string()
        };
        let config = format!(
            "using Workerd = import \"/workerd/workerd.capnp\";\n\
             const config :Workerd.Config = ( services = [ {services} ],\n\
               sockets = [ (name = \"http\", address = \"127.0.0.1:0\", http = (), service = \"main\") ] );\n\
             const w :Workerd.Worker = ( modules = {modules}, compatibilityDate = {date}, compatibilityFlags = {flags},\n\
               bindings = [ {bindings} ], durableObjectNamespaces = [ {namespaces} ]{storage} );\n",
            services = services.join(", "),
            date = text(&self.date(spec.compatibility_date.as_deref())),
            flags = self.flags(spec),
            bindings = bindings.join(", "),
            namespaces = namespaces.join(", "),
        );
        let path = dir.join("config.capnp");
        std::fs::write(&path, config).map_err(|e| LoadError::Runtime(e.to_string()))?;
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .arg(&path)
            .arg("--control-fd=1")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LoadError::Runtime(format!("{}: {e}", self.bin.display())))?;
        let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(LoadError::Runtime("no output pipes".into()));
        };
        let mut lines = BufReader::new(stdout).lines();
        let listening = tokio::time::timeout(LOAD_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["event"] == "listen"
                    && v["socket"] == "http"
                    && let Some(port) = v["port"].as_u64()
                {
                    return Some(port as u16);
                }
            }
            None
        })
        .await;
        let port = match listening {
            Ok(Some(port)) => port,
            other => {
                let _ = child.start_kill();
                let mut err = Vec::new();
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    (&mut stderr).take(64 * 1024).read_to_end(&mut err),
                )
                .await;
                let why = match other {
                    Err(_) => format!(
                        "the Worker did not start within {} s",
                        LOAD_TIMEOUT.as_secs()
                    ),
                    _ => runtime_message(&String::from_utf8_lossy(&err)),
                };
                return Err(LoadError::Refused(why));
            }
        };
        // The Worker's console output: drained (kept out of the emulator's logs at
        // debug level only, so a logged secret stays local to RUST_LOG=debug).
        let script = name.to_string();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(script = %script, "worker: {line}");
            }
        });
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = stderr.read_to_end(&mut sink).await;
        });
        Ok(Instance {
            child,
            port,
            etag: etag.to_string(),
            used: Instant::now(),
        })
    }
}

/// workerd's message, without its source locations, stack addresses and test lines.
fn runtime_message(stderr: &str) -> String {
    let lines: Vec<String> = stderr
        .lines()
        .filter(|l| !l.starts_with("stack:") && !l.contains("[ TEST ]") && !l.contains("[ FAIL ]"))
        .map(|l| {
            let l = match l.find(": error: ").or_else(|| l.find(": debug: ")) {
                Some(i) if l.starts_with("workerd/") || l.starts_with("kj/") => &l[i + 9..],
                _ => l,
            };
            l.strip_prefix("service upload: ")
                .or_else(|| l.strip_prefix("service main: "))
                .unwrap_or(l)
                .trim_end()
                .to_string()
        })
        .filter(|l| !l.is_empty())
        .collect();
    let mut text = lines.join("\n");
    if text.is_empty() {
        text = "the Worker failed to start".into();
    }
    if text.len() > 4096 {
        let mut end = 4096;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// **Static fallback, only without workerd**: the classes a module seems to export
/// (`export class Name`, `export default class Name`, `export { A, B as C }`), read
/// from its text with comments and string literals removed. It cannot tell a class
/// from a constant; the runtime can, and is used whenever it is installed.
pub fn static_exports(source: &str) -> Exports {
    let code = strip_comments_and_strings(source);
    let mut out = Exports::new();
    let ident = |s: &str| -> Option<String> {
        let id: String = s
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '$')
            .collect();
        (!id.is_empty()).then_some(id)
    };
    let mut rest = code.as_str();
    while let Some(i) = rest.find("export") {
        let after = rest[i + "export".len()..].trim_start();
        if let Some(d) = after.strip_prefix("default ") {
            out.insert("default".into(), "object".into());
            let _ = d;
        } else if let Some(c) = after.strip_prefix("class ")
            && let Some(id) = ident(c.trim_start())
        {
            out.insert(id, "class".into());
        } else if let Some(list) = after.strip_prefix('{')
            && let Some(end) = list.find('}')
        {
            for item in list[..end].split(',') {
                let name = item.rsplit(" as ").next().unwrap_or(item).trim();
                if let Some(id) = ident(name) {
                    out.insert(id, "class".into());
                }
            }
        }
        rest = &rest[i + "export".len()..];
    }
    out
}

fn strip_comments_and_strings(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            '"' | '\'' | '`' => {
                let mut escaped = false;
                for x in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if x == '\\' {
                        escaped = true;
                    } else if x == c {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capnp_text_escapes() {
        assert_eq!(text("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\x01\"");
    }

    #[test]
    fn static_fallback_ignores_comments_and_strings() {
        let src = "// export class InComment {}\nconst s = 'export class InString {}';\nexport class Real {}\nexport default { fetch() {} }";
        let found: Vec<String> = static_exports(src).into_keys().collect();
        assert_eq!(found, ["Real", "default"]);
    }

    #[test]
    fn runtime_message_keeps_the_error() {
        let err =
            "service upload: Uncaught SyntaxError: Unexpected end of input\n  at index.js:2\n";
        assert_eq!(
            runtime_message(err),
            "Uncaught SyntaxError: Unexpected end of input\n  at index.js:2"
        );
    }
}

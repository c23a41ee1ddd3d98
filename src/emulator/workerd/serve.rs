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
//! drives a local Docker daemon (and an egress sidecar image from Docker Hub); the
//! emulator does not use it. The served main module is a generated wrapper that
//! re-exports the upload's main module and, for each class in `containers`, gives
//! `ctx.container` the same API backed by the emulator's container runtime
//! ([`crate::emulator::containers`], which says what runs and how): its calls go to
//! the emulator's own listener through a service binding `__FLAREDOCK_CONTAINERS__`
//! whose requests carry [`crate::emulator::containers::CONTAINER_HEADER`] (the
//! script). The container classes and the default export (its handlers, or its
//! `WorkerEntrypoint` class) get `env` without that binding; the upload's other
//! classes see it. Before each `fetch` of a container class the wrapper asks whether
//! its instance still runs (an instance stopped by a rollout or a delete turns
//! `running` false).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{
    LOAD_TIMEOUT, LoadError, MAX_RUNNING, Runtime, SERVICE_HEADER, WorkerSpec, is_identifier, js,
    runtime_message, specifier, text,
};

/// The name of the generated wrapper module (not an upload's module name).
const WRAPPER_MODULE: &str = "__flaredock_main__.js";

/// One serving process.
pub(super) struct Instance {
    child: Child,
    port: u16,
    etag: String,
    used: Instant,
}

/// The binding through which the wrapper calls the emulator's container runtime.
const CONTAINERS_BINDING: &str = "__FLAREDOCK_CONTAINERS__";

/// The served main module when the upload has container-enabled classes: the upload's
/// exports, and each container-enabled class with a `ctx.container` that calls the
/// emulator ([`crate::emulator::containers`]).
fn wrapper_source(spec: &WorkerSpec) -> String {
    use crate::emulator::containers::{
        CLASS_HEADER, ERROR_HEADER, ID_HEADER, OP_HEADER, PORT_HEADER,
    };
    let main = specifier(&spec.main);
    let mut out = format!("import * as user from {main};\nexport * from {main};\n");
    out.push_str(&format!(
        r#"const BINDING = {binding};
const H = {{ op: {op}, cls: {cls}, id: {id}, port: {port}, err: {err} }};
const STATE = Symbol("flaredock.container");
function container(ctx, env, cls) {{
  const svc = env[BINDING];
  const id = ctx.id.toString();
  const s = {{ running: false, starting: null }};
  const call = (op, init = {{}}) => {{
    const headers = new Headers(init.headers || {{}});
    headers.set(H.op, op); headers.set(H.cls, cls); headers.set(H.id, id);
    return svc.fetch("http://container" + (init.path || "/"), {{ method: init.method || "POST", headers, body: init.body, redirect: "manual" }});
  }};
  const json = async (op, body) => {{
    const r = await call(op, {{ body: body === undefined ? undefined : JSON.stringify(body) }});
    const text = await r.text();
    if (!r.ok) throw new Error(text);
    return text ? JSON.parse(text) : {{}};
  }};
  return {{
    get running() {{ return s.running; }},
    start(options = {{}}) {{
      s.running = true;
      s.starting = json("start", {{ envVars: options.envVars, entrypoint: options.entrypoint, enableInternet: options.enableInternet }})
        .catch((e) => {{ s.running = false; throw e; }});
      s.starting.catch(() => {{}});
    }},
    async monitor() {{
      if (s.starting) await s.starting;
      try {{
        const r = await json("monitor");
        if (r.exitCode !== 0) throw new Error(`the container exited with status ${{r.exitCode}}`);
      }} finally {{ s.running = false; }}
    }},
    async destroy() {{ s.running = false; s.starting = null; await json("destroy"); }},
    signal(signo) {{ json("signal", {{ signo }}).catch(() => {{}}); }},
    getTcpPort(port) {{
      return {{
        async fetch(input, init) {{
          if (s.starting) await s.starting;
          const req = new Request(input, init);
          const u = new URL(req.url);
          const headers = new Headers(req.headers);
          headers.set(H.port, String(port));
          const r = await call("fetch", {{ method: req.method, headers, body: req.body, path: u.pathname + u.search }});
          if (r.headers.get(H.err)) throw new Error(await r.text());
          return r;
        }},
        connect() {{ throw new Error("getTcpPort().connect() is not emulated by flaredock"); }},
      }};
    }},
    async [STATE]() {{ try {{ s.running = !!(await json("status")).running; }} catch (e) {{}} }},
  }};
}}
const withContainer = (ctx, env, cls) => {{
  if (ctx && ctx.container === undefined && env && env[BINDING]) {{
    const c = container(ctx, env, cls);
    Object.defineProperty(ctx, "container", {{ value: c, configurable: true }});
    return c;
  }}
  return undefined;
}};
const withoutBinding = (env) => {{ if (!env || !(BINDING in env)) return env; const {{ [BINDING]: _, ...rest }} = env; return rest; }};
const synced = new WeakMap();
const syncFetch = (Cls, Base) => {{
  const f = Base.prototype && Base.prototype.fetch;
  if (typeof f !== "function") return;
  Cls.prototype.fetch = async function (...args) {{
    const c = synced.get(this);
    if (c) await c[STATE]();
    return f.apply(this, args);
  }};
}};
"#,
        binding = js(CONTAINERS_BINDING),
        op = js(OP_HEADER),
        cls = js(CLASS_HEADER),
        id = js(ID_HEADER),
        port = js(PORT_HEADER),
        err = js(ERROR_HEADER),
    ));
    if spec.has_default {
        // The default export's handlers (fetch, scheduled, queue, …: `(event, env, ctx)`)
        // or its WorkerEntrypoint class get `env` without the wrapper's binding.
        out.push_str(
            "let main = user.default;\n\
             if (typeof main === \"function\") { const Main = main; main = class extends Main { constructor(ctx, env) { super(ctx, withoutBinding(env)); } }; }\n\
             else if (main && typeof main === \"object\") { const o = main; main = {}; for (const k of Object.keys(o)) { const h = o[k]; main[k] = typeof h === \"function\" ? function (event, env, ctx) { return h.call(o, event, withoutBinding(env), ctx); } : h; } }\n\
             export default main;\n",
        );
    }
    for class in &spec.containers {
        let c = js(class);
        // An export name is a JavaScript identifier (the runtime listed it).
        out.push_str(&format!(
            "const Base_{class} = user[{c}];\n\
             export class {class} extends Base_{class} {{ constructor(ctx, env) {{ const c = withContainer(ctx, env, {c}); super(ctx, withoutBinding(env)); if (c) synced.set(this, c); }} }}\n\
             syncFetch({class}, Base_{class});\n"
        ));
    }
    out
}

impl Runtime {
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
        if wrapped {
            // The wrapper's way to the emulator's container runtime, naming the script.
            services.push(format!(
                "(name = \"containers\", external = (address = {}, http = (injectRequestHeaders = [ (name = {}, value = {}) ])))",
                text(&self.emulator.to_string()),
                text(crate::emulator::containers::CONTAINER_HEADER),
                text(name)
            ));
            bindings.push(format!(
                "(name = {}, service = \"containers\")",
                text(CONTAINERS_BINDING)
            ));
        }
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

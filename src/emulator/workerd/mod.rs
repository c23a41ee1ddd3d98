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
//! Two parts, named after what they run: `probe.rs` loads an upload with `workerd test`
//! and reports its exports (or why it did not load); `serve.rs` runs one `workerd serve`
//! process per script for the requests that reach it. What both share (the config's
//! modules, bindings, dates and flags, workerd's messages) is here.
//!
//! **Not reproduced by the local runtime**: KV, R2, D1, Queues, Hyperdrive, AI,
//! Analytics Engine and the other binding kinds (the binding is absent from `env`);
//! Durable Object bindings to another script's class; `wasm`/binary modules and Python
//! Workers (refused: the emulator keeps text modules only); a compatibility date newer
//! than the workerd binary's own is run at the binary's date; CPU and memory limits,
//! `request.cf`, the `https` scheme of `request.url` (workerd sees `http`), Cron
//! Triggers (schedules are stored, never run), Smart Placement, observability and tail
//! Workers. Containers run (`serve.rs` gives container-enabled classes their
//! `ctx.container`; `super::containers` runs the instances).

mod probe;
mod serve;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::scripts::StoredModule;

pub use probe::static_exports;

/// The environment variable naming the workerd binary.
pub const WORKERD_ENV: &str = "FLAREDOCK_WORKERD";
/// The header a service binding's request carries into the emulator: the script it is for.
pub const SERVICE_HEADER: &str = "x-flaredock-service";
/// What `ctx.container.start()` fails with when the emulator has no buildah.
pub use super::containers::NO_CONTAINER_RUNTIME;
/// How many workerd processes serve at once.
pub const MAX_RUNNING: usize = 16;
/// How long workerd may take to load an upload or to start listening.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

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

/// workerd, its working directory and its serving processes.
pub struct Runtime {
    bin: PathBuf,
    /// The newest compatibility date the binary supports (its version).
    max_date: String,
    /// The emulator's own address (service bindings come back through it).
    emulator: SocketAddr,
    root: tempfile::TempDir,
    running: tokio::sync::Mutex<HashMap<String, serve::Instance>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capnp_text_escapes() {
        assert_eq!(text("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\x01\"");
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

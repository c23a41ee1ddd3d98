//! `flaredock import`: a wrangler project as flaredock manifests. The configuration
//! (`config`: jsonc, json or toml, wrangler's environment rules) is mapped
//! (`mapping`) onto a CloudflareWorker with `adopt: true` and one CloudflareContainer
//! per `containers[]` entry; the modules are the `main` file alone, or the bundle
//! `wrangler deploy --dry-run --outdir DIR` wrote (`--bundle DIR`).
//!
//! The modules go inline while they total at most [`INLINE_LIMIT`] bytes (128 KiB: a
//! manifest applied with `kubectl apply` keeps a copy in an annotation, whose total is
//! capped at 256 KiB), else into a ConfigMap of their own (`<worker>-modules`, capped by
//! Kubernetes at 1 MiB, [`CONFIG_MAP_LIMIT`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub mod config;
pub mod mapping;

/// Modules up to this many bytes in all are written inline.
pub const INLINE_LIMIT: usize = 128 * 1024;
/// A ConfigMap holds at most this much (Kubernetes' object size cap).
pub const CONFIG_MAP_LIMIT: usize = 1024 * 1024 - 4096;

/// Why nothing could be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("no wrangler.jsonc, wrangler.json or wrangler.toml in {0}")]
    NoConfig(String),
    #[error("{file}: {message}")]
    Read { file: String, message: String },
    #[error("{file}: cannot parse: {message}")]
    Parse { file: String, message: String },
    #[error("environment {0} is not in the configuration (env.{0})")]
    NoSuchEnv(String),
    #[error("the configuration has no `{0}`")]
    Missing(&'static str),
    #[error(
        "{file} imports {import:?}, which is not given: bundle with `wrangler deploy --dry-run --outdir DIR` and pass --bundle DIR"
    )]
    Unresolved { file: String, import: String },
    #[error(
        "{0} needs bundling (not JavaScript modules): bundle with `wrangler deploy --dry-run --outdir DIR` and pass --bundle DIR"
    )]
    NeedsBundle(String),
    #[error("--bundle {0}: no JavaScript module found")]
    EmptyBundle(String),
    #[error(
        "the modules total {0} bytes, more than a ConfigMap holds: publish them as an OCI artifact (spec.source.image)"
    )]
    TooLarge(usize),
    #[error("the imported manifests do not pass flaredock's validation:\n{0}")]
    Invalid(String),
}

/// What `flaredock import` is asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The configuration file; default: the first of [`config::CONFIG_FILES`] in `dir`.
    pub file: Option<PathBuf>,
    /// Where to look for the configuration when `file` is not given.
    pub dir: PathBuf,
    pub env: Option<String>,
    pub namespace: String,
    pub bundle: Option<PathBuf>,
}

/// The manifests and what was found on the way.
#[derive(Debug, Clone)]
pub struct Imported {
    /// Multi-document YAML.
    pub yaml: String,
    pub findings: mapping::Findings,
}

/// The Worker's modules: the main module's name and every module's bytes.
struct Modules {
    main: String,
    files: BTreeMap<String, Vec<u8>>,
}

fn read_file(path: &Path) -> Result<Vec<u8>, ImportError> {
    std::fs::read(path).map_err(|e| ImportError::Read {
        file: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The module specifiers a JavaScript module imports (`import … from "x"`,
/// `import "x"`, `export … from "x"`, `import("x")`), found by scanning the text.
pub fn imports_of(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let quoted = |from: usize| -> Option<String> {
        let rest = text[from..].trim_start();
        let q = rest.chars().next()?;
        if q != '"' && q != '\'' && q != '`' {
            return None;
        }
        let end = rest[1..].find(q)?;
        Some(rest[1..1 + end].to_string())
    };
    for (i, _) in text.match_indices("from") {
        let before = i.checked_sub(1).map(|j| b[j]);
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.') {
            continue;
        }
        if let Some(s) = quoted(i + 4) {
            out.push(s);
        }
    }
    for (i, _) in text.match_indices("import") {
        let before = i.checked_sub(1).map(|j| b[j]);
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.') {
            continue;
        }
        let rest = text[i + 6..].trim_start();
        let from = text.len() - rest.len();
        if let Some(r) = rest.strip_prefix('(') {
            if let Some(s) = quoted(text.len() - r.len()) {
                out.push(s);
            }
        } else if let Some(s) = quoted(from) {
            out.push(s);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A specifier the Workers runtime resolves itself.
fn runtime_module(spec: &str) -> bool {
    spec.starts_with("cloudflare:") || spec.starts_with("node:")
}

/// The `main` file as the one module; an import it cannot resolve is refused.
fn main_module(dir: &Path, main: &str) -> Result<Modules, ImportError> {
    let path = dir.join(main);
    let name = Path::new(main)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| main.to_string());
    if !(name.ends_with(".js") || name.ends_with(".mjs")) {
        return Err(ImportError::NeedsBundle(main.to_string()));
    }
    let bytes = read_file(&path)?;
    let text = String::from_utf8_lossy(&bytes);
    if let Some(import) = imports_of(&text).into_iter().find(|s| !runtime_module(s)) {
        let import = if import.starts_with('.') {
            path.parent()
                .map(|p| p.join(&import).display().to_string())
                .unwrap_or(import)
        } else {
            import
        };
        return Err(ImportError::Unresolved {
            file: path.display().to_string(),
            import,
        });
    }
    Ok(Modules {
        main: name,
        files: BTreeMap::from([(
            Path::new(main)
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            bytes,
        )]),
    })
}

/// The modules of a `wrangler deploy --dry-run --outdir DIR` bundle: every file but
/// source maps and the README wrangler writes; the main module is `<main stem>.js`.
fn bundle_modules(dir: &Path, main: Option<&str>) -> Result<Modules, ImportError> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| ImportError::Read {
            file: d.display().to_string(),
            message: e.to_string(),
        })?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(dir)
                .map(|r| r.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            if rel.ends_with(".map") || rel == "README.md" {
                continue;
            }
            files.insert(rel, read_file(&p)?);
        }
    }
    let stem = main
        .and_then(|m| Path::new(m).file_stem())
        .map(|s| format!("{}.js", s.to_string_lossy()));
    let main = stem
        .filter(|s| files.contains_key(s))
        .or_else(|| {
            let js: Vec<&String> = files.keys().filter(|k| k.ends_with(".js")).collect();
            (js.len() == 1).then(|| js[0].clone())
        })
        .ok_or_else(|| ImportError::EmptyBundle(dir.display().to_string()))?;
    Ok(Modules { main, files })
}

/// Imports a wrangler project.
pub fn import(options: &Options) -> Result<Imported, ImportError> {
    let path = config::locate(options.file.as_deref(), &options.dir)?;
    let raw = config::read(&path)?;
    let top_name = config::container_base_name(&raw, options.env.as_deref());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let resolved = config::resolve(raw, options.env.as_deref(), dir.clone())?;
    let main = resolved
        .config
        .get("main")
        .and_then(Value::as_str)
        .map(str::to_string);
    let modules = match &options.bundle {
        Some(b) => bundle_modules(b, main.as_deref())?,
        None => main_module(&dir, main.as_deref().ok_or(ImportError::Missing("main"))?)?,
    };
    let script = resolved
        .config
        .get("name")
        .and_then(Value::as_str)
        .ok_or(ImportError::Missing("name"))?;
    let worker_name = mapping::object_name(script);
    let total: usize = modules.files.values().map(Vec::len).sum();
    let (source, config_map) = if total <= INLINE_LIMIT
        && modules
            .files
            .values()
            .all(|b| std::str::from_utf8(b).is_ok())
    {
        let inline: serde_json::Map<String, Value> = modules
            .files
            .iter()
            .map(|(k, v)| (k.clone(), json!(String::from_utf8_lossy(v))))
            .collect();
        (
            json!({"inline": {"mainModule": modules.main, "modules": inline}}),
            None,
        )
    } else if total <= CONFIG_MAP_LIMIT {
        use base64::Engine;
        let name = format!("{worker_name}-modules");
        let mut data = serde_json::Map::new();
        let mut binary = serde_json::Map::new();
        for (k, v) in &modules.files {
            match std::str::from_utf8(v) {
                Ok(t) => data.insert(k.clone(), json!(t)),
                Err(_) => binary.insert(
                    k.clone(),
                    json!(base64::engine::general_purpose::STANDARD.encode(v)),
                ),
            };
        }
        let mut cm = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": options.namespace},
        });
        if !data.is_empty() {
            cm["data"] = Value::Object(data);
        }
        if !binary.is_empty() {
            cm["binaryData"] = Value::Object(binary);
        }
        (
            json!({"configMapRef": {"name": name, "mainModule": modules.main}}),
            Some(cm),
        )
    } else {
        return Err(ImportError::TooLarge(total));
    };
    let mut findings = mapping::Findings::default();
    let mapped = mapping::map(
        mapping::Inputs {
            resolved,
            top_name,
            namespace: &options.namespace,
            source,
            bundled: options.bundle.is_some(),
        },
        &mut findings,
    )?;
    let yaml = render(&path, options, &mapped, config_map.as_ref(), total);
    check(&yaml, &mapped, &options.namespace)?;
    Ok(Imported { yaml, findings })
}

/// The manifests through the loader `plan` and `apply` use (with the Secret they name
/// standing in, as it will exist): any problem is a bug of the mapping, refused.
fn check(yaml: &str, mapped: &mapping::Mapped, namespace: &str) -> Result<(), ImportError> {
    let dir = tempfile::tempdir().map_err(|e| ImportError::Invalid(e.to_string()))?;
    let mut text = yaml.to_string();
    if let Some((secret, keys)) = &mapped.secret {
        let data: serde_json::Map<String, Value> =
            keys.iter().map(|k| (k.clone(), json!("x"))).collect();
        let doc = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": secret, "namespace": namespace}, "stringData": data});
        text.push_str("---\n");
        text.push_str(&serde_yaml_ng::to_string(&doc).unwrap_or_default());
    }
    let file = dir.path().join("imported.yaml");
    std::fs::write(&file, text).map_err(|e| ImportError::Invalid(e.to_string()))?;
    let loaded = crate::manifest::load(&[file]);
    if loaded.errors.is_empty() {
        Ok(())
    } else {
        Err(ImportError::Invalid(
            loaded
                .errors
                .iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n"),
        ))
    }
}

/// The documents as YAML, with comments on what to do before applying.
fn render(
    path: &Path,
    options: &Options,
    mapped: &mapping::Mapped,
    config_map: Option<&Value>,
    total: usize,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported by `flaredock import` from {}{}.",
        path.display(),
        options
            .env
            .as_deref()
            .map(|e| format!(" (environment {e})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "# adopt: true takes over the script and applications wrangler deployed: review\n# `flaredock plan`, then approve the adoption it names."
    );
    if let Some((secret, keys)) = &mapped.secret {
        let _ = writeln!(
            out,
            "# spec.secrets name Secret {secret} (namespace {}), which you create before applying, e.g.\n#   kubectl create secret generic {secret} -n {}{}",
            options.namespace,
            options.namespace,
            keys.iter()
                .map(|k| format!(" --from-literal={k}=..."))
                .collect::<String>()
        );
    }
    let mut docs: Vec<&Value> = vec![&mapped.worker];
    if let Some(cm) = config_map {
        let _ = writeln!(
            out,
            "# The modules ({total} bytes, over the inline limit of {INLINE_LIMIT}) are in ConfigMap {}.",
            cm.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
        );
    }
    docs.extend(mapped.containers.iter());
    if let Some(cm) = config_map {
        docs.push(cm);
    }
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(d).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_imports() {
        let text = r#"import { a } from "./a.js";
import './side.js';
export { b } from '../b.mjs';
const c = await import("./c.js");
import { DurableObject } from "cloudflare:workers";
const from = 1; const x = "from here";"#;
        assert_eq!(
            imports_of(text),
            vec![
                "../b.mjs",
                "./a.js",
                "./c.js",
                "./side.js",
                "cloudflare:workers"
            ]
        );
    }
}

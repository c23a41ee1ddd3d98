//! A wrangler configuration file (`wrangler.jsonc`, `wrangler.json`, `wrangler.toml`)
//! read into JSON, and wrangler's environment rules applied (`--env NAME`).
//!
//! The rules are wrangler 4.86's own (`normalizeAndValidateEnvironment` in its
//! config validation): a key of `env.NAME` replaces the top-level key; the
//! *non-inheritable* keys ([`NON_INHERITABLE`]: vars and every binding list, containers,
//! tail consumers, …) come from `env.NAME` only, a top-level value being ignored; the
//! name becomes `<name>-<env>` unless the environment sets its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::ImportError;

/// The files looked for in a directory, in this order (as wrangler does).
pub const CONFIG_FILES: [&str; 3] = ["wrangler.jsonc", "wrangler.json", "wrangler.toml"];

/// Keys an environment does not inherit from the top level (wrangler 4.86,
/// `notInheritable(...)` in `normalizeAndValidateEnvironment`).
pub const NON_INHERITABLE: &[&str] = &[
    "vars",
    "secrets",
    "define",
    "durable_objects",
    "workflows",
    "kv_namespaces",
    "cloudchamber",
    "containers",
    "send_email",
    "queues",
    "r2_buckets",
    "d1_databases",
    "vectorize",
    "ai_search_namespaces",
    "ai_search",
    "hyperdrive",
    "services",
    "analytics_engine_datasets",
    "dispatch_namespaces",
    "mtls_certificates",
    "tail_consumers",
    "streaming_tail_consumers",
    "unsafe",
    "browser",
    "ai",
    "images",
    "stream",
    "media",
    "pipelines",
    "secrets_store_secrets",
    "artifacts",
    "unsafe_hello_world",
    "flagship",
    "worker_loaders",
    "ratelimits",
    "vpc_services",
    "vpc_networks",
    "version_metadata",
];

/// A configuration with the environment applied: each top-level key and the path it
/// came from (`assets` or `env.staging.assets`), for messages.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Map<String, Value>,
    pub origin: BTreeMap<String, String>,
    /// The directory of the configuration file (`main` and Dockerfiles are relative
    /// to it).
    pub dir: PathBuf,
    /// The environment applied.
    pub env: Option<String>,
    /// What the rules did that a reader should know (a top-level key not inherited).
    pub notes: Vec<String>,
}

impl Resolved {
    /// The path a top-level key is reported by.
    pub fn path_of(&self, key: &str) -> String {
        self.origin
            .get(key)
            .cloned()
            .unwrap_or_else(|| key.to_string())
    }
}

/// The configuration file to read: `file` as given, or the first of
/// [`CONFIG_FILES`] in `dir`.
pub fn locate(file: Option<&Path>, dir: &Path) -> Result<PathBuf, ImportError> {
    if let Some(f) = file {
        return Ok(f.to_path_buf());
    }
    CONFIG_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| ImportError::NoConfig(dir.display().to_string()))
}

/// Reads and parses a configuration file by its extension (`.toml`, else JSON with
/// comments).
pub fn read(path: &Path) -> Result<Map<String, Value>, ImportError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ImportError::Read {
        file: file.clone(),
        message: e.to_string(),
    })?;
    parse(
        &text,
        path.extension().and_then(|e| e.to_str()) == Some("toml"),
    )
    .map_err(|message| ImportError::Parse { file, message })
}

/// Parses the text of a configuration (TOML, or JSON with comments and trailing commas).
pub fn parse(text: &str, is_toml: bool) -> Result<Map<String, Value>, String> {
    let value: Value = if is_toml {
        toml::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_json::from_str(&strip_jsonc(text)).map_err(|e| e.to_string())?
    };
    match value {
        Value::Object(m) => Ok(m),
        _ => Err("the configuration is not an object".into()),
    }
}

/// JSONC to JSON: `//` and `/* */` comments and trailing commas removed outside
/// strings (the comments become spaces, so positions in errors still hold by line).
pub fn strip_jsonc(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let (mut i, mut in_str) = (0, false);
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 1;
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
            out.push(c);
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                i += 1;
            }
            i += 2;
            continue;
        } else if c == b',' && matches!(next_significant(b, i + 1), Some(b'}' | b']')) {
            // A trailing comma (followed, past blanks and comments, by `}` or `]`).
        } else {
            out.push(c);
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The next byte at or after `i` that is neither blank nor in a comment.
fn next_significant(b: &[u8], mut i: usize) -> Option<u8> {
    loop {
        match (b.get(i)?, b.get(i + 1)) {
            (c, _) if c.is_ascii_whitespace() => i += 1,
            (b'/', Some(b'/')) => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            (c, _) => return Some(*c),
        }
    }
}

/// Applies wrangler's environment rules for `env` (none: the top level as it is).
pub fn resolve(
    raw: Map<String, Value>,
    env: Option<&str>,
    dir: PathBuf,
) -> Result<Resolved, ImportError> {
    let mut top = raw;
    let envs = top.remove("env");
    let mut notes = Vec::new();
    let mut origin = BTreeMap::new();
    let Some(name) = env else {
        if let Some(Value::Object(envs)) = &envs
            && !envs.is_empty()
        {
            let names: Vec<&str> = envs.keys().map(String::as_str).collect();
            notes.push(format!(
                "env: not applied without --env (environments: {})",
                names.join(", ")
            ));
        }
        for k in top.keys() {
            origin.insert(k.clone(), k.clone());
        }
        return Ok(Resolved {
            config: top,
            origin,
            dir,
            env: None,
            notes,
        });
    };
    let Some(Value::Object(mut own)) =
        envs.as_ref()
            .and_then(|e| e.get(name))
            .cloned()
            .map(|v| match v {
                Value::Object(_) => v,
                _ => Value::Object(Map::new()),
            })
    else {
        return Err(ImportError::NoSuchEnv(name.to_string()));
    };
    let mut config = Map::new();
    // The name: the environment's own, else `<name>-<env>`.
    let top_name = top.remove("name");
    match (own.remove("name"), top_name) {
        (Some(n), _) => {
            config.insert("name".into(), n);
            origin.insert("name".into(), format!("env.{name}.name"));
        }
        (None, Some(Value::String(n))) => {
            config.insert("name".into(), Value::String(format!("{n}-{name}")));
            origin.insert("name".into(), "name".into());
        }
        (None, other) => {
            if let Some(o) = other {
                config.insert("name".into(), o);
            }
            origin.insert("name".into(), "name".into());
        }
    }
    for (k, v) in top {
        if NON_INHERITABLE.contains(&k.as_str()) {
            if !own.contains_key(&k) {
                notes.push(format!(
                    "{k}: set at the top level but not in env.{name}, so not inherited (as wrangler)"
                ));
            }
            continue;
        }
        if !own.contains_key(&k) {
            origin.insert(k.clone(), k.clone());
            config.insert(k, v);
        }
    }
    for (k, v) in std::mem::take(&mut own) {
        origin.insert(k.clone(), format!("env.{name}.{k}"));
        config.insert(k, v);
    }
    Ok(Resolved {
        config,
        origin,
        dir,
        env: Some(name.to_string()),
        notes,
    })
}

/// The name wrangler names a container application after (`<name>-<class>`, and
/// `-<env>` in an environment): the top-level `name`, or in an environment the
/// environment's own `name` (wrangler 4.86 `validateContainerApp` takes `rawEnv.name`;
/// without it, a container needs its own `name`).
pub fn container_base_name(raw: &Map<String, Value>, env: Option<&str>) -> Option<String> {
    let at = match env {
        None => raw.get("name"),
        Some(e) => raw
            .get("env")
            .and_then(|v| v.get(e))
            .and_then(|v| v.get("name")),
    };
    at.and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jsonc_comments_and_trailing_commas() {
        let text = r#"{
  // a comment with "quotes"
  "name": "a//b", /* block
  comment */ "vars": {"X": "1,}",},
  "list": [1, 2, ],
}"#;
        let m = parse(text, false).expect("parses");
        assert_eq!(m["name"], "a//b");
        assert_eq!(m["vars"]["X"], "1,}");
        assert_eq!(m["list"], json!([1, 2]));
    }

    #[test]
    fn toml_parses() {
        let m = parse(
            "name = \"w\"\n[vars]\nA = \"b\"\n[[kv_namespaces]]\nbinding = \"K\"\nid = \"x\"\n",
            true,
        )
        .expect("parses");
        assert_eq!(m["kv_namespaces"][0]["binding"], "K");
    }

    #[test]
    fn environments_follow_wranglers_rules() {
        let raw = parse(
            r#"{"name": "shop", "compatibility_date": "2026-01-01", "workers_dev": false,
                "vars": {"A": "top"}, "kv_namespaces": [{"binding": "K", "id": "1"}],
                "env": {"staging": {"vars": {"A": "staging"}, "routes": []},
                        "named": {"name": "other"}}}"#,
            false,
        )
        .expect("parses");
        let r = resolve(raw.clone(), Some("staging"), PathBuf::new()).expect("env");
        assert_eq!(r.config["name"], "shop-staging");
        assert_eq!(r.config["vars"]["A"], "staging");
        assert_eq!(r.config["workers_dev"], false, "inherited");
        assert!(
            !r.config.contains_key("kv_namespaces"),
            "not inherited: {:?}",
            r.config
        );
        assert!(r.notes.iter().any(|n| n.starts_with("kv_namespaces")));
        assert_eq!(r.path_of("vars"), "env.staging.vars");
        assert_eq!(r.path_of("workers_dev"), "workers_dev");
        let named = resolve(raw.clone(), Some("named"), PathBuf::new()).expect("env");
        assert_eq!(named.config["name"], "other");
        assert!(matches!(
            resolve(raw, Some("prod"), PathBuf::new()),
            Err(ImportError::NoSuchEnv(_))
        ));
    }
}

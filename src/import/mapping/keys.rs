//! Taking a wrangler configuration's keys one by one, and reporting what is left:
//! the keys flaredock does not map are noted (read by wrangler or `wrangler dev` alone)
//! or reported unsupported by their path, never dropped silently.

use serde_json::{Map, Value};

use super::Findings;

/// Keys `wrangler dev` or wrangler's own commands alone read: noted, not mapped.
pub(super) const DEV_ONLY: &[&str] = &[
    "remote",
    "preview_id",
    "preview_bucket_name",
    "preview_database_id",
    "database_name",
    "migrations_dir",
    "migrations_table",
    "localConnectionString",
];

/// Keys that change how wrangler bundles the code: with `--bundle` they are already
/// applied; without, the `main` file is taken as it is, so they are unsupported.
pub const BUNDLING: &[&str] = &[
    "no_bundle",
    "minify",
    "keep_names",
    "build",
    "tsconfig",
    "rules",
    "base_dir",
    "find_additional_modules",
    "preserve_file_names",
    "define",
    "alias",
    "jsx_factory",
    "jsx_fragment",
];

/// Top-level keys flaredock has no field for (yet), with the reason shown.
pub(super) const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "streaming_tail_consumers",
        "CloudflareWorker has no streaming tail consumers",
    ),
    ("logpush", "CloudflareWorker has no logpush field"),
    ("assets", "static assets are not uploaded by flaredock"),
    ("site", "Workers Sites are not uploaded by flaredock"),
    ("unsafe", "unsafe bindings and metadata are not supported"),
    (
        "cloudchamber",
        "cloudchamber is not supported (use containers)",
    ),
    (
        "data_blobs",
        "service-worker format bindings are not supported (modules only)",
    ),
    (
        "text_blobs",
        "service-worker format bindings are not supported (modules only)",
    ),
    (
        "wasm_modules",
        "service-worker format bindings are not supported (modules only)",
    ),
    ("legacy_env", "service environments are not supported"),
    (
        "compliance_region",
        "the FedRAMP API endpoint is not supported",
    ),
    ("preview_urls", "preview URLs are not managed by flaredock"),
    ("previews", "previews are not managed by flaredock"),
    (
        "first_party_worker",
        "first-party Workers are not supported",
    ),
    ("logfwdr", "logfwdr bindings are not supported"),
    (
        "keep_vars",
        "flaredock sets exactly the vars of the spec (no dashboard vars kept)",
    ),
    ("worker_loaders", "worker loader bindings are not supported"),
    ("artifacts", "artifacts bindings are not supported"),
    ("stream", "stream bindings are not supported"),
    ("unsafe_hello_world", "unsafe bindings are not supported"),
    ("cache", "cache settings are not supported"),
    ("python_modules", "Python Workers are not supported"),
    ("pages_build_output_dir", "a Pages project is not a Worker"),
    (
        "upload_source_maps",
        "source maps are not uploaded by flaredock",
    ),
];

/// A JSON object whose keys are taken one by one; what is left is reported.
pub(super) struct Taken {
    pub(super) path: String,
    pub(super) map: Map<String, Value>,
}

impl Taken {
    pub(super) fn new(path: String, value: Value, f: &mut Findings) -> Option<Taken> {
        match value {
            Value::Object(map) => Some(Taken { path, map }),
            _ => {
                f.unsupported(&path, "expected an object");
                None
            }
        }
    }
    pub(super) fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }
    pub(super) fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }
    /// What is left: dev-only keys noted, the others unsupported.
    pub(super) fn finish(self, f: &mut Findings) {
        for (k, _) in self.map {
            let path = format!("{}.{k}", self.path);
            if DEV_ONLY.contains(&k.as_str()) {
                f.note(
                    &path,
                    "read by wrangler dev or wrangler's own commands only; ignored",
                );
            } else {
                f.unsupported(&path, "not supported by flaredock import");
            }
        }
    }
}

/// `Some(list)` of a JSON array, else reported.
pub(super) fn list(path: &str, v: Value, f: &mut Findings) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        _ => {
            f.unsupported(path, "expected a list");
            vec![]
        }
    }
}

pub(super) fn string(v: Option<Value>) -> Option<String> {
    v.and_then(|v| v.as_str().map(str::to_string))
}

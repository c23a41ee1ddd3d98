//! The checks of a Worker upload's `metadata` part (a script upload, a version upload)
//! against the official schema, and the binding fields the official schema renamed.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::{ROUTING_JSON, Spec};

/// Binding fields the official schema marks renamed (`deprecated`, with the message
/// "This property has been renamed to `new`."): `(type, old, new)`, read from the
/// routing extract's binding kinds. wrangler 4.86 still sends D1's old `id`.
pub fn renamed_binding_fields() -> &'static [(String, String, String)] {
    static RENAMED: OnceLock<Vec<(String, String, String)>> = OnceLock::new();
    RENAMED.get_or_init(|| {
        let doc: Value = serde_json::from_str(ROUTING_JSON).unwrap_or_default();
        let mut out = Vec::new();
        for (name, schema) in doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let Some(kind) = name.strip_prefix("workers_binding_kind_") else {
                continue;
            };
            for (field, prop) in schema["properties"].as_object().into_iter().flatten() {
                let message = prop["x-stainless-deprecation-message"]
                    .as_str()
                    .unwrap_or("");
                if prop["deprecated"] == Value::Bool(true)
                    && let Some(rest) = message.strip_prefix("This property has been renamed to `")
                    && let Some(new) = rest.strip_suffix("`.")
                {
                    out.push((kind.to_string(), field.clone(), new.to_string()));
                }
            }
        }
        out
    })
}

/// An upload's bindings with every [`renamed_binding_fields`] field under its current
/// name (when the current one is absent), as Cloudflare takes them.
pub fn rename_binding_fields(metadata: &mut Value) {
    let Some(bindings) = metadata.get_mut("bindings").and_then(Value::as_array_mut) else {
        return;
    };
    for b in bindings {
        let kind = b["type"].as_str().unwrap_or("").to_string();
        for (k, old, new) in renamed_binding_fields() {
            if *k == kind
                && let Some(o) = b.as_object_mut()
                && !o.contains_key(new)
                && let Some(v) = o.remove(old)
            {
                o.insert(new.clone(), v);
            }
        }
    }
}

/// The official schema of an upload's `metadata` part, with `containers` checked as
/// `workers_containers` (the official metadata schema does not list it; wrangler sends
/// it and `workers_durable_object_export` refers to it).
pub fn upload_metadata_violations(metadata: &Value) -> Vec<String> {
    let spec = Spec::workers();
    let mut out = Vec::new();
    match spec
        .at("/components/requestBodies/workers_script_upload/content/multipart~1form-data/schema")
    {
        Some(body) => {
            // `containers` is not in the official metadata schema: checked below.
            let mut metadata = metadata.clone();
            if let Some(m) = metadata.as_object_mut() {
                m.remove("containers");
            }
            let form = json!({"metadata": metadata});
            out.extend(spec.violations(body, &form, "upload"));
        }
        None => out.push("the official upload schema is missing from the extract".into()),
    }
    if let Some(containers) = metadata.get("containers") {
        let schema = json!({"$ref": "#/components/schemas/workers_containers"});
        out.extend(spec.violations(&schema, containers, "metadata.containers"));
    }
    out
}

/// Fields wrangler 4.86 sends in the metadata of `POST …/versions`
/// (`worker-versions-upload-version`) that the official `workers_version-post` schema
/// does not list: its `createWorkerUploadForm` builds the same metadata for a version as
/// for a script upload (`wrangler deploy` of an existing Worker goes through the
/// Versions API with `logpush`, `placement`, `tail_consumers`, `limits`,
/// `observability`, `assets` and `keep_assets` when configured; `wrangler versions
/// upload` also sends `migrations`). They are checked against the official script
/// upload's definitions of the same fields (`requestBodies.workers_script_upload`),
/// never left unchecked; `containers` is checked as `workers_containers`, as for an
/// upload.
pub const VERSION_UPLOAD_FROM_SCRIPT_UPLOAD: &[&str] = &[
    "assets",
    "keep_assets",
    "limits",
    "logpush",
    "migrations",
    "observability",
    "placement",
    "tail_consumers",
];

/// Every violation of a version upload's `metadata` part: against the official
/// `workers_version-post` schema, with the [`VERSION_UPLOAD_FROM_SCRIPT_UPLOAD`] fields
/// checked against the script upload's schema and `containers` as `workers_containers`.
pub fn version_metadata_violations(metadata: &Value) -> Vec<String> {
    let spec = Spec::workers();
    let mut own = metadata.clone();
    let mut borrowed = Map::new();
    if let Some(m) = own.as_object_mut() {
        for field in VERSION_UPLOAD_FROM_SCRIPT_UPLOAD {
            if let Some(v) = m.remove(*field) {
                borrowed.insert((*field).to_string(), v);
            }
        }
        m.remove("containers");
    }
    let mut out = Vec::new();
    match spec
        .at("/components/requestBodies/workers_version-post/content/multipart~1form-data/schema")
    {
        Some(body) => {
            out.extend(spec.violations(body, &json!({"metadata": own}), "version upload"))
        }
        None => out.push("the official version upload schema is missing from the extract".into()),
    }
    if !borrowed.is_empty() {
        match spec.at(
            "/components/requestBodies/workers_script_upload/content/multipart~1form-data/schema",
        ) {
            Some(body) => {
                let form = json!({"metadata": Value::Object(borrowed)});
                out.extend(spec.violations(body, &form, "version upload"));
            }
            None => out.push("the official upload schema is missing from the extract".into()),
        }
    }
    if let Some(containers) = metadata.get("containers") {
        let schema = json!({"$ref": "#/components/schemas/workers_containers"});
        out.extend(spec.violations(&schema, containers, "metadata.containers"));
    }
    out
}

/// The metadata check of a multipart upload operation (by operation id): the version
/// upload's own, or the script upload's.
pub fn multipart_metadata_violations(operation_id: &str, metadata: &Value) -> Vec<String> {
    if operation_id == VERSION_UPLOAD {
        version_metadata_violations(metadata)
    } else {
        upload_metadata_violations(metadata)
    }
}

/// The operation id of `POST /workers/scripts/{name}/versions`.
pub const VERSION_UPLOAD: &str = "worker-versions-upload-version";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_binding_fields_come_from_the_schema() {
        assert!(
            renamed_binding_fields()
                .iter()
                .any(|(k, old, new)| k == "d1" && old == "id" && new == "database_id"),
            "{:?}",
            renamed_binding_fields()
        );
        let mut m = json!({"bindings": [
            {"type": "d1", "name": "DB", "id": "a"},
            {"type": "d1", "name": "NEW", "database_id": "b", "id": "c"},
        ]});
        rename_binding_fields(&mut m);
        assert_eq!(
            m["bindings"][0],
            json!({"type": "d1", "name": "DB", "database_id": "a"})
        );
        assert_eq!(
            m["bindings"][1]["database_id"], "b",
            "the current name wins"
        );
        assert!(
            upload_metadata_violations(
                &json!({"main_module": "i.js", "bindings": [m["bindings"][0]]})
            )
            .is_empty()
        );
    }

    #[test]
    fn a_misspelt_or_mistyped_metadata_field_is_named() {
        let good = json!({"main_module": "index.js", "compatibility_date": "2026-01-01", "tags": ["a"], "containers": [{"class_name": "A"}]});
        assert!(
            upload_metadata_violations(&good).is_empty(),
            "{:?}",
            upload_metadata_violations(&good)
        );
        let bad =
            json!({"main_module": 3, "containers": [{"klass": "A"}], "compatibility_dat": "x"});
        let v = upload_metadata_violations(&bad);
        assert!(
            v.iter().any(|m| m.contains("compatibility_dat")),
            "a misspelt field is refused: {v:?}"
        );
        assert!(
            v.iter().any(|m| m.contains("metadata.main_module")),
            "{v:?}"
        );
        assert!(v.iter().any(|m| m.contains("metadata.containers")), "{v:?}");
    }
}

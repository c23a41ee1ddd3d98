//! Reads `CloudflareContainer` manifests from files and directories (multi-document
//! YAML or JSON). Every problem is reported with the file, the document, the object and
//! the field; nothing is half-loaded: any error and the caller gets only errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use crate::reconcile::worker::inputs::{DataMap, SourceData};
use crate::spec::{self, CloudflareContainer, CloudflareWorker};

pub const API_VERSION: &str = "flaredock.dev/v1alpha1";
pub const KIND: &str = "CloudflareContainer";
pub const WORKER_KIND: &str = "CloudflareWorker";

/// One invalid document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub file: String,
    /// 1-based document index in the file.
    pub document: usize,
    /// The document's kind, when known.
    pub kind: Option<String>,
    /// `namespace/name` when known.
    pub object: Option<String>,
    /// JSON path of the field, when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file, self.document)?;
        if let Some(o) = &self.object {
            write!(f, " ({} {o})", self.kind.as_deref().unwrap_or(KIND))?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// An object and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded<T = CloudflareContainer> {
    pub object: T,
    /// `file#document`.
    pub source: String,
}

/// What loading found.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub objects: Vec<Loaded>,
    pub workers: Vec<Loaded<CloudflareWorker>>,
    /// ConfigMaps and Secrets among the files (what Workers read).
    pub data: SourceData,
    pub errors: Vec<ManifestError>,
    /// Documents skipped (other kinds), as notes for the user.
    pub notes: Vec<String>,
}

/// One parsed document.
#[derive(Debug)]
pub enum Document {
    Container(Box<CloudflareContainer>),
    Worker(Box<CloudflareWorker>),
    /// `kind: ConfigMap`: `namespace/name` and its keys (data and binaryData).
    ConfigMap(String, DataMap),
    /// `kind: Secret`: `namespace/name` and its keys (data and stringData).
    Secret(String, DataMap),
    /// Another kind, or an empty document.
    Other,
}

/// Files named by `paths`: files as given, directories walked for `.yaml`, `.yml`, `.json`.
fn expand(paths: &[PathBuf], errors: &mut Vec<ManifestError>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            let mut found = Vec::new();
            while let Some(dir) = stack.pop() {
                match std::fs::read_dir(&dir) {
                    Ok(entries) => {
                        for e in entries.flatten() {
                            let path = e.path();
                            if path.is_dir() {
                                stack.push(path);
                            } else if matches!(
                                path.extension().and_then(|x| x.to_str()),
                                Some("yaml" | "yml" | "json")
                            ) {
                                found.push(path);
                            }
                        }
                    }
                    Err(e) => errors.push(ManifestError {
                        file: dir.display().to_string(),
                        document: 0,
                        kind: None,
                        object: None,
                        field: None,
                        message: format!("cannot read directory: {e}"),
                    }),
                }
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Keys Kubernetes accepts in `metadata`.
const METADATA_KEYS: [&str; 15] = [
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "selfLink",
];

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Parses one document; `Ok(None)` for a document that is not a CloudflareContainer.
pub fn parse_document(
    text: &str,
    file: &str,
    index: usize,
) -> Result<Option<CloudflareContainer>, Vec<ManifestError>> {
    match parse_any(text, file, index)? {
        Document::Container(c) => Ok(Some(*c)),
        _ => Ok(None),
    }
}

/// The keys of a ConfigMap or Secret: `text_field` holds text, `base64_field` base64.
fn data_map(
    value: &Value,
    text_field: &str,
    base64_field: &str,
    err: &dyn Fn(Option<String>, String) -> ManifestError,
) -> Result<DataMap, Vec<ManifestError>> {
    use base64::Engine;
    let mut out = DataMap::new();
    let mut errors = Vec::new();
    for (field, is_base64) in [(base64_field, true), (text_field, false)] {
        let Some(map) = value.get(field) else {
            continue;
        };
        let Some(map) = map.as_mapping() else {
            errors.push(err(Some(field.to_string()), "must be a mapping".into()));
            continue;
        };
        for (k, v) in map {
            let key = k.as_str().unwrap_or("").to_string();
            let Some(text) = v.as_str() else {
                errors.push(err(
                    Some(format!("{field}.{key}")),
                    "must be a string".into(),
                ));
                continue;
            };
            let bytes = if is_base64 {
                match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                    Ok(b) => b,
                    Err(_) => {
                        // Never echo the value: it may be a secret.
                        errors.push(err(
                            Some(format!("{field}.{key}")),
                            "is not valid base64".into(),
                        ));
                        continue;
                    }
                }
            } else {
                text.as_bytes().to_vec()
            };
            out.insert(key, bytes);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Parses one document of any kind flaredock reads.
pub fn parse_any(text: &str, file: &str, index: usize) -> Result<Document, Vec<ManifestError>> {
    let base = |kind: Option<&str>,
                object: Option<String>,
                field: Option<String>,
                message: String| ManifestError {
        file: file.to_string(),
        document: index,
        kind: kind.map(str::to_string),
        object,
        field,
        message,
    };
    let value: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| vec![base(None, None, None, format!("malformed YAML: {e}"))])?;
    if value.is_null() {
        return Ok(Document::Other);
    }
    let Some(map) = value.as_mapping() else {
        return Err(vec![base(
            None,
            None,
            None,
            "a manifest must be a mapping (apiVersion, kind, metadata, spec)".into(),
        )]);
    };
    let Some(kind) = str_at(&value, "kind") else {
        return Ok(Document::Other);
    };
    let name = value
        .get("metadata")
        .and_then(|m| str_at(m, "name"))
        .unwrap_or("");
    let namespace = value
        .get("metadata")
        .and_then(|m| str_at(m, "namespace"))
        .unwrap_or("default");
    let key = format!("{namespace}/{name}");
    let object = Some(format!(
        "{namespace}/{}",
        if name.is_empty() { "<no name>" } else { name }
    ));
    if matches!(kind, "ConfigMap" | "Secret") && str_at(&value, "apiVersion") == Some("v1") {
        let err = |field: Option<String>, message: String| {
            base(Some(kind), object.clone(), field, message)
        };
        return if kind == "ConfigMap" {
            data_map(&value, "data", "binaryData", &err).map(|d| Document::ConfigMap(key, d))
        } else {
            data_map(&value, "stringData", "data", &err).map(|d| Document::Secret(key, d))
        };
    }
    if kind != KIND && kind != WORKER_KIND {
        return Ok(Document::Other);
    }
    let kind_name = if kind == KIND { KIND } else { WORKER_KIND };
    let base = |object: Option<String>, field: Option<String>, message: String| {
        base(Some(kind_name), object, field, message)
    };
    let mut errors = Vec::new();
    match value.get("apiVersion") {
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(other) => errors.push(base(
            object.clone(),
            Some("apiVersion".into()),
            format!(
                "{} is not served; use {API_VERSION}",
                serde_yaml_ng::to_string(other).unwrap_or_default().trim()
            ),
        )),
        None => errors.push(base(
            object.clone(),
            Some("apiVersion".into()),
            format!("is required ({API_VERSION})"),
        )),
    }
    for k in map.keys() {
        let key = k.as_str().unwrap_or("");
        if !matches!(key, "apiVersion" | "kind" | "metadata" | "spec" | "status") {
            errors.push(base(
                object.clone(),
                Some(key.to_string()),
                "unknown field".into(),
            ));
        }
    }
    if let Some(meta) = value.get("metadata").and_then(Value::as_mapping) {
        for k in meta.keys() {
            let key = k.as_str().unwrap_or("");
            if !METADATA_KEYS.contains(&key) {
                errors.push(base(
                    object.clone(),
                    Some(format!("metadata.{key}")),
                    "unknown field".into(),
                ));
            }
        }
    }
    if value.get("spec").is_none() {
        errors.push(base(
            object.clone(),
            Some("spec".into()),
            "is required".into(),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let typed_error = |e: serde_path_to_error::Error<serde_yaml_ng::Error>| {
        let path = e.path().to_string();
        let mut message = e.inner().to_string();
        if message.chars().count() > 300 {
            message = format!("{}… (cut)", message.chars().take(300).collect::<String>());
        }
        // The path already ends at the offending key (an unknown one included).
        let field = if path == "." {
            "spec".to_string()
        } else {
            path
        };
        if field == "spec.env" && message.contains("expected a sequence") {
            // The map form of earlier releases.
            message.push_str(
                "; env is a list, as a Pod's: `- {name: MODE, value: live}` or `- {name: DB_PASSWORD, valueFrom: {secretKeyRef: {name: SECRET, key: KEY}}}`",
            );
        }
        vec![base(object.clone(), Some(field), message)]
    };
    // The CRD's own schema and CEL rules, as the API server applies them; then what
    // only code can say (references that must parse, rules across objects).
    let as_json: serde_json::Value = serde_json::to_value(&value).unwrap_or_default();
    let (document, problems) = if kind == KIND {
        let obj: CloudflareContainer =
            serde_path_to_error::deserialize(value).map_err(typed_error)?;
        let mut problems = spec::crd_rules::CrdValidator::container().violations(&as_json);
        merge_precise(&mut problems, spec::validate(&obj));
        (Document::Container(Box::new(obj)), problems)
    } else {
        let obj: CloudflareWorker = serde_path_to_error::deserialize(value).map_err(typed_error)?;
        let mut problems = spec::crd_rules::CrdValidator::worker().violations(&as_json);
        merge_precise(&mut problems, spec::validate_worker(&obj));
        (Document::Worker(Box::new(obj)), problems)
    };
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|p| base(object.clone(), Some(p.field), p.message))
            .collect());
    }
    Ok(document)
}

/// Adds the hand-written checks' findings to the CRD's, except where the CRD already
/// named the same field: a CRD rule names the object it sits on (`spec.env`), the
/// check the exact entry (`spec.env.1BAD`), and both help.
fn merge_precise(problems: &mut Vec<spec::FieldError>, precise: Vec<spec::FieldError>) {
    for p in precise {
        if !problems.iter().any(|q| q.field == p.field) {
            problems.push(p);
        }
    }
}

/// Splits a YAML stream into documents (`---` lines).
fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push(String::new());
            continue;
        }
        if line.trim_end() == "..." {
            continue;
        }
        if let Some(d) = docs.last_mut() {
            d.push_str(line);
            d.push('\n');
        }
    }
    docs
}

/// Loads every `CloudflareContainer` under `paths`.
pub fn load(paths: &[PathBuf]) -> LoadResult {
    let mut result = LoadResult::default();
    let files = expand(paths, &mut result.errors);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for file in files {
        let display = file.display().to_string();
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                result.errors.push(ManifestError {
                    file: display,
                    document: 0,
                    kind: None,
                    object: None,
                    field: None,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        load_text(&text, &display, &mut seen, &mut result);
    }
    check_references(&mut result);
    if result.objects.is_empty() && result.workers.is_empty() && result.errors.is_empty() {
        result.errors.push(ManifestError {
            file: paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            document: 0,
            object: None,
            field: None,
            kind: None,
            message: format!("no {KIND} or {WORKER_KIND} objects found"),
        });
    }
    result
}

fn load_text(text: &str, file: &str, seen: &mut BTreeMap<String, String>, result: &mut LoadResult) {
    let is_json = Path::new(file).extension().and_then(|x| x.to_str()) == Some("json");
    let docs = if is_json {
        vec![text.to_string()]
    } else {
        documents(text)
    };
    for (i, doc) in docs.iter().enumerate() {
        let index = i + 1;
        let source = format!("{file}#{index}");
        let mut first_definition = |kind: &str, key: String| -> bool {
            match seen.insert(format!("{kind} {key}"), source.clone()) {
                None => true,
                Some(first) => {
                    result.errors.push(ManifestError {
                        file: file.to_string(),
                        document: index,
                        kind: Some(kind.to_string()),
                        object: Some(key),
                        field: Some("metadata.name".into()),
                        message: format!("the same object is also defined in {first}"),
                    });
                    false
                }
            }
        };
        match parse_any(doc, file, index) {
            Ok(Document::Container(obj)) => {
                let mut obj = *obj;
                // A relative local build context is relative to the manifest's directory.
                if let Some(build) = obj.spec.build.as_mut()
                    && !build.context.contains("://")
                    && Path::new(&build.context).is_relative()
                    && let Some(dir) = Path::new(file).parent()
                {
                    build.context = dir.join(&build.context).display().to_string();
                }
                if first_definition(KIND, obj.key()) {
                    result.objects.push(Loaded {
                        object: obj,
                        source,
                    });
                }
            }
            Ok(Document::Worker(obj)) => {
                if first_definition(WORKER_KIND, obj.key()) {
                    result.workers.push(Loaded {
                        object: *obj,
                        source,
                    });
                }
            }
            Ok(Document::ConfigMap(key, data)) => {
                if first_definition("ConfigMap", key.clone()) {
                    result.data.config_maps.insert(key, data);
                }
            }
            Ok(Document::Secret(key, data)) => {
                if first_definition("Secret", key.clone()) {
                    result.data.secrets.insert(key, data);
                }
            }
            Ok(Document::Other) => {
                if let Ok(v) = serde_yaml_ng::from_str::<Value>(doc)
                    && !v.is_null()
                {
                    result.notes.push(format!(
                        "{file}: document {index}: skipped {} {} (not a {KIND} or {WORKER_KIND})",
                        str_at(&v, "kind").unwrap_or("(no kind)"),
                        v.get("metadata")
                            .and_then(|m| str_at(m, "name"))
                            .unwrap_or("")
                    ));
                }
            }
            Err(errs) => result.errors.extend(errs),
        }
    }
}

/// Where a loaded object came from: (file, document).
fn source_of(source: &str) -> (String, usize) {
    let (file, document) = source.rsplit_once('#').unwrap_or((source, "0"));
    (file.to_string(), document.parse().unwrap_or(0))
}

/// A `secretKeyRef` must name a Secret among the files, with that key (the command line
/// has no other place to find it). `None` when it does.
fn missing_secret(data: &SourceData, ns: &str, name: &str, key: &str) -> Option<String> {
    match data.secrets.get(&format!("{ns}/{name}")) {
        None => Some(format!(
            "no Secret {ns}/{name} among the files; add a `kind: Secret` document (data or stringData)"
        )),
        Some(secret) if !secret.contains_key(key) => Some(format!(
            "Secret {ns}/{name} among the files has no key {key}; it has {}",
            secret.keys().cloned().collect::<Vec<_>>().join(", ")
        )),
        Some(_) => None,
    }
}

/// Every `spec.worker.name` names a CloudflareWorker among the files, and every
/// `secretKeyRef` a Secret and key among them: checked before any API call, so that a
/// typo is refused instead of waiting forever.
fn check_references(result: &mut LoadResult) {
    let workers: std::collections::BTreeSet<String> =
        result.workers.iter().map(|w| w.object.key()).collect();
    let mut missing = Vec::new();
    for c in &result.objects {
        let obj = &c.object;
        let ns = obj.namespace_or_default();
        for (i, e) in obj.spec.env.iter().enumerate() {
            let Some(r) = e.value_from.as_ref().map(|f| &f.secret_key_ref) else {
                continue;
            };
            if let Some(message) = missing_secret(&result.data, ns, &r.name, &r.key) {
                missing.push((
                    c.source.clone(),
                    KIND,
                    obj.key(),
                    format!("spec.env[{i}].valueFrom.secretKeyRef"),
                    message,
                ));
            }
        }
    }
    for w in &result.workers {
        let obj = &w.object;
        let ns = obj.namespace_or_default();
        for (i, s) in obj.spec.secrets.iter().enumerate() {
            let r = &s.secret_key_ref;
            if let Some(message) = missing_secret(&result.data, ns, &r.name, &r.key) {
                missing.push((
                    w.source.clone(),
                    WORKER_KIND,
                    obj.key(),
                    format!("spec.secrets[{i}].secretKeyRef"),
                    message,
                ));
            }
        }
    }
    for (source, kind, object, field, message) in missing {
        let (file, document) = source_of(&source);
        result.errors.push(ManifestError {
            file,
            document,
            kind: Some(kind.into()),
            object: Some(object),
            field: Some(field),
            message,
        });
    }
    for c in &result.objects {
        let obj = &c.object;
        if let Some(name) = obj.worker_object() {
            let key = format!("{}/{name}", obj.namespace_or_default());
            if !workers.contains(&key) {
                let (file, document) = source_of(&c.source);
                result.errors.push(ManifestError {
                    file,
                    document,
                    kind: Some(KIND.into()),
                    object: Some(obj.key()),
                    field: Some("spec.worker.name".into()),
                    message: format!(
                        "no {WORKER_KIND} {key} among the files; add it, or name a Worker deployed elsewhere with spec.worker.scriptName"
                    ),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {name: shop, namespace: apps}\nspec:\n  className: Shop\n  image: {reference: shop:v1}\n  worker: {scriptName: shop}\n";

    #[test]
    fn loads_a_good_document_with_defaults() {
        let obj = parse_document(GOOD, "f.yaml", 1).unwrap().unwrap();
        assert_eq!(obj.key(), "apps/shop");
        assert_eq!(obj.spec.max_instances, 20);
    }

    #[test]
    fn names_the_field_of_a_wrong_type() {
        let doc = GOOD.replace(
            "  className: Shop\n",
            "  className: Shop\n  maxInstances: lots\n",
        );
        let errs = parse_document(&doc, "f.yaml", 2).unwrap_err();
        assert_eq!(errs[0].field.as_deref(), Some("spec.maxInstances"));
        assert_eq!(errs[0].object.as_deref(), Some("apps/shop"));
        assert!(
            errs[0].to_string().starts_with(
                "f.yaml: document 2 (CloudflareContainer apps/shop): spec.maxInstances:"
            )
        );
    }

    #[test]
    fn names_an_unknown_field() {
        let doc = GOOD.replace(
            "  worker: {scriptName: shop}\n",
            "  worker: {scriptName: shop, bogus: 1}\n",
        );
        let errs = parse_document(&doc, "f.yaml", 1).unwrap_err();
        assert_eq!(errs[0].field.as_deref(), Some("spec.worker.bogus"));
    }

    #[test]
    fn other_kinds_are_skipped_and_config_maps_and_secrets_are_read() {
        let mut r = LoadResult::default();
        let text = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: x}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: code, namespace: apps}}\ndata: {{index.js: 'export default {{}}'}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: apps}}\ndata: {{k: aGVsbG8=}}\nstringData: {{t: plain}}\n---\n{GOOD}"
        );
        load_text(&text, "f.yaml", &mut BTreeMap::new(), &mut r);
        assert_eq!(r.objects.len(), 1);
        assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(
            r.data.config_maps["apps/code"]["index.js"],
            b"export default {}"
        );
        assert_eq!(r.data.secrets["apps/s"]["k"], b"hello");
        assert_eq!(r.data.secrets["apps/s"]["t"], b"plain");
    }

    #[test]
    fn bad_base64_in_a_secret_is_named_without_its_value() {
        let mut r = LoadResult::default();
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: apps}\ndata: {k: 'not*base64!'}\n";
        load_text(text, "f.yaml", &mut BTreeMap::new(), &mut r);
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors[0].field.as_deref(), Some("data.k"));
        assert!(!r.errors[0].to_string().contains("not*base64"));
        assert!(
            r.errors[0].to_string().contains("(Secret apps/s)"),
            "{}",
            r.errors[0]
        );
    }
}

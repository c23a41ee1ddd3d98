//! Reads `CloudflareContainer` manifests from files and directories (multi-document
//! YAML or JSON). Every problem is reported with the file, the document, the object and
//! the field; nothing is half-loaded: any error and the caller gets only errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use crate::spec::{self, CloudflareContainer};

pub const API_VERSION: &str = "flaredock.dev/v1alpha1";
pub const KIND: &str = "CloudflareContainer";

/// One invalid document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub file: String,
    /// 1-based document index in the file.
    pub document: usize,
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
            write!(f, " ({KIND} {o})")?;
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
pub struct Loaded {
    pub object: CloudflareContainer,
    /// `file#document`.
    pub source: String,
}

/// What loading found.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub objects: Vec<Loaded>,
    pub errors: Vec<ManifestError>,
    /// Documents skipped (other kinds), as notes for the user.
    pub notes: Vec<String>,
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

/// Parses one document; `Ok(None)` for a document of another kind (with a note).
pub fn parse_document(
    text: &str,
    file: &str,
    index: usize,
) -> Result<Option<CloudflareContainer>, Vec<ManifestError>> {
    let base = |object: Option<String>, field: Option<String>, message: String| ManifestError {
        file: file.to_string(),
        document: index,
        object,
        field,
        message,
    };
    let value: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| vec![base(None, None, format!("malformed YAML: {e}"))])?;
    if value.is_null() {
        return Ok(None);
    }
    let Some(map) = value.as_mapping() else {
        return Err(vec![base(
            None,
            None,
            "a manifest must be a mapping (apiVersion, kind, metadata, spec)".into(),
        )]);
    };
    let kind = str_at(&value, "kind");
    if kind != Some(KIND) {
        return Ok(None);
    }
    let name = value
        .get("metadata")
        .and_then(|m| str_at(m, "name"))
        .unwrap_or("");
    let namespace = value
        .get("metadata")
        .and_then(|m| str_at(m, "namespace"))
        .unwrap_or("default");
    let object = Some(format!(
        "{namespace}/{}",
        if name.is_empty() { "<no name>" } else { name }
    ));
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
    let obj: CloudflareContainer = match serde_path_to_error::deserialize(value) {
        Ok(o) => o,
        Err(e) => {
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
            return Err(vec![base(object, Some(field), message)]);
        }
    };
    let problems = spec::validate(&obj);
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|p| base(object.clone(), Some(p.field), p.message))
            .collect());
    }
    Ok(Some(obj))
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
                    object: None,
                    field: None,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        load_text(&text, &display, &mut seen, &mut result);
    }
    if result.objects.is_empty() && result.errors.is_empty() {
        result.errors.push(ManifestError {
            file: paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            document: 0,
            object: None,
            field: None,
            message: format!("no {KIND} objects found"),
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
        match parse_document(doc, file, index) {
            Ok(Some(mut obj)) => {
                // A relative local build context is relative to the manifest's directory.
                if let Some(build) = obj.spec.build.as_mut()
                    && !build.context.contains("://")
                    && Path::new(&build.context).is_relative()
                    && let Some(dir) = Path::new(file).parent()
                {
                    build.context = dir.join(&build.context).display().to_string();
                }
                let source = format!("{file}#{index}");
                if let Some(first) = seen.insert(obj.key(), source.clone()) {
                    result.errors.push(ManifestError {
                        file: file.to_string(),
                        document: index,
                        object: Some(obj.key()),
                        field: Some("metadata.name".into()),
                        message: format!("the same object is also defined in {first}"),
                    });
                    continue;
                }
                result.objects.push(Loaded {
                    object: obj,
                    source,
                });
            }
            Ok(None) => {
                if let Ok(v) = serde_yaml_ng::from_str::<Value>(doc)
                    && !v.is_null()
                {
                    result.notes.push(format!(
                        "{file}: document {index}: skipped {} {} (not a {KIND})",
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {name: shop, namespace: apps}\nspec:\n  className: Shop\n  image: {reference: shop:v1}\n  worker: {scriptName: shop}\n";

    #[test]
    fn loads_a_good_document_with_defaults() {
        let obj = parse_document(GOOD, "f.yaml", 1).unwrap().unwrap();
        assert_eq!(obj.key(), "apps/shop");
        assert_eq!(obj.spec.max_instances, 20);
        assert_eq!(obj.spec.instances, 0);
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
    fn other_kinds_are_skipped() {
        let mut r = LoadResult::default();
        let text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\n{GOOD}");
        load_text(&text, "f.yaml", &mut BTreeMap::new(), &mut r);
        assert_eq!(r.objects.len(), 1);
        assert_eq!(r.notes.len(), 1);
        assert!(r.errors.is_empty());
    }
}

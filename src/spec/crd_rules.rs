//! Manifests checked by the generated CRDs themselves, as the API server checks them:
//! the structural OpenAPI schema (types, enums, ranges, lengths, required fields,
//! unknown fields refused as `kubectl apply`'s strict field validation does) and every
//! `x-kubernetes-validations` CEL rule, evaluated by a CEL interpreter. A rule added to
//! the CRD is enforced by `plan`/`apply` with no other code. What a schema cannot say
//! (a reference that must parse, rules across objects) stays in [`super::validate`].
//!
//! Not modelled: defaults are not applied before the rules run (no rule here depends
//! on a defaulted field), and CEL cost limits are not estimated.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::FieldError;

/// The validator of one CRD (its first version's schema).
pub struct CrdValidator {
    schema: Value,
    structural: Result<jsonschema::Validator, String>,
}

impl CrdValidator {
    /// From a CRD (as `flaredock crd` renders it).
    pub fn new(crd: &Value) -> CrdValidator {
        let schema = crd
            .pointer("/spec/versions/0/schema/openAPIV3Schema")
            .cloned()
            .unwrap_or(Value::Null);
        let mut converted = to_json_schema(&schema);
        if let Some(o) = converted.as_object_mut() {
            // apiVersion, kind and metadata are the API server's, not in the schema:
            // known at the top, anything else there is refused (strict validation).
            if let Some(Value::Object(props)) = o.get_mut("properties") {
                props.insert("apiVersion".into(), json!({"type": "string"}));
                props.insert("kind".into(), json!({"type": "string"}));
                props.insert("metadata".into(), json!({"type": "object"}));
            }
            o.insert(
                "$schema".into(),
                json!("https://json-schema.org/draft/2020-12/schema"),
            );
        }
        let structural = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(false)
            .build(&converted)
            .map_err(|e| format!("the CRD schema does not compile: {e}"));
        CrdValidator { schema, structural }
    }

    /// The CloudflareContainer CRD's validator.
    pub fn container() -> &'static CrdValidator {
        static V: OnceLock<CrdValidator> = OnceLock::new();
        V.get_or_init(|| {
            CrdValidator::new(&serde_json::to_value(super::container_crd()).unwrap_or_default())
        })
    }

    /// The CloudflareWorker CRD's validator.
    pub fn worker() -> &'static CrdValidator {
        static V: OnceLock<CrdValidator> = OnceLock::new();
        V.get_or_init(|| {
            CrdValidator::new(&serde_json::to_value(super::worker_crd()).unwrap_or_default())
        })
    }

    /// Every way `object` (the whole document) breaks the CRD, each naming its field.
    pub fn violations(&self, object: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        match &self.structural {
            Ok(v) => {
                for e in v.iter_errors(object) {
                    let path = e.instance_path().to_string();
                    let field = field_of(&path);
                    out.push(FieldError {
                        field: if field.is_empty() {
                            "(document)".into()
                        } else {
                            field
                        },
                        message: e.to_string(),
                    });
                }
            }
            Err(e) => out.push(FieldError {
                field: "(schema)".into(),
                message: e.clone(),
            }),
        }
        // CEL rules run on structurally valid objects only, as the API server's do.
        if out.is_empty() {
            rules(&self.schema, object, "", &mut out);
        }
        out
    }
}

/// A JSON pointer as the field paths of errors read: `/spec/env/0/name` →
/// `spec.env[0].name` (the form the CEL rules' and the hand checks' errors use).
fn field_of(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        if !segment.is_empty() && segment.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment.replace("~1", "/").replace("~0", "~"));
        }
    }
    out
}

/// OpenAPI v3 (Kubernetes flavour) → JSON Schema: `nullable`, and objects with
/// declared properties closed (unknown fields refused, as kubectl's strict field
/// validation does) unless they keep unknown fields.
fn to_json_schema(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(to_json_schema).collect()),
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, val) in o {
                if k.starts_with("x-kubernetes-") || k == "nullable" {
                    continue;
                }
                let converted = match k.as_str() {
                    "properties" => match val.as_object() {
                        Some(props) => Value::Object(
                            props
                                .iter()
                                .map(|(name, s)| (name.clone(), to_json_schema(s)))
                                .collect(),
                        ),
                        None => val.clone(),
                    },
                    "enum" | "required" | "default" | "description" => val.clone(),
                    _ => to_json_schema(val),
                };
                out.insert(k.clone(), converted);
            }
            let keeps_unknown = o.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
            if o.contains_key("properties")
                && !o.contains_key("additionalProperties")
                && !keeps_unknown
            {
                out.insert("additionalProperties".into(), json!(false));
            }
            if o.get("nullable") == Some(&json!(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([t, "null"]));
                }
                if let Some(Value::Array(e)) = out.get_mut("enum")
                    && !e.contains(&Value::Null)
                {
                    e.push(Value::Null);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Evaluates the `x-kubernetes-validations` of `schema` on `value` (at `path`), then
/// of every nested schema on the values present.
fn rules(schema: &Value, value: &Value, path: &str, out: &mut Vec<FieldError>) {
    if value.is_null() {
        return;
    }
    let here = if path.is_empty() { "(document)" } else { path };
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = rule["rule"].as_str().unwrap_or("");
        let message = rule["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("failed rule: {text}"));
        match evaluate(text, value) {
            Ok(true) => {}
            Ok(false) => out.push(FieldError {
                field: here.to_string(),
                message,
            }),
            Err(e) => out.push(FieldError {
                field: here.to_string(),
                message: format!("{message} (rule {text:?} could not be evaluated: {e})"),
            }),
        }
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), value.as_object()) {
        for (k, s) in props {
            if let Some(v) = obj.get(k) {
                rules(s, v, &join(k), out);
            }
        }
    }
    if let (Some(s), Some(obj)) = (
        schema.get("additionalProperties").filter(|s| s.is_object()),
        value.as_object(),
    ) {
        for (k, v) in obj {
            rules(s, v, &join(k), out);
        }
    }
    if let (Some(s), Some(items)) = (schema.get("items"), value.as_array()) {
        if schema["x-kubernetes-list-type"] == "map" {
            duplicate_keys(schema, items, here, out);
        }
        for (i, v) in items.iter().enumerate() {
            rules(s, v, &format!("{path}[{i}]"), out);
        }
    }
}

/// A list map (`x-kubernetes-list-type: map`) holds one entry per key, as the API
/// server insists.
fn duplicate_keys(schema: &Value, items: &[Value], path: &str, out: &mut Vec<FieldError>) {
    let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let key: Vec<&Value> = keys.iter().map(|k| &item[*k]).collect();
        if !seen.insert(serde_json::to_string(&key).unwrap_or_default()) {
            let shown: Vec<String> = keys
                .iter()
                .zip(&key)
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            out.push(FieldError {
                field: format!("{path}[{i}]"),
                message: format!("Duplicate value: {{{}}}", shown.join(", ")),
            });
        }
    }
}

/// One CEL rule with `self` bound to `value`.
fn evaluate(rule: &str, value: &Value) -> Result<bool, String> {
    let program = cel_interpreter::Program::compile(rule).map_err(|e| e.to_string())?;
    let mut context = cel_interpreter::Context::default();
    let bound = cel_interpreter::to_value(value).map_err(|e| e.to_string())?;
    context
        .add_variable("self", bound)
        .map_err(|e| e.to_string())?;
    match program.execute(&context) {
        Ok(cel_interpreter::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("the rule gave {other:?}, not a boolean")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(spec: Value) -> Value {
        json!({"apiVersion": "flaredock.dev/v1alpha1", "kind": "CloudflareContainer",
               "metadata": {"name": "shop", "namespace": "apps"}, "spec": spec})
    }

    #[test]
    fn structure_and_cel_rules_name_the_field() {
        let v = CrdValidator::container();
        let good = container(
            json!({"className": "Shop", "image": {"reference": "shop:v1"}, "worker": {"scriptName": "w"}}),
        );
        assert!(v.violations(&good).is_empty(), "{:?}", v.violations(&good));
        let both = container(
            json!({"className": "Shop", "image": {"reference": "shop:v1"}, "build": {"context": "."}, "worker": {"scriptName": "w"}}),
        );
        let found = v.violations(&both);
        assert!(
            found
                .iter()
                .any(|e| e.field == "spec" && e.message.contains("exactly one of image or build")),
            "{found:?}"
        );
        let typo = container(
            json!({"className": "Shop", "image": {"reference": "shop:v1"}, "worker": {"scriptName": "w"}, "maxInstance": 3}),
        );
        let found = v.violations(&typo);
        assert!(
            found.iter().any(|e| e.message.contains("maxInstance")),
            "{found:?}"
        );
        let env = container(
            json!({"className": "Shop", "image": {"reference": "shop:v1"}, "worker": {"scriptName": "w"}, "env": [{"name": "9X", "value": "1"}]}),
        );
        let found = v.violations(&env);
        assert!(
            found.iter().any(|e| e.field == "spec.env[0].name"),
            "{found:?}"
        );
        let both = container(
            json!({"className": "Shop", "image": {"reference": "shop:v1"}, "worker": {"scriptName": "w"},
                   "env": [{"name": "A", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}),
        );
        let found = v.violations(&both);
        assert!(
            found.iter().any(|e| e.field == "spec.env[0]"
                && e.message.contains("exactly one of value or valueFrom")),
            "{found:?}"
        );
        let twice = container(
            json!({"className": "Shop", "image": {"reference": "shop:v1"}, "worker": {"scriptName": "w"},
                   "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}),
        );
        let found = v.violations(&twice);
        assert!(
            found
                .iter()
                .any(|e| e.field == "spec.env[1]" && e.message.contains("Duplicate value")),
            "{found:?}"
        );
    }
}

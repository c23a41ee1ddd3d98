//! OpenAPI 3.0 → JSON Schema 2020-12, as the module docs of [`super`] say: the
//! conversion itself, the request and response views (`readOnly`, `writeOnly`), and
//! the closing of every use site (`unevaluatedProperties: false`).

use serde_json::{Map, Value, json};

/// OpenAPI 3.0 schema → JSON Schema 2020-12.
pub fn convert(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(convert).collect()),
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, val) in o {
                match k.as_str() {
                    "nullable" | "discriminator" | "example" => {}
                    "oneOf" => {
                        out.insert("anyOf".into(), convert(val));
                    }
                    _ => {
                        out.insert(k.clone(), convert(val));
                    }
                }
            }
            if o.get("nullable") == Some(&Value::Bool(true)) {
                match out.get_mut("type") {
                    Some(Value::String(t)) => {
                        let t = t.clone();
                        out.insert("type".into(), json!([t, "null"]));
                    }
                    _ => {
                        let inner = Value::Object(out);
                        return json!({"anyOf": [inner, {"type": "null"}]});
                    }
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

/// Which side of an exchange a schema is checked for.
#[derive(Clone, Copy)]
pub(super) enum Side {
    /// A request body: server-filled properties are not required.
    Request,
    /// An answer: `writeOnly` properties are not required.
    Response,
    /// Every `required` holds.
    Any,
}

/// Drops from every `required` list the `writeOnly` properties: a server does not
/// send them back (OpenAPI 3.0).
pub(super) fn relax_write_only(v: &mut Value) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(relax_write_only),
        Value::Object(o) => {
            let write_only: Vec<String> = o
                .get("properties")
                .and_then(Value::as_object)
                .map(|props| {
                    props
                        .iter()
                        .filter(|(_, p)| p.get("writeOnly") == Some(&Value::Bool(true)))
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            if !write_only.is_empty()
                && let Some(Value::Array(req)) = o.get_mut("required")
            {
                req.retain(|r| {
                    r.as_str()
                        .is_none_or(|r| !write_only.iter().any(|s| s == r))
                });
            }
            o.values_mut().for_each(relax_write_only);
        }
        _ => {}
    }
}

/// Drops from every `required` list the properties the server fills in (`readOnly`,
/// or marked `computed_optional`): they are not required in a request.
pub(super) fn relax_server_fields(v: &mut Value) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(relax_server_fields),
        Value::Object(o) => {
            let server: Vec<String> = o
                .get("properties")
                .and_then(Value::as_object)
                .map(|props| {
                    props
                        .iter()
                        .filter(|(_, p)| {
                            p.get("readOnly") == Some(&Value::Bool(true))
                                || p.get("x-stainless-terraform-configurability")
                                    == Some(&json!("computed_optional"))
                        })
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            if !server.is_empty()
                && let Some(Value::Array(req)) = o.get_mut("required")
            {
                req.retain(|r| r.as_str().is_none_or(|r| !server.iter().any(|s| s == r)));
            }
            o.values_mut().for_each(relax_server_fields);
        }
        _ => {}
    }
}

/// How a schema constrains the fields of an object.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fields {
    /// Not an object schema, or says nothing about fields.
    Silent,
    /// Declares its fields (`properties`, `additionalProperties`, `patternProperties`).
    Declared,
    /// Admits any field (a free-form `anyOf` branch): must stay open.
    Free,
}

/// What `schema` (following `$ref`s in the document `root`) says about fields.
fn fields(schema: &Value, root: &Value, depth: usize) -> Fields {
    let Some(o) = schema.as_object() else {
        return Fields::Silent;
    };
    if depth > 24 {
        return Fields::Free;
    }
    if o.get("additionalProperties") == Some(&Value::Bool(true)) {
        return Fields::Free;
    }
    let mut result = if ["properties", "additionalProperties", "patternProperties"]
        .iter()
        .any(|k| o.contains_key(*k))
    {
        Fields::Declared
    } else {
        Fields::Silent
    };
    if let Some(target) = o.get("$ref").and_then(Value::as_str) {
        let resolved = target.strip_prefix('#').and_then(|p| root.pointer(p));
        match resolved.map(|r| fields(r, root, depth + 1)) {
            Some(Fields::Free) | None => return Fields::Free,
            Some(Fields::Declared) => result = Fields::Declared,
            Some(Fields::Silent) => {}
        }
    }
    for (key, is_choice) in [("allOf", false), ("anyOf", true)] {
        let Some(branches) = o.get(key).and_then(Value::as_array) else {
            continue;
        };
        for b in branches {
            match fields(b, root, depth + 1) {
                Fields::Free => return Fields::Free,
                Fields::Declared => result = Fields::Declared,
                // A bare object alternative admits anything.
                Fields::Silent
                    if is_choice && b.get("type") == Some(&Value::String("object".into())) =>
                {
                    return Fields::Free;
                }
                Fields::Silent => {}
            }
        }
    }
    result
}

/// `schema`, refusing fields it does not declare (when it declares some); `$ref`s
/// resolve in the document `root`.
pub(super) fn closed(schema: Value, root: &Value) -> Value {
    if fields(&schema, root, 0) == Fields::Declared {
        json!({"allOf": [schema], "unevaluatedProperties": false})
    } else {
        schema
    }
}

/// Closes the use sites inside every schema of an OpenAPI document.
pub(super) fn close_document(doc: &mut Value) {
    let root = doc.clone();
    close_in(doc, &root, false);
}

/// Walks a document (`in_schema` false) or a schema (true), closing use sites.
fn close_in(v: &mut Value, root: &Value, in_schema: bool) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(|x| close_in(x, root, in_schema)),
        Value::Object(o) if !in_schema => {
            for (k, x) in o.iter_mut() {
                match k.as_str() {
                    "schema" => close_in(x, root, true),
                    "schemas" | "definitions" => {
                        if let Some(m) = x.as_object_mut() {
                            m.values_mut().for_each(|s| close_in(s, root, true));
                        }
                    }
                    _ => close_in(x, root, false),
                }
            }
        }
        Value::Object(o) => {
            hoist_shared_properties(o, root);
            for (k, x) in o.iter_mut() {
                match k.as_str() {
                    "properties" | "patternProperties" => {
                        if let Some(m) = x.as_object_mut() {
                            for s in m.values_mut() {
                                close_in(s, root, true);
                                *s = closed(s.take(), root);
                            }
                        }
                    }
                    "items" | "additionalProperties" if x.is_object() => {
                        close_in(x, root, true);
                        *x = closed(x.take(), root);
                    }
                    "allOf" | "anyOf" => close_in(x, root, true),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// A field that several `allOf` branches describe (the upload's `metadata`) moves up
/// to the `allOf`'s own `properties` as the conjunction of its descriptions, so that
/// closing it sees all of them; the branches involved are inlined without it. The
/// schema means the same.
fn hoist_shared_properties(o: &mut Map<String, Value>, root: &Value) {
    let Some(branches) = o.get("allOf").and_then(Value::as_array) else {
        return;
    };
    let resolve = |b: &Value| -> Value {
        match b.get("$ref").and_then(Value::as_str) {
            Some(r) if b.as_object().is_some_and(|m| m.len() == 1) => r
                .strip_prefix('#')
                .and_then(|p| root.pointer(p))
                .cloned()
                .unwrap_or_else(|| b.clone()),
            _ => b.clone(),
        }
    };
    let inlined: Vec<Value> = branches.iter().map(resolve).collect();
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    for b in &inlined {
        if let Some(props) = b.get("properties").and_then(Value::as_object) {
            for name in props.keys() {
                *seen.entry(name.clone()).or_default() += 1;
            }
        }
    }
    let shared: Vec<String> = seen
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k)
        .collect();
    if shared.is_empty() {
        return;
    }
    let mut hoisted: Map<String, Value> = Map::new();
    let mut new_branches = Vec::new();
    for (mut inline, original) in inlined.into_iter().zip(branches) {
        let mut touched = false;
        if let Some(props) = inline.get_mut("properties").and_then(Value::as_object_mut) {
            for name in &shared {
                if let Some(sub) = props.remove(name) {
                    touched = true;
                    let entry = hoisted
                        .entry(name.clone())
                        .or_insert_with(|| json!({"allOf": []}));
                    if let Some(all) = entry.get_mut("allOf").and_then(Value::as_array_mut) {
                        all.push(sub);
                    }
                }
            }
        }
        new_branches.push(if touched { inline } else { original.clone() });
    }
    o.insert("allOf".into(), Value::Array(new_branches));
    let own = o
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(own) = own.as_object_mut() {
        for (name, sub) in hoisted {
            match own.remove(&name) {
                Some(existing) => {
                    own.insert(name, json!({"allOf": [existing, sub]}));
                }
                None => {
                    own.insert(name, sub);
                }
            }
        }
    }
}

//! The official Cloudflare API extract (`cloudflare-api/` in the repository, embedded)
//! as JSON Schema, so that the emulator checks requests against Cloudflare's contract
//! rather than against flaredock's own types. The contract tests use it too.
//!
//! OpenAPI 3.0 is turned into JSON Schema 2020-12 the usual way: `nullable` becomes a
//! `null` type; `oneOf` becomes `anyOf` (the extract's `oneOf`s overlap, e.g. the two
//! migration forms, so exclusivity cannot hold for any valid value); binding kinds the
//! extract omits are matched by their `type` through the discriminator mapping.
//!
//! **Unknown fields are refused.** The extract never says `additionalProperties:
//! false`, so taken literally it accepts `max_instance` for `max_instances`. Cloudflare
//! answers such a body with a validation error, so the converted schemas are *closed*
//! at every use site: a request or response body, each property, array item and map
//! value whose schema declares properties gets `unevaluatedProperties: false` around it
//! (not inside `allOf` branches, which would refuse each other's fields). A schema that
//! is free-form somewhere (an `anyOf` branch of bare `type: object`) stays open.
//!
//! The one widening: [`WRANGLER_SENT`], fields `wrangler deploy` always sends that
//! the official schema lacks, taken from wrangler's own client definitions.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

/// The containers extract, as vendored.
pub const CONTAINERS_JSON: &str =
    include_str!("../../cloudflare-api/containers-openapi-subset.json");
/// The Workers and Durable Objects extract, as vendored.
pub const WORKERS_JSON: &str = include_str!("../../cloudflare-api/workers-openapi-subset.json");
/// Workers routing (subdomains, routes, custom domains), schedules, storage and zones.
pub const ROUTING_JSON: &str =
    include_str!("../../cloudflare-api/workers-routing-storage-openapi-subset.json");

/// Fields `wrangler deploy` sends that the official schema does not list, which
/// Cloudflare accepts and returns: `(official schema, property, wrangler's own
/// definition holding it)`. Each is copied from wrangler's client
/// (`x-workers-sdk-internal-client` of the same extract), never retyped:
/// `constraints.tiers` (wrangler sends `[1, 2]` unless told otherwise).
pub const WRANGLER_SENT: &[(&str, &str, &str)] = &[(
    "cc_ApplicationConstraints",
    "tiers",
    "ApplicationConstraints",
)];

/// Adds the [`WRANGLER_SENT`] properties to their official schemas.
fn wrangler_sent(doc: &mut Value) {
    for (schema, property, definition) in WRANGLER_SENT {
        let Some(field) = doc
            .pointer(&format!(
                "/x-workers-sdk-internal-client/definitions/{definition}/properties/{property}"
            ))
            .cloned()
        else {
            continue;
        };
        if let Some(props) = doc
            .pointer_mut(&format!("/components/schemas/{schema}/properties"))
            .and_then(Value::as_object_mut)
        {
            props.insert((*property).to_string(), field);
        }
    }
}

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

/// One converted OpenAPI document.
pub struct Spec {
    pub doc: Value,
    components: Value,
    /// The components as a request sees them: a property the server fills in
    /// (`readOnly`, or `computed_optional` for Cloudflare's Terraform generator) is
    /// not required in a request, as OpenAPI 3.0 says of `readOnly`.
    request_components: Value,
    /// The components as an answer sees them: a `writeOnly` property (a secret's
    /// `text`) is not required in a response, as OpenAPI 3.0 says of `writeOnly`.
    response_components: Value,
    /// wrangler's internal client definitions (`x-workers-sdk-internal-client`).
    internal: Value,
    /// Compiled validators, by operation (request bodies) or by schema text.
    compiled:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

impl Spec {
    /// Parses and converts an extract (`CONTAINERS_JSON`, `WORKERS_JSON`).
    pub fn parse(text: &str) -> Spec {
        let mut doc: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        // Omitted binding kinds: match them by their discriminator value.
        let mapping: Vec<(String, String)> = doc
            .pointer("/components/schemas/workers_binding_item/discriminator/mapping")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(kind, r)| {
                        let name = r.as_str().unwrap_or("").rsplit('/').next().unwrap_or("");
                        (kind.clone(), name.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(schemas) = doc
            .pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut)
        {
            // The routing and storage extract holds every binding kind, verbatim.
            let full: Value = serde_json::from_str(crate::spec::bindings::ROUTING_STORAGE_JSON)
                .unwrap_or_default();
            for (kind, schema_name) in mapping {
                if let Some(s) = schemas.get_mut(&schema_name)
                    && s.get("x-omitted-from-subset").is_some()
                {
                    *s = match full.pointer(&format!("/components/schemas/{schema_name}")) {
                        Some(official) if official.get("x-omitted-from-subset").is_none() => {
                            official.clone()
                        }
                        _ => {
                            json!({"type": "object", "properties": {"type": {"const": kind}}, "required": ["type", "name"]})
                        }
                    };
                }
            }
        }
        wrangler_sent(&mut doc);
        let mut doc = convert(&doc);
        close_document(&mut doc);
        let components = doc["components"].clone();
        let mut request_components = components.clone();
        relax_server_fields(&mut request_components);
        let mut response_components = components.clone();
        relax_write_only(&mut response_components);
        let internal = json!({"definitions": doc
            .pointer("/x-workers-sdk-internal-client/definitions")
            .cloned()
            .unwrap_or(Value::Null)});
        Spec {
            doc,
            components,
            request_components,
            response_components,
            internal,
            compiled: Default::default(),
        }
    }

    /// The Workers extract, parsed once.
    pub fn workers() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(|| Spec::parse(WORKERS_JSON))
    }

    /// The routing extract, parsed once.
    pub fn routing() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(|| Spec::parse(ROUTING_JSON))
    }

    /// The extract that describes `method path` (relative to the API root), and whether
    /// it is the containers one.
    pub fn for_request(method: &str, path: &str) -> (&'static Spec, bool) {
        if path.contains("/containers/") {
            (Spec::containers(), true)
        } else if Spec::routing().operation(method, path).is_some() {
            (Spec::routing(), false)
        } else {
            (Spec::workers(), false)
        }
    }

    /// The containers extract, parsed once.
    pub fn containers() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(|| Spec::parse(CONTAINERS_JSON))
    }

    /// A schema of this document by JSON pointer (e.g.
    /// `/components/schemas/workers_containers`).
    pub fn at(&self, pointer: &str) -> Option<&Value> {
        self.doc.pointer(pointer)
    }

    /// The operation of a request path (relative to the API root) and method.
    pub fn operation(&self, method: &str, path: &str) -> Option<(String, &Value)> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        for (template, ops) in self.doc["paths"].as_object()? {
            let tsegs: Vec<&str> = template.trim_matches('/').split('/').collect();
            if tsegs.len() != segs.len() {
                continue;
            }
            let matches = tsegs
                .iter()
                .zip(&segs)
                .all(|(t, s)| (t.starts_with('{') && t.ends_with('}')) || t == s);
            if matches && let Some(op) = ops.get(method.to_lowercase()) {
                return Some((template.clone(), op));
            }
        }
        None
    }

    fn compile(&self, schema: &Value, side: Side) -> Result<jsonschema::Validator, String> {
        let mut schema = closed(schema.clone(), &self.doc);
        match side {
            Side::Request => relax_server_fields(&mut schema),
            Side::Response => relax_write_only(&mut schema),
            Side::Any => {}
        }
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": "#/$defs/target",
            "$defs": {"target": schema},
            "components": match side {
                Side::Request => &self.request_components,
                Side::Response => &self.response_components,
                Side::Any => &self.components,
            },
            "x-workers-sdk-internal-client": self.internal,
        });
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(false)
            .build(&root)
            .map_err(|e| format!("the schema does not compile: {e}"))
    }

    /// Every violation of the JSON request body of `method path` (relative to the API
    /// root) against its operation's official schema; nothing for an operation the
    /// extract does not describe or one without a JSON body.
    pub fn request_violations(&self, method: &str, path: &str, body: &Value) -> Vec<String> {
        let Some((_, op)) = self.operation(method, path) else {
            return vec![];
        };
        let Some(schema) = op.pointer("/requestBody/content/application~1json/schema") else {
            return vec![];
        };
        let key = format!("request {}", op["operationId"].as_str().unwrap_or(path));
        match self.validator(key, schema, Side::Request) {
            Ok(v) => describe(&v, body, "body"),
            Err(e) => vec![e],
        }
    }

    /// The compiled validator of `schema`, compiled once per `key` (compiling the
    /// closed, converted schema is what costs; the suite checks every exchange).
    fn validator(
        &self,
        key: String,
        schema: &Value,
        side: Side,
    ) -> Result<std::sync::Arc<jsonschema::Validator>, String> {
        if let Some(v) = crate::lock(&self.compiled).get(&key) {
            return Ok(v.clone());
        }
        let v = std::sync::Arc::new(self.compile(schema, side)?);
        crate::lock(&self.compiled).insert(key, v.clone());
        Ok(v)
    }

    /// Every violation of `schema` by `instance` as a request body (server-filled
    /// fields not required), each naming the field (`what` prefixes the path). A
    /// schema that does not compile is one violation.
    pub fn request_body_violations(
        &self,
        schema: &Value,
        instance: &Value,
        what: &str,
    ) -> Vec<String> {
        match self.validator(format!("request {schema}"), schema, Side::Request) {
            Ok(v) => describe(&v, instance, what),
            Err(e) => vec![format!("{what}: {e}")],
        }
    }

    /// Every violation of `schema` by `instance` (a response: every `required` holds).
    pub fn violations(&self, schema: &Value, instance: &Value, what: &str) -> Vec<String> {
        match self.validator(schema.to_string(), schema, Side::Any) {
            Ok(v) => describe(&v, instance, what),
            Err(e) => vec![format!("{what}: {e}")],
        }
    }

    /// Every violation of `schema` by `instance` as an answer of the server: every
    /// `required` holds except a `writeOnly` property's (Cloudflare never sends a
    /// secret's `text` back).
    pub fn response_violations(&self, schema: &Value, instance: &Value, what: &str) -> Vec<String> {
        match self.validator(format!("response {schema}"), schema, Side::Response) {
            Ok(v) => describe(&v, instance, what),
            Err(e) => vec![format!("{what}: {e}")],
        }
    }
}

/// Which side of an exchange a schema is checked for.
#[derive(Clone, Copy)]
enum Side {
    /// A request body: server-filled properties are not required.
    Request,
    /// An answer: `writeOnly` properties are not required.
    Response,
    /// Every `required` holds.
    Any,
}

/// Drops from every `required` list the `writeOnly` properties: a server does not
/// send them back (OpenAPI 3.0).
fn relax_write_only(v: &mut Value) {
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
fn relax_server_fields(v: &mut Value) {
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
fn closed(schema: Value, root: &Value) -> Value {
    if fields(&schema, root, 0) == Fields::Declared {
        json!({"allOf": [schema], "unevaluatedProperties": false})
    } else {
        schema
    }
}

/// Closes the use sites inside every schema of an OpenAPI document.
fn close_document(doc: &mut Value) {
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

/// The violations a validator finds, each naming the field.
fn describe(validator: &jsonschema::Validator, instance: &Value, what: &str) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| {
            let path = e.instance_path().to_string();
            let field = path.trim_start_matches('/').replace('/', ".");
            if field.is_empty() {
                format!("{what}: {e}")
            } else {
                format!("{what}.{field}: {e}")
            }
        })
        .collect()
}

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
    fn wrangler_sent_tiers_are_accepted_in_constraints() {
        let spec = Spec::containers();
        let schema = json!({"$ref": "#/components/schemas/cc_ApplicationConstraints"});
        assert!(
            spec.violations(&schema, &json!({"tiers": [1, 2]}), "c")
                .is_empty()
        );
        assert!(
            !spec
                .violations(&schema, &json!({"tier": 1}), "c")
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

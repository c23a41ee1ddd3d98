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
//!
//! **The parts.** This file holds the extracts and [`Spec`], a converted document with
//! its per-operation lookups and validators; `convert.rs` the conversion (OpenAPI →
//! JSON Schema, the closing of objects, the request and response views);
//! `metadata.rs` the checks of a Worker upload's `metadata` part
//! ([`upload_metadata_violations`], [`version_metadata_violations`]) and the renamed
//! binding fields.

use std::sync::OnceLock;

use serde_json::{Value, json};

/// The containers extract, as vendored.
pub const CONTAINERS_JSON: &str =
    include_str!("../../../cloudflare-api/containers-openapi-subset.json");
/// The Workers and Durable Objects extract, as vendored.
pub const WORKERS_JSON: &str = include_str!("../../../cloudflare-api/workers-openapi-subset.json");
/// Workers routing (subdomains, routes, custom domains), schedules, storage and zones.
pub const ROUTING_JSON: &str =
    include_str!("../../../cloudflare-api/workers-routing-storage-openapi-subset.json");

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

mod convert;
mod metadata;

pub use convert::convert;
use convert::{Side, close_document, closed, relax_server_fields, relax_write_only};
pub use metadata::{
    VERSION_UPLOAD, VERSION_UPLOAD_FROM_SCRIPT_UPLOAD, multipart_metadata_violations,
    rename_binding_fields, renamed_binding_fields, upload_metadata_violations,
    version_metadata_violations,
};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}

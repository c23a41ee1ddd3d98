//! Contract tests: every request the client sends and every response the emulator
//! returns in this suite is validated against the schema that Cloudflare's official
//! OpenAPI extract (`shared/cloudflare-api/`) declares for that operation and status.
//!
//! OpenAPI 3.0 is turned into JSON Schema 2020-12 the usual way: `nullable` becomes a
//! `null` type; `oneOf` becomes `anyOf` (the extract's `oneOf`s overlap, e.g. the two
//! migration forms, so exclusivity cannot hold for any valid value); binding kinds the
//! extract omits are matched by their `type` through the discriminator mapping.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use flaredock::cloudflare::types::*;
use flaredock::cloudflare::{ApiError, CLOUDFLARE_REGISTRY};
use flaredock::emulator::{DEMO_CLASS, DEMO_SCRIPT, ScriptedFault};
use serde_json::{Map, Value, json};

fn shared_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for candidate in [
        here.join("../shared/cloudflare-api"),
        here.join("shared/cloudflare-api"),
    ] {
        if candidate.join("containers-openapi-subset.json").exists() {
            return candidate;
        }
    }
    panic!(
        "the official API extract is missing: expected ../shared/cloudflare-api next to the repository"
    );
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(shared_dir().join(name)).expect("read the API extract");
    serde_json::from_str(&text).expect("parse the API extract")
}

/// OpenAPI 3.0 schema → JSON Schema 2020-12.
fn convert(v: &Value) -> Value {
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

struct Spec {
    doc: Value,
    components: Value,
    prefix: &'static str,
}

impl Spec {
    fn new(name: &str, prefix: &'static str) -> Spec {
        let mut doc = load(name);
        // Omitted binding kinds: match them by their discriminator value.
        let mapping: Vec<(String, String)> = doc
            .pointer("/components/schemas/workers_binding_item/discriminator/mapping")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(kind, r)| {
                        (
                            kind.clone(),
                            r.as_str()
                                .unwrap_or("")
                                .rsplit('/')
                                .next()
                                .unwrap_or("")
                                .to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(schemas) = doc
            .pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut)
        {
            for (kind, schema_name) in mapping {
                if let Some(s) = schemas.get_mut(&schema_name)
                    && s.get("x-omitted-from-subset").is_some()
                {
                    *s = json!({"type": "object", "properties": {"type": {"const": kind}}, "required": ["type", "name"]});
                }
            }
        }
        let doc = convert(&doc);
        let components = doc["components"].clone();
        Spec {
            doc,
            components,
            prefix,
        }
    }

    /// The operation for a request path (without `/client/v4`) and method.
    fn operation(&self, method: &str, path: &str) -> Option<(String, &Value)> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        for (template, ops) in self.doc["paths"].as_object()? {
            if !template.starts_with(self.prefix) && !template.contains(self.prefix) {
                continue;
            }
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

    fn validate(&self, schema: &Value, instance: &Value, what: &str) -> Vec<String> {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": "#/$defs/target",
            "$defs": {"target": schema},
            "components": self.components,
        });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(false)
            .build(&root)
            .unwrap_or_else(|e| panic!("schema for {what} does not compile: {e}"));
        validator
            .iter_errors(instance)
            .map(|e| format!("{what}: {} at {}", e, e.instance_path()))
            .collect()
    }
}

fn settings_part(content_type: &str, body: &[u8]) -> Value {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("multipart boundary")
        .trim_matches('"');
    let text = String::from_utf8_lossy(body);
    for part in text.split(&format!("--{boundary}")) {
        if part.contains("name=\"settings\"") {
            let (headers, content) = part.split_once("\r\n\r\n").expect("part body");
            assert!(
                headers.to_lowercase().contains("application/json"),
                "settings part must be application/json: {headers}"
            );
            return serde_json::from_str(content.trim_end_matches("\r\n"))
                .expect("settings part is JSON");
        }
    }
    panic!("no settings part in the multipart body");
}

#[tokio::test]
async fn every_exchange_matches_the_official_schema() {
    let containers = Spec::new("containers-openapi-subset.json", "/containers");
    let workers = Spec::new("workers-openapi-subset.json", "/workers");
    let em = common::start_emulator(|c| c.capture_bodies = true).await;
    let client = common::client_for(&em);

    // Containers and Workers operations, successes and failures.
    assert!(client.list_applications().await.unwrap().is_empty());
    let creds = client
        .registry_credentials(
            CLOUDFLARE_REGISTRY,
            &[RegistryPermission::Pull, RegistryPermission::Push],
            15,
        )
        .await
        .unwrap();
    assert_eq!(creds.registry_host, em.registry_host());
    assert!(client.list_namespaces().await.unwrap().is_empty());
    let settings = client.get_script_settings(DEMO_SCRIPT).await.unwrap();
    let patched = client
        .patch_script_settings(
            DEMO_SCRIPT,
            &ScriptSettings {
                bindings: settings
                    .bindings
                    .iter()
                    .map(|b| Binding::inherit(&b.name))
                    .chain([Binding::durable_object("HELLO", DEMO_CLASS)])
                    .collect(),
                migrations: Some(Migrations {
                    new_sqlite_classes: vec![DEMO_CLASS.into()],
                    ..Default::default()
                }),
                compatibility_date: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.bindings.len(), 1);
    let namespaces = client.list_namespaces().await.unwrap();
    assert_eq!(namespaces.len(), 1);
    let image = format!("{}/{}/hello:v1", em.registry_host(), em.account_id());
    let request = CreateApplicationRequest {
        name: "contract".into(),
        scheduling_policy: SchedulingPolicy::Default,
        instances: 0,
        max_instances: Some(3),
        configuration: DeploymentConfiguration {
            image: image.clone(),
            instance_type: Some(InstanceType::Lite),
            environment_variables: Some(vec![EnvironmentVariable {
                name: "A".into(),
                value: "1".into(),
            }]),
            labels: Some(vec![Label {
                name: "flaredock.dev/owner".into(),
                value: "default.contract".into(),
            }]),
            ..Default::default()
        },
        constraints: Some(ApplicationConstraints {
            regions: Some(vec!["WEUR".into()]),
            jurisdiction: Some("eu".into()),
        }),
        durable_objects: Some(DurableObjectsConfiguration::ScriptAndClass {
            script_name: DEMO_SCRIPT.into(),
            class_name: DEMO_CLASS.into(),
        }),
        observability: Some(Observability {
            logs: Some(ObservabilityLogs {
                enabled: Some(true),
            }),
        }),
        rollout_active_grace_period: Some(0),
    };
    let app = client.create_application(&request).await.unwrap();
    assert!(matches!(
        client.create_application(&request).await,
        Err(ApiError::NameTaken { .. })
    ));
    let mut other = request.clone();
    other.name = "contract-2".into();
    other.durable_objects = Some(DurableObjectsConfiguration::NamespaceId {
        namespace_id: namespaces[0].id.clone(),
    });
    assert!(matches!(
        client.create_application(&other).await,
        Err(ApiError::NamespaceHasApplication { .. })
    ));
    assert_eq!(
        client.get_application(&app.id).await.unwrap().name,
        "contract"
    );
    let modified = client
        .modify_application(
            &app.id,
            &ModifyApplicationRequest {
                max_instances: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(modified.max_instances, Some(5));
    let rollout = client
        .create_rollout(
            &app.id,
            &CreateRolloutRequest {
                description: "contract".into(),
                strategy: RolloutStrategy::Rolling,
                kind: Some(RolloutKind::FullAuto),
                step_percentage: Some(50),
                steps: None,
                target_configuration: DeploymentConfiguration {
                    image,
                    instance_type: Some(InstanceType::Basic),
                    ..Default::default()
                },
            },
        )
        .await
        .unwrap();
    assert_eq!(rollout.status, RolloutStatus::Progressing);
    assert!(!client.list_versions(&app.id).await.unwrap().is_empty());
    assert!(matches!(
        client.get_application("nope").await,
        Err(ApiError::NotFound { .. })
    ));
    assert!(matches!(
        client.get_script_settings("no-such-script").await,
        Err(ApiError::NotFound { .. })
    ));
    em.shared.push_fault(None, ScriptedFault::RateLimit(1));
    assert!(
        client.list_applications().await.is_ok(),
        "a 429 is waited out and retried"
    );
    let bad = common::client_with(&em, |c| {
        c.token = flaredock::cloudflare::Secret::new("wrong")
    });
    assert!(matches!(
        bad.list_applications().await,
        Err(ApiError::Unauthorized { .. })
    ));
    assert!(client.delete_application(&app.id).await.unwrap());
    assert!(
        !client.delete_application(&app.id).await.unwrap(),
        "a second delete finds it gone"
    );

    // Validate every exchange.
    let exchanges = em.shared.exchanges();
    assert!(
        exchanges.len() >= 20,
        "only {} exchanges captured",
        exchanges.len()
    );
    let mut problems = Vec::new();
    let mut covered = BTreeSet::new();
    for x in &exchanges {
        let path = x.path.strip_prefix("/client/v4").expect("API path");
        let spec = if path.contains("/containers/") {
            &containers
        } else {
            &workers
        };
        let Some((template, op)) = spec.operation(&x.method, path) else {
            problems.push(format!(
                "{} {path}: no such operation in the official extract",
                x.method
            ));
            continue;
        };
        let op_id = op["operationId"].as_str().unwrap_or("?").to_string();
        covered.insert(op_id.clone());
        let what = format!("{op_id} ({} {template})", x.method);
        // The request.
        if let Some(content) = op.pointer("/requestBody/content") {
            if let Some(schema) = content.pointer("/application~1json/schema") {
                let body: Value = serde_json::from_slice(&x.request_body).expect("request is JSON");
                problems.extend(spec.validate(schema, &body, &format!("{what} request")));
            } else if let Some(schema) =
                content.pointer("/multipart~1form-data/schema/properties/settings")
            {
                let part = settings_part(&x.request_content_type, &x.request_body);
                problems.extend(spec.validate(
                    schema,
                    &part,
                    &format!("{what} request settings part"),
                ));
            }
        }
        // The response.
        let responses = &op["responses"];
        let status = x.status.to_string();
        let class = format!("{}XX", &status[..1]);
        let declared = responses
            .get(&status)
            .or_else(|| responses.get(&class))
            .or_else(|| responses.get("default"));
        let schema = match declared.and_then(|r| r.pointer("/content/application~1json/schema")) {
            Some(s) => s.clone(),
            None if x.status >= 400 => {
                // Not declared for this operation (e.g. 429): the common failure envelope.
                if spec.prefix == "/containers" {
                    json!({"$ref": "#/components/schemas/cc_V4BaseErrorResponse"})
                } else {
                    json!({"$ref": "#/components/schemas/workers_api-response-common-failure"})
                }
            }
            None => {
                problems.push(format!("{what}: status {status} is not declared"));
                continue;
            }
        };
        let body: Value = match serde_json::from_slice(&x.response_body) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{what}: response is not JSON: {e}"));
                continue;
            }
        };
        problems.extend(spec.validate(&schema, &body, &format!("{what} response {status}")));
    }
    assert!(
        problems.is_empty(),
        "contract violations:\n{}",
        problems.join("\n")
    );
    for op in [
        "listApplications",
        "createApplication",
        "getApplication",
        "modifyApplication",
        "deleteApplication",
        "createApplicationRollout",
        "listApplicationVersions",
        "generateImageRegistryCredentials",
        "durable-objects-namespace-list-namespaces",
        "worker-script-get-settings",
        "worker-script-patch-settings",
    ] {
        assert!(covered.contains(op), "operation {op} was not exercised");
    }
    let _ = Duration::ZERO;
}

#[test]
fn the_validator_catches_a_broken_response() {
    // Guards the guard: a response missing required fields must be reported.
    let containers = Spec::new("containers-openapi-subset.json", "/containers");
    let (_, op) = containers
        .operation("GET", "/accounts/x/containers/applications/y")
        .expect("getApplication");
    let schema = op
        .pointer("/responses/200/content/application~1json/schema")
        .unwrap();
    let broken = json!({"success": true, "errors": [], "messages": [], "result": {"id": "a"}});
    assert!(!containers.validate(schema, &broken, "broken").is_empty());
    let bad_enum = json!({"success": false, "errors": [{"code": 5, "message": "x"}], "messages": [], "result": null});
    let schema = op
        .pointer("/responses/404/content/application~1json/schema")
        .unwrap();
    assert!(
        !containers
            .validate(schema, &bad_enum, "code below 1000")
            .is_empty()
    );
}

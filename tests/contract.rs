//! Contract tests: every request the client sends and every response the emulator
//! returns in this suite is validated against the schema that Cloudflare's official
//! OpenAPI extract (`cloudflare-api/`, vendored) declares for that operation and status,
//! converted to JSON Schema by `flaredock::emulator::schema` (see its docs).

mod common;

use std::collections::BTreeSet;

use flaredock::cloudflare::types::*;
use flaredock::cloudflare::{ApiError, CLOUDFLARE_REGISTRY};
use flaredock::emulator::schema::{Spec, upload_metadata_violations};
use flaredock::emulator::{DEMO_CLASS, DEMO_SCRIPT, ScriptedFault};
use serde_json::{Value, json};

/// The containers or the Workers extract, by request path.
fn spec_for(path: &str) -> (&'static Spec, bool) {
    if path.contains("/containers/") {
        (Spec::containers(), true)
    } else {
        (Spec::workers(), false)
    }
}

/// The named part of a multipart body, as JSON.
fn multipart_json(content_type: &str, body: &[u8], name: &str) -> Value {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("multipart boundary")
        .trim_matches('"');
    let text = String::from_utf8_lossy(body);
    for part in text.split(&format!("--{boundary}")) {
        if part.contains(&format!("name=\"{name}\"")) {
            let (headers, content) = part.split_once("\r\n\r\n").expect("part body");
            assert!(
                headers.to_lowercase().contains("application/json"),
                "{name} part must be application/json: {headers}"
            );
            return serde_json::from_str(content.trim_end_matches("\r\n"))
                .expect("the part is JSON");
        }
    }
    panic!("no {name} part in the multipart body");
}

#[tokio::test]
async fn every_exchange_matches_the_official_schema() {
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
    // The demo script is seeded as wrangler would leave it: one container-enabled class.
    assert_eq!(client.list_namespaces().await.unwrap().len(), 1);
    let upload = ScriptUpload {
        metadata: UploadMetadata {
            main_module: "index.js".into(),
            compatibility_date: "2026-06-01".into(),
            compatibility_flags: vec!["nodejs_compat".into()],
            bindings: vec![
                Binding::plain_text("MODE", "test"),
                Binding::durable_object("SHOP", "Shop"),
            ],
            secrets: vec![SecretBinding {
                name: "KEY".into(),
                text: flaredock::cloudflare::Secret::new("s3cret"),
            }],
            migrations: Some(Migrations {
                new_tag: Some("v1".into()),
                new_sqlite_classes: vec!["Shop".into()],
                ..Default::default()
            }),
            containers: vec![ContainerItem {
                class_name: "Shop".into(),
            }],
            tags: vec!["flaredock.dev/owner=default.contract".into()],
        },
        modules: vec![ScriptModule {
            name: "index.js".into(),
            content_type: "application/javascript+module".into(),
            content:
                b"export class Shop {}\nexport default { fetch() { return new Response('ok') } }"
                    .to_vec(),
        }],
    };
    let uploaded = client
        .upload_script("contract-worker", &upload)
        .await
        .unwrap();
    assert_eq!(uploaded.tags(), upload.metadata.tags.as_slice());
    let scripts = client.list_scripts().await.unwrap();
    let listed = scripts.iter().find(|s| s.id == "contract-worker").unwrap();
    assert_eq!(listed.migration_tag.as_deref(), Some("v1"));
    let mut stale = upload.clone();
    stale.metadata.migrations = Some(Migrations {
        new_tag: Some("v2".into()),
        new_sqlite_classes: vec!["Other".into()],
        ..Default::default()
    });
    assert!(
        matches!(
            client.upload_script("contract-worker", &stale).await,
            Err(ApiError::Validation { .. })
        ),
        "a migration whose old_tag is not the script's tag is refused"
    );
    let namespaces = client.list_namespaces().await.unwrap();
    assert_eq!(namespaces.len(), 2);
    let demo_namespace = namespaces
        .iter()
        .find(|n| n.script.as_deref() == Some(DEMO_SCRIPT))
        .unwrap()
        .clone();
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
        namespace_id: demo_namespace.id.clone(),
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
    assert!(!client.delete_script("no-such-script").await.unwrap());
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
        let (spec, is_containers) = spec_for(path);
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
                problems.extend(spec.violations(schema, &body, &format!("{what} request")));
            } else if content
                .pointer("/multipart~1form-data/schema/allOf")
                .is_some()
            {
                // The module upload: its metadata part.
                let metadata = multipart_json(&x.request_content_type, &x.request_body, "metadata");
                problems.extend(
                    upload_metadata_violations(&metadata)
                        .into_iter()
                        .map(|p| format!("{what} request: {p}")),
                );
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
                if is_containers {
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
        problems.extend(spec.violations(&schema, &body, &format!("{what} response {status}")));
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
        "worker-script-list-workers",
        "worker-script-upload-worker-module",
        "worker-script-delete-worker",
    ] {
        assert!(covered.contains(op), "operation {op} was not exercised");
    }
}

#[test]
fn the_validator_catches_a_broken_response() {
    // Guards the guard: a response missing required fields must be reported.
    let containers = Spec::containers();
    let (_, op) = containers
        .operation("GET", "/accounts/x/containers/applications/y")
        .expect("getApplication");
    let schema = op
        .pointer("/responses/200/content/application~1json/schema")
        .unwrap();
    let broken = json!({"success": true, "errors": [], "messages": [], "result": {"id": "a"}});
    assert!(!containers.violations(schema, &broken, "broken").is_empty());
    let bad_enum = json!({"success": false, "errors": [{"code": 5, "message": "x"}], "messages": [], "result": null});
    let schema = op
        .pointer("/responses/404/content/application~1json/schema")
        .unwrap();
    assert!(
        !containers
            .violations(schema, &bad_enum, "code below 1000")
            .is_empty()
    );
}

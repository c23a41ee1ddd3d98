//! Contract tests: every request the client sends and every response the emulator
//! returns in this suite is validated against the schema that Cloudflare's official
//! OpenAPI extract (`cloudflare-api/`, vendored) declares for that operation and status,
//! converted to JSON Schema by `flaredock::emulator::schema` (see its docs). Every other
//! test's emulator runs the same check on its exchanges (`tests/common`), so the
//! contract covers every request of the whole suite.

mod common;

use std::collections::BTreeSet;

use flaredock::cloudflare::types::*;
use flaredock::cloudflare::{ApiError, CLOUDFLARE_REGISTRY};
use flaredock::emulator::contract;
use flaredock::emulator::schema::Spec;
use flaredock::emulator::{DEMO_CLASS, DEMO_SCRIPT, ScriptedFault};
use serde_json::json;

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
            ..Default::default()
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
            ..Default::default()
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
    assert!(!client.delete_script("no-such-script", false).await.unwrap());
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

    // Validate every exchange (the emulator also checked each as it happened).
    let exchanges = em.shared.exchanges();
    assert!(
        exchanges.len() >= 20,
        "only {} exchanges captured",
        exchanges.len()
    );
    let mut problems = Vec::new();
    let mut covered = BTreeSet::new();
    for x in &exchanges {
        let (op, found) = contract::check(x);
        problems.extend(found);
        covered.extend(op);
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

/// `POST …/versions` as wrangler sends it: a multipart body with a `metadata` part.
async fn upload_version(
    em: &common::Emulator,
    metadata: serde_json::Value,
) -> (u16, serde_json::Value) {
    let form = reqwest::multipart::Form::new()
        .part(
            "metadata",
            reqwest::multipart::Part::text(metadata.to_string())
                .mime_str("application/json")
                .unwrap(),
        )
        .part(
            "index.js",
            reqwest::multipart::Part::text(
                "export default { fetch() { return new Response('v2') } }",
            )
            .file_name("index.js")
            .mime_str("application/javascript+module")
            .unwrap(),
        );
    let url = format!(
        "{}/accounts/{}/workers/scripts/shop/versions?bindings_inherit=strict",
        em.base_url(),
        em.account_id()
    );
    let res = reqwest::Client::new()
        .post(url)
        .bearer_auth(em.api_token())
        .multipart(form)
        .send()
        .await
        .expect("the emulator answers");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn a_version_upload_is_checked_against_the_official_version_schema() {
    let em = common::start_emulator(|c| c.capture_bodies = true).await;
    let client = common::client_for(&em);
    common::scripts::upload_by_hand(&client, "shop", "v1").await;

    // What wrangler 4.86's deploy sends: the version schema's fields, plus script
    // settings it takes from the script upload's schema.
    let good = json!({
        "main_module": "index.js",
        "compatibility_date": "2026-06-01",
        "bindings": [{"type": "plain_text", "name": "MODE", "text": "live"}],
        "keep_bindings": ["secret_text", "secret_key"],
        "annotations": {"workers/message": "second"},
        "placement": {"mode": "smart"},
        "limits": {"cpu_ms": 50},
        "observability": {"enabled": true},
    });
    let (status, body) = upload_version(&em, good.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"]["id"].is_string(), "{body}");
    assert!(
        em.shared.account().scripts["shop"].modules["index.js"]
            .content
            .contains("v2"),
        "the version took effect"
    );

    // A misspelt field, a field only the script upload has (`tags`), a script setting of
    // the wrong shape, a missing main module: each refused, named.
    for (field, value) in [
        ("compatibility_dat", json!("2026-06-01")),
        ("tags", json!(["a"])),
        ("placement", json!({"mode": "sometimes"})),
    ] {
        let mut bad = good.clone();
        bad[field] = value;
        let (status, body) = upload_version(&em, bad).await;
        assert_eq!(status, 400, "{field}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or("");
        assert!(message.contains(field), "{field}: {message}");
    }
    let mut no_main = good.clone();
    no_main.as_object_mut().unwrap().remove("main_module");
    let (status, body) = upload_version(&em, no_main).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("main_module"),
        "{body}"
    );

    // Every exchange, the version upload's answer included, meets the contract.
    let mut problems = Vec::new();
    let mut covered = BTreeSet::new();
    for x in &em.shared.exchanges() {
        let (op, found) = contract::check(x);
        problems.extend(found);
        covered.extend(op);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        covered.contains("worker-versions-upload-version"),
        "{covered:?}"
    );
    em.stop().await;
}

#[test]
fn a_version_upload_request_from_flaredock_is_held_to_its_schema() {
    // The contract check of a flaredock request picks the version upload's schema.
    let boundary = "b0undary";
    let body = |metadata: serde_json::Value| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json\r\n\r\n{metadata}\r\n--{boundary}--\r\n"
        )
    };
    let exchange = |metadata: serde_json::Value| flaredock::emulator::Exchange {
        method: "POST".into(),
        path: "/client/v4/accounts/a/workers/scripts/shop/versions".into(),
        request_content_type: format!("multipart/form-data; boundary={boundary}"),
        user_agent: "flaredock/0".into(),
        request_body: body(metadata).into(),
        status: 400,
        response_body: json!({"success": false, "errors": [{"code": 10021, "message": "x"}],
            "messages": [], "result": null})
        .to_string()
        .into(),
    };
    let (op, problems) = contract::check(&exchange(json!({"main_module": "index.js"})));
    assert_eq!(op.as_deref(), Some("worker-versions-upload-version"));
    assert!(problems.is_empty(), "{problems:?}");
    let (_, problems) = contract::check(&exchange(
        json!({"main_module": "index.js", "tags": ["only-on-script-upload"]}),
    ));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("request") && p.contains("tags")),
        "{problems:?}"
    );
}

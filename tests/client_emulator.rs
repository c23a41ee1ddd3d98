//! The Cloudflare client against the emulator: endpoints, error mapping, retries,
//! `retry-after`, the client-side limiter, and the emulator's own validation.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use flaredock::cloudflare::types::*;
use flaredock::cloudflare::{ApiError, RateLimit};
use flaredock::emulator::{DEMO_CLASS, DEMO_SCRIPT, RunningEmulator, ScriptedFault};
use serde_json::{Value, json};

use common::app_request;

#[tokio::test]
async fn retries_a_5xx_and_a_dropped_connection_for_safe_requests() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    em.shared.push_fault(None, ScriptedFault::ServerError(503));
    em.shared.push_fault(None, ScriptedFault::DropBefore);
    em.shared.push_fault(None, ScriptedFault::ServerError(500));
    assert!(client.list_applications().await.unwrap().is_empty());
    let statuses: Vec<u16> = em.shared.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![503, 0, 500, 200],
        "three failures, then success"
    );
}

#[tokio::test]
async fn a_create_is_never_blindly_repeated() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    em.shared.push_fault(Some("POST"), ScriptedFault::DropAfter);
    let err = client
        .create_application(&app_request(&em, "once"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Transport {
                maybe_applied: true,
                ..
            }
        ),
        "{err:?}"
    );
    let posts = em
        .shared
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 1, "the create was sent once");
    // It was applied: the caller finds it by name.
    assert_eq!(client.list_applications().await.unwrap().len(), 1);
    // A 5xx on create is not repeated either.
    em.shared
        .push_fault(Some("POST"), ScriptedFault::ServerError(502));
    let err = client
        .create_application(&app_request(&em, "twice"))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Server { status: 502, .. }));
    assert_eq!(
        em.shared
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count(),
        2
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    em.shared.push_fault(None, ScriptedFault::RateLimit(1));
    let started = Instant::now();
    assert!(client.list_applications().await.is_ok());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    let log = em.shared.requests();
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
}

#[tokio::test]
async fn error_mapping_of_every_kind() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    // Not found.
    assert!(matches!(
        client.get_application("missing").await,
        Err(ApiError::NotFound { status: 404, .. })
    ));
    // Name taken.
    client
        .create_application(&app_request(&em, "taken"))
        .await
        .unwrap();
    let e = client
        .create_application(&app_request(&em, "taken"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ApiError::NameTaken { status: 400, .. }),
        "{e:?}"
    );
    // The namespace already has an application: the error enum and its details are
    // read from the message (the demo class is seeded container-enabled).
    let mut first = app_request(&em, "do-a");
    first.durable_objects = Some(DurableObjectsConfiguration::ScriptAndClass {
        script_name: DEMO_SCRIPT.into(),
        class_name: DEMO_CLASS.into(),
    });
    let a = client.create_application(&first).await.unwrap();
    let mut second = first.clone();
    second.name = "do-b".into();
    match client.create_application(&second).await {
        Err(ApiError::NamespaceHasApplication {
            application_name,
            application_id,
            ..
        }) => {
            assert_eq!(application_name, "do-a");
            assert_eq!(application_id, a.id);
        }
        other => panic!("expected 1608, got {other:?}"),
    }
    // Validation (terminal).
    let mut bad = app_request(&em, "bad");
    bad.constraints = Some(ApplicationConstraints {
        regions: Some(vec!["MARS".into()]),
        ..Default::default()
    });
    let e = client.create_application(&bad).await.unwrap_err();
    assert!(
        matches!(e, ApiError::Validation { .. }) && e.is_terminal(),
        "{e:?}"
    );
    // Unauthorized (terminal) and forbidden (another account).
    let wrong = common::client_with(&em, |c| {
        c.token = flaredock::cloudflare::Secret::new("nope")
    });
    let e = wrong.list_applications().await.unwrap_err();
    assert!(matches!(e, ApiError::Unauthorized { status: 401, .. }) && e.is_terminal());
    let other_account = common::client_with(&em, |c| c.account_id = "someone-else".into());
    assert!(matches!(
        other_account.list_applications().await,
        Err(ApiError::Forbidden { status: 403, .. })
    ));
}

#[tokio::test]
async fn non_json_bodies_are_typed_errors() {
    // A proxy answering with an HTML page.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::BAD_GATEWAY,
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_with(&em, |c| {
        c.base_url = format!("http://{addr}/client/v4");
        c.max_attempts = 2;
    });
    match client.list_applications().await {
        Err(ApiError::InvalidResponse {
            status, excerpt, ..
        }) => {
            assert_eq!(status, 502);
            assert!(excerpt.contains("502 Bad Gateway"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn emulator_validates_like_cloudflare() {
    let em = common::start_emulator(|_| {}).await;
    let http = reqwest::Client::new();
    let base = format!(
        "{}/accounts/{}/containers/applications",
        em.base_url(),
        em.account_id()
    );
    let auth = format!("Bearer {}", em.api_token());
    let send = |body: Value| {
        let http = http.clone();
        let base = base.clone();
        let auth = auth.clone();
        async move {
            let r = http
                .post(&base)
                .header("authorization", auth)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let image = format!("{}/{}/hello:v1", em.registry_host(), em.account_id());
    // Missing required field.
    let (s, b) = send(json!({"name": "x", "scheduling_policy": "default", "instances": 0})).await;
    assert_eq!(s, 400);
    assert_eq!(b["success"], false);
    assert!(
        b["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("configuration"),
        "{b}"
    );
    // Wrong enum.
    let (s, b) = send(json!({"name": "x", "scheduling_policy": "moon", "instances": 0, "configuration": {"image": image}})).await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("scheduling_policy")
    );
    let (s, _) = send(json!({"name": "x", "scheduling_policy": "default", "instances": 0, "configuration": {"image": image, "instance_type": "huge"}})).await;
    assert_eq!(s, 400);
    // A misspelt optional field, at the top and nested: Cloudflare refuses unknown fields.
    for (body, field) in [
        (
            json!({"name": "x", "scheduling_policy": "default", "instances": 0, "max_instance": 3, "configuration": {"image": image}}),
            "max_instance",
        ),
        (
            json!({"name": "x", "scheduling_policy": "default", "instances": 0, "configuration": {"image": image, "instance_typ": "lite"}}),
            "instance_typ",
        ),
    ] {
        let (s, b) = send(body).await;
        assert_eq!(s, 400, "{b}");
        let message = b["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
        // As Cloudflare's containers API writes it: the error enum as JSON.
        let inner: Value = serde_json::from_str(message).expect("an error enum");
        assert_eq!(inner["error"], "VALIDATE_INPUT");
        assert!(
            inner["details"]["message"]
                .as_str()
                .unwrap()
                .contains(field)
        );
    }
    // Through the client, the typed error names the enum and its detail.
    let mut request = app_request(&em, "x");
    request.configuration.image = "docker.io/library/nginx:latest".into();
    let e = common::client_for(&em)
        .create_application(&request)
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Validation { .. }), "{e:?}");
    assert_eq!(e.error_enum().as_deref(), Some("VALIDATE_INPUT"));
    assert!(
        e.to_string()
            .contains("VALIDATE_INPUT: configuration.image"),
        "{e}"
    );
    assert!(
        em.shared.account().application_count() == 0,
        "nothing was created by a refused body"
    );
    // An image outside the account's registry.
    let (s, b) = send(json!({"name": "x", "scheduling_policy": "default", "instances": 0, "configuration": {"image": "docker.io/library/nginx:latest"}})).await;
    assert_eq!(s, 400);
    assert!(
        b["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("registry")
    );
    // A good one: 201.
    let (s, b) = send(json!({"name": "x", "scheduling_policy": "default", "instances": 0, "configuration": {"image": image}})).await;
    assert_eq!(s, 201, "{b}");
    let id = b["result"]["id"].as_str().unwrap().to_string();
    // step_percentage outside {5,10,20,25,50,100}.
    let r = http
        .post(format!("{base}/{id}/rollouts"))
        .header("authorization", &auth)
        .json(&json!({"description": "d", "strategy": "rolling", "step_percentage": 30, "target_configuration": {"image": image}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let b: Value = r.json().await.unwrap();
    assert!(
        b["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("step_percentage")
    );
    // Missing token: 401 envelope.
    let r = http.get(&base).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["success"], false);
    assert_eq!(b["errors"][0]["code"], 10000);
    // An image change cannot be PATCHed: it needs a rollout.
    let r = http
        .patch(format!("{base}/{id}"))
        .header("authorization", &auth)
        .json(&json!({"configuration": {"image": image}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Settings PATCH must be multipart.
    let r = http
        .patch(format!(
            "{}/accounts/{}/workers/scripts/{DEMO_SCRIPT}/settings",
            em.base_url(),
            em.account_id()
        ))
        .header("authorization", &auth)
        .json(&json!({"bindings": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn rollouts_progress_and_update_the_application() {
    let em = common::start_emulator(|c| c.rollout_step = Duration::from_millis(500)).await;
    let client = common::client_for(&em);
    let app = client
        .create_application(&app_request(&em, "roll"))
        .await
        .unwrap();
    assert_eq!(app.version, 1);
    let mut target = app.configuration.clone();
    // The answer holds the expanded size; a target names a type instead.
    (target.vcpu, target.memory_mib, target.disk) = (None, None, None);
    target.instance_type = Some(InstanceType::Basic);
    let r = client
        .create_rollout(
            &app.id,
            &CreateRolloutRequest {
                description: "bigger".into(),
                strategy: RolloutStrategy::Rolling,
                kind: Some(RolloutKind::FullAuto),
                step_percentage: Some(25),
                steps: None,
                target_configuration: target.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(r.progress.as_ref().unwrap().total_steps, 4);
    let during = client.get_application(&app.id).await.unwrap();
    assert_eq!(during.active_rollout_id.as_deref(), Some(r.id.as_str()));
    // The API answers sizes expanded (the named type's vCPU, memory and disk).
    assert_eq!(during.configuration.instance_type, None);
    assert_eq!(
        (during.configuration.vcpu, during.configuration.memory_mib),
        (Some(0.0625), Some(256)),
        "lite, not applied before the rollout ends"
    );
    let versions = client.list_versions(&app.id).await.unwrap();
    assert_eq!(versions.len(), 2);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let after = client.get_application(&app.id).await.unwrap();
    assert_eq!(after.active_rollout_id, None);
    assert_eq!(after.version, 2);
    assert_eq!(
        (
            after.configuration.vcpu,
            after.configuration.memory_mib,
            after.configuration.disk.as_ref().and_then(|d| d.size_mb)
        ),
        (Some(0.25), Some(1024), Some(4000)),
        "basic, expanded"
    );
}

/// Sends a settings PATCH as another tool would (flaredock itself never does).
async fn patch_settings(em: &RunningEmulator, script: &str, settings: Value) -> reqwest::Response {
    let form = reqwest::multipart::Form::new().part(
        "settings",
        reqwest::multipart::Part::text(settings.to_string())
            .mime_str("application/json")
            .unwrap(),
    );
    reqwest::Client::new()
        .patch(format!(
            "{}/accounts/{}/workers/scripts/{script}/settings",
            em.base_url(),
            em.account_id()
        ))
        .bearer_auth(em.api_token())
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn only_an_upload_listing_the_class_in_containers_container_enables_it() {
    let em = common::start_emulator(|_| {}).await;
    let http = reqwest::Client::new();
    let client = common::client_for(&em);
    let image = format!("{}/{}/hello:v1", em.registry_host(), em.account_id());
    let on = |script: &str, class: &str| {
        let mut r = common::foreign_application(
            &format!("{script}-{}", class.to_lowercase()),
            &image,
            Some(DurableObjectsConfiguration::ScriptAndClass {
                script_name: script.into(),
                class_name: class.into(),
            }),
        );
        r.instances = 0;
        r
    };

    // A namespace made by a settings-PATCH migration exists but is not container-enabled.
    let seeded = http
        .put(format!("http://{}/__emulator/scripts/legacy", em.addr))
        .json(&json!({"durable_object_classes": ["Legacy"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status().as_u16(), 204);
    let patched = patch_settings(
        &em,
        "legacy",
        json!({"bindings": [{"type": "durable_object_namespace", "name": "LEGACY", "class_name": "Legacy"}],
               "migrations": {"new_sqlite_classes": ["Legacy"]}}),
    )
    .await;
    assert_eq!(patched.status().as_u16(), 200, "{:?}", patched.text().await);
    assert_eq!(client.list_namespaces().await.unwrap().len(), 2);
    let e = client
        .create_application(&on("legacy", "Legacy"))
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::NotContainerEnabled { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("DURABLE_OBJECT_NOT_CONTAINER_ENABLED"),
        "{e}"
    );

    // The seeding hook can model a deploy without `containers` too.
    let seeded = http
        .put(format!("http://{}/__emulator/scripts/plain", em.addr))
        .json(&json!({"durable_object_classes": ["Plain"], "with_namespaces": true, "container_enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status().as_u16(), 204);
    let e = client
        .create_application(&on("plain", "Plain"))
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::NotContainerEnabled { .. }), "{e:?}");

    // An upload with the class in `containers` container-enables it.
    let upload = |classes: &[&str], migration: Option<Migrations>, code: &str| ScriptUpload {
        metadata: UploadMetadata {
            main_module: "index.js".into(),
            compatibility_date: "2026-06-01".into(),
            bindings: vec![],
            migrations: migration,
            containers: classes
                .iter()
                .map(|c| ContainerItem {
                    class_name: c.to_string(),
                })
                .collect(),
            ..Default::default()
        },
        modules: vec![ScriptModule {
            name: "index.js".into(),
            content_type: "application/javascript+module".into(),
            content: code.as_bytes().to_vec(),
        }],
    };
    let uploaded = client
        .upload_script(
            "plain",
            &upload(
                &["Plain"],
                Some(Migrations {
                    old_tag: Some("v1".into()),
                    new_tag: Some("v2".into()),
                    ..Default::default()
                }),
                "export class Plain {}",
            ),
        )
        .await
        .unwrap();
    assert_eq!(uploaded.id, "plain");
    client
        .create_application(&on("plain", "Plain"))
        .await
        .unwrap();

    // What Cloudflare refuses: a class not exported, a migration from the wrong tag, and
    // a class that has Durable Objects dropped from the code.
    let e = client
        .upload_script("plain", &upload(&["Nope"], None, "export class Plain {}"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ApiError::Validation { .. }) && e.to_string().contains("Nope"),
        "{e}"
    );
    let e = client
        .upload_script(
            "plain",
            &upload(
                &["Plain"],
                Some(Migrations {
                    old_tag: Some("v1".into()),
                    new_tag: Some("v3".into()),
                    ..Default::default()
                }),
                "export class Plain {}",
            ),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("old_tag"), "{e}");
    let e = client
        .upload_script("plain", &upload(&[], None, "export default {}"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not export class Plain"), "{e}");
    // A delete of a script whose class backs an application is refused.
    assert!(client.delete_script("plain", true).await.is_err());
}

#[tokio::test]
async fn a_misspelt_or_mistyped_metadata_field_is_refused_naming_it() {
    let em = common::start_emulator(|_| {}).await;
    let form = |metadata: Value| {
        reqwest::multipart::Form::new()
            .part(
                "metadata",
                reqwest::multipart::Part::text(metadata.to_string())
                    .mime_str("application/json")
                    .unwrap(),
            )
            .part(
                "index.js",
                reqwest::multipart::Part::text("export default {}")
                    .file_name("index.js")
                    .mime_str("application/javascript+module")
                    .unwrap(),
            )
    };
    let send = |metadata: Value| {
        let url = format!(
            "{}/accounts/{}/workers/scripts/typo",
            em.base_url(),
            em.account_id()
        );
        let token = em.api_token().to_string();
        async move {
            let r = reqwest::Client::new()
                .put(url)
                .bearer_auth(token)
                .multipart(form(metadata))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, body) = send(json!({"main_module": "index.js", "tags": "one"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("metadata.tags"), "{body}");
    let (status, body) =
        send(json!({"main_module": "index.js", "containers": [{"clas_name": "X"}]})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("metadata.containers"), "{body}");
    let (status, body) = send(json!({"main_module": "main.js"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("main_module"), "{body}");
    let (status, body) = send(json!({"main_module": "index.js", "tags": ["a,b"]})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) =
        send(json!({"main_module": "index.js", "compatibility_dat": "2026-01-01"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("compatibility_dat"), "{body}");
    let (status, body) =
        send(json!({"main_module": "index.js", "compatibility_date": "2026-01-01"})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn namespaces_are_paginated() {
    let em = common::start_emulator(|_| {}).await;
    let classes: Vec<String> = (0..1005).map(|i| format!("C{i}")).collect();
    let refs: Vec<&str> = classes.iter().map(String::as_str).collect();
    em.put_script("many", &refs);
    let client = common::client_for(&em);
    let all = client.list_namespaces().await.unwrap();
    // 1,005 classes, and the demo Worker's one.
    assert_eq!(all.len(), 1006);
    let pages = em
        .shared
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/namespaces"))
        .count();
    assert_eq!(pages, 2);
}

#[tokio::test]
async fn a_burst_through_the_limiter_earns_no_429() {
    // The emulator allows 250 requests per 0.5 s; the client is told the same limit.
    let limit = RateLimit {
        requests: 250,
        window: Duration::from_millis(500),
    };
    let em = common::start_emulator(|c| c.rate_limit = limit).await;
    let client = Arc::new(common::client_with(&em, |c| c.rate_limit = limit));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..(2000 / 32 + 1) {
                client.list_applications().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let log = em.shared.requests();
    assert!(log.len() >= 2000);
    let limited = log.iter().filter(|r| r.status == 429).count();
    assert_eq!(limited, 0, "{limited} requests were rate limited");
    // 2,016 requests at 250 per 0.5 s need at least 8 windows beyond the first.
    assert!(
        started.elapsed() >= Duration::from_millis(3500),
        "took {:?}",
        started.elapsed()
    );
    assert!(client.limiter().waited() > Duration::ZERO);
}

#[tokio::test]
async fn the_emulator_blocks_a_token_that_exceeds_its_limit() {
    let em = common::start_emulator(|c| {
        c.rate_limit = RateLimit {
            requests: 5,
            window: Duration::from_secs(30),
        }
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!(
        "{}/accounts/{}/containers/applications",
        em.base_url(),
        em.account_id()
    );
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let r = http
            .get(&url)
            .bearer_auth(em.api_token())
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 429 {
            assert_eq!(r.headers()["retry-after"], "30");
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429, 429]);
}

#[tokio::test]
async fn state_file_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let em = common::start_emulator(|c| c.state_file = Some(file.clone())).await;
    let client = common::client_for(&em);
    client
        .create_application(&app_request(&em, "kept"))
        .await
        .unwrap();
    em.stop().await;
    let em = common::start_emulator(|c| c.state_file = Some(file.clone())).await;
    let client = common::client_for(&em);
    let apps = client.list_applications().await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].name, "kept");
}

#[test]
fn the_emulator_starts_from_the_cli_and_answers_with_an_envelope() {
    let port = common::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["emulator", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!(
        "http://127.0.0.1:{port}/client/v4/accounts/{}/containers/applications",
        flaredock::emulator::DEFAULT_ACCOUNT_ID
    );
    let mut answer = None;
    for _ in 0..100 {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-H",
                &format!(
                    "Authorization: Bearer {}",
                    flaredock::emulator::DEFAULT_API_TOKEN
                ),
                &url,
            ])
            .output();
        match out {
            Ok(o) if o.status.success() && !o.stdout.is_empty() => {
                answer = Some(String::from_utf8_lossy(&o.stdout).to_string());
                break;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("this test needs curl: {e}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let body: Value = serde_json::from_str(&answer.expect("the emulator answered")).unwrap();
    assert_eq!(
        body,
        json!({"success": true, "errors": [], "messages": [], "result": []})
    );
}

#[tokio::test]
async fn a_request_body_is_checked_against_the_official_schema_naming_the_field() {
    let em = common::start_emulator(|_| {}).await;
    let http = reqwest::Client::new();
    let url = format!(
        "{}/accounts/{}/containers/applications",
        em.base_url(),
        em.account_id()
    );
    let image = format!("{}/{}/hello:v1", em.registry_host(), em.account_id());
    let body = |instances: Value, strategy: &str| {
        json!({
            "name": "typed", "scheduling_policy": strategy, "instances": instances,
            "configuration": {"image": image},
        })
    };
    let send = |b: Value| {
        let http = http.clone();
        let url = url.clone();
        let token = em.api_token().to_string();
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&b)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, text) = send(body(json!("zero"), "default")).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("body.instances"), "{text}");
    let (status, text) = send(body(json!(0), "moon")).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("body.scheduling_policy"),
        "the official enum: {text}"
    );
    let (status, text) = send(body(json!(0), "default")).await;
    assert_eq!(status, 201, "{text}");
}

#[tokio::test]
async fn the_client_follows_the_policy_the_api_announces() {
    // The emulator allows 20 requests per second and says so in `Ratelimit-Policy`; the
    // client was configured for far more.
    let server = RateLimit {
        requests: 20,
        window: Duration::from_secs(1),
    };
    let em = common::start_emulator(|c| c.rate_limit = server).await;
    let client = common::client_for(&em);
    let started = Instant::now();
    for _ in 0..50 {
        client.list_applications().await.unwrap();
    }
    let log = em.shared.requests();
    assert_eq!(
        log.iter().filter(|r| r.status == 429).count(),
        0,
        "no 429, so no block"
    );
    assert_eq!(
        client.limiter().limit(),
        server,
        "the announced policy was adopted"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "paced: {:?}",
        started.elapsed()
    );
    // The headers, as Cloudflare documents them.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/accounts/{}/containers/applications",
            em.base_url(),
            em.account_id()
        ))
        .bearer_auth(em.api_token())
        .send()
        .await
        .unwrap();
    let policy = r.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(policy, "\"default\";q=20;w=1");
    let now = r.headers()["ratelimit"].to_str().unwrap().to_string();
    assert!(
        now.starts_with("\"default\";r=") && now.contains(";t="),
        "{now}"
    );
}

#[tokio::test]
async fn a_closed_write_gate_stops_writes_and_lets_reads_through() {
    let em = common::start_emulator(|_| {}).await;
    let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = open.clone();
    let client = common::client_with(&em, |c| {
        c.write_gate = Some(flaredock::cloudflare::client::WriteGate::while_open(
            move || gate.load(std::sync::atomic::Ordering::SeqCst),
        ))
    });
    assert!(client.list_applications().await.unwrap().is_empty());
    let request = app_request(&em, "gated");
    let e = client.create_application(&request).await.unwrap_err();
    assert!(matches!(e, ApiError::NotLeader { .. }), "{e:?}");
    assert!(
        em.shared.requests().iter().all(|r| r.method == "GET"),
        "nothing but reads reached Cloudflare: {:?}",
        em.shared.requests()
    );
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    client.create_application(&request).await.unwrap();
}

//! The emulator run as a server keeps what it holds to itself: the test hooks answer
//! only loopback clients of a loopback listener or the API token, the state dump and
//! the state file show no secret or environment value, request bodies have limits and
//! an oversize one is refused with 413 without being read, the state file is 0600.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use flaredock::cloudflare::ApiError;
use flaredock::cloudflare::types::*;
use flaredock::emulator::redact::REDACTED;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `GET /__emulator/state` through `addr` with these headers: status and body.
async fn get_state(addr: SocketAddr, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = http().get(format!("http://{addr}/__emulator/state"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn hooks_beyond_loopback_need_the_api_token_whatever_the_headers_say() {
    // Listening on every interface; the test's own traffic stays on loopback.
    let em = common::start_emulator(|c| c.listen = SocketAddr::from(([0, 0, 0, 0], 0))).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], em.addr.port()));
    let bearer = format!("Bearer {}", em.api_token());

    let (status, body) = get_state(addr, &[]).await;
    assert_eq!(status, 403, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("Authorization: Bearer"), "{message}");
    assert!(!message.contains(em.api_token()), "never the token itself");
    // Headers a client can write prove nothing: the peer address is the connection's.
    let (status, _) = get_state(
        em.addr,
        &[
            ("x-forwarded-for", "127.0.0.1"),
            ("forwarded", "for=127.0.0.1"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = get_state(addr, &[("authorization", "Bearer not-the-token")]).await;
    assert_eq!(status, 403);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not the emulator's API token")
    );

    // A refused hook does nothing: this fault is never scripted.
    let r = http()
        .post(format!("http://{addr}/__emulator/faults"))
        .json(&json!({"next": ["500"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let client = common::client_for(&em);
    client.list_applications().await.unwrap();
    assert_eq!(
        em.shared
            .requests()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [200],
        "the API answered at once"
    );

    let (status, body) = get_state(addr, &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["account_id"], em.account_id());
}

#[tokio::test]
async fn hooks_on_all_interfaces_need_the_token_even_from_loopback() {
    let em = common::start_emulator(|c| c.listen = SocketAddr::from(([0, 0, 0, 0], 0))).await;
    let local = SocketAddr::from(([127, 0, 0, 1], em.addr.port()));
    let (status, body) = get_state(local, &[]).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("beyond loopback"),
        "{body}"
    );
    let bearer = format!("Bearer {}", em.api_token());
    let (status, _) = get_state(local, &[("authorization", &bearer)]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn hooks_on_loopback_answer_loopback_clients() {
    let em = common::start_emulator(|_| {}).await;
    let (status, body) = get_state(em.addr, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["account_id"], em.account_id());
}

fn secret_upload() -> ScriptUpload {
    ScriptUpload {
        metadata: UploadMetadata {
            main_module: "index.js".into(),
            compatibility_date: "2026-06-01".into(),
            bindings: vec![Binding::plain_text("MODE", "visible-mode")],
            secrets: vec![SecretBinding {
                name: "API_KEY".into(),
                text: flaredock::cloudflare::Secret::new("worker-secret-8d1f"),
            }],
            ..Default::default()
        },
        modules: vec![ScriptModule {
            name: "index.js".into(),
            content_type: "application/javascript+module".into(),
            content: b"export default {}".to_vec(),
        }],
    }
}

#[tokio::test]
async fn the_state_dump_and_file_show_no_secret_or_env_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let em = common::start_emulator(|c| {
        c.state_file = Some(file.clone());
        c.rollout_step = Duration::from_secs(60);
    })
    .await;
    let client = common::client_for(&em);
    client
        .upload_script("shop", &secret_upload())
        .await
        .unwrap();
    let env = |value: &str| {
        Some(vec![EnvironmentVariable {
            name: "DB_PASSWORD".into(),
            value: value.into(),
        }])
    };
    let image = format!("{}/{}/hello:v1", em.registry_host(), em.account_id());
    let mut request = common::foreign_application("shop", &image, None);
    request.configuration.environment_variables = env("env-value-3c9a");
    let app = client.create_application(&request).await.unwrap();
    // A rollout in progress keeps both configurations: the old value and the new one.
    let mut target = request.configuration.clone();
    target.environment_variables = env("env-value-next-77b2");
    client
        .create_rollout(
            &app.id,
            &CreateRolloutRequest {
                description: "rotate".into(),
                strategy: RolloutStrategy::Rolling,
                kind: Some(RolloutKind::FullAuto),
                step_percentage: Some(50),
                steps: None,
                target_configuration: target,
            },
        )
        .await
        .unwrap();
    let minted = client
        .registry_credentials(
            flaredock::cloudflare::CLOUDFLARE_REGISTRY,
            &[RegistryPermission::Push],
            5,
        )
        .await
        .unwrap();
    let values = [
        "worker-secret-8d1f",
        "env-value-3c9a",
        "env-value-next-77b2",
        minted.password.expose(),
    ];

    // The values did reach the emulator (the API answers them, as Cloudflare's does).
    let held = serde_json::to_string(&*em.shared.account()).unwrap();
    for v in &values[..3] {
        assert!(held.contains(v), "{v} is held in memory");
    }

    let (status, dump) = get_state(em.addr, &[]).await;
    assert_eq!(status, 200);
    let dump = dump.to_string();
    let file_text = std::fs::read_to_string(&file).unwrap();
    for (what, text) in [("state dump", &dump), ("state file", &file_text)] {
        for v in values {
            assert!(!text.contains(v), "the {what} shows {v}: {text}");
        }
        for kept in ["API_KEY", "DB_PASSWORD", "visible-mode", REDACTED] {
            assert!(text.contains(kept), "the {what} lacks {kept}: {text}");
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_state_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let em = common::start_emulator(|c| c.state_file = Some(file.clone())).await;
    let client = common::client_for(&em);
    client
        .upload_script("shop", &secret_upload())
        .await
        .unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    // Written through a temporary file that is renamed: nothing else is left.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["state.json"]);
    // And it is still a state the emulator starts from.
    em.stop().await;
    let em = common::start_emulator(|c| c.state_file = Some(file.clone())).await;
    assert!(em.shared.account().scripts.contains_key("shop"));
}

/// Sends `head` and then `body` on a raw connection (never the rest of the body the
/// head announces) and reads the answer for up to 5 s: its status and body.
async fn raw_exchange(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close while this is still being written.
    let _ = conn.write_all(body).await;
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let read = tokio::time::timeout_at(deadline, conn.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&answer);
        if let Some((headers, rest)) = text.split_once("\r\n\r\n") {
            let length = headers.lines().find_map(|l| {
                l.to_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            });
            if length.is_some_and(|n| rest.len() >= n) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!("no answer within 5 s (the server waits for the body?): {text:?}")
        });
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn error_code(body: &str) -> i64 {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["success"], false, "{v}");
    v["errors"][0]["code"].as_i64().unwrap()
}

#[tokio::test]
async fn an_oversize_body_is_refused_with_413_before_it_is_read() {
    let em = common::start_emulator(|_| {}).await;
    let account = em.account_id().to_string();
    let auth = format!("Authorization: Bearer {}\r\n", em.api_token());

    // A JSON body announcing 200 MB: refused at once, from its head.
    let head = format!(
        "POST /client/v4/accounts/{account}/containers/applications HTTP/1.1\r\nHost: e\r\n{auth}Content-Type: application/json\r\nContent-Length: 200000000\r\n\r\n"
    );
    let (status, body) = raw_exchange(em.addr, &head, b"{\"name\": ").await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_code(&body), 1000);
    assert!(
        body.contains("VALIDATE_INPUT") && body.contains("1 MiB"),
        "{body}"
    );

    // A Worker upload announcing 200 MB: over Cloudflare's 100 MB request limit.
    let head = format!(
        "PUT /client/v4/accounts/{account}/workers/scripts/big HTTP/1.1\r\nHost: e\r\n{auth}Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 200000000\r\n\r\n"
    );
    let (status, body) = raw_exchange(em.addr, &head, b"--x\r\n").await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_code(&body), 10027);
    assert!(body.contains("100 MB"), "{body}");

    // A streamed JSON body with no length: refused as soon as it passes 1 MiB, while
    // its end has not been sent.
    let head = format!(
        "POST /client/v4/accounts/{account}/containers/applications HTTP/1.1\r\nHost: e\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut chunks = Vec::new();
    for _ in 0..17 {
        chunks.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        chunks.extend_from_slice(&[b' '; 64 * 1024]);
        chunks.extend_from_slice(b"\r\n");
    }
    let (status, body) = raw_exchange(em.addr, &head, &chunks).await;
    assert_eq!(status, 413, "{body}");

    // The test hooks too.
    let head = "POST /__emulator/faults HTTP/1.1\r\nHost: e\r\nContent-Type: application/json\r\nContent-Length: 200000000\r\n\r\n";
    let (status, _) = raw_exchange(em.addr, head, b"{").await;
    assert_eq!(status, 413);

    // Refused before the gate: no application was made, the API still answers.
    let client = common::client_for(&em);
    assert!(client.list_applications().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_worker_over_its_compressed_size_is_refused_with_10027() {
    let em = common::start_emulator(|c| c.limits.worker_compressed = 64 * 1024).await;
    let client = common::client_for(&em);
    // Random letters hardly compress: 256 KiB of them stay far over 64 KiB.
    let noise: String = (0..256 * 1024).map(|_| fastrand::alphanumeric()).collect();
    let mut upload = secret_upload();
    upload.modules[0].content = format!("export default {{}}\n// {noise}\n").into_bytes();
    let err = client.upload_script("big", &upload).await.unwrap_err();
    assert_eq!(err.status(), Some(413), "{err}");
    match &err {
        ApiError::Other { errors, .. } | ApiError::Validation { errors, .. } => {
            assert!(errors.has_code(10027), "{err}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("exceeded the size limit of 64 KiB"),
        "{err}"
    );
    // The same script, compressible, is within the limit.
    upload.modules[0].content =
        format!("export default {{}}\n// {}\n", "a".repeat(256 * 1024)).into_bytes();
    client.upload_script("big", &upload).await.unwrap();
}

#[tokio::test]
async fn registry_bodies_are_bounded_and_image_pushes_still_work() {
    let em = common::start_emulator(|c| c.limits.blob = 1024 * 1024).await;
    let client = common::client_for(&em);
    let creds = client
        .registry_credentials(
            flaredock::cloudflare::CLOUDFLARE_REGISTRY,
            &[RegistryPermission::Push],
            5,
        )
        .await
        .unwrap();
    let creds = flaredock::oci::Credentials {
        username: creds.username,
        password: creds.password,
    };
    let repo = format!("{}/bounded", em.account_id());
    // Within the limit, a blob goes in as before.
    common::push_blob(
        &http(),
        em.registry_host(),
        &repo,
        &[7u8; 512 * 1024],
        Some(&creds),
    )
    .await;

    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        creds.username,
        creds.password.expose()
    ));
    let start = http()
        .post(format!(
            "http://{}/v2/{repo}/blobs/uploads/",
            em.registry_host()
        ))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status().as_u16(), 202);
    let location = start.headers()["location"].to_str().unwrap().to_string();
    // A chunk streamed past the limit: 413 SIZE_INVALID before its end is sent.
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: e\r\nAuthorization: Basic {basic}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut chunks = Vec::new();
    for _ in 0..17 {
        chunks.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        chunks.extend_from_slice(&[1u8; 64 * 1024]);
        chunks.extend_from_slice(b"\r\n");
    }
    let (status, body) = raw_exchange(em.addr, &head, &chunks).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("SIZE_INVALID"), "{body}");
    // A manifest announcing more than 4 MiB.
    let head = format!(
        "PUT /v2/{repo}/manifests/v1 HTTP/1.1\r\nHost: e\r\nAuthorization: Basic {basic}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 5000000\r\n\r\n"
    );
    let (status, body) = raw_exchange(em.addr, &head, b"{").await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("SIZE_INVALID") && body.contains("4 MiB"),
        "{body}"
    );
}

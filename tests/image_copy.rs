//! Registry-to-registry copy against real `docker-registry` processes: digests kept,
//! warm copies free, `linux/amd64` picked from an index, corrupted or cut-off blobs
//! handled, credentials checked, and the apply path deploying by digest.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use common::{DockerRegistry, SyntheticImage, push_image, push_manifest, synthetic_image};
use flaredock::cloudflare::Secret;
use flaredock::oci::copy::{CopyError, CopyOptions, copy_image};
use flaredock::oci::{Credentials, Reference, RegistryClient, RegistryError};
use flaredock::reconcile::{ConvergeOptions, converge};

fn r(s: &str) -> Reference {
    Reference::parse(s).expect("reference")
}

fn client() -> RegistryClient {
    RegistryClient::new(vec![]).unwrap()
}

async fn dest_digest(reg: &DockerRegistry, repo: &str, reference: &str) -> Option<String> {
    client()
        .head_manifest(&reg.host, repo, reference, reg.credentials().as_ref())
        .await
        .unwrap()
        .map(|m| m.digest)
}

#[tokio::test]
async fn cold_then_warm_copy_keeps_the_digest() {
    let src = DockerRegistry::start_open();
    let dst = DockerRegistry::start_with_auth("cf", "secret");
    let image = synthetic_image(&[300_000, 200_000, 1000], 7);
    push_image(&src.host, "team/app", "v1", &image, None).await;
    let from = r(&format!("{}/team/app:v1", src.host));
    let to = r(&format!("{}/acc/app:v1", dst.host));
    let opts = CopyOptions::default();
    let cold = copy_image(
        &client(),
        &from,
        None,
        &to,
        dst.credentials().as_ref(),
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(
        cold.digest, image.digest,
        "the manifest bytes are unchanged"
    );
    assert_eq!(cold.blobs_uploaded, 4, "three layers and the config");
    assert_eq!(cold.bytes_uploaded, 501_000 + image.config.len() as u64);
    assert_eq!(
        dest_digest(&dst, "acc/app", "v1").await.as_deref(),
        Some(image.digest.as_str())
    );

    let warm = copy_image(
        &client(),
        &from,
        None,
        &to,
        dst.credentials().as_ref(),
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(warm.digest, image.digest);
    assert_eq!(
        (warm.blobs_uploaded, warm.blobs_skipped, warm.blobs_mounted),
        (0, 0, 0),
        "no blob request at all"
    );

    // A new image sharing two layers: only what is missing moves.
    let mut layers = image.layers.clone();
    layers[2] = vec![9u8; 5000];
    let shared = synthetic_with_layers(layers, 8);
    push_image(&src.host, "team/app", "v2", &shared, None).await;
    let partial = copy_image(
        &client(),
        &r(&format!("{}/team/app:v2", src.host)),
        None,
        &r(&format!("{}/acc/app:v2", dst.host)),
        dst.credentials().as_ref(),
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(partial.blobs_skipped, 2);
    assert_eq!(
        partial.blobs_uploaded, 2,
        "the new layer and the new config"
    );
}

fn synthetic_with_layers(layers: Vec<Vec<u8>>, seed: u64) -> SyntheticImage {
    let sizes: Vec<usize> = layers.iter().map(Vec::len).collect();
    let mut img = synthetic_image(&sizes, seed);
    img.layers = layers;
    // Rebuild config and manifest for the given layers.
    let diff_ids: Vec<String> = img.layers.iter().map(|l| common::digest_of(l)).collect();
    img.config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}, "seed": seed})
        .to_string()
        .into_bytes();
    img.manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": common::digest_of(&img.config), "size": img.config.len()},
        "layers": img.layers.iter().map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": common::digest_of(l), "size": l.len()})).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    img.digest = common::digest_of(&img.manifest);
    img
}

async fn push_index(
    reg: &DockerRegistry,
    repo: &str,
    tag: &str,
    platforms: &[(&str, &SyntheticImage)],
) -> String {
    let http = reqwest::Client::new();
    let mut manifests = Vec::new();
    for (platform, img) in platforms {
        push_image(&reg.host, repo, &img.digest, img, None).await;
        let (os, arch) = platform.split_once('/').unwrap();
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img.digest, "size": img.manifest.len(),
            "platform": {"os": os, "architecture": arch},
        }));
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})
        .to_string()
        .into_bytes();
    push_manifest(
        &http,
        &reg.host,
        repo,
        tag,
        "application/vnd.oci.image.index.v1+json",
        &index,
        None,
    )
    .await;
    common::digest_of(&index)
}

#[tokio::test]
async fn an_index_yields_its_amd64_image_or_a_clear_error() {
    let src = DockerRegistry::start_open();
    let dst = DockerRegistry::start_open();
    let amd = synthetic_image(&[1000], 1);
    let arm = synthetic_image(&[1000], 2);
    push_index(
        &src,
        "multi",
        "v1",
        &[("linux/arm64", &arm), ("linux/amd64", &amd)],
    )
    .await;
    let report = copy_image(
        &client(),
        &r(&format!("{}/multi:v1", src.host)),
        None,
        &r(&format!("{}/acc/multi:v1", dst.host)),
        None,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.digest, amd.digest, "linux/amd64 was picked");
    assert_eq!(
        dest_digest(&dst, "acc/multi", "v1").await.as_deref(),
        Some(amd.digest.as_str())
    );

    // --all: the whole index, digest preserved.
    let index_digest = push_index(
        &src,
        "multi",
        "v2",
        &[("linux/arm64", &arm), ("linux/amd64", &amd)],
    )
    .await;
    let all = copy_image(
        &client(),
        &r(&format!("{}/multi:v2", src.host)),
        None,
        &r(&format!("{}/acc/multi:v2", dst.host)),
        None,
        &CopyOptions {
            all: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(all.digest, index_digest);
    assert_eq!(
        dest_digest(&dst, "acc/multi", "v2").await.as_deref(),
        Some(index_digest.as_str())
    );

    push_index(
        &src,
        "armonly",
        "v1",
        &[("linux/arm64", &arm), ("linux/s390x", &amd)],
    )
    .await;
    let err = copy_image(
        &client(),
        &r(&format!("{}/armonly:v1", src.host)),
        None,
        &r(&format!("{}/acc/armonly:v1", dst.host)),
        None,
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    match &err {
        CopyError::NoPlatform { available, .. } => {
            assert_eq!(available, &["linux/arm64", "linux/s390x"])
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("linux/arm64, linux/s390x"),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_credentials_are_a_clear_error() {
    let src = DockerRegistry::start_open();
    let dst = DockerRegistry::start_with_auth("cf", "right");
    push_image(&src.host, "app", "v1", &synthetic_image(&[100], 3), None).await;
    let wrong = Credentials {
        username: "cf".into(),
        password: Secret::new("wrong-password"),
    };
    let err = copy_image(
        &client(),
        &r(&format!("{}/app:v1", src.host)),
        None,
        &r(&format!("{}/acc/app:v1", dst.host)),
        Some(&wrong),
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, CopyError::Registry(RegistryError::Unauthorized { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("authentication failed") && text.contains(&dst.host),
        "{text}"
    );
    assert!(!text.contains("wrong-password"));
}

/// A proxy in front of a registry that damages blob downloads.
#[derive(Clone)]
struct Proxy {
    upstream: String,
    mode: &'static str,
    blob_gets: Arc<AtomicUsize>,
}

async fn proxy(State(p): State<Proxy>, req: Request) -> Response {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|x| x.as_str().to_string())
        .unwrap_or_default();
    let is_blob_get =
        req.method() == axum::http::Method::GET && path_and_query.contains("/blobs/sha256:");
    let http = reqwest::Client::new();
    let mut up = http.request(
        req.method().clone(),
        format!("http://{}{path_and_query}", p.upstream),
    );
    for name in ["accept", "authorization", "content-type"] {
        if let Some(v) = req.headers().get(name) {
            up = up.header(name, v.clone());
        }
    }
    let resp = up.send().await.unwrap();
    let mut builder = Response::builder().status(resp.status().as_u16());
    for name in ["content-type", "docker-content-digest", "www-authenticate"] {
        if let Some(v) = resp.headers().get(name) {
            builder = builder.header(name, v.clone());
        }
    }
    let bytes = resp.bytes().await.unwrap();
    if !is_blob_get {
        return builder.body(Body::from(bytes)).unwrap();
    }
    let n = p.blob_gets.fetch_add(1, Ordering::SeqCst);
    match p.mode {
        "flip" => {
            let mut v = bytes.to_vec();
            let mid = v.len() / 2;
            v[mid] ^= 0xff;
            builder.body(Body::from(v)).unwrap()
        }
        "drop-once" if n == 0 => {
            let half = bytes.slice(..bytes.len() / 2);
            let stream = futures::stream::iter(vec![
                Ok::<Bytes, std::io::Error>(half),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "cut",
                )),
            ]);
            builder
                .header("content-length", bytes.len())
                .body(Body::from_stream(stream))
                .unwrap()
        }
        _ => builder.body(Body::from(bytes)).unwrap(),
    }
}

async fn start_proxy(upstream: &str, mode: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = Arc::new(AtomicUsize::new(0));
    let state = Proxy {
        upstream: upstream.to_string(),
        mode,
        blob_gets: counter.clone(),
    };
    let app = axum::Router::new().fallback(proxy).with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr.to_string(), counter)
}

#[tokio::test]
async fn a_corrupted_blob_is_rejected_and_nothing_is_committed() {
    let src = DockerRegistry::start_open();
    let dst = DockerRegistry::start_open();
    let image = synthetic_image(&[50_000], 4);
    push_image(&src.host, "app", "v1", &image, None).await;
    let (proxy_host, _) = start_proxy(&src.host, "flip").await;
    let err = copy_image(
        &client(),
        &r(&format!("{proxy_host}/app:v1")),
        None,
        &r(&format!("{}/acc/app:v1", dst.host)),
        None,
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CopyError::DigestMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("nothing was committed"));
    // Neither the damaged layer nor the manifest reached the destination.
    let head = reqwest::Client::new()
        .head(format!(
            "http://{}/v2/acc/app/blobs/{}",
            dst.host,
            common::digest_of(&image.layers[0])
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 404);
    assert_eq!(dest_digest(&dst, "acc/app", "v1").await, None);
}

#[tokio::test]
async fn a_source_connection_dropped_mid_blob_is_retried() {
    let src = DockerRegistry::start_open();
    let dst = DockerRegistry::start_open();
    let image = synthetic_image(&[200_000], 5);
    push_image(&src.host, "app", "v1", &image, None).await;
    let (proxy_host, gets) = start_proxy(&src.host, "drop-once").await;
    let report = copy_image(
        &client(),
        &r(&format!("{proxy_host}/app:v1")),
        None,
        &r(&format!("{}/acc/app:v1", dst.host)),
        None,
        &CopyOptions {
            jobs: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.digest, image.digest);
    assert_eq!(report.blobs_uploaded, 2);
    assert!(
        gets.load(Ordering::SeqCst) >= 3,
        "the cut blob was fetched again"
    );
    assert_eq!(
        dest_digest(&dst, "acc/app", "v1").await.as_deref(),
        Some(image.digest.as_str())
    );
}

#[tokio::test]
async fn same_registry_blobs_are_mounted() {
    let reg = DockerRegistry::start_open();
    let image = synthetic_image(&[10_000, 20_000], 6);
    push_image(&reg.host, "src/app", "v1", &image, None).await;
    let report = copy_image(
        &client(),
        &r(&format!("{}/src/app:v1", reg.host)),
        None,
        &r(&format!("{}/dst/app:v1", reg.host)),
        None,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.blobs_mounted, 3);
    assert_eq!(report.blobs_uploaded, 0);
    assert_eq!(
        dest_digest(&reg, "dst/app", "v1").await.as_deref(),
        Some(image.digest.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_copies_an_external_image_and_deploys_it_by_digest() {
    let source = DockerRegistry::start_open();
    let cloudflare = DockerRegistry::start_with_auth("cf", "cf-pass");
    let image = synthetic_image(&[4096, 4096], 9);
    push_image(&source.host, "team/api", "1.2.3", &image, None).await;
    let em = common::start_emulator(|c| c.registry = Some(cloudflare.as_external())).await;
    let text = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: api}}\nspec:\n  className: HelloContainer\n  image: {{reference: '{}/team/api:1.2.3'}}\n  worker: {{scriptName: hello-worker}}\n",
        source.host
    );
    let obj = flaredock::manifest::parse_document(&text, "api.yaml", 1)
        .unwrap()
        .unwrap();
    let reconciler = common::reconciler_for(&common::client_for(&em));
    let options = ConvergeOptions {
        timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let out = converge(&reconciler, std::slice::from_ref(&obj), &options, |_, _| {})
        .await
        .remove(&obj.key())
        .unwrap();
    assert!(out.ready(), "{:#?}", out.status);
    // Into the object's own repository (cluster id, namespace, name).
    let expected = format!(
        "{}/{}/cli/default/api@{}",
        cloudflare.host,
        em.account_id(),
        image.digest
    );
    assert_eq!(out.status.image.as_deref(), Some(expected.as_str()));
    let apps = common::client_for(&em).list_applications().await.unwrap();
    assert_eq!(apps[0].configuration.image, expected);
    assert_eq!(
        dest_digest(
            &cloudflare,
            &format!("{}/cli/default/api", em.account_id()),
            "1.2.3"
        )
        .await
        .as_deref(),
        Some(image.digest.as_str()),
        "copied under the source tag"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_copies_and_prints_the_digest_reference() {
    let src = DockerRegistry::start_open();
    let dst = DockerRegistry::start_with_auth("u", "p");
    let image = synthetic_image(&[1234], 10);
    push_image(&src.host, "x", "v1", &image, None).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args([
            "image",
            "copy",
            &format!("{}/x:v1", src.host),
            &format!("{}/acc/x:v1", dst.host),
            "--dest-creds",
            "u:p",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{}/acc/x@{}", dst.host, image.digest)
    );
}

/// A registry front that speaks the bearer-token challenge flow (as Docker Hub and GHCR
/// do) and proxies to an open registry once a token is presented.
async fn bearer_front(upstream: String) -> String {
    use axum::http::{HeaderMap, StatusCode};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let realm = format!("http://{addr}/token");
    let token = |headers: HeaderMap| async move {
        use base64::Engine;
        let ok = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|b| b == b"reader:s3cret");
        if ok {
            (StatusCode::OK, r#"{"token":"tok-123"}"#.to_string())
        } else {
            (StatusCode::UNAUTHORIZED, "{}".to_string())
        }
    };
    let front = move |req: Request| {
        let upstream = upstream.clone();
        let realm = realm.clone();
        async move {
            let authorized = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                == Some("Bearer tok-123");
            if !authorized {
                return Response::builder()
                    .status(401)
                    .header("www-authenticate", format!("Bearer realm=\"{realm}\",service=\"test\",scope=\"repository:team/app:pull\""))
                    .body(Body::empty())
                    .unwrap();
            }
            let pq = req
                .uri()
                .path_and_query()
                .map(|x| x.as_str().to_string())
                .unwrap_or_default();
            let mut up = reqwest::Client::new()
                .request(req.method().clone(), format!("http://{upstream}{pq}"));
            if let Some(a) = req.headers().get("accept") {
                up = up.header("accept", a.clone());
            }
            let resp = up.send().await.unwrap();
            let mut b = Response::builder().status(resp.status().as_u16());
            for h in ["content-type", "docker-content-digest"] {
                if let Some(v) = resp.headers().get(h) {
                    b = b.header(h, v.clone());
                }
            }
            b.body(Body::from(resp.bytes().await.unwrap())).unwrap()
        }
    };
    let app = axum::Router::new()
        .route("/token", axum::routing::get(token))
        .fallback(front);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_behind_the_bearer_token_flow_is_copied() {
    let upstream = DockerRegistry::start_open();
    let dst = DockerRegistry::start_open();
    let image = synthetic_image(&[7000, 100], 12);
    push_image(&upstream.host, "team/app", "v1", &image, None).await;
    let front = bearer_front(upstream.host.clone()).await;
    let from = r(&format!("{front}/team/app:v1"));
    let to = r(&format!("{}/acc/app:v1", dst.host));
    let creds = Credentials {
        username: "reader".into(),
        password: Secret::new("s3cret"),
    };
    let report = copy_image(
        &client(),
        &from,
        Some(&creds),
        &to,
        None,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.digest, image.digest);
    assert_eq!(report.blobs_uploaded, 3);
    let wrong = Credentials {
        username: "reader".into(),
        password: Secret::new("nope"),
    };
    let err = copy_image(
        &client(),
        &from,
        Some(&wrong),
        &r(&format!("{}/acc/other:v1", dst.host)),
        None,
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, CopyError::Registry(RegistryError::Unauthorized { .. })),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_one_namespace_obtained_is_not_used_for_another() {
    let upstream = DockerRegistry::start_open();
    let dst = DockerRegistry::start_open();
    let image = synthetic_image(&[3000], 13);
    push_image(&upstream.host, "team/app", "v1", &image, None).await;
    let front = bearer_front(upstream.host.clone()).await;
    let from = r(&format!("{front}/team/app:v1"));
    // One client for both, as in the controller: its token cache is shared.
    let shared = client();
    let team_a = Credentials {
        username: "reader".into(),
        password: Secret::new("s3cret"),
    };
    copy_image(
        &shared,
        &from,
        Some(&team_a),
        &r(&format!("{}/acc/a:v1", dst.host)),
        None,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    // Team B names no pull Secret: the token team A's Secret obtained is not sent.
    let err = copy_image(
        &shared,
        &from,
        None,
        &r(&format!("{}/acc/b:v1", dst.host)),
        None,
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, CopyError::Registry(RegistryError::Unauthorized { .. })),
        "{err:?}"
    );
    // Nor with other credentials.
    let team_c = Credentials {
        username: "reader".into(),
        password: Secret::new("guess"),
    };
    let err = copy_image(
        &shared,
        &from,
        Some(&team_c),
        &r(&format!("{}/acc/c:v1", dst.host)),
        None,
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, CopyError::Registry(RegistryError::Unauthorized { .. })),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_digest_a_copy_would_deploy_and_copies_nothing() {
    let source = DockerRegistry::start_open();
    let cloudflare = DockerRegistry::start_with_auth("cf", "cf-pass");
    let image = synthetic_image(&[4096], 44);
    push_image(&source.host, "team/api", "2.0", &image, None).await;
    let em = common::start_emulator(|c| c.registry = Some(cloudflare.as_external())).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: api}}\nspec:\n  className: HelloContainer\n  image: {{reference: '{}/team/api:2.0'}}\n  worker: {{scriptName: hello-worker}}\n",
            source.host
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["plan", "-f"])
        .arg(&file)
        .env("CLOUDFLARE_API_BASE_URL", em.base_url())
        .env("CLOUDFLARE_ACCOUNT_ID", em.account_id())
        .env("CLOUDFLARE_API_TOKEN", em.api_token())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("create application api"), "{stdout}");
    assert!(
        dest_digest(
            &cloudflare,
            &format!("{}/cli/default/api", em.account_id()),
            "2.0"
        )
        .await
        .is_none(),
        "plan copied nothing"
    );
    assert!(
        common::cloudflare_writes(&em).is_empty(),
        "plan wrote nothing"
    );
}

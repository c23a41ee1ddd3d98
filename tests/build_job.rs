//! The in-cluster build Job and its push-credentials Secret are pure functions of the
//! request: golden files pin them (`FLAREDOCK_UPDATE_GOLDEN=1` rewrites them). The
//! container that runs a tenant's `RUN` steps never sees the push credentials; the
//! context is fetched under the rules (https only, no redirect to another host, size
//! and time caps) by the Job, never by the controller; Jobs and Secrets are written
//! only while the write gate says so.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flaredock::build::fetch::{self, FetchError, FetchLimits};
use flaredock::build::job::{JobBuilder, JobSettings, Owner, build_job, build_secret, job_name};
use flaredock::build::{BuildInputs, BuildOutcome, BuildRequest, BuildSource, Builder};
use flaredock::cloudflare::Secret;
use flaredock::cloudflare::client::WriteGate;
use flaredock::oci::{Credentials, Reference};
use k8s_openapi::api::core::v1::Container;

fn request() -> BuildRequest {
    BuildRequest {
        object: "apps/shop".into(),
        source: BuildSource::Git {
            url: "https://github.com/example/shop.git".into(),
            reference: Some("main".into()),
            subdir: Some("services/shop".into()),
        },
        inputs: BuildInputs {
            dockerfile: "Dockerfile".into(),
            args: BTreeMap::from([("VERSION".to_string(), "1.2.3".to_string())]),
            target: Some("runtime".into()),
            platform: "linux/amd64".into(),
        },
        destination: Reference::parse(
            "registry.cloudflare.com/acc123/shop:build-0123456789abcdef01234567",
        )
        .unwrap(),
        credentials: Credentials {
            username: "v1".into(),
            password: Secret::new("push-password"),
        },
        owner: Some(owner()),
    }
}

fn owner() -> Owner {
    Owner {
        name: "shop".into(),
        namespace: "apps".into(),
        uid: "8a6c0f4e-0000-4000-8000-000000000001".into(),
    }
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("FLAREDOCK_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} is missing", path.display()));
    assert!(
        expected == actual,
        "{name} changed; if intended, rerun with FLAREDOCK_UPDATE_GOLDEN=1\n{actual}"
    );
}

fn pod_of(job: &k8s_openapi::api::batch::v1::Job) -> k8s_openapi::api::core::v1::PodSpec {
    job.spec.clone().unwrap().template.spec.unwrap()
}

fn container<'a>(pod: &'a k8s_openapi::api::core::v1::PodSpec, name: &str) -> &'a Container {
    pod.init_containers
        .iter()
        .flatten()
        .chain(pod.containers.iter())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// Every way a container can see a Secret: a Secret volume mounted, an env value
/// from a Secret, a whole Secret as env.
fn sees_a_secret(pod: &k8s_openapi::api::core::v1::PodSpec, c: &Container) -> Vec<String> {
    let secret_volumes: Vec<String> = pod
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.secret.is_some() || v.projected.is_some() || v.csi.is_some())
        .map(|v| v.name.clone())
        .collect();
    let mut seen = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        if secret_volumes.contains(&m.name) {
            seen.push(format!("volume {}", m.name));
        }
    }
    for e in c.env.iter().flatten() {
        if e.value_from
            .as_ref()
            .is_some_and(|f| f.secret_key_ref.is_some())
        {
            seen.push(format!("env {}", e.name));
        }
    }
    for e in c.env_from.iter().flatten() {
        if e.secret_ref.is_some() {
            seen.push("envFrom".into());
        }
    }
    seen
}

#[test]
fn the_build_job_is_golden() {
    let r = request();
    let name = job_name(&owner(), r.destination.tag.as_deref().unwrap());
    assert!(name.len() <= 63 && name.starts_with("flaredock-build-shop-"));
    let job = build_job(&owner(), &name, &name, &r, &JobSettings::default()).unwrap();
    let other_tenant = Owner {
        namespace: "team-b".into(),
        ..owner()
    };
    assert_ne!(
        job_name(&other_tenant, r.destination.tag.as_deref().unwrap()),
        name,
        "two tenants' builds never share a Job in the build namespace"
    );
    golden("build-job.yaml", &serde_yaml_ng::to_string(&job).unwrap());
    let spec = job.spec.clone().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert!(spec.ttl_seconds_after_finished.is_some() && spec.active_deadline_seconds.is_some());
    let pod = pod_of(&job);
    // fetch-context, then build, then push.
    let order: Vec<&str> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(order, ["fetch-context", "build"]);
    assert_eq!(pod.containers.len(), 1);
    assert_eq!(pod.containers[0].name, "push");

    let build = container(&pod, "build");
    assert_eq!(
        build.command.as_deref(),
        Some(&["buildctl-daemonless.sh".to_string()][..])
    );
    let args = build.args.clone().unwrap().join(" ");
    assert!(
        args.contains("--local context=/workspace/context/src/services/shop"),
        "BuildKit builds the fetched directory, it fetches nothing: {args}"
    );
    assert!(!args.contains("https://"), "{args}");
    assert!(args.contains("--output type=oci,dest=/workspace/out/image,tar=false"));
    assert!(
        !args.contains("push=true") && !args.contains("type=registry"),
        "{args}"
    );
    assert!(args.contains("build-arg:VERSION=1.2.3") && args.contains("target=runtime"));
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );
    // In the build namespace, on amd64 nodes, labelled with its object.
    assert_eq!(job.metadata.namespace.as_deref(), Some("flaredock-builds"));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["flaredock.dev/build-for"], "shop");
    assert_eq!(labels["flaredock.dev/build-for-namespace"], "apps");
    assert_eq!(
        pod.node_selector.as_ref().unwrap()["kubernetes.io/arch"],
        "amd64"
    );
    // Rootless BuildKit's newuidmap is setuid: escalation must be allowed (BuildKit's
    // job.rootless.yaml), in the build container only, and nothing else is granted.
    let sc = build.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(true));
    assert!(sc.privileged.is_none() && sc.capabilities.is_none());
    for name in ["fetch-context", "push"] {
        let sc = container(&pod, name).security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{name}");
        assert_eq!(
            sc.seccomp_profile.map(|p| p.type_).as_deref(),
            Some("RuntimeDefault"),
            "{name}"
        );
    }
    assert_eq!(
        pod.security_context
            .as_ref()
            .unwrap()
            .seccomp_profile
            .as_ref()
            .map(|p| p.type_.as_str()),
        Some("RuntimeDefault"),
        "Unconfined is the build container's alone"
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert!(
        !serde_yaml_ng::to_string(&pod)
            .unwrap()
            .contains("push-password"),
        "the password lives in the Secret only"
    );
}

/// The rule: the container that runs `RUN` steps (and the one that fetches the
/// tenant's context) can read no Secret; only `push` reads the build's Secret, and it
/// runs after the build has exited (an init container).
#[test]
fn the_container_that_runs_run_steps_holds_no_credentials() {
    for source in [
        request().source,
        BuildSource::parse("https://example.com/ctx.tar.gz", false).unwrap(),
    ] {
        let mut r = request();
        r.source = source;
        let job = build_job(&owner(), "b", "b-secret", &r, &JobSettings::default()).unwrap();
        let pod = pod_of(&job);
        let build = container(&pod, "build");
        assert_eq!(sees_a_secret(&pod, build), Vec::<String>::new());
        assert_eq!(
            sees_a_secret(&pod, container(&pod, "fetch-context")),
            Vec::<String>::new()
        );
        assert!(
            build
                .env
                .iter()
                .flatten()
                .all(|e| !e.name.contains("DOCKER_CONFIG") && !e.name.contains("CREDS")),
            "{:?}",
            build.env
        );
        assert!(
            pod.volumes.iter().flatten().all(|v| v.secret.is_none()),
            "no Secret volume in the pod at all"
        );
        let push = container(&pod, "push");
        assert_eq!(sees_a_secret(&pod, push), ["env FLAREDOCK_DEST_CREDS"]);
        let from = push.env.as_ref().unwrap()[0]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(from.name, "b-secret");
        assert_eq!(
            push.args.as_ref().unwrap()[..3],
            ["image", "copy", "oci:/workspace/out/image"]
        );
        assert!(
            pod.init_containers
                .iter()
                .flatten()
                .all(|c| c.name != "push")
        );
    }
}

#[test]
fn a_tarball_job_fetches_with_flaredock_and_checks_the_digest() {
    let mut r = request();
    let sha = "ab".repeat(32);
    r.source = BuildSource::parse(
        &format!("https://example.com/ctx.tar.gz#sha256={sha}"),
        false,
    )
    .unwrap();
    let job = build_job(
        &owner(),
        "flaredock-build-shop-t",
        "s",
        &r,
        &JobSettings::default(),
    )
    .unwrap();
    golden(
        "build-job-tarball.yaml",
        &serde_yaml_ng::to_string(&job).unwrap(),
    );
    let pod = pod_of(&job);
    let fetch = container(&pod, "fetch-context");
    let args = fetch.args.clone().unwrap().join(" ");
    assert!(args.starts_with("build fetch-context --into /workspace/context/src"));
    assert!(args.contains(&format!("--sha256 {sha}")));
    assert!(args.ends_with(" https://example.com/ctx.tar.gz"), "{args}");
    assert!(args.contains("--max-bytes 268435456"), "{args}");
    let build = container(&pod, "build").args.clone().unwrap().join(" ");
    assert!(
        build.contains("--local context=/workspace/context/src "),
        "{build}"
    );
}

#[test]
fn a_git_job_fetches_with_git_under_the_rules() {
    let job = build_job(&owner(), "n", "n", &request(), &JobSettings::default()).unwrap();
    let pod = pod_of(&job);
    let fetch = container(&pod, "fetch-context");
    let env: BTreeMap<String, String> = fetch
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        env["FLAREDOCK_GIT_URL"],
        "https://github.com/example/shop.git"
    );
    assert_eq!(env["FLAREDOCK_GIT_REF"], "main");
    let config: BTreeMap<&str, &str> = (0..env["GIT_CONFIG_COUNT"].parse::<usize>().unwrap())
        .map(|i| {
            (
                env[&format!("GIT_CONFIG_KEY_{i}")].as_str(),
                env[&format!("GIT_CONFIG_VALUE_{i}")].as_str(),
            )
        })
        .collect();
    assert_eq!(config["protocol.allow"], "never");
    assert_eq!(config["protocol.https.allow"], "always");
    assert_eq!(config["http.followRedirects"], "false");
    let script = fetch.command.as_ref().unwrap().join(" ");
    assert!(script.contains("timeout \"$FLAREDOCK_TIMEOUT\" git fetch"));
    assert!(script.contains("ulimit -f \"$FLAREDOCK_MAX_BLOCKS\""));
    assert!(
        !script.contains("github.com"),
        "no tenant text in the script, only in the environment"
    );
    assert_eq!(
        env["FLAREDOCK_MAX_BLOCKS"],
        (268435456u64 / 512).to_string()
    );
    let syntax = std::process::Command::new("sh")
        .arg("-n")
        .arg("-c")
        .arg(&fetch.command.as_ref().unwrap()[2])
        .status()
        .unwrap();
    assert!(syntax.success(), "the fetch script parses");
    // The context volume is capped too.
    let context = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "context")
        .unwrap();
    assert!(context.empty_dir.as_ref().unwrap().size_limit.is_some());
}

#[test]
fn the_build_secret_is_golden() {
    let secret = build_secret(
        &owner(),
        "flaredock-builds",
        "flaredock-build-shop-x",
        &request(),
    );
    assert_eq!(
        secret.metadata.namespace.as_deref(),
        Some("flaredock-builds")
    );
    assert_eq!(
        secret.metadata.labels.as_ref().unwrap()["flaredock.dev/build-for-namespace"],
        "apps"
    );
    assert_eq!(
        secret.data.as_ref().unwrap()["dest-creds"].0,
        b"v1:push-password",
        "what `image copy` reads from FLAREDOCK_DEST_CREDS"
    );
    golden(
        "build-secret.yaml",
        &serde_yaml_ng::to_string(&secret).unwrap(),
    );
}

#[test]
fn local_contexts_cannot_be_built_in_the_cluster() {
    let mut r = request();
    r.source = BuildSource::Local("/tmp/app".into());
    let err = build_job(&owner(), "n", "n", &r, &JobSettings::default()).unwrap_err();
    assert!(err.contains("git URL or an HTTPS tarball"));
}

// --- The identity: no network call. ---

/// A listener that counts the connections it was offered.
fn listener() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn was_contacted(l: &std::net::TcpListener) -> bool {
    match l.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn the_content_tag_of_a_remote_context_needs_no_network() {
    let (l, port) = listener();
    let inputs = request().inputs;
    let contexts = [
        format!("https://127.0.0.1:{port}/org/shop.git#main:svc"),
        format!("https://127.0.0.1:{port}/org/shop.git"),
        format!(
            "https://127.0.0.1:{port}/org/shop.git#{}",
            "c0ffee".repeat(6) + "c0ff"
        ),
        format!("https://127.0.0.1:{port}/ctx.tar.gz"),
        format!(
            "https://127.0.0.1:{port}/ctx.tar.gz#sha256={}",
            "0f".repeat(32)
        ),
    ];
    let mut tags = std::collections::BTreeSet::new();
    for c in &contexts {
        let source = BuildSource::parse(c, false).unwrap();
        let tag = source.tag(&inputs, None).unwrap();
        assert!(tag.starts_with("build-"), "{tag}");
        assert_eq!(tag, source.tag(&inputs, None).unwrap(), "stable");
        tags.insert(tag);
    }
    assert_eq!(tags.len(), contexts.len(), "each source has its own tag");
    assert!(
        !was_contacted(&l),
        "computing the identity contacted the server"
    );
}

#[test]
fn a_moving_ref_is_rebuilt_by_the_spec_or_the_rebuild_annotation_only() {
    let inputs = request().inputs;
    let branch = BuildSource::parse("https://g.io/o/r.git#main", false).unwrap();
    assert!(!branch.is_pinned());
    let plain = branch.tag(&inputs, None).unwrap();
    let bumped = branch.tag(&inputs, Some("2")).unwrap();
    assert_ne!(plain, bumped, "the annotation rebuilds a moving ref");
    assert_ne!(
        plain,
        BuildSource::parse("https://g.io/o/r.git#release", false)
            .unwrap()
            .tag(&inputs, None)
            .unwrap()
    );
    let pinned =
        BuildSource::parse(&format!("https://g.io/o/r.git#{}", "a".repeat(40)), false).unwrap();
    assert!(pinned.is_pinned());
    assert_eq!(
        pinned.tag(&inputs, None).unwrap(),
        pinned.tag(&inputs, Some("2")).unwrap(),
        "a pinned commit's identity is its content"
    );
    // A commit's identity is unchanged from earlier releases (existing tags stay valid).
    assert_eq!(
        pinned.identity(None).unwrap(),
        format!("git:{}:", "a".repeat(40))
    );
}

// --- Parsing: https only, no credentials in the URL. ---

#[test]
fn an_http_context_is_refused_with_a_message_that_says_https() {
    for c in [
        "http://github.com/org/repo.git#main",
        "http://example.com/ctx.tar.gz",
        "ftp://example.com/ctx.tar",
    ] {
        let err = BuildSource::parse(c, true).unwrap_err();
        assert!(err.contains("only https://"), "{c}: {err}");
    }
    let err = BuildSource::parse("https://user:tok3n@github.com/o/r.git", false).unwrap_err();
    assert!(err.contains("credentials"), "{err}");
    assert!(!err.contains("tok3n"), "{err}");
    assert!(BuildSource::parse("https://g.io/o/r.git#--upload-pack=x", false).is_err());
    assert!(BuildSource::parse("https://x.io/c.tar.gz#sha256=abc", false).is_err());
}

#[test]
fn fetch_context_refuses_http() {
    let (l, port) = listener();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["build", "fetch-context", "--into"])
        .arg(dir.path().join("src"))
        .arg(format!("http://127.0.0.1:{port}/ctx.tar"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("only https://"), "{text}");
    assert!(!was_contacted(&l));
}

// --- Fetching under the rules, against an HTTPS server. ---

struct Tls {
    /// PEM of the CA of the server's certificate (127.0.0.1 and localhost).
    cert: Vec<u8>,
    config: Arc<tokio_rustls::rustls::ServerConfig>,
}

fn tls() -> Tls {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f);
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("these tests need the openssl command (apt-get install openssl)");
        assert!(status.success(), "openssl {args:?} failed");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    // A CA, and a server certificate it signs (webpki takes no CA as a server's).
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=flaredock-test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        d("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    let (key, cert) = (d("key.pem"), d("cert.pem"));
    let ca_pem = std::fs::read(d("ca.pem")).unwrap();
    let cert_pem = std::fs::read(&cert).unwrap();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Tls {
        cert: ca_pem,
        config: Arc::new(config),
    }
}

/// A canned answer: status, headers, body; `stall` holds the connection open instead.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    stall: bool,
}

fn ok(body: Vec<u8>) -> Answer {
    Answer {
        status: 200,
        headers: vec![("content-length".into(), body.len().to_string())],
        body,
        stall: false,
    }
}

fn redirect(to: &str) -> Answer {
    Answer {
        status: 302,
        headers: vec![
            ("location".into(), to.into()),
            ("content-length".into(), "0".into()),
        ],
        body: vec![],
        stall: false,
    }
}

/// An HTTPS server answering by path; returns its port.
async fn serve(tls: &Tls, routes: impl Fn(&str, u16) -> Answer + Send + Sync + 'static) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let routes = routes.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                let a = routes(&path, port);
                if a.stall {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                let mut out = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", a.status);
                for (k, v) in &a.headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let _ = s.write_all(out.as_bytes()).await;
                let _ = s.write_all(&a.body).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

fn tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    let raw = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    gz.finish().unwrap()
}

fn limits() -> FetchLimits {
    FetchLimits {
        max_bytes: 1 << 20,
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..FetchLimits::default()
    }
}

#[tokio::test]
async fn a_context_is_fetched_from_its_own_host_only_within_the_caps() {
    let tls = tls();
    let ctx = tarball(&[("Dockerfile", b"FROM scratch\n"), ("app/a.txt", b"hello")]);
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&ctx));
    let served = ctx.clone();
    let port = serve(&tls, move |path, port| match path {
        "/ctx.tar.gz" => ok(served.clone()),
        "/same.tar.gz" => redirect("/ctx.tar.gz"),
        "/other.tar.gz" => redirect(&format!("https://localhost:{port}/ctx.tar.gz")),
        "/big.tar" => ok(vec![0u8; 2 << 20]),
        "/big-chunked.tar" => Answer {
            status: 200,
            headers: vec![],
            body: vec![0u8; 2 << 20],
            stall: false,
        },
        "/slow.tar" => Answer {
            status: 200,
            headers: vec![],
            body: vec![],
            stall: true,
        },
        "/loop.tar" => redirect("/loop.tar"),
        _ => Answer {
            status: 404,
            headers: vec![("content-length".into(), "0".into())],
            body: vec![],
            stall: false,
        },
    })
    .await;
    let limits = limits();
    let client = fetch::client(&limits, Some(&tls.cert)).unwrap();
    let url = |p: &str| format!("https://127.0.0.1:{port}{p}");
    let work = tempfile::tempdir().unwrap();

    // Fetched, verified, unpacked.
    let into = work.path().join("a");
    let got = fetch::fetch_tarball(&client, &url("/ctx.tar.gz"), Some(&sha), &into, &limits)
        .await
        .unwrap();
    assert_eq!(got.sha256, sha);
    assert_eq!(std::fs::read(into.join("app/a.txt")).unwrap(), b"hello");

    // A redirect on the same host is followed.
    let into = work.path().join("b");
    fetch::fetch_tarball(&client, &url("/same.tar.gz"), None, &into, &limits)
        .await
        .unwrap();
    assert!(into.join("Dockerfile").is_file());

    // A redirect to another host is not.
    let err = fetch::fetch_tarball(
        &client,
        &url("/other.tar.gz"),
        None,
        &work.path().join("c"),
        &limits,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::CrossHostRedirect { .. }), "{err}");
    assert!(err.to_string().contains("localhost"), "{err}");

    // The size cap, declared or not.
    for p in ["/big.tar", "/big-chunked.tar"] {
        let err = fetch::fetch_tarball(&client, &url(p), None, &work.path().join("d"), &limits)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::TooLarge { limit: 1048576, .. }),
            "{p}: {err}"
        );
    }

    // The time cap.
    let started = std::time::Instant::now();
    let err = fetch::fetch_tarball(
        &client,
        &url("/slow.tar"),
        None,
        &work.path().join("e"),
        &limits,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::TimedOut { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));

    // Redirect loops end.
    let err = fetch::fetch_tarball(
        &client,
        &url("/loop.tar"),
        None,
        &work.path().join("f"),
        &limits,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::TooManyRedirects { .. }), "{err}");

    // A declared digest that does not match.
    let err = fetch::fetch_tarball(
        &client,
        &url("/ctx.tar.gz"),
        Some(&"0".repeat(64)),
        &work.path().join("g"),
        &limits,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::DigestMismatch { .. }), "{err}");
    assert!(
        !work.path().join("g/Dockerfile").exists(),
        "nothing unpacked"
    );

    // http is refused before any connection.
    let err = fetch::fetch_tarball(
        &client,
        &format!("http://127.0.0.1:{port}/ctx.tar.gz"),
        None,
        &work.path().join("h"),
        &limits,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("only https://"), "{err}");
}

#[tokio::test]
async fn the_unpacked_context_is_capped_and_stays_inside() {
    let work = tempfile::tempdir().unwrap();
    let limits = FetchLimits {
        max_unpacked_bytes: 1000,
        ..limits()
    };
    let bomb = work.path().join("bomb.tar.gz");
    std::fs::write(&bomb, tarball(&[("a", &[0u8; 800]), ("b", &[0u8; 800])])).unwrap();
    let err = fetch::unpack(&bomb, &work.path().join("x"), &limits).unwrap_err();
    assert!(err.to_string().contains("more than 1000 bytes"), "{err}");

    // `..` cannot leave the directory (the tar crate's builder refuses to write one,
    // so the entry's name is set by hand).
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let evil = work.path().join("evil.tar");
    std::fs::write(&evil, b.into_inner().unwrap()).unwrap();
    let inner = work.path().join("inner");
    let err = fetch::unpack(&evil, &inner, &limits).unwrap_err();
    assert!(err.to_string().contains("outside the context"), "{err}");
    assert!(
        !work.path().join("escape").exists(),
        "nothing was written outside"
    );
}

// --- The write gate. ---

#[tokio::test]
async fn a_builder_that_is_not_the_leader_creates_nothing() {
    let (client, fake) = common::fake_kube::fake_kube();
    let leader = Arc::new(AtomicBool::new(false));
    let l = leader.clone();
    let builder = JobBuilder::new(
        client,
        JobSettings {
            enabled: true,
            ..JobSettings::default()
        },
    )
    .with_write_gate(WriteGate::while_open(move || l.load(Ordering::SeqCst)));
    let r = request();
    let outcome = builder.build(&r).await;
    assert!(
        matches!(&outcome, BuildOutcome::InProgress(m) if m.contains("not the leader")),
        "{outcome:?}"
    );
    let writes: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|q| q.method != "GET")
        .map(|q| format!("{} {}", q.method, q.path))
        .collect();
    assert_eq!(writes, Vec::<String>::new(), "a follower writes nothing");

    // The leader creates the Secret and the Job.
    leader.store(true, Ordering::SeqCst);
    let outcome = builder.build(&r).await;
    assert!(
        matches!(&outcome, BuildOutcome::InProgress(m) if m.contains("started")),
        "{outcome:?}"
    );
    let name = job_name(&owner(), r.destination.tag.as_deref().unwrap());
    assert_eq!(fake.writes("/secrets").len(), 1);
    assert_eq!(fake.writes("/jobs").len(), 1);

    // The Job ended: a follower does not delete the Secret, the leader does.
    let job_path = format!("/apis/batch/v1/namespaces/flaredock-builds/jobs/{name}");
    fake.objects.lock().unwrap().get_mut(&job_path).unwrap()["status"] =
        serde_json::json!({"succeeded": 1});
    leader.store(false, Ordering::SeqCst);
    assert_eq!(builder.build(&r).await, BuildOutcome::Pushed);
    assert_eq!(
        fake.writes("/secrets").len(),
        1,
        "no DELETE while not the leader"
    );
    leader.store(true, Ordering::SeqCst);
    assert_eq!(builder.build(&r).await, BuildOutcome::Pushed);
    let deletes: Vec<_> = fake
        .writes("/secrets")
        .into_iter()
        .filter(|q| q.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
}

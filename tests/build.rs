//! Dockerfile builds with buildah (`FROM scratch`, chroot isolation, vfs storage) into a
//! real `docker-registry` standing in for Cloudflare's: built and deployed by digest; an
//! unchanged context builds, pushes and writes nothing; one changed file is one new
//! digest and exactly one rollout; a failing build reports its log.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flaredock::build::local::LocalBuilder;
use flaredock::build::{BuildOutcome, BuildRequest, Builder};
use flaredock::emulator::{DEMO_CLASS, DEMO_SCRIPT, RunningEmulator};
use flaredock::reconcile::{ConvergeOptions, ReconcileOutcome, Reconciler, converge};
use futures::future::BoxFuture;

/// Counts the builds that really run.
struct Counting {
    inner: LocalBuilder,
    builds: Arc<AtomicUsize>,
}

impl Builder for Counting {
    fn build<'a>(&'a self, request: &'a BuildRequest) -> BoxFuture<'a, BuildOutcome> {
        self.builds.fetch_add(1, Ordering::SeqCst);
        self.inner.build(request)
    }
}

fn buildah() -> std::path::PathBuf {
    let p = std::path::PathBuf::from("/usr/bin/buildah");
    assert!(
        p.exists(),
        "this test needs buildah (apt-get install buildah, or run scripts/test.sh)"
    );
    p
}

fn reconciler(em: &RunningEmulator, storage: &Path, builds: &Arc<AtomicUsize>) -> Reconciler {
    let builder = Counting {
        inner: LocalBuilder::buildah_with_storage(buildah(), storage),
        builds: builds.clone(),
    };
    common::reconciler_with_builder(em, Arc::new(builder))
}

fn object(context: &Path) -> flaredock::spec::CloudflareContainer {
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: shop, namespace: apps}}\nspec:\n  className: {DEMO_CLASS}\n  build:\n    context: {}\n    args: {{GREETING: hello}}\n  worker: {{scriptName: {DEMO_SCRIPT}}}\n",
        context.display()
    );
    flaredock::manifest::parse_document(&doc, "b.yaml", 1)
        .unwrap()
        .unwrap()
}

async fn apply(r: &Reconciler, obj: &flaredock::spec::CloudflareContainer) -> ReconcileOutcome {
    let options = ConvergeOptions {
        timeout: Duration::from_secs(120),
        poll: Duration::from_millis(20),
        ..Default::default()
    };
    converge(r, std::slice::from_ref(obj), &options, |_, _| {})
        .await
        .remove(&obj.key())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_deploy_then_nothing_then_one_rollout() {
    let registry = common::DockerRegistry::start_with_auth("cf", "cf-pass");
    let em = common::start_emulator(|c| c.registry = Some(registry.as_external())).await;
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY app.txt /app.txt\nARG GREETING\nLABEL greeting=$GREETING\n",
    )
    .unwrap();
    std::fs::write(ctx.join("app.txt"), "version 1\n").unwrap();
    let builds = Arc::new(AtomicUsize::new(0));
    let storage = work.path().join("buildah");
    let obj = object(&ctx);

    // Build and deploy by digest.
    let out = apply(&reconciler(&em, &storage, &builds), &obj).await;
    assert!(out.ready(), "{:#?}", out.status);
    assert_eq!(builds.load(Ordering::SeqCst), 1);
    let image = out.status.image.clone().unwrap();
    assert!(
        image.starts_with(&format!(
            "{}/{}/cli/apps/shop@sha256:",
            registry.host,
            em.account_id()
        )),
        "{image}"
    );
    let apps = common::client_for(&em).list_applications().await.unwrap();
    assert_eq!(apps[0].configuration.image, image);

    // Unchanged: no build, no push, no API write.
    em.shared.clear_requests();
    let again = apply(&reconciler(&em, &storage, &builds), &obj).await;
    assert!(again.ready());
    assert_eq!(builds.load(Ordering::SeqCst), 1, "nothing was built");
    assert!(
        common::cloudflare_writes(&em).is_empty(),
        "{:?}",
        common::cloudflare_writes(&em)
    );
    assert_eq!(again.status.image.as_deref(), Some(image.as_str()));

    // One changed file: one new digest, exactly one rollout.
    std::fs::write(ctx.join("app.txt"), "version 2\n").unwrap();
    em.shared.clear_requests();
    let changed = apply(&reconciler(&em, &storage, &builds), &obj).await;
    assert!(changed.ready(), "{:#?}", changed.status);
    assert_eq!(builds.load(Ordering::SeqCst), 2);
    let new_image = changed.status.image.clone().unwrap();
    assert_ne!(new_image, image);
    let w = common::cloudflare_writes(&em);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].ends_with("/rollouts"));
    assert_eq!(
        common::client_for(&em).list_applications().await.unwrap()[0]
            .configuration
            .image,
        new_image
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_build_reports_its_log() {
    let registry = common::DockerRegistry::start_with_auth("cf", "cf-pass");
    let em = common::start_emulator(|c| c.registry = Some(registry.as_external())).await;
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY does-not-exist.txt /x\n",
    )
    .unwrap();
    let builds = Arc::new(AtomicUsize::new(0));
    let out = apply(
        &reconciler(&em, &work.path().join("buildah"), &builds),
        &object(&ctx),
    )
    .await;
    assert!(!out.ready());
    assert!(out.stalled(), "a failed build waits for a change");
    let image = flaredock::reconcile::status::condition(&out.status, "ImageReady").unwrap();
    assert_eq!(image.reason, "BuildFailed");
    assert!(
        image.message.contains("does-not-exist.txt"),
        "the log tail is in the message: {}",
        image.message
    );
    assert!(!image.message.contains("cf-pass"));
    assert!(
        common::client_for(&em)
            .list_applications()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_builds_nothing() {
    let registry = common::DockerRegistry::start_with_auth("cf", "cf-pass");
    let em = common::start_emulator(|c| c.registry = Some(registry.as_external())).await;
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY app.txt /app.txt\n",
    )
    .unwrap();
    std::fs::write(ctx.join("app.txt"), "x\n").unwrap();
    let builds = Arc::new(AtomicUsize::new(0));
    let r = reconciler(&em, &work.path().join("buildah"), &builds);
    let (plan, _) = r
        .preview(&object(&ctx), &std::collections::HashMap::new())
        .await
        .unwrap();
    // The build is the plan's first action, into the object's own repository.
    let first = plan.actions.first().expect("a build is planned");
    assert_eq!(first.kind(), "build-image", "{plan:?}");
    assert!(
        first.to_string().contains("/cli/apps/shop:build-"),
        "{first}"
    );
    assert_eq!(builds.load(Ordering::SeqCst), 0, "nothing was built");
}

#[test]
fn a_missing_builder_is_named_without_another_tools_usage_text() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/dockerfile-build.yaml"
    );
    let run = |path: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_flaredock"))
            .args(["apply", "--emulator", "--timeout", "5s", "-f", example])
            .env("PATH", path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // Neither tool.
    let empty = tempfile::tempdir().unwrap();
    let (code, text) = run(empty.path());
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("buildah not found, nor docker"), "{text}");
    // A docker without buildx: named as such, its usage text not shown.
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("docker");
    std::fs::write(
        &docker,
        "#!/bin/sh\necho \"Usage:  docker [OPTIONS] COMMAND\" >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, text) = run(dir.path());
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("has no buildx plugin"), "{text}");
    assert!(!text.contains("Usage:"), "{text}");
}

fn buildah_run(storage: &Path, args: &[&str]) {
    let out = std::process::Command::new(buildah())
        .arg("--root")
        .arg(storage.join("storage"))
        .arg("--runroot")
        .arg(storage.join("run"))
        .args(["--storage-driver", "vfs"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "buildah {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn image_copy(args: &[&str], creds: &str) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["image", "copy"])
        .args(args)
        .env("FLAREDOCK_DEST_CREDS", creds)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The in-cluster build's second half, for real: BuildKit leaves an OCI layout (here
/// buildah writes one), and the push container's exact command — `flaredock image copy
/// oci:DIR DEST` with the credentials in FLAREDOCK_DEST_CREDS — pushes it, by digest,
/// once; a layout whose blob was altered after it was written pushes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oci_layout_is_pushed_by_the_push_containers_command() {
    let registry = common::DockerRegistry::start_with_auth("cf", "cf-pass");
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY app.txt /app.txt\n",
    )
    .unwrap();
    std::fs::write(ctx.join("app.txt"), "from a layout\n").unwrap();
    let storage = work.path().join("buildah");
    let layout = work.path().join("layout");
    let ctx_arg = ctx.display().to_string();
    buildah_run(
        &storage,
        &[
            "build",
            "--isolation",
            "chroot",
            "-t",
            "localhost/layout-test:1",
            &ctx_arg,
        ],
    );
    buildah_run(
        &storage,
        &[
            "push",
            "localhost/layout-test:1",
            &format!("oci:{}", layout.display()),
        ],
    );
    let source = format!("oci:{}", layout.display());
    let dest = format!("{}/acc/shop:build-1", registry.host);
    let (code, stdout, stderr) = image_copy(&[&source, &dest], "cf:cf-pass");
    assert_eq!(code, Some(0), "{stderr}");
    let digest = stdout.rsplit('@').next().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{stdout}");
    let client = flaredock::oci::RegistryClient::new(vec![]).unwrap();
    let head = client
        .head_manifest(
            &registry.host,
            "acc/shop",
            "build-1",
            registry.credentials().as_ref(),
        )
        .await
        .unwrap()
        .expect("the tag was pushed");
    assert_eq!(head.digest, digest);
    assert!(
        stderr.contains("2 blob(s) uploaded"),
        "config and one layer: {stderr}"
    );

    // Again: every blob is there already.
    let (code, _, stderr) = image_copy(&[&source, &dest], "cf:cf-pass");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("0 blob(s) uploaded"), "{stderr}");

    // Wrong credentials are refused.
    let (code, _, _) = image_copy(
        &[&source, &format!("{}/acc/x:1", registry.host)],
        "cf:wrong",
    );
    assert_eq!(code, Some(1));

    // An altered layer: refused before anything is committed.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(manifest_digest)).unwrap()).unwrap();
    let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let other = format!("{}/acc/other:build-1", registry.host);
    let (code, _, stderr) = image_copy(&[&source, &other], "cf:cf-pass");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("hashed to") || stderr.contains("sha256"),
        "{stderr}"
    );
    assert!(
        client
            .head_manifest(
                &registry.host,
                "acc/other",
                "build-1",
                registry.credentials().as_ref()
            )
            .await
            .unwrap()
            .is_none(),
        "nothing was committed"
    );
}

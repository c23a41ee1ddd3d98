//! The example a newcomer follows to see a request served by a container
//! (`examples/served/`): its README's steps, run through the `flaredock` binary on a
//! temporary copy of the directory (the static busybox copied into the copy's context,
//! never into the repository). `flaredock apply -f` builds the image with buildah
//! (buildah's own default storage, as on a workstation), pushes it to the emulator's
//! registry and deploys the Worker and the container; a GET of the Worker's workers.dev
//! host goes Worker → Durable Object → the container the emulator runs, and the answer
//! holds the line baked into the image and the CloudflareContainer spec's env value, as
//! the README shows it.
//!
//! Needs workerd (`npm install -g workerd@1.20260426.1`, or `FLAREDOCK_WORKERD`),
//! buildah on PATH and a static busybox at /bin/busybox (Debian `busybox-static`);
//! scripts/test.sh installs them. The example's container listens on 127.0.0.1:8080.

mod common;

use std::path::Path;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/served");
/// The port the example's Dockerfile and Worker use.
const PORT: u16 = 8080;
/// What the README says the `curl` answers.
const ANSWER: &str = "baked into the image: served by the container\nGREETING=hello from the CloudflareContainer spec\n";

fn workerd() -> std::path::PathBuf {
    flaredock::emulator::workerd::locate().unwrap_or_else(|| {
        panic!(
            "this test needs workerd: `npm install -g workerd@1.20260426.1` (scripts/test.sh installs it), or set FLAREDOCK_WORKERD=/path/to/workerd"
        )
    })
}

fn need_buildah() {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("buildah").is_file()));
    assert!(
        found,
        "this test needs buildah on PATH: apt-get install buildah (scripts/test.sh)"
    );
}

fn busybox() -> &'static Path {
    let p = Path::new("/bin/busybox");
    assert!(
        p.is_file(),
        "this test needs a static busybox at /bin/busybox: apt-get install busybox-static (scripts/test.sh)"
    );
    p
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn flaredock(em: &common::Emulator, args: &[&str]) -> (Option<i32>, String, String) {
    common::flaredock_cli(em, args)
}

/// A request to the Worker at `host`, through the emulator's listener: status, body.
async fn visit(em: &common::Emulator, host: &str, path: &str) -> (u16, String) {
    common::visit(em, host, path).await
}

/// The README's commands, as a newcomer copies them.
#[test]
fn the_readme_gives_the_commands_the_test_runs_and_the_answer_it_gets() {
    let readme = std::fs::read_to_string(Path::new(EXAMPLE).join("README.md")).unwrap();
    for step in [
        "cp /bin/busybox examples/served/context/",
        "flaredock emulator",
        "export CLOUDFLARE_API_BASE_URL=http://127.0.0.1:8787/client/v4",
        "flaredock apply -f examples/served/",
        "curl -s -H 'Host: served.flaredock.workers.dev' http://127.0.0.1:8787/cgi-bin/hello",
        ANSWER,
    ] {
        assert!(readme.contains(step), "README.md lacks {step:?}");
    }
    // The binary is never committed: .gitignore keeps the copied busybox out.
    let ignore =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.gitignore")).unwrap();
    assert!(
        ignore
            .lines()
            .any(|l| l == "/examples/served/context/busybox"),
        "{ignore}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_example_answers_with_the_containers_own_reply() {
    let bin = workerd();
    need_buildah();
    assert!(
        !port_open(PORT),
        "127.0.0.1:{PORT}, the example container's port, is taken: free it to run this test"
    );

    // A copy of the example, with the static busybox copied into its context.
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("served");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(EXAMPLE)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());
    std::fs::copy(busybox(), copy.join("context/busybox")).unwrap();

    let em = common::start_emulator(move |c| c.workerd = Some(bin)).await;
    assert!(
        em.shared.containers.available(),
        "the emulator found buildah on PATH"
    );
    let copy_arg = copy.display().to_string();
    let (code, out, err) = flaredock(&em, &["apply", "--timeout", "300s", "-f", &copy_arg]);
    assert_eq!(code, Some(0), "{out}{err}");
    for start in [
        "CloudflareWorker default/served: Ready=True",
        "  url: https://served.flaredock.workers.dev",
        // The CloudflareContainer's line.
        "default/served: Ready=True",
    ] {
        assert!(out.lines().any(|l| l.starts_with(start)), "{start}: {out}");
    }
    // Built and pushed to the emulator's registry, deployed by digest.
    let apps = common::client_for(&em).list_applications().await.unwrap();
    assert_eq!(apps.len(), 1, "{apps:?}");
    let image = &apps[0].configuration.image;
    assert!(
        image.starts_with(&format!("{}/{}/", em.registry_host(), em.account_id()))
            && image.contains("@sha256:"),
        "{image}"
    );
    assert_eq!(
        em.shared.containers.running(),
        0,
        "nothing runs before a request"
    );

    // Worker → Durable Object → container: the answer only the container can give.
    let (status, body) = visit(&em, "served.flaredock.workers.dev", "/cgi-bin/hello").await;
    assert_eq!((status, body.as_str()), (200, ANSWER), "{body}");
    assert_eq!(em.shared.containers.running(), 1);
    assert!(port_open(PORT), "the container's httpd listens on {PORT}");

    em.stop().await;
    assert!(
        !port_open(PORT),
        "the emulator stopping ended the container"
    );
}

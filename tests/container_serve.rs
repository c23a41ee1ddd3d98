//! A request served by the container: an image built with flaredock's builder (buildah,
//! `FROM scratch` + a static busybox serving files and a CGI script), pushed to the
//! emulator's registry and deployed with a CloudflareWorker and a CloudflareContainer;
//! a GET of the Worker's workers.dev host goes Worker → Durable Object → the container
//! the emulator runs (`flaredock::emulator::containers`), and the answer is the
//! container's: a file baked into the image and an environment variable of the
//! CloudflareContainer's spec. A rollout to a changed image: the next request is served
//! by the new image and the old instance is gone. Deleting the application ends its
//! processes. From an external registry (`docker-registry` with basic auth) too; and the
//! emulator stopping ends its containers.
//!
//! Needs workerd (`npm install -g workerd@1.20260426.1`, or `FLAREDOCK_WORKERD`),
//! buildah and a static busybox at /bin/busybox (Debian `busybox-static`); scripts/test.sh
//! installs them.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flaredock::build::local::LocalBuilder;
use flaredock::emulator::RunningEmulator;
use flaredock::reconcile::Reconciler;
use flaredock::reconcile::converge::Converged;

fn need(path: &str, how: &str) -> std::path::PathBuf {
    let p = std::path::PathBuf::from(path);
    assert!(p.is_file(), "this test needs {path}: {how}");
    p
}

fn workerd() {
    assert!(
        flaredock::emulator::workerd::locate().is_some(),
        "this test needs workerd: `npm install -g workerd@1.20260426.1` (scripts/test.sh installs it), or set FLAREDOCK_WORKERD=/path/to/workerd"
    );
}

fn reconciler(em: &RunningEmulator, storage: &Path) -> Reconciler {
    let builder = LocalBuilder::buildah_with_storage(
        need(
            "/usr/bin/buildah",
            "apt-get install buildah (scripts/test.sh)",
        ),
        storage,
    );
    common::reconciler_with_builder(em, Arc::new(builder))
}

/// The Worker: its `fetch` sends the request to the `Shop` Durable Object, which starts
/// its container when it does not run and forwards the request to the container's port.
fn worker(port: u16, spare: u16) -> String {
    format!(
        r#"apiVersion: flaredock.dev/v1alpha1
kind: CloudflareWorker
metadata: {{name: shop, namespace: apps}}
spec:
  compatibilityDate: "2026-06-01"
  source:
    inline:
      mainModule: index.js
      modules:
        index.js: |
          export class Shop {{
            constructor(ctx, env) {{ this.ctx = ctx; }}
            async fetch(request) {{
              try {{
                const c = this.ctx.container;
                // /crash: a command that prints its environment and fails.
                // (on a port of its own, which nothing claims).
                const crash = new URL(request.url).pathname === "/crash";
                const entrypoint = crash
                  ? ["/bin/busybox", "sh", "-c", "echo \"greeting is $GREETING\" >&2; exit 3"]
                  : undefined;
                if (!c.running) c.start({{ envVars: {{ FROM_START: "given by start()" }}, entrypoint }});
                return await c.getTcpPort(crash ? {spare} : {port}).fetch(request);
              }} catch (e) {{
                return new Response(`container error: ${{e.message}}`, {{ status: 503 }});
              }}
            }}
          }}
          export default {{
            fetch(request, env) {{
              // One Durable Object per first path segment of /do/NAME/…, else "one".
              const m = new URL(request.url).pathname.match(/^\/do\/([a-z]+)(\/.*)$/);
              if (!m) return env.SHOP.get(env.SHOP.idFromName("one")).fetch(request);
              const url = new URL(request.url); url.pathname = m[2];
              return env.SHOP.get(env.SHOP.idFromName(m[1])).fetch(new Request(url, request));
            }},
          }};
---
apiVersion: flaredock.dev/v1alpha1
kind: CloudflareContainer
metadata: {{name: shop, namespace: apps}}
spec:
  className: Shop
  build: {{context: CONTEXT}}
  maxInstances: 3
  env:
    - {{name: GREETING, value: "hello from the CloudflareContainer spec"}}
  worker: {{name: shop, bindingName: SHOP}}
"#
    )
}

/// A `FROM scratch` image: busybox's httpd on `port` serving `/www`, whose CGI script
/// prints a file baked into the image and two environment variables.
fn write_context(dir: &Path, port: u16, baked: &str) {
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("cgi-bin")).unwrap();
    std::fs::copy(
        need(
            "/bin/busybox",
            "apt-get install busybox-static (scripts/test.sh)",
        ),
        dir.join("busybox"),
    )
    .unwrap();
    std::fs::write(www.join("baked.txt"), format!("{baked}\n")).unwrap();
    let cgi = www.join("cgi-bin/hello");
    std::fs::write(
        &cgi,
        "#!/bin/busybox sh\necho 'Content-Type: text/plain'\necho\necho \"baked=$(/bin/busybox cat /www/baked.txt)\"\necho \"greeting=$GREETING\"\necho \"start=$FROM_START\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cgi, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\nENTRYPOINT [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"127.0.0.1:{port}\", \"-h\", \"/www\"]\n"
        ),
    )
    .unwrap();
}

/// A temporary directory with the image's context (`ctx`, serving `baked` on `port`)
/// and the Worker's manifests, and a Reconciler that builds with buildah in it.
struct Shop {
    work: tempfile::TempDir,
    ctx: std::path::PathBuf,
    manifests: std::path::PathBuf,
    port: u16,
    r: Reconciler,
}

fn shop(em: &RunningEmulator, baked: &str) -> Shop {
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    let manifests = work.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let port = common::free_port();
    write_context(&ctx, port, baked);
    std::fs::write(
        manifests.join("shop.yaml"),
        worker(port, common::free_port()).replace("CONTEXT", &ctx.display().to_string()),
    )
    .unwrap();
    let r = reconciler(em, &work.path().join("buildah"));
    Shop {
        work,
        ctx,
        manifests,
        port,
        r,
    }
}

async fn converge_dir(r: &Reconciler, dir: &Path) -> Converged {
    common::converge_dir(r, dir, Duration::from_secs(180)).await
}

fn all_ready(done: &Converged) -> bool {
    done.workers.values().all(|w| w.ready()) && done.containers.values().all(|c| c.ready())
}

async fn visit(em: &RunningEmulator, path: &str) -> (u16, String) {
    common::visit(em, "shop.flaredock.workers.dev", path).await
}

/// Whether a process runs (a zombie or a gone pid does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_served_by_the_container_then_by_the_new_image_then_by_none() {
    workerd();
    let em = common::start_emulator(|_| {}).await;
    assert!(
        em.shared.containers.available(),
        "the emulator found buildah on PATH"
    );
    let Shop {
        work: _work,
        ctx,
        manifests,
        port,
        r,
    } = shop(&em, "baked into image one");

    let done = converge_dir(&r, &manifests).await;
    assert!(all_ready(&done), "{done:#?}");
    assert_eq!(
        em.shared.containers.running(),
        0,
        "nothing runs before a request"
    );

    // Worker → Durable Object → container: the answer only the container can give.
    let cold = std::time::Instant::now();
    let (status, body) = visit(&em, "/cgi-bin/hello?x=1").await;
    let cold = cold.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "baked=baked into image one\ngreeting=hello from the CloudflareContainer spec\nstart=given by start()\n"
    );
    let warm = std::time::Instant::now();
    let (status, body) = visit(&em, "/baked.txt").await;
    // A figure for BENCHMARKS.md, not an assertion.
    eprintln!(
        "first request (pull, start, cold start) {} ms, next request {} ms",
        cold.as_millis(),
        warm.elapsed().as_millis()
    );
    assert_eq!((status, body.as_str()), (200, "baked into image one\n"));
    assert_eq!(
        em.shared.containers.running(),
        1,
        "one instance per Durable Object"
    );
    let first = em.shared.containers.pids();
    assert_eq!(first.len(), 1);
    assert!(alive(first[0]));

    // A changed image: flaredock rolls it out; the next request is the new image's.
    write_context(&ctx, port, "baked into image two");
    let done = converge_dir(&r, &manifests).await;
    assert!(all_ready(&done), "{done:#?}");
    // The instance on the old image stops once the rollout is done, before any request.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while alive(first[0]) && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !alive(first[0]),
        "the instance on the old image was stopped"
    );
    assert_eq!(em.shared.containers.running(), 0);
    let (status, body) = visit(&em, "/cgi-bin/hello").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("baked=baked into image two\n"), "{body}");
    assert_eq!(em.shared.containers.running(), 1);
    let second = em.shared.containers.pids();
    assert_ne!(second, first);

    // Another Durable Object: its own instance, but the port is the first one's (host
    // network), so its request is refused, naming the port.
    let (status, body) = visit(&em, "/do/two/baked.txt").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with(&format!(
            "container error: port {port} is used by another container instance"
        )),
        "{body}"
    );
    // A command that fails: the Worker sees its exit and output, every environment
    // value redacted.
    let (status, body) = visit(&em, "/do/crash/crash").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("container error: the container exited with status "),
        "{body}"
    );
    assert!(
        body.contains("greeting is [redacted by the emulator]"),
        "{body}"
    );
    assert!(
        !body.contains("hello from the CloudflareContainer spec"),
        "{body}"
    );

    // The application is deleted: its instance goes, nothing listens any more.
    let client = common::client_for(&em);
    let apps = client.list_applications().await.unwrap();
    assert_eq!(apps.len(), 1);
    client.delete_application(&apps[0].id).await.unwrap();
    assert_eq!(em.shared.containers.running(), 0);
    assert!(em.shared.containers.pids().is_empty());
    assert!(!alive(second[0]), "the container's process is gone");
    assert!(!port_open(port), "nothing listens on the container's port");
    // The Worker now sees the missing application as an error.
    let (status, body) = visit(&em, "/cgi-bin/hello").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("has no container application"), "{body}");
    em.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_an_external_registry_and_the_emulator_stopping_ends_its_containers() {
    workerd();
    // A real registry with basic auth stands in for Cloudflare's: the pull uses its
    // credentials (through the private auth file).
    let registry = common::DockerRegistry::start_with_auth("cf", "cf-pass");
    let em = common::start_emulator(|c| c.registry = Some(registry.as_external())).await;
    let Shop {
        work: _work,
        ctx: _,
        manifests,
        port,
        r,
    } = shop(&em, "served until the emulator stops");
    let done = converge_dir(&r, &manifests).await;
    assert!(all_ready(&done), "{done:#?}");
    let (status, body) = visit(&em, "/baked.txt").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "served until the emulator stops\n")
    );
    let apps = common::client_for(&em).list_applications().await.unwrap();
    assert!(
        apps[0]
            .configuration
            .image
            .starts_with(&format!("{}/", registry.host)),
        "{}",
        apps[0].configuration.image
    );
    let pids = em.shared.containers.pids();
    assert_eq!(pids.len(), 1);
    assert!(port_open(port));
    em.stop().await;
    assert!(!alive(pids[0]), "the container's buildah is gone");
    assert!(!port_open(port), "the container's process is gone");
}

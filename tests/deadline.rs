//! The deadline of one reconcile (`--reconcile-timeout`) bounds the core the command
//! line drives: an object whose image's registry accepts connections and never answers
//! reports `ReconcileTimedOut`, neither Ready nor Stalled. (The controller's side, on
//! the real API server, is in tests/apiserver_worker.rs: the object requeued while
//! another converges, and the cap of a whole apply at the deadline plus 30 s.)

mod common;

use std::time::Duration;

use flaredock::emulator::{DEMO_CLASS, DEMO_SCRIPT};
use flaredock::manifest::parse_document;
use flaredock::reconcile::reason::Reason;
use flaredock::spec::CloudflareContainer;

/// Long enough for a reconcile on a loaded machine, far below the registry client's
/// timeout.
const DEADLINE: Duration = Duration::from_secs(3);

/// A registry that accepts connections and never answers: a request to it ends only
/// with the client's own (30-minute) timeout.
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr.to_string(), task)
}

#[tokio::test]
async fn the_core_the_command_line_drives_has_the_same_deadline() {
    let (hole, hole_task) = black_hole().await;
    let em = common::start_emulator(|_| {}).await;
    let r = common::reconciler_for(&common::client_for(&em)).with_reconcile_timeout(DEADLINE);
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: slow, namespace: apps, generation: 1}}\nspec:\n  className: {DEMO_CLASS}\n  image: {{reference: '{hole}/shop:v1'}}\n  worker: {{scriptName: {DEMO_SCRIPT}}}\n"
    );
    let obj: CloudflareContainer = parse_document(&doc, "t.yaml", 1)
        .expect("valid")
        .expect("object");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        r.reconcile(&obj, None, &std::collections::HashMap::new()),
    )
    .await
    .expect("the deadline ended the reconcile");
    assert!(out.timed_out);
    assert!(!out.ready() && !out.stalled(), "{:#?}", out.status);
    let ready = flaredock::reconcile::status::condition(&out.status, "Ready").expect("Ready");
    assert!(Reason::ReconcileTimedOut.is(&ready.reason), "{ready:?}");
    assert!(ready.message.contains("--reconcile-timeout"), "{ready:?}");
    hole_task.abort();
    em.stop().await;
}

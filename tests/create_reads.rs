//! What a create reads: a CloudflareContainer whose application this run creates reads
//! none of its versions (its only version is the configuration it was created with),
//! even after an earlier status that was not Ready (a container that waited a round
//! for its Worker); an existing application not yet confirmed Ready is still read.

mod common;

use flaredock::emulator::{DEMO_CLASS, DEMO_SCRIPT};
use flaredock::manifest::parse_document;
use flaredock::spec::{CloudflareContainer, CloudflareContainerStatus};

fn container() -> CloudflareContainer {
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: shop, namespace: apps, generation: 1}}\nspec:\n  className: {DEMO_CLASS}\n  image: {{reference: 'hello:v1'}}\n  worker: {{scriptName: {DEMO_SCRIPT}}}\n"
    );
    parse_document(&doc, "t.yaml", 1)
        .expect("valid")
        .expect("object")
}

/// `GET …/applications/{id}/versions` since request `from`.
fn version_reads(em: &common::Emulator, from: usize) -> usize {
    em.shared.requests()[from..]
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/versions"))
        .count()
}

#[tokio::test]
async fn a_just_created_application_is_ready_without_reading_its_versions() {
    let em = common::start_emulator(|_| {}).await;
    let client = common::client_for(&em);
    let r = common::reconciler_for(&client);
    let obj = container();
    let peers = std::collections::HashMap::new();
    // An earlier status not Ready for this generation (as after a round waiting for
    // the Worker).
    let waited = CloudflareContainerStatus::default();

    let from = em.shared.requests().len();
    let created = r.reconcile(&obj, Some(&waited), &peers).await;
    assert!(created.error.is_none(), "{:?}", created.error);
    assert!(created.ready(), "{:#?}", created.status);
    assert_eq!(
        em.shared.requests()[from..]
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/containers/applications"))
            .count(),
        1
    );
    assert_eq!(version_reads(&em, from), 0);

    // Control: the application exists and the earlier status is still not Ready, so
    // Ready rests on what Cloudflare says runs: its versions are read.
    r.view.invalidate().await;
    let from = em.shared.requests().len();
    let confirmed = r.reconcile(&obj, Some(&waited), &peers).await;
    assert!(confirmed.ready(), "{:#?}", confirmed.status);
    assert_eq!(version_reads(&em, from), 1);
    em.stop().await;
}

//! The pipeline's safety rules, end to end against the emulator and a real
//! `docker-registry` (Cloudflare's registry) plus another one (a source registry):
//! observe and plan only read; getting an image is an action held by every gate;
//! copies go to the object's own repository; ownership carries a cluster id.

mod common;

use std::time::Duration;

use flaredock::manifest::parse_document;
use flaredock::reconcile::{ConvergeOptions, ReconcileOutcome, Reconciler, converge};
use flaredock::spec::{CloudflareContainer, ClusterIdentity};

/// A Worker script seeded with container-enabled classes, one per test object.
const SCRIPT: &str = "shop-worker";

fn container(namespace: &str, name: &str, class: &str, extra: &str) -> CloudflareContainer {
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  className: {class}\n  worker: {{scriptName: {SCRIPT}}}\n{extra}"
    );
    parse_document(&doc, "t.yaml", 1)
        .expect("valid")
        .expect("object")
}

async fn apply(r: &Reconciler, obj: &CloudflareContainer) -> ReconcileOutcome {
    let options = ConvergeOptions {
        timeout: Duration::from_secs(30),
        poll: Duration::from_millis(20),
        ..Default::default()
    };
    converge(r, std::slice::from_ref(obj), &options, |_, _| {})
        .await
        .remove(&obj.key())
        .expect("an outcome")
}

fn reconciler_in(em: &common::Emulator, cluster: &str) -> Reconciler {
    let base = common::reconciler_for(&common::client_for(em));
    Reconciler::new(
        base.view.clone(),
        base.images.clone(),
        ClusterIdentity::new(cluster, None).expect("a valid id"),
    )
}

struct Setup {
    cloudflare: common::DockerRegistry,
    source: common::DockerRegistry,
    em: common::Emulator,
}

async fn setup(classes: &[&str]) -> Setup {
    let cloudflare = common::DockerRegistry::start_with_auth("cf", "cf-pass");
    let source = common::DockerRegistry::start_open();
    let em = common::start_emulator(|c| c.registry = Some(cloudflare.as_external())).await;
    em.shared.account().seed_script(
        SCRIPT,
        classes.iter().map(|c| c.to_string()).collect(),
        None,
        true,
        true,
    );
    Setup {
        cloudflare,
        source,
        em,
    }
}

/// Every request that is not a read, credential minting included.
fn api_writes(em: &common::Emulator) -> Vec<String> {
    em.shared
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The digest `repo:tag` names in a registry, when it is there (anonymous or basic).
async fn digest_in(reg: &common::DockerRegistry, repo: &str, tag: &str) -> Option<String> {
    let client = flaredock::oci::RegistryClient::new(vec![]).expect("registry client");
    let creds = flaredock::oci::Credentials {
        username: "cf".into(),
        password: "cf-pass".into(),
    };
    client
        .head_manifest(&reg.host, repo, tag, Some(&creds))
        .await
        .ok()
        .flatten()
        .map(|m| m.digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_observe_copy_nothing_and_mint_nothing() {
    let s = setup(&["Shop"]).await;
    let image = common::synthetic_image(&[4096], 3);
    common::push_image(&s.source.host, "team/shop", "1.0", &image, None).await;
    let reference = format!(
        "  image: {{reference: '{}/team/shop:1.0'}}\n",
        s.source.host
    );
    for (name, gate) in [
        ("suspended", "  suspend: true\n"),
        ("observed", "  managementPolicy: Observe\n"),
    ] {
        let obj = container("apps", name, "Shop", &format!("{reference}{gate}"));
        let r = common::reconciler_for(&common::client_for(&s.em));
        let out = apply(&r, &obj).await;
        assert!(!out.ready(), "{name}: nothing was made, so it is not Ready");
        // The pending copy is named, with its source and digest.
        let pending: Vec<String> = out.plan.actions.iter().map(|a| a.to_string()).collect();
        assert!(
            out.status
                .conditions
                .iter()
                .any(|c| c.message.contains(&image.digest)),
            "{name}: the status names the copy it holds back: {:#?} {pending:?}",
            out.status.conditions
        );
        assert!(
            api_writes(&s.em).is_empty(),
            "{name}: no API write, not even registry credentials: {:?}",
            api_writes(&s.em)
        );
        assert_eq!(
            digest_in(
                &s.cloudflare,
                &format!("{}/cli/apps/{name}", s.em.account_id()),
                "1.0"
            )
            .await,
            None,
            "{name}: nothing copied"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_names_the_copy_and_mints_no_credentials() {
    let s = setup(&["Shop"]).await;
    let image = common::synthetic_image(&[4096], 4);
    common::push_image(&s.source.host, "team/shop", "2.0", &image, None).await;
    let obj = container(
        "apps",
        "shop",
        "Shop",
        &format!(
            "  image: {{reference: '{}/team/shop:2.0'}}\n",
            s.source.host
        ),
    );
    let r = common::reconciler_for(&common::client_for(&s.em));
    let (plan, _) = r
        .preview(&obj, &std::collections::HashMap::new())
        .await
        .expect("a plan");
    let first = plan.actions.first().expect("actions").to_string();
    assert!(
        first.starts_with("copy image")
            && first.contains(&format!("{}/team/shop:2.0", s.source.host))
            && first.contains("/cli/apps/shop:2.0")
            && first.contains(&image.digest),
        "{first}"
    );
    assert_eq!(plan.actions[1].kind(), "create-application");
    assert!(api_writes(&s.em).is_empty(), "{:?}", api_writes(&s.em));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_keeps_its_digest_when_another_copies_an_image_of_the_same_name() {
    let s = setup(&["ShopA", "ShopB"]).await;
    // Namespace A deploys shop:v1 from Cloudflare's registry by its short name.
    let a_image = common::synthetic_image(&[2048], 10);
    let a_digest = common::push_to_cloudflare(&s.em, "shop", "v1", &a_image).await;
    let a = container(
        "team-a",
        "shop",
        "ShopA",
        "  image: {reference: 'shop:v1'}\n",
    );
    let r = common::reconciler_for(&common::client_for(&s.em));
    let out = apply(&r, &a).await;
    assert!(out.ready(), "{:#?}", out.status);
    assert_eq!(out.status.image.as_deref(), Some(a_digest.as_str()));

    // Namespace B copies an unrelated image also called shop:v1 from elsewhere.
    let b_image = common::synthetic_image(&[2048], 11);
    common::push_image(&s.source.host, "shop", "v1", &b_image, None).await;
    let b = container(
        "team-b",
        "shop",
        "ShopB",
        &format!(
            "  image: {{reference: '{}/shop:v1'}}\n  applicationName: shop-b\n",
            s.source.host
        ),
    );
    let out_b = apply(&r, &b).await;
    assert!(out_b.ready(), "{:#?}", out_b.status);
    assert!(
        out_b
            .status
            .image
            .as_deref()
            .is_some_and(|i| i.contains("/cli/team-b/shop@")),
        "B's copy is in B's repository: {:?}",
        out_b.status.image
    );

    // A's short name still names A's image, and A's next reconcile keeps it.
    assert_eq!(
        digest_in(&s.cloudflare, &format!("{}/shop", s.em.account_id()), "v1").await,
        Some(a_image.digest.clone()),
        "flaredock never writes a short name"
    );
    r.images.new_round().await;
    r.view.invalidate_applications().await;
    let again = apply(&r, &a).await;
    assert!(again.ready());
    assert_eq!(again.status.image.as_deref(), Some(a_digest.as_str()));
    assert!(again.plan.actions.is_empty(), "{:?}", again.plan.actions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_sharing_an_account_never_touch_each_others_applications() {
    let s = setup(&["ShopA", "ShopB", "ShopA2"]).await;
    common::push_to_cloudflare(&s.em, "shop", "v1", &common::synthetic_image(&[1024], 20)).await;
    // The same namespace and name in two clusters (their application names differ:
    // Cloudflare's are unique per account).
    let east = reconciler_in(&s.em, "5f0c3c527a1e4d6b");
    let west = reconciler_in(&s.em, "0b9e1f7a2c3d4e5f");
    let in_east = container(
        "apps",
        "shop",
        "ShopA",
        "  image: {reference: 'shop:v1'}\n  applicationName: shop-east\n",
    );
    let in_west = container(
        "apps",
        "shop",
        "ShopB",
        "  image: {reference: 'shop:v1'}\n  applicationName: shop-west\n",
    );
    let east_out = apply(&east, &in_east).await;
    assert!(east_out.ready(), "{:#?}", east_out.status);
    assert!(apply(&west, &in_west).await.ready());

    // West renames its application (another class, so it is a new one): only the one
    // its status recorded is deleted; east's stays.
    let mut renamed = container(
        "apps",
        "shop",
        "ShopA2",
        "  image: {reference: 'shop:v1'}\n  applicationName: shop-west-2\n",
    );
    let west_app = common::client_for(&s.em)
        .list_applications()
        .await
        .expect("list")
        .into_iter()
        .find(|a| a.name == "shop-west")
        .expect("west's application");
    renamed.status = Some(flaredock::spec::CloudflareContainerStatus {
        application_id: Some(west_app.id.clone()),
        ..Default::default()
    });
    west.view.invalidate_applications().await;
    let out = apply(&west, &renamed).await;
    assert!(out.ready(), "{:#?}", out.status);
    // Deletes are asynchronous: wait until Cloudflare lets go of west's old one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let names = loop {
        let names: Vec<String> = common::client_for(&s.em)
            .list_applications()
            .await
            .expect("list")
            .into_iter()
            .map(|a| a.name)
            .collect();
        if !names.contains(&"shop-west".to_string()) || tokio::time::Instant::now() > deadline {
            break names;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(names.contains(&"shop-east".to_string()), "{names:?}");
    assert!(names.contains(&"shop-west-2".to_string()), "{names:?}");
    assert!(!names.contains(&"shop-west".to_string()), "{names:?}");
    let deletes: Vec<String> = api_writes(&s.em)
        .into_iter()
        .filter(|w| w.starts_with("DELETE"))
        .collect();
    assert_eq!(
        deletes.len(),
        1,
        "only west's recorded application: {deletes:?}"
    );
    assert!(deletes[0].ends_with(&west_app.id), "{deletes:?}");
}

//! End to end on a real cluster (kind, k3d, …): the CRD is installed, `flaredock run`
//! runs against the cluster and an in-process emulator, and a CloudflareContainer goes
//! to Ready and is cleaned up on delete. Ignored by default:
//!
//! ```sh
//! kind create cluster            # or: k3d cluster create
//! cargo test --test cluster_e2e -- --ignored
//! ```

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flaredock::spec::CloudflareContainer;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster (kind/k3d) in the current kubeconfig"]
async fn a_container_goes_ready_and_is_cleaned_up_on_a_real_cluster() {
    let client = Client::try_default()
        .await
        .expect("a kubeconfig with a reachable cluster");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "cloudflarecontainers.flaredock.dev",
        &PatchParams::apply("flaredock-e2e").force(),
        &Patch::Apply(&flaredock::spec::container_crd()),
    )
    .await
    .expect("install the CloudflareContainer CRD");
    crds.patch(
        "cloudflareworkers.flaredock.dev",
        &PatchParams::apply("flaredock-e2e").force(),
        &Patch::Apply(&flaredock::spec::worker_crd()),
    )
    .await
    .expect("install the CloudflareWorker CRD");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ns = format!("flaredock-e2e-{:06x}", fastrand::u32(..0xffffff));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();

    let em = common::start_emulator(|_| {}).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "cloudflare"},
                "stringData": {"apiToken": em.api_token(), "accountId": em.account_id()},
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let mut controller = Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args([
            "run",
            "--leader-election",
            "false",
            "--metrics-address",
            "127.0.0.1:0",
            "--namespace",
            &ns,
        ])
        .args(["--api-base-url", &em.base_url(), "--progress-poll", "1s"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let api: Api<CloudflareContainer> = Api::namespaced(client.clone(), &ns);
    let obj: CloudflareContainer = serde_json::from_value(json!({
        "apiVersion": "flaredock.dev/v1alpha1", "kind": "CloudflareContainer",
        "metadata": {"name": "hello"},
        "spec": {
            "className": flaredock::emulator::DEMO_CLASS,
            "image": {"reference": "hello:v1"},
            "worker": {"scriptName": flaredock::emulator::DEMO_SCRIPT},
            "credentialsSecretRef": {"name": "cloudflare"},
        },
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();

    let started = Instant::now();
    let ready = loop {
        let o = api.get("hello").await.unwrap();
        if o.status
            .as_ref()
            .is_some_and(flaredock::reconcile::status::is_ready)
        {
            break o;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not Ready in time: {:?}",
            o.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let apps = common::client_for(&em).list_applications().await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(
        ready.status.unwrap().application_id.as_deref(),
        Some(apps[0].id.as_str())
    );

    api.delete("hello", &DeleteParams::default()).await.unwrap();
    let started = Instant::now();
    while api.get_opt("hello").await.unwrap().is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not deleted in time"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        common::client_for(&em)
            .list_applications()
            .await
            .unwrap()
            .is_empty(),
        "cleanup deleted the application"
    );

    controller.kill().ok();
    controller.wait().ok();
    namespaces.delete(&ns, &DeleteParams::default()).await.ok();
}

//! The CloudflareWorker controller where it will run: a real kube-apiserver and etcd,
//! the install of `deploy/`, and the real `flaredock run` process as the
//! ServiceAccount `deploy/` creates (never the admin), against an in-process emulator
//! (set-up shared with tests/apiserver.rs through tests/common/cluster.rs). What the
//! tenant Role grants on ConfigMaps, the Worker finalizer's cleanup of the routes and
//! domains flaredock made, and the deadlines of a reconcile.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    Controller, controller_kubeconfig, controller_requests, create_namespace, credentials_secret,
    installed, kubectl_ok, onboard, wait_for,
};
use flaredock::reconcile::reason::Reason;
use flaredock::spec::CloudflareWorker;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// A CloudflareWorker whose code is the ConfigMap `shop-code` (module `index.js`);
/// with the credentials Secret `cloudflare` when `secret`, else the operator's default.
fn config_map_worker(name: &str, secret: bool) -> CloudflareWorker {
    let mut doc = json!({
        "apiVersion": "flaredock.dev/v1alpha1", "kind": "CloudflareWorker",
        "metadata": {"name": name},
        "spec": {
            "compatibilityDate": "2026-06-01",
            "source": {"configMapRef": {"name": "shop-code", "mainModule": "index.js"}},
        },
    });
    if secret {
        doc["spec"]["credentialsSecretRef"] = json!({"name": "cloudflare"});
    }
    serde_json::from_value(doc).unwrap()
}

fn code(answer: &str) -> String {
    format!("export default {{ async fetch() {{ return new Response('{answer}'); }} }};\n")
}

async fn create_code(admin: &Client, ns: &str, answer: &str) {
    let maps: Api<ConfigMap> = Api::namespaced(admin.clone(), ns);
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "shop-code"},
            "data": {"index.js": code(answer)},
        }))
        .unwrap(),
    )
    .await
    .unwrap_or_else(|e| panic!("create ConfigMap {ns}/shop-code: {e}"));
}

/// The uploads of script `name` the emulator took (`PUT …/workers/scripts/{name}`).
fn uploads_of(em: &common::Emulator, name: &str) -> usize {
    let tail = format!("/workers/scripts/{name}");
    em.shared
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with(&tail))
        .count()
}

fn worker_ready(w: &CloudflareWorker) -> bool {
    w.status
        .as_ref()
        .is_some_and(|s| flaredock::reconcile::status::is_true(&s.conditions, "Ready"))
}

fn worker_condition<'a>(
    w: &'a CloudflareWorker,
    kind: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    w.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
}

// ---------------------------------------------------------------------------------
// A Worker's code from a ConfigMap, read by name under the tenant Role.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reads_its_config_map_by_name_picks_up_an_edit_and_one_not_onboarded_is_forbidden()
{
    let (env, _) = installed();
    let admin = env.admin_client().await;
    let em = common::start_emulator(|c| c.capture_bodies = true).await;
    let onboarded = create_namespace(&admin, "code").await;
    onboard(env, &onboarded);
    credentials_secret(&admin, &onboarded, &em).await;
    create_code(&admin, &onboarded, "v1").await;
    // Not onboarded (no RoleBinding flaredock-tenant), but allowed the operator's
    // default credentials: the ConfigMap is the first thing the Role would grant.
    let stranger = create_namespace(&admin, "code-stranger").await;
    kubectl_ok(
        env,
        &[
            "label",
            "namespace",
            &stranger,
            "flaredock.dev/default-credentials=allow",
        ],
    );
    create_code(&admin, &stranger, "v1").await;

    let kubeconfig = controller_kubeconfig(env, &onboarded).await;
    let audit_from = env.audit_log().len();
    let mut controller = Controller::start(&kubeconfig, &onboarded, &em, &[]);
    let mut refused = Controller::start(
        &kubeconfig,
        &stranger,
        &em,
        &[
            ("CLOUDFLARE_API_TOKEN", em.api_token()),
            ("CLOUDFLARE_ACCOUNT_ID", em.account_id()),
        ],
    );
    let workers: Api<CloudflareWorker> = Api::namespaced(admin.clone(), &onboarded);
    workers
        .create(&PostParams::default(), &config_map_worker("shop", true))
        .await
        .unwrap();
    let strangers: Api<CloudflareWorker> = Api::namespaced(admin.clone(), &stranger);
    strangers
        .create(&PostParams::default(), &config_map_worker("refused", false))
        .await
        .unwrap();

    let ready = wait_for(&workers, "shop", &mut controller, "Ready", worker_ready).await;
    let first_hash = ready.status.as_ref().unwrap().upload_hash.clone();
    assert!(first_hash.is_some(), "{:?}", ready.status);
    let uploads = uploads_of(&em, "shop");
    assert_eq!(uploads, 1, "{:?}", common::cloudflare_writes(&em));

    // An edit of the ConfigMap (nothing watches it) is uploaded at the next read,
    // within CONFIG_MAP_POLL (15 s, jittered by 10 %) and the upload's own time.
    let maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &onboarded);
    maps.patch(
        "shop-code",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"index.js": code("v2")}})),
    )
    .await
    .unwrap();
    let edited = Instant::now();
    while uploads_of(&em, "shop") == uploads {
        controller.assert_running();
        assert!(
            edited.elapsed() < Duration::from_secs(20),
            "the edit of ConfigMap shop-code was not uploaded within 20 s\ncontroller log:\n{}",
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let updated = wait_for(&workers, "shop", &mut controller, "Ready again", |w| {
        worker_ready(w) && w.status.as_ref().unwrap().upload_hash != first_hash
    })
    .await;
    assert_eq!(
        updated.status.as_ref().unwrap().observed_generation,
        updated.metadata.generation
    );
    // The upload carried the edited module.
    let bodies = common::request_bodies(&em, "PUT", "/workers/scripts/shop");
    assert!(
        bodies.last().is_some_and(|b| b.contains("Response('v2')")),
        "the last upload is not the edited code: {:?}",
        bodies.last().map(|b| b.len())
    );

    // The namespace that is not onboarded: the API server's 403 on the ConfigMap.
    let stalled = wait_for(&strangers, "refused", &mut refused, "Stalled", |w| {
        worker_condition(w, "Stalled").is_some_and(|c| c.status == "True")
    })
    .await;
    let c = worker_condition(&stalled, "Stalled").unwrap();
    assert_eq!(
        Reason::parse(&c.reason),
        Some(Reason::ConfigMapForbidden),
        "{c:?}"
    );
    assert!(
        c.message.contains(&format!("{stranger}/shop-code"))
            && c.message.contains("flaredock-tenant"),
        "the message names the ConfigMap and the RoleBinding: {}",
        c.message
    );
    assert_eq!(
        uploads_of(&em, "refused"),
        0,
        "nothing of the refused Worker was uploaded: {:?}",
        common::cloudflare_writes(&em)
    );
    // A real 403: the same identity is refused the ConfigMap by the API server.
    let sa = common::testenv::client_from(&kubeconfig).await;
    match Api::<ConfigMap>::namespaced(sa, &stranger)
        .get("shop-code")
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
        other => panic!("the ServiceAccount read a ConfigMap it may not: {other:?}"),
    }
    // ConfigMaps are read by name only, in both namespaces: never listed or watched.
    for ns in [onboarded.as_str(), stranger.as_str()] {
        let verbs = controller_requests(env, audit_from, ns, "configmaps");
        assert!(!verbs.is_empty(), "{ns}: the controller read its ConfigMap");
        assert!(verbs.iter().all(|v| v == "get"), "{ns}: {verbs:?}");
    }
    controller.stop();
    refused.stop();
    em.stop().await;
}

//! The policy of the one pipeline holds identically for both kinds: `suspend`,
//! `managementPolicy: Observe` and an adoption waiting for approval make zero writes
//! at Cloudflare (credential minting included) and report the same typed reason, for
//! a CloudflareContainer and a CloudflareWorker alike. Each case has its control: the
//! same object without the hold does write.

mod common;

use flaredock::emulator::{DEMO_CLASS, DEMO_SCRIPT};
use flaredock::manifest::parse_document;
use flaredock::reconcile::Reconciler;
use flaredock::reconcile::reason::Reason;
use flaredock::reconcile::worker::inputs::SourceData;
use flaredock::spec::{CloudflareContainer, CloudflareWorker};

/// Every request that changes something at Cloudflare, credentials included.
fn writes(em: &common::Emulator) -> Vec<String> {
    em.shared
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn container(extra: &str) -> CloudflareContainer {
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: shop, namespace: apps, generation: 1}}\nspec:\n  className: {DEMO_CLASS}\n  image: {{reference: 'hello:v1'}}\n  worker: {{scriptName: {DEMO_SCRIPT}}}\n{extra}"
    );
    parse_document(&doc, "t.yaml", 1)
        .expect("valid")
        .expect("object")
}

fn worker(extra: &str) -> CloudflareWorker {
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareWorker\nmetadata: {{name: shop, namespace: apps, generation: 1}}\nspec:\n  compatibilityDate: '2026-06-01'\n  source:\n    inline:\n      mainModule: index.js\n      modules: {{index.js: 'export class Shop {{}}; export default {{}}'}}\n{extra}"
    );
    serde_yaml_ng::from_str(&doc).expect("a CloudflareWorker")
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Container,
    Worker,
}

/// What one reconcile reported, the same for either kind.
#[derive(Debug)]
struct Seen {
    ready: Option<Reason>,
    reconciling: String,
    stalled: String,
    pending_adoption: bool,
    drift: usize,
    actions: usize,
    writes: Vec<String>,
}

/// Something flaredock does not own, for `adopt` to take: an application bound to
/// the demo class's namespace, or a script deployed by another tool.
async fn seed_unowned(em: &common::Emulator, kind: Kind) {
    match kind {
        Kind::Container => {
            let image = format!("{}/{}/hello:v1", em.registry_host(), em.account_id());
            common::client_for(em)
                .create_application(&common::foreign_application(
                    "shop",
                    &image,
                    Some(
                        flaredock::cloudflare::types::DurableObjectsConfiguration::ScriptAndClass {
                            script_name: DEMO_SCRIPT.into(),
                            class_name: DEMO_CLASS.into(),
                        },
                    ),
                ))
                .await
                .expect("a foreign application");
        }
        Kind::Worker => {
            em.shared
                .account()
                .seed_script("shop", vec!["Shop".into()], None, true, true)
        }
    }
}

async fn reconcile(em: &common::Emulator, r: &Reconciler, kind: Kind, extra: &str) -> Seen {
    r.view.invalidate().await;
    em.shared.clear_requests();
    let cond = |conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
                kind: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == kind)
            .map(|c| (c.status.clone(), c.reason.clone()))
            .unwrap_or_default()
    };
    let (conditions, pending_adoption, drift, actions) = match kind {
        Kind::Container => {
            let obj = container(extra);
            let out = r
                .reconcile(&obj, None, &std::collections::HashMap::new())
                .await;
            assert!(out.error.is_none(), "{:?}", out.error);
            (
                out.status.conditions,
                out.status.pending_adoption.is_some(),
                out.status.drift.len(),
                out.plan.actions.len(),
            )
        }
        Kind::Worker => {
            let obj = worker(extra);
            let out = r
                .reconcile_worker(&obj, vec![], &SourceData::default(), None)
                .await;
            assert!(out.error.is_none(), "{:?}", out.error);
            (
                out.status.conditions,
                out.status.pending_adoption.is_some(),
                out.status.drift.len(),
                out.plan.actions.len(),
            )
        }
    };
    let (_, ready) = cond(&conditions, "Ready");
    let (reconciling, _) = cond(&conditions, "Reconciling");
    let (stalled, _) = cond(&conditions, "Stalled");
    Seen {
        ready: Reason::parse(&ready),
        reconciling,
        stalled,
        pending_adoption,
        drift,
        actions,
        writes: writes(em),
    }
}

/// The table: a hold, what it needs at Cloudflare first, the typed reason it reports.
const HOLDS: &[(&str, &str, bool, Reason)] = &[
    ("suspend", "  suspend: true\n", false, Reason::Suspended),
    (
        "Observe",
        "  managementPolicy: Observe\n",
        false,
        Reason::Observing,
    ),
    (
        "unapproved adoption",
        "  adopt: true\n",
        true,
        Reason::AdoptionPending,
    ),
];

#[tokio::test]
async fn suspend_observe_and_unapproved_adoption_write_nothing_and_say_so_for_both_kinds() {
    for kind in [Kind::Container, Kind::Worker] {
        for (name, extra, unowned, reason) in HOLDS {
            let em = common::start_emulator(|_| {}).await;
            if *unowned {
                seed_unowned(&em, kind).await;
            }
            let r = common::reconciler_for(&common::client_for(&em));
            let held = reconcile(&em, &r, kind, extra).await;
            assert!(
                held.writes.is_empty(),
                "{kind:?} {name}: wrote {:?}",
                held.writes
            );
            assert_eq!(held.ready, Some(*reason), "{kind:?} {name}: {held:?}");
            assert_eq!(held.reconciling, "False", "{kind:?} {name}: {held:?}");
            assert_eq!(held.stalled, "False", "{kind:?} {name}: {held:?}");
            assert_eq!(held.actions, 0, "{kind:?} {name}: nothing acted on");
            assert_eq!(
                held.pending_adoption,
                *reason == Reason::AdoptionPending,
                "{kind:?} {name}: {held:?}"
            );
            if *reason == Reason::Observing {
                assert!(held.drift > 0, "{kind:?} {name}: differences listed");
            }

            // The control: without the hold (an adoption approved automatically), the
            // same object is written.
            let control = if *unowned {
                "  adopt: true\n  adoptionApproval: Automatic\n"
            } else {
                ""
            };
            let acted = reconcile(&em, &r, kind, control).await;
            assert!(
                !acted.writes.is_empty(),
                "{kind:?} {name}: the control wrote nothing: {acted:?}"
            );
            assert_ne!(acted.ready, Some(*reason), "{kind:?} {name}: {acted:?}");
            em.stop().await;
        }
    }
}

fn container_at(generation: i64, mode: &str) -> CloudflareContainer {
    let doc = format!(
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: shop, namespace: apps, generation: {generation}}}\nspec:\n  className: {DEMO_CLASS}\n  image: {{reference: 'hello:v1'}}\n  worker: {{scriptName: {DEMO_SCRIPT}}}\n  env: [{{name: MODE, value: '{mode}'}}]\n"
    );
    parse_document(&doc, "t.yaml", 1)
        .expect("valid")
        .expect("object")
}

/// A plan made again from what act found (a tag that moved) goes through the kind's
/// holds too: after Cloudflare reverted a rollout, no new rollout starts for that
/// generation, whatever the tag now points to.
#[tokio::test]
async fn a_tag_that_moved_after_a_reverted_rollout_starts_no_rollout_for_the_generation() {
    use flaredock::reconcile::{ConvergeOptions, converge};
    use std::time::Duration;
    let em = common::start_emulator(|c| {
        c.rollout_revert_rate = 1.0;
        c.rollout_step = Duration::from_millis(20);
    })
    .await;
    let r = common::reconciler_for(&common::client_for(&em));
    let options = ConvergeOptions {
        timeout: Duration::from_secs(30),
        poll: Duration::from_millis(20),
        ..Default::default()
    };
    let first = container_at(1, "one");
    let created = converge(&r, std::slice::from_ref(&first), &options, |_, _| {}).await;
    assert!(
        created[&first.key()].ready(),
        "{:#?}",
        created[&first.key()].status
    );
    let second = container_at(2, "two");
    let reverted = converge(&r, std::slice::from_ref(&second), &options, |_, _| {})
        .await
        .remove(&second.key())
        .expect("an outcome");
    let ready = |s: &flaredock::spec::CloudflareContainerStatus| {
        flaredock::reconcile::status::condition(s, "Ready")
            .map(|c| c.reason.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        Reason::parse(&ready(&reverted.status)),
        Some(Reason::RolloutReverted),
        "{:#?}",
        reverted.status
    );

    // The tag moves; the same generation is reconciled again with the status it had.
    em.shared
        .registry()
        .seed_demo_image(&format!("{}/hello", em.account_id()), "v1", "moved")
        .expect("a new image under the tag");
    // A restarted process: no registry credentials held, so the tag is read by act
    // (which then plans again from the digest it found).
    let restarted = common::reconciler_for(&common::client_for(&em));
    em.shared.clear_requests();
    let again = restarted
        .reconcile(
            &second,
            Some(&reverted.status),
            &std::collections::HashMap::new(),
        )
        .await;
    assert!(
        again
            .plan
            .changes
            .iter()
            .any(|c| c.field == "configuration.image"),
        "the moved tag was read and planned again: {:?}",
        again.plan
    );
    let rollouts: Vec<String> = writes(&em)
        .into_iter()
        .filter(|w| w.ends_with("/rollouts"))
        .collect();
    assert!(rollouts.is_empty(), "{rollouts:?}");
    assert_eq!(
        Reason::parse(&ready(&again.status)),
        Some(Reason::RolloutReverted),
        "{:#?}",
        again.status
    );
    em.stop().await;
}

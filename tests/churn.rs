//! The churn benchmark's driver (`benches/churn.sh` runs it, `--release`, against a
//! `flaredock emulator` process): N CloudflareContainers created, changed (a rollout
//! each) and deleted, round after round, each round under new object names, through
//! one account's `Reconciler` and `AccountView` as the controller holds them (one per
//! account, for the life of the process; the periodic resync's `invalidate` and
//! `new_round` between rounds; `reconcile` with the previous status until Ready, then
//! `delete` until Cloudflare no longer lists the application). After each round it
//! prints the process's RSS (now and peak) and the size of every cache, so that memory
//! that grows with the objects seen, rather than with the objects alive, shows.
//!
//! Not a test of behaviour (the budgets' unit tests and `tests/bounds.rs` are): it
//! asserts only that every object converged and was deleted, and that no cache holds
//! more than its budget at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flaredock::cloudflare::{ClientConfig, CloudflareClient, RateLimit, Secret};
use flaredock::manifest::parse_document;
use flaredock::oci::RegistryClient;
use flaredock::oci::copy::CopyOptions;
use flaredock::reconcile::images::{ImageResolver, PeerIndex, SourceCredentials};
use flaredock::reconcile::view::AccountView;
use flaredock::reconcile::{DeleteOutcome, Reconciler};
use flaredock::spec::{CloudflareContainer, CloudflareContainerStatus, ClusterIdentity};
use futures::StreamExt;

/// The controller's `progress_poll` here.
const POLL: Duration = Duration::from_millis(50);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run benches/churn.sh"))
}

fn objects(round: usize, count: usize, generation: i64) -> Vec<CloudflareContainer> {
    (0..count)
        .map(|i| {
            let doc = format!(
                "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: app-r{round}-{i}, namespace: churn, generation: {generation}}}\nspec:\n  className: C{i}\n  image: {{reference: 'hello:v1'}}\n  maxInstances: 3\n  env: [{{name: INDEX, value: '{i}'}}, {{name: GENERATION, value: '{generation}'}}]\n  worker: {{scriptName: churn}}\n"
            );
            parse_document(&doc, "churn.yaml", 1).unwrap().unwrap()
        })
        .collect()
}

/// (VmRSS, VmHWM) of this process, in MiB.
fn rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Reconciles every object (with its previous status, as the controller does) until it
/// is Ready; its statuses in order.
async fn converge(
    r: &Reconciler,
    objs: Vec<CloudflareContainer>,
    concurrency: usize,
) -> Vec<CloudflareContainer> {
    let peers = PeerIndex::default();
    futures::stream::iter(objs)
        .map(|mut obj| {
            let peers = &peers;
            async move {
                for _ in 0..200 {
                    let previous: Option<CloudflareContainerStatus> = obj.status.clone();
                    // As the controller does for an object whose rollout progresses.
                    if previous
                        .as_ref()
                        .and_then(|s| s.rollout.as_ref())
                        .is_some_and(|r| r.status == flaredock::spec::RolloutPhase::Progressing)
                    {
                        r.view.expire_applications(POLL).await;
                    }
                    let out = r.reconcile(&obj, previous.as_ref(), peers).await;
                    obj.status = Some(out.status.clone());
                    if out.ready() {
                        return obj;
                    }
                    assert!(
                        !out.stalled(),
                        "{} stalled: {:?}",
                        obj.metadata.name.as_deref().unwrap_or_default(),
                        out.status.conditions
                    );
                    tokio::time::sleep(POLL).await;
                }
                panic!(
                    "{} not Ready: {:?}",
                    obj.metadata.name.as_deref().unwrap_or_default(),
                    obj.status
                );
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

async fn delete_all(r: &Reconciler, objs: Vec<CloudflareContainer>, concurrency: usize) {
    futures::stream::iter(objs)
        .map(|mut obj| async move {
            obj.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
            );
            for _ in 0..200 {
                match r.delete(&obj).await {
                    Ok(DeleteOutcome::Deleted(_)) => return,
                    Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            panic!("{:?} not deleted", obj.metadata.name);
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: benches/churn.sh runs it with --release against `flaredock emulator`"]
async fn churn() {
    let base = env("CHURN_API_BASE");
    let count: usize = env("CHURN_OBJECTS").parse().unwrap();
    let rounds: usize = env("CHURN_ROUNDS").parse().unwrap();
    let concurrency: usize = std::env::var("CHURN_CONCURRENCY")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(32);
    let mut config = ClientConfig::new(
        base.clone(),
        env("CHURN_ACCOUNT"),
        Secret::new(env("CHURN_TOKEN")),
    );
    config.rate_limit = RateLimit {
        requests: 1_000_000,
        window: Duration::from_secs(1),
    };
    let client = CloudflareClient::new(config).unwrap();
    // As the controller's `Context::account` builds them.
    let images = ImageResolver::new(
        client.clone(),
        RegistryClient::new(vec![]).unwrap(),
        SourceCredentials::new(),
        CopyOptions::default(),
    );
    let r = Reconciler::new(
        Arc::new(AccountView::new(client.clone())),
        Arc::new(images),
        ClusterIdentity::cli(),
    );
    println!("churn: {count} objects per round, {rounds} rounds, {concurrency} at once");
    for round in 1..=rounds {
        // The controller's periodic resync.
        r.view.invalidate().await;
        r.images.new_round().await;
        let t = Instant::now();
        let created = converge(&r, objects(round, count, 1), concurrency).await;
        let t_create = t.elapsed();
        let t = Instant::now();
        let statuses: std::collections::HashMap<Option<String>, _> = created
            .into_iter()
            .map(|c| (c.metadata.name.clone(), c.status))
            .collect();
        let mut changed = objects(round, count, 2);
        for obj in &mut changed {
            obj.status = statuses.get(&obj.metadata.name).cloned().flatten();
        }
        let changed = converge(&r, changed, concurrency).await;
        let t_change = t.elapsed();
        let t = Instant::now();
        delete_all(&r, changed, concurrency).await;
        let t_delete = t.elapsed();
        let left = client.list_applications().await.unwrap().len();
        assert_eq!(left, 0, "round {round}: applications left");
        let (now, peak) = rss();
        let caches = r.cache_stats().await;
        let sizes: Vec<String> = caches
            .iter()
            .map(|(name, s)| format!("{name}={}", s.entries))
            .collect();
        println!(
            "round {round}: create {:.1}s change {:.1}s delete {:.1}s RSS {now:.1} MiB peak {peak:.1} MiB caches: {}",
            t_create.as_secs_f64(),
            t_change.as_secs_f64(),
            t_delete.as_secs_f64(),
            sizes.join(" ")
        );
        // The emulator's request log is its own memory, not ours: cleared each round.
        let root = base.trim_end_matches("/client/v4");
        let _ = reqwest::Client::new()
            .delete(format!("{root}/__emulator/requests"))
            .send()
            .await;
        for (name, s) in &caches {
            assert!(
                s.entries <= s.max_entries && s.bytes <= s.max_bytes,
                "{name} over budget: {s:?}"
            );
        }
    }
}

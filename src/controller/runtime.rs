//! `flaredock run`: connects to the cluster, serves the endpoints, elects a leader, and
//! runs both controllers with their watches and the periodic resync.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};

use super::{Context, Settings, jittered, server};
use crate::spec::{CloudflareContainer, CloudflareWorker};
use crate::telemetry::metrics::Metrics;

/// How `flaredock run` is configured (beyond [`Settings`]).
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub settings: Settings,
    pub metrics_address: SocketAddr,
    pub leader_election: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    pub lease_duration: Duration,
    pub identity: String,
    /// Take the cluster id from the UID of the `kube-system` namespace (no
    /// `--cluster-id` was given).
    pub cluster_from_kube_system: bool,
    /// The readable cluster name (`--cluster-name`).
    pub cluster_name: Option<String>,
}

/// The cluster id of the cluster `client` reaches: from its `kube-system`
/// namespace's UID, which no other cluster has.
async fn cluster_identity(
    client: &Client,
    name: Option<&str>,
) -> Result<crate::spec::ClusterIdentity, String> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = tokio::time::timeout(Duration::from_secs(10), namespaces.get("kube-system"))
        .await
        .map_err(|_| "reading namespace kube-system timed out".to_string())?
        .map_err(|e| {
            format!("cannot read namespace kube-system for the cluster id ({e}); set --cluster-id")
        })?;
    let uid = ns.metadata.uid.unwrap_or_default();
    crate::spec::ClusterIdentity::from_uid(&uid, name)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// How long after a watch's last failure `/readyz` stays 503: a failing watch is
/// retried at most 30 s apart (kube-runtime's backoff), so a watch that keeps failing
/// keeps the controller not ready.
const WATCH_FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// When a watch last failed (`None`: never).
type WatchFailures = Arc<std::sync::Mutex<Option<std::time::Instant>>>;

/// A controller's stream error: a failing watch (a 403 names the resource, the verb
/// and the namespace in its message) is a warning and makes `/readyz` answer 503 for
/// [`WATCH_FAILURE_WINDOW`]; a reconcile error was logged by the error policy already.
fn log_controller_error<E: std::fmt::Display + std::fmt::Debug>(
    controller: &str,
    e: &kube::runtime::controller::Error<E, kube::runtime::watcher::Error>,
    failures: &WatchFailures,
) {
    match e {
        kube::runtime::controller::Error::QueueError(w) => {
            *crate::lock(failures) = Some(std::time::Instant::now());
            tracing::warn!(controller, error = %w, "a watch failed (the message names the resource, verb and namespace); retrying with backoff, not ready meanwhile")
        }
        other => tracing::debug!(controller, error = %other, "controller event"),
    }
}

/// A reconcile that waits until both kinds' stores have listed everything: a Worker
/// reconciled before the CloudflareContainer store synced would upload its script
/// without the classes of its containers (after every restart), and a container's
/// reconcile reads the Workers' store too.
fn synced_first<K, F, Fut>(
    synced: tokio::sync::watch::Receiver<bool>,
    reconcile: F,
) -> impl FnMut(Arc<K>, Arc<Context>) -> futures::future::BoxFuture<'static, Fut::Output>
where
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future + Send + 'static,
    K: Send + Sync + 'static,
{
    move |obj, ctx| {
        let mut synced = synced.clone();
        Box::pin(async move {
            // Err: the sender is gone (shutting down); the reconcile runs as before.
            let _ = synced.wait_for(|s| *s).await;
            reconcile(obj, ctx).await
        })
    }
}

/// `Store::wait_until_ready`, safe with several waiters: kube-runtime 5 keeps one waker
/// for all of them (the controller's own runner waits too), so a waiter polled before
/// the last one is never woken; polled again it sees the store ready.
async fn store_synced<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
            Ok(r) => return r.is_ok(),
            Err(_) => continue,
        }
    }
}

/// Runs the controller until SIGTERM/SIGINT. Returns the process exit code.
pub async fn run(config: RunConfig) -> i32 {
    let client = match tokio::time::timeout(Duration::from_secs(10), Client::try_default()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            eprintln!(
                "error: no Kubernetes configuration: {e} (in a cluster the service account is used; elsewhere KUBECONFIG or ~/.kube/config)"
            );
            return 1;
        }
        Err(_) => {
            eprintln!("error: loading the Kubernetes configuration timed out");
            return 1;
        }
    };
    let cluster = client.default_namespace().to_string();
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(v)) => {
            tracing::info!(version = %v.git_version, "connected to the Kubernetes API server")
        }
        Ok(Err(e)) => {
            eprintln!("error: cannot reach the Kubernetes API server of the current context: {e}");
            return 1;
        }
        Err(_) => {
            eprintln!(
                "error: the Kubernetes API server did not answer within 10 s (check KUBECONFIG and the current context)"
            );
            return 1;
        }
    }
    let mut config = config;
    if config.cluster_from_kube_system {
        match cluster_identity(&client, config.cluster_name.as_deref()).await {
            Ok(c) => config.settings.cluster = c,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    }
    tracing::info!(
        cluster_id = config.settings.cluster.id(),
        cluster_name = config.settings.cluster.name().unwrap_or(""),
        "ownership at Cloudflare is recorded as <cluster id>/<namespace>.<name>"
    );
    let api: Api<CloudflareContainer> = match &config.settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let workers_api: Api<CloudflareWorker> = match &config.settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if let Err(e) = api.list(&kube::api::ListParams::default().limit(1)).await {
        eprintln!(
            "error: cannot list CloudflareContainers ({e}); are the CRDs installed? kubectl apply -k crds/"
        );
        return 1;
    }
    if let Err(e) = workers_api
        .list(&kube::api::ListParams::default().limit(1))
        .await
    {
        eprintln!(
            "error: cannot list CloudflareWorkers ({e}); are the CRDs installed? kubectl apply -k crds/"
        );
        return 1;
    }
    tracing::info!(default_namespace = %cluster, "CloudflareContainer and CloudflareWorker APIs available");

    let metrics = Arc::new(Metrics::new());
    let leader = Arc::new(AtomicBool::new(!config.leader_election));
    let leadership = Arc::new(if config.leader_election {
        super::leadership::Leadership::elected(config.lease_duration)
    } else {
        super::leadership::Leadership::always()
    });
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            config.settings.clone(),
            metrics,
            leader.clone(),
        )
        .with_leadership(leadership.clone()),
    );
    let server = match server::serve(config.metrics_address, ctx.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: cannot serve metrics on {}: {e}",
                config.metrics_address
            );
            return 1;
        }
    };

    // Leader election: a standby watches; when it becomes leader, everything is resynced.
    let (trigger_tx, _) = tokio::sync::broadcast::channel::<()>(4);
    let mut lease_task = None;
    if config.leader_election {
        let manager =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &config.lease_name)
                .with_namespace(&config.lease_namespace)
                .with_identity(&config.identity)
                // Renewals every quarter of the duration, well before the local
                // deadline (two thirds of it after the last renewal seen).
                .with_duration(leadership.lease_seconds())
                .with_grace(leadership.lease_manager_grace())
                .build()
                .await;
        let manager = match manager {
            Ok(m) => m,
            Err(e) => {
                eprintln!(
                    "error: leader election on Lease {}/{}: {e}",
                    config.lease_namespace, config.lease_name
                );
                return 1;
            }
        };
        let (mut rx, handle) = manager.watch().await;
        let leader = leader.clone();
        let tx = trigger_tx.clone();
        let (lease_ctx, lease_leadership) = (ctx.clone(), leadership.clone());
        lease_task = Some((
            tokio::spawn(async move {
                loop {
                    let is_leader = *rx.borrow_and_update();
                    if !is_leader {
                        lease_leadership.lose();
                    }
                    if leader.swap(is_leader, Ordering::SeqCst) != is_leader {
                        tracing::info!(leader = is_leader, "leadership changed");
                        if is_leader {
                            // What the other replica did meanwhile is read afresh.
                            lease_ctx.drop_accounts().await;
                            // Everything again once this replica may write (its next
                            // read of the Lease opens the local deadline): a reconcile
                            // before that would wait out a standby's requeue.
                            let (ctx, tx, limit) = (
                                lease_ctx.clone(),
                                tx.clone(),
                                lease_leadership.lease_seconds(),
                            );
                            tokio::spawn(async move {
                                let started = tokio::time::Instant::now();
                                while !ctx.may_write()
                                    && started.elapsed() < Duration::from_secs(limit)
                                {
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                                let _ = tx.send(());
                            });
                        }
                    }
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            }),
            handle,
        ));
        // The local deadline: the Lease read every poll interval; a renewal seen moves
        // it, a failed renewal (or an unreachable API server) lets it pass.
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(client.clone(), &config.lease_namespace);
        let (lease_name, identity) = (config.lease_name.clone(), config.identity.clone());
        let observer = leadership.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(observer.poll_interval()).await;
                // A read that hangs is a read that failed: the deadline is not moved.
                let sent = tokio::time::Instant::now();
                let read =
                    tokio::time::timeout(observer.poll_interval(), leases.get_opt(&lease_name))
                        .await
                        .unwrap_or_else(|_| {
                            Err(kube::Error::Service("reading the Lease timed out".into()))
                        });
                match read {
                    Ok(Some(lease)) => {
                        let spec = lease.spec.unwrap_or_default();
                        let holder = spec.holder_identity.as_deref() == Some(identity.as_str());
                        let renewal = spec.renew_time.map(|t| t.0.to_string());
                        observer.observe_read_at(holder, renewal.as_deref(), sent);
                    }
                    Ok(None) => observer.observe(false, None),
                    Err(e) => {
                        tracing::warn!(resource = "leases", verb = "get", name = %lease_name, error = %e, "cannot read the leader Lease; no writes past the local deadline");
                    }
                }
            }
        });
    }

    // The periodic resync: every account's view goes stale, every object of both kinds
    // is reconciled. Leadership gained triggers the same.
    let resync_ctx = ctx.clone();
    let period = config.settings.resync;
    let resync_tx = trigger_tx.clone();
    let resync_task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(jittered(period)).await;
            resync_ctx.invalidate_all().await;
            tracing::info!("periodic resync");
            let _ = resync_tx.send(());
        }
    });
    let triggers = |tx: &tokio::sync::broadcast::Sender<()>| {
        futures::stream::unfold(tx.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(()) => return Some(((), rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return None,
                }
            }
        })
    };

    // A build Job that finishes wakes its CloudflareContainer up; a CloudflareWorker
    // that changes wakes the containers that name it.
    let mut containers = Controller::new(api.clone(), watcher::Config::default().any_semantic());
    if config.settings.build.enabled {
        // Build Jobs live in the build namespace, labelled with their object.
        let jobs: Api<k8s_openapi::api::batch::v1::Job> =
            Api::namespaced(client.clone(), &config.settings.build.namespace);
        containers = containers.watches(
            jobs,
            watcher::Config::default().labels(crate::build::job::BUILD_LABEL),
            |job| {
                let labels = job.labels();
                let name = labels.get(crate::build::job::BUILD_LABEL)?;
                let ns = labels.get(crate::build::job::BUILD_NAMESPACE_LABEL)?;
                Some(ObjectRef::<CloudflareContainer>::new(name).within(ns))
            },
        );
    }
    let workers = Controller::new(
        workers_api.clone(),
        watcher::Config::default().any_semantic(),
    );
    let store = containers.store();
    let worker_store = workers.store();
    ctx.set_stores(store.clone(), worker_store.clone());
    // `/readyz` turns ready once both kinds' watches have listed everything.
    let (ready_ctx, ready_containers, ready_workers) =
        (ctx.clone(), store.clone(), worker_store.clone());
    // No reconcile of either kind before both stores synced (`synced_first`).
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    // Ready again once no watch has failed for WATCH_FAILURE_WINDOW.
    let failures: WatchFailures = Arc::default();
    let watch_failures = failures.clone();
    let ready_task = tokio::spawn(async move {
        let synced = futures::future::join(
            store_synced(&ready_containers),
            store_synced(&ready_workers),
        )
        .await;
        if let (true, true) = synced {
            tracing::info!("watches synced: ready");
            ready_ctx.ready.store(true, Ordering::SeqCst);
            let _ = synced_tx.send(true);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let failing = crate::lock(&watch_failures)
                    .is_some_and(|t| t.elapsed() < WATCH_FAILURE_WINDOW);
                if ready_ctx.ready.swap(!failing, Ordering::SeqCst) == failing {
                    if failing {
                        tracing::warn!("a watch is failing: not ready");
                    } else {
                        tracing::info!("the watches answer again: ready");
                    }
                }
            }
        }
        // The sender stays until the controller stops: a dropped one would let the
        // waiting reconciles through.
        std::future::pending::<()>().await;
    });

    let s2 = store.clone();
    // Secrets are never listed or watched (no Secret access at cluster scope): they are
    // read by name on reconcile, and a Ready object is reconciled again at the resync.
    let containers = containers
        .watches(
            workers_api.clone(),
            watcher::Config::default(),
            move |w: CloudflareWorker| {
                s2.state()
                    .iter()
                    .filter(|o| o.metadata.namespace == w.metadata.namespace)
                    .filter(|o| o.worker_object() == Some(w.name()))
                    .map(|o| ObjectRef::from_obj(&**o))
                    .collect::<Vec<_>>()
            },
        )
        .reconcile_all_on(triggers(&trigger_tx))
        .graceful_shutdown_on(shutdown_signal())
        .with_config(
            kube::runtime::controller::Config::default().concurrency(config.settings.concurrency),
        )
        .run(
            synced_first(synced_rx.clone(), super::reconcile),
            super::error_policy,
            ctx.clone(),
        )
        .for_each(|result| {
            let failures = failures.clone();
            async move {
                if let Err(e) = result {
                    log_controller_error("CloudflareContainer", &e, &failures);
                }
            }
        });

    // ConfigMaps are never listed or watched (no ConfigMap access at cluster scope): a
    // Worker's is read by name on each reconcile, and a Ready Worker that names one
    // comes back within CONFIG_MAP_POLL (controller/worker.rs).
    let w3 = worker_store.clone();
    let workers = workers
        .watches(
            api,
            watcher::Config::default(),
            move |c: CloudflareContainer| {
                // A container's class joins or leaves its Worker's upload.
                w3.state()
                    .iter()
                    .filter(|o| o.metadata.namespace == c.metadata.namespace)
                    .filter(|o| c.worker_object() == Some(o.name()))
                    .map(|o| ObjectRef::from_obj(&**o))
                    .collect::<Vec<_>>()
            },
        )
        .reconcile_all_on(triggers(&trigger_tx))
        .graceful_shutdown_on(shutdown_signal())
        .with_config(
            kube::runtime::controller::Config::default().concurrency(config.settings.concurrency),
        )
        .run(
            synced_first(synced_rx.clone(), super::reconcile_worker),
            super::worker_error_policy,
            ctx.clone(),
        )
        .for_each(|result| {
            let failures = failures.clone();
            async move {
                if let Err(e) = result {
                    log_controller_error("CloudflareWorker", &e, &failures);
                }
            }
        });
    futures::join!(containers, workers);
    resync_task.abort();
    ready_task.abort();
    tracing::info!("shutting down");
    ctx.ready.store(false, Ordering::SeqCst);
    if let Some((watcher_task, lease_handle)) = lease_task {
        // Dropping the receiver makes the lease manager release the Lease.
        watcher_task.abort();
        let _ = watcher_task.await;
        match tokio::time::timeout(Duration::from_secs(5), lease_handle).await {
            Ok(Ok(Ok(_))) => tracing::info!("lease released"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "lease release failed"),
            _ => tracing::warn!("lease release did not finish in time"),
        }
    }
    server.abort();
    0
}

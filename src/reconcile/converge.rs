//! Converging a set of objects from the command line: rounds in which every pending
//! CloudflareWorker is reconciled first (its upload container-enables the classes), then
//! every pending CloudflareContainer, until each is Ready or stalled, or the timeout.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;

use super::images::PeerIndex;
use super::worker::inputs::SourceData;
use super::worker::{WorkerOutcome, classes_for};
use super::{ReconcileOutcome, Reconciler};
use crate::spec::{CloudflareContainer, CloudflareWorker};

/// Rounds in a row, and time, with the API unreachable for every object before
/// converging gives up (each round already retried every call with backoff).
const UNREACHABLE_ROUNDS: usize = 3;
const UNREACHABLE_FOR: Duration = Duration::from_secs(10);

/// How [`converge`] runs.
#[derive(Clone, Debug)]
pub struct ConvergeOptions {
    /// Keep going until every object is Ready (or stalled), or the timeout.
    pub wait: bool,
    pub timeout: Duration,
    /// Objects reconciled at once.
    pub concurrency: usize,
    /// Pause between rounds.
    pub poll: Duration,
}

impl Default for ConvergeOptions {
    fn default() -> Self {
        ConvergeOptions {
            wait: true,
            timeout: Duration::from_secs(300),
            concurrency: 16,
            poll: Duration::from_millis(250),
        }
    }
}

/// What to converge: both kinds, and the ConfigMaps and Secrets they read.
#[derive(Clone, Copy)]
pub struct Manifests<'a> {
    pub containers: &'a [CloudflareContainer],
    pub workers: &'a [CloudflareWorker],
    pub data: &'a SourceData,
}

/// Outcomes by `namespace/name`, per kind. Each outcome tells the whole story of the
/// rounds: its `events`, and its plan's `changes` and `actions`, are those of every
/// round in order; its status and `plan.blocked` are the last round's.
#[derive(Clone, Debug, Default)]
pub struct Converged {
    pub containers: HashMap<String, ReconcileOutcome>,
    pub workers: HashMap<String, WorkerOutcome>,
}

/// Puts what earlier rounds did before what this round did.
fn keep_history<T>(
    map: &mut HashMap<String, T>,
    results: Vec<(String, T)>,
    parts: impl Fn(&mut T) -> (&mut Vec<super::Happening>, &mut super::plan::Plan),
) {
    for (key, mut outcome) in results {
        if let Some(mut previous) = map.remove(&key) {
            let (old_events, old_plan) = parts(&mut previous);
            let (events, plan) = parts(&mut outcome);
            let mut all = std::mem::take(old_events);
            all.append(events);
            *events = all;
            let mut actions = std::mem::take(&mut old_plan.actions);
            actions.append(&mut plan.actions);
            plan.actions = actions;
            let mut changes = std::mem::take(&mut old_plan.changes);
            for c in plan.changes.drain(..) {
                if !changes.contains(&c) {
                    changes.push(c);
                }
            }
            plan.changes = changes;
        }
        map.insert(key, outcome);
    }
}

/// A container that waits for its CloudflareWorker (`WorkerNotReady`, an approved
/// adoption held among them), when this run leaves that Worker as it is: awaiting its
/// own approval, stalled or suspended. Nothing more happens to it in this run.
fn waits_on_a_settled_worker(
    obj: &CloudflareContainer,
    outcome: &ReconcileOutcome,
    workers: &HashMap<String, WorkerOutcome>,
) -> bool {
    let waits = outcome
        .status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && super::reason::Reason::WorkerNotReady.is(&c.reason));
    let settled = obj
        .worker_object()
        .and_then(|name| workers.get(&format!("{}/{name}", obj.namespace_or_default())))
        .is_some_and(|w| !w.ready() && (w.awaiting_approval() || w.stalled() || w.suspended()));
    waits && settled
}

/// Reconciles CloudflareContainers only (their Workers deployed elsewhere).
pub async fn converge(
    reconciler: &Reconciler,
    objects: &[CloudflareContainer],
    options: &ConvergeOptions,
    mut on_round: impl FnMut(usize, &HashMap<String, ReconcileOutcome>),
) -> HashMap<String, ReconcileOutcome> {
    let data = SourceData::default();
    let manifests = Manifests {
        containers: objects,
        workers: &[],
        data: &data,
    };
    converge_all(reconciler, manifests, options, |round, c| {
        on_round(round, &c.containers)
    })
    .await
    .containers
}

/// Reconciles both kinds in rounds (one account view refresh per round, shared by all).
pub async fn converge_all(
    reconciler: &Reconciler,
    manifests: Manifests<'_>,
    options: &ConvergeOptions,
    mut on_round: impl FnMut(usize, &Converged),
) -> Converged {
    let deadline = tokio::time::Instant::now() + options.timeout;
    let mut done = Converged::default();
    let mut pending_workers: Vec<&CloudflareWorker> = manifests.workers.iter().collect();
    let mut pending: Vec<&CloudflareContainer> = manifests.containers.iter().collect();
    let all_containers: Vec<&CloudflareContainer> = manifests.containers.iter().collect();
    let concurrency = options.concurrency.max(1);
    let mut peers = PeerIndex {
        images: Default::default(),
        workers: manifests
            .workers
            .iter()
            .map(|w| (w.key(), w.script_name().to_string()))
            .collect(),
        data: manifests.data.clone(),
        deleting: vec![],
    };
    let mut round = 0usize;
    // Rounds in a row in which every object failed to reach the API at all.
    let mut unreachable: Option<(usize, tokio::time::Instant)> = None;
    loop {
        round += 1;
        if round > 1 {
            reconciler.view.invalidate().await;
            reconciler.images.new_round().await;
        }
        let results: Vec<(String, WorkerOutcome)> =
            futures::stream::iter(pending_workers.iter().copied())
                .map(|w| {
                    let previous = done.workers.get(&w.key()).map(|o| o.status.clone());
                    let classes = classes_for(w, &all_containers);
                    async move {
                        let outcome = reconciler
                            .reconcile_worker(w, classes, manifests.data, previous.as_ref())
                            .await;
                        (w.key(), outcome)
                    }
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
        keep_history(&mut done.workers, results, |o| (&mut o.events, &mut o.plan));

        // Only the deployed images change from round to round.
        peers.images = done
            .containers
            .iter()
            .filter(|(_, o)| o.ready())
            .filter_map(|(k, o)| o.status.image.clone().map(|i| (k.clone(), i)))
            .collect();
        let results: Vec<(String, ReconcileOutcome)> =
            futures::stream::iter(pending.iter().copied())
                .map(|obj| {
                    let previous = done.containers.get(&obj.key()).map(|o| o.status.clone());
                    let peers = &peers;
                    async move {
                        let outcome = reconciler.reconcile(obj, previous.as_ref(), peers).await;
                        (obj.key(), outcome)
                    }
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
        keep_history(&mut done.containers, results, |o| {
            (&mut o.events, &mut o.plan)
        });
        on_round(round, &done);
        pending_workers.retain(|w| {
            done.workers.get(&w.key()).is_none_or(|x| {
                !x.ready() && !x.stalled() && !x.suspended() && !x.awaiting_approval()
            })
        });
        pending.retain(|o| {
            done.containers.get(&o.key()).is_none_or(|x| {
                !x.ready()
                    && !x.stalled()
                    && !x.suspended()
                    && !x.awaiting_approval()
                    && !waits_on_a_settled_worker(o, x, &done.workers)
            })
        });
        let idle = pending.is_empty() && pending_workers.is_empty();
        if idle || !options.wait || tokio::time::Instant::now() >= deadline {
            return done;
        }
        // An API that cannot be reached at all (connection refused, DNS, TLS) will not
        // come back by waiting out the whole timeout: give up after a few rounds.
        let cut_off = |e: &Option<crate::cloudflare::ApiError>| {
            matches!(
                e,
                Some(crate::cloudflare::ApiError::Transport {
                    maybe_applied: false,
                    ..
                })
            )
        };
        let all_cut_off = pending_workers.iter().all(|w| {
            done.workers
                .get(&w.key())
                .is_some_and(|o| cut_off(&o.error))
        }) && pending.iter().all(|c| {
            done.containers
                .get(&c.key())
                .is_some_and(|o| cut_off(&o.error))
        });
        unreachable = match (all_cut_off, unreachable) {
            (false, _) => None,
            (true, None) => Some((1, tokio::time::Instant::now())),
            (true, Some((n, since))) => Some((n + 1, since)),
        };
        if let Some((n, since)) = unreachable
            && n >= UNREACHABLE_ROUNDS
            && since.elapsed() >= UNREACHABLE_FOR
        {
            return done;
        }
        tokio::time::sleep(
            options
                .poll
                .min(deadline.saturating_duration_since(tokio::time::Instant::now())),
        )
        .await;
    }
}

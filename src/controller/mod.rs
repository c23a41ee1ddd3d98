//! The Kubernetes controller (`flaredock run`): kube-runtime `Controller`s over
//! `CloudflareContainer` and `CloudflareWorker`, driving the same reconcile core as the
//! CLI. It owns the Kubernetes plumbing only, one room each: the settings from the
//! flags ([`settings`]), credentials from Secrets and their protection
//! ([`credentials`]) and what is remembered of them (`credential_cache`), the
//! per-account machinery (`accounts`), the watched objects and the peer index they give
//! (`watched`), status by server-side apply ([`status`]), the one wrapper every kind
//! goes through (finalizer, refusal, report, cleanup, error policy: [`managed`], around
//! kube's finalizer helper in `finalizer`) and what each kind brings to it
//! ([`container`], [`worker`]), when an object comes back (`requeue`: next action,
//! backoff, polls), its errors (`error`) and Events (`events`), the runtime with
//! leader election, watches and the periodic resync ([`runtime`]), and the HTTP
//! endpoints ([`server`]). This file holds what they share: the finalizer names and
//! the context.

mod accounts;
pub mod container;
mod credential_cache;
pub mod credentials;
mod error;
mod events;
mod finalizer;
pub mod leadership;
pub mod managed;
mod requeue;
pub mod runtime;
pub mod server;
pub mod settings;
pub mod status;
mod watched;
pub mod worker;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;

use crate::cloudflare::Limiters;
use crate::spec::{CloudflareContainer, CloudflareWorker};
use crate::telemetry::metrics::Metrics;
use accounts::{Account, AccountKey};
use credential_cache::{CREDENTIALS_TTL, CachedCredentials};
use events::publish_changes;
use finalizer::with_finalizer;
use requeue::{CONFIG_MAP_POLL, Failing, SECRET_POLL, backoff, jittered, next_action};

pub use container::{error_policy, reconcile};
pub use error::Error;
pub use runtime::{RunConfig, run};
pub use settings::Settings;
pub use worker::{reconcile_worker, worker_error_policy};

/// Finalizer on both kinds: cleanup runs before the object goes.
pub const FINALIZER: &str = "flaredock.dev/cleanup";
/// Finalizer on credential Secrets while an object still needs them for its cleanup.
pub const SECRET_FINALIZER: &str = "flaredock.dev/credentials-in-use";
/// Field manager of the status written by server-side apply.
pub const FIELD_MANAGER: &str = "flaredock";

/// State shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// The switch `Context::new` was given: the leadership without election (tests,
    /// `--leader-election=false`); with election, what the lease manager last said.
    /// Writes never ask it: they ask `leadership`.
    pub leader: Arc<AtomicBool>,
    /// The one answer to "may this replica write now, and for how long?".
    pub leadership: Arc<leadership::Leadership>,
    /// The per-token rate limiters of every account's client (a token used by
    /// several objects, or several accounts, is paced and blocked once).
    pub limiters: Arc<Limiters>,
    /// Set once the controller watches; `/readyz` answers 200 from then on.
    pub ready: Arc<AtomicBool>,
    accounts: tokio::sync::Mutex<HashMap<AccountKey, Arc<Account>>>,
    failures: std::sync::Mutex<HashMap<String, Failing>>,
    store: OnceLock<Store<CloudflareContainer>>,
    worker_store: OnceLock<Store<CloudflareWorker>>,
    /// Credentials read from Secrets (by name), for `CREDENTIALS_TTL`.
    credentials: std::sync::Mutex<HashMap<(String, String), CachedCredentials>>,
    /// Whether a namespace allows the default credentials, with when it was read.
    default_allowed: std::sync::Mutex<HashMap<String, (bool, std::time::Instant)>>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        leader: Arc<AtomicBool>,
    ) -> Self {
        let reporter = Reporter {
            controller: "flaredock".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            leadership: Arc::new(leadership::Leadership::switch(leader.clone())),
            leader,
            limiters: Arc::new(Limiters::new()),
            ready: Arc::new(AtomicBool::new(false)),
            accounts: Default::default(),
            failures: Default::default(),
            store: OnceLock::new(),
            worker_store: OnceLock::new(),
            credentials: Default::default(),
            default_allowed: Default::default(),
        }
    }

    /// With the local deadline of leader election (`flaredock run`).
    pub fn with_leadership(mut self, leadership: Arc<leadership::Leadership>) -> Self {
        self.leadership = leadership;
        self
    }

    /// May this replica write now (to Kubernetes or Cloudflare)? Asked immediately
    /// before each write.
    pub fn may_write(&self) -> bool {
        self.leadership.may_write()
    }
}

//! The Kubernetes controller (`flaredock run`): kube-runtime `Controller`s over
//! `CloudflareContainer` and `CloudflareWorker`, driving the same reconcile core as the
//! CLI. It owns the Kubernetes plumbing only, one room each: credentials from Secrets
//! and their protection ([`credentials`]), status by server-side apply
//! ([`status`]), the one wrapper every kind goes through (finalizer, refusal, report,
//! cleanup, error policy: [`managed`]) and what each kind brings to it
//! ([`container`], [`worker`]), the
//! runtime with leader election, watches and the periodic resync ([`runtime`]), and
//! the HTTP endpoints ([`server`]). This file holds what they share: settings, the
//! per-account machinery and the context.

pub mod container;
pub mod credentials;
pub mod leadership;
pub mod managed;
pub mod runtime;
pub mod server;
pub mod status;
pub mod worker;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};

use crate::cloudflare::{
    ApiError, ClientConfig, CloudflareClient, Limiters, RateLimit, Secret as SecretString,
};
use crate::oci::RegistryClient;
use crate::oci::client::RegistryTimeouts;
use crate::oci::copy::CopyOptions;
use crate::reconcile::Reconciler;
use crate::reconcile::images::{ImageResolver, PeerIndex, SourceCredentials, being_deleted};
use crate::reconcile::status::is_ready;
use crate::reconcile::view::AccountView;
use crate::spec::{CloudflareContainer, CloudflareWorker};
use crate::telemetry::metrics::Metrics;
use credentials::credentials_from;

pub use container::{error_policy, reconcile};
pub use runtime::{RunConfig, run};
pub use worker::{reconcile_worker, worker_error_policy};

/// Finalizer on both kinds: cleanup runs before the object goes.
pub const FINALIZER: &str = "flaredock.dev/cleanup";
/// Finalizer on credential Secrets while an object still needs them for its cleanup.
pub const SECRET_FINALIZER: &str = "flaredock.dev/credentials-in-use";
/// Field manager of the status written by server-side apply.
pub const FIELD_MANAGER: &str = "flaredock";

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch one namespace (all when `None`).
    pub namespace: Option<String>,
    /// Period of the full resync (with ±10% jitter).
    pub resync: Duration,
    /// Requeue delay of an object whose rollout is in progress.
    pub progress_poll: Duration,
    pub concurrency: u16,
    pub api_base_url: String,
    pub rate_limit: RateLimit,
    /// Overall timeout of one Cloudflare API request.
    pub api_timeout: Duration,
    /// The deadline of one reconcile through the core: past it, the object is
    /// requeued with `ReconcileTimedOut` in its status and its slot freed.
    pub reconcile_timeout: Duration,
    /// Connect timeout of Cloudflare API and registry requests.
    pub connect_timeout: Duration,
    /// Timeouts of registry requests (copies, pushes).
    pub registry_timeouts: RegistryTimeouts,
    pub insecure_registries: Vec<String>,
    /// Credentials for objects without `credentialsSecretRef`: (account id, token).
    pub default_credentials: Option<(String, SecretString)>,
    /// Namespaces whose objects may use `default_credentials` besides those labelled
    /// `flaredock.dev/default-credentials: allow`.
    pub default_credentials_namespaces: Vec<String>,
    /// How in-cluster build Jobs are made.
    pub build: crate::build::job::JobSettings,
    /// Who records ownership at Cloudflare (`flaredock run` sets it from the UID of
    /// the cluster's `kube-system` namespace unless `--cluster-id` is given).
    pub cluster: crate::spec::ClusterIdentity,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: None,
            resync: Duration::from_secs(600),
            progress_poll: Duration::from_secs(5),
            concurrency: 16,
            api_base_url: crate::cloudflare::DEFAULT_BASE_URL.into(),
            rate_limit: RateLimit::CLOUDFLARE,
            api_timeout: Duration::from_secs(30),
            reconcile_timeout: crate::reconcile::DEFAULT_RECONCILE_TIMEOUT,
            connect_timeout: Duration::from_secs(10),
            registry_timeouts: RegistryTimeouts::default(),
            insecure_registries: vec![],
            default_credentials: None,
            default_credentials_namespaces: vec![],
            build: Default::default(),
            cluster: crate::spec::ClusterIdentity::cli(),
        }
    }
}

/// A controller error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error(transparent)]
    Cloudflare(#[from] ApiError),
    #[error("credentials: {0}")]
    Credentials(String),
    /// Cleanup waits for something else to go first.
    #[error("{0}")]
    Waiting(String),
    /// The reconcile did not finish within `--reconcile-timeout` (its status says
    /// so); retried with backoff.
    #[error("the reconcile did not finish within {0:?} (--reconcile-timeout)")]
    TimedOut(Duration),
}

/// One account's reconcile machinery, shared by every object of that account.
struct Account {
    reconciler: Arc<Reconciler>,
    client: CloudflareClient,
    account_id: String,
    /// When an object last used it: accounts (and tokens) nobody uses are dropped.
    last_used: std::sync::Mutex<std::time::Instant>,
}

/// An account's machinery unused this long is dropped (a rotated token's old account,
/// deleted objects' accounts).
const ACCOUNT_IDLE: Duration = Duration::from_secs(3600);

/// An object whose reconciles fail: how often in a row, the generation they failed
/// for, and when the next attempt is due.
struct Failing {
    count: u32,
    generation: Option<i64>,
    until: tokio::time::Instant,
}

/// Account id and token fingerprint.
type AccountKey = (String, [u8; 32]);

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

/// Credentials of one Secret, with when they were read.
#[derive(Clone)]
struct CachedCredentials {
    result: Result<(String, SecretString), String>,
    read: std::time::Instant,
    /// The Secret carries our finalizer.
    protected: bool,
}

/// Cached credentials are read again after this long: a rotated token is in use
/// within a minute of the rotation (at the object's next reconcile after that).
const CREDENTIALS_TTL: Duration = Duration::from_secs(30);
/// Entries older than this are dropped from the caches (deleted Secrets, namespaces).
const CACHE_FORGET: Duration = Duration::from_secs(600);

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

    /// Forgets every account's machinery and cached view (leadership regained: what
    /// another replica did meanwhile is read afresh).
    pub async fn drop_accounts(&self) {
        self.accounts.lock().await.clear();
    }

    /// Whether objects of `ns` may use the operator's default credentials: listed in
    /// `--default-credentials-namespaces`, or the namespace carries the label
    /// `flaredock.dev/default-credentials: allow` (read by name; what a read showed is
    /// cached a minute). A read that failed is not an answer: it is not cached, and it
    /// is a transient problem (retried with backoff), never "not allowed"; a read the
    /// operator's RBAC refuses says so.
    async fn default_credentials_allowed(
        &self,
        ns: &str,
    ) -> Result<bool, credentials::SecretProblem> {
        if self
            .settings
            .default_credentials_namespaces
            .iter()
            .any(|n| n == ns)
        {
            return Ok(true);
        }
        if let Some((allowed, read)) = crate::lock(&self.default_allowed).get(ns)
            && read.elapsed() < Duration::from_secs(60)
        {
            return Ok(*allowed);
        }
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(self.client.clone());
        let allowed = match api.get_opt(ns).await {
            Ok(found) => found.is_some_and(|n| {
                n.labels()
                    .get(credentials::DEFAULT_CREDENTIALS_LABEL)
                    .map(String::as_str)
                    == Some("allow")
            }),
            Err(kube::Error::Api(e)) if e.code == 403 => {
                return Err(credentials::SecretProblem::Refused {
                    reason: crate::reconcile::reason::Reason::CredentialsForbidden,
                    message: format!(
                        "flaredock may not read namespace {ns} (get namespaces), so it cannot tell whether the namespace allows the operator's default credentials: grant it, list {ns} in --default-credentials-namespaces, or set spec.credentialsSecretRef"
                    ),
                });
            }
            Err(e) => {
                tracing::warn!(namespace = ns, resource = "namespaces", verb = "get", error = %e, "cannot read a namespace's labels; retrying with backoff");
                return Err(credentials::SecretProblem::Transient(format!(
                    "cannot read namespace {ns} (whether it allows the operator's default credentials): {e}"
                )));
            }
        };
        let mut cache = crate::lock(&self.default_allowed);
        cache.retain(|_, (_, read)| read.elapsed() < CACHE_FORGET);
        cache.insert(ns.to_string(), (allowed, std::time::Instant::now()));
        Ok(allowed)
    }

    /// The reconcile machinery of an account (created on first use).
    async fn account(&self, account_id: &str, token: &SecretString) -> Result<Arc<Account>, Error> {
        let key = (account_id.to_string(), token.fingerprint());
        let mut accounts = self.accounts.lock().await;
        accounts.retain(|_, a| crate::lock(&a.last_used).elapsed() < ACCOUNT_IDLE);
        if let Some(a) = accounts.get(&key) {
            *crate::lock(&a.last_used) = std::time::Instant::now();
            return Ok(a.clone());
        }
        let mut config = ClientConfig::new(
            self.settings.api_base_url.clone(),
            account_id,
            token.clone(),
        );
        config.rate_limit = self.settings.rate_limit;
        config.timeout = self.settings.api_timeout;
        config.connect_timeout = self.settings.connect_timeout;
        // Every write asks the leadership, and ends before it can.
        config.write_gate = Some(self.leadership.gate());
        let limiter = self.limiters.for_token(token, config.rate_limit);
        let client = CloudflareClient::with_limiter(config, limiter)?;
        let registry = RegistryClient::with_timeouts(
            self.settings.insecure_registries.clone(),
            self.settings.registry_timeouts,
        )
        .map_err(|e| Error::Credentials(e.to_string()))?
        .with_write_gate(self.leadership.gate());
        let builder =
            crate::build::job::JobBuilder::new(self.client.clone(), self.settings.build.clone())
                .with_write_gate(self.leadership.gate());
        let images = ImageResolver::new(
            client.clone(),
            registry,
            SourceCredentials::new(),
            CopyOptions::default(),
        )
        .with_builder(Arc::new(builder), false);
        let account = Arc::new(Account {
            reconciler: Arc::new(
                Reconciler::new(
                    Arc::new(AccountView::new(client.clone())),
                    Arc::new(images),
                    self.settings.cluster.clone(),
                )
                .with_reconcile_timeout(self.settings.reconcile_timeout),
            ),
            client,
            account_id: account_id.to_string(),
            last_used: std::sync::Mutex::new(std::time::Instant::now()),
        });
        accounts.insert(key, account.clone());
        Ok(account)
    }

    /// Marks every account's view stale (the periodic resync).
    pub async fn invalidate_all(&self) {
        let accounts: Vec<Arc<Account>> = self.accounts.lock().await.values().cloned().collect();
        for a in accounts {
            a.reconciler.view.invalidate().await;
            a.reconciler.images.new_round().await;
        }
    }

    /// Feeds the account-level counters into the metrics (on scrape).
    pub async fn collect_metrics(&self) {
        let accounts: Vec<Arc<Account>> = self.accounts.lock().await.values().cloned().collect();
        self.metrics.reset_account_gauges();
        for a in accounts {
            self.metrics
                .collect_from(&a.account_id, &a.client, &a.reconciler.images);
            let caches = a.reconciler.cache_stats().await;
            self.metrics.set_caches(&a.account_id, &caches);
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failing>> {
        crate::lock(&self.failures)
    }

    /// How long an object that keeps failing still waits before its next attempt, when
    /// a trigger other than a spec change (the periodic resync, a watched change)
    /// comes early: the backoff holds through a Cloudflare outage.
    fn backing_off(&self, key: &str, generation: Option<i64>) -> Option<Duration> {
        let failures = self.failures();
        let f = failures.get(key)?;
        let now = tokio::time::Instant::now();
        (f.generation == generation && now < f.until).then(|| f.until - now)
    }

    /// The watched objects (the runtime sets them; tests may too).
    pub fn set_stores(
        &self,
        containers: Store<CloudflareContainer>,
        workers: Store<CloudflareWorker>,
    ) {
        let _ = self.store.set(containers);
        let _ = self.worker_store.set(workers);
    }

    /// The Ready digests of the other objects (promotion) and the CloudflareWorkers'
    /// script names.
    fn peers(&self) -> PeerIndex {
        let images = self
            .store
            .get()
            .map(|store| {
                store
                    .state()
                    .iter()
                    .filter_map(|o| {
                        let status = o.status.as_ref()?;
                        is_ready(status).then(|| (o.key(), status.image.clone()))
                    })
                    .filter_map(|(k, i)| i.map(|i| (k, i)))
                    .collect()
            })
            .unwrap_or_default();
        let workers = self
            .worker_store
            .get()
            .map(|store| {
                store
                    .state()
                    .iter()
                    .map(|w| (w.key(), w.script_name().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        PeerIndex {
            images,
            workers,
            data: Default::default(),
            deleting: being_deleted(self.containers().iter().map(|o| o.as_ref())),
        }
    }

    /// The CloudflareContainers watched now.
    fn containers(&self) -> Vec<Arc<CloudflareContainer>> {
        self.store.get().map(|s| s.state()).unwrap_or_default()
    }

    fn cached_credentials(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), CachedCredentials>> {
        crate::lock(&self.credentials)
    }

    /// Records what a Secret now says (after each read or patch). Entries not read
    /// for a while (deleted Secrets, gone objects) are dropped.
    pub fn remember_secret(&self, secret: &Secret) {
        let key = (secret.namespace().unwrap_or_default(), secret.name_any());
        let entry = CachedCredentials {
            result: credentials_from(secret),
            read: std::time::Instant::now(),
            protected: secret.finalizers().iter().any(|f| f == SECRET_FINALIZER),
        };
        let mut cache = self.cached_credentials();
        cache.retain(|_, c| c.read.elapsed() < CACHE_FORGET);
        cache.insert(key, entry);
    }

    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        if !self.may_write() {
            return;
        }
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(object = ?obj.meta().name, error = %e, "could not publish an event");
        }
    }
}

/// The kube-runtime entry point shared by both kinds: only the leader acts; the
/// finalizer runs `apply` or, once the object is being deleted, `cleanup`; durations and
/// failures are counted.
async fn with_finalizer<K, A, AF, C, CF>(
    obj: Arc<K>,
    ctx: Arc<Context>,
    key: String,
    apply: A,
    cleanup: C,
) -> Result<kube::runtime::controller::Action, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + crate::spec::ReconcileRequest
        + Send
        + Sync
        + 'static,
    A: FnOnce(Arc<K>, Arc<Context>) -> AF,
    AF: std::future::Future<Output = Result<kube::runtime::controller::Action, Error>>,
    C: FnOnce(Arc<K>, Arc<Context>) -> CF,
    CF: std::future::Future<Output = Result<kube::runtime::controller::Action, Error>>,
{
    use kube::runtime::finalizer::Event as FinalizerEvent;
    use tracing::Instrument;
    if !ctx.may_write() {
        // A standby (or a leader past its local deadline) watches but never writes.
        return Ok(kube::runtime::controller::Action::requeue(
            Duration::from_secs(15),
        ));
    }
    // A requested reconcile (reconcile.fluxcd.io/requestedAt) is not held back.
    if obj.meta().deletion_timestamp.is_none()
        && !obj.reconcile_requested()
        && let Some(wait) = ctx.backing_off(&key, obj.meta().generation)
    {
        return Ok(kube::runtime::controller::Action::requeue(wait));
    }
    let started = std::time::Instant::now();
    let ns = obj
        .meta()
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let api: kube::Api<K> = kube::Api::namespaced(ctx.client.clone(), &ns);
    let span = tracing::info_span!("reconcile", object = %key);
    let result = finalizer::finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            FinalizerEvent::Apply(o) => apply(o, ctx.clone()).await,
            FinalizerEvent::Cleanup(o) => cleanup(o, ctx.clone()).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_err() {
        ctx.metrics
            .reconciliations
            .with_label_values(&["error"])
            .inc();
    }
    result
}

/// What comes after a reconcile of either kind, counted in the metrics: a terminal
/// Cloudflare error or a stall waits for a change, another error backs off, Ready
/// comes back at the resync, anything else after `progress`.
fn next_action(
    ctx: &Context,
    key: &str,
    ready: bool,
    stalled: bool,
    error: Option<ApiError>,
    progress: Duration,
) -> Result<kube::runtime::controller::Action, Error> {
    use kube::runtime::controller::Action;
    ctx.metrics.set_ready(key, Some(ready));
    if let Some(e) = error {
        if e.is_terminal() {
            ctx.metrics
                .reconciliations
                .with_label_values(&["stalled"])
                .inc();
            return Ok(Action::await_change());
        }
        return Err(Error::Cloudflare(e));
    }
    ctx.failures().remove(key);
    let (result, action) = if ready {
        ("ready", Action::requeue(jittered(ctx.settings.resync)))
    } else if stalled {
        ("stalled", Action::await_change())
    } else {
        ("progressing", Action::requeue(progress))
    };
    ctx.metrics
        .reconciliations
        .with_label_values(&[result])
        .inc();
    Ok(action)
}

/// Per-object exponential backoff: 2ⁿ seconds (jittered), at most 5 minutes; early
/// triggers of the same generation wait it out too ([`Context::backing_off`]). A
/// rate-limited token is the exception: its object comes back when the token may send
/// again (the time its status names), neither sooner nor on the backoff's schedule.
fn backoff(
    ctx: &Context,
    key: &str,
    generation: Option<i64>,
    error: &Error,
) -> kube::runtime::controller::Action {
    if is_waiting(error) {
        // A cleanup waiting for something to go (an asynchronous delete) is no failure:
        // looked at again soon, with no growing backoff.
        return kube::runtime::controller::Action::requeue(jittered(WAITING_POLL));
    }
    let mut failures = ctx.failures();
    let previous = failures
        .get(key)
        .filter(|f| f.generation == generation)
        .map(|f| f.count);
    let (count, delay) = match rate_limited_for(error) {
        // Not the object's failure: the count stays; a little late, never early.
        Some(wait) => (
            previous.unwrap_or(0),
            wait + Duration::from_millis(fastrand::u64(0..1000)),
        ),
        None => {
            let count = previous.map_or(1, |c| c.saturating_add(1));
            let delay = jittered(Duration::from_secs(1u64 << count.min(8)).min(MAX_BACKOFF));
            (count, delay)
        }
    };
    failures.insert(
        key.to_string(),
        Failing {
            count,
            generation,
            until: tokio::time::Instant::now() + delay,
        },
    );
    let reason = error_reason(error);
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[reason])
        .inc();
    tracing::warn!(object = %key, error = %error, reason, retry_in_s = delay.as_secs(), "reconcile failed");
    kube::runtime::controller::Action::requeue(delay)
}

/// A cleanup that waits (`Error::Waiting`, also through the finalizer helper).
fn is_waiting(error: &Error) -> bool {
    match error {
        Error::Waiting(_) => true,
        Error::Finalizer(f) => matches!(
            f.as_ref(),
            finalizer::Error::CleanupFailed(e) | finalizer::Error::ApplyFailed(e) if is_waiting(e)
        ),
        _ => false,
    }
}

/// How long until the token of a rate-limited reconcile may send again (through the
/// finalizer).
fn rate_limited_for(error: &Error) -> Option<Duration> {
    match error {
        Error::Cloudflare(e) => e.retry_after(),
        Error::Finalizer(f) => match f.as_ref() {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                rate_limited_for(e)
            }
            _ => None,
        },
        _ => None,
    }
}

/// A short reason of a reconcile error, for metrics and logs (through the finalizer).
fn error_reason(error: &Error) -> &'static str {
    match error {
        Error::Cloudflare(e) => e.reason(),
        Error::Kube(_) => "KubernetesError",
        Error::Credentials(_) => "CredentialsUnavailable",
        Error::Waiting(_) => "Waiting",
        Error::TimedOut(_) => crate::reconcile::reason::Reason::ReconcileTimedOut.as_str(),
        Error::Finalizer(f) => match f.as_ref() {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                error_reason(e)
            }
            _ => "FinalizerError",
        },
    }
}

/// How often a Ready object that reads Secrets (a Worker's `secrets`, a container's
/// `env[].valueFrom`) reads them again: Secrets are never watched.
const SECRET_POLL: Duration = Duration::from_secs(60);
/// How often a Ready CloudflareWorker whose code is a ConfigMap reads it again:
/// ConfigMaps are read by name, never watched (least privilege, deploy/base/rbac.yaml).
const CONFIG_MAP_POLL: Duration = Duration::from_secs(15);

/// How often a cleanup that waits (for Cloudflare to finish deleting an application,
/// or for the containers of a Worker) looks again.
const WAITING_POLL: Duration = Duration::from_secs(3);

/// The longest wait between two attempts of a failing object.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Publishes what a reconcile did: a `DriftCorrected` warning listing `drift`, the
/// changes that corrected drift (`lead` says what drifted), then one Event per
/// happening, each also logged.
async fn publish_changes<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    key: &str,
    drift: &[crate::reconcile::plan::Change],
    events: &[crate::reconcile::Happening],
    lead: &str,
) {
    if !drift.is_empty() {
        let changes: Vec<String> = drift.iter().map(ToString::to_string).collect();
        let message = format!("{lead}: {}", changes.join("; "));
        tracing::warn!(object = %key, %message, "drift corrected");
        ctx.publish(obj, EventType::Warning, "DriftCorrected", message)
            .await;
    }
    for h in events {
        tracing::info!(object = %key, reason = h.reason, "{}", h.message);
        ctx.publish(obj, EventType::Normal, h.reason, h.message.clone())
            .await;
    }
}

/// A duration with ±10% jitter.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.9 + fastrand::f64() * 0.2)
}

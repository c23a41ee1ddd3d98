//! The Kubernetes controller (`flaredock run`): kube-runtime's `Controller` over
//! `CloudflareContainer`, driving the same reconcile core as the CLI. This module owns
//! the Kubernetes plumbing only: credentials from Secrets, the cleanup finalizer and the
//! Secret's protection, status by server-side apply (only when it changed), Events,
//! per-object backoff, leader election, the periodic resync, and the HTTP endpoints.

pub mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use crate::cloudflare::{
    ApiError, ClientConfig, CloudflareClient, RateLimit, Secret as SecretString,
};
use crate::oci::RegistryClient;
use crate::oci::copy::CopyOptions;
use crate::reconcile::images::{ImageResolver, SourceCredentials};
use crate::reconcile::status::{condition, is_ready, is_stalled};
use crate::reconcile::view::AccountView;
use crate::reconcile::{DeleteOutcome, ReconcileOutcome, Reconciler};
use crate::spec::{CloudflareContainer, CloudflareContainerStatus};
use crate::telemetry::metrics::Metrics;

/// Finalizer on CloudflareContainers: cleanup runs before the object goes.
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
    pub insecure_registries: Vec<String>,
    /// Credentials for objects without `credentialsSecretRef`: (account id, token).
    pub default_credentials: Option<(String, SecretString)>,
    /// How in-cluster build Jobs are made.
    pub build: crate::build::job::JobSettings,
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
            insecure_registries: vec![],
            default_credentials: None,
            build: Default::default(),
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
}

/// One account's reconcile machinery, shared by every object of that account.
struct Account {
    reconciler: Arc<Reconciler>,
    client: CloudflareClient,
    account_id: String,
}

/// Account id and token fingerprint.
type AccountKey = (String, [u8; 32]);

/// State shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Only the leader changes anything.
    pub leader: Arc<AtomicBool>,
    /// Set once the controller watches; `/readyz` answers 200 from then on.
    pub ready: Arc<AtomicBool>,
    accounts: tokio::sync::Mutex<HashMap<AccountKey, Arc<Account>>>,
    failures: std::sync::Mutex<HashMap<String, u32>>,
    store: OnceLock<Store<CloudflareContainer>>,
    /// Credentials read from Secrets, kept current by the Secret watch.
    credentials: std::sync::Mutex<HashMap<(String, String), CachedCredentials>>,
}

/// Credentials of one Secret, with when they were read.
#[derive(Clone)]
struct CachedCredentials {
    result: Result<(String, SecretString), String>,
    read: std::time::Instant,
    /// The Secret carries our finalizer.
    protected: bool,
}

/// Cached credentials are read again after this long, whatever the watch said.
const CREDENTIALS_TTL: Duration = Duration::from_secs(600);

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
            leader,
            ready: Arc::new(AtomicBool::new(false)),
            accounts: Default::default(),
            failures: Default::default(),
            store: OnceLock::new(),
            credentials: Default::default(),
        }
    }

    /// The reconcile machinery of an account (created on first use).
    async fn account(&self, account_id: &str, token: &SecretString) -> Result<Arc<Account>, Error> {
        let key = (account_id.to_string(), token.fingerprint());
        let mut accounts = self.accounts.lock().await;
        if let Some(a) = accounts.get(&key) {
            return Ok(a.clone());
        }
        let mut config = ClientConfig::new(
            self.settings.api_base_url.clone(),
            account_id,
            token.clone(),
        );
        config.rate_limit = self.settings.rate_limit;
        let client = CloudflareClient::new(config)?;
        let registry = RegistryClient::new(self.settings.insecure_registries.clone())
            .map_err(|e| Error::Credentials(e.to_string()))?;
        let builder = crate::build::job::JobBuilder {
            client: self.client.clone(),
            settings: self.settings.build.clone(),
        };
        let images = ImageResolver::new(
            client.clone(),
            registry,
            SourceCredentials::new(),
            CopyOptions::default(),
        )
        .with_builder(Arc::new(builder), false);
        let account = Arc::new(Account {
            reconciler: Arc::new(Reconciler::new(
                Arc::new(AccountView::new(client.clone())),
                Arc::new(images),
            )),
            client,
            account_id: account_id.to_string(),
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
        for a in accounts {
            self.metrics
                .collect_from(&a.account_id, &a.client, &a.reconciler.images);
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        crate::lock(&self.failures)
    }

    /// The Ready digests of the other objects, for promotion.
    fn peers(&self) -> HashMap<String, String> {
        let Some(store) = self.store.get() else {
            return HashMap::new();
        };
        store
            .state()
            .iter()
            .filter_map(|o| {
                let status = o.status.as_ref()?;
                is_ready(status).then(|| (o.key(), status.image.clone()))
            })
            .filter_map(|(k, i)| i.map(|i| (k, i)))
            .collect()
    }

    fn cached_credentials(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), CachedCredentials>> {
        crate::lock(&self.credentials)
    }

    /// Records what a Secret now says (called by the Secret watch and after reads).
    pub fn remember_secret(&self, secret: &Secret) {
        let key = (secret.namespace().unwrap_or_default(), secret.name_any());
        let entry = CachedCredentials {
            result: credentials_from(secret),
            read: std::time::Instant::now(),
            protected: secret.finalizers().iter().any(|f| f == SECRET_FINALIZER),
        };
        self.cached_credentials().insert(key, entry);
    }

    async fn publish(
        &self,
        obj: &CloudflareContainer,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(object = %obj.key(), error = %e, "could not publish an event");
        }
    }
}

/// A Secret an object names in `field`; a missing one is an error naming it.
async fn read_secret(ctx: &Context, ns: &str, name: &str, field: &str) -> Result<Secret, String> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    secrets
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read Secret {ns}/{name}: {e}"))?
        .ok_or_else(|| format!("Secret {ns}/{name} ({field}) does not exist"))
}

/// `(account id, token)` from a credentials Secret (keys `accountId`, `apiToken`).
fn credentials_from(secret: &Secret) -> Result<(String, SecretString), String> {
    let ns = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let value = |key: &str| -> Result<String, String> {
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone());
        let string = secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|s| s.clone().into_bytes());
        let bytes = data
            .or(string)
            .ok_or_else(|| format!("Secret {ns}/{name} has no key {key}"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("Secret {ns}/{name}: {key} is not UTF-8"))?;
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err(format!("Secret {ns}/{name}: {key} is empty"));
        }
        Ok(text)
    };
    Ok((value("accountId")?, SecretString::new(value("apiToken")?)))
}

/// `(account id, token)` for an object: its Secret (cached, kept current by the
/// Secret watch), or the operator's default.
async fn credentials(
    obj: &CloudflareContainer,
    ctx: &Context,
) -> Result<(String, SecretString), String> {
    let Some(reference) = &obj.spec.credentials_secret_ref else {
        return ctx.settings.default_credentials.clone().ok_or_else(|| {
            "no credentials: set spec.credentialsSecretRef, or give the operator CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID".to_string()
        });
    };
    let ns = obj.namespace_or_default();
    let key = (ns.to_string(), reference.name.clone());
    if let Some(c) = ctx.cached_credentials().get(&key)
        && c.read.elapsed() < CREDENTIALS_TTL
        && c.result.is_ok()
    {
        return c.result.clone();
    }
    let secret = read_secret(ctx, ns, &reference.name, "spec.credentialsSecretRef").await?;
    ctx.remember_secret(&secret);
    credentials_from(&secret)
}

/// Source registry credentials from `image.pullSecretRef` (a `kubernetes.io/dockerconfigjson`
/// Secret in the object's namespace).
async fn pull_credentials(
    obj: &CloudflareContainer,
    ctx: &Context,
) -> Result<Option<SourceCredentials>, String> {
    let Some(reference) = obj
        .spec
        .image
        .as_ref()
        .and_then(|i| i.pull_secret_ref.as_ref())
    else {
        return Ok(None);
    };
    let ns = obj.namespace_or_default();
    let secret = read_secret(ctx, ns, &reference.name, "spec.image.pullSecretRef").await?;
    let json = secret
        .data
        .as_ref()
        .and_then(|d| d.get(".dockerconfigjson"))
        .map(|b| String::from_utf8_lossy(&b.0).to_string())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(".dockerconfigjson"))
                .cloned()
        })
        .ok_or_else(|| {
            format!(
                "Secret {ns}/{} has no .dockerconfigjson key",
                reference.name
            )
        })?;
    crate::oci::client::docker_config_auths(&json)
        .map(Some)
        .map_err(|e| format!("Secret {ns}/{}: {e}", reference.name))
}

/// Adds or removes our finalizer on the credentials Secret (known state from the
/// cache: nothing is read or written when it is already as wanted).
async fn protect_secret(
    ctx: &Context,
    obj: &CloudflareContainer,
    protect: bool,
) -> Result<(), kube::Error> {
    let Some(reference) = &obj.spec.credentials_secret_ref else {
        return Ok(());
    };
    let ns = obj.namespace_or_default();
    let key = (ns.to_string(), reference.name.clone());
    if ctx
        .cached_credentials()
        .get(&key)
        .is_some_and(|c| c.protected == protect)
    {
        return Ok(());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(secret) = secrets.get_opt(&reference.name).await? else {
        return Ok(());
    };
    let mut finalizers = secret.finalizers().to_vec();
    let has = finalizers.iter().any(|f| f == SECRET_FINALIZER);
    if protect != has {
        if protect {
            finalizers.push(SECRET_FINALIZER.to_string());
        } else {
            finalizers.retain(|f| f != SECRET_FINALIZER);
        }
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": secret.resource_version()}});
        let updated = secrets
            .patch(
                &reference.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        ctx.remember_secret(&updated);
    } else {
        ctx.remember_secret(&secret);
    }
    Ok(())
}

/// Does another live object still use this object's credentials Secret?
fn secret_still_used(ctx: &Context, obj: &CloudflareContainer) -> bool {
    let (Some(reference), Some(store)) = (&obj.spec.credentials_secret_ref, ctx.store.get()) else {
        return false;
    };
    store.state().iter().any(|o| {
        o.metadata.uid != obj.metadata.uid
            && o.metadata.deletion_timestamp.is_none()
            && o.namespace_or_default() == obj.namespace_or_default()
            && o.spec.credentials_secret_ref.as_ref().map(|r| &r.name) == Some(&reference.name)
    })
}

async fn write_status(
    ctx: &Context,
    obj: &CloudflareContainer,
    status: &CloudflareContainerStatus,
) -> Result<(), kube::Error> {
    if obj.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<CloudflareContainer> =
        Api::namespaced(ctx.client.clone(), obj.namespace_or_default());
    let patch = json!({
        "apiVersion": "flaredock.dev/v1alpha1",
        "kind": "CloudflareContainer",
        "status": status,
    });
    api.patch_status(
        obj.name(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// A status carrying one blocking problem (no Cloudflare call was possible).
fn problem_status(
    obj: &CloudflareContainer,
    reason: &str,
    message: &str,
    stalled: bool,
) -> CloudflareContainerStatus {
    let previous = obj.status.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let cond = |kind: &str, ok: bool, reason: &str, message: &str| {
        crate::reconcile::status::condition_since(
            &previous.conditions,
            kind,
            ok,
            reason,
            message,
            obj.metadata.generation,
            now,
        )
    };
    let mut conditions = vec![
        cond("Ready", false, reason, message),
        cond(
            "Stalled",
            stalled,
            if stalled { reason } else { "NotStalled" },
            if stalled {
                message
            } else {
                "no terminal error"
            },
        ),
        cond("Reconciling", !stalled, reason, message),
    ];
    for c in previous.conditions {
        if !conditions.iter().any(|x| x.type_ == c.type_) {
            conditions.push(c);
        }
    }
    CloudflareContainerStatus {
        observed_generation: obj.metadata.generation,
        conditions,
        ..previous
    }
}

/// Reconciles one object (the kube-runtime entry point).
pub async fn reconcile(obj: Arc<CloudflareContainer>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leader.load(Ordering::Relaxed) {
        // A standby watches but never writes.
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let started = std::time::Instant::now();
    let api: Api<CloudflareContainer> =
        Api::namespaced(ctx.client.clone(), obj.namespace_or_default());
    let span = tracing::info_span!("reconcile", object = %obj.key());
    let result = finalizer::finalizer(&api, FINALIZER, obj.clone(), |event| async {
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

fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.9 + fastrand::f64() * 0.2)
}

async fn apply(obj: Arc<CloudflareContainer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = obj.key();
    let (account_id, token) = match credentials(&obj, &ctx).await {
        Ok(c) => c,
        Err(message) => {
            let status = problem_status(&obj, "CredentialsUnavailable", &message, true);
            let was_stalled = obj.status.as_ref().is_some_and(is_stalled);
            write_status(&ctx, &obj, &status).await?;
            if !was_stalled {
                ctx.publish(
                    &obj,
                    EventType::Warning,
                    "CredentialsUnavailable",
                    message.clone(),
                )
                .await;
            }
            tracing::warn!(object = %key, %message, "credentials unavailable");
            ctx.metrics
                .reconciliations
                .with_label_values(&["stalled"])
                .inc();
            ctx.metrics.set_ready(&key, Some(false));
            // The Secret is watched: its creation or change triggers a reconcile.
            return Ok(Action::await_change());
        }
    };
    protect_secret(&ctx, &obj, true).await?;
    let account = ctx.account(&account_id, &token).await?;
    let reconciler = &account.reconciler;
    match pull_credentials(&obj, &ctx).await {
        Ok(pull) => reconciler.images.set_pull_credentials(&key, pull),
        Err(message) => {
            let status = problem_status(&obj, "PullSecretUnavailable", &message, false);
            write_status(&ctx, &obj, &status).await?;
            ctx.metrics.set_ready(&key, Some(false));
            return Err(Error::Credentials(message));
        }
    }
    let previous = obj.status.clone();
    let was_ready = previous.as_ref().is_some_and(is_ready);
    if previous.as_ref().is_some_and(|s| {
        s.rollout
            .as_ref()
            .is_some_and(|r| r.status == "progressing")
    }) {
        reconciler
            .view
            .expire_applications(ctx.settings.progress_poll)
            .await;
    }
    let peers = ctx.peers();
    let outcome = reconciler.reconcile(&obj, previous.as_ref(), &peers).await;
    report(&ctx, &obj, previous.as_ref(), was_ready, &outcome).await;
    write_status(&ctx, &obj, &outcome.status).await?;
    ctx.metrics.set_ready(&key, Some(outcome.ready()));
    if let Some(e) = outcome.error {
        if e.is_terminal() {
            ctx.metrics
                .reconciliations
                .with_label_values(&["stalled"])
                .inc();
            return Ok(Action::await_change());
        }
        return Err(Error::Cloudflare(e));
    }
    ctx.failures().remove(&key);
    let (result, action) = if outcome.ready() {
        ("ready", Action::requeue(jittered(ctx.settings.resync)))
    } else if outcome.stalled() {
        ("stalled", Action::await_change())
    } else {
        ("progressing", Action::requeue(ctx.settings.progress_poll))
    };
    ctx.metrics
        .reconciliations
        .with_label_values(&[result])
        .inc();
    Ok(action)
}

/// Events and logs for what a reconcile did and what changed in the status.
async fn report(
    ctx: &Context,
    obj: &CloudflareContainer,
    previous: Option<&CloudflareContainerStatus>,
    was_ready: bool,
    outcome: &ReconcileOutcome,
) {
    let key = obj.key();
    let spec_unchanged = previous.and_then(|s| s.observed_generation) == obj.metadata.generation;
    if was_ready && spec_unchanged && !outcome.plan.actions.is_empty() {
        let changes: Vec<String> = outcome
            .plan
            .changes
            .iter()
            .map(ToString::to_string)
            .collect();
        let message = format!(
            "Cloudflare drifted from the spec; corrected: {}",
            changes.join("; ")
        );
        tracing::warn!(object = %key, %message, "drift corrected");
        ctx.publish(obj, EventType::Warning, "DriftCorrected", message)
            .await;
    }
    for h in &outcome.events {
        tracing::info!(object = %key, reason = h.reason, "{}", h.message);
        ctx.publish(obj, EventType::Normal, h.reason, h.message.clone())
            .await;
    }
    let rollout_was = previous
        .and_then(|s| s.rollout.as_ref())
        .map(|r| (r.id.clone(), r.status.clone()));
    if let (Some((id, was)), Some(now)) = (rollout_was, outcome.status.rollout.as_ref())
        && was == "progressing"
        && now.status == "completed"
        && now.id == id
    {
        ctx.publish(
            obj,
            EventType::Normal,
            "RolloutCompleted",
            format!("rollout {id} completed"),
        )
        .await;
    }
    let stalled_before = previous.is_some_and(is_stalled);
    if outcome.stalled() && !stalled_before {
        let message = condition(&outcome.status, "Stalled")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        tracing::warn!(object = %key, %message, "refused");
        let image_reason = condition(&outcome.status, "ImageReady").map(|c| c.reason.as_str());
        let reason = if image_reason == Some("BuildFailed") {
            "BuildFailed"
        } else {
            "Refused"
        };
        ctx.publish(obj, EventType::Warning, reason, message).await;
    }
    if let Some(e) = &outcome.error {
        tracing::warn!(object = %key, error = %e, "reconcile failed");
    }
}

async fn cleanup(obj: Arc<CloudflareContainer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = obj.key();
    let deleted = match credentials(&obj, &ctx).await {
        Ok((account_id, token)) => {
            let account = ctx.account(&account_id, &token).await?;
            account.reconciler.delete(&obj).await
        }
        Err(message) if obj.spec.deletion_policy == crate::spec::DeletionPolicy::Orphan => {
            tracing::info!(object = %key, %message, "deletionPolicy Orphan: nothing to delete");
            Ok(DeleteOutcome::Orphaned(vec![]))
        }
        Err(message) => {
            ctx.publish(&obj, EventType::Warning, "CleanupBlocked", message.clone())
                .await;
            return Err(Error::Credentials(message));
        }
    };
    match deleted {
        Ok(DeleteOutcome::Deleted(names)) => {
            if !names.is_empty() {
                ctx.publish(
                    &obj,
                    EventType::Normal,
                    "Deleted",
                    format!("deleted application(s) {}", names.join(", ")),
                )
                .await;
            }
        }
        Ok(DeleteOutcome::Orphaned(names)) => {
            if !names.is_empty() {
                ctx.publish(
                    &obj,
                    EventType::Normal,
                    "Orphaned",
                    format!("left application(s) {} running", names.join(", ")),
                )
                .await;
            }
        }
        Err(e) => {
            ctx.publish(&obj, EventType::Warning, "DeleteFailed", e.to_string())
                .await;
            return Err(Error::Cloudflare(e));
        }
    }
    if !secret_still_used(&ctx, &obj) {
        protect_secret(&ctx, &obj, false).await?;
    }
    ctx.metrics.set_ready(&key, None);
    ctx.failures().remove(&key);
    ctx.metrics
        .reconciliations
        .with_label_values(&["deleted"])
        .inc();
    Ok(Action::await_change())
}

/// Per-object exponential backoff: 2ⁿ seconds, at most 5 minutes.
pub fn error_policy(obj: Arc<CloudflareContainer>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = obj.key();
    let n = {
        let mut failures = ctx.failures();
        let n = failures.entry(key.clone()).or_default();
        *n = n.saturating_add(1);
        *n
    };
    let delay = Duration::from_secs(1u64 << n.min(8)).min(Duration::from_secs(300));
    tracing::warn!(object = %key, error = %error, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(jittered(delay))
}

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
    let api: Api<CloudflareContainer> = match &config.settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if let Err(e) = api.list(&kube::api::ListParams::default().limit(1)).await {
        eprintln!(
            "error: cannot list CloudflareContainers ({e}); is the CRD installed? kubectl apply -f crds/cloudflarecontainer.yaml"
        );
        return 1;
    }
    tracing::info!(default_namespace = %cluster, "CloudflareContainer API available");

    let metrics = Arc::new(Metrics::new());
    let leader = Arc::new(AtomicBool::new(!config.leader_election));
    let ctx = Arc::new(Context::new(
        client.clone(),
        config.settings.clone(),
        metrics,
        leader.clone(),
    ));
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
    let (trigger_tx, trigger_rx) = tokio::sync::mpsc::channel::<()>(4);
    let mut lease_task = None;
    if config.leader_election {
        let manager =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &config.lease_name)
                .with_namespace(&config.lease_namespace)
                .with_identity(&config.identity)
                .with_duration(config.lease_duration.as_secs().max(2))
                .with_grace((config.lease_duration.as_secs() / 3).max(1))
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
        lease_task = Some((
            tokio::spawn(async move {
                loop {
                    let is_leader = *rx.borrow_and_update();
                    if leader.swap(is_leader, Ordering::SeqCst) != is_leader {
                        tracing::info!(leader = is_leader, "leadership changed");
                        if is_leader {
                            let _ = tx.send(()).await;
                        }
                    }
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            }),
            handle,
        ));
    }

    // The periodic resync: every account's view goes stale, every object is reconciled.
    let resync_ctx = ctx.clone();
    let period = config.settings.resync;
    let ticks = futures::stream::unfold((), move |_| {
        let ctx = resync_ctx.clone();
        async move {
            tokio::time::sleep(jittered(period)).await;
            ctx.invalidate_all().await;
            tracing::info!("periodic resync");
            Some(((), ()))
        }
    });
    let leader_ticks = futures::stream::unfold(trigger_rx, |mut rx| async move {
        rx.recv().await.map(|_| ((), rx))
    });
    let triggers = futures::stream::select(ticks, leader_ticks);

    let secrets: Api<Secret> = match &config.settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = match &config.settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // A build Job that finishes wakes its CloudflareContainer up.
    let controller = Controller::new(api, watcher::Config::default().any_semantic()).owns(
        jobs,
        watcher::Config::default().labels(crate::build::job::BUILD_LABEL),
    );
    let store = controller.store();
    let _ = ctx.store.set(store.clone());
    let mapper_store = store.clone();
    let mapper_ctx = ctx.clone();
    ctx.ready.store(true, Ordering::SeqCst);
    controller
        .watches(
            secrets,
            watcher::Config::default(),
            move |secret: Secret| {
                mapper_ctx.remember_secret(&secret);
                let ns = secret.namespace();
                let name = secret.name_any();
                mapper_store
                    .state()
                    .iter()
                    .filter(|o| o.metadata.namespace == ns)
                    .filter(|o| {
                        o.spec
                            .credentials_secret_ref
                            .as_ref()
                            .is_some_and(|r| r.name == name)
                    })
                    .map(|o| ObjectRef::from_obj(&**o))
                    .collect::<Vec<_>>()
            },
        )
        .reconcile_all_on(triggers)
        .graceful_shutdown_on(shutdown_signal())
        .with_config(
            kube::runtime::controller::Config::default().concurrency(config.settings.concurrency),
        )
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
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

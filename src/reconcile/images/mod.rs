//! A `CloudflareContainer`'s image in Cloudflare's registry, in two rooms: `observe`
//! finds, by reading only, what it takes to deploy it (a digest, or an
//! [`ImageAction`]: copy, build, read a tag); `acquire` does that action for act,
//! minting the registry credentials it needs (kept while they stay valid for minutes,
//! so later observes read with them). Short names are only ever read; copies and
//! builds go to the object's own repository; promotions take the digest another
//! object deployed.

mod acquire;
mod observe;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::model::{ImageAction, ImageState, object_repository};
use super::reason::Reason;
use super::worker::inputs::{DataMap, SourceData};
use crate::build::job::Owner;
use crate::build::{BuildInputs, BuildOutcome, BuildRequest, BuildSource, Builder, content_tag};
use crate::cloudflare::types::RegistryPermission;
use crate::cloudflare::{ApiError, CLOUDFLARE_REGISTRY, CloudflareClient};
use crate::oci::copy::{CopyOptions, copy_image, source_digest};
use crate::oci::{Credentials, Reference, RegistryClient, RegistryError};
use crate::spec::{BuildSpec, CloudflareContainer};

/// Minutes minted credentials are asked to last.
const CREDENTIAL_MINUTES: i64 = 15;
/// Credentials are renewed when fewer than this remain.
const CREDENTIAL_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The object's own repository in `account` (see [`object_repository`]).
fn own_repository(account: &str, cluster: &str, obj: &CloudflareContainer) -> String {
    format!(
        "{account}/{}",
        object_repository(cluster, obj.namespace_or_default(), obj.name())
    )
}

/// A planned repository (`<account>/<path>`) below the account credentials name.
fn below_account(planned: &str, account: &str) -> String {
    match planned.split_once('/') {
        Some((_, rest)) => format!("{account}/{rest}"),
        None => planned.to_string(),
    }
}

/// Entries each per-round reading cache holds at most (cleared when full).
const DIGEST_CACHE_ENTRIES: usize = 4096;

/// Where another object's deployed image can be looked up (promotion).
pub trait Peers: Sync {
    /// The digest reference the named object in `namespace` has deployed, when Ready.
    fn deployed_image(&self, namespace: &str, name: &str) -> Option<String>;

    /// The script name of the CloudflareWorker `name` in `namespace`, when it exists.
    fn worker_script(&self, _namespace: &str, _name: &str) -> Option<String> {
        None
    }

    /// The Secret `name` of `namespace` (what `env[].valueFrom` reads), when known.
    fn secret(&self, _namespace: &str, _name: &str) -> Option<&DataMap> {
        None
    }

    /// The objects being deleted and the applications their status recorded.
    fn being_deleted(&self) -> &[BeingDeleted] {
        &[]
    }
}

/// A CloudflareContainer being deleted (`deletionTimestamp` set, `deletionPolicy:
/// Delete`, its finalizer holding) and the application its status recorded: facts of
/// the Kubernetes object, which survive a controller restart, that say the application
/// is being deleted (Cloudflare's own answers do not say so).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeingDeleted {
    pub namespace: String,
    pub name: String,
    pub application_id: String,
}

/// The objects among `objects` whose applications are being deleted.
pub fn being_deleted<'a>(
    objects: impl IntoIterator<Item = &'a CloudflareContainer>,
) -> Vec<BeingDeleted> {
    objects
        .into_iter()
        .filter(|o| {
            o.metadata.deletion_timestamp.is_some()
                && o.spec.deletion_policy == crate::spec::DeletionPolicy::Delete
        })
        .filter_map(|o| {
            Some(BeingDeleted {
                namespace: o.namespace_or_default().to_string(),
                name: o.name().to_string(),
                application_id: o.status.as_ref()?.application_id.clone()?,
            })
        })
        .collect()
}

/// Deployed images only (`namespace/name` → digest reference).
impl Peers for HashMap<String, String> {
    fn deployed_image(&self, namespace: &str, name: &str) -> Option<String> {
        self.get(&format!("{namespace}/{name}")).cloned()
    }
}

/// Deployed images, the CloudflareWorkers' script names and the Secrets that
/// environment variables read, all by `namespace/name`.
#[derive(Clone, Debug, Default)]
pub struct PeerIndex {
    pub images: HashMap<String, String>,
    pub workers: HashMap<String, String>,
    /// Its `Debug` names Secrets and keys, never values.
    pub data: SourceData,
    /// Objects being deleted, with their recorded applications.
    pub deleting: Vec<BeingDeleted>,
}

impl Peers for PeerIndex {
    fn deployed_image(&self, namespace: &str, name: &str) -> Option<String> {
        self.images.deployed_image(namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<&DataMap> {
        self.data.secrets.get(&format!("{namespace}/{name}"))
    }

    fn worker_script(&self, namespace: &str, name: &str) -> Option<String> {
        self.workers.get(&format!("{namespace}/{name}")).cloned()
    }

    fn being_deleted(&self) -> &[BeingDeleted] {
        &self.deleting
    }
}

struct Minted {
    host: String,
    account: String,
    creds: Credentials,
    expires: Instant,
}

/// Source registry credentials, by registry host (from `--src-creds`, docker config or
/// a pull Secret).
pub type SourceCredentials = HashMap<String, Credentials>;

/// The image resolver of one account.
pub struct ImageResolver {
    client: CloudflareClient,
    registry: RegistryClient,
    minted: Mutex<Option<Minted>>,
    /// Source digests read this round, by reference text (and object, with its own
    /// pull credentials); a failure that is final is kept too.
    digests: Mutex<HashMap<String, Result<String, ImageState>>>,
    /// Tags of Cloudflare's registry read this round, by `host/repository:tag`.
    resolved: Mutex<HashMap<String, ImageState>>,
    /// The registry host the last credentials named (where images go).
    last_host: std::sync::Mutex<Option<String>>,
    sources: SourceCredentials,
    /// Per-object source credentials (`image.pullSecretRef`), by object key.
    pull: std::sync::Mutex<HashMap<String, SourceCredentials>>,
    copy: CopyOptions,
    bytes_copied: AtomicU64,
    bytes_skipped: AtomicU64,
    /// Who builds `spec.build` images, if anyone.
    builder: Option<std::sync::Arc<dyn Builder>>,
    /// Why there is no builder, when there is none.
    no_builder: String,
    /// Local directory contexts are allowed (the command line).
    local_contexts: bool,
    /// Builds seen running (`object|tag`): asked again until they end, so that the
    /// builder can clean up after them.
    in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
}

fn failed(reason: Reason, message: impl Into<String>) -> ImageState {
    ImageState::Failed {
        reason,
        message: message.into(),
    }
}

fn pending(reason: Reason, message: impl Into<String>) -> ImageState {
    ImageState::Pending {
        reason,
        message: message.into(),
    }
}

fn registry_state(e: &RegistryError) -> ImageState {
    match e {
        RegistryError::Unauthorized { .. } => failed(Reason::RegistryUnauthorized, e.to_string()),
        RegistryError::NotFound { .. } => pending(Reason::ImageNotFound, e.to_string()),
        RegistryError::Invalid(_) => failed(Reason::InvalidImage, e.to_string()),
        RegistryError::Protocol { .. } => failed(Reason::RegistryError, e.to_string()),
        RegistryError::Transport { .. } => pending(Reason::RegistryUnavailable, e.to_string()),
        RegistryError::NotLeader { .. } => pending(Reason::NotLeader, e.to_string()),
    }
}

fn api_state(e: &ApiError) -> ImageState {
    if e.is_terminal() {
        failed(Reason::RegistryCredentialsRefused, e.to_string())
    } else {
        pending(Reason::RegistryCredentialsUnavailable, e.to_string())
    }
}

impl ImageResolver {
    pub fn new(
        client: CloudflareClient,
        registry: RegistryClient,
        sources: SourceCredentials,
        copy: CopyOptions,
    ) -> Self {
        ImageResolver {
            client,
            registry,
            minted: Mutex::new(None),
            digests: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
            last_host: Default::default(),
            sources,
            pull: Default::default(),
            copy,
            bytes_copied: AtomicU64::new(0),
            bytes_skipped: AtomicU64::new(0),
            builder: None,
            no_builder: "no builder available (install buildah or docker buildx)".into(),
            local_contexts: false,
            in_flight: Default::default(),
        }
    }

    /// Builds `spec.build` images with `builder`; `local_contexts` allows directories.
    /// No builder here, and why (said by objects with `spec.build`); `local_contexts`
    /// as for [`ImageResolver::with_builder`].
    pub fn without_builder(mut self, why: String, local_contexts: bool) -> Self {
        self.builder = None;
        self.no_builder = why;
        self.local_contexts = local_contexts;
        self
    }

    pub fn with_builder(
        mut self,
        builder: std::sync::Arc<dyn Builder>,
        local_contexts: bool,
    ) -> Self {
        self.builder = Some(builder);
        self.local_contexts = local_contexts;
        self
    }

    /// Source credentials for one object (from its pull Secret); `None` forgets them.
    pub fn set_pull_credentials(&self, object: &str, credentials: Option<SourceCredentials>) {
        let mut pull = crate::lock(&self.pull);
        match credentials {
            Some(c) => {
                pull.insert(object.to_string(), c);
            }
            None => {
                pull.remove(object);
            }
        }
    }

    pub(crate) fn source_credentials(&self, object: &str, host: &str) -> Option<Credentials> {
        let pull = crate::lock(&self.pull);
        pull.get(object)
            .and_then(|c| c.get(host))
            .or_else(|| self.sources.get(host))
            .cloned()
    }

    /// Image bytes copied into Cloudflare's registry, and bytes found already there.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.bytes_copied.load(Ordering::Relaxed),
            self.bytes_skipped.load(Ordering::Relaxed),
        )
    }

    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    /// How full the resolver's caches are: the digests and tags read this round
    /// (`DIGEST_CACHE_ENTRIES` each, cleared when full and at each resync), the
    /// per-object pull credentials (dropped with their object) and the builds seen
    /// running (dropped as they end).
    pub async fn cache_stats(&self) -> Vec<(&'static str, crate::bounded::CacheStats)> {
        let capped = |entries: usize| crate::bounded::CacheStats {
            entries,
            max_entries: DIGEST_CACHE_ENTRIES,
            max_bytes: usize::MAX,
            ..Default::default()
        };
        let per_object = |entries: usize| crate::bounded::CacheStats {
            entries,
            max_entries: usize::MAX,
            max_bytes: usize::MAX,
            ..Default::default()
        };
        vec![
            ("image_digests", capped(self.digests.lock().await.len())),
            ("image_tags", capped(self.resolved.lock().await.len())),
            (
                "pull_credentials",
                per_object(crate::lock(&self.pull).len()),
            ),
            (
                "builds_in_flight",
                per_object(crate::lock(&self.in_flight).len()),
            ),
        ]
    }

    /// Forgets this round's resolutions (tags may have moved).
    pub async fn new_round(&self) {
        self.digests.lock().await.clear();
        self.resolved.lock().await.clear();
    }

    /// Host, account and push/pull credentials for Cloudflare's registry.
    pub async fn cloudflare_registry(&self) -> Result<(String, String, Credentials), ApiError> {
        let mut minted = self.minted.lock().await;
        if let Some(m) = minted.as_ref()
            && m.expires.saturating_duration_since(Instant::now()) > CREDENTIAL_MARGIN
        {
            return Ok((m.host.clone(), m.account.clone(), m.creds.clone()));
        }
        let c = self
            .client
            .registry_credentials(
                CLOUDFLARE_REGISTRY,
                &[RegistryPermission::Pull, RegistryPermission::Push],
                CREDENTIAL_MINUTES,
            )
            .await?;
        let m = Minted {
            host: c.registry_host.clone(),
            account: c.account_id.clone(),
            creds: Credentials {
                username: c.username,
                password: c.password,
            },
            expires: Instant::now() + Duration::from_secs(CREDENTIAL_MINUTES as u64 * 60),
        };
        let out = (m.host.clone(), m.account.clone(), m.creds.clone());
        *crate::lock(&self.last_host) = Some(m.host.clone());
        *minted = Some(m);
        Ok(out)
    }

    /// What `repository:tag` of Cloudflare's registry names, read with `creds`.
    async fn head_cloudflare(
        &self,
        host: &str,
        repository: &str,
        tag: &str,
        creds: &Credentials,
    ) -> ImageState {
        match self
            .registry
            .head_manifest(host, repository, tag, Some(creds))
            .await
        {
            Ok(Some(m)) => ImageState::Ready(format!("{host}/{repository}@{}", m.digest)),
            Ok(None) => pending(
                Reason::ImageNotFound,
                format!("{host}/{repository}:{tag} is not in Cloudflare's registry"),
            ),
            Err(e) => registry_state(&e),
        }
    }

    /// The build's source and inputs, as the spec says them.
    fn build_inputs(&self, build: &BuildSpec) -> Result<(BuildSource, BuildInputs), ImageState> {
        let source =
            BuildSource::parse(&build.context, self.local_contexts).map_err(|message| {
                failed(
                    Reason::InvalidBuildContext,
                    format!("spec.build.context: {message}"),
                )
            })?;
        Ok((source, BuildInputs::from_spec(build)))
    }

    /// The image `repository:tag` names, when it is there (or why it cannot be read);
    /// `None` when it is not.
    async fn pushed(
        &self,
        host: &str,
        repository: &str,
        tag: &str,
        creds: &Credentials,
    ) -> Option<ImageState> {
        match self
            .registry
            .head_manifest(host, repository, tag, Some(creds))
            .await
        {
            Ok(Some(m)) => Some(ImageState::Ready(format!(
                "{host}/{repository}@{}",
                m.digest
            ))),
            Ok(None) => None,
            Err(e) => Some(registry_state(&e)),
        }
    }

    async fn remember(&self, key: String, state: ImageState) {
        let mut resolved = self.resolved.lock().await;
        if resolved.len() >= DIGEST_CACHE_ENTRIES {
            resolved.clear();
        }
        resolved.insert(key, state);
    }
}

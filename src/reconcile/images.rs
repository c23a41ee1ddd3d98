//! Resolves a `CloudflareContainer`'s image to a digest reference in Cloudflare's
//! registry: short names are looked up there, other registries' images are copied in,
//! promotions take the digest another object deployed. Registry credentials are minted
//! through the API and reused while they stay valid for minutes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::model::{ImageAction, ImageState, object_repository};
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

fn failed(reason: &str, message: impl Into<String>) -> ImageState {
    ImageState::Failed {
        reason: reason.into(),
        message: message.into(),
    }
}

fn pending(reason: &str, message: impl Into<String>) -> ImageState {
    ImageState::Pending {
        reason: reason.into(),
        message: message.into(),
    }
}

fn registry_state(e: &RegistryError) -> ImageState {
    match e {
        RegistryError::Unauthorized { .. } => failed("RegistryUnauthorized", e.to_string()),
        RegistryError::NotFound { .. } => pending("ImageNotFound", e.to_string()),
        RegistryError::Invalid(_) => failed("InvalidImage", e.to_string()),
        RegistryError::Protocol { .. } => failed("RegistryError", e.to_string()),
        RegistryError::Transport { .. } => pending("RegistryUnavailable", e.to_string()),
    }
}

fn api_state(e: &ApiError) -> ImageState {
    if e.is_terminal() {
        failed("RegistryCredentialsRefused", e.to_string())
    } else {
        pending("RegistryCredentialsUnavailable", e.to_string())
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

    /// Credentials minted earlier that are still good for minutes: observe reads with
    /// them and never mints (minting is a write at Cloudflare).
    async fn held_credentials(&self) -> Option<(String, String, Credentials)> {
        let minted = self.minted.lock().await;
        minted
            .as_ref()
            .filter(|m| m.expires.saturating_duration_since(Instant::now()) > CREDENTIAL_MARGIN)
            .map(|m| (m.host.clone(), m.account.clone(), m.creds.clone()))
    }

    /// The registry host and account images go to: those of held credentials, else
    /// the last host credentials named, else Cloudflare's registry and the client's
    /// account.
    async fn destination_base(&self) -> (String, String) {
        if let Some((host, account, _)) = self.held_credentials().await {
            return (host, account);
        }
        let host = crate::lock(&self.last_host)
            .clone()
            .unwrap_or_else(|| CLOUDFLARE_REGISTRY.to_string());
        (host, self.client.account_id().to_string())
    }

    /// What it takes to deploy the object's image, found by reading only: the
    /// source registry, and Cloudflare's registry with credentials already held. Never
    /// copies, builds, pushes or mints credentials; what must be done comes back as
    /// [`ImageState::Needs`], for the plan to name and act to do.
    pub async fn observe(
        &self,
        obj: &CloudflareContainer,
        peers: &dyn Peers,
        cluster: &str,
    ) -> ImageState {
        let spec = &obj.spec;
        if let Some(build) = &spec.build {
            return self.observe_build(obj, build, cluster).await;
        }
        let Some(image) = &spec.image else {
            return failed("NoImage", "spec.image or spec.build is required");
        };
        if let Some(peer) = &image.from_container {
            return match peers.deployed_image(obj.namespace_or_default(), peer) {
                Some(i) => ImageState::Ready(i),
                None => pending(
                    "PromotionSourceNotReady",
                    format!(
                        "CloudflareContainer {peer} has not deployed an image yet (it must be Ready)"
                    ),
                ),
            };
        }
        let Some(text) = &image.reference else {
            return failed(
                "NoImage",
                "spec.image.reference or spec.image.fromContainer is required",
            );
        };
        let reference = match Reference::parse(text) {
            Ok(r) => r,
            Err(e) => return failed("InvalidImage", e.to_string()),
        };
        let object = obj.key();
        let (host, account) = self.destination_base().await;
        let cloudflare_host = reference.registry.is_none()
            || reference.registry.as_deref() == Some(host.as_str())
            || reference.registry.as_deref() == Some(CLOUDFLARE_REGISTRY);
        if cloudflare_host {
            return self
                .observe_cloudflare(text, &reference, &host, &account)
                .await;
        }
        // Another registry: its digest is read there; the copy is an action.
        let has_pull = crate::lock(&self.pull).contains_key(&object);
        // With an object's own pull credentials, its reading is its own.
        let key = format!("{text}|{}", if has_pull { object.as_str() } else { "" });
        let cached = self.digests.lock().await.get(&key).cloned();
        let digest = match cached {
            Some(d) => d,
            None => {
                let source_creds = reference
                    .registry
                    .as_deref()
                    .and_then(|h| self.source_credentials(&object, h));
                let read = source_digest(
                    &self.registry,
                    &reference,
                    source_creds.as_ref(),
                    &self.copy,
                )
                .await;
                let d = match read {
                    Ok(digest) => Ok(digest),
                    Err(crate::oci::copy::CopyError::Registry(r)) => Err(registry_state(&r)),
                    Err(other) => Err(failed("CopyFailed", other.to_string())),
                };
                // A failure worth retrying is not kept: the next object asks again.
                if !matches!(d, Err(ImageState::Pending { .. })) {
                    let mut digests = self.digests.lock().await;
                    if digests.len() >= DIGEST_CACHE_ENTRIES {
                        digests.clear();
                    }
                    digests.insert(key, d.clone());
                }
                d
            }
        };
        let digest = match digest {
            Ok(d) => d,
            Err(state) => return state,
        };
        let dest_tag = spec
            .tag
            .clone()
            .or_else(|| reference.tag.clone())
            .unwrap_or_else(|| {
                digest
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(20)
                    .collect()
            });
        let repository = own_repository(&account, cluster, obj);
        ImageState::Needs(ImageAction::Copy {
            source: text.clone(),
            destination: format!("{host}/{repository}:{dest_tag}"),
            digest,
        })
    }

    /// A tag or digest in Cloudflare's registry: read with held credentials, or left to
    /// act to read (it mints credentials to).
    async fn observe_cloudflare(
        &self,
        text: &str,
        reference: &Reference,
        host: &str,
        account: &str,
    ) -> ImageState {
        let repository = if reference.registry.is_none() {
            format!("{account}/{}", reference.repository)
        } else {
            match reference.repository.split_once('/') {
                Some((acc, _)) if acc == account => reference.repository.clone(),
                _ => {
                    return failed(
                        "ForeignAccount",
                        format!(
                            "{text} is not in this account's part of Cloudflare's registry ({host}/{account}/…)"
                        ),
                    );
                }
            }
        };
        if let Some(digest) = &reference.digest {
            // A digest names itself: nothing to read.
            return ImageState::Ready(format!("{host}/{repository}@{digest}"));
        }
        let key = format!("{host}/{repository}:{}", reference.manifest_reference());
        if let Some(state) = self.resolved.lock().await.get(&key).cloned() {
            return state;
        }
        let Some((_, _, creds)) = self.held_credentials().await else {
            return ImageState::Needs(ImageAction::Resolve { reference: key });
        };
        let state = self
            .head_cloudflare(host, &repository, reference.manifest_reference(), &creds)
            .await;
        if !matches!(state, ImageState::Pending { .. }) {
            self.remember(key, state.clone()).await;
        }
        state
    }

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
                "ImageNotFound",
                format!("{host}/{repository}:{tag} is not in Cloudflare's registry"),
            ),
            Err(e) => registry_state(&e),
        }
    }

    /// The build's destination (the content tag in the object's repository), and
    /// whether it is already there, read with held credentials only.
    async fn observe_build(
        &self,
        obj: &CloudflareContainer,
        build: &BuildSpec,
        cluster: &str,
    ) -> ImageState {
        let tag = match self.build_tag(obj, build).await {
            Ok(tag) => tag,
            Err(state) => return state,
        };
        let (host, account) = self.destination_base().await;
        let repository = own_repository(&account, cluster, obj);
        let destination = format!("{host}/{repository}:{tag}");
        let flight = format!("{}|{tag}", obj.key());
        let running = crate::lock(&self.in_flight).contains(&flight);
        if !running
            && let Some((_, _, creds)) = self.held_credentials().await
            && let Some(there) = self.pushed(&host, &repository, &tag, &creds).await
        {
            return there;
        }
        ImageState::Needs(ImageAction::Build { destination })
    }

    /// The build's source and inputs, as the spec says them.
    fn build_inputs(&self, build: &BuildSpec) -> Result<(BuildSource, BuildInputs), ImageState> {
        let source =
            BuildSource::parse(&build.context, self.local_contexts).map_err(|message| {
                failed(
                    "InvalidBuildContext",
                    format!("spec.build.context: {message}"),
                )
            })?;
        Ok((source, BuildInputs::from_spec(build)))
    }

    /// The build's content tag (`spec.tag` when set).
    async fn build_tag(
        &self,
        obj: &CloudflareContainer,
        build: &BuildSpec,
    ) -> Result<String, ImageState> {
        let (source, inputs) = self.build_inputs(build)?;
        // Named without any network call: the controller never fetches a tenant's URL
        // (the build Job fetches its own context); a local directory is hashed here.
        let rebuild = obj
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::build::REBUILD_ANNOTATION))
            .cloned();
        let named = source.clone();
        let identity =
            match tokio::task::spawn_blocking(move || named.identity(rebuild.as_deref())).await {
                Ok(Ok(id)) => id,
                Ok(Err(e)) => {
                    return Err(failed(
                        "InvalidBuildContext",
                        format!("spec.build.context: {e}"),
                    ));
                }
                Err(e) => return Err(pending("BuildSourceUnavailable", e.to_string())),
            };
        let tag = obj
            .spec
            .tag
            .clone()
            .unwrap_or_else(|| content_tag(&identity, &inputs));
        Ok(tag)
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

    /// Does what a plan's [`ImageAction`] says: mints the credentials it needs, then
    /// copies, builds or reads. Only act calls this, behind every gate.
    pub async fn acquire(&self, obj: &CloudflareContainer, action: &ImageAction) -> ImageState {
        if !self.client.writes_allowed() {
            return pending(
                "NotLeader",
                "this replica is not the leader: it gets no image into the registry",
            );
        }
        match action {
            ImageAction::Resolve { reference } => {
                let (host, _, creds) = match self.cloudflare_registry().await {
                    Ok(x) => x,
                    Err(e) => return api_state(&e),
                };
                let parsed = match Reference::parse(reference) {
                    Ok(r) => r,
                    Err(e) => return failed("InvalidImage", e.to_string()),
                };
                let state = self
                    .head_cloudflare(
                        &host,
                        &parsed.repository,
                        parsed.manifest_reference(),
                        &creds,
                    )
                    .await;
                if !matches!(state, ImageState::Pending { .. }) {
                    self.remember(reference.clone(), state.clone()).await;
                }
                state
            }
            ImageAction::Copy {
                source,
                destination,
                ..
            } => self.copy(obj, source, destination).await,
            ImageAction::Build { destination } => match &obj.spec.build {
                Some(build) => self.build(obj, build, destination).await,
                None => failed("NoImage", "spec.build is required to build"),
            },
        }
    }

    async fn copy(&self, obj: &CloudflareContainer, source: &str, destination: &str) -> ImageState {
        let (host, account, creds) = match self.cloudflare_registry().await {
            Ok(x) => x,
            Err(e) => return api_state(&e),
        };
        let reference = match Reference::parse(source) {
            Ok(r) => r,
            Err(e) => return failed("InvalidImage", e.to_string()),
        };
        let planned = match Reference::parse(destination) {
            Ok(r) => r,
            Err(e) => return failed("InvalidImage", e.to_string()),
        };
        // The host and account the credentials name are where it goes.
        let repository = below_account(&planned.repository, &account);
        let dest = Reference {
            registry: Some(host.clone()),
            repository,
            tag: planned.tag.clone(),
            digest: None,
        };
        let source_creds = reference
            .registry
            .as_deref()
            .and_then(|h| self.source_credentials(&obj.key(), h));
        match copy_image(
            &self.registry,
            &reference,
            source_creds.as_ref(),
            &dest,
            Some(&creds),
            &self.copy,
        )
        .await
        {
            Ok(report) => {
                self.bytes_copied
                    .fetch_add(report.bytes_uploaded, Ordering::Relaxed);
                self.bytes_skipped
                    .fetch_add(report.bytes_skipped, Ordering::Relaxed);
                ImageState::Ready(format!("{host}/{}@{}", dest.repository, report.digest))
            }
            Err(e) => match e {
                crate::oci::copy::CopyError::Registry(r) => registry_state(&r),
                other => failed("CopyFailed", other.to_string()),
            },
        }
    }

    /// Builds the object's image into its own repository: nothing is built when the
    /// content tag is already there.
    async fn build(
        &self,
        obj: &CloudflareContainer,
        build: &BuildSpec,
        destination: &str,
    ) -> ImageState {
        let (source, inputs) = match self.build_inputs(build) {
            Ok(x) => x,
            Err(state) => return state,
        };
        // The plan's destination carries the content tag observe derived: the
        // context is not hashed again.
        let planned = match Reference::parse(destination) {
            Ok(r) => r,
            Err(e) => return failed("InvalidImage", e.to_string()),
        };
        let Some(tag) = planned.tag.clone() else {
            return failed(
                "InvalidImage",
                format!("the planned build destination {destination} has no tag"),
            );
        };
        let (host, account, creds) = match self.cloudflare_registry().await {
            Ok(x) => x,
            Err(e) => return api_state(&e),
        };
        // The account the credentials name; the object's repository below it.
        let repository = below_account(&planned.repository, &account);
        let flight = format!("{}|{tag}", obj.key());
        let running = crate::lock(&self.in_flight).contains(&flight);
        if !running && let Some(there) = self.pushed(&host, &repository, &tag, &creds).await {
            return there;
        }
        let Some(builder) = &self.builder else {
            return failed("NoBuilder", format!("spec.build: {}", self.no_builder));
        };
        // A builder that outlives this reconcile (a Job) gets credentials of its own,
        // minted to outlive its deadline; minted once, when the build starts.
        let build_creds = match builder.credentials_lifetime() {
            Some(lifetime) if !running => {
                let minutes = lifetime.as_secs().div_ceil(60).max(1) as i64;
                match self
                    .client
                    .registry_credentials(
                        CLOUDFLARE_REGISTRY,
                        &[RegistryPermission::Pull, RegistryPermission::Push],
                        minutes,
                    )
                    .await
                {
                    Ok(c) => Credentials {
                        username: c.username,
                        password: c.password,
                    },
                    Err(e) => return api_state(&e),
                }
            }
            _ => creds.clone(),
        };
        let request = BuildRequest {
            object: obj.key(),
            source,
            inputs,
            destination: Reference {
                registry: Some(host.clone()),
                repository: repository.clone(),
                tag: Some(tag.clone()),
                digest: None,
            },
            credentials: build_creds,
            owner: Some(Owner {
                name: obj.name().to_string(),
                namespace: obj.namespace_or_default().to_string(),
                uid: obj.metadata.uid.clone().unwrap_or_default(),
            }),
        };
        let outcome = builder.build(&request).await;
        {
            let mut in_flight = crate::lock(&self.in_flight);
            if matches!(outcome, BuildOutcome::InProgress(_)) {
                in_flight.insert(flight);
            } else {
                in_flight.remove(&flight);
            }
        }
        match outcome {
            BuildOutcome::Pushed => {
                match self
                    .registry
                    .head_manifest(&host, &repository, &tag, Some(&creds))
                    .await
                {
                    Ok(Some(m)) => ImageState::Ready(format!("{host}/{repository}@{}", m.digest)),
                    Ok(None) => failed(
                        "BuildFailed",
                        format!(
                            "the build reported success but {host}/{repository}:{tag} is missing"
                        ),
                    ),
                    Err(e) => registry_state(&e),
                }
            }
            BuildOutcome::InProgress(message) => pending("Building", message),
            BuildOutcome::Failed { message, log_tail } => failed(
                "BuildFailed",
                if log_tail.is_empty() {
                    message
                } else {
                    format!("{message}; last lines of the build log:\n{log_tail}")
                },
            ),
        }
    }
}

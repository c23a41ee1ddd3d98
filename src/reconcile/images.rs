//! Resolves a `CloudflareContainer`'s image to a digest reference in Cloudflare's
//! registry: short names are looked up there, other registries' images are copied in,
//! promotions take the digest another object deployed. Registry credentials are minted
//! through the API and reused while they stay valid for minutes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::model::ImageState;
use super::worker::inputs::{DataMap, SourceData};
use crate::build::job::Owner;
use crate::build::{
    BuildInputs, BuildOutcome, BuildRequest, BuildSource, Builder, content_tag, local_context_hash,
    resolve_git_commit, tarball_digest,
};
use crate::cloudflare::types::RegistryPermission;
use crate::cloudflare::{ApiError, CLOUDFLARE_REGISTRY, CloudflareClient};
use crate::oci::copy::{CopyOptions, copy_image, source_digest};
use crate::oci::{Credentials, Reference, RegistryClient, RegistryError};
use crate::spec::{BuildSpec, CloudflareContainer};

/// Minutes minted credentials are asked to last.
const CREDENTIAL_MINUTES: i64 = 15;
/// Credentials are renewed when fewer than this remain.
const CREDENTIAL_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Whether resolving may copy and build (apply) or only look (plan).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Apply,
    Preview,
}

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
    /// Resolutions of this round, by reference text.
    cache: Mutex<HashMap<String, ImageState>>,
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
    http: reqwest::Client,
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
            cache: Mutex::new(HashMap::new()),
            sources,
            pull: Default::default(),
            copy,
            bytes_copied: AtomicU64::new(0),
            bytes_skipped: AtomicU64::new(0),
            builder: None,
            no_builder: "no builder available (install buildah or docker buildx)".into(),
            local_contexts: false,
            in_flight: Default::default(),
            http: reqwest::Client::new(),
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
        self.cache.lock().await.clear();
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
        *minted = Some(m);
        Ok(out)
    }

    /// Resolves the object's image, copying or building it into Cloudflare's registry.
    pub async fn resolve(&self, obj: &CloudflareContainer, peers: &dyn Peers) -> ImageState {
        self.resolve_as(obj, peers, Mode::Apply).await
    }

    /// Resolves the digest the object would deploy without copying or building
    /// anything (for `plan`).
    pub async fn preview(&self, obj: &CloudflareContainer, peers: &dyn Peers) -> ImageState {
        self.resolve_as(obj, peers, Mode::Preview).await
    }

    async fn resolve_as(
        &self,
        obj: &CloudflareContainer,
        peers: &dyn Peers,
        mode: Mode,
    ) -> ImageState {
        let spec = &obj.spec;
        if let Some(build) = &spec.build {
            return self.resolve_build(obj, build, mode).await;
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
        let object = obj.key();
        let has_pull = crate::lock(&self.pull).contains_key(&object);
        // With an object's own pull credentials, its resolution is its own.
        let key = format!(
            "{text}|{}|{}",
            spec.tag.as_deref().unwrap_or(""),
            if has_pull { object.as_str() } else { "" }
        );
        if let Some(s) = self.cache.lock().await.get(&key) {
            return s.clone();
        }
        let state = self
            .resolve_reference(text, spec.tag.as_deref(), &object, mode)
            .await;
        // Failures worth retrying are not cached: the next object tries again; nor are
        // previews, which did not copy.
        if mode == Mode::Apply && !matches!(state, ImageState::Pending { .. }) {
            self.cache.lock().await.insert(key, state.clone());
        }
        state
    }

    /// A built image: nothing is built when the content tag is already in the registry.
    async fn resolve_build(
        &self,
        obj: &CloudflareContainer,
        build: &BuildSpec,
        mode: Mode,
    ) -> ImageState {
        let source = match BuildSource::parse(&build.context, self.local_contexts) {
            Ok(s) => s,
            Err(message) => {
                return failed(
                    "InvalidBuildContext",
                    format!("spec.build.context: {message}"),
                );
            }
        };
        let inputs = BuildInputs::from_spec(build);
        let identity = match &source {
            BuildSource::Local(dir) => {
                let dir = dir.clone();
                match tokio::task::spawn_blocking(move || local_context_hash(&dir)).await {
                    Ok(Ok(h)) => h,
                    Ok(Err(e)) => {
                        return failed("InvalidBuildContext", format!("spec.build.context: {e}"));
                    }
                    Err(e) => return pending("BuildSourceUnavailable", e.to_string()),
                }
            }
            BuildSource::Git {
                url,
                reference,
                subdir,
            } => match resolve_git_commit(&self.http, url, reference.as_deref()).await {
                Ok(commit) => format!("git:{commit}:{}", subdir.as_deref().unwrap_or("")),
                Err(e) => return pending("BuildSourceUnavailable", e),
            },
            BuildSource::Tarball(url) => match tarball_digest(&self.http, url).await {
                Ok(d) => format!("tar:{d}"),
                Err(e) => return pending("BuildSourceUnavailable", e),
            },
        };
        let tag = obj
            .spec
            .tag
            .clone()
            .unwrap_or_else(|| content_tag(&identity, &inputs));
        let (host, account, creds) = match self.cloudflare_registry().await {
            Ok(x) => x,
            Err(e) => return api_state(&e),
        };
        let repository = format!("{account}/{}", obj.application_name().to_lowercase());
        let head = |reference: String| {
            let repository = repository.clone();
            let host = host.clone();
            let creds = creds.clone();
            async move {
                self.registry
                    .head_manifest(&host, &repository, &reference, Some(&creds))
                    .await
            }
        };
        let flight = format!("{}|{tag}", obj.key());
        let running = crate::lock(&self.in_flight).contains(&flight);
        if !running {
            match head(tag.clone()).await {
                Ok(Some(m)) => {
                    return ImageState::Ready(format!("{host}/{repository}@{}", m.digest));
                }
                Ok(None) => {}
                Err(e) => return registry_state(&e),
            }
        }
        if mode == Mode::Preview {
            return pending(
                "WillBuild",
                format!("would build {host}/{repository}:{tag}"),
            );
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
            BuildOutcome::Pushed => match head(tag.clone()).await {
                Ok(Some(m)) => ImageState::Ready(format!("{host}/{repository}@{}", m.digest)),
                Ok(None) => failed(
                    "BuildFailed",
                    format!("the build reported success but {host}/{repository}:{tag} is missing"),
                ),
                Err(e) => registry_state(&e),
            },
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

    async fn resolve_reference(
        &self,
        text: &str,
        tag: Option<&str>,
        object: &str,
        mode: Mode,
    ) -> ImageState {
        let reference = match Reference::parse(text) {
            Ok(r) => r,
            Err(e) => return failed("InvalidImage", e.to_string()),
        };
        let (host, account, creds) = match self.cloudflare_registry().await {
            Ok(x) => x,
            Err(e) => return api_state(&e),
        };
        let cloudflare_host = reference.registry.is_none()
            || reference.registry.as_deref() == Some(host.as_str())
            || reference.registry.as_deref() == Some(CLOUDFLARE_REGISTRY);
        if cloudflare_host {
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
            return match self
                .registry
                .head_manifest(
                    &host,
                    &repository,
                    reference.manifest_reference(),
                    Some(&creds),
                )
                .await
            {
                Ok(Some(m)) => ImageState::Ready(format!("{host}/{repository}@{}", m.digest)),
                Ok(None) => pending(
                    "ImageNotFound",
                    format!(
                        "{host}/{repository}:{} is not in Cloudflare's registry",
                        reference.manifest_reference()
                    ),
                ),
                Err(e) => registry_state(&e),
            };
        }
        // Another registry: copy into Cloudflare's.
        let name = reference
            .repository
            .rsplit('/')
            .next()
            .unwrap_or(&reference.repository);
        let dest_tag = tag
            .map(str::to_string)
            .or_else(|| reference.tag.clone())
            .unwrap_or_else(|| match &reference.digest {
                Some(d) => d.trim_start_matches("sha256:").chars().take(20).collect(),
                None => "latest".into(),
            });
        let dest = Reference {
            registry: Some(host.clone()),
            repository: format!("{account}/{name}"),
            tag: Some(dest_tag),
            digest: None,
        };
        let source_creds = reference
            .registry
            .as_deref()
            .and_then(|h| self.source_credentials(object, h));
        if mode == Mode::Preview {
            return match source_digest(
                &self.registry,
                &reference,
                source_creds.as_ref(),
                &self.copy,
            )
            .await
            {
                Ok(digest) => ImageState::Ready(format!("{host}/{}@{digest}", dest.repository)),
                Err(crate::oci::copy::CopyError::Registry(r)) => registry_state(&r),
                Err(other) => failed("CopyFailed", other.to_string()),
            };
        }
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
}

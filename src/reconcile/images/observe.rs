//! What it takes to get an object's image into Cloudflare's registry, found by
//! reading only: the source registry, and Cloudflare's registry with credentials
//! already held. Nothing here copies, builds, pushes or mints credentials.

use super::*;

impl ImageResolver {
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
            return failed(Reason::NoImage, "spec.image or spec.build is required");
        };
        if let Some(peer) = &image.from_container {
            return match peers.deployed_image(obj.namespace_or_default(), peer) {
                Some(i) => ImageState::Ready(i),
                None => pending(
                    Reason::PromotionSourceNotReady,
                    format!(
                        "CloudflareContainer {peer} has not deployed an image yet (it must be Ready)"
                    ),
                ),
            };
        }
        let Some(text) = &image.reference else {
            return failed(
                Reason::NoImage,
                "spec.image.reference or spec.image.fromContainer is required",
            );
        };
        let reference = match Reference::parse(text) {
            Ok(r) => r,
            Err(e) => return failed(Reason::InvalidImage, e.to_string()),
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
                    Err(other) => Err(failed(Reason::CopyFailed, other.to_string())),
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
                        Reason::ForeignAccount,
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
                        Reason::InvalidBuildContext,
                        format!("spec.build.context: {e}"),
                    ));
                }
                Err(e) => return Err(pending(Reason::BuildSourceUnavailable, e.to_string())),
            };
        let tag = obj
            .spec
            .tag
            .clone()
            .unwrap_or_else(|| content_tag(&identity, &inputs));
        Ok(tag)
    }
}

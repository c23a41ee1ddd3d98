//! Getting an image into Cloudflare's registry, as a plan's [`ImageAction`] says:
//! minting the credentials it needs, then copying, building or reading. Only act
//! calls this, behind every gate.

use super::*;

impl ImageResolver {
    /// Does what a plan's [`ImageAction`] says: mints the credentials it needs, then
    /// copies, builds or reads. Only act calls this, behind every gate.
    pub async fn acquire(&self, obj: &CloudflareContainer, action: &ImageAction) -> ImageState {
        if !self.client.writes_allowed() {
            return pending(
                Reason::NotLeader,
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
                    Err(e) => return failed(Reason::InvalidImage, e.to_string()),
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
                None => failed(Reason::NoImage, "spec.build is required to build"),
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
            Err(e) => return failed(Reason::InvalidImage, e.to_string()),
        };
        let planned = match Reference::parse(destination) {
            Ok(r) => r,
            Err(e) => return failed(Reason::InvalidImage, e.to_string()),
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
                other => failed(Reason::CopyFailed, other.to_string()),
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
            Err(e) => return failed(Reason::InvalidImage, e.to_string()),
        };
        let Some(tag) = planned.tag.clone() else {
            return failed(
                Reason::InvalidImage,
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
            return failed(
                Reason::NoBuilder,
                format!("spec.build: {}", self.no_builder),
            );
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
                        Reason::BuildFailed,
                        format!(
                            "the build reported success but {host}/{repository}:{tag} is missing"
                        ),
                    ),
                    Err(e) => registry_state(&e),
                }
            }
            BuildOutcome::InProgress(message) => pending(Reason::Building, message),
            BuildOutcome::Failed { message, log_tail } => failed(
                Reason::BuildFailed,
                if log_tail.is_empty() {
                    message
                } else {
                    format!("{message}; last lines of the build log:\n{log_tail}")
                },
            ),
        }
    }
}

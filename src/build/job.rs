//! In-cluster builds (`flaredock run --enable-builds`): one `batch/v1` Job per (object,
//! content tag) in the operator's build namespace (`--build-namespace`, default
//! `flaredock-builds`), never in a tenant's: that namespace's Pod Security level and
//! default-deny NetworkPolicy (DNS and HTTPS out, nothing in) come with
//! `deploy/optional/builds`. The Job and its Secret are built by pure functions
//! ([`build_job`], [`build_secret`]), pinned by `tests/golden/`.
//!
//! # The pod: three steps, and the credentials only in the last
//!
//! A tenant's Dockerfile runs arbitrary `RUN` steps; rootless BuildKit without a
//! process sandbox runs them as the same user, in the same PID namespace, as
//! `buildkitd`, so they can read whatever that container can. The push credentials
//! (minted per build, valid for the whole account's registry) therefore never enter
//! that container. The steps run one after the other, as init containers, sharing
//! `emptyDir` volumes only:
//!
//! 1. `fetch-context` (no tenant code, no credentials, `RuntimeDefault` seccomp, no
//!    privilege escalation, all capabilities dropped, read-only root): fetches the
//!    context into the `context` volume under the rules of [`super::fetch`] — https
//!    only, no redirect to another host, a size cap and a time cap. A tarball is
//!    fetched by the flaredock image itself (`flaredock build fetch-context`, which
//!    also checks a declared `#sha256=`); a git context by `git` in the BuildKit image
//!    (the flaredock image is distroless and has none), configured by
//!    [`super::fetch::git_environment`] (https only, redirects off, stall timeout),
//!    under `timeout`, a file-size limit (`ulimit -f`, which caps the one pack file of
//!    a `--depth 1` fetch) and a size check; a pinned commit is verified. The volume's
//!    `sizeLimit` backs the caps. The controller fetches nothing:
//!    the tag comes from [`super::BuildSource::identity`].
//! 2. `build` (tenant code): `buildctl-daemonless.sh` builds the local `context`
//!    directory and writes the image as an OCI layout into the `out` volume
//!    (`--output type=oci,tar=false`). It has no Secret volume, no credential in its
//!    environment, no service-account token, and pushes nothing. No registry cache
//!    either: a cache in Cloudflare's registry needs credentials in this container
//!    (pull credentials alone would read every tenant's images).
//! 3. `push` (no tenant code): the flaredock image's `image copy oci:/workspace/out/image
//!    <destination>` pushes the layout, reading it as untrusted input (digests checked,
//!    sizes capped; `crate::oci::layout`), with the credentials from the build's
//!    Secret in its environment (`FLAREDOCK_DEST_CREDS`). It starts after `build`
//!    has exited: no process of the build is left to read them.
//!
//! # Relaxations, compared with BuildKit's `examples/kubernetes/job.rootless.yaml`
//!
//! Only the `build` container has them, each because rootless BuildKit needs it:
//! seccomp and AppArmor `Unconfined` (it creates user namespaces and mounts), privilege
//! escalation allowed (`newuidmap`/`newgidmap` are setuid: with
//! `allowPrivilegeEscalation: false` the user namespace cannot be set up), UID/GID 1000
//! (the image's user), and `--oci-worker-no-process-sandbox` (no PID namespace of its
//! own, which an unprivileged pod cannot create) — the reason the credentials are kept
//! out of that container rather than merely out of its argv. The pod itself is
//! `RuntimeDefault`. Added to the example: the two other containers, no service
//! account token, amd64 nodes (Cloudflare runs `linux/amd64` images), requests and
//! limits, `emptyDir` size limits, a deadline and a TTL.
//!
//! # Writes
//!
//! Each build's push credentials are minted to outlive the Job's deadline, in a Secret
//! next to the Job, deleted on every terminal path (pushed, failed, past its deadline,
//! not creatable). Every create and delete of a Job or Secret first asks the builder's
//! write gate ([`JobBuilder::write_gate`]): a replica that is not the leader creates
//! and deletes nothing.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use super::fetch::FetchLimits;
use super::{BuildOutcome, BuildRequest, BuildSource, Builder, log_tail};
use crate::cloudflare::client::WriteGate;

/// The namespace of build Jobs unless `--build-namespace` says otherwise.
pub const DEFAULT_BUILD_NAMESPACE: &str = "flaredock-builds";

/// Push credentials outlive a Job's deadline by this much.
pub const CREDENTIALS_MARGIN: std::time::Duration = std::time::Duration::from_secs(600);

/// The pinned rootless BuildKit image (override with `--builder-image`).
pub const DEFAULT_BUILDKIT_IMAGE: &str = "moby/buildkit:v0.23.2-rootless";

/// The flaredock image that fetches tarball contexts and pushes (this release's).
pub const DEFAULT_TOOLS_IMAGE: &str =
    concat!("ghcr.io/flaredock/flaredock:", env!("CARGO_PKG_VERSION"));

/// The key of the build Secret holding `USER:PASSWORD` for the destination registry.
pub const CREDENTIALS_KEY: &str = "dest-creds";

/// Where the pod's volumes are mounted.
const CONTEXT_DIR: &str = "/workspace/context";
const OUT_DIR: &str = "/workspace/out";

/// The CloudflareContainer a build belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

/// How build Jobs are made.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSettings {
    /// In-cluster builds run at all (`--enable-builds`).
    pub enabled: bool,
    /// Where the Jobs and their Secrets live (`--build-namespace`).
    pub namespace: String,
    /// Rootless BuildKit (`build`; `git` of `fetch-context` for git contexts).
    pub image: String,
    /// The flaredock image (`fetch-context` for tarballs, `push`).
    pub tools_image: String,
    pub active_deadline_seconds: i64,
    pub ttl_seconds_after_finished: i32,
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: String,
    pub memory_limit: String,
    /// Caps of fetching the context (download, unpacked size, time).
    pub context_limits: FetchLimits,
    /// `sizeLimit` of the volume the built image is written to.
    pub output_size_limit: String,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            enabled: false,
            namespace: DEFAULT_BUILD_NAMESPACE.into(),
            image: DEFAULT_BUILDKIT_IMAGE.into(),
            tools_image: DEFAULT_TOOLS_IMAGE.into(),
            active_deadline_seconds: 1800,
            ttl_seconds_after_finished: 600,
            cpu_request: "500m".into(),
            memory_request: "1Gi".into(),
            cpu_limit: "2".into(),
            memory_limit: "4Gi".into(),
            context_limits: FetchLimits::default(),
            output_size_limit: "8Gi".into(),
        }
    }
}

/// Label on build Jobs and Secrets naming the object.
pub const BUILD_LABEL: &str = "flaredock.dev/build-for";
/// Label on build Jobs and Secrets naming the object's namespace.
pub const BUILD_NAMESPACE_LABEL: &str = "flaredock.dev/build-for-namespace";

/// `flaredock-build-<name>-<hash of namespace, name and tag>`, at most 63 characters
/// (unique across the tenants sharing the build namespace).
pub fn job_name(owner: &Owner, tag: &str) -> String {
    let h = hex::encode(Sha256::digest(
        format!("{}/{}/{tag}", owner.namespace, owner.name).as_bytes(),
    ));
    let mut base: String = format!("flaredock-build-{}", owner.name);
    base.truncate(63 - 11);
    format!("{}-{}", base.trim_end_matches('-'), &h[..10])
}

/// Metadata of a build's Job and Secret in the build namespace: labels name the
/// object (an owner reference cannot cross namespaces).
fn meta(owner: &Owner, namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".to_string(),
                "flaredock".to_string(),
            ),
            (BUILD_LABEL.to_string(), owner.name.clone()),
            (BUILD_NAMESPACE_LABEL.to_string(), owner.namespace.clone()),
        ])),
        annotations: Some(BTreeMap::from([(
            "flaredock.dev/build-for-uid".to_string(),
            owner.uid.clone(),
        )])),
        ..Default::default()
    }
}

/// The push-credentials Secret of a build: `USER:PASSWORD` under [`CREDENTIALS_KEY`],
/// read by the `push` container only.
pub fn build_secret(owner: &Owner, namespace: &str, name: &str, request: &BuildRequest) -> Secret {
    let value = format!(
        "{}:{}",
        request.credentials.username,
        request.credentials.password.expose()
    );
    Secret {
        metadata: meta(owner, namespace, name),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            CREDENTIALS_KEY.to_string(),
            ByteString(value.into_bytes()),
        )])),
        ..Default::default()
    }
}

/// The shell script of `fetch-context` for a git context (the BuildKit image's `sh`,
/// `git` and `timeout`). Everything variable comes from the environment, quoted: no
/// tenant text is ever part of the script.
const GIT_FETCH_SCRIPT: &str = r#"set -eu
ulimit -f "$FLAREDOCK_MAX_BLOCKS"
mkdir -p "$HOME" "$FLAREDOCK_SRC"
cd "$FLAREDOCK_SRC"
git init -q .
timeout "$FLAREDOCK_TIMEOUT" git fetch -q --depth 1 --no-tags -- "$FLAREDOCK_GIT_URL" "$FLAREDOCK_GIT_REF"
if [ -n "$FLAREDOCK_GIT_COMMIT" ] && [ "$(git rev-parse FETCH_HEAD)" != "$FLAREDOCK_GIT_COMMIT" ]; then
  echo "error: fetched $(git rev-parse FETCH_HEAD), not $FLAREDOCK_GIT_COMMIT" >&2; exit 1
fi
git checkout -q FETCH_HEAD
rm -rf .git
used=$(du -sk . | cut -f1)
if [ "$used" -gt "$FLAREDOCK_MAX_KIB" ]; then
  echo "error: the context is $used KiB, over the cap of $FLAREDOCK_MAX_KIB KiB" >&2; exit 1
fi
echo "fetched $FLAREDOCK_GIT_URL $FLAREDOCK_GIT_REF: $used KiB"
"#;

fn env(name: &str, value: impl Into<String>) -> serde_json::Value {
    serde_json::json!({"name": name, "value": value.into()})
}

/// The securityContext of a container that runs no tenant code.
fn locked_down() -> serde_json::Value {
    serde_json::json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// The `fetch-context` init container, and the directory of the context it leaves.
fn fetch_container(
    source: &BuildSource,
    settings: &JobSettings,
) -> Result<(serde_json::Value, String), String> {
    let limits = &settings.context_limits;
    let src = format!("{CONTEXT_DIR}/src");
    let mounts = serde_json::json!([{"name": "context", "mountPath": CONTEXT_DIR}]);
    let resources = serde_json::json!({
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    });
    match source {
        BuildSource::Local(dir) => Err(format!(
            "{}: a local directory cannot be built in the cluster; use a git URL or an HTTPS tarball",
            dir.display()
        )),
        BuildSource::Tarball(text) => {
            let (url, sha256) = BuildSource::tarball_parts(text);
            super::check_remote_url(url)?;
            let mut args = vec![
                "build".to_string(),
                "fetch-context".into(),
                "--into".into(),
                src.clone(),
                "--max-bytes".into(),
                limits.max_bytes.to_string(),
                "--max-unpacked-bytes".into(),
                limits.max_unpacked_bytes.to_string(),
                "--timeout-seconds".into(),
                limits.timeout.as_secs().to_string(),
            ];
            if let Some(hex) = sha256 {
                args.extend(["--sha256".into(), hex.to_string()]);
            }
            args.push(url.to_string());
            let container = serde_json::json!({
                "name": "fetch-context",
                "image": settings.tools_image,
                "command": ["/usr/local/bin/flaredock"],
                "args": args,
                "securityContext": locked_down(),
                "resources": resources,
                "volumeMounts": mounts,
            });
            Ok((container, src))
        }
        BuildSource::Git {
            url,
            reference,
            subdir,
        } => {
            super::check_remote_url(url)?;
            let commit = reference
                .as_deref()
                .filter(|r| super::is_commit(r))
                .unwrap_or("");
            let mut environment = vec![
                env("HOME", format!("{CONTEXT_DIR}/home")),
                env("FLAREDOCK_SRC", src.clone()),
                env("FLAREDOCK_GIT_URL", url.clone()),
                env("FLAREDOCK_GIT_REF", reference.as_deref().unwrap_or("HEAD")),
                env("FLAREDOCK_GIT_COMMIT", commit),
                env("FLAREDOCK_TIMEOUT", limits.timeout.as_secs().to_string()),
                // `ulimit -f` counts 512-byte blocks.
                env(
                    "FLAREDOCK_MAX_BLOCKS",
                    limits.max_bytes.div_ceil(512).to_string(),
                ),
                env(
                    "FLAREDOCK_MAX_KIB",
                    limits.max_unpacked_bytes.div_ceil(1024).to_string(),
                ),
            ];
            environment.extend(
                super::fetch::git_environment()
                    .into_iter()
                    .map(|(k, v)| env(&k, v)),
            );
            let container = serde_json::json!({
                "name": "fetch-context",
                "image": settings.image,
                "command": ["/bin/sh", "-c", GIT_FETCH_SCRIPT],
                "env": environment,
                "securityContext": locked_down(),
                "resources": resources,
                "volumeMounts": mounts,
            });
            let dir = match subdir {
                Some(s) => format!("{src}/{s}"),
                None => src,
            };
            Ok((container, dir))
        }
    }
}

/// The build Job: `fetch-context` and `build` as init containers, `push` last
/// (see the module's documentation). `secret` names the push-credentials Secret.
pub fn build_job(
    owner: &Owner,
    name: &str,
    secret: &str,
    request: &BuildRequest,
    settings: &JobSettings,
) -> Result<Job, String> {
    let (fetch, context_dir) = fetch_container(&request.source, settings)?;
    let destination = request.destination.to_string();
    let image_dir = format!("{OUT_DIR}/image");
    let mut args: Vec<String> = vec![
        "build".into(),
        "--frontend".into(),
        "dockerfile.v0".into(),
        "--local".into(),
        format!("context={context_dir}"),
        "--local".into(),
        format!("dockerfile={context_dir}"),
        "--opt".into(),
        format!("filename={}", request.inputs.dockerfile),
        "--opt".into(),
        format!("platform={}", request.inputs.platform),
    ];
    if let Some(t) = &request.inputs.target {
        args.extend(["--opt".into(), format!("target={t}")]);
    }
    for (k, v) in &request.inputs.args {
        args.extend(["--opt".into(), format!("build-arg:{k}={v}")]);
    }
    args.extend([
        "--output".into(),
        format!("type=oci,dest={image_dir},tar=false"),
    ]);
    let limits = &settings.context_limits;
    let context_size = limits.max_bytes + limits.max_unpacked_bytes;
    let resources = serde_json::json!({
        "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
        "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
    });
    let job = serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(owner, &settings.namespace, name),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.active_deadline_seconds,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": {BUILD_LABEL: owner.name, BUILD_NAMESPACE_LABEL: owner.namespace, "app.kubernetes.io/managed-by": "flaredock"}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    // Cloudflare runs linux/amd64 images: built natively, no emulation.
                    "nodeSelector": {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"},
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 1000,
                        "runAsGroup": 1000,
                        "fsGroup": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": [
                        fetch,
                        {
                            "name": "build",
                            "image": settings.image,
                            "command": ["buildctl-daemonless.sh"],
                            "args": args,
                            "env": [
                                // No PID namespace of its own (see the module's
                                // documentation): nothing secret is in this container.
                                env("BUILDKITD_FLAGS", "--oci-worker-no-process-sandbox"),
                            ],
                            "securityContext": {
                                // newuidmap/newgidmap are setuid: rootless BuildKit cannot
                                // set up its user namespace without privilege escalation.
                                "allowPrivilegeEscalation": true,
                                "seccompProfile": {"type": "Unconfined"},
                                "appArmorProfile": {"type": "Unconfined"},
                            },
                            "resources": resources,
                            "volumeMounts": [
                                {"name": "context", "mountPath": CONTEXT_DIR, "readOnly": true},
                                {"name": "out", "mountPath": OUT_DIR},
                                {"name": "buildkitd", "mountPath": "/home/user/.local/share/buildkit"},
                            ],
                        },
                    ],
                    "containers": [{
                        "name": "push",
                        "image": settings.tools_image,
                        "command": ["/usr/local/bin/flaredock"],
                        "args": ["image", "copy", format!("oci:{image_dir}"), destination],
                        "env": [{
                            "name": "FLAREDOCK_DEST_CREDS",
                            "valueFrom": {"secretKeyRef": {"name": secret, "key": CREDENTIALS_KEY}},
                        }],
                        "securityContext": locked_down(),
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "64Mi"},
                            "limits": {"cpu": "1", "memory": "256Mi"},
                        },
                        "volumeMounts": [
                            {"name": "out", "mountPath": OUT_DIR, "readOnly": true},
                        ],
                    }],
                    "volumes": [
                        {"name": "context", "emptyDir": {"sizeLimit": context_size.to_string()}},
                        {"name": "out", "emptyDir": {"sizeLimit": settings.output_size_limit}},
                        {"name": "buildkitd", "emptyDir": {}},
                    ],
                },
            },
        },
    });
    serde_json::from_value(job).map_err(|e| format!("cannot build the Job: {e}"))
}

/// Builds in the cluster with Jobs; one per (object, tag), found again by name.
pub struct JobBuilder {
    pub client: Client,
    pub settings: JobSettings,
    /// Asked before each create and delete (the controller's leadership); `None`
    /// writes unconditionally (a single replica without leader election).
    pub write_gate: Option<WriteGate>,
}

/// The message of a write the gate held.
fn not_leader(what: &str) -> String {
    format!("not the leader: {what} waits for the replica that is")
}

impl JobBuilder {
    pub fn new(client: Client, settings: JobSettings) -> JobBuilder {
        JobBuilder {
            client,
            settings,
            write_gate: None,
        }
    }

    /// Creates and deletes only while `gate` says so.
    pub fn with_write_gate(mut self, gate: WriteGate) -> JobBuilder {
        self.write_gate = Some(gate);
        self
    }

    fn may_write(&self) -> bool {
        self.write_gate
            .as_ref()
            .is_none_or(|g| g.fence(std::time::Duration::from_secs(30)).is_some())
    }

    async fn run(&self, request: &BuildRequest) -> BuildOutcome {
        if !self.settings.enabled {
            return BuildOutcome::Failed {
                message: "in-cluster builds are off: start `flaredock run` with --enable-builds (and install deploy/optional/builds), or build elsewhere and set spec.image".into(),
                log_tail: String::new(),
            };
        }
        let Some(owner) = &request.owner else {
            return BuildOutcome::Failed {
                message: "in-cluster builds need the owning object".into(),
                log_tail: String::new(),
            };
        };
        let ns = &self.settings.namespace;
        let tag = request.destination.tag.clone().unwrap_or_default();
        let name = job_name(owner, &tag);
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let job = match jobs.get_opt(&name).await {
            Ok(j) => j,
            Err(e) => {
                return BuildOutcome::InProgress(format!("cannot read build Job {ns}/{name}: {e}"));
            }
        };
        let Some(job) = job else {
            return self.start(owner, &name, request, &jobs, &secrets).await;
        };
        let status = job.status.unwrap_or_default();
        let finished_ok = status.succeeded.unwrap_or(0) > 0;
        let deadline = status.conditions.iter().flatten().any(|c| {
            c.type_ == "Failed"
                && c.status == "True"
                && c.reason.as_deref() == Some("DeadlineExceeded")
        });
        let finished_bad = status.failed.unwrap_or(0) > 0
            || status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Failed" && c.status == "True");
        if !finished_ok && !finished_bad {
            return BuildOutcome::InProgress(format!("build Job {ns}/{name} is running"));
        }
        // The build ended, however: its push credentials go.
        self.delete_secret(&secrets, &name).await;
        if finished_ok {
            return BuildOutcome::Pushed;
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let selector = format!("job-name={name}");
        let mut log = String::new();
        if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await
            && let Some(pod) = list.items.first()
            && let Some(pod_name) = &pod.metadata.name
            && let Ok(text) = pods
                .logs(
                    pod_name,
                    &LogParams {
                        tail_lines: Some(20),
                        ..Default::default()
                    },
                )
                .await
        {
            log = text;
        }
        let why = if deadline {
            format!(
                "build Job {ns}/{name} passed its deadline ({} s)",
                self.settings.active_deadline_seconds
            )
        } else {
            format!("build Job {ns}/{name} failed")
        };
        BuildOutcome::Failed {
            message: why,
            log_tail: log_tail(&log, 20, 4000),
        }
    }

    /// Creates the build's Secret (replacing a leftover of an earlier attempt, whose
    /// credentials may have expired) and its Job. A Job the API server refuses (quota,
    /// admission) fails the build at once, and its Secret goes.
    async fn start(
        &self,
        owner: &Owner,
        name: &str,
        request: &BuildRequest,
        jobs: &Api<Job>,
        secrets: &Api<Secret>,
    ) -> BuildOutcome {
        let ns = &self.settings.namespace;
        let job = match build_job(owner, name, name, request, &self.settings) {
            Ok(j) => j,
            Err(message) => {
                return BuildOutcome::Failed {
                    message,
                    log_tail: String::new(),
                };
            }
        };
        let secret = build_secret(owner, ns, name, request);
        if !self.may_write() {
            return BuildOutcome::InProgress(not_leader(&format!("build Job {ns}/{name}")));
        }
        let mut created = secrets.create(&PostParams::default(), &secret).await;
        if matches!(&created, Err(kube::Error::Api(s)) if s.code == 409) {
            self.delete_secret(secrets, name).await;
            if !self.may_write() {
                return BuildOutcome::InProgress(not_leader(&format!("build Job {ns}/{name}")));
            }
            created = secrets.create(&PostParams::default(), &secret).await;
        }
        if let Err(e) = created {
            return BuildOutcome::InProgress(format!(
                "cannot create the build Secret {ns}/{name}: {e}"
            ));
        }
        if !self.may_write() {
            // The Secret stays until a leader finds the Job missing and replaces it.
            return BuildOutcome::InProgress(not_leader(&format!("build Job {ns}/{name}")));
        }
        match jobs.create(&PostParams::default(), &job).await {
            Ok(_) => BuildOutcome::InProgress(format!("build Job {ns}/{name} started")),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                BuildOutcome::InProgress(format!("build Job {ns}/{name} started"))
            }
            Err(kube::Error::Api(e)) if (400..500).contains(&e.code) => {
                self.delete_secret(secrets, name).await;
                BuildOutcome::Failed {
                    message: format!(
                        "the build Job {ns}/{name} cannot be created ({}): {}",
                        e.reason, e.message
                    ),
                    log_tail: String::new(),
                }
            }
            Err(e) => {
                self.delete_secret(secrets, name).await;
                BuildOutcome::InProgress(format!("cannot create build Job {ns}/{name}: {e}"))
            }
        }
    }
}

impl JobBuilder {
    /// Deletes a build's push-credentials Secret (gone already is fine); held by the
    /// write gate like every write (the leader deletes it when it looks again).
    async fn delete_secret(&self, secrets: &Api<Secret>, name: &str) {
        if !self.may_write() {
            tracing::debug!(
                secret = name,
                "not the leader: a build's Secret stays for the leader to delete"
            );
            return;
        }
        match secrets.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                tracing::warn!(secret = name, error = %e, "cannot delete a build's push credentials")
            }
        }
    }
}

impl Builder for JobBuilder {
    fn build<'a>(&'a self, request: &'a BuildRequest) -> BoxFuture<'a, BuildOutcome> {
        Box::pin(self.run(request))
    }

    /// The Job's deadline and a margin: the credentials never expire mid-push.
    fn credentials_lifetime(&self) -> Option<std::time::Duration> {
        let deadline =
            std::time::Duration::from_secs(self.settings.active_deadline_seconds.max(0) as u64);
        Some(deadline + CREDENTIALS_MARGIN)
    }
}

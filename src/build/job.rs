//! In-cluster builds (`flaredock run --enable-builds`): a `batch/v1` Job running
//! rootless BuildKit (`buildctl-daemonless.sh`) that builds the git or tarball context
//! and pushes straight to Cloudflare's registry. Jobs run in the operator's build
//! namespace (`--build-namespace`, default `flaredock-builds`), never in a tenant's:
//! that namespace's Pod Security level and default-deny NetworkPolicy (DNS and HTTPS
//! out, nothing in) come with `deploy/optional/builds`. Each build gets push
//! credentials of its own, minted to outlive the Job's deadline, in a
//! `kubernetes.io/dockerconfigjson` Secret next to the Job that is deleted on every
//! terminal path (pushed, failed, past its deadline, not creatable). The Job and the
//! Secret are built by pure functions.
//!
//! Compared with BuildKit's own `examples/kubernetes/job.rootless.yaml`, the Job keeps
//! each relaxation that rootless BuildKit needs and no other: seccomp and AppArmor
//! `Unconfined` (it creates user namespaces and mounts), privilege escalation allowed
//! (`newuidmap`/`newgidmap` are setuid: with `allowPrivilegeEscalation: false` the
//! user namespace cannot be set up), UID/GID 1000 (the image's user), and
//! `--oci-worker-no-process-sandbox` (no PID namespace needed). It adds: no service
//! account token, amd64 nodes (Cloudflare runs `linux/amd64` images), resource
//! requests and limits, a deadline and a TTL.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use super::{BuildOutcome, BuildRequest, BuildSource, Builder, log_tail};

/// The namespace of build Jobs unless `--build-namespace` says otherwise.
pub const DEFAULT_BUILD_NAMESPACE: &str = "flaredock-builds";

/// Push credentials outlive a Job's deadline by this much.
pub const CREDENTIALS_MARGIN: std::time::Duration = std::time::Duration::from_secs(600);

/// The pinned rootless BuildKit image (override with `--builder-image`).
pub const DEFAULT_BUILDKIT_IMAGE: &str = "moby/buildkit:v0.23.2-rootless";

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
    pub image: String,
    pub active_deadline_seconds: i64,
    pub ttl_seconds_after_finished: i32,
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: String,
    pub memory_limit: String,
    /// Use a `:buildcache` tag in Cloudflare's registry as BuildKit's cache.
    pub registry_cache: bool,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            enabled: false,
            namespace: DEFAULT_BUILD_NAMESPACE.into(),
            image: DEFAULT_BUILDKIT_IMAGE.into(),
            active_deadline_seconds: 1800,
            ttl_seconds_after_finished: 600,
            cpu_request: "500m".into(),
            memory_request: "1Gi".into(),
            cpu_limit: "2".into(),
            memory_limit: "4Gi".into(),
            registry_cache: true,
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

/// The push-credentials Secret of a build (`kubernetes.io/dockerconfigjson`).
pub fn build_secret(owner: &Owner, namespace: &str, name: &str, request: &BuildRequest) -> Secret {
    let host = request.destination.registry.clone().unwrap_or_default();
    let config = super::docker_config_json(&host, &request.credentials);
    Secret {
        metadata: meta(owner, namespace, name),
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(config.into_bytes()),
        )])),
        ..Default::default()
    }
}

/// The BuildKit context option for a source (`context=…`): remote contexts only.
fn context_option(source: &BuildSource) -> Result<String, String> {
    match source {
        BuildSource::Local(dir) => Err(format!(
            "{}: a local directory cannot be built in the cluster; use a git URL or an HTTPS tarball",
            dir.display()
        )),
        remote => Ok(remote.context_argument()),
    }
}

/// The build Job.
pub fn build_job(
    owner: &Owner,
    name: &str,
    secret: &str,
    request: &BuildRequest,
    settings: &JobSettings,
) -> Result<Job, String> {
    let context = context_option(&request.source)?;
    let destination = request.destination.to_string();
    let mut args: Vec<String> = vec![
        "build".into(),
        "--frontend".into(),
        "dockerfile.v0".into(),
        "--opt".into(),
        format!("context={context}"),
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
        format!("type=image,name={destination},push=true"),
    ]);
    if settings.registry_cache {
        let cache = format!(
            "{}/{}:buildcache",
            request.destination.registry.as_deref().unwrap_or_default(),
            request.destination.repository
        );
        args.extend([
            "--import-cache".into(),
            format!("type=registry,ref={cache}"),
            "--export-cache".into(),
            format!("type=registry,ref={cache},mode=max"),
        ]);
    }
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
                    // Cloudflare runs linux/amd64 images: built natively, no emulation.
                    "nodeSelector": {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"},
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 1000,
                        "runAsGroup": 1000,
                        "fsGroup": 1000,
                        "seccompProfile": {"type": "Unconfined"},
                        "appArmorProfile": {"type": "Unconfined"},
                    },
                    "containers": [{
                        "name": "buildkit",
                        "image": settings.image,
                        "command": ["buildctl-daemonless.sh"],
                        "args": args,
                        "env": [
                            {"name": "BUILDKITD_FLAGS", "value": "--oci-worker-no-process-sandbox"},
                            {"name": "DOCKER_CONFIG", "value": "/home/user/.docker"},
                        ],
                        "securityContext": {
                            // newuidmap/newgidmap are setuid: rootless BuildKit cannot set
                            // up its user namespace without privilege escalation.
                            "allowPrivilegeEscalation": true,
                            "seccompProfile": {"type": "Unconfined"},
                            "appArmorProfile": {"type": "Unconfined"},
                        },
                        "resources": {
                            "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
                            "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
                        },
                        "volumeMounts": [
                            {"name": "registry-auth", "mountPath": "/home/user/.docker", "readOnly": true},
                            {"name": "buildkitd", "mountPath": "/home/user/.local/share/buildkit"},
                        ],
                    }],
                    "volumes": [
                        {"name": "registry-auth", "secret": {"secretName": secret, "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}},
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
}

impl JobBuilder {
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
        delete_secret(&secrets, &name).await;
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
        let mut created = secrets.create(&PostParams::default(), &secret).await;
        if matches!(&created, Err(kube::Error::Api(s)) if s.code == 409) {
            delete_secret(secrets, name).await;
            created = secrets.create(&PostParams::default(), &secret).await;
        }
        if let Err(e) = created {
            return BuildOutcome::InProgress(format!(
                "cannot create the build Secret {ns}/{name}: {e}"
            ));
        }
        match jobs.create(&PostParams::default(), &job).await {
            Ok(_) => BuildOutcome::InProgress(format!("build Job {ns}/{name} started")),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                BuildOutcome::InProgress(format!("build Job {ns}/{name} started"))
            }
            Err(kube::Error::Api(e)) if (400..500).contains(&e.code) => {
                delete_secret(secrets, name).await;
                BuildOutcome::Failed {
                    message: format!(
                        "the build Job {ns}/{name} cannot be created ({}): {}",
                        e.reason, e.message
                    ),
                    log_tail: String::new(),
                }
            }
            Err(e) => {
                delete_secret(secrets, name).await;
                BuildOutcome::InProgress(format!("cannot create build Job {ns}/{name}: {e}"))
            }
        }
    }
}

/// Deletes a build's push-credentials Secret (gone already is fine).
async fn delete_secret(secrets: &Api<Secret>, name: &str) {
    match secrets.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => {
            tracing::warn!(secret = name, error = %e, "cannot delete a build's push credentials")
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

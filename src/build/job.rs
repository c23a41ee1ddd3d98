//! In-cluster builds: a `batch/v1` Job running rootless BuildKit
//! (`buildctl-daemonless.sh`) that builds the git or tarball context and pushes straight
//! to Cloudflare's registry with push credentials minted for that build, held in a
//! `kubernetes.io/dockerconfigjson` Secret owned by the CloudflareContainer and removed
//! when the build ends. The Job and the Secret are built by pure functions.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use super::{BuildOutcome, BuildRequest, BuildSource, Builder, log_tail};

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

/// `flaredock-build-<name>-<hash of tag>`, at most 63 characters.
pub fn job_name(owner: &Owner, tag: &str) -> String {
    let h = hex::encode(Sha256::digest(tag.as_bytes()));
    let mut base: String = format!("flaredock-build-{}", owner.name);
    base.truncate(63 - 11);
    format!("{}-{}", base.trim_end_matches('-'), &h[..10])
}

fn meta(owner: &Owner, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(owner.namespace.clone()),
        labels: Some(BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".to_string(),
                "flaredock".to_string(),
            ),
            (BUILD_LABEL.to_string(), owner.name.clone()),
        ])),
        owner_references: Some(vec![OwnerReference {
            api_version: "flaredock.dev/v1alpha1".into(),
            kind: "CloudflareContainer".into(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..Default::default()
    }
}

/// The push-credentials Secret of a build (`kubernetes.io/dockerconfigjson`).
pub fn build_secret(owner: &Owner, name: &str, request: &BuildRequest) -> Secret {
    let host = request.destination.registry.clone().unwrap_or_default();
    let config = super::docker_config_json(&host, &request.credentials);
    Secret {
        metadata: meta(owner, name),
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
        "metadata": meta(owner, name),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.active_deadline_seconds,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": {BUILD_LABEL: owner.name, "app.kubernetes.io/managed-by": "flaredock"}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
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
                            "allowPrivilegeEscalation": false,
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
        let Some(owner) = &request.owner else {
            return BuildOutcome::Failed {
                message: "in-cluster builds need the owning object".into(),
                log_tail: String::new(),
            };
        };
        let tag = request.destination.tag.clone().unwrap_or_default();
        let name = job_name(owner, &tag);
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &owner.namespace);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &owner.namespace);
        let job = match jobs.get_opt(&name).await {
            Ok(j) => j,
            Err(e) => {
                return BuildOutcome::InProgress(format!("cannot read build Job {name}: {e}"));
            }
        };
        let Some(job) = job else {
            let secret = build_secret(owner, &name, request);
            let job = match build_job(owner, &name, &name, request, &self.settings) {
                Ok(j) => j,
                Err(message) => {
                    return BuildOutcome::Failed {
                        message,
                        log_tail: String::new(),
                    };
                }
            };
            if let Err(e) = secrets.create(&PostParams::default(), &secret).await
                && !matches!(&e, kube::Error::Api(s) if s.code == 409)
            {
                return BuildOutcome::InProgress(format!("cannot create the build Secret: {e}"));
            }
            return match jobs.create(&PostParams::default(), &job).await {
                Ok(_) => BuildOutcome::InProgress(format!("build Job {name} started")),
                Err(e) => BuildOutcome::InProgress(format!("cannot create build Job {name}: {e}")),
            };
        };
        let status = job.status.unwrap_or_default();
        let finished_ok = status.succeeded.unwrap_or(0) > 0;
        let finished_bad = status.failed.unwrap_or(0) > 0
            || status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Failed" && c.status == "True");
        if !finished_ok && !finished_bad {
            return BuildOutcome::InProgress(format!("build Job {name} is running"));
        }
        // The build ended: its push credentials go.
        let _ = secrets.delete(&name, &DeleteParams::default()).await;
        if finished_ok {
            return BuildOutcome::Pushed;
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &owner.namespace);
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
        BuildOutcome::Failed {
            message: format!("build Job {name} failed"),
            log_tail: log_tail(&log, 20, 4000),
        }
    }
}

impl Builder for JobBuilder {
    fn build<'a>(&'a self, request: &'a BuildRequest) -> BoxFuture<'a, BuildOutcome> {
        Box::pin(self.run(request))
    }
}

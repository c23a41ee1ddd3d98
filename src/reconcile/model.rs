//! What the plan compares: the desired state derived from a `CloudflareContainer` and
//! the state observed at Cloudflare. Plain data, no I/O.

use std::collections::BTreeMap;

use super::images::Peers;
use super::plan::Blocked;
use super::worker::inputs::secret_text;
use crate::cloudflare::types::*;
use crate::oci::Reference;
use crate::spec::{
    CloudflareContainer, DeletionPolicy, InstanceTypeName, OWNER_LABEL, RolloutKindName,
    RolloutStrategyName,
};

/// What it takes to get an image into Cloudflare's registry. Observe only finds out;
/// the plan names it as an action ([`super::plan::Action::GetImage`]); act does it,
/// behind the same gates as every other write (suspend, Observe, adoption approval,
/// ownership, leadership). Copies and builds go to the object's own repository
/// ([`object_repository`]), never to a tag another object reads.
#[derive(Clone, Debug, PartialEq)]
pub enum ImageAction {
    /// Copy `source` (whose manifest, as deployed, is `digest`) to `destination`, a
    /// tagged reference in the object's repository.
    Copy {
        source: String,
        destination: String,
        digest: String,
    },
    /// Build `spec.build` and push it as `destination` (tagged): its digest is known
    /// once the build has pushed.
    Build { destination: String },
    /// Read the digest `reference` (a tag in Cloudflare's registry) names: that read
    /// needs registry credentials, and minting them is a write, so act does it.
    Resolve { reference: String },
}

impl ImageAction {
    /// The digest reference this action makes deployable, when known before acting.
    pub fn deploys(&self) -> Option<String> {
        match self {
            ImageAction::Copy {
                destination,
                digest,
                ..
            } => Reference::parse(destination)
                .ok()
                .map(|r| r.with_digest(digest).to_string()),
            ImageAction::Build { .. } | ImageAction::Resolve { .. } => None,
        }
    }

    /// What the plan shows as the image until act knows its digest: the tagged
    /// reference it builds or reads (a copy's digest is known: [`Self::deploys`]).
    pub fn placeholder(&self) -> String {
        match self {
            ImageAction::Copy { destination, .. } | ImageAction::Build { destination } => {
                destination.clone()
            }
            ImageAction::Resolve { reference } => reference.clone(),
        }
    }
}

impl std::fmt::Display for ImageAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageAction::Copy {
                source,
                destination,
                digest,
            } => write!(f, "copy image {source} → {destination} ({digest})"),
            ImageAction::Build { destination } => write!(f, "build image → {destination}"),
            ImageAction::Resolve { reference } => write!(
                f,
                "read the digest of {reference} in Cloudflare's registry (mints pull credentials)"
            ),
        }
    }
}

/// Do two digest references name the same image in the same repository, whatever
/// registry host each was written with (the host credentials report may differ from
/// the one an application was created with)?
pub fn same_image(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (Reference::parse(a), Reference::parse(b)),
            (Ok(x), Ok(y)) if x.digest.is_some() && x.digest == y.digest && x.repository == y.repository
        )
}

/// Do two references name the same repository, whatever host, tag or digest each
/// carries?
pub fn same_repository(a: &str, b: &str) -> bool {
    matches!(
        (Reference::parse(a), Reference::parse(b)),
        (Ok(x), Ok(y)) if x.repository == y.repository
    )
}

/// The repository, below the account, where flaredock copies or builds an object's
/// image: `<cluster id>/<namespace>/<name>`. It belongs to that one object: no other
/// object, namespace or cluster writes there, and a short name a tenant deploys from
/// Cloudflare's registry (`shop:v1` → `<account>/shop`) is only ever read.
pub fn object_repository(cluster: &str, namespace: &str, name: &str) -> String {
    format!("{cluster}/{namespace}/{name}")
}

/// The image, as far as it could be resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum ImageState {
    /// Digest reference in Cloudflare's registry, ready to deploy.
    Ready(String),
    /// Not in Cloudflare's registry yet, or not known to be: an action gets it there.
    Needs(ImageAction),
    /// Not available yet (tag missing, promotion source not Ready, build pending): retry.
    Pending {
        reason: super::reason::Reason,
        message: String,
    },
    /// Cannot be resolved until the spec or credentials change.
    Failed {
        reason: super::reason::Reason,
        message: String,
    },
}

/// The Worker that owns the container's Durable Object class.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerTarget {
    /// A CloudflareWorker of the same namespace (`spec.worker.name`): `object` is its
    /// `namespace/name`, `script` its script name when the object is known.
    Managed {
        object: String,
        script: Option<String>,
    },
    /// A Worker deployed by someone else (`spec.worker.scriptName`).
    External { script: String },
}

impl WorkerTarget {
    /// The script name, when known.
    pub fn script(&self) -> Option<&str> {
        match self {
            WorkerTarget::Managed { script, .. } => script.as_deref(),
            WorkerTarget::External { script } => Some(script),
        }
    }
}

/// The size of an instance, normalised: a named type, or custom values.
#[derive(Clone, Debug, PartialEq)]
pub enum Size {
    Type(InstanceType),
    Custom {
        vcpu: f64,
        memory_mib: i64,
        disk_mb: Option<i64>,
    },
}

impl Size {
    pub fn of(config: &DeploymentConfiguration) -> Size {
        match (config.instance_type, config.vcpu, config.memory_mib) {
            (Some(t), _, _) => Size::Type(t),
            (None, Some(vcpu), Some(memory_mib)) => Size::Custom {
                vcpu,
                memory_mib,
                disk_mb: config.disk.as_ref().and_then(|d| d.size_mb),
            },
            // Cloudflare's default instance type.
            _ => Size::Type(InstanceType::Lite),
        }
    }

    /// The named type this size is, when it is one (a named type and its expanded
    /// form are the same size, both ways).
    fn canonical(&self) -> Size {
        match self {
            Size::Custom {
                vcpu,
                memory_mib,
                disk_mb,
            } => match InstanceType::from_resources(*vcpu, *memory_mib, *disk_mb) {
                Some(t) => Size::Type(t),
                None => self.clone(),
            },
            Size::Type(_) => self.clone(),
        }
    }

    /// Is this the same size as `other`, whichever form each is written in?
    pub fn same_as(&self, other: &Size) -> bool {
        self.canonical() == other.canonical()
    }

    pub fn apply(&self, config: &mut DeploymentConfiguration) {
        config.instance_type = None;
        config.vcpu = None;
        config.memory_mib = None;
        config.disk = None;
        match self {
            Size::Type(t) => config.instance_type = Some(*t),
            Size::Custom {
                vcpu,
                memory_mib,
                disk_mb,
            } => {
                config.vcpu = Some(*vcpu);
                config.memory_mib = Some(*memory_mib);
                config.disk = disk_mb.map(|d| Disk { size_mb: Some(d) });
            }
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Type(t) => f.write_str(t.as_str()),
            Size::Custom {
                vcpu,
                memory_mib,
                disk_mb,
            } => {
                write!(f, "vcpu={vcpu} memory_mib={memory_mib}")?;
                if let Some(d) = disk_mb {
                    write!(f, " disk_mb={d}")?;
                }
                Ok(())
            }
        }
    }
}

/// How changes that need a rollout are sent.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutPolicy {
    pub immediate: bool,
    pub step_percentage: Option<i64>,
    pub manual: bool,
}

/// What Cloudflare should look like for one object.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// `namespace/name` of the object.
    pub key: String,
    /// Value of the owner label.
    pub owner: String,
    /// The id of the application flaredock made for this object, as its status
    /// recorded it: a rename's leftover is deleted only by this id.
    pub recorded_application: Option<String>,
    pub application_name: String,
    pub class_name: String,
    pub worker: WorkerTarget,
    pub max_instances: i64,
    /// Normalised: regions sorted and deduplicated; `None` when nothing is constrained.
    pub constraints: Option<ApplicationConstraints>,
    pub logs: bool,
    pub grace_period: i64,
    pub size: Size,
    /// Sorted by name, with the values of the variables set from Secrets (sent to
    /// Cloudflare, never shown: a diff names their source, `env_sources`).
    pub env: Vec<EnvironmentVariable>,
    /// The variables set from Secrets: name → `Secret name/key`.
    pub env_sources: BTreeMap<String, String>,
    /// What the environment waits for or refuses: a missing Secret or key, a value
    /// that is not text. Nothing is written while it is set.
    pub env_blocked: Option<Blocked>,
    pub rollout: RolloutPolicy,
    pub adopt: bool,
    pub deletion_policy: DeletionPolicy,
    /// `spec.image.reference` as written, when the image is deployed from a reference
    /// (no build, no promotion): an adoption shows it as the spec names it.
    pub image_reference: Option<String>,
}

fn instance_type(t: InstanceTypeName) -> InstanceType {
    match t {
        InstanceTypeName::Lite => InstanceType::Lite,
        InstanceTypeName::Basic => InstanceType::Basic,
        InstanceTypeName::Standard1 => InstanceType::Standard1,
        InstanceTypeName::Standard2 => InstanceType::Standard2,
        InstanceTypeName::Standard3 => InstanceType::Standard3,
        InstanceTypeName::Standard4 => InstanceType::Standard4,
    }
}

/// Normalises constraints so that equal meanings compare equal.
pub fn normalise_constraints(c: Option<&ApplicationConstraints>) -> Option<ApplicationConstraints> {
    let c = c?;
    let mut regions: Vec<String> = c.regions.clone().unwrap_or_default();
    regions.sort();
    regions.dedup();
    let out = ApplicationConstraints {
        regions: (!regions.is_empty()).then_some(regions),
        jurisdiction: c.jurisdiction.clone().filter(|j| !j.is_empty()),
        tiers: None,
    };
    (out != ApplicationConstraints::default()).then_some(out)
}

impl Desired {
    /// The desired state of `obj`; `worker_script` gives the script name of a
    /// CloudflareWorker of a namespace (`None` when no such object is known).
    pub fn from_spec(
        obj: &CloudflareContainer,
        peers: &dyn Peers,
        cluster: &crate::spec::ClusterIdentity,
    ) -> Desired {
        let s = &obj.spec;
        let ns = obj.namespace_or_default();
        let worker = match (&s.worker.name, &s.worker.script_name) {
            (Some(name), _) => WorkerTarget::Managed {
                object: format!("{ns}/{name}"),
                script: peers.worker_script(ns, name),
            },
            (None, script) => WorkerTarget::External {
                script: script.clone().unwrap_or_default(),
            },
        };
        let size = match (&s.resources, s.instance_type) {
            (Some(r), _) => Size::Custom {
                vcpu: r.vcpu,
                memory_mib: r.memory_mib,
                disk_mb: r.disk_mb,
            },
            (None, Some(t)) => Size::Type(instance_type(t)),
            (None, None) => Size::Type(InstanceType::Lite),
        };
        let constraints = s.constraints.as_ref().map(|c| ApplicationConstraints {
            regions: Some(
                c.regions
                    .iter()
                    .map(|r| {
                        serde_json::to_value(r)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    })
                    .collect(),
            ),
            jurisdiction: c.jurisdiction.map(|j| {
                match j {
                    crate::spec::Jurisdiction::Eu => "eu",
                    crate::spec::Jurisdiction::Fedramp => "fedramp",
                }
                .to_string()
            }),
            tiers: None,
        });
        let (env, env_sources, env_blocked) = resolve_env(obj, peers);
        Desired {
            key: obj.key(),
            owner: obj.owner_id(cluster),
            recorded_application: obj.status.as_ref().and_then(|s| s.application_id.clone()),
            application_name: obj.application_name().to_string(),
            class_name: s.class_name.clone(),
            worker,
            max_instances: s.max_instances,
            constraints: normalise_constraints(constraints.as_ref()),
            logs: s.observability.as_ref().is_some_and(|o| o.logs),
            grace_period: s.rollout.active_grace_period_seconds,
            size,
            env,
            env_sources,
            env_blocked,
            rollout: RolloutPolicy {
                immediate: s.rollout.strategy == RolloutStrategyName::Immediate,
                step_percentage: s.rollout.step_percentage,
                manual: s.rollout.kind == RolloutKindName::FullManual,
            },
            // Observing an application made elsewhere (wrangler, the dashboard) shows
            // what adopting it would change, instead of only refusing it.
            adopt: s.adopt || s.management_policy == crate::spec::ManagementPolicy::Observe,
            deletion_policy: s.deletion_policy,
            image_reference: match (&s.build, &s.image) {
                (None, Some(i)) if i.from_container.is_none() => i.reference.clone(),
                _ => None,
            },
        }
    }

    /// The deployment configuration to run `image`, keeping labels others have set, and
    /// observability in the configuration when the application keeps it there (the
    /// official schema makes that form and the top-level one mutually exclusive).
    pub fn configuration(
        &self,
        image: &str,
        live: Option<&DeploymentConfiguration>,
    ) -> DeploymentConfiguration {
        let mut labels: Vec<Label> = live
            .and_then(|c| c.labels.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l.name != OWNER_LABEL)
            .collect();
        labels.push(Label {
            name: OWNER_LABEL.into(),
            value: self.owner.clone(),
        });
        labels.sort();
        let mut config = DeploymentConfiguration {
            image: image.to_string(),
            environment_variables: (!self.env.is_empty()).then(|| self.env.clone()),
            labels: Some(labels),
            ..Default::default()
        };
        self.size.apply(&mut config);
        if live.is_some_and(|c| c.observability.is_some()) {
            config.observability = Some(self.observability());
        }
        config
    }

    /// The values of the variables set from Secrets (to keep out of error messages).
    pub fn secret_values(&self) -> Vec<&str> {
        self.env
            .iter()
            .filter(|e| self.env_sources.contains_key(&e.name))
            .map(|e| e.value.as_str())
            .collect()
    }

    /// Whether a plan's field is an environment variable set from a Secret.
    pub fn is_from_secret(&self, field: &str) -> bool {
        field
            .strip_prefix("configuration.environment_variables.")
            .is_some_and(|name| self.env_sources.contains_key(name))
    }

    pub fn observability(&self) -> Observability {
        Observability {
            logs: Some(ObservabilityLogs {
                enabled: Some(self.logs),
            }),
        }
    }
}

/// The container's environment: literal values and the values of Secret keys (from
/// `peers`), sorted by name; the sources of the latter; and what blocks it. A missing
/// Secret or key waits (it may be created next). No message says anything about a
/// value.
fn resolve_env(
    obj: &CloudflareContainer,
    peers: &dyn Peers,
) -> (
    Vec<EnvironmentVariable>,
    BTreeMap<String, String>,
    Option<Blocked>,
) {
    let ns = obj.namespace_or_default();
    let mut env = Vec::new();
    let mut sources = BTreeMap::new();
    let mut blocked = None;
    for e in &obj.spec.env {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                let r = &from.secret_key_ref;
                sources.insert(e.name.clone(), format!("Secret {}/{}", r.name, r.key));
                let used_by = format!("spec.env {}", e.name);
                match secret_text(peers.secret(ns, &r.name), ns, r, &used_by) {
                    Ok(text) => text,
                    Err(b) => {
                        blocked.get_or_insert(b);
                        continue;
                    }
                }
            }
            (None, None) => String::new(),
        };
        env.push(EnvironmentVariable {
            name: e.name.clone(),
            value,
        });
    }
    env.sort();
    (env, sources, blocked)
}

/// What was observed at Cloudflare for one object.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub image: ImageState,
    /// The application with the desired name.
    pub application: Option<Application>,
    /// The configuration the application is heading to: the target of its active
    /// rollout, or its configuration.
    pub target_configuration: Option<DeploymentConfiguration>,
    /// Applications carrying this object's owner label under another name.
    pub owned_elsewhere: Vec<Application>,
    /// The Durable Object namespace of (script, class).
    pub namespace: Option<DurableObjectNamespace>,
    /// The application bound to that namespace, when it is not `application`.
    pub namespace_application: Option<Application>,
    /// The Worker script, from the account's script list.
    pub script: Option<ScriptInfo>,
    /// An application flaredock deleted that still holds the desired name or the
    /// class's namespace (Cloudflare deletes asynchronously).
    pub deleting: Option<Application>,
    /// Share of instances, in percent, on a version whose configuration is the spec's,
    /// read from `GET …/applications/{id}/versions`; `None` when they were not read
    /// (no rollout active and the object already Ready for this generation).
    pub on_spec: Option<i64>,
}

/// Owner label of an application's configuration.
pub fn owner_of(app: &Application) -> Option<&str> {
    app.configuration.label(OWNER_LABEL)
}

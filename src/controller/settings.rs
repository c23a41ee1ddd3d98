//! How the controller runs: the settings `flaredock run` builds from its flags.

use std::time::Duration;

use crate::cloudflare::{RateLimit, Secret as SecretString};
use crate::oci::client::RegistryTimeouts;

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
    /// Overall timeout of one Cloudflare API request.
    pub api_timeout: Duration,
    /// The deadline of one reconcile through the core: past it, the object is
    /// requeued with `ReconcileTimedOut` in its status and its slot freed.
    pub reconcile_timeout: Duration,
    /// Connect timeout of Cloudflare API and registry requests.
    pub connect_timeout: Duration,
    /// Timeouts of registry requests (copies, pushes).
    pub registry_timeouts: RegistryTimeouts,
    pub insecure_registries: Vec<String>,
    /// Credentials for objects without `credentialsSecretRef`: (account id, token).
    pub default_credentials: Option<(String, SecretString)>,
    /// Namespaces whose objects may use `default_credentials` besides those labelled
    /// `flaredock.dev/default-credentials: allow`.
    pub default_credentials_namespaces: Vec<String>,
    /// How in-cluster build Jobs are made.
    pub build: crate::build::job::JobSettings,
    /// Who records ownership at Cloudflare (`flaredock run` sets it from the UID of
    /// the cluster's `kube-system` namespace unless `--cluster-id` is given).
    pub cluster: crate::spec::ClusterIdentity,
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
            api_timeout: Duration::from_secs(30),
            reconcile_timeout: crate::reconcile::DEFAULT_RECONCILE_TIMEOUT,
            connect_timeout: Duration::from_secs(10),
            registry_timeouts: RegistryTimeouts::default(),
            insecure_registries: vec![],
            default_credentials: None,
            default_credentials_namespaces: vec![],
            build: Default::default(),
            cluster: crate::spec::ClusterIdentity::cli(),
        }
    }
}

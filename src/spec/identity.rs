//! Naming and ownership: the helpers both kinds share (`key`, `name`, `owner_id`), who
//! records ownership at Cloudflare ([`ClusterIdentity`]), and the reconcile-now request.

use super::{CloudflareContainer, CloudflareWorker};

/// The naming helpers both kinds share: `key`, `namespace_or_default`, `name` and
/// `owner_id` (the owner recorded at Cloudflare).
macro_rules! object_names {
    ($kind:ty) => {
        impl $kind {
            /// `namespace/name` (namespace `default` when unset).
            pub fn key(&self) -> String {
                format!("{}/{}", self.namespace_or_default(), self.name())
            }

            pub fn namespace_or_default(&self) -> &str {
                self.metadata.namespace.as_deref().unwrap_or("default")
            }

            pub fn name(&self) -> &str {
                self.metadata.name.as_deref().unwrap_or("")
            }

            /// The `reconcile.fluxcd.io/requestedAt` annotation, when set.
            pub fn reconcile_requested_at(&self) -> Option<&str> {
                self.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(RECONCILE_REQUEST_ANNOTATION))
                    .map(String::as_str)
            }

            /// The owner flaredock records at Cloudflare for this object,
            /// `<cluster id>/<namespace>.<name>`: two clusters sharing an account never
            /// take each other's applications or scripts.
            pub fn owner_id(&self, cluster: &ClusterIdentity) -> String {
                cluster.owner(self.namespace_or_default(), self.name())
            }
        }

        impl ReconcileRequest for $kind {
            fn requested_at(&self) -> Option<&str> {
                self.reconcile_requested_at()
            }
            fn handled_at(&self) -> Option<&str> {
                self.status
                    .as_ref()
                    .and_then(|s| s.last_handled_reconcile_at.as_deref())
            }
        }
    };
}

/// Who records ownership at Cloudflare: a cluster id that is unique without any
/// configuration, and a readable name. The controller's id is taken from the UID of
/// its cluster's `kube-system` namespace (`--cluster-id` overrides it); the command
/// line's is [`ClusterIdentity::CLI`] unless `--cluster-id` says otherwise. Owner ids
/// are `<id>/<namespace>.<name>`, so two clusters sharing an account never look alike,
/// whatever they are called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterIdentity {
    id: String,
    name: Option<String>,
}

impl ClusterIdentity {
    /// The command line's cluster id.
    pub const CLI: &'static str = "cli";

    /// `id`: 1 to 40 lowercase letters, digits or `-`; `name` is only shown.
    pub fn new(id: &str, name: Option<&str>) -> Result<Self, String> {
        let valid = !id.is_empty()
            && id.len() <= 40
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(format!(
                "cluster id {id:?}: use 1 to 40 lowercase letters, digits or '-'"
            ));
        }
        Ok(ClusterIdentity {
            id: id.to_string(),
            name: name.filter(|n| !n.is_empty()).map(str::to_string),
        })
    }

    /// The id of a cluster whose `kube-system` namespace has this UID: its first 16
    /// hexadecimal digits.
    pub fn from_uid(uid: &str, name: Option<&str>) -> Result<Self, String> {
        let hex: String = uid
            .chars()
            .filter(char::is_ascii_hexdigit)
            .map(|c| c.to_ascii_lowercase())
            .take(16)
            .collect();
        if hex.len() < 16 {
            return Err(format!(
                "the kube-system namespace's UID {uid:?} is not a UUID"
            ));
        }
        ClusterIdentity::new(&hex, name)
    }

    /// The command line's identity.
    pub fn cli() -> Self {
        ClusterIdentity {
            id: Self::CLI.into(),
            name: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The readable name, when one was given.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The owner id of `namespace/name` in this cluster.
    pub fn owner(&self, namespace: &str, name: &str) -> String {
        owner_id(&self.id, namespace, name)
    }
}

/// The owner id of `namespace/name` in the cluster with id `cluster`.
pub fn owner_id(cluster: &str, namespace: &str, name: &str) -> String {
    format!("{cluster}/{namespace}.{name}")
}

/// The annotation that asks for a reconcile now (Flux's convention; any new value).
pub const RECONCILE_REQUEST_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";

/// An object that can be asked to reconcile now.
pub trait ReconcileRequest {
    /// The annotation's value, when set.
    fn requested_at(&self) -> Option<&str>;
    /// The value the status says was last handled.
    fn handled_at(&self) -> Option<&str>;
    /// A request not handled yet?
    fn reconcile_requested(&self) -> bool {
        self.requested_at().is_some() && self.requested_at() != self.handled_at()
    }
}

object_names!(CloudflareContainer);
object_names!(CloudflareWorker);

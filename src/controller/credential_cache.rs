//! What the controller remembers of credentials: each Secret's credentials for a short
//! while, and whether a namespace allows the operator's default credentials.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::credentials::{self, credentials_from};
use super::{Context, SECRET_FINALIZER};
use crate::cloudflare::Secret as SecretString;

/// Credentials of one Secret, with when they were read.
#[derive(Clone)]
pub(super) struct CachedCredentials {
    pub(super) result: Result<(String, SecretString), String>,
    pub(super) read: std::time::Instant,
    /// The Secret carries our finalizer.
    pub(super) protected: bool,
}

/// Cached credentials are read again after this long: a rotated token is in use
/// within a minute of the rotation (at the object's next reconcile after that).
pub(super) const CREDENTIALS_TTL: Duration = Duration::from_secs(30);
/// Entries older than this are dropped from the caches (deleted Secrets, namespaces).
pub(super) const CACHE_FORGET: Duration = Duration::from_secs(600);

impl Context {
    /// Whether objects of `ns` may use the operator's default credentials: listed in
    /// `--default-credentials-namespaces`, or the namespace carries the label
    /// `flaredock.dev/default-credentials: allow` (read by name; what a read showed is
    /// cached a minute). A read that failed is not an answer: it is not cached, and it
    /// is a transient problem (retried with backoff), never "not allowed"; a read the
    /// operator's RBAC refuses says so.
    pub(super) async fn default_credentials_allowed(
        &self,
        ns: &str,
    ) -> Result<bool, credentials::SecretProblem> {
        if self
            .settings
            .default_credentials_namespaces
            .iter()
            .any(|n| n == ns)
        {
            return Ok(true);
        }
        if let Some((allowed, read)) = crate::lock(&self.default_allowed).get(ns)
            && read.elapsed() < Duration::from_secs(60)
        {
            return Ok(*allowed);
        }
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(self.client.clone());
        let allowed = match api.get_opt(ns).await {
            Ok(found) => found.is_some_and(|n| {
                n.labels()
                    .get(credentials::DEFAULT_CREDENTIALS_LABEL)
                    .map(String::as_str)
                    == Some("allow")
            }),
            Err(kube::Error::Api(e)) if e.code == 403 => {
                return Err(credentials::SecretProblem::Refused {
                    reason: crate::reconcile::reason::Reason::CredentialsForbidden,
                    message: format!(
                        "flaredock may not read namespace {ns} (get namespaces), so it cannot tell whether the namespace allows the operator's default credentials: grant it, list {ns} in --default-credentials-namespaces, or set spec.credentialsSecretRef"
                    ),
                });
            }
            Err(e) => {
                tracing::warn!(namespace = ns, resource = "namespaces", verb = "get", error = %e, "cannot read a namespace's labels; retrying with backoff");
                return Err(credentials::SecretProblem::Transient(format!(
                    "cannot read namespace {ns} (whether it allows the operator's default credentials): {e}"
                )));
            }
        };
        let mut cache = crate::lock(&self.default_allowed);
        cache.retain(|_, (_, read)| read.elapsed() < CACHE_FORGET);
        cache.insert(ns.to_string(), (allowed, std::time::Instant::now()));
        Ok(allowed)
    }

    pub(super) fn cached_credentials(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), CachedCredentials>> {
        crate::lock(&self.credentials)
    }

    /// Records what a Secret now says (after each read or patch). Entries not read
    /// for a while (deleted Secrets, gone objects) are dropped.
    pub fn remember_secret(&self, secret: &Secret) {
        let key = (secret.namespace().unwrap_or_default(), secret.name_any());
        let entry = CachedCredentials {
            result: credentials_from(secret),
            read: std::time::Instant::now(),
            protected: secret.finalizers().iter().any(|f| f == SECRET_FINALIZER),
        };
        let mut cache = self.cached_credentials();
        cache.retain(|_, c| c.read.elapsed() < CACHE_FORGET);
        cache.insert(key, entry);
    }
}

//! Credentials from Secrets: the Cloudflare token and account of an object
//! (`credentialsSecretRef`, or the operator's default where a namespace allows it),
//! registry pull credentials (`pullSecretRef`), secret values a Worker binds, and the
//! finalizer that protects a credentials Secret while an object still needs it for its
//! cleanup.
//!
//! Least privilege: Secrets are only ever read by name (`get`) in the object's own
//! namespace, never listed or watched, so the install needs no Secret access at
//! cluster scope; a namespace is onboarded with the RoleBinding of `deploy/tenant/`.
//! Credentials are cached for `CREDENTIALS_TTL` (30 s), so a
//! rotated token is used from the next reconcile after that. A namespace that is not
//! onboarded gives `CredentialsForbidden` and is retried slowly, never in a tight loop;
//! a transient failure (timeout, 5xx) is retried with backoff and never called Stalled.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{CREDENTIALS_TTL, Context, SECRET_FINALIZER};
use crate::reconcile::reason::Reason;

/// The namespace label that lets objects without `credentialsSecretRef` use the
/// operator's default credentials.
pub const DEFAULT_CREDENTIALS_LABEL: &str = "flaredock.dev/default-credentials";

/// Why a Secret an object names (or the default credentials) cannot be had.
#[derive(Clone, Debug, PartialEq)]
pub enum SecretProblem {
    /// Needs a person (namespace not onboarded, Secret or key missing, default
    /// credentials not allowed here): reported with `reason`, retried slowly.
    Refused { reason: Reason, message: String },
    /// Timeout, 5xx, connection: retried with backoff, not reported as Stalled.
    Transient(String),
}

impl std::fmt::Display for SecretProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretProblem::Refused { message, .. } | SecretProblem::Transient(message) => {
                f.write_str(message)
            }
        }
    }
}

impl SecretProblem {
    fn missing(message: String) -> Self {
        SecretProblem::Refused {
            reason: Reason::CredentialsUnavailable,
            message,
        }
    }

    /// When to look again: a missing onboarding changes rarely, a missing Secret may
    /// appear any moment (nothing watches Secrets).
    pub fn retry_after(&self) -> std::time::Duration {
        match self {
            SecretProblem::Refused {
                reason: Reason::CredentialsForbidden | Reason::DefaultCredentialsNotAllowed,
                ..
            } => std::time::Duration::from_secs(300),
            _ => std::time::Duration::from_secs(60),
        }
    }
}
use crate::cloudflare::Secret as SecretString;
use crate::oci::client::docker_config_auths;
use crate::reconcile::images::SourceCredentials;
use crate::reconcile::worker::inputs::DataMap;
use crate::spec::SecretRef;

/// What an object needs of the credentials machinery: where it lives and which
/// credentials Secret it names.
pub struct CredentialsOwner<'a> {
    pub namespace: &'a str,
    pub uid: Option<&'a str>,
    pub secret: Option<&'a SecretRef>,
}

/// A Secret an object names in `field`; a missing one is an error naming it.
pub(super) async fn read_secret(
    ctx: &Context,
    ns: &str,
    name: &str,
    field: &str,
) -> Result<Secret, SecretProblem> {
    read_secret_opt(ctx, ns, name, field).await?.ok_or_else(|| {
        SecretProblem::missing(format!("Secret {ns}/{name} ({field}) does not exist"))
    })
}

/// A Secret of the namespace by name (`get`, the only way flaredock reads Secrets),
/// `None` when it does not exist.
pub(super) async fn read_secret_opt(
    ctx: &Context,
    ns: &str,
    name: &str,
    field: &str,
) -> Result<Option<Secret>, SecretProblem> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    match api.get_opt(name).await {
        Ok(s) => Ok(s),
        Err(kube::Error::Api(e)) if e.code == 403 => Err(SecretProblem::Refused {
            reason: Reason::CredentialsForbidden,
            message: format!(
                "flaredock may not read Secret {ns}/{name} ({field}): namespace {ns} is not onboarded; add the RoleBinding flaredock-tenant there (kubectl apply -k of deploy/tenant with namespace: {ns})"
            ),
        }),
        Err(e) => {
            tracing::warn!(namespace = ns, secret = name, verb = "get", error = %e, "cannot read a Secret");
            Err(SecretProblem::Transient(format!(
                "cannot read Secret {ns}/{name}: {e}"
            )))
        }
    }
}

/// The Secrets `names` of namespace `ns` that exist, by `namespace/name`, each read
/// once (`field` says which part of the spec wants them). A missing one is absent: the
/// core says what it waits for.
pub(super) async fn read_secrets<'a>(
    ctx: &Context,
    ns: &str,
    names: impl IntoIterator<Item = &'a str>,
    field: &str,
) -> Result<std::collections::HashMap<String, DataMap>, SecretProblem> {
    let names: std::collections::BTreeSet<&str> = names.into_iter().collect();
    let mut out = std::collections::HashMap::new();
    for name in names {
        if let Some(secret) = read_secret_opt(ctx, ns, name, field).await? {
            out.insert(format!("{ns}/{name}"), secret_data(&secret));
        }
    }
    Ok(out)
}

/// `(account id, token)` from a credentials Secret (keys `accountId`, `apiToken`).
pub(super) fn credentials_from(secret: &Secret) -> Result<(String, SecretString), String> {
    let ns = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let value = |key: &str| -> Result<String, String> {
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone());
        let string = secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|s| s.clone().into_bytes());
        let bytes = data
            .or(string)
            .ok_or_else(|| format!("Secret {ns}/{name} has no key {key}"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("Secret {ns}/{name}: {key} is not UTF-8"))?;
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err(format!("Secret {ns}/{name}: {key} is empty"));
        }
        Ok(text)
    };
    Ok((value("accountId")?, SecretString::new(value("apiToken")?)))
}

/// `(account id, token)` for an object: its Secret (read by name, cached for
/// `CREDENTIALS_TTL`), or the operator's default where the namespace allows it.
pub(super) async fn credentials(
    owner: &CredentialsOwner<'_>,
    ctx: &Context,
) -> Result<(String, SecretString), SecretProblem> {
    let ns = owner.namespace;
    let Some(reference) = owner.secret else {
        let Some(default) = ctx.settings.default_credentials.clone() else {
            return Err(SecretProblem::missing(
                "no credentials: set spec.credentialsSecretRef, or give the operator CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID".into(),
            ));
        };
        if !ctx.default_credentials_allowed(ns).await? {
            return Err(SecretProblem::Refused {
                reason: Reason::DefaultCredentialsNotAllowed,
                message: format!(
                    "namespace {ns} may not use the operator's default credentials: set spec.credentialsSecretRef, or label the namespace {DEFAULT_CREDENTIALS_LABEL}=allow (or list it in --default-credentials-namespaces)"
                ),
            });
        }
        return Ok(default);
    };
    let key = (ns.to_string(), reference.name.clone());
    if let Some(c) = ctx.cached_credentials().get(&key)
        && c.read.elapsed() < CREDENTIALS_TTL
        && c.result.is_ok()
    {
        return c.result.clone().map_err(SecretProblem::missing);
    }
    let secret = read_secret(ctx, ns, &reference.name, "spec.credentialsSecretRef").await?;
    ctx.remember_secret(&secret);
    credentials_from(&secret).map_err(SecretProblem::missing)
}

/// Source registry credentials from a `pullSecretRef` (a `kubernetes.io/dockerconfigjson`
/// Secret in the object's namespace).
pub(super) async fn pull_credentials(
    ns: &str,
    reference: Option<&SecretRef>,
    ctx: &Context,
) -> Result<Option<SourceCredentials>, SecretProblem> {
    let Some(reference) = reference else {
        return Ok(None);
    };
    let secret = read_secret(ctx, ns, &reference.name, "spec.image.pullSecretRef").await?;
    let json = secret
        .data
        .as_ref()
        .and_then(|d| d.get(".dockerconfigjson"))
        .map(|b| String::from_utf8_lossy(&b.0).to_string())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(".dockerconfigjson"))
                .cloned()
        })
        .ok_or_else(|| {
            SecretProblem::missing(format!(
                "Secret {ns}/{} has no .dockerconfigjson key",
                reference.name
            ))
        })?;
    docker_config_auths(&json)
        .map(Some)
        .map_err(|e| SecretProblem::missing(format!("Secret {ns}/{}: {e}", reference.name)))
}

/// Adds or removes our finalizer on the credentials Secret (known state from the
/// cache: nothing is read or written when it is already as wanted).
pub(super) async fn protect_secret(
    ctx: &Context,
    owner: &CredentialsOwner<'_>,
    protect: bool,
) -> Result<(), kube::Error> {
    let Some(reference) = owner.secret else {
        return Ok(());
    };
    if !ctx.may_write() {
        return Ok(());
    }
    let ns = owner.namespace;
    let key = (ns.to_string(), reference.name.clone());
    if ctx
        .cached_credentials()
        .get(&key)
        .is_some_and(|c| c.protected == protect)
    {
        return Ok(());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    // The patch names the resourceVersion it read (others' finalizers are kept); when
    // another reconcile changed the Secret meanwhile (409), read again and retry.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(secret) = secrets.get_opt(&reference.name).await? else {
            return Ok(());
        };
        let mut finalizers = secret.finalizers().to_vec();
        let has = finalizers.iter().any(|f| f == SECRET_FINALIZER);
        if protect == has {
            ctx.remember_secret(&secret);
            return Ok(());
        }
        if protect {
            finalizers.push(SECRET_FINALIZER.to_string());
        } else {
            finalizers.retain(|f| f != SECRET_FINALIZER);
        }
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": secret.resource_version()}});
        match secrets
            .patch(
                &reference.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(updated) => {
                ctx.remember_secret(&updated);
                return Ok(());
            }
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 5 => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Releases the Secret an object protected before its `credentialsSecretRef` changed
/// (`previous`, from its status), unless another object still uses it.
pub(super) async fn release_previous_secret(
    ctx: &Context,
    owner: &CredentialsOwner<'_>,
    previous: Option<&str>,
) -> Result<(), kube::Error> {
    let Some(old) = previous else { return Ok(()) };
    if owner.secret.is_some_and(|r| r.name == old) {
        return Ok(());
    }
    let reference = SecretRef {
        name: old.to_string(),
    };
    let old_owner = CredentialsOwner {
        namespace: owner.namespace,
        uid: owner.uid,
        secret: Some(&reference),
    };
    if secret_still_used(ctx, &old_owner) {
        return Ok(());
    }
    protect_secret(ctx, &old_owner, false).await
}

/// Does another live object (of either kind) still use this object's credentials
/// Secret?
pub(super) fn secret_still_used(ctx: &Context, owner: &CredentialsOwner<'_>) -> bool {
    let Some(reference) = owner.secret else {
        return false;
    };
    let uses = |meta: &kube::api::ObjectMeta, r: Option<&SecretRef>| {
        meta.uid.as_deref() != owner.uid
            && meta.deletion_timestamp.is_none()
            && meta.namespace.as_deref().unwrap_or("default") == owner.namespace
            && r.map(|r| &r.name) == Some(&reference.name)
    };
    let by_container = ctx.store.get().is_some_and(|store| {
        store
            .state()
            .iter()
            .any(|o| uses(&o.metadata, o.spec.credentials_secret_ref.as_ref()))
    });
    by_container
        || ctx.worker_store.get().is_some_and(|store| {
            store
                .state()
                .iter()
                .any(|o| uses(&o.metadata, o.spec.credentials_secret_ref.as_ref()))
        })
}

/// The keys of a Secret (data and stringData).
pub(super) fn secret_data(secret: &Secret) -> DataMap {
    let mut out: DataMap = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

/// The keys of a ConfigMap (data and binaryData).
pub(super) fn config_map_data(cm: &ConfigMap) -> DataMap {
    let mut out: DataMap = cm
        .binary_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in cm.data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

/// A ConfigMap of the namespace, read by name (ConfigMaps are never listed or watched:
/// flaredock may read only those objects name, in onboarded namespaces), `None` when it
/// does not exist. A namespace that is not onboarded is a refusal; any other failure
/// (a 500, a timeout) is transient, retried with backoff, never Stalled.
pub(super) async fn read_config_map(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Option<ConfigMap>, SecretProblem> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    match api.get_opt(name).await {
        Ok(cm) => Ok(cm),
        Err(kube::Error::Api(e)) if e.code == 403 => Err(SecretProblem::Refused {
            reason: Reason::ConfigMapForbidden,
            message: format!(
                "flaredock may not read ConfigMap {ns}/{name} (spec.source.configMapRef): namespace {ns} is not onboarded; add the RoleBinding flaredock-tenant there (kubectl apply -k of deploy/tenant with namespace: {ns})"
            ),
        }),
        Err(e) => {
            tracing::warn!(namespace = ns, resource = "configmaps", verb = "get", error = %e, "cannot read a ConfigMap; retrying with backoff");
            Err(SecretProblem::Transient(format!(
                "cannot read ConfigMap {ns}/{name}: {e}"
            )))
        }
    }
}

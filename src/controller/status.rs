//! Status writing for both kinds: server-side apply of the `status` subresource, only
//! when it changed, and the conditions of a status that carries one blocking problem
//! (nothing could be asked of Cloudflare).

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Context, FIELD_MANAGER};
use crate::reconcile::reason::Reason;
use crate::reconcile::status::condition_since;
use crate::spec::{
    CloudflareContainer, CloudflareContainerStatus, CloudflareWorker, CloudflareWorkerStatus,
    ReconcileRequest,
};

/// Writes `status` of the object `ns/name` of kind `K` unless it equals `current`.
pub(super) async fn write_status<K, S>(
    ctx: &Context,
    ns: &str,
    name: &str,
    current: Option<&S>,
    status: &S,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(());
    }
    if !ctx.may_write() {
        tracing::debug!(
            namespace = ns,
            name,
            "not the leader (any more): status not written"
        );
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

pub(super) async fn write_container_status(
    ctx: &Context,
    obj: &CloudflareContainer,
    status: &CloudflareContainerStatus,
) -> Result<(), kube::Error> {
    let mut status = status.clone();
    status.protected_secret = obj
        .spec
        .credentials_secret_ref
        .as_ref()
        .map(|r| r.name.clone());
    status.last_handled_reconcile_at = obj.requested_at().map(str::to_string);
    write_status::<CloudflareContainer, _>(
        ctx,
        obj.namespace_or_default(),
        obj.name(),
        obj.status.as_ref(),
        &status,
    )
    .await
}

pub(super) async fn write_worker_status(
    ctx: &Context,
    obj: &CloudflareWorker,
    status: &CloudflareWorkerStatus,
) -> Result<(), kube::Error> {
    let mut status = status.clone();
    status.protected_secret = obj
        .spec
        .credentials_secret_ref
        .as_ref()
        .map(|r| r.name.clone());
    status.last_handled_reconcile_at = obj.requested_at().map(str::to_string);
    write_status::<CloudflareWorker, _>(
        ctx,
        obj.namespace_or_default(),
        obj.name(),
        obj.status.as_ref(),
        &status,
    )
    .await
}

/// The kstatus conditions of one blocking problem, keeping the other conditions.
pub(super) fn problem_conditions(
    previous: &[Condition],
    generation: Option<i64>,
    reason: Reason,
    message: &str,
    stalled: bool,
) -> Vec<Condition> {
    let now = jiff::Timestamp::now();
    let cond = |kind: &str, ok: bool, reason: &str, message: &str| {
        condition_since(previous, kind, ok, reason, message, generation, now)
    };
    let mut conditions = vec![
        cond("Ready", false, reason.as_str(), message),
        cond(
            "Stalled",
            stalled,
            if stalled { reason } else { Reason::NotStalled }.as_str(),
            if stalled {
                message
            } else {
                "no terminal error"
            },
        ),
        cond("Reconciling", !stalled, reason.as_str(), message),
    ];
    for c in previous {
        if !conditions.iter().any(|x| x.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }
    conditions
}

/// A container status carrying one blocking problem.
pub(super) fn container_problem(
    obj: &CloudflareContainer,
    reason: Reason,
    message: &str,
    stalled: bool,
) -> CloudflareContainerStatus {
    let previous = obj.status.clone().unwrap_or_default();
    CloudflareContainerStatus {
        observed_generation: obj.metadata.generation,
        conditions: problem_conditions(
            &previous.conditions,
            obj.metadata.generation,
            reason,
            message,
            stalled,
        ),
        ..previous
    }
}

/// A Worker status carrying one blocking problem.
pub(super) fn worker_problem(
    obj: &CloudflareWorker,
    reason: Reason,
    message: &str,
    stalled: bool,
) -> CloudflareWorkerStatus {
    let previous = obj.status.clone().unwrap_or_default();
    CloudflareWorkerStatus {
        observed_generation: obj.metadata.generation,
        conditions: problem_conditions(
            &previous.conditions,
            obj.metadata.generation,
            reason,
            message,
            stalled,
        ),
        ..previous
    }
}

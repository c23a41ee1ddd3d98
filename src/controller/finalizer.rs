//! The kube-runtime entry point shared by both kinds, around kube's finalizer helper.

use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::runtime::finalizer;

use super::{Context, Error, FINALIZER};

/// The kube-runtime entry point shared by both kinds: only the leader acts; the
/// finalizer runs `apply` or, once the object is being deleted, `cleanup`; durations and
/// failures are counted.
pub(super) async fn with_finalizer<K, A, AF, C, CF>(
    obj: Arc<K>,
    ctx: Arc<Context>,
    key: String,
    apply: A,
    cleanup: C,
) -> Result<kube::runtime::controller::Action, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + crate::spec::ReconcileRequest
        + Send
        + Sync
        + 'static,
    A: FnOnce(Arc<K>, Arc<Context>) -> AF,
    AF: std::future::Future<Output = Result<kube::runtime::controller::Action, Error>>,
    C: FnOnce(Arc<K>, Arc<Context>) -> CF,
    CF: std::future::Future<Output = Result<kube::runtime::controller::Action, Error>>,
{
    use kube::runtime::finalizer::Event as FinalizerEvent;
    use tracing::Instrument;
    if !ctx.may_write() {
        // A standby (or a leader past its local deadline) watches but never writes.
        return Ok(kube::runtime::controller::Action::requeue(
            Duration::from_secs(15),
        ));
    }
    // A requested reconcile (reconcile.fluxcd.io/requestedAt) is not held back.
    if obj.meta().deletion_timestamp.is_none()
        && !obj.reconcile_requested()
        && let Some(wait) = ctx.backing_off(&key, obj.meta().generation)
    {
        return Ok(kube::runtime::controller::Action::requeue(wait));
    }
    let started = std::time::Instant::now();
    let ns = obj
        .meta()
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let api: kube::Api<K> = kube::Api::namespaced(ctx.client.clone(), &ns);
    let span = tracing::info_span!("reconcile", object = %key);
    let result = finalizer::finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            FinalizerEvent::Apply(o) => apply(o, ctx.clone()).await,
            FinalizerEvent::Cleanup(o) => cleanup(o, ctx.clone()).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_err() {
        ctx.metrics
            .reconciliations
            .with_label_values(&["error"])
            .inc();
    }
    result
}

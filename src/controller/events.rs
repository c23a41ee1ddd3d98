//! Kubernetes Events: one per happening of a reconcile, and the drift it corrected.

use kube::Resource;
use kube::runtime::events::{Event, EventType};

use super::Context;

impl Context {
    pub(super) async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        if !self.may_write() {
            return;
        }
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(object = ?obj.meta().name, error = %e, "could not publish an event");
        }
    }
}

/// Publishes what a reconcile did: a `DriftCorrected` warning listing `drift`, the
/// changes that corrected drift (`lead` says what drifted), then one Event per
/// happening, each also logged.
pub(super) async fn publish_changes<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    key: &str,
    drift: &[crate::reconcile::plan::Change],
    events: &[crate::reconcile::Happening],
    lead: &str,
) {
    if !drift.is_empty() {
        let changes: Vec<String> = drift.iter().map(ToString::to_string).collect();
        let message = format!("{lead}: {}", changes.join("; "));
        tracing::warn!(object = %key, %message, "drift corrected");
        ctx.publish(obj, EventType::Warning, "DriftCorrected", message)
            .await;
    }
    for h in events {
        tracing::info!(object = %key, reason = h.reason, "{}", h.message);
        ctx.publish(obj, EventType::Normal, h.reason, h.message.clone())
            .await;
    }
}

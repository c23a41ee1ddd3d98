//! What Cloudflare has for a CloudflareWorker: its script (with the tags flaredock
//! recorded on the last upload) and which of its classes have a Durable Object
//! namespace. Reads only, from the shared cached view.

use super::plan::ObservedWorker;
use crate::cloudflare::ApiError;
use crate::reconcile::Reconciler;

impl Reconciler {
    /// What the account has for the script `script`.
    pub(super) async fn observe_worker(&self, script: &str) -> Result<ObservedWorker, ApiError> {
        Ok(ObservedWorker {
            script: self.view.script(script).await?,
            namespaced_classes: self.view.namespaced_classes(script).await?,
        })
    }
}

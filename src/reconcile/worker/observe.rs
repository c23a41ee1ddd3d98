//! What Cloudflare has for a CloudflareWorker: its script (with the tags flaredock
//! recorded on the last upload), which of its classes have a Durable Object
//! namespace, and how it is reached ([`super::reach`]). Reads only, from the shared
//! cached view.

use super::plan::ObservedWorker;
use super::reach::{DesiredReach, RecordedReach};
use crate::cloudflare::ApiError;
use crate::reconcile::Reconciler;

impl Reconciler {
    /// What the account has for the script `script`; its reachability as far as
    /// `reach` (what the spec asks, what the status records) names it.
    pub(super) async fn observe_worker(
        &self,
        script: &str,
        reach: Option<(&DesiredReach, RecordedReach)>,
    ) -> Result<ObservedWorker, ApiError> {
        let info = self.view.script(script).await?;
        let reach = match reach {
            Some((want, recorded)) => {
                self.observe_reach(script, info.is_some(), want, recorded)
                    .await?
            }
            None => Default::default(),
        };
        Ok(ObservedWorker {
            script: info,
            namespaced_classes: self.view.namespaced_classes(script).await?,
            reach,
        })
    }
}

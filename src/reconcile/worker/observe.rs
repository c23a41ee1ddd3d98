//! What Cloudflare has for a CloudflareWorker: its script (with the tags flaredock
//! recorded on the last upload), which of its classes have a Durable Object
//! namespace, and how it is reached ([`super::reach`]). Reads only, from the shared
//! cached view. For a script flaredock did not upload (no hash tag: adoption,
//! `managementPolicy: Observe`), or one uploaded over since, also its settings and
//! which of its classes run a container application, so that the plan compares field
//! by field (`bindings.rs`) rather than showing `unknown`.

use super::model::RecordedTags;
use super::plan::ObservedWorker;
use super::reach::{DesiredReach, RecordedReach};
use crate::cloudflare::ApiError;
use crate::reconcile::Reconciler;

impl Reconciler {
    /// What the account has for the script `script`; its reachability as far as
    /// `reach` (what the spec asks, what the status records) names it; `last_etag` is
    /// the version flaredock saw in sync last (status `uploadEtag`).
    pub(super) async fn observe_worker(
        &self,
        script: &str,
        reach: Option<(&DesiredReach, RecordedReach)>,
        last_etag: Option<&str>,
    ) -> Result<ObservedWorker, ApiError> {
        let info = self.view.script(script).await?;
        let reach = match reach {
            Some((want, recorded)) => {
                self.observe_reach(script, info.is_some(), want, recorded)
                    .await?
            }
            None => Default::default(),
        };
        let namespaced_classes = self.view.namespaced_classes(script).await?;
        let mut observed = ObservedWorker {
            script: info,
            namespaced_classes,
            reach,
            ..Default::default()
        };
        let foreign = observed
            .script
            .as_ref()
            .is_some_and(|s| RecordedTags::read(s).hashes.is_none());
        observed.uploaded_elsewhere = !foreign
            && observed
                .script
                .as_ref()
                .and_then(|s| s.etag.as_deref())
                .zip(last_etag)
                .is_some_and(|(now, last)| now != last);
        if foreign || observed.uploaded_elsewhere {
            let client = self.view.client();
            observed.settings = Some(client.script_settings(script).await?);
            let modules = client.download_script(script).await?;
            observed.live_modules_hash = Some(super::bindings::content_hash(
                modules.iter().map(|(n, c)| (n.as_str(), c.as_slice())),
            ));
            for class in &observed.namespaced_classes {
                if let Some(ns) = self.view.namespace(script, class).await?
                    && self.view.application_by_namespace(&ns.id).await?.is_some()
                {
                    observed.container_enabled.push(class.clone());
                }
            }
        }
        Ok(observed)
    }
}

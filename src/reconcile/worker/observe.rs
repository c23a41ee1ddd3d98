//! What Cloudflare has for a CloudflareWorker: its script (with the tags flaredock
//! recorded on the last upload), which of its classes have a Durable Object
//! namespace, and how it is reached ([`super::reach`]). Reads only, from the shared
//! cached view. For a script flaredock did not upload (no hash tag: adoption,
//! `managementPolicy: Observe`), or one uploaded over since, also its settings and
//! which of its classes run a container application, so that the plan compares field
//! by field (`bindings.rs`) rather than showing `unknown`.

use super::model::RecordedTags;
use super::plan::ObservedWorker;
use super::reach::{DesiredReach, ReachRecord, RecordedReach, ScriptSide};
use crate::cloudflare::ApiError;
use crate::reconcile::Reconciler;

impl Reconciler {
    /// What the account has for the script `script`; its reachability as far as
    /// `reach` (what the spec asks, what the status records) names it; `last_etag` is
    /// the version flaredock saw in sync last (status `uploadEtag`); `observe_only`:
    /// `managementPolicy: Observe` (the reachability is read, never taken from the
    /// record on the script).
    pub(super) async fn observe_worker(
        &self,
        script: &str,
        reach: Option<(&DesiredReach, RecordedReach)>,
        last_etag: Option<&str>,
        observe_only: bool,
    ) -> Result<ObservedWorker, ApiError> {
        let info = self.view.script(script).await?;
        let tags = info.as_ref().map(RecordedTags::read);
        let foreign = tags.as_ref().is_some_and(|t| t.hashes.is_none());
        let uploaded_elsewhere = !foreign
            && info
                .as_ref()
                .and_then(|s| s.etag.as_deref())
                .zip(last_etag)
                .is_some_and(|(now, last)| now != last);
        let reach = match reach {
            Some((want, recorded)) => {
                let side = ScriptSide {
                    exists: info.is_some(),
                    record: tags
                        .as_ref()
                        .filter(|_| !foreign)
                        .and_then(|t| t.reach.as_deref())
                        .and_then(ReachRecord::parse),
                    may_trust: !foreign && !uploaded_elsewhere && !observe_only,
                    adopting: foreign,
                    fresh_lists: false,
                };
                self.observe_reach(script, side, want, recorded).await?
            }
            None => Default::default(),
        };
        let namespaced_classes = self.view.namespaced_classes(script).await?;
        let mut observed = ObservedWorker {
            script: info,
            namespaced_classes,
            reach,
            uploaded_elsewhere,
            ..Default::default()
        };
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

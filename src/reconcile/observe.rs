//! What Cloudflare has for a CloudflareContainer: its application (and the rollout it
//! heads to), its Worker's script and Durable Object namespace, what a rename left
//! behind, what is still being deleted, and what it takes to get its image there.
//! Reads only, mostly from the shared cached [`super::view::AccountView`]: nothing is
//! copied, built, pushed or minted.

use super::Reconciler;
use super::images::Peers;
use super::model::{self, Desired, Observed};
use super::plan;
use crate::cloudflare::ApiError;
use crate::spec::CloudflareContainer;

/// What was observed, and the active rollout's id and progress (percent on spec).
pub type Observation = (Observed, Option<(String, i64)>);

impl Reconciler {
    /// Reads what Cloudflare has for this object (mostly from the cached view) and
    /// what it takes to get its image there. Reads only: nothing is copied, built,
    /// pushed or minted.
    pub async fn observe(
        &self,
        obj: &CloudflareContainer,
        desired: &Desired,
        peers: &dyn Peers,
        confirm: bool,
    ) -> Result<Observation, ApiError> {
        let image = self.images.observe(obj, peers, self.cluster.id()).await;
        // What objects being deleted recorded is being deleted, restart or not.
        self.view
            .set_apart_being_deleted(peers.being_deleted(), &self.cluster)
            .await?;
        self.observe_with(image, desired, confirm).await
    }

    /// `confirm`: read the application's versions even without an active rollout, so
    /// that Ready rests on what Cloudflare says runs (the first Ready of a generation).
    pub(super) async fn observe_with(
        &self,
        image: model::ImageState,
        desired: &Desired,
        confirm: bool,
    ) -> Result<Observation, ApiError> {
        let view = &self.view;
        let application = view.application_by_name(&desired.application_name).await?;
        let (namespace, script) = match desired.worker.script() {
            Some(script) => (
                view.namespace(script, &desired.class_name).await?,
                view.script(script).await?,
            ),
            None => (None, None),
        };
        let mut progress = None;
        let mut target_configuration = None;
        let mut on_spec = None;
        if let Some(app) = &application
            && (confirm || app.active_rollout_id.is_some())
        {
            let versions = view.client().list_versions(&app.id).await?;
            if let model::ImageState::Ready(reference) = &image {
                let pct: i64 = versions
                    .iter()
                    .filter(|v| plan::runs_spec(desired, reference, &v.configuration))
                    .map(|v| v.percentage)
                    .sum();
                on_spec = Some(pct.clamp(0, 100));
            }
            if let Some(rollout_id) = &app.active_rollout_id {
                let newest = versions.iter().max_by_key(|v| v.version);
                progress = Some((rollout_id.clone(), on_spec.unwrap_or(0)));
                target_configuration = match view.rollout_target(rollout_id).await {
                    Some(t) => Some(t),
                    None => newest.map(|v| v.configuration.clone()),
                };
            }
        }
        let owned_elsewhere = view
            .applications_owned_by(&desired.owner)
            .await?
            .into_iter()
            // A rename's leftover is the application this object's status recorded,
            // nothing else carrying the label: a label can be copied, an id cannot.
            .filter(|a| {
                a.name != desired.application_name
                    && desired.recorded_application.as_deref() == Some(a.id.as_str())
            })
            .collect();
        let namespace_application = match &namespace {
            Some(ns) => view
                .application_by_namespace(&ns.id)
                .await?
                .filter(|a| application.as_ref().is_none_or(|b| b.id != a.id)),
            None => None,
        };
        let deleting = view
            .deleting_in_the_way(
                &desired.application_name,
                namespace.as_ref().map(|n| n.id.as_str()),
            )
            .await?;
        Ok((
            Observed {
                deleting,
                image,
                application,
                target_configuration,
                owned_elsewhere,
                namespace,
                namespace_application,
                script,
                on_spec,
            },
            progress,
        ))
    }
}

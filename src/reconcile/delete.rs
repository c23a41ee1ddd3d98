//! Deleting what a CloudflareContainer owns. Cloudflare deletes applications
//! asynchronously (`DELETE` answers "starting asynchronous deletion" and the application
//! stays listed, name and namespace taken, until it is gone), so a delete is done only
//! when a fresh read no longer shows the application (or a read by id answers 404).
//!
//! Every decision rests on fresh reads of Cloudflare, never on the cached view or on a
//! memory of earlier deletes: a controller that restarts in the middle, or another
//! replica, comes to the same answer. While the application is listed, each call sends
//! its `DELETE` again; Cloudflare answers a delete of an application already being
//! deleted like the first one (and 404 once it is gone, which counts as gone).

use std::collections::HashMap;

use super::model::{Desired, owner_of};
use super::{DeleteOutcome, Reconciler, WaitingOn};
use crate::cloudflare::ApiError;
use crate::cloudflare::types::Application;
use crate::spec::{CloudflareContainer, DeletionPolicy};

impl Reconciler {
    /// Deletes what this object owns, as its `deletionPolicy` says; applications it does
    /// not own are never touched. [`DeleteOutcome::Waiting`] while Cloudflare still
    /// lists an application being deleted: call again (the controller keeps its
    /// finalizer meanwhile).
    pub async fn delete(&self, obj: &CloudflareContainer) -> Result<DeleteOutcome, ApiError> {
        let desired = Desired::from_spec(obj, &HashMap::new(), &self.cluster);
        let owned = self.owned_now(obj, &desired.owner).await?;
        let names = names_of(&owned);
        if desired.deletion_policy == DeletionPolicy::Orphan {
            return Ok(DeleteOutcome::Orphaned(names));
        }
        if owned.is_empty() {
            return Ok(DeleteOutcome::Deleted(vec![]));
        }
        for app in &owned {
            // `Ok(false)`: a 404, already gone.
            self.view.client().delete_application(&app.id).await?;
            // The view keeps it out of the way of other objects until it is gone (from
            // this fresh read: a restarted controller marks it again here).
            self.view.mark_deleting(app).await;
        }
        let left = self.owned_now(obj, &desired.owner).await?;
        if left.is_empty() {
            Ok(DeleteOutcome::Deleted(names))
        } else {
            Ok(DeleteOutcome::Waiting {
                names: names_of(&left),
                on: WaitingOn::Deletion,
            })
        }
    }

    /// The applications carrying `owner` in their owner label on a fresh list, and the
    /// one the status recorded, read by id when the list does not show it.
    async fn owned_now(
        &self,
        obj: &CloudflareContainer,
        owner: &str,
    ) -> Result<Vec<Application>, ApiError> {
        let client = self.view.client();
        let mut owned: Vec<Application> = client
            .list_applications()
            .await?
            .into_iter()
            .filter(|a| owner_of(a) == Some(owner))
            .collect();
        if let Some(id) = obj
            .status
            .as_ref()
            .and_then(|s| s.application_id.as_deref())
            && !owned.iter().any(|a| a.id == id)
        {
            match client.get_application(id).await {
                Ok(app) if owner_of(&app) == Some(owner) => owned.push(app),
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        owned.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(owned)
    }
}

fn names_of(apps: &[Application]) -> Vec<String> {
    apps.iter().map(|a| a.name.clone()).collect()
}

//! Deleting what a CloudflareContainer owns. Cloudflare deletes applications
//! asynchronously (`DELETE` answers "starting asynchronous deletion" and the application
//! stays listed, name and namespace taken, until it is gone), so a delete is done only
//! when a fresh read no longer shows the application (or a read by id answers 404).
//!
//! Every decision rests on fresh reads of Cloudflare, never on the cached view alone:
//! a first pass reads each candidate (the view's owned applications and the one the
//! status recorded) by id before its `DELETE`; the pass that finds it gone reads a list
//! sent after the `DELETE` was answered. A list older than the `DELETE` is not fresh
//! for it, but one list sent after the `DELETE`s of many objects is fresh for all of
//! them: the view shares it ([`AccountView::list_after`]), so a mass delete costs one
//! list per poll, not one per object and pass (which made deleting N objects list
//! O(N²) applications). While a list still shows an application whose `DELETE` was
//! accepted, the pass only reads it again by id (a 404: gone) and waits for the next
//! list; its `DELETE` is sent once (again only after a failure, or by a pass that
//! does not know it was sent: a restarted controller, another replica). What the view remembers of a delete (when its
//! `DELETE` was answered) is a bounded cache: a controller that restarts in
//! the middle, or another replica, starts with a first pass and comes to the same
//! answer.
//!
//! [`AccountView::list_after`]: super::view::AccountView::list_after

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
        let owner = desired.owner.as_str();
        if desired.deletion_policy == DeletionPolicy::Orphan {
            let list = self.view.list_after(tokio::time::Instant::now()).await?;
            let owned = self.owned_in(obj, owner, &list).await?;
            return Ok(DeleteOutcome::Orphaned(names_of(&owned)));
        }
        // A later pass that finds everything gone reports nothing deleted (as a pass
        // that finds nothing does); the pass that sent the `DELETE`s named them.
        let (since, names) = match self.view.delete_pending(owner) {
            Some(since) => (since, Vec::new()),
            None => {
                // First pass (or a restarted controller): each candidate is read
                // by id before its `DELETE`, so the decision rests on a fresh read.
                let mut names = Vec::new();
                let mut still = Vec::new();
                for app in self.candidates(obj, owner).await? {
                    if self.view.client().delete_application(&app.id).await? {
                        self.view.note_delete_sent(&app.id);
                        self.view.mark_deleting(&app).await;
                        names.push(app.name.clone());
                        match self.view.client().get_application(&app.id).await {
                            Err(ApiError::NotFound { .. }) => {}
                            Ok(_) => still.push(app.name.clone()),
                            Err(e) => return Err(e),
                        }
                    }
                }
                names.sort();
                self.view.note_delete(owner);
                if !still.is_empty() {
                    // Cloudflare deletes asynchronously: a list sent from now on
                    // tells, at the next pass.
                    return Ok(DeleteOutcome::Waiting {
                        names: still,
                        on: WaitingOn::Deletion,
                    });
                }
                // All gone at once: a list sent after the `DELETE`s tells whether the
                // view missed one.
                (tokio::time::Instant::now(), names)
            }
        };
        // A list sent after the `DELETE`s were answered, shared with the other deletes.
        let list = self.view.list_after(since).await?;
        let left = self.owned_in(obj, owner, &list).await?;
        if left.is_empty() {
            self.view.forget_delete(owner);
            return Ok(DeleteOutcome::Deleted(names));
        }
        // This fresh list found everything `owner` has left: each one gone on a read by
        // id after its `DELETE` (a 404) is gone for good.
        let mut still = Vec::new();
        for app in &left {
            // Its `DELETE` sent once; `Ok(false)`: a 404, already gone.
            if !self.view.delete_sent(&app.id) {
                if !self.view.client().delete_application(&app.id).await? {
                    continue;
                }
                self.view.note_delete_sent(&app.id);
            }
            self.view.mark_deleting(app).await;
            match self.view.client().get_application(&app.id).await {
                Err(ApiError::NotFound { .. }) => {}
                Ok(_) => still.push(app.name.clone()),
                Err(e) => return Err(e),
            }
        }
        let mut all = names;
        for n in names_of(&left) {
            if !all.contains(&n) {
                all.push(n);
            }
        }
        all.sort();
        if still.is_empty() {
            self.view.forget_delete(owner);
            return Ok(DeleteOutcome::Deleted(all));
        }
        self.view.note_delete(owner);
        Ok(DeleteOutcome::Waiting {
            names: still,
            on: WaitingOn::Deletion,
        })
    }

    /// What a first pass deletes: the applications the cached view gives `owner` and
    /// the one the status recorded, each read again by id (404: gone; another owner:
    /// not ours).
    async fn candidates(
        &self,
        obj: &CloudflareContainer,
        owner: &str,
    ) -> Result<Vec<Application>, ApiError> {
        let client = self.view.client();
        let mut ids: Vec<String> = self
            .view
            .applications_owned_by(owner)
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect();
        if let Some(id) = obj
            .status
            .as_ref()
            .and_then(|s| s.application_id.as_deref())
            && !ids.iter().any(|i| i == id)
        {
            ids.push(id.to_string());
        }
        let mut owned = Vec::new();
        for id in ids {
            match client.get_application(&id).await {
                Ok(app) if owner_of(&app) == Some(owner) => owned.push(app),
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        owned.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(owned)
    }

    /// The applications carrying `owner` in their owner label on `list` (a list of the
    /// whole account), and the one the status recorded, read by id when the list does
    /// not show it.
    async fn owned_in(
        &self,
        obj: &CloudflareContainer,
        owner: &str,
        list: &[Application],
    ) -> Result<Vec<Application>, ApiError> {
        let client = self.view.client();
        let mut owned: Vec<Application> = list
            .iter()
            .filter(|a| owner_of(a) == Some(owner))
            .cloned()
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

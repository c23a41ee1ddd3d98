//! Deleting a CloudflareWorker's script, as `deletionPolicy` says, on fresh reads.
//! The routes and custom domains the object made (its status, its spec; only while they
//! serve its script) are deleted first, whatever the policy. When the script is gone
//! (deleted by hand) or no longer this object's, the routes and domains its status
//! records are still deleted, on a fresh read, each only while it exists and serves
//! this script name or no script (Cloudflare leaves a deleted script's routes without
//! one); one that now serves another script is never touched.
//!
//! Durable Object data is never destroyed by default: `Orphan` (the default) leaves the
//! script in place; `Delete` sends `DELETE …/scripts/{name}` without `force`, and only
//! while the script has no Durable Object namespace (Cloudflare would refuse it anyway:
//! without `force` "delete will be stopped by associated … durable object"), otherwise
//! the script is kept with its data ([`DeleteOutcome::KeptData`]); only
//! `DeleteWithData` sends `force=true`, which deletes the namespaces and their data.
//!
//! The script goes after every application running on its classes: while a fresh
//! application list shows one on a namespace of the script, the outcome is
//! [`DeleteOutcome::Waiting`] (Cloudflare refuses to delete a script whose class backs
//! an application, and deletes applications asynchronously).

use std::collections::BTreeSet;

use super::model::RecordedTags;
use super::reach::{DesiredReach, RecordedReach, ScriptSide};
use crate::cloudflare::ApiError;
use crate::reconcile::{DeleteOutcome, Reconciler, WaitingOn};
use crate::spec::{CloudflareWorker, WorkerDeletionPolicy};

impl Reconciler {
    /// Deletes the Worker script as `deletionPolicy` says, decided on fresh reads of the
    /// script, namespace and application lists: a script this object does not own is
    /// never touched. The controller also waits until no CloudflareContainer binds the
    /// script (by `worker.name` or `worker.scriptName`).
    pub async fn delete_worker(&self, obj: &CloudflareWorker) -> Result<DeleteOutcome, ApiError> {
        let script = obj.script_name();
        // No upload of this script runs meanwhile (it could add a namespace).
        let lock = self.view.script_lock(script);
        let _guard = lock.lock().await;
        self.view.invalidate_scripts().await;
        let owned = match self.view.script(script).await? {
            Some(info) => {
                RecordedTags::read(&info).owner.as_deref()
                    == Some(obj.owner_id(&self.cluster).as_str())
            }
            None => false,
        };
        if !owned {
            // The script is not touched; what the status records this object made goes.
            for what in self.delete_recorded_reach(obj).await? {
                tracing::info!(script, "deleted {what} made by flaredock");
            }
            return Ok(DeleteOutcome::Deleted(vec![]));
        }
        // The routes and custom domains this object made go first, whatever the
        // policy: they serve nothing once the object is gone.
        for what in self.delete_reach(obj).await? {
            tracing::info!(script, "deleted {what} made by flaredock");
        }
        let policy = obj.spec.deletion_policy;
        if policy == WorkerDeletionPolicy::Orphan {
            return Ok(DeleteOutcome::Orphaned(vec![script.to_string()]));
        }
        let client = self.view.client();
        let namespaces: Vec<_> = client
            .list_namespaces()
            .await?
            .into_iter()
            .filter(|n| n.script.as_deref() == Some(script))
            .collect();
        let ids: BTreeSet<&str> = namespaces.iter().map(|n| n.id.as_str()).collect();
        let running: BTreeSet<String> = client
            .list_applications()
            .await?
            .into_iter()
            .filter(|a| a.namespace_id().is_some_and(|id| ids.contains(id)))
            .map(|a| a.name)
            .collect();
        if !running.is_empty() {
            return Ok(DeleteOutcome::Waiting {
                names: running.into_iter().collect(),
                on: WaitingOn::Applications,
            });
        }
        let classes: Vec<String> = namespaces
            .iter()
            .map(|n| n.class.clone().unwrap_or_else(|| n.id.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if policy == WorkerDeletionPolicy::Delete && !classes.is_empty() {
            return Ok(DeleteOutcome::KeptData {
                script: script.to_string(),
                classes,
            });
        }
        // Here `Delete` has no namespace to lose; `force` only for data it destroys.
        let force = policy == WorkerDeletionPolicy::DeleteWithData && !classes.is_empty();
        let deleted = client.delete_script(script, force).await;
        self.view.invalidate_namespaces().await;
        deleted?;
        self.view.remove_script(script).await;
        Ok(if force {
            DeleteOutcome::DeletedWithData {
                script: script.to_string(),
                classes,
            }
        } else {
            DeleteOutcome::Deleted(vec![script.to_string()])
        })
    }

    /// Deletes the routes and custom domains `obj`'s status records, after a fresh read:
    /// a route only while it exists and serves the script or no script (what Cloudflare
    /// leaves of a route whose script was deleted), a domain only while it serves the
    /// script. Never one that serves another script, never one the status does not name.
    async fn delete_recorded_reach(&self, obj: &CloudflareWorker) -> Result<Vec<String>, ApiError> {
        let script = obj.script_name();
        let recorded = RecordedReach::of(obj.status.as_ref());
        if recorded.routes.is_empty() && recorded.domains.is_empty() {
            return Ok(vec![]);
        }
        let have = self
            .observe_reach(
                script,
                ScriptSide {
                    fresh_lists: true,
                    ..Default::default()
                },
                &DesiredReach::default(),
                recorded.clone(),
            )
            .await?;
        let client = self.view.client();
        let mut gone = Vec::new();
        for made in &recorded.routes {
            let ours = have.routes.get(&made.zone_id).is_some_and(|rs| {
                rs.iter()
                    .any(|x| x.id == made.id && x.script.as_deref().is_none_or(|s| s == script))
            });
            if !ours {
                continue;
            }
            let deleted = client.delete_route(&made.zone_id, &made.id).await;
            self.note_route_delete(deleted.is_ok(), &made.zone_id, &made.id)
                .await;
            if deleted? {
                gone.push(format!("route {}", made.pattern));
            }
        }
        for made in &recorded.domains {
            let ours = have
                .domains
                .iter()
                .any(|x| x.id == made.id && x.service == script);
            if !ours {
                continue;
            }
            let detached = client.detach_domain(&made.id).await;
            self.note_domain_detach(detached.is_ok(), &made.id).await;
            if detached? {
                gone.push(format!("custom domain {}", made.hostname));
            }
        }
        Ok(gone)
    }
}

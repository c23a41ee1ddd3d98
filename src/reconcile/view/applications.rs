//! The application list, the deletion bookkeeping (the applications being deleted,
//! the `DELETE`s already sent, what other objects are deleting) and the rollout targets.
//! See the parent module for why the deleting set is a cache, not a memory.

use std::collections::HashMap;
use std::sync::Arc;

use super::{AccountView, State};
use crate::cloudflare::ApiError;
use crate::cloudflare::types::*;
use crate::spec::OWNER_LABEL;

/// The application list, indexed the ways reconciles look it up (by name, by owner
/// label, by namespace), so that a lookup does not scan the account.
#[derive(Default)]
pub(super) struct Apps {
    pub(super) by_id: HashMap<String, Application>,
    by_name: HashMap<String, String>,
    by_owner: HashMap<String, std::collections::BTreeSet<String>>,
    by_namespace: HashMap<String, String>,
}

impl Apps {
    fn from(list: Vec<Application>) -> Apps {
        let mut apps = Apps::default();
        for a in list {
            apps.insert(a);
        }
        apps
    }

    fn insert(&mut self, app: Application) {
        self.remove(&app.id);
        self.by_name.insert(app.name.clone(), app.id.clone());
        if let Some(owner) = app.configuration.label(OWNER_LABEL) {
            self.by_owner
                .entry(owner.to_string())
                .or_default()
                .insert(app.id.clone());
        }
        if let Some(ns) = app.namespace_id() {
            self.by_namespace.insert(ns.to_string(), app.id.clone());
        }
        self.by_id.insert(app.id.clone(), app);
    }

    fn remove(&mut self, id: &str) {
        let Some(old) = self.by_id.remove(id) else {
            return;
        };
        if self.by_name.get(&old.name).is_some_and(|x| x == id) {
            self.by_name.remove(&old.name);
        }
        if let Some(owner) = old.configuration.label(OWNER_LABEL)
            && let Some(ids) = self.by_owner.get_mut(owner)
        {
            ids.remove(id);
            if ids.is_empty() {
                self.by_owner.remove(owner);
            }
        }
        if let Some(ns) = old.namespace_id()
            && self.by_namespace.get(ns).is_some_and(|x| x == id)
        {
            self.by_namespace.remove(ns);
        }
    }
}

/// Rollout targets kept at most (only rollouts still active are kept at all).
pub const ROLLOUT_TARGETS: usize = 4096;
/// Applications being deleted kept at most (only those still listed are kept at all).
pub const DELETING_ENTRIES: usize = 16_384;

impl State {
    /// A fresh list, with the applications being deleted set apart; what the list no
    /// longer shows leaves the deleting set, and the rollout targets of rollouts no
    /// longer active go.
    pub(super) fn set_list(&mut self, list: Vec<Application>) {
        let mut apps = Apps::from(list);
        self.deleting.retain(|id, _| apps.by_id.contains_key(id));
        let still: Vec<String> = self.deleting.keys().cloned().collect();
        for id in still {
            if let Some(app) = apps.by_id.get(&id).cloned() {
                apps.remove(&id);
                self.deleting.insert(id, app);
            }
        }
        let active: std::collections::HashSet<&str> = apps
            .by_id
            .values()
            .filter_map(|a| a.active_rollout_id.as_deref())
            .collect();
        self.rollout_targets
            .retain(|id, _| active.contains(id.as_str()));
        self.apps = Some(apps);
        self.apps_fetched = Some(tokio::time::Instant::now());
    }
}

/// While deletes are pending, the list is read again at most this often.
const DELETING_POLL: std::time::Duration = std::time::Duration::from_secs(1);

impl AccountView {
    /// An application list whose request was sent at or after `after` (fresh for a
    /// delete whose `DELETE` was answered by then): the shared one when it is recent
    /// enough, else a new one (which also refreshes the cached view).
    pub async fn list_after(
        &self,
        after: tokio::time::Instant,
    ) -> Result<Arc<Vec<Application>>, ApiError> {
        let mut shared = self.delete_list.lock().await;
        if let Some((sent, list)) = shared.as_ref()
            && *sent >= after
        {
            return Ok(list.clone());
        }
        let sent = tokio::time::Instant::now();
        let list = self.client.list_applications().await?;
        {
            let listed: std::collections::HashSet<&str> =
                list.iter().map(|a| a.id.as_str()).collect();
            crate::lock(&self.delete_sent).retain(|id, _| listed.contains(id.as_str()));
        }
        self.state.lock().await.set_list(list.clone());
        let list = Arc::new(list);
        *shared = Some((sent, list.clone()));
        Ok(list)
    }

    /// Whether the `DELETE` of application `id` was accepted (and a fresh list has not
    /// yet shown it gone).
    pub fn delete_sent(&self, id: &str) -> bool {
        crate::lock(&self.delete_sent).contains_key(id)
    }

    /// Records that Cloudflare accepted the `DELETE` of application `id`.
    pub fn note_delete_sent(&self, id: &str) {
        crate::lock(&self.delete_sent).insert(id.to_string(), ());
    }

    /// What [`AccountView::note_delete`] recorded for `owner`.
    pub fn delete_pending(&self, owner: &str) -> Option<tokio::time::Instant> {
        crate::lock(&self.delete_pending).get(owner).cloned()
    }

    /// Records that `owner`'s `DELETE`s were answered (or a list still showed its
    /// applications) now: only a list sent from now on is fresh for it.
    pub fn note_delete(&self, owner: &str) {
        crate::lock(&self.delete_pending).insert(owner.to_string(), tokio::time::Instant::now());
    }

    /// `owner` is deleted: its record goes.
    pub fn forget_delete(&self, owner: &str) {
        crate::lock(&self.delete_pending).remove(owner);
    }

    async fn with_apps<R>(&self, f: impl FnOnce(&Apps) -> R) -> Result<R, ApiError> {
        let mut st = self.state.lock().await;
        let waiting_for_deletes =
            !st.deleting.is_empty() && st.apps_fetched.is_none_or(|t| t.elapsed() >= DELETING_POLL);
        if st.apps.is_none() || waiting_for_deletes {
            let list = self.client.list_applications().await?;
            st.set_list(list);
        }
        Ok(f(st.apps.as_ref().unwrap_or(&Apps::default())))
    }

    /// An application flaredock deleted that still holds `name` or the namespace
    /// `namespace_id` (its asynchronous deletion has not finished).
    pub async fn deleting_in_the_way(
        &self,
        name: &str,
        namespace_id: Option<&str>,
    ) -> Result<Option<Application>, ApiError> {
        self.with_apps(|_| ()).await?;
        let st = self.state.lock().await;
        Ok(st
            .deleting
            .values()
            .find(|a| {
                a.name == name || (namespace_id.is_some() && a.namespace_id() == namespace_id)
            })
            .cloned())
    }

    /// Whether `id` is an application flaredock deleted that is still listed.
    pub async fn is_deleting(&self, id: &str) -> bool {
        self.state.lock().await.deleting.contains_key(id)
    }

    /// Lists the applications again now (used after a create whose answer was lost).
    pub async fn refresh_applications(&self) -> Result<(), ApiError> {
        let list = self.client.list_applications().await?;
        self.state.lock().await.set_list(list);
        Ok(())
    }

    /// Marks the application list stale when it is older than `age` (objects waiting
    /// for a rollout need fresh news, at most one list per `age` for the account).
    pub async fn expire_applications(&self, age: std::time::Duration) {
        let mut st = self.state.lock().await;
        if st.apps_fetched.is_some_and(|t| t.elapsed() >= age) {
            st.apps = None;
        }
    }

    pub async fn application_by_name(&self, name: &str) -> Result<Option<Application>, ApiError> {
        self.with_apps(|a| a.by_name.get(name).and_then(|id| a.by_id.get(id)).cloned())
            .await
    }

    pub async fn application_by_namespace(
        &self,
        namespace_id: &str,
    ) -> Result<Option<Application>, ApiError> {
        self.with_apps(|a| {
            a.by_namespace
                .get(namespace_id)
                .and_then(|id| a.by_id.get(id))
                .cloned()
        })
        .await
    }

    /// Applications carrying `owner` in their owner label.
    pub async fn applications_owned_by(&self, owner: &str) -> Result<Vec<Application>, ApiError> {
        self.with_apps(|a| {
            let mut v: Vec<Application> = a
                .by_owner
                .get(owner)
                .into_iter()
                .flatten()
                .filter_map(|id| a.by_id.get(id))
                .cloned()
                .collect();
            v.sort_by(|x, y| x.name.cmp(&y.name));
            v
        })
        .await
    }

    pub async fn all_applications(&self) -> Result<Vec<Application>, ApiError> {
        self.with_apps(|a| a.by_id.values().cloned().collect())
            .await
    }

    pub async fn upsert_application(&self, app: Application) {
        if let Some(apps) = self.state.lock().await.apps.as_mut() {
            apps.insert(app);
        }
    }

    /// Records that flaredock deleted this application: it is no longer looked up as
    /// live, and it blocks its name and namespace until a list no longer shows it.
    pub async fn remove_application(&self, id: &str) {
        let mut st = self.state.lock().await;
        let removed = st.apps.as_mut().and_then(|apps| {
            let app = apps.by_id.get(id).cloned();
            apps.remove(id);
            app
        });
        if let Some(app) = removed {
            st.deleting.insert(id.to_string(), app);
        }
    }

    /// Records that `app`, as a fresh read just showed it, is being deleted (its
    /// `DELETE` was accepted): kept out of live lookups, its name and namespace taken,
    /// until a list no longer shows it. Unlike [`AccountView::remove_application`],
    /// needs no list in the view: a restarted controller's delete pass marks what it
    /// finds before any list was read.
    pub async fn mark_deleting(&self, app: &Application) {
        let mut st = self.state.lock().await;
        if let Some(apps) = st.apps.as_mut() {
            apps.remove(&app.id);
        }
        st.deleting.insert(app.id.clone(), app.clone());
    }

    /// Sets apart, as being deleted, the applications that objects being deleted
    /// recorded in their status (and that still carry that object's owner label): the
    /// Kubernetes side of "being deleted", which a restart does not lose, taken before
    /// the object's own delete pass has run again. Reads the list when the view has
    /// none; nothing when no object is being deleted.
    pub async fn set_apart_being_deleted(
        &self,
        records: &[crate::reconcile::images::BeingDeleted],
        cluster: &crate::spec::ClusterIdentity,
    ) -> Result<(), ApiError> {
        if records.is_empty() {
            return Ok(());
        }
        self.with_apps(|_| ()).await?;
        let mut guard = self.state.lock().await;
        let st = &mut *guard;
        let Some(apps) = st.apps.as_mut() else {
            return Ok(());
        };
        for r in records {
            let owner = cluster.owner(&r.namespace, &r.name);
            let ours = apps
                .by_id
                .get(&r.application_id)
                .is_some_and(|a| a.configuration.label(OWNER_LABEL) == Some(owner.as_str()));
            if ours && let Some(app) = apps.by_id.get(&r.application_id).cloned() {
                apps.remove(&app.id);
                st.deleting.insert(app.id.clone(), app);
            }
        }
        Ok(())
    }

    /// Records a rollout we started: the application heads to its target.
    pub async fn record_rollout(&self, application_id: &str, rollout: &ApplicationRollout) {
        let mut st = self.state.lock().await;
        st.rollout_targets
            .insert(rollout.id.clone(), rollout.target_configuration.clone());
        if let Some(apps) = st.apps.as_mut()
            && let Some(app) = apps.by_id.get_mut(application_id)
        {
            app.active_rollout_id = Some(rollout.id.clone());
        }
    }

    /// Target configuration of a rollout flaredock started, if known.
    pub async fn rollout_target(&self, rollout_id: &str) -> Option<DeploymentConfiguration> {
        self.state
            .lock()
            .await
            .rollout_targets
            .peek(rollout_id)
            .cloned()
    }
}

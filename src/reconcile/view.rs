//! One cached view of a Cloudflare account shared by every reconcile: the application
//! list and the Durable Object namespaces (one call each, not one per object), the
//! Worker settings read so far, and the rollouts flaredock started. Refreshed when
//! marked stale and updated in place by our own writes.
//!
//! **Bounds.** The application, namespace and script maps mirror the account's last
//! lists and are replaced whole by each list (so they follow the account, and an
//! application, namespace or script that is gone leaves with the next list). The
//! rest has a budget: the zones' route lists keep at most `ZONE_ROUTES` zones (least
//! recently used first out; the custom domain list is one list), both dropped with
//! every resync; the rollout targets keep only rollouts a list still shows
//! active (and at most `ROLLOUT_TARGETS` of them), the applications being deleted
//! only those a list still shows (at most `DELETING_ENTRIES`), and a script's lock
//! is dropped as soon as no reconcile holds or waits for it. [`AccountView::stats`]
//! says how full each is (the metric `flaredock_cache_entries`).
//!
//! **What is being deleted is not a memory.** Cloudflare's schema has no "deleting"
//! state: an application being deleted is listed, and read by id, like a live one,
//! until it is gone. The `deleting` set below is only a cache over facts that survive
//! a restart, rebuilt from fresh reads whenever they are acted on:
//! - an object being deleted keeps its finalizer (its Kubernetes object, its
//!   `deletionTimestamp` and its recorded `status.applicationId` stay) until a fresh
//!   list no longer shows its applications; each delete pass (`Reconciler::delete`,
//!   which the controller runs for it again after a restart) reads Cloudflare afresh,
//!   sends the `DELETE` again and marks here what it found ([`AccountView::mark_deleting`]);
//! - before that pass, every other object's observe sets apart what the objects being
//!   deleted recorded (`Peers::being_deleted`: `deletionTimestamp`, `deletionPolicy:
//!   Delete`, `status.applicationId`, checked against the application's owner label
//!   on the list; [`AccountView::set_apart_being_deleted`]), so the order in which a
//!   restarted controller reconciles its objects does not matter;
//! - a rename's leftover is found again from the object's recorded application id or
//!   from the Durable Object namespace it still holds, and deleted again (after a
//!   fresh read by id) by the plan, which keeps its successor waiting meanwhile.
//!
//! An entry leaves the set as soon as a fresh list no longer shows it (gone), so a
//! restarted controller (an empty set) and this one come to the same answer: nothing
//! being deleted is adopted, patched or taken as live, and the finalizer holds until
//! it is gone (`tests/bounds.rs`,
//! `a_restart_mid_delete_adopts_and_patches_nothing_being_deleted`). Not covered: an
//! object renamed back to the name of its own leftover while that is still being
//! deleted, after a restart (its status no longer records the leftover's id): the
//! rollout it then sends is refused by Cloudflare as being deleted (the emulator
//! answers 409) until the application is gone; nothing is changed at Cloudflare.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::bounded::{BoundedMap, CacheStats};
use crate::cloudflare::routing::{WorkerRoute, WorkersDomain};
use crate::cloudflare::types::*;
use crate::cloudflare::{ApiError, CloudflareClient};
use crate::spec::OWNER_LABEL;

/// The application list, indexed the ways reconciles look it up (by name, by owner
/// label, by namespace), so that a lookup does not scan the account.
#[derive(Default)]
struct Apps {
    by_id: HashMap<String, Application>,
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

/// Scripts whose reachability reads are remembered at most.
pub const REACH_CHECKED: usize = 16_384;

/// Zones whose route lists are kept at most (least recently used forgotten first).
pub const ZONE_ROUTES: usize = 1024;

/// The reach lists shared by every Worker of a pass: each zone's routes and the
/// account's custom domains, listed once, updated in place by our own writes, dropped
/// by [`AccountView::invalidate`].
struct ReachLists {
    routes: BoundedMap<String, Vec<WorkerRoute>>,
    domains: Option<Vec<WorkersDomain>>,
}

/// How old a script list may be before a script missing from it is looked up again.
const MISSING_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

struct State {
    apps: Option<Apps>,
    apps_fetched: Option<tokio::time::Instant>,
    namespaces: Option<Namespaces>,
    /// The account's scripts by name (one `GET /workers/scripts`).
    scripts: Option<HashMap<String, ScriptInfo>>,
    scripts_fetched: Option<tokio::time::Instant>,
    /// Target configuration of rollouts flaredock started, by rollout id.
    rollout_targets: BoundedMap<String, DeploymentConfiguration>,
    /// Applications flaredock deleted that the account may still list: Cloudflare
    /// deletes asynchronously, and their name and namespace stay taken until they are
    /// gone. Not looked up as live; kept until a list no longer shows them. A cache
    /// over fresh reads (see the module's documentation), not a memory.
    deleting: BoundedMap<String, Application>,
}

impl Default for State {
    fn default() -> Self {
        State {
            apps: None,
            apps_fetched: None,
            namespaces: None,
            scripts: None,
            scripts_fetched: None,
            rollout_targets: BoundedMap::with_entries(ROLLOUT_TARGETS),
            deleting: BoundedMap::with_entries(DELETING_ENTRIES),
        }
    }
}

impl State {
    /// A fresh list, with the applications being deleted set apart; what the list no
    /// longer shows leaves the deleting set, and the rollout targets of rollouts no
    /// longer active go.
    fn set_list(&mut self, list: Vec<Application>) {
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

/// The namespace list, indexed by (script, class).
struct Namespaces {
    by_key: HashMap<(String, String), DurableObjectNamespace>,
    classes_of: HashMap<String, Vec<String>>,
}

impl Namespaces {
    fn from(list: Vec<DurableObjectNamespace>) -> Namespaces {
        let mut by_key = HashMap::new();
        let mut classes_of: HashMap<String, Vec<String>> = HashMap::new();
        for n in list {
            if let (Some(script), Some(class)) = (n.script.clone(), n.class.clone()) {
                let list = classes_of.entry(script.clone()).or_default();
                if !list.contains(&class) {
                    list.push(class.clone());
                }
                // The first one listed wins (the list may hold preview namespaces too).
                by_key.entry((script, class)).or_insert(n);
            }
        }
        for classes in classes_of.values_mut() {
            classes.sort();
        }
        Namespaces { by_key, classes_of }
    }
}

/// The cached view of one account.
pub struct AccountView {
    client: CloudflareClient,
    state: Mutex<State>,
    /// One lock per Worker script, so that two objects never patch one script at once.
    script_locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Scripts whose workers.dev state and crons were read since the view was last
    /// marked stale (`worker::reach::ReachReads::OncePerResync`). A cache only: a
    /// lost entry means two more reads.
    reach_checked: std::sync::Mutex<BoundedMap<String, ()>>,
    /// Applications whose `DELETE` Cloudflare accepted and that the last fresh list
    /// still showed: their `DELETE` is not sent again, they are only read again. A
    /// cache only: a lost entry (a restart) means one more `DELETE`, never a wrong
    /// answer.
    delete_sent: std::sync::Mutex<BoundedMap<String, ()>>,
    /// The last application list read for deletes, with the instant its request was
    /// sent: shared by every delete pass that needs a list sent after its `DELETE`
    /// (so deleting N objects costs one list per poll, not one per object).
    delete_list: Mutex<Option<(tokio::time::Instant, Arc<Vec<Application>>)>>,
    /// Per owner being deleted: the instant after which a list is fresh for it (its
    /// last `DELETE` was answered, or the last list still showed its applications).
    /// A cache only: a lost entry means one more `GET` and `DELETE` by id, never a
    /// wrong answer.
    delete_pending: std::sync::Mutex<BoundedMap<String, tokio::time::Instant>>,
    /// Zone routes and custom domains (held across a list: Workers observed at once
    /// list once).
    reach_lists: Mutex<ReachLists>,
}

impl AccountView {
    pub fn new(client: CloudflareClient) -> Self {
        AccountView {
            client,
            state: Mutex::new(State::default()),
            script_locks: Default::default(),
            delete_list: Mutex::new(None),
            reach_checked: std::sync::Mutex::new(BoundedMap::with_entries(REACH_CHECKED)),
            delete_sent: std::sync::Mutex::new(BoundedMap::with_entries(DELETING_ENTRIES)),
            delete_pending: std::sync::Mutex::new(BoundedMap::with_entries(DELETING_ENTRIES)),
            reach_lists: Mutex::new(ReachLists {
                routes: BoundedMap::with_entries(ZONE_ROUTES),
                domains: None,
            }),
        }
    }

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

    pub fn client(&self) -> &CloudflareClient {
        &self.client
    }

    /// Marks everything stale: the next read lists again (a resync), and each Worker's
    /// workers.dev state and crons are read again once.
    pub async fn invalidate(&self) {
        let mut st = self.state.lock().await;
        st.apps = None;
        st.namespaces = None;
        st.scripts = None;
        crate::lock(&self.reach_checked).clear();
        drop(st);
        let mut lists = self.reach_lists.lock().await;
        lists.routes.clear();
        lists.domains = None;
    }

    /// The routes of zone `zone_id`: the shared list, or (`fresh`, or none kept) one
    /// read now, which becomes the shared one. A zone not found is not kept.
    pub async fn zone_routes(
        &self,
        zone_id: &str,
        fresh: bool,
    ) -> Result<Vec<WorkerRoute>, ApiError> {
        let mut lists = self.reach_lists.lock().await;
        if !fresh && let Some(rs) = lists.routes.get(zone_id) {
            return Ok(rs.clone());
        }
        lists.routes.remove(zone_id);
        let rs = self.client.list_routes(zone_id).await?;
        lists.routes.insert(zone_id.to_string(), rs.clone());
        Ok(rs)
    }

    /// The account's custom domains: the shared list, or (`fresh`, or none kept) one
    /// read now, which becomes the shared one.
    pub async fn workers_domains(&self, fresh: bool) -> Result<Vec<WorkersDomain>, ApiError> {
        let mut lists = self.reach_lists.lock().await;
        if !fresh && let Some(ds) = &lists.domains {
            return Ok(ds.clone());
        }
        lists.domains = None;
        let ds = self.client.list_domains().await?;
        lists.domains = Some(ds.clone());
        Ok(ds)
    }

    /// Records a route our create made (in the shared list of its zone, if kept).
    pub async fn route_created(&self, zone_id: &str, route: WorkerRoute) {
        let mut lists = self.reach_lists.lock().await;
        if let Some(mut rs) = lists.routes.remove(zone_id) {
            rs.retain(|r| r.id != route.id);
            rs.push(route);
            lists.routes.insert(zone_id.to_string(), rs);
        }
    }

    /// Records a route our delete removed (or found gone).
    pub async fn route_deleted(&self, zone_id: &str, id: &str) {
        let mut lists = self.reach_lists.lock().await;
        if let Some(mut rs) = lists.routes.remove(zone_id) {
            rs.retain(|r| r.id != id);
            lists.routes.insert(zone_id.to_string(), rs);
        }
    }

    /// Records a custom domain our attach left (it replaces any of its hostname).
    pub async fn domain_attached(&self, domain: WorkersDomain) {
        if let Some(ds) = self.reach_lists.lock().await.domains.as_mut() {
            ds.retain(|d| d.id != domain.id && !d.hostname.eq_ignore_ascii_case(&domain.hostname));
            ds.push(domain);
        }
    }

    /// Records a custom domain our detach removed (or found gone).
    pub async fn domain_detached(&self, id: &str) {
        if let Some(ds) = self.reach_lists.lock().await.domains.as_mut() {
            ds.retain(|d| d.id != id);
        }
    }

    /// Drops the shared reach lists (a write whose outcome is not known).
    pub async fn invalidate_reach_lists(&self) {
        let mut lists = self.reach_lists.lock().await;
        lists.routes.clear();
        lists.domains = None;
    }

    /// Whether `script`'s workers.dev state and crons were read (or written) since the
    /// view was last marked stale.
    pub fn reach_checked(&self, script: &str) -> bool {
        crate::lock(&self.reach_checked).contains_key(script)
    }

    pub fn note_reach_checked(&self, script: &str) {
        crate::lock(&self.reach_checked).insert(script.to_string(), ());
    }

    pub async fn invalidate_applications(&self) {
        self.state.lock().await.apps = None;
    }

    pub async fn invalidate_namespaces(&self) {
        self.state.lock().await.namespaces = None;
    }

    pub async fn invalidate_scripts(&self) {
        self.state.lock().await.scripts = None;
        crate::lock(&self.reach_checked).clear();
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

    /// The namespace of (script, class), from the cached list.
    pub async fn namespace(
        &self,
        script: &str,
        class: &str,
    ) -> Result<Option<DurableObjectNamespace>, ApiError> {
        self.with_namespaces(|n| {
            n.by_key
                .get(&(script.to_string(), class.to_string()))
                .cloned()
        })
        .await
    }

    async fn with_namespaces<R>(&self, f: impl FnOnce(&Namespaces) -> R) -> Result<R, ApiError> {
        let mut st = self.state.lock().await;
        let namespaces = match st.namespaces.take() {
            Some(n) => n,
            None => Namespaces::from(self.client.list_namespaces().await?),
        };
        let result = f(&namespaces);
        st.namespaces = Some(namespaces);
        Ok(result)
    }

    /// The script of this name from the account's script list (listed once, then kept
    /// current by our own uploads and deletes). A missing script is not trusted to the
    /// cache: the list is read again when it is older than `MISSING_RECHECK` (someone
    /// may have deployed it meanwhile).
    pub async fn script(&self, name: &str) -> Result<Option<ScriptInfo>, ApiError> {
        let mut st = self.state.lock().await;
        let missing_and_old = st.scripts.as_ref().is_some_and(|m| !m.contains_key(name))
            && st
                .scripts_fetched
                .is_none_or(|t| t.elapsed() >= MISSING_RECHECK);
        if st.scripts.is_none() || missing_and_old {
            let list = self.client.list_scripts().await?;
            st.scripts = Some(list.into_iter().map(|s| (s.id.clone(), s)).collect());
            st.scripts_fetched = Some(tokio::time::Instant::now());
        }
        Ok(st.scripts.as_ref().and_then(|m| m.get(name).cloned()))
    }

    /// Records a script as our upload left it.
    pub async fn set_script(&self, info: ScriptInfo) {
        if let Some(m) = self.state.lock().await.scripts.as_mut() {
            m.insert(info.id.clone(), info);
        }
    }

    /// Records the tags a write left on a script.
    pub async fn set_script_tags(&self, name: &str, tags: Vec<String>) {
        if let Some(info) = self
            .state
            .lock()
            .await
            .scripts
            .as_mut()
            .and_then(|m| m.get_mut(name))
        {
            info.tags = Some(tags);
        }
    }

    pub async fn remove_script(&self, name: &str) {
        if let Some(m) = self.state.lock().await.scripts.as_mut() {
            m.remove(name);
        }
    }

    /// Classes of `script` that have a Durable Object namespace (sorted).
    pub async fn namespaced_classes(&self, script: &str) -> Result<Vec<String>, ApiError> {
        self.with_namespaces(|n| n.classes_of.get(script).cloned().unwrap_or_default())
            .await
    }

    /// The lock serialising changes to one Worker script. Locks nobody holds or waits
    /// for any more are dropped here (bounded by the reconciles in flight).
    pub fn script_lock(&self, name: &str) -> Arc<Mutex<()>> {
        let mut locks = crate::lock(&self.script_locks);
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(name.to_string()).or_default().clone()
    }

    /// How full each of the view's caches is: (name, size and budget).
    pub async fn stats(&self) -> Vec<(&'static str, CacheStats)> {
        let st = self.state.lock().await;
        let listed = |n: usize| CacheStats {
            entries: n,
            max_entries: usize::MAX,
            max_bytes: usize::MAX,
            ..CacheStats::default()
        };
        let locks = crate::lock(&self.script_locks).len();
        let (zone_routes, domains) = {
            let lists = self.reach_lists.lock().await;
            (
                lists.routes.stats(),
                listed(lists.domains.as_ref().map_or(0, Vec::len)),
            )
        };
        vec![
            (
                "applications",
                listed(st.apps.as_ref().map_or(0, |a| a.by_id.len())),
            ),
            (
                "namespaces",
                listed(st.namespaces.as_ref().map_or(0, |n| n.by_key.len())),
            ),
            (
                "scripts",
                listed(st.scripts.as_ref().map_or(0, |s| s.len())),
            ),
            ("rollout_targets", st.rollout_targets.stats()),
            ("deleting", st.deleting.stats()),
            ("delete_pending", crate::lock(&self.delete_pending).stats()),
            ("reach_checked", crate::lock(&self.reach_checked).stats()),
            ("delete_sent", crate::lock(&self.delete_sent).stats()),
            ("script_locks", listed(locks)),
            ("zone_routes", zone_routes),
            ("workers_domains", domains),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, rollout: Option<&str>) -> Application {
        Application {
            id: id.into(),
            name: format!("name-{id}"),
            active_rollout_id: rollout.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn a_list_keeps_only_active_rollout_targets_and_listed_deletes() {
        let mut st = State::default();
        for i in 0..100 {
            st.rollout_targets
                .insert(format!("r{i}"), DeploymentConfiguration::default());
            st.deleting
                .insert(format!("d{i}"), app(&format!("d{i}"), None));
        }
        st.set_list(vec![app("a", Some("r7")), app("d3", None), app("b", None)]);
        assert_eq!(st.rollout_targets.keys().collect::<Vec<_>>(), ["r7"]);
        assert_eq!(st.deleting.keys().collect::<Vec<_>>(), ["d3"]);
        let apps = st.apps.as_ref().unwrap();
        assert!(apps.by_id.contains_key("a") && !apps.by_id.contains_key("d3"));
    }

    #[test]
    fn rollout_targets_stay_within_their_budget() {
        let mut st = State::default();
        for i in 0..(ROLLOUT_TARGETS * 3) {
            st.rollout_targets
                .insert(format!("r{i}"), DeploymentConfiguration::default());
        }
        assert_eq!(st.rollout_targets.len(), ROLLOUT_TARGETS);
        assert!(
            st.rollout_targets
                .contains_key(&format!("r{}", ROLLOUT_TARGETS * 3 - 1))
        );
    }

    #[tokio::test]
    async fn script_locks_nobody_holds_are_dropped() {
        let config = crate::cloudflare::ClientConfig::new(
            "http://127.0.0.1:9/client/v4",
            "acct",
            crate::cloudflare::Secret::new("t".to_string()),
        );
        let view = AccountView::new(CloudflareClient::new(config).unwrap());
        let held = view.script_lock("kept");
        let _guard = held.lock().await;
        for i in 0..1_000 {
            drop(view.script_lock(&format!("s{i}")));
        }
        let locks = view.stats().await;
        let (_, s) = locks.iter().find(|(n, _)| *n == "script_locks").unwrap();
        assert!(s.entries <= 2, "{s:?}");
        // The held one is the same lock, still serialising its script.
        assert!(view.script_lock("kept").try_lock().is_err());
    }
}

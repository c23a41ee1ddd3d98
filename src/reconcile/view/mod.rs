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

mod applications;
mod reach;
mod scripts;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::bounded::{BoundedMap, CacheStats};
use crate::cloudflare::CloudflareClient;
use crate::cloudflare::types::*;

use applications::Apps;
pub use applications::{DELETING_ENTRIES, ROLLOUT_TARGETS};
use reach::ReachLists;
pub use reach::{REACH_CHECKED, ZONE_ROUTES};
use scripts::Namespaces;

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

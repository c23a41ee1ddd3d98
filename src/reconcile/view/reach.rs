//! The reach lists (each zone's routes, with their budget `ZONE_ROUTES`, and the
//! account's custom domains) and the reach checks (scripts whose workers.dev state and
//! crons were read since the last resync).

use super::AccountView;
use crate::bounded::BoundedMap;
use crate::cloudflare::ApiError;
use crate::cloudflare::routing::{WorkerRoute, WorkersDomain};

/// Scripts whose reachability reads are remembered at most.
pub const REACH_CHECKED: usize = 16_384;

/// Zones whose route lists are kept at most (least recently used forgotten first).
pub const ZONE_ROUTES: usize = 1024;

/// The reach lists shared by every Worker of a pass: each zone's routes and the
/// account's custom domains, listed once, updated in place by our own writes, dropped
/// by [`AccountView::invalidate`].
pub(super) struct ReachLists {
    pub(super) routes: BoundedMap<String, Vec<WorkerRoute>>,
    pub(super) domains: Option<Vec<WorkersDomain>>,
}

impl AccountView {
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
}

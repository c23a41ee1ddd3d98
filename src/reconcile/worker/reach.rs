//! A Worker's reachability through the pipeline (issue 21): its `workers.dev` state,
//! zone routes, Workers custom domains and cron triggers. Desired from the spec,
//! observed by reads only (zone names resolved to ids once, in a bounded cache), planned
//! by field, acted on by [`Action::Reach`], and part of `Ready`.
//!
//! Ownership: routes and domains live at the zone or the account. Those this object
//! made are recorded in its status (`status.routes`, `status.domains`); only those are
//! deleted, and only while they still serve this script. A pattern or hostname another
//! script holds is never taken or changed: the plan is refused (`RouteHeldElsewhere`,
//! `DomainHeldElsewhere`, Stalled) naming that script.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Mutex;

use crate::cloudflare::routing::{ScriptSubdomain, WorkerRoute, WorkersDomain};
use crate::cloudflare::{ApiError, CloudflareClient};
use crate::reconcile::Happening;
use crate::reconcile::plan::{Action, Blocked, Change, Plan};
use crate::reconcile::reason::Reason;
use crate::spec::reach::{DomainStatus, RouteStatus};
use crate::spec::{CloudflareWorker, CloudflareWorkerStatus};

/// Zone names cached at most (oldest forgotten first).
const MAX_ZONES: usize = 1024;

/// Zone name → id, resolved once per name (bounded). Misses are not cached: a zone
/// added later is found.
#[derive(Default)]
pub struct ZoneCache {
    ids: Mutex<(HashMap<String, String>, std::collections::VecDeque<String>)>,
}

impl ZoneCache {
    /// The id of zone `name`, asked of Cloudflare the first time.
    pub async fn resolve(
        &self,
        client: &CloudflareClient,
        name: &str,
    ) -> Result<Option<String>, ApiError> {
        let key = name.to_ascii_lowercase();
        if let Some(id) = crate::lock(&self.ids).0.get(&key) {
            return Ok(Some(id.clone()));
        }
        let Some(zone) = client.zone_by_name(&key).await? else {
            return Ok(None);
        };
        self.remember(key, zone.id.clone(), MAX_ZONES);
        Ok(Some(zone.id))
    }

    /// Keeps `name → id`, forgetting the oldest names beyond `bound`.
    fn remember(&self, name: String, id: String, bound: usize) {
        let mut g = crate::lock(&self.ids);
        let (map, order) = &mut *g;
        if map.insert(name.clone(), id).is_none() {
            order.push_back(name);
            while order.len() > bound {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        crate::lock(&self.ids).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A route the spec asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredRoute {
    pub pattern: String,
    pub zone_name: Option<String>,
    pub zone_id: Option<String>,
}

/// A custom domain the spec asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredDomain {
    pub hostname: String,
    pub zone_name: Option<String>,
}

/// What the spec asks of the Worker's reachability.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DesiredReach {
    pub workers_dev: bool,
    pub routes: Vec<DesiredRoute>,
    pub domains: Vec<DesiredDomain>,
    /// Normalized (single spaces), sorted, deduplicated.
    pub crons: Vec<String>,
}

fn normalize_cron(c: &str) -> String {
    c.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl DesiredReach {
    pub fn from_spec(obj: &CloudflareWorker) -> DesiredReach {
        let s = &obj.spec;
        let crons: BTreeSet<String> = s.crons.iter().map(|c| normalize_cron(c)).collect();
        DesiredReach {
            workers_dev: s.workers_dev,
            routes: s
                .routes
                .iter()
                .map(|r| DesiredRoute {
                    pattern: r.pattern.clone(),
                    zone_name: r.zone_name.as_ref().map(|z| z.to_ascii_lowercase()),
                    zone_id: r.zone_id.clone(),
                })
                .collect(),
            domains: s
                .domains
                .iter()
                .map(|d| DesiredDomain {
                    hostname: d.hostname.to_ascii_lowercase(),
                    zone_name: d.zone_name.as_ref().map(|z| z.to_ascii_lowercase()),
                })
                .collect(),
            crons: crons.into_iter().collect(),
        }
    }

    /// Zone names to resolve.
    fn zone_names(&self) -> BTreeSet<String> {
        self.routes
            .iter()
            .filter_map(|r| r.zone_name.clone())
            .chain(self.domains.iter().filter_map(|d| d.zone_name.clone()))
            .collect()
    }
}

/// What this object recorded it made (its previous status).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RecordedReach {
    pub routes: Vec<RouteStatus>,
    pub domains: Vec<DomainStatus>,
}

impl RecordedReach {
    pub fn of(status: Option<&CloudflareWorkerStatus>) -> RecordedReach {
        status
            .map(|s| RecordedReach {
                routes: s.routes.clone(),
                domains: s.domains.clone(),
            })
            .unwrap_or_default()
    }
}

/// What Cloudflare has of the Worker's reachability (reads only).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ObservedReach {
    /// The script's workers.dev state (`None`: the script does not exist).
    pub subdomain: Option<ScriptSubdomain>,
    /// The account's workers.dev subdomain, if it has one.
    pub account_subdomain: Option<String>,
    /// The script's cron triggers, normalized and sorted (`None`: no script).
    pub crons: Option<Vec<String>>,
    /// Zone name → id (`None`: no such zone for this token).
    pub zones: BTreeMap<String, Option<String>>,
    /// Zone id → its routes (the zones of the spec and of the recorded routes).
    pub routes: BTreeMap<String, Vec<WorkerRoute>>,
    /// Every Workers custom domain of the account (read only when the spec or the
    /// status has one).
    pub domains: Vec<WorkersDomain>,
    /// What this object recorded it made.
    pub recorded: RecordedReach,
}

/// One write that makes the Worker reachable as the spec says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReachAction {
    SetWorkersDev {
        script: String,
        enabled: bool,
    },
    SetSchedules {
        script: String,
        crons: Vec<String>,
    },
    CreateRoute {
        script: String,
        zone_id: String,
        pattern: String,
    },
    /// A route this object made that the spec no longer lists.
    DeleteRoute {
        zone_id: String,
        id: String,
        pattern: String,
    },
    AttachDomain {
        script: String,
        hostname: String,
        zone_id: Option<String>,
    },
    /// A domain this object made that the spec no longer lists.
    DetachDomain {
        id: String,
        hostname: String,
    },
}

impl ReachAction {
    pub fn kind(&self) -> &'static str {
        match self {
            ReachAction::SetWorkersDev { .. } => "set-workers-dev",
            ReachAction::SetSchedules { .. } => "set-schedules",
            ReachAction::CreateRoute { .. } => "create-route",
            ReachAction::DeleteRoute { .. } => "delete-route",
            ReachAction::AttachDomain { .. } => "attach-domain",
            ReachAction::DetachDomain { .. } => "detach-domain",
        }
    }
}

impl fmt::Display for ReachAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReachAction::SetWorkersDev { script, enabled } => write!(
                f,
                "{} workers.dev for Worker {script}",
                if *enabled { "enable" } else { "disable" }
            ),
            ReachAction::SetSchedules { script, crons } => {
                write!(
                    f,
                    "set cron triggers of Worker {script}: [{}]",
                    crons.join(", ")
                )
            }
            ReachAction::CreateRoute {
                script,
                zone_id,
                pattern,
            } => write!(f, "create route {pattern} → {script} (zone {zone_id})"),
            ReachAction::DeleteRoute { pattern, id, .. } => {
                write!(f, "delete route {pattern} ({id}), made by flaredock")
            }
            ReachAction::AttachDomain {
                script, hostname, ..
            } => write!(f, "attach custom domain {hostname} → {script}"),
            ReachAction::DetachDomain { hostname, id } => {
                write!(
                    f,
                    "detach custom domain {hostname} ({id}), made by flaredock"
                )
            }
        }
    }
}

fn list(v: &[String]) -> String {
    format!("[{}]", v.join(", "))
}

fn change(plan: &mut Plan, field: String, from: impl Into<String>, to: impl Into<String>) {
    plan.changes.push(Change::new(field, from, to));
}

fn zone_of(r: &DesiredRoute, o: &ObservedReach) -> Option<String> {
    r.zone_id.clone().or_else(|| {
        r.zone_name
            .as_ref()
            .and_then(|n| o.zones.get(n).cloned().flatten())
    })
}

fn refuse(plan: &mut Plan, reason: Reason, message: String) {
    if !matches!(plan.blocked, Some(Blocked::Refused { .. })) {
        plan.blocked = Some(Blocked::Refused { reason, message });
    }
}

/// Adds to `plan` what makes the reachability of `script` match `want`: a change per
/// field and the actions. `uploads` says the plan uploads the script first (then it
/// exists when these run).
pub fn plan_reach(
    script: &str,
    want: &DesiredReach,
    have: &ObservedReach,
    uploads: bool,
    plan: &mut Plan,
) {
    let exists = have.subdomain.is_some() || uploads;
    let mut actions = Vec::new();
    // workers.dev
    let live_dev = have.subdomain.as_ref().is_some_and(|s| s.enabled);
    if exists && live_dev != want.workers_dev {
        change(
            plan,
            format!("worker.{script}.workersDev"),
            if have.subdomain.is_none() {
                "absent".to_string()
            } else {
                live_dev.to_string()
            },
            want.workers_dev.to_string(),
        );
        actions.push(ReachAction::SetWorkersDev {
            script: script.to_string(),
            enabled: want.workers_dev,
        });
    }
    // cron triggers
    let live_crons = have.crons.clone().unwrap_or_default();
    if exists && live_crons != want.crons {
        change(
            plan,
            format!("worker.{script}.crons"),
            list(&live_crons),
            list(&want.crons),
        );
        actions.push(ReachAction::SetSchedules {
            script: script.to_string(),
            crons: want.crons.clone(),
        });
    }
    // routes
    let wanted_patterns: BTreeSet<&str> = want.routes.iter().map(|r| r.pattern.as_str()).collect();
    for r in &want.routes {
        let Some(zone) = zone_of(r, have) else {
            refuse(
                plan,
                Reason::ZoneNotFound,
                format!(
                    "route {}: zone {} is not a zone this token can see (spec.routes)",
                    r.pattern,
                    r.zone_name.as_deref().unwrap_or("(none)")
                ),
            );
            continue;
        };
        let live = have
            .routes
            .get(&zone)
            .and_then(|rs| rs.iter().find(|x| x.pattern == r.pattern));
        match live {
            Some(x) if x.script.as_deref() == Some(script) => {}
            Some(x) => refuse(
                plan,
                Reason::RouteHeldElsewhere,
                format!(
                    "route {} is held by {}; flaredock never takes or changes a route that serves another script",
                    r.pattern,
                    x.script
                        .as_deref()
                        .map(|s| format!("Worker script {s}"))
                        .unwrap_or_else(|| "a route without a script (Workers off)".into())
                ),
            ),
            None => {
                change(
                    plan,
                    format!("worker.{script}.route {}", r.pattern),
                    "absent",
                    script,
                );
                actions.push(ReachAction::CreateRoute {
                    script: script.to_string(),
                    zone_id: zone,
                    pattern: r.pattern.clone(),
                });
            }
        }
    }
    for made in &have.recorded.routes {
        if wanted_patterns.contains(made.pattern.as_str()) {
            continue;
        }
        let still = have
            .routes
            .get(&made.zone_id)
            .and_then(|rs| rs.iter().find(|x| x.id == made.id))
            .filter(|x| x.script.as_deref() == Some(script));
        if let Some(x) = still {
            change(
                plan,
                format!("worker.{script}.route {}", x.pattern),
                script,
                "absent (made by flaredock, no longer in spec)",
            );
            actions.push(ReachAction::DeleteRoute {
                zone_id: made.zone_id.clone(),
                id: x.id.clone(),
                pattern: x.pattern.clone(),
            });
        }
    }
    // custom domains
    let wanted_hosts: BTreeSet<&str> = want.domains.iter().map(|d| d.hostname.as_str()).collect();
    for d in &want.domains {
        let zone_id = match &d.zone_name {
            Some(n) => match have.zones.get(n).cloned().flatten() {
                Some(id) => Some(id),
                None => {
                    refuse(
                        plan,
                        Reason::ZoneNotFound,
                        format!(
                            "custom domain {}: zone {n} is not a zone this token can see (spec.domains)",
                            d.hostname
                        ),
                    );
                    continue;
                }
            },
            None => None,
        };
        match have.domains.iter().find(|x| x.hostname == d.hostname) {
            Some(x) if x.service == script => {}
            Some(x) => refuse(
                plan,
                Reason::DomainHeldElsewhere,
                format!(
                    "custom domain {} is held by Worker script {}; flaredock never takes or changes a domain that serves another script",
                    d.hostname, x.service
                ),
            ),
            None => {
                change(
                    plan,
                    format!("worker.{script}.domain {}", d.hostname),
                    "absent",
                    script,
                );
                actions.push(ReachAction::AttachDomain {
                    script: script.to_string(),
                    hostname: d.hostname.clone(),
                    zone_id,
                });
            }
        }
    }
    for made in &have.recorded.domains {
        if wanted_hosts.contains(made.hostname.as_str()) {
            continue;
        }
        if let Some(x) = have
            .domains
            .iter()
            .find(|x| x.id == made.id && x.service == script)
        {
            change(
                plan,
                format!("worker.{script}.domain {}", x.hostname),
                script,
                "absent (made by flaredock, no longer in spec)",
            );
            actions.push(ReachAction::DetachDomain {
                id: x.id.clone(),
                hostname: x.hostname.clone(),
            });
        }
    }
    plan.actions.extend(actions.into_iter().map(Action::Reach));
}

/// What the status records of the reachability: the URL, and the routes and domains
/// this object made (those of the spec that serve the script, and the recorded ones
/// still serving it, e.g. while a removal is held).
pub fn status_of(
    script: &str,
    want: Option<&DesiredReach>,
    have: &ObservedReach,
) -> (Option<String>, Vec<RouteStatus>, Vec<DomainStatus>) {
    let url = match (&have.subdomain, &have.account_subdomain) {
        (Some(s), Some(sub)) if s.enabled => Some(format!("https://{script}.{sub}.workers.dev")),
        _ => None,
    };
    let mut routes = BTreeSet::new();
    let mut domains = BTreeSet::new();
    if let Some(want) = want {
        for r in &want.routes {
            let Some(zone) = zone_of(r, have) else {
                continue;
            };
            if let Some(x) = have.routes.get(&zone).and_then(|rs| {
                rs.iter()
                    .find(|x| x.pattern == r.pattern && x.script.as_deref() == Some(script))
            }) {
                routes.insert(RouteStatus {
                    pattern: x.pattern.clone(),
                    zone_id: zone.clone(),
                    id: x.id.clone(),
                });
            }
        }
        for d in &want.domains {
            if let Some(x) = have
                .domains
                .iter()
                .find(|x| x.hostname == d.hostname && x.service == script)
            {
                domains.insert(DomainStatus {
                    hostname: x.hostname.clone(),
                    id: x.id.clone(),
                });
            }
        }
    }
    for made in &have.recorded.routes {
        let still = have.routes.get(&made.zone_id).is_some_and(|rs| {
            rs.iter()
                .any(|x| x.id == made.id && x.script.as_deref() == Some(script))
        });
        if still {
            routes.insert(made.clone());
        }
    }
    for made in &have.recorded.domains {
        if have
            .domains
            .iter()
            .any(|x| x.id == made.id && x.service == script)
        {
            domains.insert(made.clone());
        }
    }
    (
        url,
        routes.into_iter().collect(),
        domains.into_iter().collect(),
    )
}

impl crate::reconcile::Reconciler {
    /// Reads what Cloudflare has of the reachability of `script` (reads only).
    /// `exists`: the script is there (its subdomain and schedules can be read).
    pub(super) async fn observe_reach(
        &self,
        script: &str,
        exists: bool,
        want: &DesiredReach,
        recorded: RecordedReach,
    ) -> Result<ObservedReach, ApiError> {
        let client = self.view.client();
        let mut o = ObservedReach {
            recorded,
            ..Default::default()
        };
        if exists {
            o.subdomain = Some(client.script_subdomain(script).await?);
            o.crons = Some({
                let mut c: Vec<String> = client
                    .schedules(script)
                    .await?
                    .iter()
                    .map(|s| normalize_cron(&s.cron))
                    .collect();
                c.sort();
                c.dedup();
                c
            });
        }
        if want.workers_dev || o.subdomain.as_ref().is_some_and(|s| s.enabled) {
            o.account_subdomain = self.reach.account_subdomain(client).await?;
        }
        for name in want.zone_names() {
            let id = self.reach.zones.resolve(client, &name).await?;
            o.zones.insert(name, id);
        }
        let zone_ids: BTreeSet<String> = want
            .routes
            .iter()
            .filter_map(|r| zone_of(r, &o))
            .chain(o.recorded.routes.iter().map(|r| r.zone_id.clone()))
            .collect();
        for z in zone_ids {
            match client.list_routes(&z).await {
                Ok(rs) => {
                    o.routes.insert(z, rs);
                }
                // A zone gone (or out of the token's sight) has no routes to keep.
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if !want.domains.is_empty() || !o.recorded.domains.is_empty() {
            o.domains = client.list_domains().await?;
        }
        Ok(o)
    }

    /// Runs one reach action.
    pub(crate) async fn act_reach(
        &self,
        action: &ReachAction,
        events: &mut Vec<Happening>,
    ) -> Result<(), ApiError> {
        let client = self.view.client();
        match action {
            ReachAction::SetWorkersDev { script, enabled } => {
                client.set_script_subdomain(script, *enabled).await?;
            }
            ReachAction::SetSchedules { script, crons } => {
                client.set_schedules(script, crons).await?;
            }
            ReachAction::CreateRoute {
                script,
                zone_id,
                pattern,
            } => {
                client.create_route(zone_id, pattern, script).await?;
            }
            ReachAction::DeleteRoute { zone_id, id, .. } => {
                client.delete_route(zone_id, id).await?;
            }
            ReachAction::AttachDomain {
                script,
                hostname,
                zone_id,
            } => {
                client
                    .attach_domain(hostname, script, zone_id.as_deref())
                    .await?;
            }
            ReachAction::DetachDomain { id, .. } => {
                client.detach_domain(id).await?;
            }
        }
        events.push(Happening::new("Reach", action.to_string()));
        Ok(())
    }

    /// Deletes the routes and custom domains `obj` made: those its status records and
    /// those of its spec, only while they serve its script. Never another's.
    pub(super) async fn delete_reach(
        &self,
        obj: &CloudflareWorker,
    ) -> Result<Vec<String>, ApiError> {
        let script = obj.script_name();
        let want = DesiredReach::from_spec(obj);
        let recorded = RecordedReach::of(obj.status.as_ref());
        let have = self
            .observe_reach(
                script,
                false,
                &DesiredReach {
                    workers_dev: false,
                    ..want.clone()
                },
                recorded,
            )
            .await?;
        let (_, routes, domains) = status_of(script, Some(&want), &have);
        let client = self.view.client();
        let mut gone = Vec::new();
        for r in routes {
            if client.delete_route(&r.zone_id, &r.id).await? {
                gone.push(format!("route {}", r.pattern));
            }
        }
        for d in domains {
            if client.detach_domain(&d.id).await? {
                gone.push(format!("custom domain {}", d.hostname));
            }
        }
        Ok(gone)
    }
}

/// The account-wide reads of reachability: zone ids and the workers.dev subdomain.
#[derive(Default)]
pub struct ReachCache {
    pub zones: ZoneCache,
    subdomain: Mutex<Option<String>>,
}

impl ReachCache {
    /// The account's workers.dev subdomain, read until one is found (then kept: it
    /// changes only by a person's hand, and the URL says it).
    pub async fn account_subdomain(
        &self,
        client: &CloudflareClient,
    ) -> Result<Option<String>, ApiError> {
        if let Some(s) = crate::lock(&self.subdomain).clone() {
            return Ok(Some(s));
        }
        let s = client.account_subdomain().await?;
        if let Some(v) = &s {
            *crate::lock(&self.subdomain) = Some(v.clone());
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zone_cache_is_bounded_and_forgets_the_oldest() {
        let cache = ZoneCache::default();
        for i in 0..5 {
            cache.remember(format!("z{i}.example"), format!("id{i}"), 3);
        }
        assert_eq!(cache.len(), 3);
        let ids = crate::lock(&cache.ids);
        assert!(!ids.0.contains_key("z0.example") && !ids.0.contains_key("z1.example"));
        assert_eq!(ids.0.get("z4.example").map(String::as_str), Some("id4"));
    }
}

//! A Worker's reachability through the pipeline (issue 21): its `workers.dev` state,
//! zone routes, Workers custom domains and cron triggers. Desired from the spec,
//! observed by reads only (zone names resolved to ids once, in a bounded cache; each
//! zone's routes and the account's custom domains listed once per pass of the account
//! view, kept current by our own writes, dropped by its resync, read afresh by a
//! delete: [`crate::reconcile::view::AccountView::zone_routes`]), planned
//! by field, acted on by [`Action::Reach`], and part of `Ready`.
//!
//! Ownership: routes and domains live at the zone or the account. Those this object
//! made are recorded in its status (`status.routes`, `status.domains`); only those are
//! deleted, and only while they still serve this script. A pattern or hostname another
//! script holds is never taken or changed: the plan is refused (`RouteHeldElsewhere`,
//! `DomainHeldElsewhere`, Stalled) naming that script.
//!
//! **The record on the script.** Cloudflare's script list carries neither a script's
//! workers.dev state nor its crons, so reading them costs two calls per Worker. Once
//! flaredock's writes of them succeeded it records, in the script's tags
//! (`flaredock.dev/reach=`, [`ReachRecord`], written by `PATCH …/script-settings`),
//! a hash of the workers.dev state and crons it set, the account's workers.dev
//! subdomain, and short hashes of the ids of the routes (with their zones) and custom
//! domains it made. The record stands for those reads only where it may
//! ([`ReachReads`]): never for a script flaredock does not own, one uploaded over since
//! (its etag moved), or under `managementPolicy: Observe`; in the controller only after
//! one real read since the account view was last marked stale (the periodic resync, a
//! requested reconcile), so a change made outside flaredock is found within the resync
//! period. The routes and domains it names are flaredock's even without a status (the
//! command line): a route serving this script that the record names and the spec no
//! longer lists is deleted, and only such a route.

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
    /// Held across a lookup: Workers observed at once resolve a name once.
    resolving: tokio::sync::Mutex<()>,
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
        let _one = self.resolving.lock().await;
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

impl DesiredReach {
    /// The hash a [`ReachRecord`] keeps of the workers.dev state and crons.
    pub fn state_hash(&self) -> String {
        super::model::short_hash(
            format!("dev:{};crons:{}", self.workers_dev, self.crons.join("|")).as_bytes(),
        )
    }
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

/// When the record on the script ([`ReachRecord`]) stands for reading a Worker's
/// workers.dev state and crons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReachReads {
    /// After one real read since the account view was last marked stale (the
    /// controller: a change made outside flaredock is found within the resync period).
    #[default]
    OncePerResync,
    /// Whenever the record says what the spec asks (the command line: one run, no
    /// resync; `flaredock apply` trusts what flaredock recorded, as it trusts the hash
    /// tags for the script's parts).
    WhenRecorded,
}

/// Characters of a route's or domain's id kept in the record.
const ID_HASH_LEN: usize = 10;

fn id_hash(id: &str) -> String {
    let mut h = super::model::short_hash(id.as_bytes());
    h.truncate(ID_HASH_LEN);
    h
}

/// What flaredock recorded on a script of its reachability (tag
/// `flaredock.dev/reach=<state>[;a:<subdomain>][;r:<zone>:<id>+<id>…][;d:<id>+<id>…]`,
/// ids as short hashes; at most 1024 characters: entries past that are left out and
/// known only by the status).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReachRecord {
    /// [`DesiredReach::state_hash`] of the workers.dev state and crons set.
    pub state: String,
    /// The account's workers.dev subdomain, when workers.dev was on.
    pub subdomain: Option<String>,
    /// (zone id, id hash) of the routes flaredock made.
    pub routes: BTreeSet<(String, String)>,
    /// Id hashes of the custom domains flaredock attached.
    pub domains: BTreeSet<String>,
}

impl ReachRecord {
    pub fn parse(tag: &str) -> Option<ReachRecord> {
        let body = tag.strip_prefix(super::model::REACH_TAG)?;
        let mut parts = body.split(';');
        let mut r = ReachRecord {
            state: parts.next()?.to_string(),
            ..Default::default()
        };
        for p in parts {
            if let Some(sub) = p.strip_prefix("a:") {
                r.subdomain = Some(sub.to_string());
            } else if let Some(zr) = p.strip_prefix("r:") {
                let Some((zone, ids)) = zr.split_once(':') else {
                    continue;
                };
                for id in ids.split('+').filter(|i| !i.is_empty()) {
                    r.routes.insert((zone.to_string(), id.to_string()));
                }
            } else if let Some(ids) = p.strip_prefix("d:") {
                r.domains
                    .extend(ids.split('+').filter(|i| !i.is_empty()).map(str::to_string));
            }
        }
        Some(r)
    }

    /// The tag, at most 1024 characters (routes and domains past that left out).
    pub fn tag(&self) -> String {
        const MAX: usize = 1024;
        let mut t = format!("{}{}", super::model::REACH_TAG, self.state);
        if let Some(sub) = &self.subdomain {
            t.push_str(&format!(";a:{sub}"));
        }
        let mut by_zone: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (z, id) in &self.routes {
            by_zone.entry(z).or_default().push(id);
        }
        for (zone, ids) in by_zone {
            let head = format!(";r:{zone}:");
            if t.len() + head.len() + ID_HASH_LEN > MAX {
                break;
            }
            t.push_str(&head);
            let mut first = true;
            for id in ids {
                if t.len() + id.len() + 1 > MAX {
                    break;
                }
                if !first {
                    t.push('+');
                }
                t.push_str(id);
                first = false;
            }
        }
        if !self.domains.is_empty() && t.len() + 3 + ID_HASH_LEN <= MAX {
            t.push_str(";d:");
            let mut first = true;
            for id in &self.domains {
                if t.len() + id.len() + 1 > MAX {
                    break;
                }
                if !first {
                    t.push('+');
                }
                t.push_str(id);
                first = false;
            }
        }
        t
    }

    fn names_route(&self, zone: &str, id: &str) -> bool {
        self.routes.contains(&(zone.to_string(), id_hash(id)))
    }

    fn names_domain(&self, id: &str) -> bool {
        self.domains.contains(&id_hash(id))
    }
}

/// `tags` with the record `tag` in place of the one they carry, or after flaredock's
/// own tags (the order [`super::model::DesiredWorker::tags_with_reach`] gives), at most
/// ten.
pub fn with_record(tags: &[String], tag: &str) -> Vec<String> {
    let mut out: Vec<String> = tags.to_vec();
    if let Some(t) = out
        .iter_mut()
        .find(|t| t.starts_with(super::model::REACH_TAG))
    {
        *t = tag.to_string();
        return out;
    }
    let at = out
        .iter()
        .rposition(|t| t.starts_with(super::model::TAG_PREFIX))
        .map_or(0, |i| i + 1);
    if at < super::model::MAX_TAGS {
        out.insert(at, tag.to_string());
        out.truncate(super::model::MAX_TAGS);
    }
    out
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
    /// Every Workers custom domain of the account (read only when the spec, the status
    /// or the record has one, or when adopting).
    pub domains: Vec<WorkersDomain>,
    /// What this object recorded it made (its status, and the routes and domains the
    /// record on the script names, found among those listed).
    pub recorded: RecordedReach,
    /// The record on the script, if any.
    pub record: Option<ReachRecord>,
    /// The workers.dev state and crons are the record's, not read ([`ReachReads`]).
    pub trusted: bool,
    /// The script is not flaredock's (adoption, `managementPolicy: Observe` of a
    /// foreign script): every live route, domain and cron the spec leaves out is a
    /// removal.
    pub adopting: bool,
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
    /// Last: the record of what the writes before it set, in the script's tags (the
    /// routes and domains they make are added as they are made).
    Record {
        script: String,
        /// The script's tags, with the record as planned.
        tags: Vec<String>,
        record: ReachRecord,
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
            ReachAction::Record { .. } => "record-reach",
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
            ReachAction::Record { script, .. } => {
                write!(f, "record the reachability in the tags of Worker {script}")
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

/// A change that removes something live, typed destructive; `why` says what is lost.
fn removal(plan: &mut Plan, field: String, from: impl Into<String>, to: &str, why: &str) {
    plan.changes.push(Change::destructive(field, from, to, why));
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
        let dropped: Vec<String> = live_crons
            .iter()
            .filter(|c| !want.crons.contains(c))
            .cloned()
            .collect();
        if dropped.is_empty() {
            change(
                plan,
                format!("worker.{script}.crons"),
                list(&live_crons),
                list(&want.crons),
            );
        } else {
            removal(
                plan,
                format!("worker.{script}.crons"),
                list(&live_crons),
                &list(&want.crons),
                &format!(
                    "the cron triggers {} are removed; list them in spec.crons to keep them",
                    list(&dropped)
                ),
            );
        }
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
        if let Some(x) = still
            && !actions
                .iter()
                .any(|a| matches!(a, ReachAction::DeleteRoute { id, .. } if *id == x.id))
        {
            removal(
                plan,
                format!("worker.{script}.route {}", x.pattern),
                script,
                "absent (made by flaredock, no longer in spec)",
                "requests to this pattern no longer reach the Worker",
            );
            actions.push(ReachAction::DeleteRoute {
                zone_id: made.zone_id.clone(),
                id: x.id.clone(),
                pattern: x.pattern.clone(),
            });
        }
    }
    // Adopting: every live route of the script the spec leaves out (in the zones
    // looked at) goes, once the adoption is approved.
    if have.adopting {
        for (zone, rs) in &have.routes {
            for x in rs {
                let ours = x.script.as_deref() == Some(script);
                let planned = actions
                    .iter()
                    .any(|a| matches!(a, ReachAction::DeleteRoute { id, .. } if *id == x.id));
                if !ours || planned || wanted_patterns.contains(x.pattern.as_str()) {
                    continue;
                }
                removal(
                    plan,
                    format!("worker.{script}.route {}", x.pattern),
                    script,
                    "absent (not in spec.routes)",
                    "requests to this pattern no longer reach the Worker; list it in spec.routes to keep it",
                );
                actions.push(ReachAction::DeleteRoute {
                    zone_id: zone.clone(),
                    id: x.id.clone(),
                    pattern: x.pattern.clone(),
                });
            }
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
            && !actions
                .iter()
                .any(|a| matches!(a, ReachAction::DetachDomain { id, .. } if *id == x.id))
        {
            removal(
                plan,
                format!("worker.{script}.domain {}", x.hostname),
                script,
                "absent (made by flaredock, no longer in spec)",
                "the hostname no longer reaches the Worker",
            );
            actions.push(ReachAction::DetachDomain {
                id: x.id.clone(),
                hostname: x.hostname.clone(),
            });
        }
    }
    if have.adopting {
        for x in have.domains.iter().filter(|x| x.service == script) {
            let planned = actions
                .iter()
                .any(|a| matches!(a, ReachAction::DetachDomain { id, .. } if *id == x.id));
            if planned || wanted_hosts.contains(x.hostname.as_str()) {
                continue;
            }
            removal(
                plan,
                format!("worker.{script}.domain {}", x.hostname),
                script,
                "absent (not in spec.domains)",
                "the hostname no longer reaches the Worker; list it in spec.domains to keep it",
            );
            actions.push(ReachAction::DetachDomain {
                id: x.id.clone(),
                hostname: x.hostname.clone(),
            });
        }
    }
    plan.actions.extend(actions.into_iter().map(Action::Reach));
}

/// Adds, last, the record of what the plan's reach writes set (or of what was read, when
/// the script's record says otherwise): `tags_after` are the script's tags once the
/// plan's upload (if any) is done, `None` when there is no script. Nothing is recorded
/// on a script flaredock does not take over, or while the plan is refused.
pub fn plan_record(
    script: &str,
    want: &DesiredReach,
    have: &ObservedReach,
    tags_after: Option<Vec<String>>,
    plan: &mut Plan,
) {
    let Some(tags) = tags_after else {
        return;
    };
    let uploads = plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::UploadScript { .. }));
    if plan.blocked.is_some() || (have.adopting && !uploads) {
        return;
    }
    let (_, routes, domains) = status_of(script, Some(want), have);
    let deleted = |zone: &str, rid: &str| {
        plan.actions.iter().any(|a| {
            matches!(a, Action::Reach(ReachAction::DeleteRoute { zone_id, id, .. }) if zone_id == zone && id == rid)
        })
    };
    let detached = |did: &str| {
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::Reach(ReachAction::DetachDomain { id, .. }) if id == did))
    };
    let record = ReachRecord {
        state: want.state_hash(),
        subdomain: if want.workers_dev {
            have.account_subdomain.clone()
        } else {
            None
        },
        routes: routes
            .iter()
            .filter(|r| !deleted(&r.zone_id, &r.id))
            .map(|r| (r.zone_id.clone(), id_hash(&r.id)))
            .collect(),
        domains: domains
            .iter()
            .filter(|d| !detached(&d.id))
            .map(|d| id_hash(&d.id))
            .collect(),
    };
    let writes = plan.actions.iter().any(|a| matches!(a, Action::Reach(_)));
    // With nothing to write, a record is only corrected, or carried by an upload: a
    // script without one (uploaded before records were kept) is read each time until
    // its next write.
    let corrects = have.record.as_ref().is_some_and(|r| *r != record);
    if !writes && !uploads && !corrects {
        return;
    }
    let tags = with_record(&tags, &record.tag());
    // Nothing to write first: an upload of the plan carries the record itself.
    if !writes
        && let Some(Action::UploadScript { upload, .. }) = plan
            .actions
            .iter_mut()
            .find(|a| matches!(a, Action::UploadScript { .. }))
    {
        upload.metadata.tags = tags;
        return;
    }
    plan.actions.push(Action::Reach(ReachAction::Record {
        script: script.to_string(),
        tags,
        record,
    }));
}

/// Whether `plan` does nothing but keep the record ([`ReachAction::Record`]): the
/// Worker is as the spec says.
pub fn only_records(plan: &Plan) -> bool {
    plan.blocked.is_none()
        && plan
            .actions
            .iter()
            .all(|a| matches!(a, Action::Reach(ReachAction::Record { .. })))
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

/// What the script says of its reachability, for [`Reconciler::observe_reach`].
#[derive(Clone, Debug, Default)]
pub(super) struct ScriptSide {
    /// The script is there (its subdomain and schedules can be read).
    pub exists: bool,
    /// Its record, if any.
    pub record: Option<ReachRecord>,
    /// The record may stand for the reads ([`ReachReads`]; the caller checked
    /// ownership, the etag and the management policy).
    pub may_trust: bool,
    /// Not flaredock's script.
    pub adopting: bool,
    /// Read the routes and domains afresh rather than take the pass's shared lists
    /// (a delete decides on fresh reads).
    pub fresh_lists: bool,
}

/// The ids the reach writes of one act made (added to the record that follows them).
#[derive(Default)]
pub(crate) struct Made {
    routes: Vec<(String, String)>,
    domains: Vec<String>,
}

use crate::reconcile::Reconciler;

impl Reconciler {
    /// Reads what Cloudflare has of the reachability of `script` (reads only), the
    /// workers.dev state and crons only when the record on the script may not stand
    /// for them.
    pub(super) async fn observe_reach(
        &self,
        script: &str,
        side: ScriptSide,
        want: &DesiredReach,
        recorded: RecordedReach,
    ) -> Result<ObservedReach, ApiError> {
        let client = self.view.client();
        let record = side.record.clone();
        let trusted = side.exists
            && side.may_trust
            && record
                .as_ref()
                .is_some_and(|r| r.state == want.state_hash())
            && (self.reach_reads == ReachReads::WhenRecorded || self.view.reach_checked(script));
        let mut o = ObservedReach {
            recorded,
            record,
            trusted,
            adopting: side.adopting,
            ..Default::default()
        };
        let exists = side.exists;
        if trusted {
            o.subdomain = Some(ScriptSubdomain {
                enabled: want.workers_dev,
                previews_enabled: false,
            });
            o.crons = Some(want.crons.clone());
        } else if exists {
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
            self.view.note_reach_checked(script);
        }
        if want.workers_dev || o.subdomain.as_ref().is_some_and(|s| s.enabled) {
            let recorded_sub = o.record.as_ref().and_then(|r| r.subdomain.clone());
            o.account_subdomain = match recorded_sub {
                Some(sub) if trusted => Some(sub),
                _ => self.reach.account_subdomain(client).await?,
            };
        }
        for name in want.zone_names() {
            let id = self.reach.zones.resolve(client, &name).await?;
            o.zones.insert(name, id);
        }
        let from_record: Vec<String> = o
            .record
            .iter()
            .flat_map(|r| r.routes.iter().map(|(z, _)| z.clone()))
            .collect();
        let zone_ids: BTreeSet<String> = want
            .routes
            .iter()
            .filter_map(|r| zone_of(r, &o))
            .chain(o.recorded.routes.iter().map(|r| r.zone_id.clone()))
            .chain(from_record)
            .collect();
        for z in zone_ids {
            match self.view.zone_routes(&z, side.fresh_lists).await {
                Ok(rs) => {
                    o.routes.insert(z, rs);
                }
                // A zone gone (or out of the token's sight) has no routes to keep.
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let recorded_domains = o.record.as_ref().is_some_and(|r| !r.domains.is_empty());
        if !want.domains.is_empty()
            || !o.recorded.domains.is_empty()
            || recorded_domains
            || o.adopting
        {
            o.domains = self.view.workers_domains(side.fresh_lists).await?;
        }
        // What the record names and still serves the script is this object's too.
        if let Some(record) = &o.record {
            for (zone, rs) in &o.routes {
                for x in rs {
                    let known = o.recorded.routes.iter().any(|r| r.id == x.id);
                    if !known
                        && x.script.as_deref() == Some(script)
                        && record.names_route(zone, &x.id)
                    {
                        o.recorded.routes.push(RouteStatus {
                            pattern: x.pattern.clone(),
                            zone_id: zone.clone(),
                            id: x.id.clone(),
                        });
                    }
                }
            }
            for x in &o.domains {
                let known = o.recorded.domains.iter().any(|d| d.id == x.id);
                if !known && x.service == script && record.names_domain(&x.id) {
                    o.recorded.domains.push(DomainStatus {
                        hostname: x.hostname.clone(),
                        id: x.id.clone(),
                    });
                }
            }
        }
        Ok(o)
    }

    /// Runs one reach action.
    pub(crate) async fn act_reach(
        &self,
        action: &ReachAction,
        made: &mut Made,
        events: &mut Vec<Happening>,
    ) -> Result<(), ApiError> {
        let client = self.view.client();
        match action {
            ReachAction::Record {
                script,
                tags,
                record,
            } => {
                let mut record = record.clone();
                record.routes.extend(
                    made.routes
                        .iter()
                        .map(|(zone, id)| (zone.clone(), id_hash(id))),
                );
                record
                    .domains
                    .extend(made.domains.iter().map(|id| id_hash(id)));
                let tags = with_record(tags, &record.tag());
                client.set_script_tags(script, &tags).await?;
                self.view.set_script_tags(script, tags).await;
                self.view.note_reach_checked(script);
                // Bookkeeping, not news: no Event.
                return Ok(());
            }
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
                // A lost answer may mean it was made: the next observe lists again.
                let mut r = match client.create_route(zone_id, pattern, script).await {
                    Ok(r) => r,
                    Err(e) => {
                        self.view.invalidate_reach_lists().await;
                        return Err(e);
                    }
                };
                made.routes.push((zone_id.clone(), r.id.clone()));
                // The shared list holds what was asked where the answer leaves it out.
                r.script.get_or_insert_with(|| script.clone());
                if r.pattern.is_empty() {
                    r.pattern = pattern.clone();
                }
                self.view.route_created(zone_id, r).await;
            }
            ReachAction::DeleteRoute { zone_id, id, .. } => {
                // Planned on the pass's shared list: decided again on a fresh read. Gone
                // is done; serving another script than the list said, it is not ours
                // to delete (the fresh list is now the shared one: the next plan sees it).
                let planned = self.view.zone_routes(zone_id, false).await?;
                let fresh = self.view.zone_routes(zone_id, true).await?;
                let was = planned.iter().find(|r| r.id == *id).map(|r| &r.script);
                match fresh.iter().find(|r| r.id == *id) {
                    None => return Ok(()),
                    Some(now) if was != Some(&now.script) => return Ok(()),
                    Some(_) => {}
                }
                let deleted = client.delete_route(zone_id, id).await;
                self.note_route_delete(deleted.is_ok(), zone_id, id).await;
                deleted?;
            }
            ReachAction::AttachDomain {
                script,
                hostname,
                zone_id,
            } => {
                let mut d = match client
                    .attach_domain(hostname, script, zone_id.as_deref())
                    .await
                {
                    Ok(d) => d,
                    Err(e) => {
                        self.view.invalidate_reach_lists().await;
                        return Err(e);
                    }
                };
                made.domains.push(d.id.clone());
                if d.service.is_empty() {
                    d.service = script.clone();
                }
                if d.hostname.is_empty() {
                    d.hostname = hostname.clone();
                }
                self.view.domain_attached(d).await;
            }
            ReachAction::DetachDomain { id, .. } => {
                // As for a route: decided again on a fresh read.
                let planned = self.view.workers_domains(false).await?;
                let fresh = self.view.workers_domains(true).await?;
                let was = planned.iter().find(|d| d.id == *id).map(|d| &d.service);
                match fresh.iter().find(|d| d.id == *id) {
                    None => return Ok(()),
                    Some(now) if was != Some(&now.service) => return Ok(()),
                    Some(_) => {}
                }
                let detached = client.detach_domain(id).await;
                self.note_domain_detach(detached.is_ok(), id).await;
                detached?;
            }
        }
        events.push(Happening::new("Reach", action.to_string()));
        Ok(())
    }

    /// Keeps the pass's shared route list after a route's `DELETE`: gone from it when
    /// answered, the lists dropped when not (its outcome is not known).
    pub(super) async fn note_route_delete(&self, answered: bool, zone_id: &str, id: &str) {
        if answered {
            self.view.route_deleted(zone_id, id).await;
        } else {
            self.view.invalidate_reach_lists().await;
        }
    }

    /// As [`Reconciler::note_route_delete`], for a custom domain's `DELETE`.
    pub(super) async fn note_domain_detach(&self, answered: bool, id: &str) {
        if answered {
            self.view.domain_detached(id).await;
        } else {
            self.view.invalidate_reach_lists().await;
        }
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
        // The record on the script names what a run without a status made.
        let record = self
            .view
            .script(script)
            .await?
            .and_then(|s| super::model::RecordedTags::read(&s).reach)
            .and_then(|t| ReachRecord::parse(&t));
        let side = ScriptSide {
            record,
            fresh_lists: true,
            ..Default::default()
        };
        let have = self
            .observe_reach(
                script,
                side,
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
            let deleted = client.delete_route(&r.zone_id, &r.id).await;
            self.note_route_delete(deleted.is_ok(), &r.zone_id, &r.id)
                .await;
            if deleted? {
                gone.push(format!("route {}", r.pattern));
            }
        }
        for d in domains {
            let detached = client.detach_domain(&d.id).await;
            self.note_domain_detach(detached.is_ok(), &d.id).await;
            if detached? {
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
    /// Held across its read: Workers reconciled at once read it once.
    subdomain: tokio::sync::Mutex<Option<String>>,
}

impl ReachCache {
    /// The account's workers.dev subdomain, read until one is found (then kept: it
    /// changes only by a person's hand, and the URL says it).
    pub async fn account_subdomain(
        &self,
        client: &CloudflareClient,
    ) -> Result<Option<String>, ApiError> {
        let mut known = self.subdomain.lock().await;
        if let Some(s) = known.clone() {
            return Ok(Some(s));
        }
        let s = client.account_subdomain().await?;
        if let Some(v) = &s {
            *known = Some(v.clone());
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_and_stays_within_one_tag() {
        let mut r = ReachRecord {
            state: "0123456789abcdef".into(),
            subdomain: Some("acme".into()),
            ..Default::default()
        };
        r.routes.insert(("z1".into(), id_hash("route-1")));
        r.routes.insert(("z2".into(), id_hash("route-2")));
        r.domains.insert(id_hash("domain-1"));
        let tag = r.tag();
        assert!(!tag.contains(',') && !tag.contains('&'), "{tag}");
        assert_eq!(ReachRecord::parse(&tag), Some(r.clone()));
        assert!(
            ReachRecord::parse(&tag)
                .unwrap()
                .names_route("z2", "route-2")
        );
        assert!(
            !ReachRecord::parse(&tag)
                .unwrap()
                .names_route("z1", "route-2")
        );
        // Too many routes for one tag: what fits is kept, the tag stays valid.
        for i in 0..500 {
            r.routes.insert(("z1".into(), id_hash(&format!("r{i}"))));
        }
        let tag = r.tag();
        assert!(tag.len() <= 1024, "{}", tag.len());
        let back = ReachRecord::parse(&tag).unwrap();
        assert!(back.routes.len() > 50 && back.routes.len() < r.routes.len());
        assert_eq!(back.state, r.state);
    }

    #[test]
    fn the_record_goes_after_flaredocks_tags_and_replaces_an_older_one() {
        let tags = vec![
            "flaredock.dev/owner=o".to_string(),
            "flaredock.dev/hash=h".to_string(),
            "team-a".to_string(),
        ];
        let with = with_record(&tags, "flaredock.dev/reach=1");
        assert_eq!(
            with,
            [
                "flaredock.dev/owner=o",
                "flaredock.dev/hash=h",
                "flaredock.dev/reach=1",
                "team-a"
            ]
        );
        assert_eq!(
            with_record(&with, "flaredock.dev/reach=2")[2],
            "flaredock.dev/reach=2"
        );
    }

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

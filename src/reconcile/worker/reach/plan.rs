//! The plan of a Worker's reachability: a change per field and the writes
//! ([`ReachAction`]), the record that follows them, and what the status records.

use std::collections::BTreeSet;
use std::fmt;

use super::record::{ReachRecord, Reached, id_hash, with_record};
use super::{DesiredReach, DesiredRoute, ObservedReach};
use crate::reconcile::plan::{Action, Blocked, Change, Plan};
use crate::reconcile::reason::Reason;
use crate::spec::reach::{DomainStatus, RouteStatus};

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
    /// A route this object made that the spec no longer lists (planned while it
    /// served `script`).
    DeleteRoute {
        script: String,
        zone_id: String,
        id: String,
        pattern: String,
    },
    AttachDomain {
        script: String,
        hostname: String,
        zone_id: Option<String>,
    },
    /// A domain this object made that the spec no longer lists (planned while it
    /// served `script`).
    DetachDomain {
        script: String,
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
            ReachAction::DetachDomain { hostname, id, .. } => {
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

pub(super) fn zone_of(r: &DesiredRoute, o: &ObservedReach) -> Option<String> {
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
                script: script.to_string(),
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
                    script: script.to_string(),
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
                script: script.to_string(),
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
                script: script.to_string(),
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
        reached: Some(reached(want, have, &routes, &domains)),
    };
    let writes = plan.actions.iter().any(|a| matches!(a, Action::Reach(_)));
    // With nothing to write, a record is only corrected, or carried by an upload: a
    // script without one (uploaded before records were kept) is read each time until
    // its next write.
    let corrects = have.record.as_ref().is_some_and(|r| *r != record.as_kept());
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

/// What the record keeps in full ([`Reached`]): the zone ids of the spec's zone names,
/// and, of what this object made ([`status_of`]), the spec's routes and domains that
/// serve the script (those the act makes are added as they are made).
fn reached(
    want: &DesiredReach,
    have: &ObservedReach,
    routes: &[RouteStatus],
    domains: &[DomainStatus],
) -> Reached {
    let mut r = Reached::default();
    for name in want.zone_names() {
        if let Some(Some(id)) = have.zones.get(&name) {
            r.add_zone(&name, id);
        }
    }
    for x in routes {
        if want.routes.iter().any(|w| w.pattern == x.pattern) {
            r.add_route(&x.pattern, &x.zone_id, &x.id);
        }
    }
    for x in domains {
        if want.domains.iter().any(|w| w.hostname == x.hostname) {
            r.add_domain(&x.hostname, &x.id);
        }
    }
    r
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

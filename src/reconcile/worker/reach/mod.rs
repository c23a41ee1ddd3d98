//! A Worker's reachability through the pipeline (issue 21): its `workers.dev` state,
//! zone routes, Workers custom domains and cron triggers. Desired from the spec,
//! observed by reads only (zone names resolved to ids once, in a bounded cache; each
//! zone's routes and the account's custom domains listed once per pass of the account
//! view, kept current by our own writes, dropped by its resync, read afresh by a
//! delete: [`crate::reconcile::view::AccountView::zone_routes`]), planned
//! by field, acted on by [`crate::reconcile::plan::Action::Reach`], and part of `Ready`.
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
//! domains it made, and (when it fits) the spec's zone ids, routes and domains in full
//! ([`Reached`]). The record stands for those reads only where it may
//! ([`ReachReads`]): never for a script flaredock does not own, one uploaded over since
//! (its etag moved), or under `managementPolicy: Observe`; in the controller only after
//! one real read since the account view was last marked stale (the periodic resync, a
//! requested reconcile), so a change made outside flaredock is found within the resync
//! period. The command line also takes the zone ids, routes and domains from it when
//! it names in full just those the spec asks ([`ReachRecord::stands_for`]): no zone
//! lookup, route list or domain list (`--refresh` and the controller read them). The
//! routes and domains it names are flaredock's even without a status (the command
//! line): a route serving this script that the record names and the spec no longer
//! lists is deleted (decided on real lists), and only such a route.
//!
//! The parts: what is desired, recorded and observed (here), the account-wide caches
//! (`cache.rs`), the record on the script (`record.rs`), the plan (`plan.rs`), the
//! reads (`observe.rs`) and the writes (`act.rs`).

use std::collections::{BTreeMap, BTreeSet};

use crate::cloudflare::routing::{ScriptSubdomain, WorkerRoute, WorkersDomain};
use crate::spec::reach::{DomainStatus, RouteStatus};
use crate::spec::{CloudflareWorker, CloudflareWorkerStatus};

mod act;
mod cache;
mod observe;
mod plan;
mod record;

pub(crate) use act::Made;
pub use cache::{ReachCache, ZoneCache};
pub(in crate::reconcile::worker) use observe::ScriptSide;
pub use plan::{ReachAction, only_records, plan_reach, plan_record, status_of};
pub use record::{Listed, ReachRecord, Reached, with_record};

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

pub(super) fn normalize_cron(c: &str) -> String {
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
    pub(super) fn zone_names(&self) -> BTreeSet<String> {
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
    /// tags for the script's parts), for the zone ids, routes and domains too when it
    /// names them in full.
    WhenRecorded,
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
    /// The zone ids, routes and domains are the record's too, not read (the command
    /// line, the record naming in full just what the spec asks:
    /// [`ReachRecord::stands_for`]).
    pub listed: bool,
    /// The script is not flaredock's (adoption, `managementPolicy: Observe` of a
    /// foreign script): every live route, domain and cron the spec leaves out is a
    /// removal.
    pub adopting: bool,
}

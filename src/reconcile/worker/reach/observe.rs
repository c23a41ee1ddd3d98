//! The reads of a Worker's reachability ([`Reconciler::observe_reach`]): the record
//! on the script stands for them where it may.

use std::collections::BTreeSet;

use super::plan::zone_of;
use super::record::ReachRecord;
use super::{DesiredReach, ObservedReach, ReachReads, RecordedReach, normalize_cron};
use crate::cloudflare::ApiError;
use crate::cloudflare::routing::ScriptSubdomain;
use crate::reconcile::Reconciler;
use crate::spec::reach::{DomainStatus, RouteStatus};

/// What the script says of its reachability, for [`Reconciler::observe_reach`].
#[derive(Clone, Debug, Default)]
pub(in crate::reconcile::worker) struct ScriptSide {
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

impl Reconciler {
    /// Reads what Cloudflare has of the reachability of `script` (reads only), the
    /// workers.dev state and crons only when the record on the script may not stand
    /// for them.
    pub(in crate::reconcile::worker) async fn observe_reach(
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
        // The command line, in one run with the record as the spec asks: the zone ids,
        // the routes and the domains are the record's too, when it names in full just
        // those the spec asks for and those the status records (anything else is to be
        // deleted, which is decided on real lists).
        let listed = o
            .record
            .as_ref()
            .filter(|_| {
                trusted
                    && self.reach_reads == ReachReads::WhenRecorded
                    && !side.fresh_lists
                    && !side.adopting
            })
            .and_then(|r| r.stands_for(script, want))
            .filter(|l| {
                o.recorded.routes.iter().all(|m| {
                    l.routes
                        .get(&m.zone_id)
                        .is_some_and(|rs| rs.iter().any(|x| x.id == m.id))
                }) && o
                    .recorded
                    .domains
                    .iter()
                    .all(|m| l.domains.iter().any(|x| x.id == m.id))
            });
        if let Some(l) = listed {
            o.zones = l.zones;
            o.routes = l.routes;
            o.domains = l.domains;
            o.listed = true;
        } else {
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
}

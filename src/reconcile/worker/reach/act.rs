//! The writes of a Worker's reachability ([`Reconciler::act_reach`]), and the
//! deletion of the routes and domains a deleted Worker made.

use super::plan::{ReachAction, status_of};
use super::record::{ReachRecord, id_hash, with_record};
use super::{DesiredReach, RecordedReach, ScriptSide};
use crate::cloudflare::ApiError;
use crate::reconcile::{Happening, Reconciler};
use crate::spec::CloudflareWorker;

/// The ids the reach writes of one act made (added to the record that follows them).
#[derive(Default)]
pub(crate) struct Made {
    /// (zone id, route id, pattern).
    routes: Vec<(String, String, String)>,
    /// (domain id, hostname).
    domains: Vec<(String, String)>,
}

impl Reconciler {
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
                for (zone, id, pattern) in &made.routes {
                    record.routes.insert((zone.clone(), id_hash(id)));
                    if let Some(r) = &mut record.reached {
                        r.add_route(pattern, zone, id);
                    }
                }
                for (id, hostname) in &made.domains {
                    record.domains.insert(id_hash(id));
                    if let Some(r) = &mut record.reached {
                        r.add_domain(hostname, id);
                    }
                }
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
                made.routes
                    .push((zone_id.clone(), r.id.clone(), pattern.clone()));
                // The shared list holds what was asked where the answer leaves it out.
                r.script.get_or_insert_with(|| script.clone());
                if r.pattern.is_empty() {
                    r.pattern = pattern.clone();
                }
                self.view.route_created(zone_id, r).await;
            }
            ReachAction::DeleteRoute {
                script,
                zone_id,
                id,
                ..
            } => {
                // Planned on the pass's shared list while it served `script`: decided
                // again on one fresh read. Gone is done; serving another script now, it
                // is not ours to delete (the fresh list is now the shared one: the next
                // plan sees it).
                let fresh = self.view.zone_routes(zone_id, true).await?;
                match fresh.iter().find(|r| r.id == *id) {
                    None => return Ok(()),
                    Some(now) if now.script.as_deref() != Some(script.as_str()) => {
                        return Ok(());
                    }
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
                made.domains.push((d.id.clone(), hostname.clone()));
                if d.service.is_empty() {
                    d.service = script.clone();
                }
                if d.hostname.is_empty() {
                    d.hostname = hostname.clone();
                }
                self.view.domain_attached(d).await;
            }
            ReachAction::DetachDomain { script, id, .. } => {
                // As for a route: decided again on one fresh read.
                let fresh = self.view.workers_domains(true).await?;
                match fresh.iter().find(|d| d.id == *id) {
                    None => return Ok(()),
                    Some(now) if now.service != *script => return Ok(()),
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
    pub(in crate::reconcile::worker) async fn note_route_delete(
        &self,
        answered: bool,
        zone_id: &str,
        id: &str,
    ) {
        if answered {
            self.view.route_deleted(zone_id, id).await;
        } else {
            self.view.invalidate_reach_lists().await;
        }
    }

    /// As [`Reconciler::note_route_delete`], for a custom domain's `DELETE`.
    pub(in crate::reconcile::worker) async fn note_domain_detach(&self, answered: bool, id: &str) {
        if answered {
            self.view.domain_detached(id).await;
        } else {
            self.view.invalidate_reach_lists().await;
        }
    }

    /// Deletes the routes and custom domains `obj` made: those its status records and
    /// those of its spec, only while they serve its script. Never another's.
    pub(in crate::reconcile::worker) async fn delete_reach(
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
            .and_then(|s| crate::reconcile::worker::model::RecordedTags::read(&s).reach)
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

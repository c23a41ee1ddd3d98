//! The record flaredock keeps on a script of its reachability (a tag,
//! `flaredock.dev/reach=`), and where it goes among the script's tags.

use std::collections::{BTreeMap, BTreeSet};

use super::DesiredReach;
use crate::cloudflare::routing::{WorkerRoute, WorkersDomain};

/// Characters of a route's or domain's id kept in the record.
const ID_HASH_LEN: usize = 10;

pub(super) fn id_hash(id: &str) -> String {
    let mut h = crate::reconcile::worker::model::short_hash(id.as_bytes());
    h.truncate(ID_HASH_LEN);
    h
}

/// The key of a route's pattern in [`Reached`].
fn route_key(pattern: &str) -> String {
    id_hash(&format!("route\n{pattern}"))
}

/// The key of a custom domain's hostname in [`Reached`].
fn domain_key(hostname: &str) -> String {
    id_hash(&format!("domain\n{hostname}"))
}

/// The key of a zone name in [`Reached`].
fn zone_key(name: &str) -> String {
    id_hash(&format!("zone\n{name}"))
}

/// An id the record can hold as it is (none of the separators of the tag, nor what a
/// tag may not contain).
fn plain(id: &str) -> bool {
    !id.is_empty() && !id.contains([';', ':', '+', '=', '/', ',', '&'])
}

/// What the spec's routes, custom domains and zone names were when recorded, ids in
/// full (the section `;f:` of the tag: `z<zone key>=<zone id>`, `p<pattern
/// key>=<zone id>/<route id>`, `h<hostname key>=<domain id>`, joined by `+`; names as
/// short hashes, as a tag may not hold every character a pattern may). With it the
/// command line needs no zone lookup, routes list or domains list while the spec asks
/// for just these ([`ReachRecord::stands_for`]).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Reached {
    /// Zone name key → zone id.
    pub zones: BTreeMap<String, String>,
    /// Pattern key → (zone id, route id).
    pub routes: BTreeMap<String, (String, String)>,
    /// Hostname key → domain id.
    pub domains: BTreeMap<String, String>,
}

impl Reached {
    pub fn add_zone(&mut self, name: &str, id: &str) {
        self.zones.insert(zone_key(name), id.to_string());
    }

    pub fn add_route(&mut self, pattern: &str, zone_id: &str, id: &str) {
        self.routes
            .insert(route_key(pattern), (zone_id.to_string(), id.to_string()));
    }

    pub fn add_domain(&mut self, hostname: &str, id: &str) {
        self.domains.insert(domain_key(hostname), id.to_string());
    }

    /// The section `;f:…`, or `None` when an id cannot be held as it is.
    fn section(&self) -> Option<String> {
        let mut entries = Vec::new();
        for (k, id) in &self.zones {
            plain(id).then_some(())?;
            entries.push(format!("z{k}={id}"));
        }
        for (k, (zone, id)) in &self.routes {
            (plain(zone) && plain(id)).then_some(())?;
            entries.push(format!("p{k}={zone}/{id}"));
        }
        for (k, id) in &self.domains {
            plain(id).then_some(())?;
            entries.push(format!("h{k}={id}"));
        }
        Some(format!(";f:{}", entries.join("+")))
    }

    fn parse(body: &str) -> Option<Reached> {
        let mut r = Reached::default();
        for e in body.split('+').filter(|e| !e.is_empty()) {
            let (head, value) = e.split_once('=')?;
            let kind = head.chars().next()?;
            let key = head[kind.len_utf8()..].to_string();
            match kind {
                'z' => {
                    r.zones.insert(key, value.to_string());
                }
                'p' => {
                    let (zone, id) = value.split_once('/')?;
                    r.routes.insert(key, (zone.to_string(), id.to_string()));
                }
                'h' => {
                    r.domains.insert(key, value.to_string());
                }
                _ => return None,
            }
        }
        Some(r)
    }
}

/// What a zone lookup and the routes and domains lists would show of a Worker's
/// reachability, from its record alone ([`ReachRecord::stands_for`]).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Listed {
    /// Zone name → id.
    pub zones: BTreeMap<String, Option<String>>,
    /// Zone id → the script's routes in it.
    pub routes: BTreeMap<String, Vec<WorkerRoute>>,
    /// The script's custom domains.
    pub domains: Vec<WorkersDomain>,
}

/// What flaredock recorded on a script of its reachability (tag
/// `flaredock.dev/reach=<state>[;a:<subdomain>][;r:<zone>:<id>+<id>…][;d:<id>+<id>…][;f:…]`,
/// ids as short hashes in `r:` and `d:`, in full in `f:` ([`Reached`]); at most 1024
/// characters: entries past that are left out and known only by the status, and `f:`
/// is left out whole when it does not fit).
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
    /// The spec's routes, domains and zone names as recorded, in full (`None`: not
    /// recorded, or too long for the tag).
    pub reached: Option<Reached>,
}

impl ReachRecord {
    pub fn parse(tag: &str) -> Option<ReachRecord> {
        let body = tag.strip_prefix(crate::reconcile::worker::model::REACH_TAG)?;
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
            } else if let Some(body) = p.strip_prefix("f:") {
                r.reached = Reached::parse(body);
            }
        }
        Some(r)
    }

    /// The tag, at most 1024 characters (routes and domains past that left out).
    pub fn tag(&self) -> String {
        const MAX: usize = 1024;
        let mut t = format!(
            "{}{}",
            crate::reconcile::worker::model::REACH_TAG,
            self.state
        );
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
        if let Some(f) = self.reached.as_ref().and_then(Reached::section)
            && t.len() + f.len() <= MAX
        {
            t.push_str(&f);
        }
        t
    }

    /// The record as its tag keeps it (what a later read parses).
    pub fn as_kept(&self) -> ReachRecord {
        ReachRecord::parse(&self.tag()).unwrap_or_default()
    }

    /// What the zone lookup, the routes list and the domains list would show of
    /// `script`'s reachability, when the record names in full exactly the routes and
    /// domains `want` asks for (each pattern in the zone the spec names, each hostname)
    /// and no other: a route or domain the record names that the spec no longer lists
    /// is to be deleted, which is decided on real lists. `None` otherwise.
    pub fn stands_for(&self, script: &str, want: &DesiredReach) -> Option<Listed> {
        let reached = self.reached.as_ref()?;
        let mut listed = Listed::default();
        for name in want.zone_names() {
            let id = reached.zones.get(&zone_key(&name))?;
            listed.zones.insert(name, Some(id.clone()));
        }
        if reached.routes.len() != want.routes.len() || reached.domains.len() != want.domains.len()
        {
            return None;
        }
        for r in &want.routes {
            let (zone, id) = reached.routes.get(&route_key(&r.pattern))?;
            let asked = match (&r.zone_id, &r.zone_name) {
                (Some(z), _) => Some(z.clone()),
                (None, Some(n)) => listed.zones.get(n).cloned().flatten(),
                (None, None) => None,
            };
            if asked.as_deref() != Some(zone.as_str()) {
                return None;
            }
            listed
                .routes
                .entry(zone.clone())
                .or_default()
                .push(WorkerRoute {
                    id: id.clone(),
                    pattern: r.pattern.clone(),
                    script: Some(script.to_string()),
                });
        }
        for d in &want.domains {
            let id = reached.domains.get(&domain_key(&d.hostname))?;
            listed.domains.push(WorkersDomain {
                id: id.clone(),
                hostname: d.hostname.clone(),
                service: script.to_string(),
                zone_id: d
                    .zone_name
                    .as_ref()
                    .and_then(|n| listed.zones.get(n).cloned().flatten()),
                zone_name: d.zone_name.clone(),
            });
        }
        // Every route and domain the record names is one of these.
        let routes_named = self.routes.iter().all(|(zone, h)| {
            listed
                .routes
                .get(zone)
                .is_some_and(|rs| rs.iter().any(|x| id_hash(&x.id) == *h))
        });
        let domains_named = self
            .domains
            .iter()
            .all(|h| listed.domains.iter().any(|x| id_hash(&x.id) == *h));
        (routes_named && domains_named).then_some(listed)
    }

    pub(super) fn names_route(&self, zone: &str, id: &str) -> bool {
        self.routes.contains(&(zone.to_string(), id_hash(id)))
    }

    pub(super) fn names_domain(&self, id: &str) -> bool {
        self.domains.contains(&id_hash(id))
    }
}

/// `tags` with the record `tag` in place of the one they carry, or after flaredock's
/// own tags (the order [`crate::reconcile::worker::model::DesiredWorker::tags_with_reach`] gives), at most
/// ten.
pub fn with_record(tags: &[String], tag: &str) -> Vec<String> {
    let mut out: Vec<String> = tags.to_vec();
    if let Some(t) = out
        .iter_mut()
        .find(|t| t.starts_with(crate::reconcile::worker::model::REACH_TAG))
    {
        *t = tag.to_string();
        return out;
    }
    let at = out
        .iter()
        .rposition(|t| t.starts_with(crate::reconcile::worker::model::TAG_PREFIX))
        .map_or(0, |i| i + 1);
    if at < crate::reconcile::worker::model::MAX_TAGS {
        out.insert(at, tag.to_string());
        out.truncate(crate::reconcile::worker::model::MAX_TAGS);
    }
    out
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
    fn the_full_section_round_trips_and_is_left_out_whole_when_it_does_not_fit() {
        let zone = "0123456789abcdef0123456789abcdef";
        let mut reached = Reached::default();
        reached.add_zone("example.com", zone);
        reached.add_route(
            "shop.example.com/*",
            zone,
            "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
        );
        reached.add_domain("api.example.com", "00112233445566778899aabbccddeeff");
        let mut r = ReachRecord {
            state: "0123456789abcdef".into(),
            subdomain: Some("acme".into()),
            reached: Some(reached.clone()),
            ..Default::default()
        };
        r.routes
            .insert((zone.into(), id_hash("9f8e7d6c5b4a39281706f5e4d3c2b1a0")));
        r.domains
            .insert(id_hash("00112233445566778899aabbccddeeff"));
        let tag = r.tag();
        assert!(tag.len() <= 1024 && !tag.contains([',', '&']), "{tag}");
        assert_eq!(ReachRecord::parse(&tag), Some(r.clone()));
        assert_eq!(r.as_kept(), r);
        // An id the tag cannot hold as it is: the section is left out, the rest kept.
        let mut odd = r.clone();
        odd.reached
            .as_mut()
            .unwrap()
            .add_domain("www.example.com", "a+b");
        let kept = odd.as_kept();
        assert_eq!(kept.reached, None);
        assert_eq!(
            (kept.state, kept.routes),
            (r.state.clone(), r.routes.clone())
        );
        // Too many routes for the full section: left out whole, never cut.
        let mut many = r.clone();
        for i in 0..20 {
            let id = format!("{i:032x}");
            many.reached
                .as_mut()
                .unwrap()
                .add_route(&format!("shop.example.com/{i}/*"), zone, &id);
            many.routes.insert((zone.into(), id_hash(&id)));
        }
        let tag = many.tag();
        assert!(tag.len() <= 1024, "{}", tag.len());
        let back = ReachRecord::parse(&tag).unwrap();
        assert_eq!(back.reached, None);
        assert_eq!(back.routes, many.routes);
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
}

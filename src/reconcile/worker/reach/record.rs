//! The record flaredock keeps on a script of its reachability (a tag,
//! `flaredock.dev/reach=`), and where it goes among the script's tags.

use std::collections::{BTreeMap, BTreeSet};

/// Characters of a route's or domain's id kept in the record.
const ID_HASH_LEN: usize = 10;

pub(super) fn id_hash(id: &str) -> String {
    let mut h = crate::reconcile::worker::model::short_hash(id.as_bytes());
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
        t
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

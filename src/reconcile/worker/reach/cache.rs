//! The account-wide reads of reachability, kept across Workers: zone ids (resolved
//! once per name, bounded) and the account's workers.dev subdomain.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::cloudflare::{ApiError, CloudflareClient};

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

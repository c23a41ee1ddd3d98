//! The Worker bundles pulled from registries, by reference: (manifest digest, files).
//! A cached bundle is used while a `HEAD` of its reference still answers its digest.
//!
//! Budget: `BUNDLE_BUDGET` bytes of files in all (least recently used bundles go
//! first) and at most `BUNDLE_ENTRIES` references. A Worker's code is at most 10 MiB
//! compressed at Cloudflare (paid plan), so 32 MiB keeps the bundles of several
//! Workers whatever their size, well inside the pod's 256 Mi; a bundle larger than
//! the whole budget (the pull itself caps one at 64 MiB) is not kept and is pulled on
//! each reconcile. Bundles of deleted or changed Workers age out by the same rule.

use super::Bundle;
use crate::bounded::{BoundedMap, Budget, CacheStats};

pub const BUNDLE_BUDGET: usize = 32 << 20;
pub const BUNDLE_ENTRIES: usize = 256;

/// What one bundle costs: its reference, digest, file names and contents.
#[allow(clippy::ptr_arg)] // the weigher's signature is the map's: `fn(&K, &V)`
fn weigh(reference: &String, bundle: &Bundle) -> usize {
    reference.len()
        + bundle.0.len()
        + bundle
            .1
            .iter()
            .map(|(name, data)| name.len() + data.len())
            .sum::<usize>()
}

/// The bundle cache of one account's reconciler.
pub struct BundleCache(BoundedMap<String, Bundle>);

impl Default for BundleCache {
    fn default() -> Self {
        Self::with_budget(Budget {
            entries: BUNDLE_ENTRIES,
            bytes: BUNDLE_BUDGET,
        })
    }
}

impl BundleCache {
    pub fn with_budget(budget: Budget) -> Self {
        BundleCache(BoundedMap::new(budget, weigh))
    }

    pub fn get(&mut self, reference: &str) -> Option<&Bundle> {
        self.0.get(reference)
    }

    /// Keeps a bundle (unless it alone exceeds the budget), evicting older ones.
    pub fn insert(&mut self, reference: String, bundle: Bundle) -> bool {
        self.0.insert(reference, bundle)
    }

    pub fn stats(&self) -> CacheStats {
        self.0.stats()
    }
}

impl super::Reconciler {
    /// How full each cache of this reconciler is (its view's, its image resolver's
    /// and the bundle cache): for the metric `flaredock_cache_entries` and the churn
    /// benchmark.
    pub async fn cache_stats(&self) -> Vec<(&'static str, CacheStats)> {
        let mut stats = self.view.stats().await;
        stats.extend(self.images.cache_stats().await);
        stats.push(("bundles", self.bundles.lock().await.stats()));
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_stay_within_the_byte_budget_under_churn() {
        let mut cache = BundleCache::with_budget(Budget {
            entries: 8,
            bytes: 10_000,
        });
        for i in 0..1_000 {
            let files = vec![("main.js".to_string(), vec![b'x'; 1_500 + i % 700])];
            assert!(cache.insert(
                format!("reg.example/w{i}:v1"),
                (format!("sha256:{i}"), files)
            ));
            let s = cache.stats();
            assert!(s.bytes <= 10_000 && s.entries <= 8, "{s:?}");
        }
        assert!(cache.stats().evicted >= 990);
        assert_eq!(
            cache.get("reg.example/w999:v1").map(|b| b.0.as_str()),
            Some("sha256:999")
        );
        let huge = vec![("main.js".to_string(), vec![0; 20_000])];
        assert!(!cache.insert("big:v1".into(), ("sha256:big".into(), huge)));
    }
}

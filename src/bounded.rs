//! A map with a budget: at most `entries` entries and `bytes` bytes (as its weigher
//! counts them); inserting past either evicts the least recently used entries first.
//! Every long-lived cache of the controller is one of these (the Worker bundles, the
//! rollout targets, the applications being deleted, the registry tokens, the image
//! resolutions), so that memory follows the budget, not the history of the objects
//! seen. Its [`CacheStats`] are what the metric `flaredock_cache_entries` shows.
//!
//! Our own type rather than a crate: the caches need an entry and a byte budget, a
//! count of evictions and `retain`, about a hundred lines; `lru` and friends give the
//! entry budget only.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// What a cache may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub entries: usize,
    /// Bytes as the map's weigher counts them (`usize::MAX`: no byte budget).
    pub bytes: usize,
}

impl Budget {
    pub const fn entries(entries: usize) -> Budget {
        Budget {
            entries,
            bytes: usize::MAX,
        }
    }
}

/// The size of a cache and its budget, for metrics and debug lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub max_entries: usize,
    pub max_bytes: usize,
    /// Entries evicted for the budget since the cache was made.
    pub evicted: u64,
}

struct Slot<V> {
    value: V,
    used: u64,
    bytes: usize,
}

/// A map within a [`Budget`], least recently used entries evicted first.
pub struct BoundedMap<K, V> {
    map: HashMap<K, Slot<V>>,
    /// Entries by last use (a tick unique per entry).
    order: BTreeMap<u64, K>,
    tick: u64,
    bytes: usize,
    budget: Budget,
    evicted: u64,
    weigh: fn(&K, &V) -> usize,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    /// A map counting each entry as one byte (an entry budget only).
    pub fn with_entries(entries: usize) -> Self {
        Self::new(Budget::entries(entries), |_, _| 0)
    }

    pub fn new(budget: Budget, weigh: fn(&K, &V) -> usize) -> Self {
        BoundedMap {
            map: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            bytes: 0,
            budget,
            evicted: 0,
            weigh,
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The value of `key`, marked as just used.
    pub fn get<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        let tick = self.next_tick();
        let stored = self.map.get_key_value(key)?.0.clone();
        let slot = self.map.get_mut(key)?;
        self.order.remove(&slot.used);
        slot.used = tick;
        self.order.insert(tick, stored);
        Some(&slot.value)
    }

    /// The value of `key`, without marking it used.
    pub fn peek<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(key).map(|s| &s.value)
    }

    pub fn contains_key<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.contains_key(key)
    }

    /// Inserts, then evicts the least recently used entries until the budget holds. A
    /// value that alone exceeds the byte budget is not kept (`false`).
    pub fn insert(&mut self, key: K, value: V) -> bool {
        let bytes = (self.weigh)(&key, &value);
        self.remove(&key);
        if bytes > self.budget.bytes || self.budget.entries == 0 {
            return false;
        }
        let tick = self.next_tick();
        self.order.insert(tick, key.clone());
        self.bytes += bytes;
        self.map.insert(
            key,
            Slot {
                value,
                used: tick,
                bytes,
            },
        );
        while self.map.len() > self.budget.entries || self.bytes > self.budget.bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.map.remove(&oldest) {
                self.bytes -= slot.bytes;
                self.evicted += 1;
            }
        }
        true
    }

    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let slot = self.map.remove(key)?;
        self.order.remove(&slot.used);
        self.bytes -= slot.bytes;
        Some(slot.value)
    }

    /// Keeps only the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        let gone: Vec<K> = self
            .map
            .iter()
            .filter(|(k, s)| !keep(k, &s.value))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.remove(&k);
        }
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.bytes = 0;
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().map(|s| &s.value)
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.map.len(),
            bytes: self.bytes,
            max_entries: self.budget.entries,
            max_bytes: self.budget.bytes,
            evicted: self.evicted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_map(entries: usize, bytes: usize) -> BoundedMap<String, Vec<u8>> {
        BoundedMap::new(Budget { entries, bytes }, |k, v| k.len() + v.len())
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut m = BoundedMap::with_entries(2);
        m.insert("a", 1);
        m.insert("b", 2);
        assert_eq!(m.get(&"a"), Some(&1));
        m.insert("c", 3);
        assert!(m.contains_key(&"a") && m.contains_key(&"c"));
        assert!(!m.contains_key(&"b"), "b was the least recently used");
        assert_eq!(m.stats().evicted, 1);
    }

    #[test]
    fn the_byte_budget_holds_and_an_oversized_value_is_not_kept() {
        let mut m = bytes_map(100, 10);
        assert!(m.insert("a".into(), vec![0; 4]));
        assert!(m.insert("b".into(), vec![0; 4]));
        assert_eq!(m.stats().bytes, 10);
        assert!(m.insert("c".into(), vec![0; 1]));
        assert!(m.stats().bytes <= 10);
        assert!(!m.contains_key("a"));
        assert!(!m.insert("huge".into(), vec![0; 20]));
        assert!(!m.contains_key("huge"));
        m.remove("b");
        m.retain(|k, _| k != "c");
        assert_eq!(m.stats().bytes, 0);
        assert!(m.is_empty());
    }

    #[test]
    fn churn_stays_within_the_budget() {
        let mut m = bytes_map(50, 1000);
        for i in 0..10_000 {
            m.insert(format!("k{i}"), vec![0; i % 40]);
            if i % 3 == 0 {
                m.remove(&format!("k{}", i / 2));
            }
            let s = m.stats();
            assert!(s.entries <= 50 && s.bytes <= 1000, "{s:?} after {i}");
            assert_eq!(m.order.len(), m.map.len());
        }
    }
}

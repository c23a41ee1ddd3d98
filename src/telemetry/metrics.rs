//! Prometheus metrics of the controller: reconciles by result and their duration,
//! Cloudflare API calls by operation and status, time spent waiting for the rate
//! limiter, image bytes copied and skipped, objects by Ready state.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::bounded::CacheStats;
use crate::cloudflare::CloudflareClient;
use crate::reconcile::images::ImageResolver;

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
    pub reconciliations: IntCounterVec,
    pub reconcile_duration: Histogram,
    /// Failed reconciles by reason.
    pub reconcile_errors: IntCounterVec,
    /// CloudflareContainers with a rollout in progress.
    pub rollouts: prometheus::IntGauge,
    headroom: IntGaugeVec,
    api_calls: IntCounterVec,
    limiter_wait: IntCounterVec,
    image_bytes: IntCounterVec,
    objects: IntGaugeVec,
    /// Each cache's entries, bytes and budget, per account (`src/bounded.rs`).
    caches: IntGaugeVec,
    /// Last totals seen per account, to turn cumulative sources into counter increments.
    seen: Mutex<HashMap<String, u64>>,
    ready: Mutex<HashMap<String, bool>>,
    rolling: Mutex<std::collections::HashSet<String>>,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric (names are fixed; a failure here is a programming error
    /// caught at startup).
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "flaredock_reconcile_duration_seconds",
                "Duration of one reconcile",
            )
            .buckets(vec![
                0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )
        .unwrap_or_else(|e| panic!("histogram: {e}"));
        registry
            .register(Box::new(reconcile_duration.clone()))
            .unwrap_or_else(|e| panic!("histogram: {e}"));
        let objects = IntGaugeVec::new(
            Opts::new("flaredock_objects", "CloudflareContainers by Ready state"),
            &["ready"],
        )
        .unwrap_or_else(|e| panic!("gauge: {e}"));
        registry
            .register(Box::new(objects.clone()))
            .unwrap_or_else(|e| panic!("gauge: {e}"));
        let headroom = IntGaugeVec::new(
            Opts::new(
                "flaredock_rate_limit_headroom_requests",
                "Requests that still fit in the rate-limit window, per account",
            ),
            &["account"],
        )
        .unwrap_or_else(|e| panic!("gauge: {e}"));
        registry
            .register(Box::new(headroom.clone()))
            .unwrap_or_else(|e| panic!("gauge: {e}"));
        let rollouts = prometheus::IntGauge::with_opts(Opts::new(
            "flaredock_rollouts_in_progress",
            "CloudflareContainers whose rollout is in progress",
        ))
        .unwrap_or_else(|e| panic!("gauge: {e}"));
        registry
            .register(Box::new(rollouts.clone()))
            .unwrap_or_else(|e| panic!("gauge: {e}"));
        let caches = IntGaugeVec::new(
            Opts::new(
                "flaredock_cache_entries",
                "Entries (or bytes, or their budget) of each cache, per account; measure: entries, bytes, max_entries, max_bytes (absent: no such budget)",
            ),
            &["account", "cache", "measure"],
        )
        .unwrap_or_else(|e| panic!("gauge: {e}"));
        registry
            .register(Box::new(caches.clone()))
            .unwrap_or_else(|e| panic!("gauge: {e}"));
        Metrics {
            caches,
            headroom,
            rollouts,
            reconcile_errors: counter(
                &registry,
                "flaredock_reconcile_errors_total",
                "Failed reconciles by reason (Cloudflare's error reason, Kubernetes, Credentials)",
                &["reason"],
            ),
            reconciliations: counter(
                &registry,
                "flaredock_reconciliations_total",
                "Reconciles by result (ready, progressing, stalled, error, deleted)",
                &["result"],
            ),
            reconcile_duration,
            api_calls: counter(
                &registry,
                "flaredock_cloudflare_api_calls_total",
                "Cloudflare API calls by operation and HTTP status (error: no answer)",
                &["operation", "status"],
            ),
            limiter_wait: counter(
                &registry,
                "flaredock_rate_limiter_wait_milliseconds_total",
                "Time calls waited for the client-side rate limiter, per account",
                &["account"],
            ),
            image_bytes: counter(
                &registry,
                "flaredock_image_bytes_total",
                "Image bytes copied into Cloudflare's registry, or skipped as already there",
                &["kind"],
            ),
            objects,
            registry,
            seen: Mutex::new(HashMap::new()),
            ready: Mutex::new(HashMap::new()),
            rolling: Mutex::new(Default::default()),
        }
    }

    /// Records an object's Ready state (for the `flaredock_objects` gauge).
    pub fn set_ready(&self, key: &str, ready: Option<bool>) {
        let mut map = crate::lock(&self.ready);
        match ready {
            Some(r) => {
                map.insert(key.to_string(), r);
            }
            None => {
                map.remove(key);
            }
        }
        let ready = map.values().filter(|r| **r).count() as i64;
        self.objects.with_label_values(&["true"]).set(ready);
        self.objects
            .with_label_values(&["false"])
            .set(map.len() as i64 - ready);
    }

    /// Records whether an object's rollout is in progress (`false` when it is gone).
    pub fn set_rollout(&self, key: &str, in_progress: bool) {
        let mut set = crate::lock(&self.rolling);
        if in_progress {
            set.insert(key.to_string());
        } else {
            set.remove(key);
        }
        self.rollouts.set(set.len() as i64);
    }

    fn advance(&self, key: String, total: u64) -> u64 {
        let mut seen = crate::lock(&self.seen);
        let last = seen.insert(key, total).unwrap_or(0);
        total.saturating_sub(last)
    }

    /// Brings the counters fed by clients and resolvers up to date (on each scrape).
    pub fn collect_from(&self, account: &str, client: &CloudflareClient, images: &ImageResolver) {
        for ((op, status), n) in client.stats().snapshot() {
            let delta = self.advance(format!("{account}|{op}|{status}"), n);
            self.api_calls
                .with_label_values(&[op, status.as_str()])
                .inc_by(delta);
        }
        self.headroom
            .with_label_values(&[account])
            .set(client.limiter().headroom() as i64);
        let waited = client.limiter().waited().as_millis() as u64;
        let delta = self.advance(format!("{account}|wait"), waited);
        self.limiter_wait
            .with_label_values(&[account])
            .inc_by(delta);
        let (copied, skipped) = images.bytes();
        let delta = self.advance(format!("{account}|copied"), copied);
        self.image_bytes
            .with_label_values(&["copied"])
            .inc_by(delta);
        let delta = self.advance(format!("{account}|skipped"), skipped);
        self.image_bytes
            .with_label_values(&["skipped"])
            .inc_by(delta);
    }

    /// Forgets the per-account gauges (before they are set again for the accounts in
    /// use: a dropped account's labels go).
    pub fn reset_account_gauges(&self) {
        self.caches.reset();
        self.headroom.reset();
    }

    /// Sets the cache gauges of one account.
    pub fn set_caches(&self, account: &str, stats: &[(&str, CacheStats)]) {
        for (cache, s) in stats {
            let set = |measure: &str, v: usize| {
                if v != usize::MAX {
                    self.caches
                        .with_label_values(&[account, cache, measure])
                        .set(v as i64);
                }
            };
            set("entries", s.entries);
            set("bytes", s.bytes);
            set("max_entries", s.max_entries);
            set("max_bytes", s.max_bytes);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_gauges_show_each_budget_and_forget_a_dropped_account() {
        let m = Metrics::new();
        let bundles = CacheStats {
            entries: 3,
            bytes: 10,
            max_entries: 256,
            max_bytes: 100,
            evicted: 0,
        };
        let locks = CacheStats {
            entries: 1,
            max_entries: usize::MAX,
            max_bytes: usize::MAX,
            ..Default::default()
        };
        m.set_caches("acct-a", &[("bundles", bundles), ("script_locks", locks)]);
        let text = m.render();
        assert!(
            text.contains(
                r#"flaredock_cache_entries{account="acct-a",cache="bundles",measure="max_bytes"} 100"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"flaredock_cache_entries{account="acct-a",cache="script_locks",measure="entries"} 1"#
        ));
        assert!(
            !text.contains(r#"cache="script_locks",measure="max_entries""#),
            "no budget, no gauge"
        );
        m.reset_account_gauges();
        assert!(!m.render().contains("acct-a"));
    }
}

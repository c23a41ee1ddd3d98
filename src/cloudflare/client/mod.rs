//! The typed Cloudflare API client: one method per operation flaredock uses, the
//! envelope unwrapped into typed results or an [`ApiError`], retries for requests that
//! are safe to repeat, and every call paced by the per-token [`RateLimiter`].
//!
//! Here: its configuration, call counts, and the request vocabulary the operations share
//! (`Repeat`, `Body`, `Part`). The operations, by resource: `containers.rs`
//! (applications, rollouts, registry credentials) and `scripts.rs` (namespaces,
//! scripts), with reachability in [`super::routing`] and a script's download in
//! [`super::script_download`]; how every call is sent: `transport.rs`.
//!
//! Bounded: every request has a connect and an overall timeout; a write's timeout
//! also ends before the [`WriteGate`] closes (the leader Lease). A 429 is never slept
//! out inside a call for long: a short `retry-after` (at most
//! [`ClientConfig::max_rate_wait`]) is waited once; a longer one blocks the token in
//! its limiter and returns [`ApiError::RateLimited`] at once, and every later call
//! with that token fails the same way, without sending, until the block ends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::error::ApiError;
use super::limiter::{RateLimit, RateLimiter};
use super::token::ApiToken;

mod containers;
mod scripts;
mod transport;

pub use transport::{backoff, parse_response};

pub const DEFAULT_BASE_URL: &str = "https://api.cloudflare.com/client/v4";
/// The registry domain credentials are minted for.
pub const CLOUDFLARE_REGISTRY: &str = "registry.cloudflare.com";

pub use super::gate::WriteGate;
pub use super::multipart::multipart_parts;

/// How to reach and pace the API.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub base_url: String,
    pub account_id: String,
    pub token: ApiToken,
    /// Overall time of one request (connect, send, answer), 30 s by default.
    pub timeout: Duration,
    /// Time to establish a connection, 10 s by default.
    pub connect_timeout: Duration,
    pub rate_limit: RateLimit,
    /// The longest a call waits for its token (a short `retry-after`, a full window);
    /// beyond it the call returns [`ApiError::RateLimited`] at once. 5 s by default.
    pub max_rate_wait: Duration,
    /// Attempts for a request that is safe to repeat (5xx, timeouts, dropped connections).
    pub max_attempts: u32,
    /// First backoff delay; doubles each attempt, with jitter.
    pub backoff: Duration,
    /// When set, a write is sent only while it says so, with a timeout that ends
    /// before it closes.
    pub write_gate: Option<WriteGate>,
}

impl ClientConfig {
    pub fn new(
        base_url: impl Into<String>,
        account_id: impl Into<String>,
        token: ApiToken,
    ) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            account_id: account_id.into(),
            token,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            rate_limit: RateLimit::CLOUDFLARE,
            max_rate_wait: Duration::from_secs(5),
            max_attempts: 5,
            backoff: Duration::from_millis(200),
            write_gate: None,
        }
    }
}

/// Counts of API calls by operation and outcome, for benchmarks, tests and metrics.
#[derive(Default)]
pub struct CallStats {
    calls: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl CallStats {
    fn record(&self, operation: &'static str, outcome: String) {
        let mut calls = crate::lock(&self.calls);
        *calls.entry((operation, outcome)).or_default() += 1;
    }

    /// `(operation, outcome) → count`; outcome is the HTTP status or `error`.
    pub fn snapshot(&self) -> BTreeMap<(&'static str, String), u64> {
        crate::lock(&self.calls).clone()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// Calls of operations that change something.
    pub fn writes(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((op, _), _)| is_write(op))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn count(&self, operation: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((op, _), _)| *op == operation)
            .map(|(_, n)| n)
            .sum()
    }
}

fn is_write(operation: &str) -> bool {
    matches!(
        operation,
        "createApplication"
            | "modifyApplication"
            | "deleteApplication"
            | "createApplicationRollout"
            | "uploadScript"
            | "deleteScript"
    ) || super::routing::is_write(operation)
}

/// Whether a failed request may be sent again as is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Repeat {
    /// Reads, PATCH of the same body, DELETE, credential minting.
    Safe,
    /// Creates: a lost response may mean it was applied; the caller checks by name.
    Never,
}

pub(super) enum Body {
    Empty,
    Json(Value),
    /// `multipart/form-data` with these parts.
    Multipart(Vec<Part>),
}

/// One part of a multipart body (kept as bytes: a retry builds the form again).
pub(super) struct Part {
    name: String,
    file_name: Option<String>,
    content_type: String,
    content: Vec<u8>,
}

/// A Cloudflare API client for one account and token. Clones share the connection pool,
/// the limiter and the stats; clients of one token share a limiter when they take it
/// from the same [`super::Limiters`].
#[derive(Clone)]
pub struct CloudflareClient {
    http: reqwest::Client,
    config: Arc<ClientConfig>,
    limiter: Arc<RateLimiter>,
    stats: Arc<CallStats>,
}

impl std::fmt::Debug for CloudflareClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudflareClient")
            .field("base_url", &self.config.base_url)
            .field("account_id", &self.config.account_id)
            .field("token", &self.config.token)
            .finish()
    }
}

impl CloudflareClient {
    /// A client with a limiter of its own (one client per token, as the CLI has).
    pub fn new(config: ClientConfig) -> Result<Self, ApiError> {
        let limiter = Arc::new(RateLimiter::new(config.rate_limit));
        Self::with_limiter(config, limiter)
    }

    /// A client paced by `limiter` (the token's, from the owner's [`super::Limiters`]).
    pub fn with_limiter(config: ClientConfig, limiter: Arc<RateLimiter>) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout.min(config.timeout))
            .user_agent(concat!("flaredock/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Transport {
                operation: "client",
                reason: e.to_string(),
                maybe_applied: false,
            })?;
        Ok(CloudflareClient {
            http,
            config: Arc::new(config),
            limiter,
            stats: Arc::new(CallStats::default()),
        })
    }

    /// Whether a write may be sent now (the write gate, when there is one).
    pub fn writes_allowed(&self) -> bool {
        self.config
            .write_gate
            .as_ref()
            .is_none_or(|g| g.fence(self.config.timeout).is_some())
    }

    pub fn account_id(&self) -> &str {
        &self.config.account_id
    }

    /// A non-reversible fingerprint of the API token (keys hashes of secret values).
    pub fn token_fingerprint(&self) -> [u8; 32] {
        self.config.token.fingerprint()
    }

    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    fn url(&self, path: &str) -> String {
        // Zones are not under the account (`GET /zones`, `/zones/{id}/workers/routes`).
        if path.starts_with("/zones") {
            return format!("{}{path}", self.config.base_url.trim_end_matches('/'));
        }
        format!(
            "{}/accounts/{}{}",
            self.config.base_url.trim_end_matches('/'),
            self.config.account_id,
            path
        )
    }
}

/// A request body as JSON.
fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

//! The emulator's in-memory Cloudflare account: applications, rollouts, Durable Object
//! namespaces and Worker scripts, with the validation and error codes of the real API.
//! No HTTP here: [`super::api`] maps requests onto these methods.
//!
//! **The parts.** This file holds the account itself ([`AccountState`]), its errors
//! ([`Failure`], [`codes`]) and its ids; `applications.rs` the container
//! applications and their rollouts (create, modify, delete, versions, the rollouts'
//! progress), with their checks.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::scripts::ScriptRecord;
use crate::cloudflare::types::*;

/// Error codes the emulator answers with (Cloudflare's own where they are documented).
pub mod codes {
    /// Input failed validation (`VALIDATE_INPUT`).
    pub const VALIDATE_INPUT: i64 = 1000;
    /// Application or rollout does not exist.
    pub const NOT_FOUND: i64 = 1404;
    /// Unknown Worker script.
    pub const SCRIPT_NOT_FOUND: i64 = 10007;
    /// A Durable Object binding names a class the script does not export / has no namespace.
    pub const INVALID_DURABLE_OBJECT: i64 = 10061;
    /// Authentication failed.
    pub const AUTHENTICATION: i64 = 10000;
    /// The token may not act on this account.
    pub const FORBIDDEN: i64 = 9109;
    /// No such route.
    pub const NO_ROUTE: i64 = 7003;
    /// Rate limited.
    pub const RATE_LIMITED: i64 = 1015;
    /// Internal error (fault injection).
    pub const INTERNAL: i64 = 10002;
    /// A Worker over its size limit (`workers.api.error.script_too_large`).
    pub const SCRIPT_TOO_LARGE: i64 = 10027;
    /// Routing failures: Cloudflare documents no numbers for these; the emulator's own
    /// (an unknown zone id is Cloudflare's "Could not route", 7003).
    pub const ZONE_NOT_FOUND: i64 = 7003;
    pub const SUBDOMAIN_NOT_FOUND: i64 = 10007;
    pub const ROUTE_DUPLICATE: i64 = 10020;
    pub const ROUTE_INVALID: i64 = 10022;
    pub const ROUTE_NOT_FOUND: i64 = 10005;
    pub const DOMAIN_ZONE: i64 = 100116;
    pub const DOMAIN_NOT_FOUND: i64 = 100114;
    /// `GET /workers/services/{name}` of a script that does not exist.
    pub const SERVICE_NOT_FOUND: i64 = 10090;
}

/// An API failure: HTTP status plus Cloudflare error.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub status: u16,
    pub code: i64,
    pub message: String,
}

impl Failure {
    pub fn new(status: u16, code: i64, message: impl Into<String>) -> Self {
        Failure {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::new(400, codes::VALIDATE_INPUT, message)
    }

    fn not_found(what: &str) -> Self {
        Failure::new(404, codes::NOT_FOUND, format!("{what} not found"))
    }
}

pub type Outcome<T> = Result<T, Failure>;

mod applications;

use applications::RolloutRecord;
pub use applications::{JURISDICTIONS, REGIONS};

/// Everything the emulated account holds. Serializable for `--state FILE`.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct AccountState {
    pub account_id: String,
    pub(super) applications: BTreeMap<String, Application>,
    rollouts: BTreeMap<String, RolloutRecord>,
    pub namespaces: Vec<DurableObjectNamespace>,
    /// Ids of the namespaces a Worker upload container-enabled.
    #[serde(default)]
    pub container_enabled: BTreeSet<String>,
    pub scripts: BTreeMap<String, ScriptRecord>,
    /// KV namespaces, R2 buckets, D1 databases and queues (`super::storage`).
    #[serde(default)]
    pub storage: super::storage::Storage,
    next_id: u64,
    /// How long one rollout step takes, in milliseconds.
    #[serde(default)]
    pub rollout_step_ms: u64,
    /// How long a deleted application stays listed, its name and namespace taken.
    #[serde(default)]
    pub delete_delay_ms: u64,
    /// Applications being deleted: id → when they go (milliseconds since the epoch).
    #[serde(default)]
    deleting: BTreeMap<String, u64>,
    /// Share of rollouts Cloudflare reverts (`--rollout-revert-rate`).
    #[serde(default)]
    pub rollout_revert_rate: f64,
    /// Rollouts to revert next, whatever the rate (the scripted fault `revert`).
    #[serde(default)]
    pub reverts_scripted: u32,
    /// Subdomains, zones, routes, custom domains, schedules.
    #[serde(default)]
    pub routing: super::routing::Routing,
}

pub(super) fn timestamp() -> String {
    jiff::Timestamp::now().to_string()
}

impl AccountState {
    pub fn new(account_id: &str, rollout_step_ms: u64) -> Self {
        AccountState {
            account_id: account_id.to_string(),
            rollout_step_ms,
            next_id: 1,
            ..Default::default()
        }
    }

    /// A Durable Object namespace id: 32 hex characters, like Cloudflare's; unique
    /// within the emulator.
    pub(super) fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{:016x}{:016x}", fastrand::u64(..), self.next_id)
    }

    /// An application or rollout id: a version-4 UUID, as Cloudflare's containers API
    /// gives (and as `wrangler containers` expects).
    fn new_uuid(&mut self) -> String {
        self.next_id += 1;
        let hi = fastrand::u64(..);
        let lo = fastrand::u64(..) ^ self.next_id;
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0x0fff,
            ((lo >> 48) & 0x3fff) | 0x8000,
            lo & 0xffff_ffff_ffff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_and_rollout_ids_are_uuids() {
        let mut account = AccountState::new("acc", 0);
        let mut seen = BTreeSet::new();
        for _ in 0..100 {
            let id = account.new_uuid();
            let parts: Vec<&str> = id.split('-').collect();
            let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            assert_eq!(lens, [8, 4, 4, 4, 12], "{id}");
            assert!(
                id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
                "{id}"
            );
            assert!(parts[2].starts_with('4'), "version 4: {id}");
            assert!(
                matches!(&parts[3][..1], "8" | "9" | "a" | "b"),
                "RFC 4122 variant: {id}"
            );
            assert!(seen.insert(id));
        }
        assert_eq!(
            account.new_id().len(),
            32,
            "namespace ids stay 32 hex characters"
        );
    }
}

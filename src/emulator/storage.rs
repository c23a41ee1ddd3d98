//! The storage resources Worker bindings point at: KV namespaces, R2 buckets, D1
//! databases and queues (list and create, as the official
//! `workers-routing-storage-openapi-subset.json` describes them), and the check that an
//! upload's `kv_namespace`, `r2_bucket`, `d1`, `queue` and `service` bindings name one
//! that exists.
//!
//! Cloudflare's answers to a binding whose target does not exist are not in the
//! official description. `KV namespace '<id>' is not valid. [code: 10041]` is the
//! message wrangler users see; the R2, D1, queue and service messages and codes below
//! are **UNVERIFIED** (written after the KV one).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::state::{AccountState, Failure, Outcome};

/// KV namespaces, R2 buckets, D1 databases and queues of the account, by id or name.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Storage {
    /// id → `workers-kv_namespace`.
    #[serde(default)]
    pub kv: BTreeMap<String, Value>,
    /// name → `r2_bucket`.
    #[serde(default)]
    pub r2: BTreeMap<String, Value>,
    /// uuid → `d1_database-details-response`.
    #[serde(default)]
    pub d1: BTreeMap<String, Value>,
    /// name → `mq_queue`.
    #[serde(default)]
    pub queues: BTreeMap<String, Value>,
    #[serde(default)]
    next: u64,
}

/// Cloudflare's codes for a binding to something missing (see the module docs).
pub mod codes {
    pub const KV_NAMESPACE_NOT_VALID: i64 = 10041;
    pub const R2_BUCKET_NOT_FOUND: i64 = 10085;
    pub const D1_NOT_FOUND: i64 = 10181;
    pub const QUEUE_NOT_FOUND: i64 = 11003;
    pub const SERVICE_NOT_FOUND: i64 = 10143;
    pub const ALREADY_EXISTS: i64 = 10014;
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

impl Storage {
    fn id(&mut self, what: &str) -> String {
        self.next += 1;
        hex::encode(&Sha256::digest(format!("{what}/{}", self.next))[..16])
    }

    pub fn create_kv(&mut self, title: &str) -> Outcome<Value> {
        if self.kv.values().any(|n| n["title"] == title) {
            return Err(Failure::new(
                400,
                codes::ALREADY_EXISTS,
                "a namespace with this account ID and title already exists",
            ));
        }
        let id = self.id("kv");
        let ns = json!({"id": id, "title": title, "supports_url_encoding": true});
        self.kv.insert(id, ns.clone());
        Ok(ns)
    }

    pub fn create_r2(&mut self, name: &str) -> Outcome<Value> {
        if self.r2.contains_key(name) {
            return Err(Failure::new(
                409,
                codes::ALREADY_EXISTS,
                "The bucket you tried to create already exists, and you own it.",
            ));
        }
        let b = json!({"name": name, "creation_date": now(), "location": "wnam", "storage_class": "Standard"});
        self.r2.insert(name.to_string(), b.clone());
        Ok(b)
    }

    pub fn create_d1(&mut self, name: &str) -> Outcome<Value> {
        if self.d1.values().any(|d| d["name"] == name) {
            return Err(Failure::new(
                400,
                codes::ALREADY_EXISTS,
                format!("A database with that name already exists: {name}"),
            ));
        }
        let h = self.id("d1");
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        );
        let d = json!({"uuid": uuid, "name": name, "created_at": now(), "version": "production", "num_tables": 0, "file_size": 0});
        self.d1.insert(uuid, d.clone());
        Ok(d)
    }

    pub fn create_queue(&mut self, name: &str) -> Outcome<Value> {
        if self.queues.contains_key(name) {
            return Err(Failure::new(
                409,
                codes::ALREADY_EXISTS,
                format!("A queue with name {name} already exists"),
            ));
        }
        let id = self.id("queue");
        let t = now();
        let q = json!({"queue_id": id, "queue_name": name, "created_on": t, "modified_on": t, "producers": [], "producers_total_count": 0, "consumers": [], "consumers_total_count": 0});
        self.queues.insert(name.to_string(), q.clone());
        Ok(q)
    }
}

impl AccountState {
    /// Refuses an upload whose `metadata.bindings` name a KV namespace, R2 bucket, D1
    /// database, queue or service (another script) that does not exist.
    pub fn check_binding_targets(&self, script: &str, metadata: &Value) -> Outcome<()> {
        let Some(bindings) = metadata.get("bindings").and_then(Value::as_array) else {
            return Ok(());
        };
        let s = &self.storage;
        for b in bindings {
            let field = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default();
            let missing = match field("type") {
                "kv_namespace" if !s.kv.contains_key(field("namespace_id")) => Some((
                    codes::KV_NAMESPACE_NOT_VALID,
                    format!("KV namespace '{}' is not valid.", field("namespace_id")),
                )),
                "r2_bucket" if !s.r2.contains_key(field("bucket_name")) => Some((
                    codes::R2_BUCKET_NOT_FOUND,
                    format!(
                        "R2 bucket '{}' not found for binding {}.",
                        field("bucket_name"),
                        field("name")
                    ),
                )),
                "d1" => {
                    let id = if field("database_id").is_empty() {
                        field("id")
                    } else {
                        field("database_id")
                    };
                    (!s.d1.contains_key(id)).then(|| {
                        (
                            codes::D1_NOT_FOUND,
                            format!(
                                "D1 database '{id}' not found for binding {}.",
                                field("name")
                            ),
                        )
                    })
                }
                "queue" if !s.queues.contains_key(field("queue_name")) => Some((
                    codes::QUEUE_NOT_FOUND,
                    format!("Queue \"{}\" does not exist.", field("queue_name")),
                )),
                "service"
                    if field("service") != script
                        && !self.scripts.contains_key(field("service")) =>
                {
                    Some((
                        codes::SERVICE_NOT_FOUND,
                        format!(
                            "Could not resolve service binding '{}'. Target script '{}' not found.",
                            field("name"),
                            field("service")
                        ),
                    ))
                }
                _ => None,
            };
            if let Some((code, message)) = missing {
                return Err(Failure::new(400, code, message));
            }
        }
        Ok(())
    }
}

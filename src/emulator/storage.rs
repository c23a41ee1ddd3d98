//! The storage resources Worker bindings point at: KV namespaces, R2 buckets, D1
//! databases and queues (list and create, as the official
//! `workers-routing-storage-openapi-subset.json` describes them), and the check that an
//! upload's `kv_namespace`, `r2_bucket`, `d1`, `queue` and `service` bindings name one
//! that exists.
//!
//! Cloudflare's answers to a binding whose target does not exist are not in the
//! official description. Each code and message below was searched for in public
//! sources (GitHub issues and pull requests, stored web pages and Cloudflare's docs,
//! wrangler 4.86's own source); what wrangler prints is Cloudflare's `message` followed
//! by ` [code: N]`, so an error a user pasted gives both:
//!
//! | Binding | Code | Message | Source |
//! | --- | --- | --- | --- |
//! | `kv_namespace` | 10042 | `KV namespace '<id>' is not valid. Please verify the namespace_id in your configuration.` | cloudflare/workers-sdk#14249 (2026-06-10, the answer of a Workers for Platforms script upload, `…/workers/dispatch/namespaces/{namespace}/scripts/{name}`; no answer of `PUT /workers/scripts/{name}` itself was found). The code 10041 used before has no public source (searched). |
//! | `r2_bucket` | 10085 | `R2 bucket '<name>' not found. Please use a different name and try again.` | cloudflare/workers-sdk#9418 (2025-05-31, `PUT /workers/scripts/{name}`, wrangler 4.12.1) and #11253 (2025-11-13, the same message from `…/edge-preview`). |
//! | `d1` | 10181 | `D1 binding '<binding>' references database '<id>' which was not found. Verify the database exists in your account and that the database_id in your configuration is correct.` | tianma-if/edgeever#311 (2026-08-28, quoting a deploy log); the same first sentence in cloudflare/workers-sdk#14285 (2026-06-13). Older answers (cloudflare/workers-sdk#10898, 2025-10) were code 10021, `binding DB of type d1 must have a database that already exists. Use wrangler or the UI to create the database.` |
//! | `service` | 10143 | `Service binding '<binding>' references Worker '<service>' which was not found. Verify the Worker exists in your account and that the service name in your configuration is correct.` | heroui-inc/heroui-mcp#75 (2026-03-27, the answer of `POST …/workers/scripts/{name}/versions`). Older (2023): `workers.api.error.service_binding_error: could not resolve binding "<binding>": script "<service>" not found`, same code (benmix/opencatd_worker#15). |
//! | `queue` | **UNVERIFIED** | `Queue "<name>" does not exist.` | Not found: no public answer of a script upload with a `queue` binding to a missing queue was found. wrangler never sends one: before uploading it lists the queues and stops with its own `Queue "<name>" does not exist. To create it, run: wrangler queues create <name>` (`ensureQueuesExist`, wrangler 4.86 `wrangler-dist/cli.js`), whose first sentence the emulator answers. The code is 10104, which Cloudflare documents as `QueueNotFound` ("Queue does not exist") for the Queues API's own operations (developers.cloudflare.com/queues/reference/error-codes); that the Workers upload answers it is not known. |

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

/// Cloudflare's codes for a binding to something missing (see the module docs for the
/// source of each; the queue's is UNVERIFIED).
pub mod codes {
    pub const KV_NAMESPACE_NOT_VALID: i64 = 10042;
    pub const R2_BUCKET_NOT_FOUND: i64 = 10085;
    pub const D1_NOT_FOUND: i64 = 10181;
    pub const QUEUE_NOT_FOUND: i64 = 10104;
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
                    format!(
                        "KV namespace '{}' is not valid. Please verify the namespace_id in your configuration.",
                        field("namespace_id")
                    ),
                )),
                "r2_bucket" if !s.r2.contains_key(field("bucket_name")) => Some((
                    codes::R2_BUCKET_NOT_FOUND,
                    format!(
                        "R2 bucket '{}' not found. Please use a different name and try again.",
                        field("bucket_name")
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
                                "D1 binding '{}' references database '{id}' which was not found. Verify the database exists in your account and that the database_id in your configuration is correct.",
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
                            "Service binding '{}' references Worker '{}' which was not found. Verify the Worker exists in your account and that the service name in your configuration is correct.",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_to_something_missing_gets_the_answer_its_source_shows() {
        let account = AccountState::default();
        let refused = |binding: Value| -> (i64, String) {
            let metadata = json!({"bindings": [binding]});
            match account.check_binding_targets("shop", &metadata) {
                Err(f) => {
                    assert_eq!(f.status, 400);
                    (f.code, f.message)
                }
                Ok(()) => panic!("{metadata} was accepted"),
            }
        };
        // The messages as the cited answers show them (module docs), with our names.
        assert_eq!(
            refused(json!({"type": "kv_namespace", "name": "CACHE", "namespace_id": "placeholder-kv-id"})),
            (
                10042,
                "KV namespace 'placeholder-kv-id' is not valid. Please verify the namespace_id in your configuration.".into()
            )
        );
        assert_eq!(
            refused(json!({"type": "r2_bucket", "name": "R2", "bucket_name": "r2cache"})),
            (
                10085,
                "R2 bucket 'r2cache' not found. Please use a different name and try again.".into()
            )
        );
        assert_eq!(
            refused(json!({"type": "d1", "name": "DB", "id": "00000000-0000-0000-0000-000000000000"})),
            (
                10181,
                "D1 binding 'DB' references database '00000000-0000-0000-0000-000000000000' which was not found. Verify the database exists in your account and that the database_id in your configuration is correct.".into()
            )
        );
        assert_eq!(
            refused(json!({"type": "service", "name": "PLATFORM_API", "service": "platform-api"})),
            (
                10143,
                "Service binding 'PLATFORM_API' references Worker 'platform-api' which was not found. Verify the Worker exists in your account and that the service name in your configuration is correct.".into()
            )
        );
        assert_eq!(
            refused(json!({"type": "queue", "name": "Q", "queue_name": "jobs"})),
            (10104, "Queue \"jobs\" does not exist.".into())
        );
        // A service binding to the script itself is not a missing target.
        let own = json!({"bindings": [{"type": "service", "name": "SELF", "service": "shop"}]});
        assert!(account.check_binding_targets("shop", &own).is_ok());
    }
}

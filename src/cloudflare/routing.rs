//! The client calls of a Worker's reachability (official operations of
//! `cloudflare-api/workers-routing-storage-openapi-subset.json`): the account's
//! `workers.dev` subdomain, a script's subdomain and cron triggers, zone routes,
//! Workers custom domains and zones by name. Field names are the official ones;
//! unknown fields in answers are ignored.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ApiError;
use super::client::{Body, CloudflareClient, Repeat};

/// The routing operations that change something (for [`super::CallStats::writes`]).
pub(super) fn is_write(operation: &str) -> bool {
    matches!(
        operation,
        "worker-script-post-subdomain"
            | "worker-cron-trigger-update-cron-triggers"
            | "worker-routes-create-route"
            | "worker-routes-delete-route"
            | "workers.domains.update"
            | "workers.domains.delete"
            | "worker-script-settings-patch-settings"
    )
}

/// Official `workers_subdomain` (a script's workers.dev state).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ScriptSubdomain {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub previews_enabled: bool,
}

/// Official `workers_subdomain-2` (the account's workers.dev subdomain).
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
pub struct AccountSubdomain {
    pub subdomain: String,
}

/// Official `workers_schedule`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Schedule {
    pub cron: String,
}

#[derive(Deserialize)]
struct Schedules {
    #[serde(default)]
    schedules: Vec<Schedule>,
}

/// Official `workers_route`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
pub struct WorkerRoute {
    pub id: String,
    pub pattern: String,
    /// The script the route runs; none for a route that turns Workers off.
    #[serde(default)]
    pub script: Option<String>,
}

/// Official `workers_Domain`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
pub struct WorkersDomain {
    pub id: String,
    pub hostname: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub zone_id: Option<String>,
    #[serde(default)]
    pub zone_name: Option<String>,
}

/// Official `zones_zone` (the fields flaredock reads).
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
pub struct Zone {
    pub id: String,
    pub name: String,
}

fn query_value(v: &str) -> String {
    v.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || "-._~".contains(c) {
                vec![c]
            } else {
                let mut b = [0u8; 4];
                c.encode_utf8(&mut b)
                    .bytes()
                    .flat_map(|x| format!("%{x:02X}").chars().collect::<Vec<_>>())
                    .collect()
            }
        })
        .collect()
}

impl CloudflareClient {
    /// `GET /workers/subdomain`; `None` when the account has none yet.
    pub async fn account_subdomain(&self) -> Result<Option<String>, ApiError> {
        let r: Result<AccountSubdomain, ApiError> = self
            .call(
                "worker-subdomain-get-subdomain",
                Method::GET,
                "/workers/subdomain".into(),
                Body::Empty,
                Repeat::Safe,
            )
            .await;
        match r {
            Ok(s) if !s.subdomain.is_empty() => Ok(Some(s.subdomain)),
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /workers/scripts/{name}/subdomain`.
    pub async fn script_subdomain(&self, script: &str) -> Result<ScriptSubdomain, ApiError> {
        self.call(
            "worker-script-get-subdomain",
            Method::GET,
            format!("/workers/scripts/{script}/subdomain"),
            Body::Empty,
            Repeat::Safe,
        )
        .await
    }

    /// `POST /workers/scripts/{name}/subdomain` (`enabled`).
    pub async fn set_script_subdomain(
        &self,
        script: &str,
        enabled: bool,
    ) -> Result<ScriptSubdomain, ApiError> {
        self.call(
            "worker-script-post-subdomain",
            Method::POST,
            format!("/workers/scripts/{script}/subdomain"),
            Body::Json(json!({ "enabled": enabled })),
            Repeat::Safe,
        )
        .await
    }

    /// `GET /workers/scripts/{name}/schedules`.
    pub async fn schedules(&self, script: &str) -> Result<Vec<Schedule>, ApiError> {
        let s: Schedules = self
            .call(
                "worker-cron-trigger-get-cron-triggers",
                Method::GET,
                format!("/workers/scripts/{script}/schedules"),
                Body::Empty,
                Repeat::Safe,
            )
            .await?;
        Ok(s.schedules)
    }

    /// `PUT /workers/scripts/{name}/schedules`: the list replaces the script's.
    pub async fn set_schedules(&self, script: &str, crons: &[String]) -> Result<(), ApiError> {
        let body: Vec<Value> = crons.iter().map(|c| json!({ "cron": c })).collect();
        let _: Value = self
            .call(
                "worker-cron-trigger-update-cron-triggers",
                Method::PUT,
                format!("/workers/scripts/{script}/schedules"),
                Body::Json(Value::Array(body)),
                Repeat::Safe,
            )
            .await?;
        Ok(())
    }

    /// `PATCH /workers/scripts/{name}/script-settings` with `tags` only: the script's
    /// tags replaced, no new version (the record of its reachability).
    pub async fn set_script_tags(&self, script: &str, tags: &[String]) -> Result<(), ApiError> {
        let _: Value = self
            .call(
                "worker-script-settings-patch-settings",
                Method::PATCH,
                format!("/workers/scripts/{script}/script-settings"),
                Body::Json(json!({ "tags": tags })),
                Repeat::Safe,
            )
            .await?;
        Ok(())
    }

    /// `GET /zones?name=…`: the zone of that exact name, if the token sees it.
    pub async fn zone_by_name(&self, name: &str) -> Result<Option<Zone>, ApiError> {
        let zones: Vec<Zone> = self
            .call(
                "zones-get",
                Method::GET,
                format!("/zones?name={}", query_value(name)),
                Body::Empty,
                Repeat::Safe,
            )
            .await?;
        Ok(zones
            .into_iter()
            .find(|z| z.name.eq_ignore_ascii_case(name)))
    }

    /// `GET /zones/{zone}/workers/routes`.
    pub async fn list_routes(&self, zone_id: &str) -> Result<Vec<WorkerRoute>, ApiError> {
        self.call(
            "worker-routes-list-routes",
            Method::GET,
            format!("/zones/{zone_id}/workers/routes"),
            Body::Empty,
            Repeat::Safe,
        )
        .await
    }

    /// `POST /zones/{zone}/workers/routes`. Never repeated blindly: a lost answer may
    /// mean it was made (the next observation finds it by pattern).
    pub async fn create_route(
        &self,
        zone_id: &str,
        pattern: &str,
        script: &str,
    ) -> Result<WorkerRoute, ApiError> {
        self.call(
            "worker-routes-create-route",
            Method::POST,
            format!("/zones/{zone_id}/workers/routes"),
            Body::Json(json!({ "pattern": pattern, "script": script })),
            Repeat::Never,
        )
        .await
    }

    /// `DELETE /zones/{zone}/workers/routes/{id}`; `Ok(false)` when already gone.
    pub async fn delete_route(&self, zone_id: &str, id: &str) -> Result<bool, ApiError> {
        let r: Result<Value, ApiError> = self
            .call(
                "worker-routes-delete-route",
                Method::DELETE,
                format!("/zones/{zone_id}/workers/routes/{id}"),
                Body::Empty,
                Repeat::Safe,
            )
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(ApiError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /workers/domains`, every custom domain of the account.
    pub async fn list_domains(&self) -> Result<Vec<WorkersDomain>, ApiError> {
        self.call(
            "workers.domains.list",
            Method::GET,
            "/workers/domains".into(),
            Body::Empty,
            Repeat::Safe,
        )
        .await
    }

    /// `PUT /workers/domains` (attach `hostname` to `service`). Cloudflare moves a
    /// hostname attached elsewhere: the caller checks who holds it first.
    pub async fn attach_domain(
        &self,
        hostname: &str,
        service: &str,
        zone_id: Option<&str>,
    ) -> Result<WorkersDomain, ApiError> {
        let mut body = json!({ "hostname": hostname, "service": service });
        if let Some(z) = zone_id {
            body["zone_id"] = json!(z);
        }
        self.call(
            "workers.domains.update",
            Method::PUT,
            "/workers/domains".into(),
            Body::Json(body),
            Repeat::Safe,
        )
        .await
    }

    /// `DELETE /workers/domains/{id}`; `Ok(false)` when already gone.
    pub async fn detach_domain(&self, id: &str) -> Result<bool, ApiError> {
        let r: Result<Value, ApiError> = self
            .call(
                "workers.domains.delete",
                Method::DELETE,
                format!("/workers/domains/{id}"),
                Body::Empty,
                Repeat::Safe,
            )
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(ApiError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

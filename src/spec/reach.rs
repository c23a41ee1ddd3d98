//! How a CloudflareWorker is reached: its `workers.dev` subdomain, zone routes,
//! Workers custom domains and cron triggers (issue 21). The spec fields, their status
//! and the checks that run before any call.
//!
//! Routes and domains live at the zone or the account, not in the script: the status
//! records the ids of those this object made (`status.routes`, `status.domains`) so
//! that flaredock deletes only those.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::FieldError;

/// A zone route: requests matching `pattern` in the zone run this Worker (official
/// `workers_route`). The zone is named (`zoneName`, resolved to its id once) or given
/// by id (`zoneId`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[x_kube(validation = Rule::new("has(self.zoneName) != has(self.zoneId)").message("exactly one of zoneName or zoneId must be set"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerRoute {
    /// Pattern matched against requests (`shop.example.com/*`).
    #[schemars(length(min = 1, max = 1024))]
    pub pattern: String,
    /// Name of the zone the pattern's host is in (`example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub zone_name: Option<String>,
    /// Id of the zone (32 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{32}$"))]
    pub zone_id: Option<String>,
}

/// A Workers custom domain: Cloudflare makes the DNS record and the certificate for
/// `hostname` and sends its requests to this Worker (official `workers_Domain`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerDomain {
    /// The hostname (`api.example.com`): the zone apex or a name under it.
    #[schemars(length(min = 1, max = 253))]
    pub hostname: String,
    /// The zone of the hostname; found by Cloudflare from the hostname when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub zone_name: Option<String>,
}

/// A route this object made, as the status records it.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    pub pattern: String,
    pub zone_id: String,
    /// The route's id at Cloudflare.
    pub id: String,
}

/// A custom domain this object made, as the status records it.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub struct DomainStatus {
    pub hostname: String,
    /// The domain's id at Cloudflare.
    pub id: String,
}

/// `workersDev` defaults to true, as wrangler's `workers_dev`.
pub fn default_workers_dev() -> bool {
    true
}

/// Is `workersDev` the default (not written back)?
pub fn is_default_workers_dev(v: &bool) -> bool {
    *v
}

fn is_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').count() >= 2
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// The host of a route pattern (`*.shop.example.com/api/*` → `shop.example.com`).
pub fn pattern_host(pattern: &str) -> &str {
    let p = pattern
        .strip_prefix("https://")
        .or_else(|| pattern.strip_prefix("http://"))
        .unwrap_or(pattern);
    let host = p.split('/').next().unwrap_or("");
    host.trim_start_matches('*').trim_start_matches('.')
}

fn in_zone(host: &str, zone: &str) -> bool {
    host == zone || host.ends_with(&format!(".{zone}"))
}

/// The checks of `routes`, `domains` and `crons` that run before any call.
pub fn validate_reach(
    routes: &[WorkerRoute],
    domains: &[WorkerDomain],
    crons: &[String],
    err: &mut impl FnMut(&str, String),
) {
    let mut patterns = std::collections::BTreeSet::new();
    for (i, r) in routes.iter().enumerate() {
        let field = format!("spec.routes[{i}]");
        if !patterns.insert(r.pattern.as_str()) {
            err(
                &format!("{field}.pattern"),
                format!("{:?} is listed twice", r.pattern),
            );
        }
        let host = pattern_host(&r.pattern);
        if !r.pattern.contains('/') || !is_hostname(&host.to_ascii_lowercase()) {
            err(
                &format!("{field}.pattern"),
                format!(
                    "{:?} must be a host and a path (`shop.example.com/*`)",
                    r.pattern
                ),
            );
        }
        match (&r.zone_name, &r.zone_id) {
            (Some(z), None) => {
                if !is_hostname(z) {
                    err(
                        &format!("{field}.zoneName"),
                        format!("{z:?} must be a zone name (`example.com`)"),
                    );
                } else if !in_zone(&host.to_ascii_lowercase(), z) {
                    err(
                        &format!("{field}.pattern"),
                        format!("the host of {:?} is not in zone {z}", r.pattern),
                    );
                }
            }
            (None, Some(id)) => {
                if id.len() != 32 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
                    err(
                        &format!("{field}.zoneId"),
                        format!("{id:?} must be a zone id (32 hex digits)"),
                    );
                }
            }
            _ => err(
                &field,
                "exactly one of zoneName or zoneId must be set".into(),
            ),
        }
    }
    let mut hosts = std::collections::BTreeSet::new();
    for (i, d) in domains.iter().enumerate() {
        let field = format!("spec.domains[{i}]");
        if !hosts.insert(d.hostname.as_str()) {
            err(
                &format!("{field}.hostname"),
                format!("{:?} is listed twice", d.hostname),
            );
        }
        if !is_hostname(&d.hostname) || d.hostname.contains('*') {
            err(
                &format!("{field}.hostname"),
                format!(
                    "{:?} must be a hostname without wildcard (`api.example.com`)",
                    d.hostname
                ),
            );
        }
        if let Some(z) = &d.zone_name
            && !in_zone(&d.hostname, z)
        {
            err(
                &format!("{field}.zoneName"),
                format!("{:?} is not in zone {z}", d.hostname),
            );
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in crons.iter().enumerate() {
        let fields = c.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            err(
                &format!("spec.crons[{i}]"),
                format!("{c:?} must be a cron expression of five fields (`*/5 * * * *`)"),
            );
        }
        if !seen.insert(c.split_whitespace().collect::<Vec<_>>().join(" ")) {
            err(
                &format!("spec.crons[{i}]"),
                format!("{c:?} is listed twice"),
            );
        }
    }
}

/// The errors of [`validate_reach`], as [`FieldError`]s.
pub fn reach_errors(
    routes: &[WorkerRoute],
    domains: &[WorkerDomain],
    crons: &[String],
) -> Vec<FieldError> {
    let mut out = Vec::new();
    validate_reach(routes, domains, crons, &mut |field, message| {
        out.push(FieldError {
            field: field.to_string(),
            message,
        })
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_cloudflare_would_refuse_naming_the_field() {
        let routes = vec![
            WorkerRoute {
                pattern: "shop.example.com/*".into(),
                zone_name: Some("example.com".into()),
                zone_id: None,
            },
            WorkerRoute {
                pattern: "shop.other.org/*".into(),
                zone_name: Some("example.com".into()),
                zone_id: None,
            },
            WorkerRoute {
                pattern: "shop.example.com/*".into(),
                zone_name: None,
                zone_id: None,
            },
        ];
        let domains = vec![WorkerDomain {
            hostname: "*.example.com".into(),
            zone_name: None,
        }];
        let crons = vec!["*/5 * * * *".to_string(), "every minute".to_string()];
        let errors = reach_errors(&routes, &domains, &crons);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.routes[1].pattern",
                "spec.routes[2].pattern",
                "spec.routes[2]",
                "spec.domains[0].hostname",
                "spec.crons[1]",
            ]
        );
        assert!(reach_errors(&routes[..1], &[], &crons[..1]).is_empty());
    }

    #[test]
    fn pattern_hosts() {
        assert_eq!(pattern_host("*.shop.example.com/api/*"), "shop.example.com");
        assert_eq!(pattern_host("https://example.com/*"), "example.com");
    }
}

//! How requests reach Workers in the emulated account: the account's workers.dev
//! subdomain, each script's `workers.dev` switch, zones, zone routes, Workers custom
//! domains and cron schedules, as the official routing extract
//! (`cloudflare-api/workers-routing-storage-openapi-subset.json`) describes them; and
//! which script a request's host and path reach ([`Routing::script_for`]).
//!
//! **Route matching**, as Cloudflare documents it: a pattern is `host/path`, an optional
//! `http://`/`https://` scheme ignored; `*` is the only operator; a leading `*` on the host
//! matches any prefix (`*.example.com` every subdomain, `*example.com` the apex too); a
//! trailing `*` on the path any suffix, a path without one only itself; a route matches
//! the whole URL, query string included. When several match, the most specific wins:
//! a host without wildcard before one with, then the longer pattern. A route without
//! `script` matches and runs nothing (the request goes to the origin). Custom domains
//! win over routes.
//!
//! **Not reproduced**: the origin behind a zone (a request no Worker takes, on a zone or
//! not, is answered as for a host Cloudflare does not know: 530 `error code: 1001`);
//! infix wildcards are accepted, not refused; certificates and DNS records of custom
//! domains; preview URLs; schedules are stored, never run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::state::{AccountState, Failure, Outcome, codes};

/// A zone of the account.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Zone {
    pub id: String,
    pub name: String,
}

/// A zone route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Route {
    pub id: String,
    pub zone_id: String,
    pub pattern: String,
    #[serde(default)]
    pub script: Option<String>,
}

/// A Workers custom domain.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Domain {
    pub id: String,
    pub zone_id: String,
    pub zone_name: String,
    pub hostname: String,
    pub service: String,
    pub cert_id: String,
}

/// A script's workers.dev switches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct WorkersDev {
    pub enabled: bool,
    pub previews_enabled: bool,
}

/// Everything that routes requests to scripts.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Routing {
    #[serde(default)]
    pub subdomain: Option<String>,
    #[serde(default)]
    pub zones: Vec<Zone>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub domains: Vec<Domain>,
    /// Script → workers.dev state (a script not listed: disabled).
    #[serde(default)]
    pub workers_dev: BTreeMap<String, WorkersDev>,
    /// Script → schedules as stored (`cron`, `created_on`, `modified_on`).
    #[serde(default)]
    pub schedules: BTreeMap<String, Vec<Value>>,
}

/// What a host reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// This script answers.
    Script(String),
    /// A host Cloudflare's edge answers itself (no Worker takes it).
    Edge,
    /// Not a Workers host: the emulator's API and registry.
    Api,
}

fn strip_scheme(p: &str) -> &str {
    p.strip_prefix("https://")
        .or_else(|| p.strip_prefix("http://"))
        .unwrap_or(p)
}

/// Whether `value` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || value.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &value[first.len()..];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Whether the route `pattern` matches `host` and `path_and_query`.
pub fn route_matches(pattern: &str, host: &str, path_and_query: &str) -> bool {
    let p = strip_scheme(pattern);
    let (host_pattern, path_pattern) = match p.find('/') {
        Some(i) => (&p[..i], &p[i..]),
        None => (p, "/"),
    };
    glob(
        &host_pattern.to_ascii_lowercase(),
        &host.to_ascii_lowercase(),
    ) && glob(path_pattern, path_and_query)
}

/// How specific a pattern is (greater wins).
fn specificity(pattern: &str) -> (bool, usize) {
    let p = strip_scheme(pattern);
    let host = p.split('/').next().unwrap_or("");
    (!host.contains('*'), p.len())
}

impl Routing {
    /// The script (if any) a request to `host` (no port) and `path_and_query` reaches.
    pub fn script_for(&self, host: &str, path_and_query: &str) -> Reach {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(rest) = host.strip_suffix(".workers.dev") {
            let Some((script, sub)) = rest.split_once('.') else {
                return Reach::Edge;
            };
            if self.subdomain.as_deref() == Some(sub)
                && self.workers_dev.get(script).is_some_and(|w| w.enabled)
            {
                return Reach::Script(script.to_string());
            }
            return Reach::Edge;
        }
        if let Some(d) = self.domains.iter().find(|d| d.hostname == host) {
            return Reach::Script(d.service.clone());
        }
        let best = self
            .routes
            .iter()
            .filter(|r| route_matches(&r.pattern, &host, path_and_query))
            .max_by_key(|r| specificity(&r.pattern));
        if let Some(r) = best {
            return match &r.script {
                Some(s) => Reach::Script(s.clone()),
                None => Reach::Edge,
            };
        }
        let in_zone = self
            .zones
            .iter()
            .any(|z| host == z.name || host.ends_with(&format!(".{}", z.name)));
        if in_zone { Reach::Edge } else { Reach::Api }
    }

    fn zone(&self, id: &str) -> Outcome<&Zone> {
        self.zones.iter().find(|z| z.id == id).ok_or_else(|| {
            Failure::new(
                404,
                codes::ZONE_NOT_FOUND,
                "Could not route to /zones: zone not found",
            )
        })
    }
}

/// A route as the API answers it (`workers_route`).
fn route_json(r: &Route) -> Value {
    let mut v = json!({"id": r.id, "pattern": r.pattern});
    if let Some(s) = &r.script {
        v["script"] = json!(s);
    }
    v
}

fn domain_json(d: &Domain) -> Value {
    json!({
        "id": d.id, "cert_id": d.cert_id, "zone_id": d.zone_id, "zone_name": d.zone_name,
        "hostname": d.hostname, "service": d.service, "environment": "production",
    })
}

impl AccountState {
    /// Seeds zones by name and the account subdomain (at start; kept when the state
    /// file already has them).
    pub fn seed_routing(&mut self, zones: &[String], subdomain: Option<&str>) {
        for name in zones {
            if !self.routing.zones.iter().any(|z| &z.name == name) {
                let id = self.new_id();
                self.routing.zones.push(Zone {
                    id,
                    name: name.to_ascii_lowercase(),
                });
            }
        }
        if self.routing.subdomain.is_none() {
            self.routing.subdomain = subdomain.map(str::to_string);
        }
    }

    fn require_script(&self, name: &str) -> Outcome<()> {
        if self.scripts.contains_key(name) {
            Ok(())
        } else {
            Err(Failure::new(
                404,
                codes::SCRIPT_NOT_FOUND,
                format!("This Worker does not exist on your account: {name}"),
            ))
        }
    }

    /// `GET /workers/subdomain`.
    pub fn account_subdomain(&self) -> Outcome<Value> {
        match &self.routing.subdomain {
            Some(s) => Ok(json!({"subdomain": s})),
            None => Err(Failure::new(
                404,
                codes::SUBDOMAIN_NOT_FOUND,
                "This account does not have a workers.dev subdomain yet",
            )),
        }
    }

    /// `PUT /workers/subdomain`.
    pub fn put_account_subdomain(&mut self, body: &Value) -> Outcome<Value> {
        let s = body["subdomain"]
            .as_str()
            .unwrap_or("")
            .to_ascii_lowercase();
        let valid = !s.is_empty()
            && s.len() <= 63
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if !valid {
            return Err(Failure::invalid(format!(
                "subdomain: {s:?} is not a valid DNS label (letters, digits and '-', at most 63)"
            )));
        }
        self.routing.subdomain = Some(s.clone());
        Ok(json!({"subdomain": s}))
    }

    /// `GET /workers/scripts/{name}/subdomain`.
    pub fn script_subdomain(&self, name: &str) -> Outcome<Value> {
        self.require_script(name)?;
        let w = self
            .routing
            .workers_dev
            .get(name)
            .copied()
            .unwrap_or_default();
        Ok(json!({"enabled": w.enabled, "previews_enabled": w.previews_enabled}))
    }

    /// `POST /workers/scripts/{name}/subdomain`.
    pub fn post_script_subdomain(&mut self, name: &str, body: &Value) -> Outcome<Value> {
        self.require_script(name)?;
        let enabled = body["enabled"].as_bool().unwrap_or(false);
        let entry = self
            .routing
            .workers_dev
            .entry(name.to_string())
            .or_default();
        entry.enabled = enabled;
        entry.previews_enabled = body["previews_enabled"]
            .as_bool()
            .unwrap_or(entry.previews_enabled);
        let w = *entry;
        Ok(json!({"enabled": w.enabled, "previews_enabled": w.previews_enabled}))
    }

    /// `GET /workers/scripts/{name}/schedules`.
    pub fn schedules(&self, name: &str) -> Outcome<Value> {
        self.require_script(name)?;
        let list = self
            .routing
            .schedules
            .get(name)
            .cloned()
            .unwrap_or_default();
        Ok(json!({"schedules": list}))
    }

    /// `PUT /workers/scripts/{name}/schedules`: the list replaces the script's.
    pub fn put_schedules(&mut self, name: &str, body: &Value) -> Outcome<Value> {
        self.require_script(name)?;
        let now = super::state::timestamp();
        let mut list = Vec::new();
        for item in body.as_array().into_iter().flatten() {
            let cron = item["cron"].as_str().unwrap_or("");
            let fields = cron.split_whitespace().count();
            if !(5..=6).contains(&fields) {
                return Err(Failure::invalid(format!(
                    "cron: {cron:?} is not a cron expression of five fields"
                )));
            }
            list.push(json!({"cron": cron, "created_on": now, "modified_on": now}));
        }
        self.routing
            .schedules
            .insert(name.to_string(), list.clone());
        Ok(json!({"schedules": list}))
    }

    /// `GET /workers/scripts/{name}/script-settings` (`workers_script-settings-item`).
    pub fn script_only_settings(&self, name: &str) -> Outcome<Value> {
        let script = self.scripts.get(name).ok_or_else(|| {
            Failure::new(
                404,
                codes::SCRIPT_NOT_FOUND,
                format!("This Worker does not exist on your account: {name}"),
            )
        })?;
        let mut out = json!({"logpush": false, "tags": script.tags, "tail_consumers": null});
        for k in ["observability", "tail_consumers"] {
            if let Some(v) = script.settings.get(k) {
                out[k] = v.clone();
            }
        }
        Ok(out)
    }

    /// `PATCH /workers/scripts/{name}/script-settings`: `tags` (when present) replaces
    /// the script's tags, and `observability` / `tail_consumers` (when present, each
    /// checked against its official schema) replace those settings, with no new version
    /// (the etag stays); other fields are left as they are (`wrangler deploy` sends
    /// `logpush`, `observability` and `tail_consumers` here after a version upload).
    pub fn patch_script_only_settings(&mut self, name: &str, body: &Value) -> Outcome<Value> {
        self.require_script(name)?;
        for k in ["observability", "tail_consumers"] {
            let Some(v) = body.get(k) else { continue };
            if !v.is_null() {
                super::scripts::check_setting(k, v, k)?;
            }
            if let Some(s) = self.scripts.get_mut(name) {
                if v.is_null() {
                    s.settings.remove(k);
                } else {
                    s.settings.insert(k.to_string(), v.clone());
                }
            }
        }
        match body.get("tags") {
            None => {}
            Some(Value::Null) => {
                if let Some(s) = self.scripts.get_mut(name) {
                    s.tags.clear();
                }
            }
            Some(Value::Array(items)) => {
                let mut tags = Vec::new();
                for t in items {
                    let Some(t) = t.as_str() else {
                        return Err(Failure::invalid("tags: each tag is a string"));
                    };
                    if t.contains(',') || t.contains('&') || t.len() > 1024 {
                        return Err(Failure::invalid(format!(
                            "tags: {t:?} must not contain ',' or '&' and is at most 1024 characters"
                        )));
                    }
                    tags.push(t.to_string());
                }
                if tags.len() > 10 {
                    return Err(Failure::invalid("tags: at most 10 tags"));
                }
                if let Some(s) = self.scripts.get_mut(name) {
                    s.tags = tags;
                }
            }
            Some(_) => return Err(Failure::invalid("tags: must be a list")),
        }
        self.script_only_settings(name)
    }

    /// `GET /zones` (`name` filters by exact name), with its `result_info`.
    pub fn list_zones(&self, name: Option<&str>) -> (Vec<Value>, Value) {
        let now = super::state::timestamp();
        let zones: Vec<Value> = self
            .routing
            .zones
            .iter()
            .filter(|z| name.is_none_or(|n| n.eq_ignore_ascii_case(&z.name)))
            .map(|z| {
                json!({
                    "id": z.id, "name": z.name, "status": "active", "paused": false, "type": "full",
                    "development_mode": 0,
                    "owner": {"id": self.account_id, "name": "flaredock emulator", "type": "user"},
                    "account": {"id": self.account_id, "name": "flaredock emulator"},
                    "meta": {"cdn_only": false, "dns_only": false},
                    "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                    "original_name_servers": null, "original_registrar": null,
                    "original_dnshost": null,
                    "created_on": now, "modified_on": now, "activated_on": now,
                    "plan": {"id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "name": "Free Website", "price": 0,
                             "currency": "USD", "frequency": "", "is_subscribed": false,
                             "can_subscribe": false, "legacy_id": "free", "legacy_discount": false,
                             "externally_managed": false},
                })
            })
            .collect();
        let n = zones.len();
        let info =
            json!({"page": 1, "per_page": 20, "count": n, "total_count": n, "total_pages": 1});
        (zones, info)
    }

    /// `GET /zones/{zone}/workers/routes`.
    pub fn list_routes(&self, zone: &str) -> Outcome<Vec<Value>> {
        self.routing.zone(zone)?;
        Ok(self
            .routing
            .routes
            .iter()
            .filter(|r| r.zone_id == zone)
            .map(route_json)
            .collect())
    }

    /// `POST /zones/{zone}/workers/routes`.
    pub fn create_route(&mut self, zone: &str, body: &Value) -> Outcome<Value> {
        let zone_name = self.routing.zone(zone)?.name.clone();
        let pattern = body["pattern"].as_str().unwrap_or("").to_string();
        let host = strip_scheme(&pattern).split('/').next().unwrap_or("");
        let bare = host.trim_start_matches('*').trim_start_matches('.');
        if pattern.is_empty() || !(bare == zone_name || bare.ends_with(&format!(".{zone_name}"))) {
            return Err(Failure::new(
                400,
                codes::ROUTE_INVALID,
                format!("pattern {pattern:?}: the host must be in zone {zone_name}"),
            ));
        }
        if self.routing.routes.iter().any(|r| r.pattern == pattern) {
            return Err(Failure::new(
                409,
                codes::ROUTE_DUPLICATE,
                format!("A route with the same pattern already exists: {pattern}"),
            ));
        }
        let script = body["script"].as_str().map(str::to_string);
        if let Some(s) = &script {
            self.require_script(s)?;
        }
        let route = Route {
            id: self.new_id(),
            zone_id: zone.to_string(),
            pattern,
            script,
        };
        let v = route_json(&route);
        self.routing.routes.push(route);
        Ok(v)
    }

    /// `PUT /workers/scripts/{name}/routes` (wrangler's call, not in the official
    /// extract): the script's zone routes become exactly `body`, a list of `{pattern,
    /// zone_name | zone_id}` (a pattern alone: the zone its host is in). A pattern
    /// another script holds is refused, as a duplicate route is.
    pub fn put_script_routes(&mut self, name: &str, body: &Value) -> Outcome<Value> {
        self.require_script(name)?;
        let items = body
            .as_array()
            .ok_or_else(|| Failure::invalid("the body must be a list of routes"))?;
        let mut wanted = Vec::new();
        for (i, r) in items.iter().enumerate() {
            let pattern = r["pattern"]
                .as_str()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| Failure::invalid(format!("[{i}].pattern: required")))?
                .to_string();
            let host = strip_scheme(&pattern).split('/').next().unwrap_or("");
            let bare = host
                .trim_start_matches('*')
                .trim_start_matches('.')
                .to_string();
            let zone = match (r["zone_id"].as_str(), r["zone_name"].as_str()) {
                (Some(id), _) => self.routing.zone(id)?.id.clone(),
                (None, Some(zn)) => self
                    .routing
                    .zones
                    .iter()
                    .find(|z| z.name == zn)
                    .map(|z| z.id.clone())
                    .ok_or_else(|| {
                        Failure::new(404, codes::ZONE_NOT_FOUND, format!("zone {zn} not found"))
                    })?,
                (None, None) => self
                    .routing
                    .zones
                    .iter()
                    .filter(|z| bare == z.name || bare.ends_with(&format!(".{}", z.name)))
                    .max_by_key(|z| z.name.len())
                    .map(|z| z.id.clone())
                    .ok_or_else(|| {
                        Failure::new(
                            400,
                            codes::ROUTE_INVALID,
                            format!("pattern {pattern:?}: no zone of the account holds its host"),
                        )
                    })?,
            };
            if let Some(other) = self
                .routing
                .routes
                .iter()
                .find(|x| x.pattern == pattern && x.script.as_deref() != Some(name))
            {
                return Err(Failure::new(
                    409,
                    codes::ROUTE_DUPLICATE,
                    format!(
                        "A route with the same pattern already exists: {pattern} (script {})",
                        other.script.as_deref().unwrap_or("none")
                    ),
                ));
            }
            wanted.push((zone, pattern));
        }
        self.routing.routes.retain(|x| {
            x.script.as_deref() != Some(name)
                || wanted
                    .iter()
                    .any(|(z, p)| *z == x.zone_id && *p == x.pattern)
        });
        for (zone, pattern) in wanted {
            let zone_name = self.routing.zone(&zone)?.name.clone();
            let host = strip_scheme(&pattern).split('/').next().unwrap_or("");
            let bare = host.trim_start_matches('*').trim_start_matches('.');
            if !(bare == zone_name || bare.ends_with(&format!(".{zone_name}"))) {
                return Err(Failure::new(
                    400,
                    codes::ROUTE_INVALID,
                    format!("pattern {pattern:?}: the host must be in zone {zone_name}"),
                ));
            }
            if !self.routing.routes.iter().any(|x| x.pattern == pattern) {
                let id = self.new_id();
                self.routing.routes.push(Route {
                    id,
                    zone_id: zone,
                    pattern,
                    script: Some(name.to_string()),
                });
            }
        }
        Ok(Value::Array(
            self.routing
                .routes
                .iter()
                .filter(|x| x.script.as_deref() == Some(name))
                .map(route_json)
                .collect(),
        ))
    }

    /// `DELETE /zones/{zone}/workers/routes/{id}`.
    pub fn delete_route(&mut self, zone: &str, id: &str) -> Outcome<Value> {
        self.routing.zone(zone)?;
        let before = self.routing.routes.len();
        self.routing
            .routes
            .retain(|r| !(r.zone_id == zone && r.id == id));
        if self.routing.routes.len() == before {
            return Err(Failure::new(404, codes::ROUTE_NOT_FOUND, "Route not found"));
        }
        Ok(json!({"id": id}))
    }

    /// `GET /workers/domains` (filters `hostname`, `service`, `zone_id`, `zone_name`).
    pub fn list_domains(&self, filters: &[(String, String)]) -> Vec<Value> {
        self.routing
            .domains
            .iter()
            .filter(|d| {
                filters.iter().all(|(k, v)| match k.as_str() {
                    "hostname" => &d.hostname == v,
                    "service" => &d.service == v,
                    "zone_id" => &d.zone_id == v,
                    "zone_name" => &d.zone_name == v,
                    _ => true,
                })
            })
            .map(domain_json)
            .collect()
    }

    /// `PUT /workers/domains` (attach): the hostname's zone is found by name (or the
    /// given `zone_id`); attaching a hostname again moves it to the new service.
    pub fn attach_domain(&mut self, body: &Value) -> Outcome<Value> {
        let hostname = body["hostname"].as_str().unwrap_or("").to_ascii_lowercase();
        let service = body["service"].as_str().unwrap_or("").to_string();
        self.require_script(&service)?;
        let zone = self
            .routing
            .zones
            .iter()
            .filter(|z| hostname == z.name || hostname.ends_with(&format!(".{}", z.name)))
            .filter(|z| body["zone_id"].as_str().is_none_or(|id| id == z.id))
            .max_by_key(|z| z.name.len())
            .cloned()
            .ok_or_else(|| {
                Failure::new(
                    400,
                    codes::DOMAIN_ZONE,
                    format!("hostname {hostname:?} is not in a zone of this account"),
                )
            })?;
        if let Some(d) = self
            .routing
            .domains
            .iter_mut()
            .find(|d| d.hostname == hostname)
        {
            d.service = service;
            return Ok(domain_json(d));
        }
        let d = Domain {
            id: self.new_id(),
            zone_id: zone.id,
            zone_name: zone.name,
            hostname,
            service,
            cert_id: format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                fastrand::u32(..),
                fastrand::u16(..),
                fastrand::u16(..0x1000),
                fastrand::u16(..0x1000),
                fastrand::u64(..1 << 48)
            ),
        };
        let v = domain_json(&d);
        self.routing.domains.push(d);
        Ok(v)
    }

    /// `GET /workers/domains/{id}`.
    pub fn get_domain(&self, id: &str) -> Outcome<Value> {
        self.routing
            .domains
            .iter()
            .find(|d| d.id == id)
            .map(domain_json)
            .ok_or_else(|| Failure::new(404, codes::DOMAIN_NOT_FOUND, "Domain not found"))
    }

    /// `DELETE /workers/domains/{id}` (detach).
    pub fn detach_domain(&mut self, id: &str) -> Outcome<()> {
        let before = self.routing.domains.len();
        self.routing.domains.retain(|d| d.id != id);
        if self.routing.domains.len() == before {
            return Err(Failure::new(
                404,
                codes::DOMAIN_NOT_FOUND,
                "Domain not found",
            ));
        }
        Ok(())
    }

    /// What goes with a deleted script: its workers.dev state, schedules, custom
    /// domains; its routes stay, without a script (as Cloudflare leaves them).
    pub fn forget_routing(&mut self, name: &str) {
        self.routing.workers_dev.remove(name);
        self.routing.schedules.remove(name);
        self.routing.domains.retain(|d| d.service != name);
        for r in self.routing.routes.iter_mut() {
            if r.script.as_deref() == Some(name) {
                r.script = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_as_cloudflare_documents() {
        assert!(route_matches("example.com/*", "example.com", "/a?b=1"));
        assert!(!route_matches("example.com/*", "www.example.com", "/"));
        assert!(route_matches("*.example.com/*", "www.example.com", "/"));
        assert!(!route_matches("*.example.com/*", "example.com", "/"));
        assert!(route_matches("*example.com/*", "example.com", "/"));
        assert!(route_matches(
            "example.com/images/*",
            "example.com",
            "/images/a.png"
        ));
        assert!(!route_matches(
            "example.com/images/*",
            "example.com",
            "/img"
        ));
        assert!(route_matches("https://example.com/", "example.com", "/"));
        assert!(!route_matches("example.com/", "example.com", "/?q=1"));
    }

    #[test]
    fn the_most_specific_route_wins() {
        let mut r = Routing {
            zones: vec![Zone {
                id: "z".into(),
                name: "example.com".into(),
            }],
            ..Default::default()
        };
        for (p, s) in [("*.example.com/*", "wild"), ("www.example.com/*", "www")] {
            r.routes.push(Route {
                id: s.into(),
                zone_id: "z".into(),
                pattern: p.into(),
                script: Some(s.into()),
            });
        }
        assert_eq!(
            r.script_for("www.example.com", "/"),
            Reach::Script("www".into())
        );
        assert_eq!(
            r.script_for("api.example.com", "/"),
            Reach::Script("wild".into())
        );
        assert_eq!(r.script_for("example.com", "/"), Reach::Edge);
        assert_eq!(r.script_for("127.0.0.1", "/"), Reach::Api);
        assert_eq!(r.script_for("x.nobody.workers.dev", "/"), Reach::Edge);
    }
}

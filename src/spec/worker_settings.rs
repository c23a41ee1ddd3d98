//! The script settings of a CloudflareWorker beyond code and bindings: `observability`,
//! `placement`, `limits` and `tailConsumers`. Each is the official upload metadata
//! field of the same name (`workers_multipart-script.metadata`: `workers_observability`,
//! `workers_placement_info`, `workers_limits`, `workers_tail_consumers` in
//! `cloudflare-api/workers-openapi-subset.json`) with its fields in camelCase; the
//! descriptions are the official ones. [`official`] gives the upload's form, and
//! [`violations`] checks it against the official schema before any call (the CRD's
//! types and CEL rules say the same to the API server).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::CloudflareWorkerSpec;

/// Observability settings for the Worker (`workers_observability`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerObservability {
    /// Whether observability is enabled for the Worker.
    pub enabled: bool,
    /// The sampling rate for incoming requests. From 0 to 1 (1 = 100%, 0.1 = 10%).
    /// Default is 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub head_sampling_rate: Option<f64>,
    /// Log settings for the Worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<WorkerLogs>,
}

/// Log settings for the Worker (`workers_observability.logs`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerLogs {
    /// Whether logs are enabled for the Worker.
    pub enabled: bool,
    /// Whether invocation logs are enabled for the Worker
    /// (<https://developers.cloudflare.com/workers/observability/logs/workers-logs/#invocation-logs>).
    pub invocation_logs: bool,
    /// The sampling rate for logs. From 0 to 1 (1 = 100%, 0.1 = 10%). Default is 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub head_sampling_rate: Option<f64>,
}

/// `workers_placement_mode`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacementMode {
    /// Enables Smart Placement
    /// (<https://developers.cloudflare.com/workers/configuration/smart-placement>).
    #[serde(rename = "smart")]
    Smart,
    /// Targeted placement mode: near `region`, `hostname` or `host`.
    #[serde(rename = "targeted")]
    Targeted,
}

const PLACEMENT_RULE: &str = "(has(self.mode) && self.mode == 'smart') ? !(has(self.region) || has(self.hostname) || has(self.host)) : ((has(self.region) ? 1 : 0) + (has(self.hostname) ? 1 : 0) + (has(self.host) ? 1 : 0) == 1)";

/// Configuration for Smart Placement
/// (<https://developers.cloudflare.com/workers/configuration/smart-placement>). Specify
/// mode='smart' for Smart Placement, or one of region/hostname/host
/// (`workers_placement_info`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new(PLACEMENT_RULE).message("placement: mode smart alone, or exactly one of region, hostname or host (with mode targeted or no mode)"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerPlacement {
    /// `smart` (Smart Placement) or `targeted` (with one of region, hostname, host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PlacementMode>,
    /// Cloud region for targeted placement in format 'provider:region'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub region: Option<String>,
    /// HTTP hostname for targeted placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub hostname: Option<String>,
    /// TCP host and port for targeted placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub host: Option<String>,
}

/// Limits to apply for this Worker (`workers_limits`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[x_kube(validation = Rule::new("has(self.cpuMs) || has(self.subrequests)").message("limits: set cpuMs or subrequests"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerLimits {
    /// The amount of CPU time this Worker can use in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub cpu_ms: Option<i64>,
    /// The number of subrequests this Worker can make per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub subrequests: Option<i64>,
}

/// A reference to a script that will consume logs from the attached Worker
/// (`workers_tail_consumers_script`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TailConsumer {
    /// Name of Worker that is to be the consumer.
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"))]
    pub service: String,
    /// Optional environment if the Worker utilizes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub environment: Option<String>,
    /// Optional dispatch namespace the script belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub namespace: Option<String>,
}

/// The settings an upload carries, in the official form (`None`: the spec sets none,
/// and the upload carries none).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct OfficialSettings {
    pub observability: Option<Value>,
    pub placement: Option<Value>,
    pub limits: Option<Value>,
    pub tail_consumers: Option<Value>,
}

impl OfficialSettings {
    /// `(spec field, official metadata field, value)` of each setting, in a fixed order.
    pub fn fields(&self) -> [(&'static str, &'static str, &Option<Value>); 4] {
        [
            ("observability", "observability", &self.observability),
            ("placement", "placement", &self.placement),
            ("limits", "limits", &self.limits),
            ("tailConsumers", "tail_consumers", &self.tail_consumers),
        ]
    }
}

/// `fooBar` → `foo_bar`, on every object key of `v`.
fn snake_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let mut key = String::with_capacity(k.len() + 4);
                    for c in k.chars() {
                        if c.is_ascii_uppercase() {
                            key.push('_');
                            key.push(c.to_ascii_lowercase());
                        } else {
                            key.push(c);
                        }
                    }
                    (key, snake_keys(v))
                })
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(snake_keys).collect()),
        other => other,
    }
}

fn to_official<T: Serialize>(v: &Option<T>) -> Option<Value> {
    v.as_ref()
        .and_then(|v| serde_json::to_value(v).ok())
        .map(snake_keys)
}

/// The spec's settings as the upload metadata carries them.
pub fn official(spec: &CloudflareWorkerSpec) -> OfficialSettings {
    OfficialSettings {
        observability: to_official(&spec.observability),
        placement: to_official(&spec.placement),
        limits: to_official(&spec.limits),
        tail_consumers: (!spec.tail_consumers.is_empty())
            .then(|| to_official(&Some(&spec.tail_consumers)))
            .flatten(),
    }
}

/// The official schema of each setting (components of the Workers extract).
fn schema_of(official_field: &str) -> &'static str {
    match official_field {
        "observability" => "workers_observability",
        "placement" => "workers_placement_info",
        "limits" => "workers_limits",
        _ => "workers_tail_consumers",
    }
}

/// Every way the spec's settings break the official schema, as `(field, message)`
/// with the manifest's field names.
pub fn violations(spec: &CloudflareWorkerSpec) -> Vec<(String, String)> {
    let settings = official(spec);
    let mut out = Vec::new();
    for (field, official_field, value) in settings.fields() {
        let Some(value) = value else { continue };
        let schema = serde_json::json!({
            "$ref": format!("#/components/schemas/{}", schema_of(official_field))
        });
        let at = format!("spec.{field}");
        for m in crate::emulator::schema::Spec::workers().violations(&schema, value, &at) {
            let words: Vec<String> = m
                .split(' ')
                .map(|w| {
                    if w.contains('_') && !w.contains('/') {
                        super::bindings::camel(w)
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            out.push((at.clone(), words.join(" ")));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in spec.tail_consumers.iter().enumerate() {
        let key = (&t.service, &t.environment, &t.namespace);
        if !seen.insert(key) {
            out.push((
                format!("spec.tailConsumers[{i}]"),
                format!("tail consumer {} is listed twice", t.service),
            ));
        }
    }
    out
}

/// Read-only fields Cloudflare adds to a setting, and values equal to the official
/// defaults, which say nothing the upload sets: taken out before comparing.
fn normalised(official_field: &str, v: &Value) -> Option<Value> {
    fn strip(v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    let default = match (k.as_str(), v) {
                        // "Default is 1." (head_sampling_rate); "default": true (persist);
                        // "default": "authenticated" (propagation_policy).
                        ("head_sampling_rate", Value::Number(n)) => n.as_f64() == Some(1.0),
                        ("persist", Value::Bool(true)) => true,
                        ("propagation_policy", Value::String(s)) => s == "authenticated",
                        _ => false,
                    };
                    if default {
                        continue;
                    }
                    if let Some(v) = strip(v) {
                        out.insert(k.clone(), v);
                    }
                }
                (!out.is_empty()).then_some(Value::Object(out))
            }
            Value::Array(a) => {
                let items: Vec<Value> = a.iter().filter_map(strip).collect();
                (!items.is_empty()).then_some(Value::Array(items))
            }
            // Numbers compare by value: 1 and 1.0 are the same rate.
            Value::Number(n) => n.as_f64().map(|f| serde_json::json!(f)),
            other => Some(other.clone()),
        }
    }
    let mut v = v.clone();
    if official_field == "placement"
        && let Some(m) = v.as_object_mut()
    {
        m.remove("status");
        m.remove("last_analyzed_at");
        // `{mode: targeted, target: [x]}` is `{mode: targeted, …x}` (one target at most).
        if let Some(Value::Array(targets)) = m.remove("target")
            && let Some(Value::Object(t)) = targets.into_iter().next()
        {
            m.extend(t);
        }
        if !m.contains_key("mode")
            && ["region", "hostname", "host"]
                .iter()
                .any(|k| m.contains_key(*k))
        {
            m.insert("mode".into(), Value::String("targeted".into()));
        }
    }
    if official_field == "tail_consumers"
        && let Value::Array(a) = &mut v
    {
        // A set (`x-stainless-collection-type: set`): order says nothing.
        a.sort_by_key(|x| x.to_string());
    }
    strip(&v)
}

/// How a live setting compares with the one the upload carries.
#[derive(Clone, Debug, PartialEq)]
pub enum SettingDiff {
    Same,
    /// Set or changed; nothing live is lost.
    Changed,
    /// Live values the upload leaves out, by official path (`logs.destinations`).
    Drops(Vec<String>),
}

/// Compares a live setting (as `GET …/settings` returns it) with the upload's.
pub fn compare(official_field: &str, live: Option<&Value>, want: Option<&Value>) -> SettingDiff {
    let live = live.and_then(|v| normalised(official_field, v));
    let want = want.and_then(|v| normalised(official_field, v));
    if live == want {
        return SettingDiff::Same;
    }
    let Some(live) = live else {
        return SettingDiff::Changed;
    };
    let mut dropped = Vec::new();
    match &want {
        None => dropped.push(String::new()),
        Some(want) => left_out(&live, want, "", &mut dropped),
    }
    if dropped.is_empty() {
        SettingDiff::Changed
    } else {
        SettingDiff::Drops(dropped)
    }
}

/// Paths of `live` with a value that `want` does not have at all.
fn left_out(live: &Value, want: &Value, at: &str, out: &mut Vec<String>) {
    match (live, want) {
        (Value::Object(l), Value::Object(w)) => {
            for (k, lv) in l {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match w.get(k) {
                    None => out.push(path),
                    Some(wv) => left_out(lv, wv, &path, out),
                }
            }
        }
        (Value::Array(l), Value::Array(w)) => {
            for item in l.iter().filter(|i| !w.contains(i)) {
                out.push(format!("{at}[{item}]"));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_read_only_fields_are_not_differences() {
        let live = json!({"mode": "smart", "status": "SUCCESS", "last_analyzed_at": "2026-01-01T00:00:00Z"});
        assert_eq!(
            compare("placement", Some(&live), Some(&json!({"mode": "smart"}))),
            SettingDiff::Same
        );
        let live = json!({"enabled": true, "head_sampling_rate": 1, "logs": {"enabled": true, "invocation_logs": true, "persist": true}});
        let want = json!({"enabled": true, "logs": {"enabled": true, "invocation_logs": true}});
        assert_eq!(
            compare("observability", Some(&live), Some(&want)),
            SettingDiff::Same
        );
        let live = json!({"mode": "targeted", "target": [{"region": "aws:us-east-1"}]});
        assert_eq!(
            compare(
                "placement",
                Some(&live),
                Some(&json!({"region": "aws:us-east-1"}))
            ),
            SettingDiff::Same
        );
    }

    #[test]
    fn a_live_value_left_out_is_named() {
        let live = json!({"enabled": true, "traces": {"enabled": true}});
        let want = json!({"enabled": false});
        assert_eq!(
            compare("observability", Some(&live), Some(&want)),
            SettingDiff::Drops(vec!["traces".into()])
        );
        assert_eq!(
            compare("limits", Some(&json!({"cpu_ms": 50})), None),
            SettingDiff::Drops(vec![String::new()])
        );
        assert_eq!(
            compare(
                "limits",
                Some(&json!({"cpu_ms": 50})),
                Some(&json!({"cpu_ms": 80}))
            ),
            SettingDiff::Changed
        );
        assert_eq!(
            compare("limits", None, Some(&json!({"cpu_ms": 80}))),
            SettingDiff::Changed
        );
    }
}

//! Wrangler's script settings (`observability`, `placement`, `limits`,
//! `tail_consumers`, as wrangler 4.86's config validation allows them) onto the
//! CloudflareWorker's fields of the same names (`src/spec/worker_settings.rs`). What
//! the fields cannot hold is reported by its path.

use serde_json::{Map, Value, json};

use super::Findings;
use super::keys::{Taken, list, string};

/// A sampling rate (0 to 1), else reported.
fn rate(path: &str, v: Value, f: &mut Findings) -> Option<Value> {
    match v.as_f64() {
        Some(r) if (0.0..=1.0).contains(&r) => Some(v),
        _ => {
            f.unsupported(path, "expected a rate from 0 to 1");
            None
        }
    }
}

fn boolean(path: &str, v: Option<Value>, f: &mut Findings) -> Option<bool> {
    match v {
        Some(Value::Bool(b)) => Some(b),
        Some(_) => {
            f.unsupported(path, "expected true or false");
            None
        }
        None => None,
    }
}

/// `observability {enabled, head_sampling_rate, logs {enabled, head_sampling_rate,
/// invocation_logs, persist, destinations}, traces}`.
pub fn observability(path: &str, value: Value, f: &mut Findings) -> Option<Value> {
    let mut t = Taken::new(path.to_string(), value, f)?;
    let mut out = Map::new();
    let at = t.at("enabled");
    match t.take("enabled") {
        None => f.unsupported(
            &at,
            "missing: CloudflareWorker's observability needs enabled (wrangler allows logs.enabled or traces.enabled alone)",
        ),
        v => {
            if let Some(b) = boolean(&at, v, f) {
                out.insert("enabled".into(), json!(b));
            }
        }
    }
    if let Some(r) = t.take("head_sampling_rate")
        && let Some(r) = rate(&t.at("head_sampling_rate"), r, f)
    {
        out.insert("headSamplingRate".into(), r);
    }
    if let Some(l) = t.take("logs")
        && let Some(mut l) = Taken::new(t.at("logs"), l, f)
    {
        let mut logs = Map::new();
        let at = l.at("enabled");
        match l.take("enabled") {
            None => f.unsupported(&at, "missing: CloudflareWorker's logs need enabled"),
            v => {
                if let Some(b) = boolean(&at, v, f) {
                    logs.insert("enabled".into(), json!(b));
                }
            }
        }
        let at = l.at("invocation_logs");
        match l.take("invocation_logs") {
            None => {
                // wrangler: "Set to false to disable invocation logs".
                f.note(&at, "not set: true, as wrangler documents it");
                logs.insert("invocationLogs".into(), json!(true));
            }
            v => {
                if let Some(b) = boolean(&at, v, f) {
                    logs.insert("invocationLogs".into(), json!(b));
                }
            }
        }
        if let Some(r) = l.take("head_sampling_rate")
            && let Some(r) = rate(&l.at("head_sampling_rate"), r, f)
        {
            logs.insert("headSamplingRate".into(), r);
        }
        let at = l.at("persist");
        match l.take("persist") {
            Some(Value::Bool(true)) => f.note(&at, "true is the default; nothing to set"),
            Some(_) => f.unsupported(&at, "CloudflareWorker's logs are always persisted"),
            None => {}
        }
        let at = l.at("destinations");
        match l.take("destinations") {
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(_) => f.unsupported(&at, "CloudflareWorker has no log destinations"),
            None => {}
        }
        l.finish(f);
        if logs.contains_key("enabled") && logs.contains_key("invocationLogs") {
            out.insert("logs".into(), Value::Object(logs));
        }
    }
    if t.take("traces").is_some() {
        f.unsupported(&t.at("traces"), "CloudflareWorker has no trace settings");
    }
    t.finish(f);
    out.contains_key("enabled").then_some(Value::Object(out))
}

/// `placement {mode: off | smart | targeted, hint, region | host | hostname}`, as
/// wrangler uploads it (`parseConfigPlacement`): `off` without a hint is no
/// placement, a hint or `smart` is Smart Placement, else the one target.
pub fn placement(path: &str, value: Value, f: &mut Findings) -> Option<Value> {
    let mut t = Taken::new(path.to_string(), value, f)?;
    let mode_at = t.at("mode");
    let mode = t.take("mode");
    let hint = t.take("hint");
    let mut targets = Vec::new();
    for key in ["region", "host", "hostname"] {
        if let Some(v) = t.take(key) {
            targets.push((key, t.at(key), v));
        }
    }
    t.finish(f);
    let mode = match mode {
        None => None,
        Some(Value::String(m)) if ["off", "smart", "targeted"].contains(&m.as_str()) => Some(m),
        Some(_) => {
            f.unsupported(&mode_at, "expected off, smart or targeted");
            return None;
        }
    };
    if hint.is_some() {
        f.unsupported(
            &format!("{path}.hint"),
            "CloudflareWorker has no placement hint",
        );
    }
    if hint.is_none() && mode.as_deref() == Some("off") {
        f.note(path, "mode off: wrangler uploads no placement");
        return None;
    }
    if hint.is_some() || mode.as_deref() == Some("smart") {
        for (_, at, _) in &targets {
            f.unsupported(at, "not with Smart Placement");
        }
        return Some(json!({"mode": "smart"}));
    }
    match targets.as_slice() {
        [] => {
            f.unsupported(
                path,
                "expected mode smart, or one of region, host or hostname",
            );
            None
        }
        [(key, at, v)] => match v.as_str() {
            Some(s) if !s.is_empty() && s.len() <= 256 => {
                Some(json!({"mode": "targeted", *key: s}))
            }
            _ => {
                f.unsupported(at, "expected a name of 1 to 256 characters");
                None
            }
        },
        _ => {
            f.unsupported(path, "region, host and hostname are mutually exclusive");
            None
        }
    }
}

/// `limits {cpu_ms, subrequests}`: whole numbers of at least 1.
pub fn limits(path: &str, value: Value, f: &mut Findings) -> Option<Value> {
    let mut t = Taken::new(path.to_string(), value, f)?;
    let mut out = Map::new();
    for (w, c) in [("cpu_ms", "cpuMs"), ("subrequests", "subrequests")] {
        let at = t.at(w);
        match t.take(w).map(|v| v.as_i64()) {
            Some(Some(n)) if n >= 1 => {
                out.insert(c.into(), json!(n));
            }
            Some(_) => f.unsupported(&at, "expected a whole number of at least 1"),
            None => {}
        }
    }
    t.finish(f);
    (!out.is_empty()).then_some(Value::Object(out))
}

/// `tail_consumers [{service, environment}]`.
pub fn tail_consumers(path: &str, value: Value, f: &mut Findings) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, entry) in list(path, value, f).into_iter().enumerate() {
        let Some(mut t) = Taken::new(format!("{path}[{i}]"), entry, f) else {
            continue;
        };
        let service = string(t.take("service"));
        let environment = t.take("environment");
        let mut c = Map::new();
        match service {
            Some(s) => {
                c.insert("service".into(), json!(s));
            }
            None => f.unsupported(&t.at("service"), "missing"),
        }
        match environment {
            Some(Value::String(e)) => {
                c.insert("environment".into(), json!(e));
            }
            Some(_) => f.unsupported(&t.at("environment"), "expected a name"),
            None => {}
        }
        t.finish(f);
        if c.contains_key("service") {
            out.push(Value::Object(c));
        }
    }
    out
}

//! The Worker's reach and Durable Object migrations: wrangler's `route`/`routes` as
//! `spec.routes` and `spec.domains`, and what `migrations` means for flaredock.

use serde_json::{Value, json};

use super::Findings;
use super::keys::{Taken, list, string};

pub(super) enum Reach {
    Route(Value),
    Domain(Value),
}

/// A wrangler route: `{pattern, zone_name | zone_id}` is a zone route,
/// `{pattern, custom_domain: true}` a custom domain.
pub(super) fn route(path: &str, value: Value, f: &mut Findings) -> Option<Reach> {
    if value.is_string() {
        f.unsupported(
            path,
            "a route without its zone: write it as {pattern, zone_name} (flaredock resolves the zone by name)",
        );
        return None;
    }
    let mut t = Taken::new(path.to_string(), value, f)?;
    let pattern = string(t.take("pattern"));
    let zone_name = string(t.take("zone_name"));
    let zone_id = string(t.take("zone_id"));
    let custom = t.take("custom_domain").and_then(|v| v.as_bool()) == Some(true);
    let at = t.at("pattern");
    t.finish(f);
    let Some(pattern) = pattern else {
        f.unsupported(&at, "missing");
        return None;
    };
    if custom {
        let mut d = json!({"hostname": pattern});
        if let Some(z) = zone_name {
            d["zoneName"] = json!(z);
        }
        if zone_id.is_some() {
            f.unsupported(
                &format!("{path}.zone_id"),
                "a custom domain's zone is given by name (zone_name) in flaredock",
            );
        }
        return Some(Reach::Domain(d));
    }
    let mut r = json!({"pattern": pattern});
    match (zone_name, zone_id) {
        (Some(z), _) => r["zoneName"] = json!(z),
        (None, Some(z)) => r["zoneId"] = json!(z),
        (None, None) => {
            f.unsupported(path, "a route without zone_name or zone_id");
            return None;
        }
    }
    Some(Reach::Route(r))
}

/// `migrations`: flaredock writes its own (a class it does not know gets one, the
/// script's tag is kept on adoption); renames and deletions it cannot express.
pub(super) fn migrations(path: &str, value: Value, f: &mut Findings) {
    for (i, m) in list(path, value, f).into_iter().enumerate() {
        let p = format!("{path}[{i}]");
        if let Some(mut t) = Taken::new(p, m, f) {
            t.take("tag");
            t.take("new_classes");
            t.take("new_sqlite_classes");
            for k in ["renamed_classes", "deleted_classes", "transferred_classes"] {
                if let Some(v) = t.take(k)
                    && v.as_array().is_none_or(|a| !a.is_empty())
                {
                    f.unsupported(
                        &t.at(k),
                        "flaredock writes new-class migrations only (renames and deletions are not expressed)",
                    );
                }
            }
            t.finish(f);
        }
    }
    f.note(
        path,
        "flaredock writes its own Durable Object migrations (a class the script lacks gets one); the script's migration tag is kept on adoption",
    );
}

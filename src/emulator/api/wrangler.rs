//! Endpoints only wrangler's internal client documents (`x-workers-sdk-internal-client`
//! in the containers extract), not the official schema: served so that `wrangler
//! containers list` and `wrangler containers instances` work against the emulator.
//! Their answers are checked against wrangler's own definitions (`WRANGLER_ONLY`).
//!
//! - `GET /containers/dash/applications` (`per_page`, `page_token`): a summary per
//!   application (`DashApplication`), paginated by an opaque `next_page_token` in
//!   `result_info`. The emulator's token is the id of the last application listed.
//! - `GET /containers/dash/applications/{id}/instances`: the emulator runs no
//!   instances, so both lists are empty; an unknown id is a 404.

use super::*;

/// `(method, path template relative to the account, schema of the envelope's result)`
/// of every wrangler-only endpoint the emulator serves.
pub const WRANGLER_ONLY: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/containers/dash/applications",
        "#/x-workers-sdk-internal-client/definitions/DashApplication[]",
    ),
    (
        "GET",
        "/containers/dash/applications/{id}/instances",
        "#/x-workers-sdk-internal-client/definitions/DashApplicationInstances",
    ),
];

/// The wrangler-only endpoint of `method path` (path relative to the API root) and the
/// JSON schema of its result.
pub fn wrangler_only_result(method: &str, path: &str) -> Option<Value> {
    let rest = path.trim_start_matches('/');
    let rest = rest.strip_prefix("accounts/")?;
    let (_, rest) = rest.split_once('/')?;
    let segs: Vec<&str> = rest.split('/').collect();
    WRANGLER_ONLY.iter().find_map(|(m, template, schema)| {
        let tsegs: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        let matches = *m == method
            && tsegs.len() == segs.len()
            && tsegs
                .iter()
                .zip(&segs)
                .all(|(t, s)| t.starts_with('{') || t == s);
        matches.then(|| match schema.strip_suffix("[]") {
            Some(item) => json!({"type": "array", "items": {"$ref": item}}),
            None => json!({"$ref": schema}),
        })
    })
}

fn dash_summary(app: &Application) -> Value {
    let h = app.health.clone().unwrap_or_default().instances;
    json!({
        "id": app.id,
        "created_at": app.created_at,
        "updated_at": app.updated_at,
        "name": app.name,
        "version": app.version,
        "instances": app.instances,
        "image": app.configuration.image,
        "health": {"instances": {
            "active": h.active,
            "healthy": h.assigned,
            "failed": 0,
            "starting": 0,
            "scheduling": 0,
        }},
    })
}

pub(super) async fn list_dash_applications(
    State(shared): Shr,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    if let Err(f) = check_account(&shared, &account) {
        return fail(f);
    }
    let pairs = query_pairs(req.uri());
    let per_page = match pairs.iter().find(|(k, _)| k == "per_page") {
        None => 25,
        Some((_, v)) => match v.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return fail_containers(Failure::invalid("per_page: must be between 1 and 1000")),
        },
    };
    let after = pairs
        .iter()
        .find(|(k, _)| k == "page_token")
        .map(|(_, v)| v.clone());
    let mut apps = shared.account().list_applications(None, &[]);
    apps.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(after) = &after {
        apps.retain(|a| &a.id > after);
    }
    let more = apps.len() > per_page;
    apps.truncate(per_page);
    let mut info = json!({"per_page": per_page});
    if more && let Some(last) = apps.last() {
        info["next_page_token"] = json!(last.id);
    }
    let items: Vec<Value> = apps.iter().map(dash_summary).collect();
    let body = json!({"success": true, "errors": [], "messages": [], "result": items, "result_info": info});
    (StatusCode::OK, axum::Json(body)).into_response()
}

pub(super) async fn list_dash_instances(
    State(shared): Shr,
    Path((account, id)): Path<(String, String)>,
) -> Response {
    if let Err(f) = check_account(&shared, &account) {
        return fail(f);
    }
    let found = shared.account().get_application(&id);
    match found {
        Ok(_) => ok(
            StatusCode::OK,
            json!({"instances": [], "durable_objects": []}),
        ),
        Err(f) => fail(f),
    }
}

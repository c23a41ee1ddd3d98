//! Routing operations (`super::super::routing`): account and script subdomains,
//! schedules, custom domains, zones and zone routes; plus `GET /workers/services/{name}`,
//! the first call of `wrangler deploy`, which the official extract does not describe
//! ([`NOT_IN_EXTRACT`]): an unknown script is a 404 with code 10090, as Cloudflare
//! answers it (wrangler reads that as "a new Worker"); a known one its
//! `default_environment` with the script. `GET /workers/scripts/{name}/deployments`
//! (wrangler's second call; official, vendored): an unknown script is 404 with 10007, a
//! known one has one deployment of its current version at 100 %. The rest of wrangler's
//! deploy path,
//! partly vendored: `GET /workers/scripts/{name}/versions/{id}` (official, vendored: the current version with its bindings, where wrangler
//! finds a container class's namespace; the upload's answer carries that version's
//! id as `deployment_id`, as Cloudflare's does); `PUT /workers/scripts/{name}/routes`
//! (the script's zone routes become the list given, a pattern of another script
//! refused as a duplicate); the Versions API's `POST …/versions` (official, vendored;
//! in `workers`) and
//! `POST …/deployments` (official, vendored; only the current version at 100 %), how
//! wrangler re-deploys
//! a Worker without containers.
//!
//! The edge: a request whose `Host` is a Workers host (workers.dev, a custom domain, a
//! route, or a service binding's request through [`SERVICE_HEADER`]) is answered by its
//! script through the local runtime; see [`edge`]. A container call of a served
//! Worker (header [`crate::emulator::containers::CONTAINER_HEADER`], loopback peers
//! only) goes to [`crate::emulator::containers`].

use super::*;
use crate::emulator::routing::Reach;
use crate::emulator::state;
use crate::emulator::workerd::{SERVICE_HEADER, WorkerSpec};

/// Operations served that the official extract does not describe: `(method, path
/// template relative to the API root)`; the contract check leaves their answers alone.
pub const NOT_IN_EXTRACT: &[(&str, &str)] = &[
    ("GET", "/accounts/{a}/workers/services/{s}"),
    ("PUT", "/accounts/{a}/workers/scripts/{s}/routes"),
];

/// Whether `method path` is one of [`NOT_IN_EXTRACT`].
pub fn not_in_extract(method: &str, path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    NOT_IN_EXTRACT.iter().any(|(m, t)| {
        let tsegs: Vec<&str> = t.trim_matches('/').split('/').collect();
        *m == method
            && tsegs.len() == segs.len()
            && tsegs
                .iter()
                .zip(&segs)
                .all(|(t, s)| t.starts_with('{') || t == s)
    })
}

fn json_body(body: &Bytes) -> Outcome<Value> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    parse_json(body)
}

/// Runs `f` on the account once `account` is checked (the gate persists writes).
fn write<T>(
    shared: &Shared,
    account: &str,
    f: impl FnOnce(&mut state::AccountState) -> Outcome<T>,
) -> Outcome<T> {
    check_account(shared, account)?;
    f(&mut shared.account())
}

pub(super) async fn get_account_subdomain(
    State(shared): Shr,
    Path(account): Path<String>,
) -> Response {
    let outcome =
        check_account(&shared, &account).and_then(|_| shared.account().account_subdomain());
    respond(StatusCode::OK, outcome)
}

pub(super) async fn put_account_subdomain(
    State(shared): Shr,
    Path(account): Path<String>,
    body: Bytes,
) -> Response {
    let outcome =
        json_body(&body).and_then(|b| write(&shared, &account, |a| a.put_account_subdomain(&b)));
    respond(StatusCode::OK, outcome)
}

pub(super) async fn get_script_subdomain(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
) -> Response {
    let outcome =
        check_account(&shared, &account).and_then(|_| shared.account().script_subdomain(&script));
    respond(StatusCode::OK, outcome)
}

pub(super) async fn post_script_subdomain(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let outcome = json_body(&body)
        .and_then(|b| write(&shared, &account, |a| a.post_script_subdomain(&script, &b)));
    respond(StatusCode::OK, outcome)
}

pub(super) async fn get_script_only_settings(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
) -> Response {
    let outcome = check_account(&shared, &account)
        .and_then(|_| shared.account().script_only_settings(&script));
    respond(StatusCode::OK, outcome)
}

pub(super) async fn patch_script_only_settings(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let outcome = json_body(&body).and_then(|b| {
        write(&shared, &account, |a| {
            a.patch_script_only_settings(&script, &b)
        })
    });
    respond(StatusCode::OK, outcome)
}

pub(super) async fn get_schedules(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
) -> Response {
    let outcome =
        check_account(&shared, &account).and_then(|_| shared.account().schedules(&script));
    respond(StatusCode::OK, outcome)
}

pub(super) async fn put_schedules(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let outcome =
        json_body(&body).and_then(|b| write(&shared, &account, |a| a.put_schedules(&script, &b)));
    respond(StatusCode::OK, outcome)
}

/// `PUT /workers/scripts/{name}/routes` (not in the official extract; wrangler's
/// route deploy): the script's zone routes become the list given.
pub(super) async fn put_script_routes(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let outcome = json_body(&body)
        .and_then(|b| write(&shared, &account, |a| a.put_script_routes(&script, &b)));
    respond(StatusCode::OK, outcome)
}

pub(super) async fn list_domains(
    State(shared): Shr,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    if let Err(f) = check_account(&shared, &account) {
        return fail(f);
    }
    let items = shared.account().list_domains(&query_pairs(req.uri()));
    let n = items.len();
    let body = json!({"success": true, "errors": [], "messages": [], "result": items,
        "result_info": {"page": 1, "per_page": n.max(1), "count": n, "total_count": n, "total_pages": 1}});
    (StatusCode::OK, axum::Json(body)).into_response()
}

pub(super) async fn attach_domain(
    State(shared): Shr,
    Path(account): Path<String>,
    body: Bytes,
) -> Response {
    let outcome = json_body(&body).and_then(|b| write(&shared, &account, |a| a.attach_domain(&b)));
    respond(StatusCode::OK, outcome)
}

pub(super) async fn get_domain(
    State(shared): Shr,
    Path((account, id)): Path<(String, String)>,
) -> Response {
    let outcome = check_account(&shared, &account).and_then(|_| shared.account().get_domain(&id));
    respond(StatusCode::OK, outcome)
}

pub(super) async fn detach_domain(
    State(shared): Shr,
    Path((account, id)): Path<(String, String)>,
) -> Response {
    let outcome = write(&shared, &account, |a| a.detach_domain(&id));
    match outcome {
        Ok(()) => {
            let body = json!({"success": true, "errors": [], "messages": []});
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(f) => fail(f),
    }
}

pub(super) async fn list_zones(State(shared): Shr, req: Request) -> Response {
    let pairs = query_pairs(req.uri());
    let name = pairs
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.as_str());
    let (zones, info) = shared.account().list_zones(name);
    let body = json!({"success": true, "errors": [], "messages": [], "result": zones, "result_info": info});
    (StatusCode::OK, axum::Json(body)).into_response()
}

pub(super) async fn list_routes(State(shared): Shr, Path(zone): Path<String>) -> Response {
    respond(StatusCode::OK, shared.account().list_routes(&zone))
}

pub(super) async fn create_route(
    State(shared): Shr,
    Path(zone): Path<String>,
    body: Bytes,
) -> Response {
    let outcome = json_body(&body).and_then(|b| shared.account().create_route(&zone, &b));
    respond(StatusCode::OK, outcome)
}

pub(super) async fn delete_route(
    State(shared): Shr,
    Path((zone, id)): Path<(String, String)>,
) -> Response {
    respond(StatusCode::OK, shared.account().delete_route(&zone, &id))
}

/// `GET /workers/services/{name}` (not in the official extract; see the module docs).
pub(super) async fn get_service(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
) -> Response {
    let outcome = check_account(&shared, &account).and_then(|_| {
        let scripts = shared.account().list_scripts();
        let found = scripts.into_iter().find(|s| s["id"] == script.as_str());
        match found {
            Some(s) => Ok(json!({
                "id": script,
                "created_on": s["created_on"],
                "modified_on": s["modified_on"],
                "default_environment": {
                    "environment": "production",
                    "created_on": s["created_on"],
                    "modified_on": s["modified_on"],
                    "script": s,
                },
            })),
            None => Err(Failure::new(
                404,
                codes::SERVICE_NOT_FOUND,
                "This Worker does not exist on your account.",
            )),
        }
    });
    respond(StatusCode::OK, outcome)
}

/// `GET /workers/scripts/{name}/deployments` (`worker-deployments-list-deployments`).
pub(super) async fn list_deployments(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
) -> Response {
    let outcome = check_account(&shared, &account).and_then(|_| {
        let account = shared.account();
        let s = account.scripts.get(&script).ok_or_else(|| {
            Failure::new(
                404,
                codes::SCRIPT_NOT_FOUND,
                format!("This Worker does not exist on your account: {script}"),
            )
        })?;
        let version = version_id(&s.etag);
        Ok(json!({"deployments": [{
            "id": version_id(&format!("deployment {}", s.etag)),
            "source": "api",
            "strategy": "percentage",
            "author_email": "emulator@flaredock.dev",
            "created_on": s.modified_on,
            "versions": [{"version_id": version, "percentage": 100.0}],
        }]}))
    });
    respond(StatusCode::OK, outcome)
}

/// `GET /workers/scripts/{name}/versions/{version_id}`
/// (`worker-versions-get-version-detail`): the script's current version, as
/// wrangler reads it after an upload to find a container class's namespace
/// (`resources.bindings[].namespace_id`). The emulator keeps the current version only:
/// an older id is a 404, as an unknown one.
pub(super) async fn get_version(
    State(shared): Shr,
    Path((account, script, version)): Path<(String, String, String)>,
) -> Response {
    let outcome = check_account(&shared, &account).and_then(|_| {
        let account = shared.account();
        let current = version_json(&account, &script)?;
        if current["id"] != version.as_str() {
            return Err(Failure::new(
                404,
                codes::SCRIPT_NOT_FOUND,
                format!("version {version} of Worker {script} not found"),
            ));
        }
        Ok(current)
    });
    respond(StatusCode::OK, outcome)
}

/// The current version of a script, as the versions API answers it.
pub(super) fn version_json(account: &state::AccountState, script: &str) -> Outcome<Value> {
    {
        let s = account.scripts.get(script).ok_or_else(|| {
            Failure::new(
                404,
                codes::SCRIPT_NOT_FOUND,
                format!("This Worker does not exist on your account: {script}"),
            )
        })?;
        let version = version_id(&s.etag);
        let settings = account.script_settings(script)?;
        Ok(json!({
            "id": version,
            "number": s.uploads,
            "metadata": {
                "created_on": s.modified_on,
                "modified_on": s.modified_on,
                "source": "api",
                "author_email": "emulator@flaredock.dev",
            },
            "resources": {
                "bindings": settings["bindings"],
                "script": {
                    "etag": s.etag,
                    "handlers": ["fetch"],
                    "named_handlers": s.exported_classes.iter().map(|c| json!({"name": c, "handlers": ["class"]})).collect::<Vec<_>>(),
                },
                "script_runtime": {
                    "compatibility_date": s.compatibility_date,
                    "compatibility_flags": s.compatibility_flags,
                },
            },
        }))
    }
}

/// `POST /workers/scripts/{name}/deployments` (`worker-deployments-create-deployment`): the
/// current version at 100 % (the only deployment the emulator's one version allows);
/// another version or split is refused.
pub(super) async fn create_deployment(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let outcome = json_body(&body).and_then(|b| {
        check_account(&shared, &account)?;
        let account = shared.account();
        let current = version_json(&account, &script)?;
        let versions = b["versions"].as_array().cloned().unwrap_or_default();
        let only_current = versions.len() == 1
            && versions[0]["version_id"] == current["id"]
            && versions[0]["percentage"].as_f64() == Some(100.0);
        if !only_current {
            return Err(Failure::invalid(
                "versions: the emulator deploys only the script's current version, at 100",
            ));
        }
        Ok(json!({
            "id": version_id(&format!("deployment {}", current["resources"]["script"]["etag"])),
            "source": "api",
            "strategy": "percentage",
            "author_email": "emulator@flaredock.dev",
            "created_on": current["metadata"]["modified_on"],
            "versions": [{"version_id": current["id"], "percentage": 100.0}],
            "annotations": b.get("annotations").cloned().unwrap_or(json!({})),
        }))
    });
    respond(StatusCode::OK, outcome)
}

/// A version id (UUID form) derived from a script's etag.
pub(super) fn version_id(etag: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(etag.as_bytes()));
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

// ---- the edge -----------------------------------------------------------------------

/// Cloudflare's answer for a host it does not serve (DNS resolution error).
fn unknown_host() -> Response {
    (
        StatusCode::from_u16(530).unwrap_or(StatusCode::BAD_GATEWAY),
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        "error code: 1001",
    )
        .into_response()
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        text,
    )
        .into_response()
}

/// The host of a request, without its port, lowercased.
fn request_host(req: &Request) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("");
    let host = if host.starts_with('[') {
        host.split(']')
            .next()
            .unwrap_or(host)
            .trim_start_matches('[')
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    host.to_ascii_lowercase()
}

/// The outermost layer: a Workers host is answered by its script, an unknown Workers
/// host as Cloudflare's edge answers it, anything else (an address, `localhost`, a
/// host outside every zone) goes on to the API and the registry.
pub(super) async fn edge(State(shared): Shr, req: Request, next: Next) -> Response {
    let host = request_host(&req);
    let peer_loopback = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|c| c.0.ip().to_canonical().is_loopback());
    // A container call of a served Worker (`containers`), from workerd only.
    if let Some(script) = req
        .headers()
        .get(crate::emulator::containers::CONTAINER_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|_| peer_loopback)
        .map(str::to_string)
    {
        return crate::emulator::containers::handle(&shared, &script, req).await;
    }
    let service = req
        .headers()
        .get(SERVICE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|_| peer_loopback)
        .map(str::to_string);
    let reach = match service {
        Some(s) => Reach::Script(s),
        None if host.is_empty()
            || host == "localhost"
            || host.parse::<std::net::IpAddr>().is_ok()
            || !host.contains('.') =>
        {
            Reach::Api
        }
        None => {
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            shared.account().routing.script_for(&host, &pq)
        }
    };
    match reach {
        Reach::Api => next.run(req).await,
        Reach::Edge => unknown_host(),
        Reach::Script(name) => serve_worker(&shared, &name, req).await,
    }
}

/// The runtime's view of a stored script, with its version (etag); `None` when the
/// script does not exist, `Some(Err)` when it has no code (seeded by a test hook).
fn worker_spec(shared: &Shared, name: &str) -> Option<Result<(String, WorkerSpec), String>> {
    let account = shared.account();
    let s = account.scripts.get(name)?;
    let Some(main) = s.main_module.clone() else {
        return Some(Err(format!(
            "flaredock emulator: script {name} has no code (it was seeded by a test hook, not uploaded)"
        )));
    };
    let namespaces = account
        .namespaces
        .iter()
        .filter(|n| n.script.as_deref() == Some(name))
        .map(|n| {
            (
                n.class.clone().unwrap_or_default(),
                n.id.clone(),
                n.use_sqlite.unwrap_or(true),
            )
        })
        .collect();
    Some(Ok((
        s.etag.clone(),
        WorkerSpec {
            modules: s.modules.clone(),
            main,
            compatibility_date: s.compatibility_date.clone(),
            compatibility_flags: s.compatibility_flags.clone(),
            bindings: s.bindings.clone(),
            namespaces,
            containers: s.containers.iter().cloned().collect(),
            has_default: s.exports.contains_key("default"),
        },
    )))
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

async fn serve_worker(shared: &Shared, name: &str, req: Request) -> Response {
    let Some(runtime) = shared.runtime() else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "flaredock emulator: workerd is not installed, so Workers are not served (set FLAREDOCK_WORKERD or put workerd on PATH: npm install -g workerd)".into(),
        );
    };
    let (etag, spec) = match worker_spec(shared, name) {
        None => return unknown_host(),
        Some(Err(why)) => return plain(StatusCode::SERVICE_UNAVAILABLE, why),
        Some(Ok(x)) => x,
    };
    let port = match runtime.serve(name, &etag, &spec).await {
        Ok(p) => p,
        Err(e) => {
            let secrets: Vec<String> =
                crate::emulator::redact::secret_values(&json!({"bindings": spec.bindings}));
            let text = crate::emulator::redact::scrub(&e.to_string(), &secrets);
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "error code: 1101\nflaredock emulator: the Worker {name} did not start: {text}"
                ),
            );
        }
    };
    let limit = shared.config.limits.worker_upload;
    let (parts, body) = req.into_parts();
    let bytes = match crate::emulator::limits::read_bounded(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "error code: 413 (request body too large)".into(),
            );
        }
    };
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut headers = parts.headers.clone();
    for h in HOP_BY_HOP.iter().chain([&SERVICE_HEADER]) {
        headers.remove(*h);
    }
    let sent = runtime
        .http()
        .request(parts.method.clone(), format!("http://127.0.0.1:{port}{pq}"))
        .headers(headers)
        .body(bytes)
        .send()
        .await;
    match sent {
        Ok(resp) => {
            let status = resp.status();
            let mut headers = resp.headers().clone();
            for h in HOP_BY_HOP {
                headers.remove(h);
            }
            let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            out
        }
        Err(e) => plain(
            StatusCode::BAD_GATEWAY,
            format!("error code: 502\nflaredock emulator: the Worker {name} did not answer: {e}"),
        ),
    }
}

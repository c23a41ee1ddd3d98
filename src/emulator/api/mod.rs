//! HTTP side of the emulator: the router, Cloudflare's envelope, and the gate every API
//! request passes (the body read within its route's limit, `super::limits`; latency,
//! bearer token, rate limit and its headers, the official schema of the body, faults,
//! request log). The test hooks have their own gate (access rule, body limit). The handlers live in rooms: `containers`
//! and `workers` under `/client/v4`, `hooks` under `/__emulator`, and the embedded
//! registry under `/v2` (`registry_http`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

mod containers;
mod hooks;
mod registry_http;
mod routing;
mod storage;
mod workers;
mod wrangler;

use containers::*;
use hooks::*;
use registry_http::*;
use routing::*;
pub use routing::{NOT_IN_EXTRACT, not_in_extract};
use storage::*;
use workers::*;
pub use wrangler::{WRANGLER_ONLY, wrangler_only_result};
use wrangler::{list_dash_applications, list_dash_instances};

use super::state::{Failure, Outcome, codes};
use super::{RequestRecord, Shared};
use crate::cloudflare::RateLimit;
use crate::cloudflare::types::*;

type Shr = State<Arc<Shared>>;

/// The server-side sliding window: over the limit, 429 and the token blocked for W.
pub struct ServerLimiter {
    limit: RateLimit,
    accepted: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

impl ServerLimiter {
    pub fn new(limit: RateLimit) -> Self {
        ServerLimiter {
            limit,
            accepted: VecDeque::new(),
            blocked_until: None,
        }
    }

    /// Blocks the token for `d` from `now`.
    pub fn block_for(&mut self, now: Instant, d: Duration) {
        self.blocked_until = Some(now + d);
    }

    /// `Ok` to serve, `Err(retry_after)` when rate limited.
    fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(until) = self.blocked_until {
            if until > now {
                return Err(until - now);
            }
            self.blocked_until = None;
        }
        while self
            .accepted
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.limit.window)
        {
            self.accepted.pop_front();
        }
        if self.accepted.len() >= self.limit.requests as usize {
            self.blocked_until = Some(now + self.limit.window);
            return Err(self.limit.window);
        }
        self.accepted.push_back(now);
        Ok(())
    }

    /// The `Ratelimit` and `Ratelimit-Policy` headers Cloudflare documents:
    /// `"default";r=<remaining>;t=<seconds until a slot frees>` and
    /// `"default";q=<requests>;w=<window seconds>`.
    fn headers(&self, now: Instant) -> (String, String) {
        let used = self
            .accepted
            .iter()
            .filter(|t| now.duration_since(**t) < self.limit.window)
            .count();
        let remaining = (self.limit.requests as usize).saturating_sub(used);
        let reset = match (self.blocked_until, self.accepted.front()) {
            (Some(until), _) if until > now => until - now,
            (_, Some(first)) => (*first + self.limit.window).saturating_duration_since(now),
            _ => Duration::ZERO,
        };
        (
            format!(
                "\"default\";r={remaining};t={}",
                reset.as_secs_f64().ceil() as u64
            ),
            format!(
                "\"default\";q={};w={}",
                self.limit.requests,
                self.limit.window.as_secs_f64().ceil() as u64
            ),
        )
    }
}

/// The bearer token of a request, when it carries one.
fn bearer(req: &Request) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

/// Adds the rate-limit headers (of the request's token) to an API response.
fn with_rate_headers(shared: &Shared, token: &str, mut response: Response) -> Response {
    let token = if shared.accepts(token) {
        token
    } else {
        shared.config.api_token.as_str()
    };
    let (now, policy) = shared.limiter(token, |l| l.headers(Instant::now()));
    for (name, value) in [("ratelimit", now), ("ratelimit-policy", policy)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

pub fn router(shared: Arc<Shared>) -> Router {
    let accounts = Router::new()
        .route(
            "/containers/applications",
            get(list_applications).post(create_application),
        )
        .route(
            "/containers/applications/{id}",
            get(get_application)
                .patch(modify_application)
                .delete(delete_application),
        )
        .route(
            "/containers/applications/{id}/rollouts",
            post(create_rollout),
        )
        .route("/containers/applications/{id}/versions", get(list_versions))
        .route("/containers/dash/applications", get(list_dash_applications))
        .route(
            "/containers/dash/applications/{id}/instances",
            get(list_dash_instances),
        )
        .route(
            "/containers/registries/{domain}/credentials",
            post(registry_credentials),
        )
        .route("/workers/durable_objects/namespaces", get(list_namespaces))
        .route("/workers/scripts", get(list_scripts))
        .route(
            "/workers/scripts/{script}",
            put(upload_script)
                .delete(delete_script)
                .get(download_script),
        )
        .route("/storage/kv/namespaces", get(list_kv).post(create_kv))
        .route("/r2/buckets", get(list_r2).post(create_r2))
        .route("/d1/database", get(list_d1).post(create_d1))
        .route("/queues", get(list_queues).post(create_queue))
        .route(
            "/workers/scripts/{script}/settings",
            get(get_settings).patch(patch_settings),
        )
        .route(
            "/workers/scripts/{script}/script-settings",
            get(get_script_only_settings).patch(patch_script_only_settings),
        )
        .route(
            "/workers/subdomain",
            get(get_account_subdomain).put(put_account_subdomain),
        )
        .route(
            "/workers/scripts/{script}/subdomain",
            get(get_script_subdomain).post(post_script_subdomain),
        )
        .route("/workers/scripts/{script}/routes", put(put_script_routes))
        .route(
            "/workers/scripts/{script}/schedules",
            get(get_schedules).put(put_schedules),
        )
        .route("/workers/domains", get(list_domains).put(attach_domain))
        .route(
            "/workers/domains/{id}",
            get(get_domain).delete(detach_domain),
        )
        .route("/workers/services/{script}", get(get_service))
        .route(
            "/workers/scripts/{script}/versions/{version}",
            get(get_version),
        )
        .route(
            "/workers/scripts/{script}/deployments",
            get(list_deployments).post(create_deployment),
        )
        .route("/workers/scripts/{script}/versions", post(upload_version));
    let api = Router::new()
        .nest("/accounts/{account}", accounts)
        .route("/zones", get(list_zones))
        .route(
            "/zones/{zone}/workers/routes",
            get(list_routes).post(create_route),
        )
        .route(
            "/zones/{zone}/workers/routes/{id}",
            axum::routing::delete(delete_route),
        )
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(shared.clone(), gate));
    let hooks = Router::new()
        .route("/requests", get(hook_requests).delete(hook_clear_requests))
        .route("/scripts/{name}", put(hook_put_script))
        .route("/state", get(hook_state))
        .route("/faults", post(hook_faults))
        .layer(middleware::from_fn_with_state(shared.clone(), hook_gate));
    Router::new()
        .nest("/client/v4", api)
        .nest("/__emulator", hooks)
        .route("/v2", any(registry_entry))
        .route("/v2/", any(registry_entry))
        .route("/v2/{*path}", any(registry_entry))
        // Every body is read within its own limit (`limits`), by the gates and the
        // registry; axum's single default would not tell the routes apart.
        .layer(DefaultBodyLimit::disable())
        // Workers hosts first: their paths are the Worker's, whatever they look like.
        .layer(middleware::from_fn_with_state(shared.clone(), edge))
        .with_state(shared)
}

// ---- envelope -----------------------------------------------------------------------

fn ok<T: Serialize>(status: StatusCode, result: T) -> Response {
    let body = json!({"success": true, "errors": [], "messages": [], "result": result});
    (status, axum::Json(body)).into_response()
}

fn fail(f: Failure) -> Response {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({
        "success": false,
        "errors": [{"code": f.code, "message": f.message}],
        "messages": [],
        "result": null,
    });
    (status, axum::Json(body)).into_response()
}

/// A containers failure as Cloudflare writes it: the error enum as JSON inside the
/// message (`{"error": "VALIDATE_INPUT", "details": {"message": …}}`). A message that
/// is already an enum, and failures other than input validation, stay as they are.
fn containers_failure(mut f: Failure) -> Failure {
    if f.code == codes::VALIDATE_INPUT && serde_json::from_str::<Value>(&f.message).is_err() {
        f.message =
            json!({"error": "VALIDATE_INPUT", "details": {"message": f.message}}).to_string();
    }
    f
}

fn fail_containers(f: Failure) -> Response {
    fail(containers_failure(f))
}

fn respond_containers<T: Serialize>(status: StatusCode, outcome: Outcome<T>) -> Response {
    respond(status, outcome.map_err(containers_failure))
}

fn respond<T: Serialize>(status: StatusCode, outcome: Outcome<T>) -> Response {
    match outcome {
        Ok(t) => ok(status, t),
        Err(f) => fail(f),
    }
}

fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Outcome<T> {
    serde_json::from_slice(body).map_err(|e| Failure::invalid(format!("VALIDATE_INPUT: {e}")))
}

fn check_account(shared: &Shared, account: &str) -> Outcome<()> {
    if account != shared.config.account_id {
        return Err(Failure::new(
            403,
            codes::FORBIDDEN,
            "Unauthorized to access requested resource",
        ));
    }
    Ok(())
}

/// A response whose body fails: the client sees the connection drop.
fn dropped(status: StatusCode) -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "fault injected by the emulator",
        ))
    });
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = status;
    r
}

// ---- gate ---------------------------------------------------------------------------

enum Fault {
    None,
    ServerError(u16),
    DropBefore,
    DropAfter,
}

async fn gate(State(shared): Shr, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let token = bearer(&req).unwrap_or_default();
    let path = match req.extensions().get::<axum::extract::OriginalUri>() {
        Some(original) => original.0.path().to_string(),
        None => req.uri().path().to_string(),
    };
    let content_type = header_text(req.headers(), header::CONTENT_TYPE);
    let user_agent = header_text(req.headers(), header::USER_AGENT);
    // The body is read first, within its route's limit (as Cloudflare's edge does):
    // an oversize one is refused with 413 before (declared length) or as soon as
    // (streamed) it passes the limit, and never read to its end.
    let relative = path.trim_start_matches("/client/v4");
    let limit = shared.config.limits.api(&method, relative);
    let (parts, body) = req.into_parts();
    let read = match super::limits::check_declared(&parts.headers, limit) {
        Ok(()) => super::limits::read_bounded(body, limit).await,
        Err(e) => Err(e),
    };
    let (request_body, (status, response)) = match read {
        Ok(bytes) => {
            let req = Request::from_parts(parts, Body::from(bytes.clone()));
            (bytes, gate_inner(&shared, req, next).await)
        }
        Err(e) => {
            let f = body_refused(&method, relative, e);
            (Bytes::new(), (f.status, fail(f)))
        }
    };
    shared.record(RequestRecord {
        method: method.clone(),
        path: path.clone(),
        status,
    });
    if status == 0 {
        return response;
    }
    if !shared.config.capture_bodies && !shared.config.check_contract {
        return with_rate_headers(&shared, &token, response);
    }
    let (parts, body) = response.into_parts();
    let response_body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    shared.capture(super::Exchange {
        method,
        path,
        request_content_type: content_type,
        user_agent,
        request_body,
        status,
        response_body: response_body.clone(),
    });
    with_rate_headers(
        &shared,
        &token,
        Response::from_parts(parts, Body::from(response_body)),
    )
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The answer to a body that could not be read: 413 when it is over its limit (see
/// `limits` for the codes), 400 when the connection broke.
fn body_refused(method: &str, path: &str, e: super::limits::ReadError) -> Failure {
    let limit = match e {
        super::limits::ReadError::TooLarge { limit } => limit,
        super::limits::ReadError::Broken(e) => {
            return Failure::invalid(format!("request body: {e}"));
        }
    };
    let size = super::limits::human(limit);
    if matches!(method, "PUT" | "PATCH") && path.contains("/workers/scripts/") {
        return Failure::new(
            413,
            codes::SCRIPT_TOO_LARGE,
            format!(
                "Your Worker exceeded the size limit: the request body is over {size}, Cloudflare's limit on a request body (413 Request entity too large)"
            ),
        );
    }
    let f = Failure::new(
        413,
        codes::VALIDATE_INPUT,
        format!(
            "Request entity too large: the body is over {size}, the limit on a JSON request body"
        ),
    );
    if path.contains("/containers/") {
        containers_failure(f)
    } else {
        f
    }
}

async fn gate_inner(shared: &Shared, req: Request, next: Next) -> (u16, Response) {
    let config = &shared.config;
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    let token = bearer(&req).unwrap_or_default();
    if !shared.accepts(&token) {
        return (
            401,
            fail(Failure::new(
                401,
                codes::AUTHENTICATION,
                "Authentication error",
            )),
        );
    }
    let admitted = shared.limiter(&token, |l| l.admit(Instant::now()));
    if let Err(retry_after) = admitted {
        let mut r = fail(Failure::new(
            429,
            codes::RATE_LIMITED,
            "Rate limited: more than the allowed requests in the window; please wait and consider throttling your request speed",
        ));
        let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return (429, r);
    }
    let req = match check_body(req).await {
        Ok(r) => r,
        Err(f) => return (f.status, fail(f)),
    };
    let scripted = shared.take_fault(req.method().as_str(), &token);
    if let Some(super::ScriptedFault::RateLimit(secs)) = scripted {
        shared.limiter(&token, |l| {
            l.block_for(Instant::now(), Duration::from_secs(secs))
        });
        let mut r = fail(Failure::new(
            429,
            codes::RATE_LIMITED,
            "Rate limited: please wait and consider throttling your request speed",
        ));
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return (429, r);
    }
    if let Some(super::ScriptedFault::RejectQuotingBody) = scripted {
        let body = axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024)
            .await
            .unwrap_or_default();
        let failure = Failure::invalid(format!(
            "could not process the request {}",
            String::from_utf8_lossy(&body)
        ));
        return (failure.status, fail(failure));
    }
    let fault = if let Some(f) = scripted {
        match f {
            super::ScriptedFault::ServerError(s) => Fault::ServerError(s),
            super::ScriptedFault::DropBefore => Fault::DropBefore,
            _ => Fault::DropAfter,
        }
    } else if config.fault_rate > 0.0 && fastrand::f64() < config.fault_rate {
        match fastrand::u8(0..3) {
            0 => Fault::ServerError([500u16, 502, 503][fastrand::usize(0..3)]),
            1 => Fault::DropBefore,
            _ => Fault::DropAfter,
        }
    } else {
        Fault::None
    };
    match fault {
        Fault::ServerError(status) => (
            status,
            fail(Failure::new(
                status,
                codes::INTERNAL,
                "An internal error has occurred",
            )),
        ),
        Fault::DropBefore => (0, dropped(StatusCode::BAD_GATEWAY)),
        Fault::DropAfter => {
            let response = next.run(req).await;
            (0, dropped(response.status()))
        }
        Fault::None => {
            let is_write = req.method() != Method::GET;
            let response = next.run(req).await;
            if is_write && response.status().is_success() {
                shared.persist();
            }
            (response.status().as_u16(), response)
        }
    }
}

/// Checks a JSON request body against the official schema of its operation (the
/// emulator never trusts flaredock's own types); a violation is a 400 naming the field.
async fn check_body(req: Request) -> Result<Request, Failure> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if req.method() == Method::GET || !is_json {
        return Ok(req);
    }
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.path().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let path = path.trim_start_matches("/client/v4").to_string();
    let method = req.method().to_string();
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .map_err(|e| Failure::invalid(format!("request body: {e}")))?;
    if !bytes.is_empty() {
        let value: Value = parse_json(&bytes)?;
        let (spec, _) = super::schema::Spec::for_request(&method, &path);
        let violations = spec.request_violations(&method, &path, &value);
        if let Some(first) = violations.first() {
            let more = match violations.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            let failure = Failure::invalid(format!("{first}{more}"));
            return Err(if path.contains("/containers/") {
                containers_failure(failure)
            } else {
                failure
            });
        }
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

async fn no_route(req: Request) -> Response {
    let status = if req.uri().path().contains("/accounts/") {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::BAD_REQUEST
    };
    fail(Failure::new(
        status.as_u16(),
        codes::NO_ROUTE,
        "No route for the URI",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_limiter_blocks_for_the_window() {
        let mut l = ServerLimiter::new(RateLimit {
            requests: 2,
            window: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        assert!(l.admit(t0).is_ok());
        assert!(l.admit(t0).is_ok());
        assert_eq!(l.admit(t0), Err(Duration::from_secs(10)));
        // Still blocked after the first requests left the window: the block lasts W.
        assert!(l.admit(t0 + Duration::from_secs(9)).is_err());
        assert!(l.admit(t0 + Duration::from_secs(11)).is_ok());
    }

    #[test]
    fn reads_basic_credentials() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic djE6c2VjcmV0"),
        );
        assert_eq!(basic_credentials(&h), Some(("v1".into(), "secret".into())));
    }
}

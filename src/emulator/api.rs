//! HTTP side of the emulator: Cloudflare's routes under `/client/v4`, the gate every
//! API request passes (latency, bearer token, rate limit, faults, request log), the
//! test hooks under `/__emulator`, and the embedded registry under `/v2`.

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

/// Adds the rate-limit headers to an API response.
fn with_rate_headers(shared: &Shared, mut response: Response) -> Response {
    let (now, policy) = crate::lock(&shared.limiter).headers(Instant::now());
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
        .route(
            "/containers/registries/{domain}/credentials",
            post(registry_credentials),
        )
        .route("/workers/durable_objects/namespaces", get(list_namespaces))
        .route("/workers/scripts", get(list_scripts))
        .route(
            "/workers/scripts/{script}",
            put(upload_script).delete(delete_script),
        )
        .route(
            "/workers/scripts/{script}/settings",
            get(get_settings).patch(patch_settings),
        );
    let api = Router::new()
        .nest("/accounts/{account}", accounts)
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(shared.clone(), gate));
    Router::new()
        .nest("/client/v4", api)
        .route(
            "/__emulator/requests",
            get(hook_requests).delete(hook_clear_requests),
        )
        .route("/__emulator/scripts/{name}", put(hook_put_script))
        .route("/__emulator/state", get(hook_state))
        .route("/__emulator/faults", post(hook_faults))
        .route("/v2", any(registry_entry))
        .route("/v2/", any(registry_entry))
        .route("/v2/{*path}", any(registry_entry))
        .layer(DefaultBodyLimit::disable())
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
    let path = match req.extensions().get::<axum::extract::OriginalUri>() {
        Some(original) => original.0.path().to_string(),
        None => req.uri().path().to_string(),
    };
    if !shared.config.capture_bodies {
        let (status, response) = gate_inner(&shared, req, next).await;
        shared.record(RequestRecord {
            method,
            path,
            status,
        });
        if status == 0 {
            return response;
        }
        return with_rate_headers(&shared, response);
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (parts, body) = req.into_parts();
    let request_body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let req = Request::from_parts(parts, Body::from(request_body.clone()));
    let (status, response) = gate_inner(&shared, req, next).await;
    shared.record(RequestRecord {
        method: method.clone(),
        path: path.clone(),
        status,
    });
    if status == 0 {
        return response;
    }
    let (parts, body) = response.into_parts();
    let response_body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    shared.capture(super::Exchange {
        method,
        path,
        request_content_type: content_type,
        request_body,
        status,
        response_body: response_body.clone(),
    });
    with_rate_headers(
        &shared,
        Response::from_parts(parts, Body::from(response_body)),
    )
}

async fn gate_inner(shared: &Shared, req: Request, next: Next) -> (u16, Response) {
    let config = &shared.config;
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token != Some(config.api_token.as_str()) {
        return (
            401,
            fail(Failure::new(
                401,
                codes::AUTHENTICATION,
                "Authentication error",
            )),
        );
    }
    let admitted = crate::lock(&shared.limiter).admit(Instant::now());
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
    let scripted = shared.take_fault(req.method().as_str());
    if let Some(super::ScriptedFault::RateLimit(secs)) = scripted {
        crate::lock(&shared.limiter).block_for(Instant::now(), Duration::from_secs(secs));
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
        let spec = if path.contains("/containers/") {
            super::schema::Spec::containers()
        } else {
            super::schema::Spec::workers()
        };
        let violations = spec.request_violations(&method, &path, &value);
        if let Some(first) = violations.first() {
            let more = match violations.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            return Err(Failure::invalid(format!("{first}{more}")));
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

// ---- containers -----------------------------------------------------------------------

fn query_pairs(uri: &axum::http::Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn list_applications(
    State(shared): Shr,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    if let Err(f) = check_account(&shared, &account) {
        return fail(f);
    }
    let pairs = query_pairs(req.uri());
    let name = pairs
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.as_str());
    let image = pairs
        .iter()
        .find(|(k, _)| k == "image")
        .map(|(_, v)| v.as_str());
    let labels: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "label" || k == "label[]")
        .map(|(_, v)| v.clone())
        .collect();
    let mut apps = shared.account().list_applications(name, &labels);
    if let Some(image) = image {
        apps.retain(|a| a.configuration.image == image);
    }
    ok(StatusCode::OK, apps)
}

async fn get_application(
    State(shared): Shr,
    Path((account, id)): Path<(String, String)>,
) -> Response {
    if let Err(f) = check_account(&shared, &account) {
        return fail(f);
    }
    respond(StatusCode::OK, shared.account().get_application(&id))
}

/// The image of a deployment must live in this account's part of the registry; with the
/// embedded registry it must also exist.
fn check_image(shared: &Shared, image: &str) -> Result<(), String> {
    let prefix = format!("{}/{}/", shared.registry_host, shared.config.account_id);
    let Some(rest) = image.strip_prefix(&prefix) else {
        return Err(format!(
            "configuration.image: {image:?} is not in this account's registry ({prefix}…)"
        ));
    };
    if shared.config.registry.is_some() {
        return Ok(());
    }
    let (repo, reference) = match rest.split_once('@') {
        Some((r, d)) => (r, d),
        None => rest.rsplit_once(':').unwrap_or((rest, "latest")),
    };
    let repo = format!("{}/{}", shared.config.account_id, repo);
    shared
        .registry()
        .manifest(&repo, reference)
        .map(|_| ())
        .map_err(|e| format!("configuration.image: {image:?}: {}", e.message))
}

async fn create_application(
    State(shared): Shr,
    Path(account): Path<String>,
    body: Bytes,
) -> Response {
    let outcome = (|| {
        check_account(&shared, &account)?;
        let req: CreateApplicationRequest = parse_json(&body)?;
        let check = |image: &str| check_image(&shared, image);
        shared.account().create_application(req, check)
    })();
    respond(StatusCode::CREATED, outcome)
}

async fn modify_application(
    State(shared): Shr,
    Path((account, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let outcome = (|| {
        check_account(&shared, &account)?;
        let raw: Value = parse_json(&body)?;
        if let Some(cfg) = raw.get("configuration").and_then(Value::as_object) {
            let allowed = [
                "authorized_keys",
                "trusted_user_ca_keys",
                "experimental_flags",
                "lifecycle",
                "wrangler_ssh",
            ];
            if let Some(k) = cfg.keys().find(|k| !allowed.contains(&k.as_str())) {
                return Err(Failure::invalid(format!(
                    "configuration.{k}: cannot be modified in place; create a rollout"
                )));
            }
        }
        let req: ModifyApplicationRequest = parse_json(&body)?;
        shared.account().modify_application(&id, req)
    })();
    respond(StatusCode::OK, outcome)
}

async fn delete_application(
    State(shared): Shr,
    Path((account, id)): Path<(String, String)>,
) -> Response {
    let outcome =
        check_account(&shared, &account).and_then(|_| shared.account().delete_application(&id));
    respond(StatusCode::OK, outcome)
}

async fn create_rollout(
    State(shared): Shr,
    Path((account, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let outcome = (|| {
        check_account(&shared, &account)?;
        let req: CreateRolloutRequest = parse_json(&body)?;
        check_image(&shared, &req.target_configuration.image).map_err(Failure::invalid)?;
        shared.account().create_rollout(&id, req)
    })();
    respond(StatusCode::CREATED, outcome)
}

async fn list_versions(
    State(shared): Shr,
    Path((account, id)): Path<(String, String)>,
) -> Response {
    let outcome =
        check_account(&shared, &account).and_then(|_| shared.account().list_versions(&id));
    respond(StatusCode::OK, outcome)
}

async fn registry_credentials(
    State(shared): Shr,
    Path((account, _domain)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let outcome = (|| {
        check_account(&shared, &account)?;
        let req: RegistryCredentialsRequest = parse_json(&body)?;
        if req.expiration_minutes < 1 {
            return Err(Failure::invalid("expiration_minutes: must be at least 1"));
        }
        if req.permissions.is_empty() || req.permissions.contains(&RegistryPermission::Unknown) {
            return Err(Failure::invalid(
                "permissions: must be a non-empty list of pull, push, list",
            ));
        }
        let (username, password) = match &shared.config.registry {
            Some(r) => (r.username.clone(), r.password.clone()),
            None => shared.mint(req.expiration_minutes),
        };
        Ok(json!({
            "account_id": shared.config.account_id,
            "registry_host": shared.registry_host,
            "username": username,
            "password": password,
        }))
    })();
    respond(StatusCode::CREATED, outcome)
}

// ---- workers --------------------------------------------------------------------------

async fn list_namespaces(
    State(shared): Shr,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    if let Err(f) = check_account(&shared, &account) {
        return fail(f);
    }
    let pairs = query_pairs(req.uri());
    let num = |key: &str, default: usize| -> Result<usize, Failure> {
        match pairs.iter().find(|(k, _)| k == key) {
            None => Ok(default),
            Some((_, v)) => v
                .parse::<usize>()
                .map_err(|_| Failure::invalid(format!("{key}: must be a whole number"))),
        }
    };
    let (page, per_page) = match (num("page", 1), num("per_page", 20)) {
        (Ok(p), Ok(pp)) => (p, pp),
        (Err(f), _) | (_, Err(f)) => return fail(f),
    };
    if page < 1 || !(1..=1000).contains(&per_page) {
        return fail(Failure::invalid(
            "page must be ≥ 1 and per_page between 1 and 1000",
        ));
    }
    let (items, info) = shared.account().list_namespaces(page, per_page);
    let body = json!({"success": true, "errors": [], "messages": [], "result": items, "result_info": info});
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The parts of a `multipart/form-data` body: `(field name, file name, content type,
/// bytes)`. A body of another type is refused, naming what was expected.
async fn multipart_parts(
    headers: &HeaderMap,
    req: Request,
    expected: &str,
) -> Outcome<Vec<(String, Option<String>, String, Bytes)>> {
    let is_multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(Failure::new(
            400,
            10001,
            format!("must be sent as multipart/form-data with {expected}"),
        ));
    }
    let mut multipart = <Multipart as axum::extract::FromRequest<()>>::from_request(req, &())
        .await
        .map_err(|e| Failure::invalid(format!("malformed multipart body: {e}")))?;
    let mut parts = Vec::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_string();
                let file_name = field.file_name().map(str::to_string);
                let content_type = field.content_type().unwrap_or("text/plain").to_string();
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| Failure::invalid(format!("part {name}: {e}")))?;
                parts.push((name, file_name, content_type, bytes));
            }
            Ok(None) => return Ok(parts),
            Err(e) => return Err(Failure::invalid(format!("malformed multipart body: {e}"))),
        }
    }
}

async fn list_scripts(State(shared): Shr, Path(account): Path<String>) -> Response {
    let outcome = check_account(&shared, &account).map(|_| shared.account().list_scripts());
    respond(StatusCode::OK, outcome)
}

async fn upload_script(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let outcome = async {
        check_account(&shared, &account)?;
        let parts = multipart_parts(&headers, req, "a metadata part and module parts").await?;
        let mut metadata: Option<Value> = None;
        let mut modules = Vec::new();
        for (name, file_name, content_type, bytes) in parts {
            if name == "metadata" {
                metadata = Some(parse_json::<Value>(&bytes)?);
            } else {
                modules.push((file_name.unwrap_or(name), content_type, bytes.to_vec()));
            }
        }
        let metadata =
            metadata.ok_or_else(|| Failure::invalid("the upload has no metadata part"))?;
        let violations = super::schema::upload_metadata_violations(&metadata);
        if let Some(first) = violations.first() {
            return Err(Failure::invalid(format!(
                "{first}{}",
                if violations.len() > 1 {
                    format!(" (and {} more)", violations.len() - 1)
                } else {
                    String::new()
                }
            )));
        }
        shared.account().upload_script(&script, &metadata, modules)
    }
    .await;
    respond(StatusCode::OK, outcome)
}

async fn delete_script(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
    req: Request,
) -> Response {
    let force = query_pairs(req.uri())
        .iter()
        .any(|(k, v)| k == "force" && v == "true");
    let outcome = check_account(&shared, &account)
        .and_then(|_| shared.account().delete_script(&script, force));
    respond(StatusCode::OK, outcome.map(|_| Value::Null))
}

async fn get_settings(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
) -> Response {
    let outcome =
        check_account(&shared, &account).and_then(|_| shared.account().script_settings(&script));
    respond(StatusCode::OK, outcome)
}

async fn patch_settings(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let outcome = async {
        check_account(&shared, &account)?;
        let parts = multipart_parts(&headers, req, "a part named settings").await?;
        let (_, _, _, bytes) = parts
            .into_iter()
            .find(|(name, ..)| name == "settings")
            .ok_or_else(|| Failure::invalid("the multipart body has no settings part"))?;
        let settings: Value = parse_json(&bytes)?;
        shared.account().patch_script_settings(&script, &settings)
    }
    .await;
    respond(StatusCode::OK, outcome)
}

// ---- test hooks -----------------------------------------------------------------------

async fn hook_requests(State(shared): Shr) -> Response {
    axum::Json(shared.requests()).into_response()
}

async fn hook_clear_requests(State(shared): Shr) -> Response {
    shared.clear_requests();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(serde::Deserialize)]
struct SeedScript {
    #[serde(default)]
    durable_object_classes: Vec<String>,
    #[serde(default)]
    bindings: Option<Vec<Value>>,
    /// Also create the classes' namespaces, as a deploy with their migrations would.
    #[serde(default)]
    with_namespaces: bool,
    /// Whether those namespaces are container-enabled (as a deploy listing the classes
    /// in `containers` leaves them); `false` models a deploy without `containers`.
    #[serde(default = "yes")]
    container_enabled: bool,
}

fn yes() -> bool {
    true
}

async fn hook_put_script(State(shared): Shr, Path(name): Path<String>, body: Bytes) -> Response {
    match serde_json::from_slice::<SeedScript>(&body) {
        Ok(seed) => {
            shared.account().seed_script(
                &name,
                seed.durable_object_classes,
                seed.bindings,
                seed.with_namespaces,
                seed.container_enabled,
            );
            shared.persist();
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct FaultScript {
    /// Faults for the next requests, in order: `500`, `drop`, `drop_after`, `429:SECONDS`;
    /// `revert` makes the next rollout end reverted.
    next: Vec<String>,
    /// Only requests of this method take them (any when unset).
    #[serde(default)]
    method: Option<String>,
}

async fn hook_faults(State(shared): Shr, body: Bytes) -> Response {
    let script: FaultScript = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    for f in &script.next {
        if f == "revert" {
            // Not a fault of a request: the next rollout is reverted by "Cloudflare".
            shared.account().reverts_scripted += 1;
            continue;
        }
        match super::ScriptedFault::parse(f) {
            Ok(f) => shared.push_fault(script.method.as_deref(), f),
            Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn hook_state(State(shared): Shr) -> Response {
    let mut account = shared.account();
    account.advance_rollouts();
    axum::Json(&*account).into_response()
}

// ---- embedded registry ----------------------------------------------------------------

fn registry_error(e: super::registry::RegistryError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        e.body(),
    )
        .into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = v.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?,
    )
    .ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

async fn registry_entry(State(shared): Shr, req: Request) -> Response {
    if shared.config.registry.is_some() {
        return (
            StatusCode::NOT_FOUND,
            "this emulator uses an external registry",
        )
            .into_response();
    }
    let authorized =
        basic_credentials(req.headers()).is_some_and(|(u, p)| shared.registry_login_ok(&u, &p));
    if !authorized {
        let mut r = registry_error(super::registry::RegistryError {
            status: 401,
            code: "UNAUTHORIZED",
            message: "authentication required".into(),
        });
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"flaredock-emulator\""),
        );
        return r;
    }
    let path = req
        .uri()
        .path()
        .trim_start_matches("/v2")
        .trim_matches('/')
        .to_string();
    if path.is_empty() {
        return (StatusCode::OK, axum::Json(json!({}))).into_response();
    }
    let method = req.method().clone();
    let pairs = query_pairs(req.uri());
    let q = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    let body = match axum::body::to_bytes(req.into_body(), usize::MAX).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let (repo, kind, rest) = if let Some((r, reference)) = path.rsplit_once("/manifests/") {
        (r, "manifests", reference)
    } else if let Some((r, id)) = path.rsplit_once("/blobs/uploads") {
        (r, "uploads", id.trim_start_matches('/'))
    } else if let Some((r, digest)) = path.rsplit_once("/blobs/") {
        (r, "blobs", digest)
    } else if let Some(r) = path.strip_suffix("/tags/list") {
        (r, "tags", "")
    } else {
        return registry_error(super::registry::RegistryError {
            status: 404,
            code: "NAME_UNKNOWN",
            message: "unknown registry path".into(),
        });
    };
    if !repo.starts_with(&format!("{}/", shared.config.account_id)) {
        return registry_error(super::registry::RegistryError {
            status: 403,
            code: "DENIED",
            message: format!("repository {repo} is outside this account"),
        });
    }
    let repo = repo.to_string();
    let mut reg = shared.registry();
    match (kind, method) {
        ("manifests", m) if m == Method::GET || m == Method::HEAD => {
            match reg.manifest(&repo, rest) {
                Ok(man) => {
                    let len = man.bytes.len();
                    let body = if m == Method::HEAD {
                        Body::empty()
                    } else {
                        Body::from(man.bytes)
                    };
                    Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, man.media_type)
                        .header(header::CONTENT_LENGTH, len)
                        .header("docker-content-digest", man.digest)
                        .body(body)
                        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
                }
                Err(e) => registry_error(e),
            }
        }
        ("manifests", Method::PUT) => match reg.put_manifest(&repo, rest, &content_type, body) {
            Ok(digest) => created(&format!("/v2/{repo}/manifests/{digest}"), &digest),
            Err(e) => registry_error(e),
        },
        ("blobs", m) if m == Method::GET || m == Method::HEAD => match reg.blob(&repo, rest) {
            Some(data) => {
                let len = data.len();
                let body = if m == Method::HEAD {
                    Body::empty()
                } else {
                    Body::from(data)
                };
                Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, len)
                    .header("docker-content-digest", rest)
                    .body(body)
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
            }
            None => registry_error(super::registry::RegistryError {
                status: 404,
                code: "BLOB_UNKNOWN",
                message: format!("blob {rest} not known"),
            }),
        },
        ("uploads", Method::POST) => {
            if let (Some(digest), Some(from)) = (q("mount"), q("from"))
                && reg.mount(&repo, &digest, &from)
            {
                return created(&format!("/v2/{repo}/blobs/{digest}"), &digest);
            }
            if let Some(digest) = q("digest") {
                return match reg.put_blob(&repo, &digest, body.to_vec()) {
                    Ok(()) => created(&format!("/v2/{repo}/blobs/{digest}"), &digest),
                    Err(e) => registry_error(e),
                };
            }
            let id = reg.start_upload(&repo);
            accepted(&format!("/v2/{repo}/blobs/uploads/{id}"), 0)
        }
        ("uploads", Method::PATCH) => match reg.append_upload(rest, &body) {
            Ok(len) => accepted(&format!("/v2/{repo}/blobs/uploads/{rest}"), len),
            Err(e) => registry_error(e),
        },
        ("uploads", Method::PUT) => {
            let Some(digest) = q("digest") else {
                return registry_error(super::registry::RegistryError {
                    status: 400,
                    code: "DIGEST_INVALID",
                    message: "digest query parameter is required".into(),
                });
            };
            match reg.finish_upload(rest, &body, &digest) {
                Ok(()) => created(&format!("/v2/{repo}/blobs/{digest}"), &digest),
                Err(e) => registry_error(e),
            }
        }
        ("tags", Method::GET) => match reg.tags(&repo) {
            Some(tags) => axum::Json(json!({"name": repo, "tags": tags})).into_response(),
            None => registry_error(super::registry::RegistryError {
                status: 404,
                code: "NAME_UNKNOWN",
                message: format!("repository {repo} not known"),
            }),
        },
        _ => registry_error(super::registry::RegistryError {
            status: 405,
            code: "UNSUPPORTED",
            message: "method not supported here".into(),
        }),
    }
}

fn created(location: &str, digest: &str) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, location)
        .header("docker-content-digest", digest)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn accepted(location: &str, len: usize) -> Response {
    let range = format!("0-{}", len.saturating_sub(1));
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::LOCATION, location)
        .header(header::RANGE, range)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
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

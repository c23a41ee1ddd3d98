//! The typed Cloudflare API client: one method per operation flaredock uses, the
//! envelope unwrapped into typed results or an [`ApiError`], retries for requests that
//! are safe to repeat, and every call paced by the per-token [`RateLimiter`].
//!
//! Bounded: every request has a connect and an overall timeout; a write's timeout
//! also ends before the [`WriteGate`] closes (the leader Lease). A 429 is never slept
//! out inside a call for long: a short `retry-after` (at most
//! [`ClientConfig::max_rate_wait`]) is waited once; a longer one blocks the token in
//! its limiter and returns [`ApiError::RateLimited`] at once, and every later call
//! with that token fails the same way, without sending, until the block ends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{ApiError, excerpt};
use super::limiter::{RateLimit, RateLimiter};
use super::token::ApiToken;
use super::types::*;

pub const DEFAULT_BASE_URL: &str = "https://api.cloudflare.com/client/v4";
/// The registry domain credentials are minted for.
pub const CLOUDFLARE_REGISTRY: &str = "registry.cloudflare.com";

pub use super::gate::WriteGate;
pub use super::multipart::multipart_parts;

/// How to reach and pace the API.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub base_url: String,
    pub account_id: String,
    pub token: ApiToken,
    /// Overall time of one request (connect, send, answer), 30 s by default.
    pub timeout: Duration,
    /// Time to establish a connection, 10 s by default.
    pub connect_timeout: Duration,
    pub rate_limit: RateLimit,
    /// The longest a call waits for its token (a short `retry-after`, a full window);
    /// beyond it the call returns [`ApiError::RateLimited`] at once. 5 s by default.
    pub max_rate_wait: Duration,
    /// Attempts for a request that is safe to repeat (5xx, timeouts, dropped connections).
    pub max_attempts: u32,
    /// First backoff delay; doubles each attempt, with jitter.
    pub backoff: Duration,
    /// When set, a write is sent only while it says so, with a timeout that ends
    /// before it closes.
    pub write_gate: Option<WriteGate>,
}

impl ClientConfig {
    pub fn new(
        base_url: impl Into<String>,
        account_id: impl Into<String>,
        token: ApiToken,
    ) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            account_id: account_id.into(),
            token,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            rate_limit: RateLimit::CLOUDFLARE,
            max_rate_wait: Duration::from_secs(5),
            max_attempts: 5,
            backoff: Duration::from_millis(200),
            write_gate: None,
        }
    }
}

/// Counts of API calls by operation and outcome, for benchmarks, tests and metrics.
#[derive(Default)]
pub struct CallStats {
    calls: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl CallStats {
    fn record(&self, operation: &'static str, outcome: String) {
        let mut calls = crate::lock(&self.calls);
        *calls.entry((operation, outcome)).or_default() += 1;
    }

    /// `(operation, outcome) → count`; outcome is the HTTP status or `error`.
    pub fn snapshot(&self) -> BTreeMap<(&'static str, String), u64> {
        crate::lock(&self.calls).clone()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// Calls of operations that change something.
    pub fn writes(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((op, _), _)| is_write(op))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn count(&self, operation: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((op, _), _)| *op == operation)
            .map(|(_, n)| n)
            .sum()
    }
}

fn is_write(operation: &str) -> bool {
    matches!(
        operation,
        "createApplication"
            | "modifyApplication"
            | "deleteApplication"
            | "createApplicationRollout"
            | "uploadScript"
            | "deleteScript"
    ) || super::routing::is_write(operation)
}

/// Whether a failed request may be sent again as is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Repeat {
    /// Reads, PATCH of the same body, DELETE, credential minting.
    Safe,
    /// Creates: a lost response may mean it was applied; the caller checks by name.
    Never,
}

pub(super) enum Body {
    Empty,
    Json(Value),
    /// `multipart/form-data` with these parts.
    Multipart(Vec<Part>),
}

/// One part of a multipart body (kept as bytes: a retry builds the form again).
pub(super) struct Part {
    name: String,
    file_name: Option<String>,
    content_type: String,
    content: Vec<u8>,
}

/// A Cloudflare API client for one account and token. Clones share the connection pool,
/// the limiter and the stats; clients of one token share a limiter when they take it
/// from the same [`super::Limiters`].
#[derive(Clone)]
pub struct CloudflareClient {
    http: reqwest::Client,
    config: Arc<ClientConfig>,
    limiter: Arc<RateLimiter>,
    stats: Arc<CallStats>,
}

impl std::fmt::Debug for CloudflareClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudflareClient")
            .field("base_url", &self.config.base_url)
            .field("account_id", &self.config.account_id)
            .field("token", &self.config.token)
            .finish()
    }
}

impl CloudflareClient {
    /// A client with a limiter of its own (one client per token, as the CLI has).
    pub fn new(config: ClientConfig) -> Result<Self, ApiError> {
        let limiter = Arc::new(RateLimiter::new(config.rate_limit));
        Self::with_limiter(config, limiter)
    }

    /// A client paced by `limiter` (the token's, from the owner's [`super::Limiters`]).
    pub fn with_limiter(config: ClientConfig, limiter: Arc<RateLimiter>) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout.min(config.timeout))
            .user_agent(concat!("flaredock/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Transport {
                operation: "client",
                reason: e.to_string(),
                maybe_applied: false,
            })?;
        Ok(CloudflareClient {
            http,
            config: Arc::new(config),
            limiter,
            stats: Arc::new(CallStats::default()),
        })
    }

    /// Whether a write may be sent now (the write gate, when there is one).
    pub fn writes_allowed(&self) -> bool {
        self.config
            .write_gate
            .as_ref()
            .is_none_or(|g| g.fence(self.config.timeout).is_some())
    }

    pub fn account_id(&self) -> &str {
        &self.config.account_id
    }

    /// A non-reversible fingerprint of the API token (keys hashes of secret values).
    pub fn token_fingerprint(&self) -> [u8; 32] {
        self.config.token.fingerprint()
    }

    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    fn url(&self, path: &str) -> String {
        // Zones are not under the account (`GET /zones`, `/zones/{id}/workers/routes`).
        if path.starts_with("/zones") {
            return format!("{}{path}", self.config.base_url.trim_end_matches('/'));
        }
        format!(
            "{}/accounts/{}{}",
            self.config.base_url.trim_end_matches('/'),
            self.config.account_id,
            path
        )
    }

    // ---- containers -------------------------------------------------------------

    /// `GET /containers/applications` — every application of the account in one call.
    pub async fn list_applications(&self) -> Result<Vec<Application>, ApiError> {
        self.call(
            "listApplications",
            Method::GET,
            "/containers/applications".into(),
            Body::Empty,
            Repeat::Safe,
        )
        .await
    }

    pub async fn get_application(&self, id: &str) -> Result<Application, ApiError> {
        self.call(
            "getApplication",
            Method::GET,
            format!("/containers/applications/{id}"),
            Body::Empty,
            Repeat::Safe,
        )
        .await
    }

    /// `POST /containers/applications`. Never repeated blindly: after a lost response
    /// the caller looks the name up before creating again.
    pub async fn create_application(
        &self,
        request: &CreateApplicationRequest,
    ) -> Result<Application, ApiError> {
        self.call(
            "createApplication",
            Method::POST,
            "/containers/applications".into(),
            Body::Json(to_json(request)),
            Repeat::Never,
        )
        .await
    }

    pub async fn modify_application(
        &self,
        id: &str,
        request: &ModifyApplicationRequest,
    ) -> Result<Application, ApiError> {
        self.call(
            "modifyApplication",
            Method::PATCH,
            format!("/containers/applications/{id}"),
            Body::Json(to_json(request)),
            Repeat::Safe,
        )
        .await
    }

    /// `DELETE /containers/applications/{id}`; `Ok(false)` when it was already gone.
    pub async fn delete_application(&self, id: &str) -> Result<bool, ApiError> {
        let result: Result<DeleteApplicationResponse, ApiError> = self
            .call(
                "deleteApplication",
                Method::DELETE,
                format!("/containers/applications/{id}"),
                Body::Empty,
                Repeat::Safe,
            )
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(ApiError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `POST /containers/applications/{id}/rollouts`. Never repeated blindly.
    pub async fn create_rollout(
        &self,
        id: &str,
        request: &CreateRolloutRequest,
    ) -> Result<ApplicationRollout, ApiError> {
        self.call(
            "createApplicationRollout",
            Method::POST,
            format!("/containers/applications/{id}/rollouts"),
            Body::Json(to_json(request)),
            Repeat::Never,
        )
        .await
    }

    pub async fn list_versions(&self, id: &str) -> Result<Vec<ApplicationVersion>, ApiError> {
        self.call(
            "listApplicationVersions",
            Method::GET,
            format!("/containers/applications/{id}/versions"),
            Body::Empty,
            Repeat::Safe,
        )
        .await
    }

    /// Mints short-lived registry credentials.
    pub async fn registry_credentials(
        &self,
        domain: &str,
        permissions: &[RegistryPermission],
        expiration_minutes: i64,
    ) -> Result<RegistryCredentials, ApiError> {
        let request = RegistryCredentialsRequest {
            permissions: permissions.to_vec(),
            expiration_minutes,
        };
        self.call(
            "generateImageRegistryCredentials",
            Method::POST,
            format!("/containers/registries/{domain}/credentials"),
            Body::Json(to_json(&request)),
            Repeat::Safe,
        )
        .await
    }

    // ---- workers ----------------------------------------------------------------

    /// Every Durable Object namespace of the account (pages of 1,000).
    pub async fn list_namespaces(&self) -> Result<Vec<DurableObjectNamespace>, ApiError> {
        let mut all = Vec::new();
        let mut page = 1u32;
        loop {
            let (items, info): (Vec<DurableObjectNamespace>, Option<ResultInfo>) = self
                .call_with_info(
                    "listNamespaces",
                    Method::GET,
                    format!("/workers/durable_objects/namespaces?page={page}&per_page=1000"),
                    Body::Empty,
                    Repeat::Safe,
                )
                .await?;
            let got = items.len();
            all.extend(items);
            let total_pages = info.as_ref().and_then(|i| i.total_pages).unwrap_or(0.0);
            if got < 1000 || f64::from(page) >= total_pages {
                return Ok(all);
            }
            page += 1;
        }
    }

    /// `GET /workers/scripts`: every script of the account with its `tags` and
    /// `migration_tag`, in one call.
    pub async fn list_scripts(&self) -> Result<Vec<ScriptInfo>, ApiError> {
        self.call(
            "listScripts",
            Method::GET,
            "/workers/scripts".into(),
            Body::Empty,
            Repeat::Safe,
        )
        .await
    }

    /// `PUT /workers/scripts/{name}`: a module upload (multipart: `metadata` plus one part
    /// per module). Never repeated blindly: a lost answer may mean the migration was
    /// applied, so the caller reads the script list (its hash tag) before uploading again.
    pub async fn upload_script(
        &self,
        script: &str,
        upload: &ScriptUpload,
    ) -> Result<ScriptInfo, ApiError> {
        let mut metadata = to_json(&upload.metadata);
        if let Some(bindings) = metadata.get_mut("bindings").and_then(Value::as_array_mut) {
            for s in &upload.metadata.secrets {
                bindings.push(serde_json::json!({
                    "type": "secret_text",
                    "name": s.name,
                    "text": s.text.expose(),
                }));
            }
        }
        let mut parts = vec![Part {
            name: "metadata".into(),
            file_name: None,
            content_type: "application/json".into(),
            content: metadata.to_string().into_bytes(),
        }];
        parts.extend(upload.modules.iter().map(|m| Part {
            name: m.name.clone(),
            file_name: Some(m.name.clone()),
            content_type: m.content_type.clone(),
            content: m.content.clone(),
        }));
        self.call(
            "uploadScript",
            Method::PUT,
            format!("/workers/scripts/{script}"),
            Body::Multipart(parts),
            Repeat::Never,
        )
        .await
    }

    /// `DELETE /workers/scripts/{name}`; `Ok(false)` when it was already gone. Without
    /// `force`, Cloudflare refuses to delete a script that has Durable Objects; with
    /// `force=true` they go with it, **and all their data**: the caller decides.
    pub async fn delete_script(&self, script: &str, force: bool) -> Result<bool, ApiError> {
        let path = if force {
            format!("/workers/scripts/{script}?force=true")
        } else {
            format!("/workers/scripts/{script}")
        };
        let result: Result<Value, ApiError> = self
            .call(
                "deleteScript",
                Method::DELETE,
                path,
                Body::Empty,
                Repeat::Safe,
            )
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(ApiError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    // ---- transport --------------------------------------------------------------

    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: String,
        body: Body,
        repeat: Repeat,
    ) -> Result<T, ApiError> {
        self.call_with_info(operation, method, path, body, repeat)
            .await
            .map(|(t, _)| t)
    }

    pub(super) async fn call_with_info<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: String,
        body: Body,
        repeat: Repeat,
    ) -> Result<(T, Option<ResultInfo>), ApiError> {
        self.call_decoded(
            operation,
            method,
            path,
            body,
            repeat,
            |status, retry, _, bytes| parse_response(operation, status, retry, bytes),
        )
        .await
    }

    /// [`Self::call_with_info`] with the body decoded by `decode(status, retry_after,
    /// content_type, body)`: for the few answers that are not the JSON envelope.
    pub(super) async fn call_decoded<R>(
        &self,
        operation: &'static str,
        method: Method,
        path: String,
        body: Body,
        repeat: Repeat,
        decode: impl Fn(StatusCode, Option<Duration>, &str, &[u8]) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let url = self.url(&path);
        let mut attempt = 0u32;
        let mut rate_limited = false;
        loop {
            attempt += 1;
            let result = self
                .send_once(operation, &method, &url, &body, &decode)
                .await;
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let retry = match &err {
                // A 429 was not processed: safe to send again, after the wait. The
                // token is blocked that long for every caller; only a short wait is
                // waited here, once.
                ApiError::RateLimited {
                    retry_after,
                    answered,
                    ..
                } => {
                    if *answered {
                        self.limiter.block_for(*retry_after);
                    }
                    let again =
                        *answered && !rate_limited && *retry_after <= self.config.max_rate_wait;
                    rate_limited = true;
                    again
                }
                ApiError::Transport { maybe_applied, .. } => {
                    repeat == Repeat::Safe || !maybe_applied
                }
                ApiError::Server { .. } | ApiError::InvalidResponse { .. } => {
                    repeat == Repeat::Safe && err.is_retryable()
                }
                ApiError::VersionNotVisible { .. } => true,
                _ => false,
            };
            let exhausted =
                !matches!(err, ApiError::RateLimited { .. }) && attempt >= self.config.max_attempts;
            if !retry || exhausted {
                return Err(err);
            }
            if !matches!(err, ApiError::RateLimited { .. }) {
                let delay = backoff(self.config.backoff, attempt);
                if matches!(err, ApiError::Transport { .. }) {
                    // Unreachable or cut off: worth telling whoever watches, as it happens.
                    tracing::warn!(operation, attempt, retry_in_ms = delay.as_millis() as u64, error = %err, "retrying Cloudflare call");
                } else {
                    tracing::debug!(operation, attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying Cloudflare call");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }

    async fn send_once<R>(
        &self,
        operation: &'static str,
        method: &Method,
        url: &str,
        body: &Body,
        decode: &impl Fn(StatusCode, Option<Duration>, &str, &[u8]) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        if let Err(wait) = self.limiter.acquire_within(self.config.max_rate_wait).await {
            return Err(ApiError::rate_limited(
                operation,
                wait,
                false,
                Default::default(),
            ));
        }
        // Checked after any wait for the limiter: exactly when the write would leave,
        // with a timeout that ends before the gate closes.
        let timeout = match &self.config.write_gate {
            Some(gate) if method != Method::GET => match gate.fence(self.config.timeout) {
                Some(t) => t,
                None => return Err(ApiError::NotLeader { operation }),
            },
            _ => self.config.timeout,
        };
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.config.token.expose()))
            .map_err(|_| ApiError::Transport {
                operation,
                reason: "the API token contains characters not allowed in a header".into(),
                maybe_applied: false,
            })?;
        auth.set_sensitive(true);
        let mut request = self
            .http
            .request(method.clone(), url)
            .timeout(timeout)
            .header(AUTHORIZATION, auth);
        request = match body {
            Body::Empty => request,
            Body::Json(v) => request.json(v),
            Body::Multipart(parts) => {
                let mut form = reqwest::multipart::Form::new();
                for p in parts {
                    let mut part = reqwest::multipart::Part::bytes(p.content.clone())
                        .mime_str(&p.content_type)
                        .map_err(|e| ApiError::Transport {
                            operation,
                            reason: format!("part {}: {e}", p.name),
                            maybe_applied: false,
                        })?;
                    if let Some(f) = &p.file_name {
                        part = part.file_name(f.clone());
                    }
                    form = form.part(p.name.clone(), part);
                }
                request.multipart(form)
            }
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                self.stats.record(operation, "error".into());
                tracing::debug!(operation, %method, error = %describe_transport(&e, &self.config.base_url), "Cloudflare call failed");
                return Err(ApiError::Transport {
                    operation,
                    // Without the connect phase failing, the server may have applied it.
                    maybe_applied: !e.is_connect(),
                    reason: describe_transport(&e, &self.config.base_url),
                });
            }
        };
        let status = response.status();
        self.stats.record(operation, status.as_u16().to_string());
        tracing::debug!(operation, %method, status = status.as_u16(), "Cloudflare call");
        if let Some(policy) = response
            .headers()
            .get("ratelimit-policy")
            .and_then(|v| v.to_str().ok())
            .and_then(super::limiter::parse_policy)
        {
            self.limiter.adopt(policy);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)));
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Err(ApiError::Transport {
                    operation,
                    reason: format!(
                        "response body cut off: {}",
                        describe_transport(&e, &self.config.base_url)
                    ),
                    maybe_applied: true,
                });
            }
        };
        decode(status, retry_after, &content_type, &bytes)
    }
}

/// Decodes a response body (the envelope) into the result, or the typed error.
pub fn parse_response<T: DeserializeOwned>(
    operation: &'static str,
    status: StatusCode,
    retry_after: Option<Duration>,
    bytes: &[u8],
) -> Result<(T, Option<ResultInfo>), ApiError> {
    let code = status.as_u16();
    let envelope: Envelope<Value> = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(e) => {
            if code == 429 {
                return Err(ApiError::from_failure(operation, code, vec![], retry_after));
            }
            return Err(ApiError::InvalidResponse {
                operation,
                status: code,
                reason: format!("not a Cloudflare JSON envelope ({e})"),
                excerpt: excerpt(bytes),
            });
        }
    };
    if !status.is_success() || !envelope.success {
        let code = if status.is_success() { 400 } else { code };
        return Err(ApiError::from_failure(
            operation,
            code,
            envelope.errors,
            retry_after,
        ));
    }
    let result = envelope.result.unwrap_or(Value::Null);
    match serde_json::from_value::<T>(result) {
        Ok(t) => Ok((t, envelope.result_info)),
        Err(e) => Err(ApiError::InvalidResponse {
            operation,
            status: code,
            reason: format!("result has an unexpected shape ({e})"),
            excerpt: excerpt(bytes),
        }),
    }
}

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// What went wrong on the wire, naming the API base (never a token: it is a header).
fn describe_transport(e: &reqwest::Error, base_url: &str) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "connection dropped while reading"
    } else {
        "connection failed"
    };
    let mut detail = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        format!("{kind} to {base_url}")
    } else {
        format!("{kind} to {base_url} ({detail})")
    }
}

/// Exponential backoff with full jitter: a random delay in [base·2ⁿ⁻¹/2, base·2ⁿ⁻¹], capped at 10 s.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let cap = exp.min(Duration::from_secs(10));
    let half = cap / 2;
    half + cap.saturating_sub(half).mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Duration::from_millis(100);
        for attempt in 1..30 {
            let d = backoff(b, attempt);
            assert!(d <= Duration::from_secs(10));
        }
        assert!(backoff(b, 1) <= Duration::from_millis(100));
        assert!(backoff(b, 4) >= Duration::from_millis(400));
    }

    #[test]
    fn html_body_is_a_typed_error() {
        let r: Result<(Application, _), _> = parse_response(
            "getApplication",
            StatusCode::BAD_GATEWAY,
            None,
            b"<html><body>502 Bad Gateway</body></html>",
        );
        match r {
            Err(ApiError::InvalidResponse {
                status, excerpt, ..
            }) => {
                assert_eq!(status, 502);
                assert!(excerpt.contains("502 Bad Gateway"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_body_is_a_typed_error() {
        let r: Result<(Application, _), _> = parse_response(
            "getApplication",
            StatusCode::OK,
            None,
            br#"{"success":true,"errors":[],"messages":[],"result":{"id":"a","na"#,
        );
        assert!(matches!(
            r,
            Err(ApiError::InvalidResponse { status: 200, .. })
        ));
    }

    #[test]
    fn failure_envelope_maps_to_variant() {
        let r: Result<(Application, _), _> = parse_response(
            "getApplication",
            StatusCode::NOT_FOUND,
            None,
            br#"{"success":false,"errors":[{"code":1404,"message":"application not found"}],"messages":[],"result":null}"#,
        );
        assert!(matches!(r, Err(ApiError::NotFound { .. })));
    }
}

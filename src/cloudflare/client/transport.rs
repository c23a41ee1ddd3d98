//! The transport of every call: the limiter's pace, the write gate's fence, timeouts,
//! retries with backoff, a 429's `retry-after`, and the envelope decoded into a typed
//! result or an [`ApiError`].

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Body, CloudflareClient, Repeat};
use crate::cloudflare::error::{ApiError, excerpt};
use crate::cloudflare::types::*;

impl CloudflareClient {
    pub(in crate::cloudflare) async fn call<T: DeserializeOwned>(
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

    pub(in crate::cloudflare) async fn call_with_info<T: DeserializeOwned>(
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
    pub(in crate::cloudflare) async fn call_decoded<R>(
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
            .and_then(crate::cloudflare::limiter::parse_policy)
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

//! Typed errors of the Cloudflare API: every failure the client can meet becomes one
//! [`ApiError`] variant carrying the HTTP status and every `{code, message}`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::types::Message;

/// Error code Alchemy reports for an application on a namespace that has one already.
/// The client matches the error enum in the message first; no public source fixes the
/// numeric codes of the containers API, so the number is only a fallback.
pub const CODE_NAMESPACE_HAS_APPLICATION: i64 = 1608;
/// Error enum (wrangler's `ApplicationMutationError`): the namespace has an application.
pub const ENUM_NAMESPACE_HAS_APPLICATION: &str = "DURABLE_OBJECT_ALREADY_HAS_APPLICATION";
/// Error enum: the namespace was not container-enabled by a Worker upload.
pub const ENUM_NOT_CONTAINER_ENABLED: &str = "DURABLE_OBJECT_NOT_CONTAINER_ENABLED";
/// Error code: a just-uploaded Worker version is not visible yet.
pub const CODE_VERSION_NOT_VISIBLE: i64 = 100146;

/// The `{code, message}` list of a failed call, printed `[code] message; …`; a
/// message carrying a containers error enum prints as `[code] ENUM: detail`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Messages(pub Vec<Message>);

impl fmt::Display for Messages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no error detail");
        }
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match ErrorEnum::parse(&m.message) {
                Some(e) => write!(f, "[{}] {e}", m.code)?,
                None => write!(f, "{m}")?,
            }
        }
        Ok(())
    }
}

impl Messages {
    pub fn has_code(&self, code: i64) -> bool {
        self.0.iter().any(|m| m.code == code)
    }

    /// The first containers error enum among the messages (`VALIDATE_INPUT`, …).
    pub fn error_enum(&self) -> Option<String> {
        self.0
            .iter()
            .find_map(|m| ErrorEnum::parse(&m.message))
            .map(|e| e.error)
    }
}

/// An error of one Cloudflare API operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{operation}: not found (HTTP {status}): {errors}")]
    NotFound {
        operation: &'static str,
        status: u16,
        errors: Messages,
    },
    #[error("{operation}: the name is already taken (HTTP {status}): {errors}")]
    NameTaken {
        operation: &'static str,
        status: u16,
        errors: Messages,
    },
    #[error(
        "{operation}: the Durable Object namespace already has application {application_name:?} ({application_id}) (HTTP {status}): {errors}"
    )]
    NamespaceHasApplication {
        operation: &'static str,
        status: u16,
        application_name: String,
        application_id: String,
        errors: Messages,
    },
    #[error(
        "{operation}: the Durable Object namespace is not container-enabled (HTTP {status}): {errors}"
    )]
    NotContainerEnabled {
        operation: &'static str,
        status: u16,
        errors: Messages,
    },
    #[error(
        "{operation}: the Worker version is not visible yet, retry shortly (HTTP {status}): {errors}"
    )]
    VersionNotVisible {
        operation: &'static str,
        status: u16,
        errors: Messages,
    },
    /// Not sent, or answered 429: the token may send again after `retry_after`
    /// (at `retry_at`). Nobody waits that out inside a call: the caller comes back then.
    #[error("{operation}: {}", rate_limit_text(*.answered, .retry_at, .retry_after))]
    RateLimited {
        operation: &'static str,
        retry_after: Duration,
        /// When the token may send again (wall clock, whole seconds), for status.
        retry_at: jiff::Timestamp,
        /// Cloudflare answered 429 (`false`: refused before sending, the token being
        /// blocked by an earlier 429 or its request budget spent).
        answered: bool,
        errors: Messages,
    },
    #[error("{operation}: unauthorized: check the API token (HTTP {status}): {errors}")]
    Unauthorized {
        operation: &'static str,
        status: u16,
        errors: Messages,
    },
    #[error(
        "{operation}: forbidden: the API token lacks a permission or the account id is wrong (HTTP {status}): {errors}"
    )]
    Forbidden {
        operation: &'static str,
        status: u16,
        errors: Messages,
    },
    #[error("{operation}: rejected as invalid (HTTP {status}): {errors}")]
    Validation {
        operation: &'static str,
        status: u16,
        errors: Messages,
    },
    #[error("{operation}: Cloudflare server error (HTTP {status}): {errors}")]
    Server {
        operation: &'static str,
        status: u16,
        errors: Messages,
    },
    #[error("{operation}: request failed (HTTP {status}): {errors}")]
    Other {
        operation: &'static str,
        status: u16,
        errors: Messages,
    },
    #[error(
        "{operation}: unreadable response (HTTP {status}): {reason}; body starts with {excerpt:?}"
    )]
    InvalidResponse {
        operation: &'static str,
        status: u16,
        reason: String,
        excerpt: String,
    },
    #[error(
        "{operation}: not sent: this replica does not hold the leader Lease long enough for the request to land"
    )]
    NotLeader { operation: &'static str },
    #[error("{operation}: no response from Cloudflare: {reason}")]
    Transport {
        operation: &'static str,
        reason: String,
        /// Whether the request may have reached the server (the response was lost).
        maybe_applied: bool,
    },
}

/// The variants that carry what Cloudflare said, as one pattern binding their
/// [`Messages`] to `$errors` (for [`ApiError::redact`] and [`ApiError::error_enum`]).
macro_rules! with_messages {
    ($errors:ident) => {
        ApiError::NotFound {
            errors: $errors,
            ..
        } | ApiError::NameTaken {
            errors: $errors,
            ..
        } | ApiError::NamespaceHasApplication {
            errors: $errors,
            ..
        } | ApiError::NotContainerEnabled {
            errors: $errors,
            ..
        } | ApiError::VersionNotVisible {
            errors: $errors,
            ..
        } | ApiError::RateLimited {
            errors: $errors,
            ..
        } | ApiError::Unauthorized {
            errors: $errors,
            ..
        } | ApiError::Forbidden {
            errors: $errors,
            ..
        } | ApiError::Validation {
            errors: $errors,
            ..
        } | ApiError::Server {
            errors: $errors,
            ..
        } | ApiError::Other {
            errors: $errors,
            ..
        }
    };
}

impl ApiError {
    /// Replaces, in everything Cloudflare said (messages, an excerpt of the body),
    /// each of `values` by `[redacted]`: an API may quote the request in an error,
    /// and the request may carry secret values. Values shorter than 4 characters are
    /// left alone (replacing them would garble the message, and they hide nothing).
    pub fn redact(&mut self, values: &[&str]) {
        let values: Vec<&str> = values.iter().copied().filter(|v| v.len() >= 4).collect();
        if values.is_empty() {
            return;
        }
        let scrub = |text: &mut String| {
            for v in &values {
                if text.contains(v) {
                    *text = text.replace(v, "[redacted]");
                }
            }
        };
        match self {
            with_messages!(errors) => {
                for m in &mut errors.0 {
                    scrub(&mut m.message);
                }
            }
            ApiError::InvalidResponse {
                reason, excerpt, ..
            } => {
                scrub(reason);
                scrub(excerpt);
            }
            ApiError::Transport { reason, .. } => scrub(reason),
            ApiError::NotLeader { .. } => {}
        }
    }
}

/// The JSON the containers API carries inside an error's `message`:
/// `{"error": "<ENUM>", "details": {…}}`.
#[derive(Deserialize)]
struct ErrorEnum {
    error: String,
    #[serde(default)]
    details: serde_json::Value,
}

impl ErrorEnum {
    fn parse(message: &str) -> Option<ErrorEnum> {
        serde_json::from_str(message.trim()).ok()
    }
}

/// `ENUM: message` when the details are only a message, else `ENUM {details}`.
impl fmt::Display for ErrorEnum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)?;
        let Some(details) = self.details.as_object().filter(|d| !d.is_empty()) else {
            return Ok(());
        };
        match details.get("message").and_then(|m| m.as_str()) {
            Some(message) if details.len() == 1 => write!(f, ": {message}"),
            _ => write!(f, " {}", self.details),
        }
    }
}

const EXCERPT_CHARS: usize = 160;

/// A short, printable beginning of a body, for error messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}

fn rate_limit_text(answered: bool, retry_at: &jiff::Timestamp, retry_after: &Duration) -> String {
    let what = if answered {
        "rate limited by Cloudflare (HTTP 429)"
    } else {
        "not sent: this API token is rate limited (blocked by an earlier 429, or its request budget is spent)"
    };
    format!(
        "{what}; flaredock tries again at {retry_at} (in {}s)",
        retry_after.as_secs_f64().ceil() as u64
    )
}

/// `now + d`, in whole seconds (rounded up): when a rate-limited token sends again.
pub fn retry_time(d: Duration) -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    let secs = d.as_secs_f64().ceil().min(i64::MAX as f64 / 2.0) as i64;
    let at = now
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap_or(jiff::Timestamp::MAX);
    jiff::Timestamp::from_second(at.as_second()).unwrap_or(at)
}

impl ApiError {
    /// The token may not send for `retry_after` (`answered`: Cloudflare said so).
    pub fn rate_limited(
        operation: &'static str,
        retry_after: Duration,
        answered: bool,
        errors: Messages,
    ) -> ApiError {
        ApiError::RateLimited {
            operation,
            retry_after,
            retry_at: retry_time(retry_after),
            answered,
            errors,
        }
    }

    /// How long until a rate-limited request may be sent again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Maps a failed envelope (or a non-2xx status) to its variant.
    pub fn from_failure(
        operation: &'static str,
        status: u16,
        errors: Vec<Message>,
        retry_after: Option<Duration>,
    ) -> ApiError {
        let errors = Messages(errors);
        if status == 429 {
            return ApiError::rate_limited(
                operation,
                retry_after.unwrap_or(Duration::from_secs(60)),
                true,
                errors,
            );
        }
        let enums: Vec<ErrorEnum> = errors
            .0
            .iter()
            .filter_map(|m| ErrorEnum::parse(&m.message))
            .collect();
        if enums.iter().any(|e| e.error == ENUM_NOT_CONTAINER_ENABLED) {
            return ApiError::NotContainerEnabled {
                operation,
                status,
                errors,
            };
        }
        let conflict = enums
            .into_iter()
            .find(|e| e.error == ENUM_NAMESPACE_HAS_APPLICATION)
            .map(|e| e.details)
            .or_else(|| {
                errors
                    .has_code(CODE_NAMESPACE_HAS_APPLICATION)
                    .then_some(serde_json::Value::Null)
            });
        if let Some(details) = conflict {
            let field = |k: &str| {
                details
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            return ApiError::NamespaceHasApplication {
                operation,
                status,
                application_name: field("name"),
                application_id: field("id"),
                errors,
            };
        }
        if errors.has_code(CODE_VERSION_NOT_VISIBLE) {
            return ApiError::VersionNotVisible {
                operation,
                status,
                errors,
            };
        }
        match status {
            401 => ApiError::Unauthorized {
                operation,
                status,
                errors,
            },
            403 => ApiError::Forbidden {
                operation,
                status,
                errors,
            },
            404 => ApiError::NotFound {
                operation,
                status,
                errors,
            },
            400 | 409 | 422
                if errors
                    .0
                    .iter()
                    .any(|m| m.message.contains("already exists")) =>
            {
                ApiError::NameTaken {
                    operation,
                    status,
                    errors,
                }
            }
            400 | 422 => ApiError::Validation {
                operation,
                status,
                errors,
            },
            500..=599 => ApiError::Server {
                operation,
                status,
                errors,
            },
            _ => ApiError::Other {
                operation,
                status,
                errors,
            },
        }
    }

    /// The containers error enum Cloudflare answered with, when it did.
    pub fn error_enum(&self) -> Option<String> {
        match self {
            with_messages!(errors) => errors.error_enum(),
            ApiError::InvalidResponse { .. }
            | ApiError::Transport { .. }
            | ApiError::NotLeader { .. } => None,
        }
    }

    /// HTTP status of the answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::RateLimited { .. } => Some(429),
            ApiError::Transport { .. } | ApiError::NotLeader { .. } => None,
            ApiError::NotFound { status, .. }
            | ApiError::NameTaken { status, .. }
            | ApiError::NamespaceHasApplication { status, .. }
            | ApiError::NotContainerEnabled { status, .. }
            | ApiError::VersionNotVisible { status, .. }
            | ApiError::Unauthorized { status, .. }
            | ApiError::Forbidden { status, .. }
            | ApiError::Validation { status, .. }
            | ApiError::Server { status, .. }
            | ApiError::Other { status, .. }
            | ApiError::InvalidResponse { status, .. } => Some(*status),
        }
    }

    /// Worth trying again later (the same request may succeed).
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Server { .. }
            | ApiError::Transport { .. }
            | ApiError::RateLimited { .. }
            | ApiError::VersionNotVisible { .. } => true,
            ApiError::InvalidResponse { status, .. } => *status >= 500 || *status < 200,
            _ => false,
        }
    }

    /// Will not succeed until a person changes the input or the credentials. An upload
    /// refused only because a binding names a KV namespace, R2 bucket, D1 database,
    /// queue or service that does not exist yet is not: another object of the same
    /// apply (the service's Worker) or a person may create it, and the same upload then
    /// succeeds ([`MISSING_BINDING_TARGET`]).
    pub fn is_terminal(&self) -> bool {
        match self {
            ApiError::Validation { errors, .. } => {
                errors.0.is_empty()
                    || !errors
                        .0
                        .iter()
                        .all(|m| MISSING_BINDING_TARGET.contains(&m.code))
            }
            other => matches!(
                other,
                ApiError::Unauthorized { .. }
                    | ApiError::Forbidden { .. }
                    | ApiError::NotContainerEnabled { .. }
            ),
        }
    }

    /// A short machine-readable reason, for status conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "NotFound",
            ApiError::NameTaken { .. } => "NameTaken",
            ApiError::NamespaceHasApplication { .. } => "NamespaceHasApplication",
            ApiError::NotContainerEnabled { .. } => "NotContainerEnabled",
            ApiError::VersionNotVisible { .. } => "VersionNotVisible",
            ApiError::RateLimited { .. } => "RateLimited",
            ApiError::Unauthorized { .. } => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::Validation { .. } => "ValidationFailed",
            ApiError::Server { .. } => "CloudflareServerError",
            ApiError::Other { .. } => "CloudflareError",
            ApiError::InvalidResponse { .. } => "InvalidResponse",
            ApiError::Transport { .. } => "CloudflareUnreachable",
            ApiError::NotLeader { .. } => "NotLeader",
        }
    }
}

/// Cloudflare's codes for an upload whose binding names something that does not exist:
/// a KV namespace (10042), an R2 bucket (10085), a D1 database (10181), a service
/// binding's script (10143), each seen in Cloudflare's answers (sources in
/// `emulator::storage`'s docs); a queue (10104, the Queues API's `QueueNotFound`; that a
/// Workers upload answers it is UNVERIFIED).
pub const MISSING_BINDING_TARGET: [i64; 5] = [10042, 10085, 10181, 10104, 10143];

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(code: i64, message: &str) -> Message {
        Message {
            code,
            message: message.into(),
            documentation_url: None,
        }
    }

    #[test]
    fn maps_1608_and_parses_the_json_inside_the_message() {
        let m = r#"{"error":"DURABLE_OBJECT_ALREADY_HAS_APPLICATION","details":{"name":"other","id":"app-9"}}"#;
        let e = ApiError::from_failure("create", 400, vec![msg(1608, m)], None);
        match e {
            ApiError::NamespaceHasApplication {
                application_name,
                application_id,
                ..
            } => {
                assert_eq!(application_name, "other");
                assert_eq!(application_id, "app-9");
            }
            other => panic!("wrong variant {other:?}"),
        }
    }

    #[test]
    fn recognises_the_error_enum_whatever_the_code() {
        let m = r#"{"error":"DURABLE_OBJECT_NOT_CONTAINER_ENABLED","details":{}}"#;
        let e = ApiError::from_failure("create", 400, vec![msg(1000, m)], None);
        assert!(matches!(e, ApiError::NotContainerEnabled { .. }));
        assert!(e.is_terminal());
        assert_eq!(e.reason(), "NotContainerEnabled");
        let m =
            r#"{"error":"DURABLE_OBJECT_ALREADY_HAS_APPLICATION","details":{"name":"a","id":"b"}}"#;
        let e = ApiError::from_failure("create", 400, vec![msg(7777, m)], None);
        assert!(
            matches!(e, ApiError::NamespaceHasApplication { ref application_id, .. } if application_id == "b")
        );
        // Code 1608 without the enum still counts (tolerance); the enum name alone in
        // plain text does not.
        let e = ApiError::from_failure("create", 400, vec![msg(1608, "{not json")], None);
        assert!(matches!(e, ApiError::NamespaceHasApplication { .. }));
        let e = ApiError::from_failure(
            "create",
            400,
            vec![msg(1000, "DURABLE_OBJECT_NOT_CONTAINER_ENABLED")],
            None,
        );
        assert!(matches!(e, ApiError::Validation { .. }));
    }

    #[test]
    fn the_enum_and_its_details_are_named_in_the_error() {
        let m = r#"{"error":"VALIDATE_INPUT","details":{"message":"configuration.image: not in this account's registry"}}"#;
        let e = ApiError::from_failure("create application", 400, vec![msg(1000, m)], None);
        assert!(matches!(e, ApiError::Validation { .. }));
        assert_eq!(e.error_enum().as_deref(), Some("VALIDATE_INPUT"));
        let text = e.to_string();
        assert!(
            text.contains(
                "[1000] VALIDATE_INPUT: configuration.image: not in this account's registry"
            ),
            "{text}"
        );
        let m = r#"{"error":"DURABLE_OBJECT_ALREADY_HAS_APPLICATION","details":{"name":"other","id":"app-9"}}"#;
        let e = ApiError::from_failure("create application", 400, vec![msg(1608, m)], None);
        let text = e.to_string();
        assert!(
            text.contains("DURABLE_OBJECT_ALREADY_HAS_APPLICATION") && text.contains("app-9"),
            "{text}"
        );
        // A name already taken, carried as VALIDATE_INPUT.
        let m = r#"{"error":"VALIDATE_INPUT","details":{"message":"An application with the name a already exists"}}"#;
        let e = ApiError::from_failure("create application", 400, vec![msg(1000, m)], None);
        assert!(matches!(e, ApiError::NameTaken { .. }));
        assert!(e.to_string().contains("VALIDATE_INPUT"));
        // Plain text has no enum.
        let e = ApiError::from_failure("x", 400, vec![msg(1001, "bad")], None);
        assert_eq!(e.error_enum(), None);
    }

    #[test]
    fn maps_statuses_and_codes() {
        let e = ApiError::from_failure(
            "x",
            400,
            vec![msg(1000, "An application with the name a already exists")],
            None,
        );
        assert!(matches!(e, ApiError::NameTaken { .. }));
        let e = ApiError::from_failure("x", 400, vec![msg(100146, "not visible")], None);
        assert!(matches!(e, ApiError::VersionNotVisible { .. }) && e.is_retryable());
        let before = jiff::Timestamp::now();
        let e = ApiError::from_failure("x", 429, vec![], Some(Duration::from_secs(7)));
        assert!(
            matches!(e, ApiError::RateLimited { retry_after, answered: true, .. } if retry_after == Duration::from_secs(7))
        );
        let ApiError::RateLimited { retry_at, .. } = &e else {
            unreachable!()
        };
        let ahead = retry_at.duration_since(before).as_secs();
        assert!((6..=8).contains(&ahead), "{ahead}");
        // The message names when it is tried again.
        assert!(e.to_string().contains(&retry_at.to_string()), "{e}");
        assert!(e.to_string().contains("in 7s"), "{e}");
        let e = ApiError::from_failure("x", 401, vec![msg(10000, "Authentication error")], None);
        assert!(e.is_terminal() && matches!(e, ApiError::Unauthorized { .. }));
        let e = ApiError::from_failure("x", 403, vec![], None);
        assert!(e.is_terminal() && matches!(e, ApiError::Forbidden { .. }));
        let e = ApiError::from_failure("x", 404, vec![], None);
        assert!(matches!(e, ApiError::NotFound { .. }));
        let e = ApiError::from_failure("x", 400, vec![msg(1001, "bad")], None);
        assert!(e.is_terminal() && matches!(e, ApiError::Validation { .. }));
        // A binding whose target does not exist yet waits (it may be created).
        let missing = msg(
            10143,
            "Service binding 'AUTH' references Worker 'auth' which was not found.",
        );
        let e = ApiError::from_failure("x", 400, vec![missing.clone()], None);
        assert!(!e.is_terminal() && matches!(e, ApiError::Validation { .. }));
        let e = ApiError::from_failure("x", 400, vec![missing, msg(1001, "bad")], None);
        assert!(e.is_terminal(), "another error with it is still terminal");
        let e = ApiError::from_failure("x", 503, vec![], None);
        assert!(e.is_retryable() && matches!(e, ApiError::Server { .. }));
        assert_eq!(e.status(), Some(503));
    }

    #[test]
    fn excerpt_is_short_and_printable() {
        let body = format!("<html>\n{}</html>", "x".repeat(1000));
        let e = excerpt(body.as_bytes());
        assert!(e.chars().count() <= EXCERPT_CHARS + 1);
        assert!(!e.contains('\n'));
    }
}

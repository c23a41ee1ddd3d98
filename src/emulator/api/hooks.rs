//! Test hooks under `/__emulator`: the request log, seeded scripts, scripted faults
//! and the account state (redacted, [`crate::emulator::redact`]).
//!
//! **Who may use them** ([`hook_access`]). On a loopback listener (`127.0.0.0/8`,
//! `::1`), clients whose peer address — the TCP connection's, never a header — is
//! loopback. On any other listener (`0.0.0.0`, a host address), only requests with
//! `Authorization: Bearer <the emulator's API token>`, loopback clients included (a
//! port-forward or proxy makes remote clients look local). The API token is the one
//! secret the emulator has: whoever holds it can already change the whole account
//! through the API, so a second token would guard nothing more. Others get 403 with
//! a JSON message saying which rule refused them. Hook bodies are bounded by the
//! JSON limit ([`crate::emulator::limits`]).

use std::net::IpAddr;

use axum::extract::ConnectInfo;

use super::*;
use crate::emulator::limits;

/// Whether a request may use the test hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAccess {
    Allowed,
    /// The emulator listens on loopback and the peer is not loopback (or unknown).
    NotLoopback,
    /// The emulator listens beyond loopback and the request has no bearer token.
    TokenRequired,
    /// The bearer token is not the emulator's.
    WrongToken,
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Equal, in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The hooks' access rule: `listen` is the address the emulator was bound to, `peer`
/// the connection's remote address (`None`: unknown, refused unless a token is
/// given), `bearer` the request's bearer token.
pub fn hook_access(
    listen: IpAddr,
    peer: Option<IpAddr>,
    bearer: Option<&str>,
    token: &str,
) -> HookAccess {
    match bearer {
        Some(b) if same_secret(b, token) => HookAccess::Allowed,
        Some(_) => HookAccess::WrongToken,
        None if !is_loopback(listen) => HookAccess::TokenRequired,
        None if peer.is_some_and(is_loopback) => HookAccess::Allowed,
        None => HookAccess::NotLoopback,
    }
}

/// The gate of every hook: the access rule, then the body read within the JSON limit.
pub(super) async fn hook_gate(State(shared): Shr, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let listen = shared.config.listen;
    let refusal = match hook_access(listen.ip(), peer, bearer, &shared.config.api_token) {
        HookAccess::Allowed => None,
        HookAccess::NotLoopback => Some(format!(
            "the test hooks answer only to loopback clients on this emulator (listening on {listen}), or with Authorization: Bearer <the emulator's API token>"
        )),
        HookAccess::TokenRequired => Some(format!(
            "this emulator listens on {listen}, beyond loopback: the test hooks need Authorization: Bearer <the emulator's API token>"
        )),
        HookAccess::WrongToken => {
            Some("the bearer token is not the emulator's API token".to_string())
        }
    };
    if let Some(message) = refusal {
        return (StatusCode::FORBIDDEN, axum::Json(json!({"error": message}))).into_response();
    }
    let limit = shared.config.limits.json;
    let (parts, body) = req.into_parts();
    let read = match limits::check_declared(&parts.headers, limit) {
        Ok(()) => limits::read_bounded(body, limit).await,
        Err(e) => Err(e),
    };
    match read {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(limits::ReadError::TooLarge { limit }) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(json!({"error": format!(
                "the body is larger than {}, the limit of a test hook's body",
                limits::human(limit)
            )})),
        )
            .into_response(),
        Err(limits::ReadError::Broken(e)) => {
            (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e}))).into_response()
        }
    }
}

pub(super) async fn hook_requests(State(shared): Shr) -> Response {
    axum::Json(shared.requests()).into_response()
}

pub(super) async fn hook_clear_requests(State(shared): Shr) -> Response {
    shared.clear_requests();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(serde::Deserialize)]
pub(super) struct SeedScript {
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

pub(super) fn yes() -> bool {
    true
}

pub(super) async fn hook_put_script(
    State(shared): Shr,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
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
pub(super) struct FaultScript {
    /// Faults for the next requests, in order: `500`, `drop`, `drop_after`, `429:SECONDS`;
    /// `revert` makes the next rollout end reverted.
    next: Vec<String>,
    /// Only requests of this method take them (any when unset).
    #[serde(default)]
    method: Option<String>,
    /// Only requests bearing this API token take them (any when unset).
    #[serde(default)]
    token: Option<String>,
}

pub(super) async fn hook_faults(State(shared): Shr, body: Bytes) -> Response {
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
        match crate::emulator::ScriptedFault::parse(f) {
            Ok(f) => {
                shared.push_fault_for_token(script.method.as_deref(), script.token.as_deref(), f)
            }
            Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The account with every secret and environment value redacted.
pub(super) async fn hook_state(State(shared): Shr) -> Response {
    axum::Json(shared.state_dump()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_listener_admits_loopback_peers_only() {
        let t = "tok";
        let l = ip("127.0.0.1");
        assert_eq!(
            hook_access(l, Some(ip("127.0.0.1")), None, t),
            HookAccess::Allowed
        );
        assert_eq!(
            hook_access(l, Some(ip("127.0.0.2")), None, t),
            HookAccess::Allowed
        );
        assert_eq!(
            hook_access(ip("::1"), Some(ip("::ffff:127.0.0.1")), None, t),
            HookAccess::Allowed
        );
        assert_eq!(
            hook_access(l, Some(ip("192.0.2.7")), None, t),
            HookAccess::NotLoopback
        );
        assert_eq!(hook_access(l, None, None, t), HookAccess::NotLoopback);
        assert_eq!(
            hook_access(l, Some(ip("192.0.2.7")), Some("tok"), t),
            HookAccess::Allowed
        );
    }

    #[test]
    fn other_listeners_need_the_token_even_from_loopback() {
        let t = "tok";
        for listen in ["0.0.0.0", "192.0.2.2", "::"] {
            let l = ip(listen);
            assert_eq!(
                hook_access(l, Some(ip("127.0.0.1")), None, t),
                HookAccess::TokenRequired
            );
            assert_eq!(
                hook_access(l, Some(ip("192.0.2.9")), None, t),
                HookAccess::TokenRequired
            );
            assert_eq!(
                hook_access(l, Some(ip("192.0.2.9")), Some("tok"), t),
                HookAccess::Allowed
            );
            assert_eq!(
                hook_access(l, Some(ip("192.0.2.9")), Some("tok2"), t),
                HookAccess::WrongToken
            );
            assert_eq!(
                hook_access(l, Some(ip("192.0.2.9")), Some("to"), t),
                HookAccess::WrongToken
            );
        }
    }
}

//! Test hooks under `/__emulator`: the request log, seeded scripts, scripted faults
//! and the account state.

use super::*;

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

pub(super) async fn hook_state(State(shared): Shr) -> Response {
    let mut account = shared.account();
    account.advance_rollouts();
    axum::Json(&*account).into_response()
}

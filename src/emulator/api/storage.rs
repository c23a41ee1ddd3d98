//! Storage resources (`GET`/`POST` of `/storage/kv/namespaces`, `/r2/buckets`,
//! `/d1/database`, `/queues`), each request body checked against the official
//! `workers-routing-storage-openapi-subset.json`; and `GET /workers/scripts/{name}`
//! (`worker-script-download-worker`): the modules as a multipart form, no metadata
//! part, as the official description says.
//!
//! The official `d1-list-databases` answer asks for a `result` that is both an object
//! (`d1_api-response-common`) and an array: no body passes it. Cloudflare answers an
//! array, and so does the emulator.

use super::*;
use crate::emulator::storage::Storage;

fn routing_spec() -> &'static crate::emulator::schema::Spec {
    crate::emulator::schema::Spec::routing()
}

/// The JSON body of a create, checked against its official schema.
fn checked_body(path: &str, body: &Bytes) -> Outcome<Value> {
    let value: Value = parse_json(body)?;
    let violations = routing_spec().request_violations("POST", path, &value);
    match violations.first() {
        Some(first) => Err(Failure::invalid(first.clone())),
        None => Ok(value),
    }
}

fn list(shared: &Shared, account: &str, items: impl Fn(&Storage) -> Value) -> Response {
    match check_account(shared, account) {
        Err(f) => fail(f),
        Ok(()) => {
            let result = items(&shared.account().storage);
            // R2 answers `{buckets: […]}` with a cursor `result_info`; the others a
            // page-number one.
            let info = match result.as_array() {
                Some(items) => {
                    let count = items.len();
                    json!({"page": 1, "per_page": count.max(20), "count": count, "total_count": count, "total_pages": 1})
                }
                None => json!({"per_page": 20}),
            };
            let body = json!({"success": true, "errors": [], "messages": [], "result": result,
                "result_info": info});
            (StatusCode::OK, axum::Json(body)).into_response()
        }
    }
}

fn create(
    shared: &Shared,
    account: &str,
    path: &str,
    body: &Bytes,
    make: impl FnOnce(&mut Storage, &Value) -> Outcome<Value>,
) -> Response {
    let outcome = check_account(shared, account)
        .and_then(|_| checked_body(&format!("/accounts/{account}{path}"), body))
        .and_then(|v| make(&mut shared.account().storage, &v));
    if outcome.is_ok() {
        shared.persist();
    }
    respond(StatusCode::OK, outcome)
}

fn name_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

pub(super) async fn list_kv(State(shared): Shr, Path(account): Path<String>) -> Response {
    list(&shared, &account, |s| {
        json!(s.kv.values().collect::<Vec<_>>())
    })
}

pub(super) async fn create_kv(
    State(shared): Shr,
    Path(account): Path<String>,
    body: Bytes,
) -> Response {
    create(
        &shared,
        &account,
        "/storage/kv/namespaces",
        &body,
        |s, v| s.create_kv(name_of(v, "title")),
    )
}

pub(super) async fn list_r2(State(shared): Shr, Path(account): Path<String>) -> Response {
    list(
        &shared,
        &account,
        |s| json!({"buckets": s.r2.values().collect::<Vec<_>>()}),
    )
}

pub(super) async fn create_r2(
    State(shared): Shr,
    Path(account): Path<String>,
    body: Bytes,
) -> Response {
    create(&shared, &account, "/r2/buckets", &body, |s, v| {
        s.create_r2(name_of(v, "name"))
    })
}

pub(super) async fn list_d1(State(shared): Shr, Path(account): Path<String>) -> Response {
    list(&shared, &account, |s| {
        json!(
            s.d1.values()
                .map(|d| json!({"uuid": d["uuid"], "name": d["name"], "created_at": d["created_at"], "version": d["version"]}))
                .collect::<Vec<_>>()
        )
    })
}

pub(super) async fn create_d1(
    State(shared): Shr,
    Path(account): Path<String>,
    body: Bytes,
) -> Response {
    create(&shared, &account, "/d1/database", &body, |s, v| {
        s.create_d1(name_of(v, "name"))
    })
}

pub(super) async fn list_queues(State(shared): Shr, Path(account): Path<String>) -> Response {
    list(&shared, &account, |s| {
        json!(s.queues.values().collect::<Vec<_>>())
    })
}

pub(super) async fn create_queue(
    State(shared): Shr,
    Path(account): Path<String>,
    body: Bytes,
) -> Response {
    create(&shared, &account, "/queues", &body, |s, v| {
        s.create_queue(name_of(v, "queue_name"))
    })
}

/// `GET /workers/scripts/{name}`: the modules, one part each (named by module).
pub(super) async fn download_script(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
) -> Response {
    if let Err(f) = check_account(&shared, &account) {
        return fail(f);
    }
    let modules = match shared.account().scripts.get(&script) {
        Some(s) => s.modules.clone(),
        None => {
            return fail(Failure::new(
                404,
                codes::SCRIPT_NOT_FOUND,
                format!("This Worker does not exist on your account: {script}"),
            ));
        }
    };
    let boundary = "flaredock-emulator-download";
    let mut body = Vec::new();
    for (name, m) in &modules {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: {}\r\n\r\n",
                m.content_type
            )
            .as_bytes(),
        );
        body.extend_from_slice(m.content.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )],
        body,
    )
        .into_response()
}

//! A fake Kubernetes API server for the fast unit-level controller tests: kube's client
//! over a tower-test mock service that answers like the API server would where it is
//! simple (objects by path, lists of a collection, status and finalizer patches, JSON
//! patches with `test` operations, `resourceVersion` bumped on every write,
//! `metadata.generation` moved by a spec change, a DELETE of an object with finalizers
//! setting `deletionTimestamp`, the object going once its last finalizer is removed).
//! It refuses what it cannot do honestly: `watch=true` is answered 400 (no watch here).
//! Watches, server-side apply, RBAC and leadership are proven on the real API server
//! (tests/apiserver.rs), never here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

#[derive(Default)]
pub struct FakeState {
    pub objects: Mutex<HashMap<String, Value>>,
    pub requests: Mutex<Vec<Recorded>>,
    /// RBAC, quotas, admission: path prefixes (or `METHOD prefix`) the service account
    /// may not touch (answered 403).
    pub forbidden: Mutex<Vec<String>>,
    /// The API server failing (an etcd timeout, an overloaded apiserver): path
    /// prefixes (or `METHOD prefix`) answered 500.
    pub failing: Mutex<Vec<String>>,
}

impl FakeState {
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
    pub fn writes(&self, fragment: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET" && r.path.contains(fragment))
            .collect()
    }
    /// The reasons of the Events written, in order.
    pub fn event_reasons(&self) -> Vec<String> {
        self.writes("/events")
            .iter()
            .map(|r| r.body["reason"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

/// Whether `path` names a collection (`/api/v1/namespaces/NS/secrets`,
/// `/apis/GROUP/VERSION/RESOURCE`…) rather than one object, by its shape.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.first() {
        Some(&"api") => &segments[segments.len().min(2)..],
        Some(&"apis") => &segments[segments.len().min(3)..],
        _ => return false,
    };
    matches!(rest, [_] | ["namespaces", _, _])
}

fn not_found() -> (u16, Value) {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

fn status_failure(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": message}),
    )
}

/// Applies a JSON patch (test / add / remove / replace on finalizers), all or nothing:
/// a failed `test` rejects the whole patch, as the API server does (422).
fn json_patch(target: &mut Value, ops: &Value) -> Result<(), (u16, Value)> {
    let mut patched = target.clone();
    for op in ops.as_array().into_iter().flatten() {
        let path = op["path"].as_str().unwrap_or("");
        let pointer = path.trim_end_matches("/-");
        match op["op"].as_str() {
            Some("test") => {
                let found = patched.pointer(path).cloned().unwrap_or(Value::Null);
                if found != op["value"] {
                    return Err(status_failure(
                        422,
                        "Invalid",
                        &format!("test of {path} failed"),
                    ));
                }
            }
            Some("add") if path.ends_with("/-") => {
                let Some(list) = patched.pointer_mut(pointer).and_then(Value::as_array_mut) else {
                    return Err(status_failure(
                        422,
                        "Invalid",
                        &format!("{pointer} is not a list"),
                    ));
                };
                list.push(op["value"].clone());
            }
            Some("add") | Some("replace") if path == "/metadata/finalizers" => {
                patched["metadata"]["finalizers"] = op["value"].clone()
            }
            Some("remove") => {
                let (parent, index) = path.rsplit_once('/').unwrap();
                let index: usize = index.parse().unwrap();
                let Some(list) = patched.pointer_mut(parent).and_then(Value::as_array_mut) else {
                    return Err(status_failure(
                        422,
                        "Invalid",
                        &format!("{parent} is not a list"),
                    ));
                };
                if index >= list.len() {
                    return Err(status_failure(
                        422,
                        "Invalid",
                        &format!("{path} does not exist"),
                    ));
                }
                list.remove(index);
            }
            other => panic!("the fake API does not know JSON patch op {other:?} at {path}"),
        }
    }
    *target = patched;
    Ok(())
}

fn has_finalizers(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

/// The next `resourceVersion` of an object.
fn bump(obj: &mut Value) {
    let rv: u64 = obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    obj["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
}

/// Whether an object's labels satisfy a `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`,
/// `!k`, comma-separated: all must hold), as the API server reads it.
pub fn selects(selector: &str, obj: &Value) -> bool {
    let labels = &obj["metadata"]["labels"];
    selector
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .all(|req| {
            if let Some((k, v)) = req.split_once("!=") {
                labels[k.trim()].as_str() != Some(v.trim())
            } else if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
                labels[k.trim()].as_str() == Some(v.trim())
            } else if let Some(k) = req.strip_prefix('!') {
                labels.get(k.trim()).is_none()
            } else {
                labels.get(req).is_some()
            }
        })
}

fn respond_to(
    state: &FakeState,
    method: &str,
    path: &str,
    query: &str,
    body: &Value,
) -> (u16, Value) {
    let selector: String = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "labelSelector")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    // An entry is a path prefix, or `METHOD prefix` for that method only.
    let matches = |rules: &Mutex<Vec<String>>| {
        rules
            .lock()
            .unwrap()
            .iter()
            .any(|rule| match rule.split_once(' ') {
                Some((m, prefix)) => m == method && path.starts_with(prefix),
                None => path.starts_with(rule.as_str()),
            })
    };
    if matches(&state.failing) {
        return status_failure(
            500,
            "InternalError",
            &format!("{method} {path}: etcdserver: request timed out"),
        );
    }
    let forbidden = matches(&state.forbidden);
    if forbidden {
        return status_failure(
            403,
            "Forbidden",
            &format!("{method} {path} is forbidden: the service account may not do that"),
        );
    }
    let watch = url::form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    if watch {
        return status_failure(
            400,
            "BadRequest",
            "the fake API server serves no watch; watches are tested on the real API server (tests/apiserver.rs)",
        );
    }
    let mut objects = state.objects.lock().unwrap();
    let key = path.trim_end_matches("/status").to_string();
    match method {
        "GET" if !objects.contains_key(&key) => {
            // A collection: the objects one segment below it.
            let prefix = format!("{path}/");
            let items: Vec<Value> = objects
                .iter()
                .filter(|(k, _)| {
                    k.strip_prefix(&prefix)
                        .is_some_and(|rest| !rest.contains('/'))
                })
                .filter(|(_, v)| selects(&selector, v))
                .map(|(_, v)| v.clone())
                .collect();
            if !is_collection(path) {
                return not_found();
            }
            (
                200,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        "GET" => (200, objects[&key].clone()),
        "POST" if path.contains("/events") => (201, body.clone()),
        "POST" => {
            let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
            let at = format!("{path}/{name}");
            if objects.contains_key(&at) {
                return status_failure(409, "AlreadyExists", "exists");
            }
            let mut created = body.clone();
            if created.get("spec").is_some() {
                created["metadata"]["generation"] = json!(1);
            }
            bump(&mut created);
            objects.insert(at, created.clone());
            (201, created)
        }
        // With finalizers an object is only marked for deletion; it goes when the last
        // one is removed (below).
        "DELETE" => match objects.get_mut(&key) {
            Some(obj) if has_finalizers(obj) => {
                if obj["metadata"]["deletionTimestamp"].is_null() {
                    obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                    bump(obj);
                }
                (200, obj.clone())
            }
            Some(_) => {
                objects.remove(&key);
                (
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
                )
            }
            None => not_found(),
        },
        "PATCH" => {
            let Some(obj) = objects.get_mut(&key) else {
                return not_found();
            };
            // A merge patch naming a resourceVersion must match it (optimistic locking).
            if let Some(rv) = body
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                && obj["metadata"]["resourceVersion"].as_str() != Some(rv)
            {
                return status_failure(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            let spec_before = obj.get("spec").cloned();
            if path.ends_with("/status") {
                obj["status"] = body["status"].clone();
            } else if body.is_array() {
                if let Err(e) = json_patch(obj, body) {
                    return e;
                }
            } else if let Some(f) = body.pointer("/metadata/finalizers") {
                obj["metadata"]["finalizers"] = f.clone();
            }
            if obj.get("spec").cloned() != spec_before {
                let generation = obj["metadata"]["generation"].as_i64().unwrap_or(0);
                obj["metadata"]["generation"] = json!(generation + 1);
            }
            bump(obj);
            let answer = obj.clone();
            if !obj["metadata"]["deletionTimestamp"].is_null() && !has_finalizers(obj) {
                objects.remove(&key);
            }
            (200, answer)
        }
        _ => not_found(),
    }
}

pub fn fake_kube() -> (kube::Client, Arc<FakeState>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state = Arc::new(FakeState::default());
    let fake = state.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let query = request.uri().query().unwrap_or("").to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes)
                .or_else(|_| serde_yaml_ng::from_slice(&bytes))
                .unwrap_or(Value::Null);
            fake.requests.lock().unwrap().push(Recorded {
                method: method.clone(),
                path: path.clone(),
                query,
                body: body.clone(),
            });
            let query = fake
                .requests
                .lock()
                .unwrap()
                .last()
                .map(|r| r.query.clone())
                .unwrap_or_default();
            let (status, answer) = respond_to(&fake, &method, &path, &query, &body);
            // Logs are plain text.
            let bytes = match (&answer, path.ends_with("/log")) {
                (Value::String(text), true) => text.clone().into_bytes(),
                _ => serde_json::to_vec(&answer).unwrap(),
            };
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(bytes))
                .unwrap();
            send.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), state)
}

//! The contract check of one API exchange: flaredock's request against the official
//! schema of its operation, and the emulator's answer against the status and schema
//! that operation declares. The emulator runs it on every exchange when
//! `check_contract` is on (the test suite always; `FLAREDOCK_CONTRACT_LOG=FILE` turns
//! it on in every emulator of a process tree and appends each problem to FILE, which
//! `scripts/test.sh` requires to stay empty).
//!
//! Requests of other clients (tests that send broken bodies on purpose, wrangler) are
//! checked by the emulator itself (a 400); only flaredock's own are held to the
//! contract here, recognised by their `User-Agent`.

use serde_json::{Value, json};

use super::Exchange;
use super::schema::{Spec, multipart_metadata_violations};

/// Fields of the emulator's answers that Cloudflare's answers carry and wrangler reads,
/// but the extract does not list: `(operation id, JSON pointer)`, left out of the
/// check. `deployment_id` of an upload is the version it made (wrangler 4.86 reads it
/// as the version id, `parseNonHyphenedUuid(result.deployment_id)`).
pub const WRANGLER_READ: &[(&str, &str)] = &[(
    "worker-script-upload-worker-module",
    "/result/deployment_id",
)];

/// Operations whose declared 4XX is `allOf` their success answer and the common
/// failure envelope (`success` both `true` and `false`, `result` both a version and
/// `null`), which no answer can meet: their failures are checked against the common
/// failure envelope alone. The version upload's 4XX is `anyOf` that impossible `allOf`
/// and the exports-reconciliation envelope (code 100402 only, which the emulator never
/// answers), so it is one of them.
pub const UNSATISFIABLE_FAILURE: &[&str] = &[
    "worker-versions-get-version-detail",
    "worker-versions-upload-version",
];

/// The environment variable naming the file that collects contract problems.
pub const LOG_ENV: &str = "FLAREDOCK_CONTRACT_LOG";

/// The operation id of an exchange (when the extract describes it) and every way it
/// breaks the contract.
pub fn check(x: &Exchange) -> (Option<String>, Vec<String>) {
    let Some(path) = x.path.strip_prefix("/client/v4") else {
        return (None, vec![]);
    };
    if super::api::not_in_extract(&x.method, path) {
        return (None, vec![]);
    }
    let (spec, is_containers) = Spec::for_request(&x.method, path);
    let Some((template, op)) = spec.operation(&x.method, path) else {
        if let Some(result) = super::api::wrangler_only_result(&x.method, path) {
            return (None, wrangler_only_problems(spec, &result, x));
        }
        if x.status == 404 {
            return (None, vec![]);
        }
        return (
            None,
            vec![format!(
                "{} {path}: no such operation in the official extract",
                x.method
            )],
        );
    };
    let op_id = op["operationId"].as_str().unwrap_or("?").to_string();
    let what = format!("{op_id} ({} {template})", x.method);
    let mut problems = Vec::new();
    if x.user_agent.starts_with("flaredock/") && x.status != 0 {
        problems.extend(request_problems(spec, op, x, &what));
    }
    problems.extend(response_problems(spec, is_containers, op, x, &what, &op_id));
    (Some(op_id), problems)
}

fn request_problems(spec: &Spec, op: &Value, x: &Exchange, what: &str) -> Vec<String> {
    // A request body may be a `$ref` to `components.requestBodies` (both uploads).
    let body = match op.pointer("/requestBody/$ref").and_then(Value::as_str) {
        Some(target) => target.strip_prefix('#').and_then(|p| spec.at(p)),
        None => op.get("requestBody"),
    };
    let Some(content) = body.and_then(|b| b.get("content")) else {
        return vec![];
    };
    if let Some(schema) = content.pointer("/application~1json/schema") {
        return match serde_json::from_slice::<Value>(&x.request_body) {
            Ok(body) => spec.request_body_violations(schema, &body, &format!("{what} request")),
            Err(e) => vec![format!("{what} request is not JSON: {e}")],
        };
    }
    if content.pointer("/multipart~1form-data").is_some() {
        return match multipart_json(&x.request_content_type, &x.request_body, "metadata") {
            Ok(metadata) => {
                multipart_metadata_violations(op["operationId"].as_str().unwrap_or(""), &metadata)
                    .into_iter()
                    .map(|p| format!("{what} request: {p}"))
                    .collect()
            }
            Err(e) => vec![format!("{what} request: {e}")],
        };
    }
    vec![]
}

fn response_problems(
    spec: &Spec,
    is_containers: bool,
    op: &Value,
    x: &Exchange,
    what: &str,
    op_id: &str,
) -> Vec<String> {
    let responses = &op["responses"];
    let status = x.status.to_string();
    let class = format!("{}XX", status.get(..1).unwrap_or("?"));
    // A 429 comes from the API-wide rate limit, not from the operation: the common
    // failure envelope, whatever the operation's own 4XX says (some declare a 4XX
    // with `success: true`).
    let declared = responses
        .get(&status)
        .or_else(|| responses.get(&class))
        .or_else(|| responses.get("default"))
        .filter(|_| x.status != 429)
        .filter(|_| !(x.status >= 400 && UNSATISFIABLE_FAILURE.contains(&op_id)));
    let schema = match declared.and_then(|r| r.pointer("/content/application~1json/schema")) {
        Some(s) => s.clone(),
        // Not declared for this operation (e.g. 429): the common failure envelope.
        None if x.status >= 400 && is_containers => {
            json!({"$ref": "#/components/schemas/cc_V4BaseErrorResponse"})
        }
        None if x.status >= 400 => {
            json!({"$ref": "#/components/schemas/workers_api-response-common-failure"})
        }
        // A declared answer that is not JSON (a script download): not checked here.
        None if declared.is_some_and(|r| r.get("content").is_some()) => return vec![],
        None => return vec![format!("{what}: status {status} is not declared")],
    };
    match serde_json::from_slice::<Value>(&x.response_body) {
        Ok(mut body) => {
            for (_, pointer) in WRANGLER_READ.iter().filter(|(o, _)| *o == op_id) {
                if let Some((parent, field)) = pointer.rsplit_once('/')
                    && let Some(Value::Object(o)) = body.pointer_mut(parent)
                {
                    o.remove(field);
                }
            }
            spec.response_violations(&schema, &body, &format!("{what} response {status}"))
        }
        Err(e) => vec![format!("{what}: response is not JSON: {e}")],
    }
}

/// An answer of a wrangler-only endpoint: the envelope, and its `result` against
/// wrangler's own definition.
fn wrangler_only_problems(spec: &Spec, result: &Value, x: &Exchange) -> Vec<String> {
    let what = format!("wrangler-only {} {}", x.method, x.path);
    let body: Value = match serde_json::from_slice(&x.response_body) {
        Ok(v) => v,
        Err(e) => return vec![format!("{what}: response is not JSON: {e}")],
    };
    if x.status >= 400 {
        let envelope = json!({"$ref": "#/components/schemas/cc_V4BaseErrorResponse"});
        return spec.violations(&envelope, &body, &format!("{what} {}", x.status));
    }
    spec.violations(result, &body["result"], &format!("{what} result"))
}

/// The named part of a multipart body, as JSON.
pub fn multipart_json(content_type: &str, body: &[u8], name: &str) -> Result<Value, String> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .ok_or("no multipart boundary")?
        .trim_matches('"');
    let text = String::from_utf8_lossy(body);
    for part in text.split(&format!("--{boundary}")) {
        if !part.contains(&format!("name=\"{name}\"")) {
            continue;
        }
        let (headers, content) = part
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("the {name} part has no body"))?;
        if !headers.to_lowercase().contains("application/json") {
            return Err(format!("the {name} part must be application/json"));
        }
        return serde_json::from_str(content.trim_end_matches("\r\n"))
            .map_err(|e| format!("the {name} part is not JSON: {e}"));
    }
    Err(format!("no {name} part in the multipart body"))
}

/// Appends problems to the file named by `FLAREDOCK_CONTRACT_LOG`, when set.
pub fn log(problems: &[String]) {
    use std::io::Write;
    let Some(path) = std::env::var_os(LOG_ENV) else {
        return;
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| problems.iter().try_for_each(|p| writeln!(f, "{p}")));
    if let Err(e) = written {
        tracing::warn!(error = %e, "emulator: could not append to {LOG_ENV}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(
        method: &str,
        path: &str,
        request: Value,
        status: u16,
        response: Value,
    ) -> Exchange {
        Exchange {
            method: method.into(),
            path: format!("/client/v4/accounts/a{path}"),
            request_content_type: "application/json".into(),
            user_agent: "flaredock/0".into(),
            request_body: request.to_string().into(),
            status,
            response_body: response.to_string().into(),
        }
    }

    #[test]
    fn a_version_detail_is_checked_against_the_official_operation() {
        let path = "/workers/scripts/shop/versions/11111111-2222-4333-8444-555555555555";
        let version = json!({"id": "11111111-2222-4333-8444-555555555555", "number": 2,
            "metadata": {"source": "api", "created_on": "2026-01-01T00:00:00Z"},
            "resources": {"bindings": [{"type": "plain_text", "name": "A", "text": "b"}],
                "script": {"etag": "e", "handlers": ["fetch"],
                    "named_handlers": [{"name": "Shop", "handlers": ["class"]}]},
                "script_runtime": {"compatibility_date": "2026-04-01", "compatibility_flags": []}}});
        let ok = json!({"success": true, "errors": [], "messages": [], "result": version});
        let (op, problems) = check(&exchange("GET", path, Value::Null, 200, ok));
        assert_eq!(op.as_deref(), Some("worker-versions-get-version-detail"));
        assert!(problems.is_empty(), "{problems:?}");
        let mut bad = version.clone();
        bad["resources"]["script_runtime"]["usage_model"] = json!("free");
        bad["metadata"]["source"] = json!("emulator");
        let answer = json!({"success": true, "errors": [], "messages": [], "result": bad});
        let (_, problems) = check(&exchange("GET", path, Value::Null, 200, answer));
        assert!(
            problems.iter().any(|p| p.contains("usage_model")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("source")),
            "{problems:?}"
        );
        // Not found: the common failure envelope (the declared 4XX cannot be met).
        let missing = json!({"success": false, "errors": [{"code": 10007, "message": "not found"}],
            "messages": [], "result": null});
        let (_, problems) = check(&exchange("GET", path, Value::Null, 404, missing));
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn worker_deployments_are_checked_against_the_official_operations() {
        let v = "11111111-2222-4333-8444-555555555555";
        let deployment = json!({"id": v, "source": "api", "strategy": "percentage",
            "created_on": "2026-01-01T00:00:00Z",
            "versions": [{"version_id": v, "percentage": 100.0}]});
        let ok = json!({"success": true, "errors": [], "messages": [], "result": deployment});
        let body =
            json!({"strategy": "percentage", "versions": [{"version_id": v, "percentage": 100}]});
        let (op, problems) = check(&exchange(
            "POST",
            "/workers/scripts/shop/deployments",
            body,
            200,
            ok,
        ));
        assert_eq!(op.as_deref(), Some("worker-deployments-create-deployment"));
        assert!(problems.is_empty(), "{problems:?}");
        // A split below the minimum, and an answer without `created_on`.
        let body =
            json!({"strategy": "percentage", "versions": [{"version_id": v, "percentage": 0}]});
        let mut broken = deployment.clone();
        broken.as_object_mut().unwrap().remove("created_on");
        let answer = json!({"success": true, "errors": [], "messages": [], "result": broken});
        let (_, problems) = check(&exchange(
            "POST",
            "/workers/scripts/shop/deployments",
            body,
            200,
            answer,
        ));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("request") && p.contains("percentage")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("response") && p.contains("created_on")),
            "{problems:?}"
        );
        let list = json!({"success": true, "errors": [], "messages": [], "result": {"deployments": [deployment]}});
        let (op, problems) = check(&exchange(
            "GET",
            "/workers/scripts/shop/deployments",
            Value::Null,
            200,
            list,
        ));
        assert_eq!(op.as_deref(), Some("worker-deployments-list-deployments"));
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn unknown_fields_undeclared_statuses_and_invented_fields_are_problems() {
        let ok = json!({"success": true, "errors": [], "messages": [], "result": {"id": "x"}});
        let body = json!({"max_instances": 2});
        let (op, problems) = check(&exchange(
            "PATCH",
            "/containers/applications/x",
            body,
            200,
            ok.clone(),
        ));
        assert_eq!(op.as_deref(), Some("modifyApplication"));
        assert!(
            problems.iter().all(|p| !p.contains("request")),
            "{problems:?}"
        );
        let typo = json!({"max_instance": 2});
        let (_, problems) = check(&exchange(
            "PATCH",
            "/containers/applications/x",
            typo,
            200,
            ok,
        ));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("request") && p.contains("max_instance")),
            "{problems:?}"
        );
        let invented =
            json!({"success": true, "errors": [], "messages": [], "result": [], "extra_field": 1});
        let (_, problems) = check(&exchange(
            "GET",
            "/containers/applications",
            Value::Null,
            200,
            invented,
        ));
        assert!(
            problems.iter().any(|p| p.contains("extra_field")),
            "{problems:?}"
        );
        let (_, problems) = check(&exchange(
            "GET",
            "/containers/applications",
            Value::Null,
            204,
            Value::Null,
        ));
        assert!(
            problems.iter().any(|p| p.contains("204 is not declared")),
            "{problems:?}"
        );
        let (_, problems) = check(&exchange(
            "GET",
            "/containers/nowhere",
            Value::Null,
            200,
            Value::Null,
        ));
        assert!(
            problems.iter().any(|p| p.contains("no such operation")),
            "{problems:?}"
        );
    }
}

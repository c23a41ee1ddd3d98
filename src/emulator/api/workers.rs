//! Workers operations: Durable Object namespaces, script uploads, the script list,
//! deletes and settings.

use super::*;

pub(super) async fn list_namespaces(
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
pub(super) async fn multipart_parts(
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

pub(super) async fn list_scripts(State(shared): Shr, Path(account): Path<String>) -> Response {
    let outcome = check_account(&shared, &account).map(|_| shared.account().list_scripts());
    respond(StatusCode::OK, outcome)
}

pub(super) async fn upload_script(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let op = "worker-script-upload-worker-module";
    let outcome = upload(&shared, &account, &script, &headers, req, op).await;
    respond(StatusCode::OK, outcome)
}

/// `POST /workers/scripts/{name}/versions` (`worker-versions-upload-version`, vendored;
/// wrangler's re-deploy of a Worker without containers): the same upload, its metadata
/// checked against the official version upload schema
/// ([`crate::emulator::schema::version_metadata_violations`]), answered as the version
/// it made. The emulator keeps one version, so the upload takes effect at once (the
/// deployment wrangler then makes of it at 100 % changes nothing).
pub(super) async fn upload_version(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let outcome = async {
        let op = crate::emulator::schema::VERSION_UPLOAD;
        let uploaded = upload(&shared, &account, &script, &headers, req, op).await?;
        let mut version = super::routing::version_json(&shared.account(), &script)?;
        if let Some(ms) = uploaded.get("startup_time_ms") {
            version["startup_time_ms"] = ms.clone();
        }
        Ok(version)
    }
    .await;
    respond(StatusCode::OK, outcome)
}

/// A module upload (`PUT /workers/scripts/{name}` or the version upload, named by its
/// `operation` id: its metadata is checked against that operation's schema).
async fn upload(
    shared: &Arc<Shared>,
    account: &str,
    script: &str,
    headers: &HeaderMap,
    req: Request,
    operation: &str,
) -> Outcome<Value> {
    let (account, script) = (account.to_string(), script.to_string());
    async {
        check_account(shared, &account)?;
        let parts = multipart_parts(headers, req, "a metadata part and module parts").await?;
        let mut metadata: Option<Value> = None;
        let mut modules = Vec::new();
        for (name, file_name, content_type, bytes) in parts {
            if name == "metadata" {
                metadata = Some(parse_json::<Value>(&bytes)?);
            } else {
                modules.push((file_name.unwrap_or(name), content_type, bytes.to_vec()));
            }
        }
        let mut metadata =
            metadata.ok_or_else(|| Failure::invalid("the upload has no metadata part"))?;
        // A field the official schema marks renamed is taken under its new name.
        crate::emulator::schema::rename_binding_fields(&mut metadata);
        // Cloudflare's Worker size: the modules after compression (`limits`).
        let limit = shared.config.limits.worker_compressed;
        let compressed = crate::emulator::limits::compressed_size(
            modules.iter().map(|(_, _, bytes)| bytes.as_slice()),
        );
        if compressed > limit {
            return Err(Failure::new(
                413,
                codes::SCRIPT_TOO_LARGE,
                format!(
                    "Your Worker exceeded the size limit of {} ({compressed} bytes after compression)",
                    crate::emulator::limits::human(limit)
                ),
            ));
        }
        let violations =
            crate::emulator::schema::multipart_metadata_violations(operation, &metadata);
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
        // A binding to storage or a service that does not exist: refused before loading.
        shared.account().check_binding_targets(&script, &metadata)?;
        let (main, modules) = crate::emulator::scripts::decode_modules(&metadata, modules)?;
        let loading = std::time::Instant::now();
        let exports = match shared.runtime() {
            Some(runtime) => {
                let spec = crate::emulator::workerd::WorkerSpec {
                    main: main.clone(),
                    modules: modules.clone(),
                    compatibility_date: metadata
                        .get("compatibility_date")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    compatibility_flags: metadata
                        .get("compatibility_flags")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
                        .unwrap_or_default(),
                    bindings: metadata
                        .get("bindings")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    ..Default::default()
                };
                match runtime.probe(&spec).await {
                    Ok(exports) => exports,
                    Err(e) => {
                        // The runtime's message may quote a binding: never a secret's value.
                        let secrets = crate::emulator::redact::secret_values(&metadata);
                        let message = crate::emulator::redact::scrub(&e.to_string(), &secrets);
                        return Err(match e {
                            crate::emulator::workerd::LoadError::Refused(_) => Failure::new(
                                400,
                                crate::emulator::scripts::SCRIPT_VALIDATION,
                                format!("Uncaught error while loading the Worker: {message}"),
                            ),
                            crate::emulator::workerd::LoadError::Runtime(_) => {
                                Failure::new(500, codes::INTERNAL, message)
                            }
                        });
                    }
                }
            }
            None => {
                let source = modules.get(&main).map(|m| m.content.as_str()).unwrap_or("");
                crate::emulator::workerd::static_exports(source)
            }
        };
        let loaded_ms = loading.elapsed().as_millis() as u64;
        let mut uploaded = shared
            .account()
            .upload_script(&script, &metadata, main, modules, exports)?;
        // The version this upload made, as Cloudflare names it (wrangler reads it).
        if let Some(etag) = uploaded.get("etag").and_then(Value::as_str) {
            uploaded["deployment_id"] = json!(super::routing::version_id(etag));
        }
        // How long the runtime took to load it (0 without workerd).
        if shared.runtime().is_some() {
            uploaded["startup_time_ms"] = json!(loaded_ms);
        }
        if let Some(runtime) = shared.runtime() {
            runtime.stop(&script).await;
        }
        Ok(uploaded)
    }
    .await
}

pub(super) async fn delete_script(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
    req: Request,
) -> Response {
    let force = query_pairs(req.uri())
        .iter()
        .any(|(k, v)| k == "force" && v == "true");
    let outcome = check_account(&shared, &account)
        .and_then(|_| shared.account().delete_script(&script, force));
    if outcome.is_ok() {
        shared.containers.stop_script(&script).await;
    }
    if outcome.is_ok()
        && let Some(runtime) = shared.runtime()
    {
        runtime.forget(&script).await;
    }
    respond(StatusCode::OK, outcome.map(|_| Value::Null))
}

pub(super) async fn get_settings(
    State(shared): Shr,
    Path((account, script)): Path<(String, String)>,
) -> Response {
    let outcome =
        check_account(&shared, &account).and_then(|_| shared.account().script_settings(&script));
    respond(StatusCode::OK, outcome)
}

pub(super) async fn patch_settings(
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

//! Containers operations: applications, rollouts, versions, registry credentials.

use super::*;

pub(super) fn query_pairs(uri: &axum::http::Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(super) async fn list_applications(
    State(shared): Shr,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    if let Err(f) = check_account(&shared, &account) {
        return fail_containers(f);
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

pub(super) async fn get_application(
    State(shared): Shr,
    Path((account, id)): Path<(String, String)>,
) -> Response {
    if let Err(f) = check_account(&shared, &account) {
        return fail_containers(f);
    }
    respond_containers(StatusCode::OK, shared.account().get_application(&id))
}

/// The image of a deployment must live in this account's part of the registry; with the
/// embedded registry it must also exist.
pub(super) fn check_image(shared: &Shared, image: &str) -> Result<(), String> {
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

pub(super) async fn create_application(
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
    respond_containers(StatusCode::CREATED, outcome)
}

pub(super) async fn modify_application(
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
    respond_containers(StatusCode::OK, outcome)
}

pub(super) async fn delete_application(
    State(shared): Shr,
    Path((account, id)): Path<(String, String)>,
) -> Response {
    let outcome =
        check_account(&shared, &account).and_then(|_| shared.account().delete_application(&id));
    if outcome.is_ok() {
        // Its container instances go with it.
        shared.containers.stop_application(&id).await;
    }
    respond_containers(StatusCode::OK, outcome)
}

pub(super) async fn create_rollout(
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
    respond_containers(StatusCode::CREATED, outcome)
}

pub(super) async fn list_versions(
    State(shared): Shr,
    Path((account, id)): Path<(String, String)>,
) -> Response {
    let outcome =
        check_account(&shared, &account).and_then(|_| shared.account().list_versions(&id));
    respond_containers(StatusCode::OK, outcome)
}

pub(super) async fn registry_credentials(
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
    respond_containers(StatusCode::CREATED, outcome)
}

//! The embedded OCI registry under `/v2`, standing in for Cloudflare's.

use super::*;
use crate::emulator::limits;

pub(super) fn registry_error(e: crate::emulator::registry::RegistryError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        e.body(),
    )
        .into_response()
}

pub(super) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = v.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?,
    )
    .ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

pub(super) async fn registry_entry(State(shared): Shr, req: Request) -> Response {
    if shared.config.registry.is_some() {
        return (
            StatusCode::NOT_FOUND,
            "this emulator uses an external registry",
        )
            .into_response();
    }
    let authorized =
        basic_credentials(req.headers()).is_some_and(|(u, p)| shared.registry_login_ok(&u, &p));
    if !authorized {
        let mut r = registry_error(crate::emulator::registry::RegistryError {
            status: 401,
            code: "UNAUTHORIZED",
            message: "authentication required".into(),
        });
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"flaredock-emulator\""),
        );
        return r;
    }
    let path = req
        .uri()
        .path()
        .trim_start_matches("/v2")
        .trim_matches('/')
        .to_string();
    if path.is_empty() {
        return (StatusCode::OK, axum::Json(json!({}))).into_response();
    }
    let method = req.method().clone();
    let pairs = query_pairs(req.uri());
    let q = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    let (repo, kind, rest) = if let Some((r, reference)) = path.rsplit_once("/manifests/") {
        (r, "manifests", reference)
    } else if let Some((r, id)) = path.rsplit_once("/blobs/uploads") {
        (r, "uploads", id.trim_start_matches('/'))
    } else if let Some((r, digest)) = path.rsplit_once("/blobs/") {
        (r, "blobs", digest)
    } else if let Some(r) = path.strip_suffix("/tags/list") {
        (r, "tags", "")
    } else {
        return registry_error(crate::emulator::registry::RegistryError {
            status: 404,
            code: "NAME_UNKNOWN",
            message: "unknown registry path".into(),
        });
    };
    // Bounded reads (`limits`): a manifest up to 4 MiB, a blob (one request, and an
    // upload session in total) up to the largest image Cloudflare runs.
    let lim = shared.config.limits;
    let limit = match kind {
        "manifests" => lim.manifest,
        "uploads" if !rest.is_empty() => {
            let held = shared.registry().upload_len(rest).unwrap_or(0);
            lim.blob.saturating_sub(held)
        }
        _ => lim.blob,
    };
    let what = if kind == "manifests" {
        "manifest"
    } else {
        "blob"
    };
    let too_large = || {
        registry_error(crate::emulator::registry::RegistryError {
            status: 413,
            code: "SIZE_INVALID",
            message: format!(
                "the {what} is larger than {}, the most this registry takes",
                limits::human(if kind == "manifests" {
                    lim.manifest
                } else {
                    lim.blob
                })
            ),
        })
    };
    let (parts, body) = req.into_parts();
    let read = match limits::check_declared(&parts.headers, limit) {
        Ok(()) => limits::read_bounded(body, limit).await,
        Err(e) => Err(e),
    };
    let body = match read {
        Ok(b) => b,
        Err(limits::ReadError::TooLarge { .. }) => return too_large(),
        Err(limits::ReadError::Broken(e)) => {
            return (StatusCode::BAD_REQUEST, e).into_response();
        }
    };
    if !repo.starts_with(&format!("{}/", shared.config.account_id)) {
        return registry_error(crate::emulator::registry::RegistryError {
            status: 403,
            code: "DENIED",
            message: format!("repository {repo} is outside this account"),
        });
    }
    let repo = repo.to_string();
    let mut reg = shared.registry();
    match (kind, method) {
        ("manifests", m) if m == Method::GET || m == Method::HEAD => {
            match reg.manifest(&repo, rest) {
                Ok(man) => {
                    let len = man.bytes.len();
                    let body = if m == Method::HEAD {
                        Body::empty()
                    } else {
                        Body::from(man.bytes)
                    };
                    Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, man.media_type)
                        .header(header::CONTENT_LENGTH, len)
                        .header("docker-content-digest", man.digest)
                        .body(body)
                        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
                }
                Err(e) => registry_error(e),
            }
        }
        ("manifests", Method::PUT) => match reg.put_manifest(&repo, rest, &content_type, body) {
            Ok(digest) => created(&format!("/v2/{repo}/manifests/{digest}"), &digest),
            Err(e) => registry_error(e),
        },
        ("blobs", m) if m == Method::GET || m == Method::HEAD => match reg.blob(&repo, rest) {
            Some(data) => {
                let len = data.len();
                let body = if m == Method::HEAD {
                    Body::empty()
                } else {
                    Body::from(data)
                };
                Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, len)
                    .header("docker-content-digest", rest)
                    .body(body)
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
            }
            None => registry_error(crate::emulator::registry::RegistryError {
                status: 404,
                code: "BLOB_UNKNOWN",
                message: format!("blob {rest} not known"),
            }),
        },
        ("uploads", Method::POST) => {
            if let (Some(digest), Some(from)) = (q("mount"), q("from"))
                && reg.mount(&repo, &digest, &from)
            {
                return created(&format!("/v2/{repo}/blobs/{digest}"), &digest);
            }
            if let Some(digest) = q("digest") {
                return match reg.put_blob(&repo, &digest, body.to_vec()) {
                    Ok(()) => created(&format!("/v2/{repo}/blobs/{digest}"), &digest),
                    Err(e) => registry_error(e),
                };
            }
            let id = reg.start_upload(&repo);
            accepted(&format!("/v2/{repo}/blobs/uploads/{id}"), 0)
        }
        ("uploads", Method::PATCH) => match reg.append_upload(rest, &body) {
            Ok(len) => accepted(&format!("/v2/{repo}/blobs/uploads/{rest}"), len),
            Err(e) => registry_error(e),
        },
        ("uploads", Method::PUT) => {
            let Some(digest) = q("digest") else {
                return registry_error(crate::emulator::registry::RegistryError {
                    status: 400,
                    code: "DIGEST_INVALID",
                    message: "digest query parameter is required".into(),
                });
            };
            match reg.finish_upload(rest, &body, &digest) {
                Ok(()) => created(&format!("/v2/{repo}/blobs/{digest}"), &digest),
                Err(e) => registry_error(e),
            }
        }
        ("tags", Method::GET) => match reg.tags(&repo) {
            Some(tags) => axum::Json(json!({"name": repo, "tags": tags})).into_response(),
            None => registry_error(crate::emulator::registry::RegistryError {
                status: 404,
                code: "NAME_UNKNOWN",
                message: format!("repository {repo} not known"),
            }),
        },
        _ => registry_error(crate::emulator::registry::RegistryError {
            status: 405,
            code: "UNSUPPORTED",
            message: "method not supported here".into(),
        }),
    }
}

pub(super) fn created(location: &str, digest: &str) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, location)
        .header("docker-content-digest", digest)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

pub(super) fn accepted(location: &str, len: usize) -> Response {
    let range = format!("0-{}", len.saturating_sub(1));
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::LOCATION, location)
        .header(header::RANGE, range)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

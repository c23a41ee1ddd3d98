//! What adopting a script reads of it beyond the script list: its settings
//! (`GET /workers/scripts/{name}/settings`) and its modules as Cloudflare has them
//! (`GET /workers/scripts/{name}`, a multipart answer read by [`super::multipart`]).

use reqwest::Method;
use serde_json::Value;

use super::ApiError;
use super::client::{Body, CloudflareClient, Repeat, parse_response};
use super::multipart::multipart_parts;
use super::types::ScriptSettings;

impl CloudflareClient {
    /// `GET /workers/scripts/{name}/settings`: the script's bindings (secret values
    /// never shown), compatibility, placement, observability, limits, tail consumers.
    pub async fn script_settings(&self, script: &str) -> Result<ScriptSettings, ApiError> {
        self.call(
            "getScriptSettings",
            Method::GET,
            format!("/workers/scripts/{script}/settings"),
            Body::Empty,
            Repeat::Safe,
        )
        .await
    }

    /// `GET /workers/scripts/{name}` (`worker-script-download-worker`): the modules as
    /// Cloudflare has them, `(name, content)` (a multipart answer; a single
    /// `application/javascript` body is one module named `""`).
    pub async fn download_script(&self, script: &str) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
        let operation = "downloadScript";
        self.call_decoded(
            operation,
            Method::GET,
            format!("/workers/scripts/{script}"),
            Body::Empty,
            Repeat::Safe,
            |status, retry, content_type, bytes| {
                if !status.is_success() {
                    return parse_response::<Value>(operation, status, retry, bytes)
                        .map(|_| vec![]);
                }
                if content_type.starts_with("multipart/") {
                    multipart_parts(content_type, bytes).ok_or_else(|| ApiError::InvalidResponse {
                        operation,
                        status: status.as_u16(),
                        reason: "the multipart body of the script cannot be read".into(),
                        excerpt: String::new(),
                    })
                } else {
                    Ok(vec![(String::new(), bytes.to_vec())])
                }
            },
        )
        .await
    }
}

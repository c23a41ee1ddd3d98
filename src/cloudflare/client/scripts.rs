//! The operations on Workers scripts: the account's Durable Object namespaces, the
//! script list, a module upload and a script's deletion.

use reqwest::Method;
use serde_json::Value;

use super::{Body, CloudflareClient, Part, Repeat, to_json};
use crate::cloudflare::error::ApiError;
use crate::cloudflare::types::*;

impl CloudflareClient {
    /// Every Durable Object namespace of the account (pages of 1,000).
    pub async fn list_namespaces(&self) -> Result<Vec<DurableObjectNamespace>, ApiError> {
        let mut all = Vec::new();
        let mut page = 1u32;
        loop {
            let (items, info): (Vec<DurableObjectNamespace>, Option<ResultInfo>) = self
                .call_with_info(
                    "listNamespaces",
                    Method::GET,
                    format!("/workers/durable_objects/namespaces?page={page}&per_page=1000"),
                    Body::Empty,
                    Repeat::Safe,
                )
                .await?;
            let got = items.len();
            all.extend(items);
            let total_pages = info.as_ref().and_then(|i| i.total_pages).unwrap_or(0.0);
            if got < 1000 || f64::from(page) >= total_pages {
                return Ok(all);
            }
            page += 1;
        }
    }

    /// `GET /workers/scripts`: every script of the account with its `tags` and
    /// `migration_tag`, in one call.
    pub async fn list_scripts(&self) -> Result<Vec<ScriptInfo>, ApiError> {
        self.call(
            "listScripts",
            Method::GET,
            "/workers/scripts".into(),
            Body::Empty,
            Repeat::Safe,
        )
        .await
    }

    /// `PUT /workers/scripts/{name}`: a module upload (multipart: `metadata` plus one part
    /// per module). Never repeated blindly: a lost answer may mean the migration was
    /// applied, so the caller reads the script list (its hash tag) before uploading again.
    pub async fn upload_script(
        &self,
        script: &str,
        upload: &ScriptUpload,
    ) -> Result<ScriptInfo, ApiError> {
        let mut metadata = to_json(&upload.metadata);
        if let Some(bindings) = metadata.get_mut("bindings").and_then(Value::as_array_mut) {
            for s in &upload.metadata.secrets {
                bindings.push(serde_json::json!({
                    "type": "secret_text",
                    "name": s.name,
                    "text": s.text.expose(),
                }));
            }
        }
        let mut parts = vec![Part {
            name: "metadata".into(),
            file_name: None,
            content_type: "application/json".into(),
            content: metadata.to_string().into_bytes(),
        }];
        parts.extend(upload.modules.iter().map(|m| Part {
            name: m.name.clone(),
            file_name: Some(m.name.clone()),
            content_type: m.content_type.clone(),
            content: m.content.clone(),
        }));
        self.call(
            "uploadScript",
            Method::PUT,
            format!("/workers/scripts/{script}"),
            Body::Multipart(parts),
            Repeat::Never,
        )
        .await
    }

    /// `DELETE /workers/scripts/{name}`; `Ok(false)` when it was already gone. Without
    /// `force`, Cloudflare refuses to delete a script that has Durable Objects; with
    /// `force=true` they go with it, **and all their data**: the caller decides.
    pub async fn delete_script(&self, script: &str, force: bool) -> Result<bool, ApiError> {
        let path = if force {
            format!("/workers/scripts/{script}?force=true")
        } else {
            format!("/workers/scripts/{script}")
        };
        let result: Result<Value, ApiError> = self
            .call(
                "deleteScript",
                Method::DELETE,
                path,
                Body::Empty,
                Repeat::Safe,
            )
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(ApiError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

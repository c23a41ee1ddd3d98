//! The operations on containers: applications, their rollouts and versions, and the
//! registry credentials minted for them (official `containers` API).

use reqwest::Method;

use super::{Body, CloudflareClient, Repeat, to_json};
use crate::cloudflare::error::ApiError;
use crate::cloudflare::types::*;

impl CloudflareClient {
    /// `GET /containers/applications` — every application of the account in one call.
    pub async fn list_applications(&self) -> Result<Vec<Application>, ApiError> {
        self.call(
            "listApplications",
            Method::GET,
            "/containers/applications".into(),
            Body::Empty,
            Repeat::Safe,
        )
        .await
    }

    pub async fn get_application(&self, id: &str) -> Result<Application, ApiError> {
        self.call(
            "getApplication",
            Method::GET,
            format!("/containers/applications/{id}"),
            Body::Empty,
            Repeat::Safe,
        )
        .await
    }

    /// `POST /containers/applications`. Never repeated blindly: after a lost response
    /// the caller looks the name up before creating again.
    pub async fn create_application(
        &self,
        request: &CreateApplicationRequest,
    ) -> Result<Application, ApiError> {
        self.call(
            "createApplication",
            Method::POST,
            "/containers/applications".into(),
            Body::Json(to_json(request)),
            Repeat::Never,
        )
        .await
    }

    pub async fn modify_application(
        &self,
        id: &str,
        request: &ModifyApplicationRequest,
    ) -> Result<Application, ApiError> {
        self.call(
            "modifyApplication",
            Method::PATCH,
            format!("/containers/applications/{id}"),
            Body::Json(to_json(request)),
            Repeat::Safe,
        )
        .await
    }

    /// `DELETE /containers/applications/{id}`; `Ok(false)` when it was already gone.
    pub async fn delete_application(&self, id: &str) -> Result<bool, ApiError> {
        let result: Result<DeleteApplicationResponse, ApiError> = self
            .call(
                "deleteApplication",
                Method::DELETE,
                format!("/containers/applications/{id}"),
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

    /// `POST /containers/applications/{id}/rollouts`. Never repeated blindly.
    pub async fn create_rollout(
        &self,
        id: &str,
        request: &CreateRolloutRequest,
    ) -> Result<ApplicationRollout, ApiError> {
        self.call(
            "createApplicationRollout",
            Method::POST,
            format!("/containers/applications/{id}/rollouts"),
            Body::Json(to_json(request)),
            Repeat::Never,
        )
        .await
    }

    pub async fn list_versions(&self, id: &str) -> Result<Vec<ApplicationVersion>, ApiError> {
        self.call(
            "listApplicationVersions",
            Method::GET,
            format!("/containers/applications/{id}/versions"),
            Body::Empty,
            Repeat::Safe,
        )
        .await
    }

    /// Mints short-lived registry credentials.
    pub async fn registry_credentials(
        &self,
        domain: &str,
        permissions: &[RegistryPermission],
        expiration_minutes: i64,
    ) -> Result<RegistryCredentials, ApiError> {
        let request = RegistryCredentialsRequest {
            permissions: permissions.to_vec(),
            expiration_minutes,
        };
        self.call(
            "generateImageRegistryCredentials",
            Method::POST,
            format!("/containers/registries/{domain}/credentials"),
            Body::Json(to_json(&request)),
            Repeat::Safe,
        )
        .await
    }
}

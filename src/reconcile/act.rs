//! Doing what a plan says, for every kind: getting a container's image into
//! Cloudflare's registry (the plan's first action), uploading a Worker's script,
//! creating, modifying, replacing and rolling out applications. Each action is safe to
//! run again after a crash at any point; only this file writes at Cloudflare.

use super::Reconciler;
use super::model::{ImageAction, ImageState, owner_of};
use super::outcome::Happening;
use super::plan::{Action, Plan};
use crate::cloudflare::ApiError;
use crate::spec::CloudflareContainer;

impl Reconciler {
    /// Runs the plan's image action, when it has one (always first), taking it out of
    /// the plan: what it found, or `None` when there was nothing to get.
    pub(super) async fn get_image(
        &self,
        obj: &CloudflareContainer,
        plan: &mut Plan,
        events: &mut Vec<Happening>,
    ) -> Option<ImageState> {
        let Some(Action::GetImage(action)) = plan.actions.first().cloned() else {
            return None;
        };
        plan.actions.remove(0);
        let state = self.images.acquire(obj, &action).await;
        match (&state, &action) {
            (ImageState::Ready(image), ImageAction::Copy { source, .. }) => events.push(
                Happening::new("ImageCopied", format!("copied image {source} to {image}")),
            ),
            (ImageState::Ready(image), ImageAction::Build { .. }) => {
                events.push(Happening::new("ImageBuilt", format!("built image {image}")))
            }
            _ => {}
        }
        // A copy whose digest the plan knew deploys as planned; otherwise (a build,
        // a tag read, another host) the rest is planned again from what was found.
        let planned = action.deploys();
        match &state {
            ImageState::Ready(image) if planned.as_deref() == Some(image.as_str()) => {}
            _ => plan.actions.clear(),
        }
        Some(state)
    }

    /// Runs the plan's actions in order. Safe to re-run after a crash at any point.
    /// `owner` is the owner label of what this object creates, `name` what events call
    /// it (the application name, or the Worker script).
    pub(super) async fn act(
        &self,
        owner: &str,
        name: &str,
        plan: &Plan,
        events: &mut Vec<Happening>,
    ) -> Result<(), ApiError> {
        let view = &self.view;
        let client = view.client();
        let mut made = super::worker::reach::Made::default();
        for action in &plan.actions {
            match action {
                // Taken out of the plan and run first by `get_image`.
                Action::GetImage(_) => {}
                Action::Reach(a) => self.act_reach(a, &mut made, events).await?,
                Action::UploadScript {
                    script,
                    upload,
                    creates,
                    adopts,
                } => {
                    // One upload at a time per script: two reconciles never race.
                    let lock = view.script_lock(script);
                    let _guard = lock.lock().await;
                    let uploaded = client.upload_script(script, upload).await;
                    view.invalidate_namespaces().await;
                    match uploaded {
                        Ok(mut info) => {
                            // The answer carries the tags; keep what the list would show.
                            info.id = script.clone();
                            if info.tags.is_none() {
                                info.tags = Some(upload.metadata.tags.clone());
                            }
                            if let Some(m) = &upload.metadata.migrations {
                                info.migration_tag = m.new_tag.clone();
                            } else if info.migration_tag.is_none() {
                                info.migration_tag = view
                                    .script(script)
                                    .await
                                    .ok()
                                    .flatten()
                                    .and_then(|s| s.migration_tag);
                            }
                            view.set_script(info).await;
                        }
                        Err(e) => {
                            view.invalidate_scripts().await;
                            return Err(e);
                        }
                    }
                    if *adopts {
                        events.push(Happening::new(
                            "Adopted",
                            format!("adopted Worker script {script}"),
                        ));
                    }
                    let fields: Vec<&str> = plan.changes.iter().map(|c| c.field.as_str()).collect();
                    events.push(Happening::new(
                        "Uploaded",
                        format!(
                            "{} Worker script {script}: {}",
                            if *creates { "created" } else { "uploaded" },
                            fields.join(", ")
                        ),
                    ));
                }
                Action::CreateApplication { request } => {
                    match client.create_application(request).await {
                        Ok(app) => {
                            events.push(Happening::new(
                                "Created",
                                format!("created application {} ({})", app.name, app.id),
                            ));
                            view.upsert_application(app).await;
                        }
                        Err(e) => {
                            let maybe_applied = matches!(
                                e,
                                ApiError::NameTaken { .. }
                                    | ApiError::Server { .. }
                                    | ApiError::InvalidResponse { .. }
                                    | ApiError::Transport {
                                        maybe_applied: true,
                                        ..
                                    }
                            );
                            if !maybe_applied {
                                view.invalidate_applications().await;
                                return Err(e);
                            }
                            // The answer was lost, or someone created it meanwhile: look by name.
                            view.refresh_applications().await?;
                            match view.application_by_name(&request.name).await? {
                                Some(app) if owner_of(&app) == Some(owner) => {
                                    events.push(Happening::new(
                                    "Created",
                                    format!(
                                        "created application {} ({}); the answer was lost and it was found by name",
                                        app.name, app.id
                                    ),
                                ));
                                }
                                _ => return Err(e),
                            }
                        }
                    }
                }
                Action::DeleteApplication { id, name, why } => {
                    // Decided again on a fresh read: only what still carries this
                    // object's owner label is deleted.
                    match client.get_application(id).await {
                        Ok(app) if owner_of(&app) == Some(owner) => {}
                        Ok(_) | Err(ApiError::NotFound { .. }) => {
                            view.invalidate_applications().await;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                    client.delete_application(id).await?;
                    view.remove_application(id).await;
                    events.push(Happening::new(
                        "Replaced",
                        format!("deleted application {name} ({id}): {why}"),
                    ));
                }
                Action::ModifyApplication { id, request } => {
                    let app = client.modify_application(id, request).await?;
                    view.upsert_application(app).await;
                    let fields: Vec<&str> = plan
                        .changes
                        .iter()
                        .map(|c| c.field.as_str())
                        .filter(|f| !f.starts_with("configuration.") && !f.starts_with("worker."))
                        .collect();
                    events.push(Happening::new(
                        "Updated",
                        format!(
                            "updated application {} in place: {}",
                            name,
                            fields.join(", ")
                        ),
                    ));
                }
                Action::CreateRollout {
                    id,
                    request,
                    adopts,
                } => match client.create_rollout(id, request).await {
                    Ok(r) => {
                        view.record_rollout(id, &r).await;
                        if *adopts {
                            events.push(Happening::new(
                                "Adopted",
                                format!("adopted application {name}"),
                            ));
                        }
                        events.push(Happening::new(
                            "RolloutStarted",
                            format!("started rollout {} of application {}", r.id, name),
                        ));
                    }
                    Err(e) => {
                        view.invalidate_applications().await;
                        return Err(e);
                    }
                },
            }
        }
        Ok(())
    }
}

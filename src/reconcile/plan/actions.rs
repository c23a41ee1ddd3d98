//! The actions of a container's plan: each change to make at Cloudflare, how it is
//! shown (`plan`) and its stable name (`plan -o json`).

use std::fmt;

use crate::cloudflare::types::*;
use crate::reconcile::model::ImageAction;
use crate::reconcile::worker::reach::ReachAction;

/// One change to make at Cloudflare.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Get the image into Cloudflare's registry: copy, build, or read its digest
    /// (which mints registry credentials). Always first.
    GetImage(ImageAction),
    /// Upload a CloudflareWorker's script (code, bindings, `containers`, migration).
    UploadScript {
        script: String,
        upload: Box<ScriptUpload>,
        creates: bool,
        /// This upload takes ownership of a script flaredock did not upload.
        adopts: bool,
    },
    CreateApplication {
        request: CreateApplicationRequest,
    },
    /// Delete an application this object owns (replacement, or left over by a rename).
    DeleteApplication {
        id: String,
        name: String,
        why: String,
    },
    /// PATCH of fields that change without a rollout.
    ModifyApplication {
        id: String,
        request: ModifyApplicationRequest,
    },
    CreateRollout {
        id: String,
        request: CreateRolloutRequest,
        /// This rollout takes ownership of a foreign application (`adopt: true`).
        adopts: bool,
    },
    /// A Worker's workers.dev state, route, custom domain or cron triggers.
    Reach(ReachAction),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::GetImage(a) => a.fmt(f),
            Action::Reach(a) => a.fmt(f),
            Action::UploadScript {
                script,
                upload,
                creates,
                adopts,
            } => {
                let m = &upload.metadata;
                write!(
                    f,
                    "{} Worker {script} ({} module(s)",
                    if *creates { "upload new" } else { "upload" },
                    upload.modules.len()
                )?;
                if !m.containers.is_empty() {
                    let classes: Vec<&str> =
                        m.containers.iter().map(|c| c.class_name.as_str()).collect();
                    write!(f, "; containers {}", classes.join(", "))?;
                }
                if let Some(mig) = &m.migrations {
                    write!(
                        f,
                        "; migration {} → {} new_sqlite_classes {}",
                        mig.old_tag.as_deref().unwrap_or("(none)"),
                        mig.new_tag.as_deref().unwrap_or(""),
                        mig.new_sqlite_classes.join(", ")
                    )?;
                }
                write!(f, ")")?;
                if *adopts {
                    write!(f, ", taking ownership")?;
                }
                Ok(())
            }
            Action::CreateApplication { request } => {
                write!(f, "create application {}", request.name)
            }
            Action::DeleteApplication { name, id, why } => {
                write!(f, "delete application {name} ({id}): {why}")
            }
            Action::ModifyApplication { id, .. } => {
                write!(f, "modify application {id} (no rollout)")
            }
            Action::CreateRollout {
                id,
                request,
                adopts,
            } => {
                let how = match (request.step_percentage, &request.steps) {
                    (Some(p), _) => format!("{p}% steps"),
                    (None, Some(s)) => s
                        .iter()
                        .map(|x| format!("{}%", x.step_size.percentage))
                        .collect::<Vec<_>>()
                        .join(" → "),
                    (None, None) => "100%".into(),
                };
                write!(f, "roll out application {id} ({how})")?;
                if *adopts {
                    write!(f, ", taking ownership")?;
                }
                Ok(())
            }
        }
    }
}

impl Action {
    /// A stable machine name of the action (the JSON plan's `actions[].kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::GetImage(ImageAction::Copy { .. }) => "copy-image",
            Action::GetImage(ImageAction::Build { .. }) => "build-image",
            Action::GetImage(ImageAction::Resolve { .. }) => "resolve-image",
            Action::UploadScript { .. } => "upload-script",
            Action::CreateApplication { .. } => "create-application",
            Action::ModifyApplication { .. } => "modify-application",
            Action::CreateRollout { .. } => "create-rollout",
            Action::DeleteApplication { .. } => "delete-application",
            Action::Reach(a) => a.kind(),
        }
    }
}

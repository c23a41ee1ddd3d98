//! What a container instance runs, and getting it: the class's application (found
//! through its Durable Object namespace) gives the image of its current version and
//! its environment ([`Containers::target`]); the image is pulled from the registry
//! standing in for Cloudflare's, through a private auth file, into the emulator's
//! buildah store as a working container, whose `Entrypoint` + `Cmd` are read back.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use super::log::{scrub, tail_chars};
use super::{ContainerError, Containers, Key};
use crate::emulator::Shared;

/// How long pulling an image and creating its working container may take.
pub const START_TIMEOUT: Duration = Duration::from_secs(180);

/// What an instance runs, from the account.
#[derive(Clone, Debug)]
pub(super) struct Target {
    pub(super) application: String,
    pub(super) max_instances: Option<i64>,
    pub(super) image: String,
    pub(super) env: Vec<(String, String)>,
}

impl Containers {
    /// What `key` runs now, from the account.
    pub(super) fn target(shared: &Shared, key: &Key) -> Result<Target, ContainerError> {
        let mut account = shared.account();
        let app = account
            .container_application(&key.script, &key.class)
            .ok_or_else(|| ContainerError::NoApplication {
                script: key.script.clone(),
                class: key.class.clone(),
            })?;
        Ok(Target {
            application: app.id.clone(),
            max_instances: app.max_instances,
            image: app.configuration.image.clone(),
            env: app
                .configuration
                .environment_variables
                .iter()
                .flatten()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect(),
        })
    }

    /// Pulls `image` and makes the working container `name` of it.
    pub(super) async fn pull(
        &self,
        shared: &Shared,
        bin: &Path,
        storage: &[String],
        image: &str,
        name: &str,
    ) -> Result<(), ContainerError> {
        let fail = |why: String| ContainerError::Pull {
            image: image.to_string(),
            why,
        };
        let host = image.split('/').next().unwrap_or("").to_string();
        let (username, password) = match &shared.config.registry {
            Some(r) => (r.username.clone(), r.password.clone()),
            None => shared.mint(15),
        };
        let credentials = crate::oci::Credentials {
            username,
            password: crate::cloudflare::Secret::new(password.clone()),
        };
        let dir = self
            .root
            .as_ref()
            .map(|r| r.path().to_path_buf())
            .unwrap_or_else(std::env::temp_dir);
        // A private auth file (mode 0600), never the command line.
        let auth = tempfile::Builder::new()
            .prefix("auth-")
            .suffix(".json")
            .tempfile_in(&dir)
            .map_err(|e| fail(e.to_string()))?;
        std::fs::write(
            auth.path(),
            crate::build::docker_config_json(&host, &credentials),
        )
        .map_err(|e| fail(e.to_string()))?;
        let mut from = Command::new(bin);
        from.args(storage)
            .arg("from")
            .arg("--authfile")
            .arg(auth.path())
            .args(["--name", name]);
        if crate::oci::client::is_loopback(&host)
            || shared
                .config
                .registry
                .as_ref()
                .is_some_and(|r| r.host == host)
        {
            from.arg("--tls-verify=false");
        }
        from.arg(format!("docker://{image}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(START_TIMEOUT, from.output())
            .await
            .map_err(|_| fail(format!("not done within {} s", START_TIMEOUT.as_secs())))?
            .map_err(|e| fail(format!("{}: {e}", bin.display())))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            let text = scrub(text.trim(), &[password]);
            return Err(fail(tail_chars(&text, 2000)));
        }
        Ok(())
    }

    /// The image's `Entrypoint` + `Cmd`, read from the working container's config.
    pub(super) async fn command(
        &self,
        bin: &Path,
        storage: &[String],
        name: &str,
    ) -> Result<Vec<String>, ContainerError> {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            Command::new(bin)
                .args(storage)
                .args(["inspect", "--type", "container", name])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .map_err(|_| ContainerError::Start("buildah inspect did not finish within 30 s".into()))?
        .map_err(|e| ContainerError::Start(e.to_string()))?;
        if !out.status.success() {
            return Err(ContainerError::Start(format!(
                "buildah inspect failed: {}",
                tail_chars(String::from_utf8_lossy(&out.stderr).trim(), 2000)
            )));
        }
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| ContainerError::Start(format!("buildah inspect: {e}")))?;
        let config = &v["OCIv1"]["config"];
        let strings = |f: &str| -> Vec<String> {
            config[f]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        };
        let mut argv = strings("Entrypoint");
        argv.extend(strings("Cmd"));
        Ok(argv)
    }
}

/// Removes the buildah container `name` (up to 10 s; a failure leaves nothing to report).
pub(super) async fn remove(bin: &Path, storage: &[String], name: &str) {
    let mut rm = Command::new(bin);
    rm.args(storage).args(["rm", name]);
    let _ = quiet(rm, Duration::from_secs(10)).await;
}

/// Runs `cmd` with no input and its output discarded, killed after `limit`: its exit
/// status, or `None` when it could not start or did not end in time.
pub(super) async fn quiet(mut cmd: Command, limit: Duration) -> Option<ExitStatus> {
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    tokio::time::timeout(limit, status).await.ok()?.ok()
}

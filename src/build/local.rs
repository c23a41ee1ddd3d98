//! Builds on a workstation or CI runner: buildah (rootless-friendly, no daemon), else
//! `docker buildx`. The builder pushes to the destination with credentials written to
//! a private auth file (never on the command line).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use futures::future::BoxFuture;
use tokio::process::Command;

use super::{BuildOutcome, BuildRequest, BuildSource, Builder, log_tail};
use crate::oci::client::is_loopback;

/// Which tool builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `buildah`, with its storage options (`--root`, `--runroot`, `--storage-driver`).
    Buildah {
        binary: PathBuf,
        storage: Vec<String>,
    },
    /// `docker buildx`.
    DockerBuildx { binary: PathBuf },
}

/// A local builder.
#[derive(Clone, Debug)]
pub struct LocalBuilder {
    pub tool: Tool,
    /// Registries reached over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Trust roots (PEM) for fetching remote contexts instead of the system's.
    pub context_roots: Option<Vec<u8>>,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

impl LocalBuilder {
    /// buildah if it is on PATH (chosen when both are), else docker with its buildx
    /// plugin; otherwise why neither can build, in words a person can act on (never
    /// the usage text of the wrong tool).
    pub fn detect(insecure_registries: Vec<String>) -> Result<LocalBuilder, String> {
        let tool = if let Some(binary) = on_path("buildah") {
            Tool::Buildah {
                binary,
                storage: vec![],
            }
        } else if let Some(binary) = on_path("docker") {
            let buildx = std::process::Command::new(&binary)
                .args(["buildx", "version"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !buildx {
                return Err(format!(
                    "buildah not found, and {} has no buildx plugin (`docker buildx version` failed): install buildah or the docker buildx plugin, or build elsewhere and set spec.image",
                    binary.display()
                ));
            }
            Tool::DockerBuildx { binary }
        } else {
            return Err(
                "buildah not found, nor docker: install buildah (or Docker with buildx), or build elsewhere and set spec.image".into(),
            );
        };
        Ok(LocalBuilder {
            tool,
            insecure_registries,
            context_roots: None,
        })
    }

    /// buildah with its own storage (tests, CI): `vfs` under `root`.
    pub fn buildah_with_storage(binary: PathBuf, root: &Path) -> LocalBuilder {
        let storage = vec![
            "--root".into(),
            root.join("storage").display().to_string(),
            "--runroot".into(),
            root.join("run").display().to_string(),
            "--storage-driver".into(),
            "vfs".into(),
        ];
        LocalBuilder {
            tool: Tool::Buildah { binary, storage },
            insecure_registries: vec![],
            context_roots: None,
        }
    }

    fn insecure(&self, host: &str) -> bool {
        is_loopback(host) || self.insecure_registries.iter().any(|h| h == host)
    }

    /// A remote context fetched here under the rules of [`super::fetch`] (https only,
    /// same-host redirects, size and time caps), never by the build tool, which would
    /// follow any redirect: the directory to build, kept alive by the returned guard.
    async fn fetch_remote(
        &self,
        source: &BuildSource,
    ) -> Result<Option<(std::path::PathBuf, tempfile::TempDir)>, String> {
        let limits = super::fetch::FetchLimits::default();
        let work =
            tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let into = work.path().join("src");
        let dir = match source {
            BuildSource::Local(_) => return Ok(None),
            BuildSource::Tarball(text) => {
                let (url, sha256) = BuildSource::tarball_parts(text);
                let client = super::fetch::client(&limits, self.context_roots.as_deref())
                    .map_err(|e| e.to_string())?;
                super::fetch::fetch_tarball(&client, url, sha256, &into, &limits)
                    .await
                    .map_err(|e| e.to_string())?;
                into
            }
            BuildSource::Git {
                url,
                reference,
                subdir,
            } => super::fetch::fetch_git(
                url,
                reference.as_deref(),
                subdir.as_deref(),
                &into,
                &limits,
            )
            .await
            .map_err(|e| e.to_string())?,
        };
        Ok(Some((dir, work)))
    }

    async fn run(&self, request: &BuildRequest) -> BuildOutcome {
        let fetched = match self.fetch_remote(&request.source).await {
            Ok(f) => f,
            Err(e) => {
                return failed(
                    format!("cannot fetch the build context: {e}"),
                    String::new(),
                );
            }
        };
        let context_dir = match (&fetched, &request.source) {
            (Some((dir, _)), _) => dir.clone(),
            (None, BuildSource::Local(dir)) => dir.clone(),
            (None, _) => return failed("a remote context was not fetched".into(), String::new()),
        };
        let context = context_dir.display().to_string();
        let dockerfile = context_dir
            .join(&request.inputs.dockerfile)
            .display()
            .to_string();
        let destination = request.destination.to_string();
        let host = request.destination.registry.clone().unwrap_or_default();
        // Credentials go to a private auth file, never to argv.
        let auth_dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => {
                return failed(
                    format!("cannot create a temporary directory: {e}"),
                    String::new(),
                );
            }
        };
        let config = super::docker_config_json(&host, &request.credentials);
        let auth_file = auth_dir.path().join("config.json");
        if let Err(e) = write_private(&auth_file, &config) {
            return failed(
                format!("cannot write the registry auth file: {e}"),
                String::new(),
            );
        }
        let mut log = String::new();
        let steps: Vec<(String, Command)> = match &self.tool {
            Tool::Buildah { binary, storage } => {
                let mut build = Command::new(binary);
                build.args(storage).args([
                    "build",
                    "--isolation",
                    "chroot",
                    "--platform",
                    &request.inputs.platform,
                    "-f",
                    &dockerfile,
                    "-t",
                    &destination,
                ]);
                build.args(request.inputs.cli_arguments());
                build.arg(&context);
                let mut push = Command::new(binary);
                push.args(storage)
                    .arg("push")
                    .arg("--authfile")
                    .arg(&auth_file);
                if self.insecure(&host) {
                    push.arg("--tls-verify=false");
                }
                push.arg(&destination)
                    .arg(format!("docker://{destination}"));
                vec![
                    ("buildah build".into(), build),
                    ("buildah push".into(), push),
                ]
            }
            Tool::DockerBuildx { binary } => {
                let mut build = Command::new(binary);
                build.env("DOCKER_CONFIG", auth_dir.path());
                build.args([
                    "buildx",
                    "build",
                    "--platform",
                    &request.inputs.platform,
                    "-f",
                    &dockerfile,
                    "-t",
                    &destination,
                    "--push",
                ]);
                build.args(request.inputs.cli_arguments());
                build.arg(&context);
                vec![("docker buildx build".into(), build)]
            }
        };
        for (name, mut command) in steps {
            tracing::info!(object = %request.object, step = %name, destination = %destination, "building");
            let output = command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()
                .await;
            let output = match output {
                Ok(o) => o,
                Err(e) => return failed(format!("cannot run {name}: {e}"), log),
            };
            log.push_str(&String::from_utf8_lossy(&output.stdout));
            log.push_str(&String::from_utf8_lossy(&output.stderr));
            if !output.status.success() {
                let secret = request.credentials.password.expose();
                let log = if secret.is_empty() {
                    log
                } else {
                    log.replace(secret, "[redacted]")
                };
                return failed(format!("{name} failed ({})", output.status), log);
            }
        }
        BuildOutcome::Pushed
    }
}

fn failed(message: String, log: String) -> BuildOutcome {
    BuildOutcome::Failed {
        message,
        log_tail: log_tail(&log, 20, 4000),
    }
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(content.as_bytes())
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, content)
    }
}

impl Builder for LocalBuilder {
    fn build<'a>(&'a self, request: &'a BuildRequest) -> BoxFuture<'a, BuildOutcome> {
        Box::pin(self.run(request))
    }
}

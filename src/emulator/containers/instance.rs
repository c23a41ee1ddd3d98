//! Container instances: one per Durable Object, started with `buildah run` (at most
//! [`MAX_CONTAINERS`] at once and the application's `max_instances`), watched until
//! they exit, and stopped on `destroy()`, `signal(9)`, when their application or
//! script goes, when the emulator stops, and when a rollout changes the image
//! ([`Containers::sweep`]).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;
use tokio::sync::{oneshot, watch};

use super::image::{quiet, remove};
use super::log::{Log, drain, scrub};
use super::{ContainerError, Containers, Key, StartOptions};
use crate::emulator::Shared;

/// How many container instances run at once.
pub const MAX_CONTAINERS: usize = 8;
/// How often the instances are checked against their applications.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Instance {
    pub(super) application: String,
    pub(super) image: String,
    pub(super) pid: Option<u32>,
    /// `None` while it runs, then its exit status.
    pub(super) exit: watch::Receiver<Option<i32>>,
    /// Dropped (with the instance): the process is killed.
    pub(super) _kill: oneshot::Sender<()>,
    pub(super) log: Arc<Mutex<Log>>,
    pub(super) ports: BTreeSet<u16>,
    /// Environment values: never shown.
    pub(super) secrets: Vec<String>,
    /// A sweep saw it exited (the next one forgets it).
    pub(super) exit_seen: bool,
}

impl Instance {
    pub(super) fn alive(&self) -> bool {
        self.exit.borrow().is_none()
    }
}

impl Containers {
    /// How many instances run now.
    pub fn running(&self) -> usize {
        crate::lock(&self.instances)
            .values()
            .filter(|i| i.alive())
            .count()
    }

    /// The process ids (`buildah run`) of the instances that run now.
    pub fn pids(&self) -> Vec<u32> {
        crate::lock(&self.instances)
            .values()
            .filter(|i| i.alive())
            .filter_map(|i| i.pid)
            .collect()
    }

    /// Stops every instance of which `which` is true, waiting (up to 10 s) until they
    /// are gone.
    async fn stop_where(&self, which: impl Fn(&Key, &Instance) -> bool) {
        let stopped: Vec<Instance> = {
            let mut map = crate::lock(&self.instances);
            let keys: Vec<Key> = map
                .iter()
                .filter(|(k, i)| which(k, i))
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for i in stopped {
            end(i).await;
        }
    }

    /// Stops the instances of an application (it is deleted).
    pub async fn stop_application(&self, id: &str) {
        self.stop_where(|_, i| i.application == id).await;
    }

    /// Stops the instances of a script's classes (it is deleted).
    pub async fn stop_script(&self, name: &str) {
        self.stop_where(|k, _| k.script == name).await;
    }

    /// Kills every instance without waiting (the emulator is dropped).
    pub fn kill_all(&self) {
        crate::lock(&self.instances).clear();
    }

    /// Stops every instance (the emulator stops).
    pub async fn stop_all(&self) {
        self.stop_where(|_, _| true).await;
    }

    /// Forgets `key`'s instance when it exited or runs another image than `image`
    /// (`None`: the class has no application now), waiting until it is gone (it may
    /// hold a port the next instance needs); whether one runs after that.
    async fn settle(&self, key: &Key, image: Option<&str>) -> bool {
        let removed = {
            let mut map = crate::lock(&self.instances);
            let keep = map
                .get(key)
                .is_some_and(|i| i.alive() && image.is_some_and(|img| img == i.image));
            if keep {
                return true;
            }
            map.remove(key)
        };
        if let Some(i) = removed {
            if i.alive() {
                tracing::info!(script = %key.script, class = %key.class, "emulator: container instance stopped (its image changed, or its application is gone)");
            }
            end(i).await;
        }
        false
    }

    /// Stops the instances whose application is gone or runs another image now (a
    /// rollout finished), and forgets those that exited before the previous sweep (an
    /// exit stays readable for a while: a `fetch` may be on its way to report it).
    pub async fn sweep(&self, shared: &Shared) {
        let keys: Vec<Key> = {
            let mut map = crate::lock(&self.instances);
            map.retain(|_, i| i.alive() || !i.exit_seen);
            for i in map.values_mut() {
                i.exit_seen = !i.alive();
            }
            map.iter()
                .filter(|(_, i)| i.alive())
                .map(|(k, _)| k.clone())
                .collect()
        };
        for key in keys {
            let image = Self::target(shared, &key).ok().map(|t| t.image);
            self.settle(&key, image.as_deref()).await;
        }
    }

    pub(super) async fn status(&self, shared: &Shared, key: &Key) -> Value {
        let image = Self::target(shared, key).ok().map(|t| t.image);
        json!({"running": self.settle(key, image.as_deref()).await})
    }

    pub(super) async fn start(
        &self,
        shared: &Shared,
        key: &Key,
        options: StartOptions,
    ) -> Result<(), ContainerError> {
        let Some((bin, storage)) = &self.buildah else {
            return Err(ContainerError::NoRuntime);
        };
        let mut count = self.starting.lock().await;
        let target = Self::target(shared, key)?;
        if self.settle(key, Some(&target.image)).await {
            return Ok(());
        }
        {
            let map = crate::lock(&self.instances);
            if map.values().filter(|i| i.alive()).count() >= MAX_CONTAINERS {
                return Err(ContainerError::Full);
            }
            if let Some(max) = target.max_instances.filter(|m| *m > 0)
                && map
                    .values()
                    .filter(|i| i.alive() && i.application == target.application)
                    .count() as i64
                    >= max
            {
                return Err(ContainerError::MaxInstances {
                    application: target.application.clone(),
                    max,
                });
            }
        }
        *count += 1;
        let name = format!("flaredock-{}", *count);
        let mut env: BTreeMap<String, String> = target.env.iter().cloned().collect();
        env.extend(options.env_vars.unwrap_or_default());
        let secrets: Vec<String> = env.values().filter(|v| !v.is_empty()).cloned().collect();
        self.pull(shared, bin, storage, &target.image, &name)
            .await?;
        let argv = match options.entrypoint.filter(|e| !e.is_empty()) {
            Some(e) => e,
            None => match self.command(bin, storage, &name).await {
                Ok(c) if !c.is_empty() => c,
                Ok(_) => {
                    remove(bin, storage, &name).await;
                    return Err(ContainerError::NoCommand {
                        image: target.image.clone(),
                    });
                }
                Err(e) => {
                    remove(bin, storage, &name).await;
                    return Err(e);
                }
            },
        };
        let mut run = Command::new(bin);
        run.args(storage)
            .args(["run", "--isolation", "chroot", "--network", "host"]);
        for (k, v) in &env {
            run.arg("--env").arg(format!("{k}={v}"));
        }
        run.arg(&name).arg("--").args(&argv);
        run.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match run.spawn() {
            Ok(c) => c,
            Err(e) => {
                remove(bin, storage, &name).await;
                return Err(ContainerError::Start(format!("{}: {e}", bin.display())));
            }
        };
        let log = Arc::new(Mutex::new(Log::default()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(drain(out, log.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(drain(err, log.clone()));
        }
        let pid = child.id();
        let (exit_tx, exit_rx) = watch::channel(None);
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        let (bin2, storage2, name2) = (bin.clone(), storage.clone(), name.clone());
        let (log2, secrets2, script) = (log.clone(), secrets.clone(), key.script.clone());
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s,
                _ = kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let code = match status {
                Ok(s) => exit_code(s),
                Err(_) => -1,
            };
            let tail = crate::lock(&log2).tail(20);
            tracing::debug!(script = %script, code, "container exited: {}", scrub(&tail, &secrets2));
            let _ = exit_tx.send(Some(code));
            remove(&bin2, &storage2, &name2).await;
        });
        tracing::info!(script = %key.script, class = %key.class, image = %target.image, "emulator: container instance started");
        crate::lock(&self.instances).insert(
            key.clone(),
            Instance {
                application: target.application,
                image: target.image,
                pid,
                exit: exit_rx,
                _kill: kill_tx,
                log,
                ports: BTreeSet::new(),
                secrets,
                exit_seen: false,
            },
        );
        Ok(())
    }

    pub(super) async fn monitor(&self, key: &Key) -> Result<Value, ContainerError> {
        let mut exit = crate::lock(&self.instances)
            .get(key)
            .map(|i| i.exit.clone())
            .ok_or(ContainerError::NotRunning)?;
        let code = match exit.wait_for(Option::is_some).await {
            Ok(c) => c.unwrap_or(-1),
            Err(_) => -1,
        };
        Ok(json!({"exitCode": code}))
    }

    pub(super) async fn destroy(&self, key: &Key) {
        self.stop_where(|k, _| k == key).await;
    }

    pub(super) async fn signal(&self, key: &Key, signo: i64) -> Result<(), ContainerError> {
        if signo == 9 {
            self.destroy(key).await;
            return Ok(());
        }
        let pid = crate::lock(&self.instances)
            .get(key)
            .filter(|i| i.alive())
            .and_then(|i| i.pid)
            .ok_or(ContainerError::NotRunning)?;
        // buildah forwards the signal to the container's process.
        let mut kill = Command::new("kill");
        kill.arg(format!("-{signo}")).arg(pid.to_string());
        match quiet(kill, Duration::from_secs(5)).await {
            Some(s) if s.success() => Ok(()),
            _ => Err(ContainerError::BadRequest(format!(
                "signal {signo} could not be sent"
            ))),
        }
    }
}

/// Ends an instance and waits (up to 10 s) until its processes are gone: buildah, then
/// the container's own process, which buildah's death takes along a moment later (it
/// may hold a port the next instance needs).
async fn end(i: Instance) {
    let tree = if i.alive() {
        i.pid.map(descendants).unwrap_or_default()
    } else {
        vec![]
    };
    let mut exit = i.exit.clone();
    drop(i);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let _ = tokio::time::timeout_at(deadline, exit.wait_for(Option::is_some)).await;
    while tree.iter().any(|p| running(*p)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The processes under `pid` (Linux `/proc`; none elsewhere).
fn descendants(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let parents: Vec<(u32, u32)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // pid (comm) state ppid …: comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut out = vec![];
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (p, _) in parents.iter().filter(|(_, pp)| *pp == parent) {
            if !out.contains(p) && out.len() < 4096 {
                out.push(*p);
                frontier.push(*p);
            }
        }
    }
    out
}

/// Whether a process runs (a zombie does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

fn exit_code(s: std::process::ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            return 128 + sig;
        }
    }
    s.code().unwrap_or(-1)
}

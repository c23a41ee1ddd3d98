//! `flaredock apply` and `flaredock delete`: converge the manifests (with progress
//! while waiting), or delete what they own.

use super::*;
use crate::reconcile::reason::Reason;
use crate::reconcile::{Outcome, WaitingOn};

/// The step an object is on, in a few words: `Ready`, the reason it is not, and the
/// rollout's percentage while one runs.
fn step_of(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    rollout: Option<i64>,
) -> String {
    let ready = conditions.iter().find(|c| c.type_ == "Ready");
    let mut step = match ready {
        Some(c) if c.status == "True" => "Ready".to_string(),
        Some(c) => c.reason.clone(),
        None => "Pending".to_string(),
    };
    if let Some(p) = rollout {
        step.push_str(&format!(" (rollout {p}%)"));
    }
    step
}

/// `apply`'s progress on stderr while it waits: on a terminal, one line per object,
/// redrawn in place under the events; elsewhere (CI logs), a new line each time an
/// object's step changes.
struct Progress {
    tty: bool,
    drawn: usize,
    last: HashMap<String, String>,
}

impl Progress {
    fn new() -> Self {
        use std::io::IsTerminal;
        Progress {
            tty: std::io::stderr().is_terminal(),
            drawn: 0,
            last: HashMap::new(),
        }
    }

    /// Erases the block drawn on a terminal (before other output).
    fn clear(&mut self) {
        if self.tty && self.drawn > 0 {
            eprint!("\x1b[{}A\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    fn show(&mut self, steps: impl Iterator<Item = (String, String)>) {
        let mut steps: Vec<(String, String)> = steps.collect();
        steps.sort();
        if self.tty {
            for (key, step) in &steps {
                eprintln!("  {key}: {step}");
            }
            self.drawn = steps.len();
            return;
        }
        for (key, step) in steps {
            if self.last.get(&key) != Some(&step) {
                eprintln!("{key}: {step}");
                self.last.insert(key, step);
            }
        }
    }
}

/// `apiVersion` of the document `apply -o json|yaml` prints (`schemas/apply.schema.json`).
const APPLY_API_VERSION: &str = "flaredock.dev/apply/v1";

/// One word for CI to switch on (the schema's `state` enum).
fn state_of(o: &dyn Outcome) -> &'static str {
    let observing = o
        .conditions()
        .iter()
        .any(|c| c.type_ == "Ready" && Reason::Observing.is(&c.reason));
    if o.ready() {
        "Ready"
    } else if o.stalled() {
        "Stalled"
    } else if o.awaiting_approval() {
        "AwaitingApproval"
    } else if o.suspended() && observing {
        "Observing"
    } else if o.suspended() {
        "Suspended"
    } else if o.error().is_some() {
        "Error"
    } else {
        "InProgress"
    }
}

/// One object's entry of the apply document: what changed and what was done over every
/// round, the Events, the final status, and how it ended. Like the plan, it names a
/// Secret's value by its source only.
fn applied(kind: &str, key: &str, o: &dyn Outcome) -> serde_json::Value {
    let (namespace, name) = key.split_once('/').unwrap_or(("default", key));
    let mut entry = serde_json::json!({
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "state": state_of(o),
        "events": o
            .events()
            .iter()
            .map(|e| serde_json::json!({"reason": e.reason, "message": e.message}))
            .collect::<Vec<_>>(),
        "status": o.status_json(),
    });
    if let (Some(e), serde_json::Value::Object(p)) = (entry.as_object_mut(), o.plan().to_json()) {
        e.extend(p);
    }
    if let Some(error) = o.error() {
        entry["error"] = serde_json::json!(error.to_string());
    }
    entry
}

/// `Ready=True Ready: …`, the line `apply` prints per object.
fn ready_line(o: &dyn Outcome) -> String {
    let ready = o.conditions().iter().find(|c| c.type_ == "Ready");
    let (state, reason, message) = ready
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
        .unwrap_or(("Unknown", "", ""));
    format!("Ready={state} {reason}: {message}")
}

pub(super) async fn apply(args: ApplyArgs) -> i32 {
    let (loaded, session) = match load_and_connect(&args.files, &args.connection).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    if let Some(em) = &session.emulator {
        eprintln!(
            "using the in-process Cloudflare API emulator at {}",
            em.base_url()
        );
    }
    let options = ConvergeOptions {
        wait: !args.no_wait,
        timeout: args.timeout,
        concurrency: args.concurrency,
        ..Default::default()
    };
    let text = args.output == Output::Text;
    let mut printed: HashMap<String, usize> = HashMap::new();
    let mut progress = Progress::new();
    let outcomes = converge_all(
        &session.reconciler,
        loaded.manifests(),
        &options,
        |_, done| {
            progress.clear();
            if text {
                let mut lines: Vec<(String, &[crate::reconcile::Happening])> = done
                    .workers
                    .iter()
                    .map(|(k, o)| {
                        (
                            format!("{} {k}", manifest::WORKER_KIND),
                            o.events.as_slice(),
                        )
                    })
                    .chain(
                        done.containers
                            .iter()
                            .map(|(k, o)| (k.clone(), o.events.as_slice())),
                    )
                    .collect();
                lines.sort_by(|a, b| a.0.cmp(&b.0));
                for (key, events) in lines {
                    let done = printed.entry(key.clone()).or_default();
                    for e in events.iter().skip(*done) {
                        eprintln!("{key}: {e}");
                    }
                    *done = events.len();
                }
            }
            let steps = done
                .workers
                .iter()
                .map(|(k, o)| {
                    (
                        format!("{} {k}", manifest::WORKER_KIND),
                        step_of(&o.status.conditions, None),
                    )
                })
                .chain(done.containers.iter().map(|(k, o)| {
                    let rollout = o
                        .status
                        .rollout
                        .as_ref()
                        .filter(|r| r.status == crate::spec::RolloutPhase::Progressing)
                        .map(|r| r.progress);
                    (k.clone(), step_of(&o.status.conditions, rollout))
                }));
            progress.show(steps);
        },
    )
    .await;
    progress.clear();
    let mut code = EXIT_OK;
    let mut objects = Vec::new();
    // What counts as done, for either kind. A suspended object is reported, not waited
    // for: nothing was written.
    let mut report = |kind: &str, key: &str, o: &dyn Outcome| {
        let converged = if args.no_wait {
            o.error().is_none() && !o.stalled()
        } else {
            o.ready() || o.suspended()
        };
        if !converged {
            code = EXIT_FAILED;
        }
        if !text {
            objects.push(applied(kind, key, o));
        }
    };
    for w in &loaded.workers {
        let key = w.key();
        let Some(outcome) = outcomes.workers.get(&key) else {
            continue;
        };
        if text {
            println!("{} {key}: {}", manifest::WORKER_KIND, ready_line(outcome));
            if let Some(url) = &outcome.status.url {
                println!("  url: {url}");
            }
        }
        report(manifest::WORKER_KIND, &key, outcome);
    }
    for obj in &loaded.containers {
        let key = obj.key();
        let Some(outcome) = outcomes.containers.get(&key) else {
            continue;
        };
        if text {
            println!("{key}: {}", ready_line(outcome));
            if let Some(image) = &outcome.status.image {
                println!("  image: {image}");
            }
            if let Some(id) = &outcome.status.application_id {
                println!(
                    "  application: {} ({id})",
                    outcome.status.application_name.as_deref().unwrap_or("")
                );
            }
        }
        report("CloudflareContainer", &key, outcome);
    }
    let document = serde_json::json!({
        "apiVersion": APPLY_API_VERSION,
        "converged": code == EXIT_OK,
        "objects": objects,
    });
    match args.output {
        Output::Yaml => print!(
            "{}",
            serde_yaml_ng::to_string(&document).unwrap_or_default()
        ),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&document).unwrap_or_default()
        ),
        Output::Text => {}
    }
    if let Some(em) = session.emulator {
        em.stop().await;
    }
    code
}

/// How often `delete` reads Cloudflare again while it waits.
const DELETE_POLL: Duration = Duration::from_secs(1);

/// Prints a finished delete; `gone` names what earlier calls of this delete already
/// deleted (a delete that waited ends with nothing left to delete).
fn print_deleted(key: &str, what: &str, gone: &[String], deleted: &DeleteOutcome) {
    match deleted {
        DeleteOutcome::Deleted(names) if names.is_empty() && gone.is_empty() => {
            println!("{key}: nothing to delete")
        }
        DeleteOutcome::Deleted(names) => {
            let mut all: Vec<String> = gone.to_vec();
            all.extend(names.iter().filter(|n| !gone.contains(n)).cloned());
            println!("{key}: deleted {what} {}", all.join(", "))
        }
        DeleteOutcome::Orphaned(names) => println!(
            "{key}: deletionPolicy Orphan: left {what} {} in place",
            if names.is_empty() {
                "(none)".into()
            } else {
                names.join(", ")
            }
        ),
        DeleteOutcome::KeptData { script, classes } => println!(
            "{key}: deletionPolicy Delete: left Worker script {script} in place, its Durable Object data kept: the namespaces of {} may hold data, which only deletionPolicy DeleteWithData destroys",
            classes.join(", ")
        ),
        DeleteOutcome::DeletedWithData { script, classes } => println!(
            "{key}: deleted Worker script {script} with force=true (deletionPolicy DeleteWithData): the Durable Object namespaces of {} and ALL THEIR DATA are destroyed",
            classes.join(", ")
        ),
        DeleteOutcome::Waiting { names, on } => {
            println!("{key}: deleting {what} {}: {on}", names.join(", "))
        }
    }
}

/// One object's delete, called again while it waits.
struct Pending<F> {
    key: String,
    what: &'static str,
    delete: F,
    /// Names seen waiting, for the final line.
    seen: Vec<String>,
    waiting: Option<DeleteOutcome>,
}

/// Runs each object's delete until it finishes, all of them together, until
/// `deadline`; prints one line per object. Whether an object is done is read from
/// Cloudflare each time (its delete is called again). `false` when one failed or
/// was still waiting at the deadline.
async fn delete_all<F, Fut>(mut pending: Vec<Pending<F>>, deadline: tokio::time::Instant) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<DeleteOutcome, crate::cloudflare::ApiError>>,
{
    let mut ok = true;
    loop {
        let mut still = Vec::new();
        for mut p in pending {
            match (p.delete)().await {
                Err(e) => {
                    eprintln!("{}: {e}", p.key);
                    ok = false;
                }
                Ok(outcome @ DeleteOutcome::Waiting { .. }) => {
                    // What this object is deleting (not what it waits for).
                    if let DeleteOutcome::Waiting {
                        names,
                        on: WaitingOn::Deletion,
                    } = &outcome
                    {
                        for n in names {
                            if !p.seen.contains(n) {
                                p.seen.push(n.clone());
                            }
                        }
                    }
                    if p.waiting.as_ref() != Some(&outcome) {
                        print_deleted(&p.key, p.what, &[], &outcome);
                    }
                    p.waiting = Some(outcome);
                    still.push(p);
                }
                Ok(outcome) => print_deleted(&p.key, p.what, &p.seen, &outcome),
            }
        }
        if still.is_empty() {
            return ok;
        }
        if tokio::time::Instant::now() + DELETE_POLL > deadline {
            for p in &still {
                if let Some(DeleteOutcome::Waiting { names, on }) = &p.waiting {
                    eprintln!(
                        "{}: timed out (--timeout) while deleting: {} still there: {on}",
                        p.key,
                        names.join(", ")
                    );
                }
            }
            return false;
        }
        tokio::time::sleep(DELETE_POLL).await;
        pending = still;
    }
}

/// Deletes containers first and waits until Cloudflare no longer lists their
/// applications (it deletes asynchronously), then the Workers (whose classes those
/// applications used), all within `--timeout`.
pub(super) async fn delete(args: DeleteArgs) -> i32 {
    let (loaded, session) = match load_and_connect(&args.files, &args.connection).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let deadline = tokio::time::Instant::now() + args.timeout;
    let reconciler = &session.reconciler;
    let containers = loaded
        .containers
        .iter()
        .map(|obj| Pending {
            key: obj.key(),
            what: "application(s)",
            delete: move || reconciler.delete(obj),
            seen: vec![],
            waiting: None,
        })
        .collect();
    let mut ok = delete_all(containers, deadline).await;
    // A Worker's script waits for the applications on its classes: not when one of the
    // containers could not be deleted.
    if ok {
        for w in &loaded.workers {
            if let Some(warning) = w.deletion_warning() {
                eprintln!("{} {}: {warning}", manifest::WORKER_KIND, w.key());
            }
        }
        let workers = loaded
            .workers
            .iter()
            .map(|w| Pending {
                key: format!("{} {}", manifest::WORKER_KIND, w.key()),
                what: "Worker script",
                delete: move || reconciler.delete_worker(w),
                seen: vec![],
                waiting: None,
            })
            .collect();
        ok = delete_all(workers, deadline).await;
    } else if !loaded.workers.is_empty() {
        eprintln!("Worker scripts are not deleted while a container's delete failed");
    }
    if let Some(em) = session.emulator {
        em.stop().await;
    }
    if ok { EXIT_OK } else { EXIT_FAILED }
}

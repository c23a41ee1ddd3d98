//! `flaredock plan`: what would change, for people (text) and for CI (JSON,
//! `--exit-code`).

use super::*;

/// Prints one object's plan.
fn print_plan(out: &mut impl Write, key: &str, plan: &Plan) {
    let _ = writeln!(out, "{key}:");
    if !plan.changes_anything() && plan.blocked.is_none() {
        let _ = writeln!(out, "  no changes");
    }
    for c in &plan.changes {
        let _ = writeln!(out, "  ~ {c}");
    }
    for (i, a) in plan.actions.iter().enumerate() {
        let _ = writeln!(out, "  {}. {a}", i + 1);
    }
    for a in &plan.held {
        let _ = writeln!(out, "  (held) {a}");
    }
    if let Some(b) = &plan.blocked {
        let _ = writeln!(out, "  ! {}: {}", b.reason(), b.message());
    }
}

pub(super) async fn plan(command: PlanCommand) -> i32 {
    let args = &command.args;
    let (loaded, session) = match load_and_connect(&args.files, &args.connection).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let peers = loaded.peers();
    let containers: Vec<&CloudflareContainer> = loaded.containers.iter().collect();
    let mut code = EXIT_OK;
    let mut changes = false;
    let mut objects = Vec::new();
    let mut out = std::io::stdout().lock();
    let text = command.output == PlanOutput::Text;
    // What deleting a Worker would destroy, said in words (deletionPolicy DeleteWithData).
    let warnings: HashMap<String, String> = loaded
        .workers
        .iter()
        .filter_map(|w| w.deletion_warning().map(|m| (w.key(), m)))
        .collect();
    let mut report =
        |kind: &str, key: String, result: Result<Plan, crate::cloudflare::ApiError>| {
            let (namespace, name) = key.split_once('/').unwrap_or(("default", key.as_str()));
            let mut entry = serde_json::json!({"kind": kind, "namespace": namespace, "name": name});
            let shown = if kind == manifest::WORKER_KIND {
                format!("{kind} {key}")
            } else {
                key.clone()
            };
            match result {
                Ok(plan) => {
                    changes |= plan.changes_anything();
                    let warning = (kind == manifest::WORKER_KIND)
                        .then(|| warnings.get(&key))
                        .flatten();
                    if text {
                        print_plan(&mut out, &shown, &plan);
                        if let Some(w) = warning {
                            let _ = writeln!(out, "  ! {w}");
                        }
                    }
                    if let Some(w) = warning {
                        entry["deletionWarning"] = serde_json::json!(w);
                    }
                    if let (Some(e), serde_json::Value::Object(p)) =
                        (entry.as_object_mut(), plan.to_json())
                    {
                        e.extend(p);
                    }
                }
                Err(e) => {
                    if text {
                        let _ = writeln!(out, "{shown}:\n  ! {e}");
                    }
                    entry["error"] = serde_json::json!(e.to_string());
                    code = EXIT_FAILED;
                }
            }
            objects.push(entry);
        };
    for w in &loaded.workers {
        let result = session
            .reconciler
            .preview_worker(w, classes_for(w, &containers), &loaded.data)
            .await;
        report(manifest::WORKER_KIND, w.key(), result);
    }
    for obj in &loaded.containers {
        let result = session
            .reconciler
            .preview(obj, &peers)
            .await
            .map(|(p, _)| p);
        report("CloudflareContainer", obj.key(), result);
    }
    drop(out);
    if command.output == PlanOutput::Json {
        let document = serde_json::json!({
            "apiVersion": "flaredock.dev/plan/v1",
            "changes": changes,
            "objects": objects,
        });
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&document).unwrap_or_default()
        );
    }
    if code == EXIT_OK && command.exit_code && changes {
        return EXIT_CHANGES;
    }
    code
}

//! wrangler's `containers[]` entries as CloudflareContainers, each naming its
//! Durable Object binding and its image.

use serde_json::{Map, Value, json};

use super::keys::{Taken, list, string};
use super::{Findings, object_name};

/// The wrangler image of a container as a flaredock image source: a Cloudflare registry
/// image by its short name (`shop:v1`), another registry's as it is.
fn image_reference(image: &str) -> String {
    let registries = [
        std::env::var("CLOUDFLARE_CONTAINER_REGISTRY").ok(),
        Some(crate::cloudflare::client::CLOUDFLARE_REGISTRY.to_string()),
    ];
    for host in registries.into_iter().flatten() {
        if let Some(rest) = image.strip_prefix(&format!("{host}/")) {
            // `<account id>/name:tag` → `name:tag`.
            return match rest.split_once('/') {
                Some((acct, name))
                    if acct.len() == 32 && acct.chars().all(|c| c.is_ascii_hexdigit()) =>
                {
                    name.to_string()
                }
                _ => rest.to_string(),
            };
        }
    }
    image.to_string()
}

pub(super) struct ContainerContext<'a> {
    pub(super) path: String,
    pub(super) script: &'a str,
    pub(super) top_name: Option<&'a str>,
    pub(super) env: Option<&'a str>,
    pub(super) worker: &'a str,
    pub(super) namespace: &'a str,
    pub(super) logs: bool,
    pub(super) dir: &'a std::path::Path,
}

/// One `containers[]` entry as a CloudflareContainer; `(class, document)`.
pub(super) fn container(
    ctx: &ContainerContext<'_>,
    entry: Value,
    do_bindings: &[(String, Map<String, Value>)],
    f: &mut Findings,
) -> Option<(String, Value)> {
    let mut t = Taken::new(ctx.path.clone(), entry, f)?;
    let Some(class) = string(t.take("class_name")) else {
        f.unsupported(&t.at("class_name"), "missing");
        t.finish(f);
        return None;
    };
    let binding = do_bindings.iter().find(|(_, fields)| {
        fields.get("className").and_then(Value::as_str) == Some(class.as_str())
            && fields
                .get("scriptName")
                .and_then(Value::as_str)
                .is_none_or(|s| s == ctx.script)
    });
    let Some((binding, _)) = binding else {
        f.unsupported(
            &ctx.path,
            &format!("container class {class} has no Durable Object binding (durable_objects.bindings) in this Worker"),
        );
        t.finish(f);
        return None;
    };
    // wrangler's application name: `name`, else `<name>-<class>[-<env>]`.
    let application = match (string(t.take("name")), ctx.top_name) {
        (Some(n), _) => n,
        (None, Some(base)) => {
            let mut n = format!("{base}-{class}");
            if let Some(e) = ctx.env {
                n.push('-');
                n.push_str(e);
            }
            n.to_lowercase().replace(' ', "-")
        }
        (None, None) => {
            f.unsupported(
                &t.at("name"),
                "wrangler needs a name here: containers[].name, or the environment's own name",
            );
            t.finish(f);
            return None;
        }
    };
    let mut spec = Map::new();
    spec.insert("className".into(), json!(class));
    spec.insert("applicationName".into(), json!(application));
    spec.insert("adopt".into(), json!(true));
    spec.insert(
        "worker".into(),
        json!({"name": ctx.worker, "bindingName": binding}),
    );
    let image = string(t.take("image"));
    let build_context = string(t.take("image_build_context"));
    let image_vars = t.take("image_vars");
    match image {
        None => f.unsupported(&t.at("image"), "missing"),
        Some(image) => {
            let file = ctx.dir.join(&image);
            if file.is_file() || image.ends_with("Dockerfile") {
                // A Dockerfile: built by flaredock from the local directory.
                let dockerfile = std::path::absolute(&file).unwrap_or(file);
                let context = match &build_context {
                    Some(c) => std::path::absolute(ctx.dir.join(c)).unwrap_or_default(),
                    None => dockerfile
                        .parent()
                        .map(|p| p.to_path_buf())
                        .unwrap_or_default(),
                };
                let mut build = json!({
                    "context": context.display().to_string(),
                    "dockerfile": dockerfile
                        .strip_prefix(&context)
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| dockerfile.display().to_string()),
                });
                if let Some(v) = image_vars {
                    build["args"] = v;
                }
                spec.insert("build".into(), build);
                f.note(
                    &t.at("image"),
                    "a Dockerfile: spec.build with a local context (built by the command line only)",
                );
            } else {
                spec.insert(
                    "image".into(),
                    json!({"reference": image_reference(&image)}),
                );
                if build_context.is_some() {
                    f.unsupported(&t.at("image_build_context"), "only with a Dockerfile image");
                }
                if image_vars.is_some() {
                    f.unsupported(&t.at("image_vars"), "only with a Dockerfile image");
                }
            }
        }
    }
    let max = t
        .take("max_instances")
        .and_then(|v| v.as_i64())
        .unwrap_or(20);
    spec.insert("maxInstances".into(), json!(max));
    match t.take("instance_type") {
        None => {
            spec.insert("instanceType".into(), json!("lite"));
        }
        Some(Value::String(s)) => match s.as_str() {
            "dev" | "lite" => {
                spec.insert("instanceType".into(), json!("lite"));
            }
            "basic" | "standard-1" | "standard-2" | "standard-3" | "standard-4" => {
                spec.insert("instanceType".into(), json!(s));
            }
            _ => f.unsupported(
                &t.at("instance_type"),
                "an instance type flaredock does not know (deprecated `standard`: use standard-1 or a custom size)",
            ),
        },
        Some(Value::Object(size)) => {
            let num = |k: &str| size.get(k).and_then(Value::as_f64);
            spec.insert(
                "resources".into(),
                json!({
                    "vcpu": num("vcpu").unwrap_or(0.0625),
                    "memoryMib": num("memory_mib").unwrap_or(256.0) as i64,
                    "diskMb": num("disk_mb").unwrap_or(2000.0) as i64,
                }),
            );
        }
        Some(_) => f.unsupported(&t.at("instance_type"), "expected a name or a size"),
    }
    if let Some(p) = string(t.take("scheduling_policy"))
        && p != "default"
    {
        f.unsupported(
            &t.at("scheduling_policy"),
            "only the default scheduling policy is supported",
        );
    }
    if let Some(c) = t.take("constraints")
        && let Some(mut c) = Taken::new(t.at("constraints"), c, f)
    {
        let mut out = Map::new();
        if let Some(r) = c.take("regions") {
            let regions: Vec<Value> = list(&c.at("regions"), r, f)
                .into_iter()
                .filter_map(|r| r.as_str().map(|s| json!(s.to_uppercase())))
                .collect();
            out.insert("regions".into(), Value::Array(regions));
        }
        if let Some(j) = string(c.take("jurisdiction")) {
            out.insert("jurisdiction".into(), json!(j.to_lowercase()));
        }
        c.finish(f);
        if !out.is_empty() {
            spec.insert("constraints".into(), Value::Object(out));
        }
    }
    let mut rollout = Map::new();
    match t.take("rollout_step_percentage") {
        None => {}
        Some(Value::Number(n)) => {
            rollout.insert("stepPercentage".into(), Value::Number(n));
        }
        Some(Value::Array(steps)) => {
            let steps: Vec<i64> = steps.iter().filter_map(Value::as_i64).collect();
            let fallback: &[i64] = if max < 2 { &[100] } else { &[10, 100] };
            if steps == [100] {
                rollout.insert("stepPercentage".into(), json!(100));
            } else if steps != fallback {
                f.unsupported(
                    &t.at("rollout_step_percentage"),
                    "a list of cumulative steps other than wrangler's default (flaredock takes one step size)",
                );
            }
        }
        Some(_) => f.unsupported(&t.at("rollout_step_percentage"), "expected a number"),
    }
    if let Some(k) = string(t.take("rollout_kind")) {
        match k.as_str() {
            "full_auto" | "full_manual" => {
                rollout.insert("kind".into(), json!(k));
            }
            _ => f.unsupported(&t.at("rollout_kind"), "flaredock always rolls out changes"),
        }
    }
    if let Some(g) = t.take("rollout_active_grace_period") {
        rollout.insert("activeGracePeriodSeconds".into(), g);
    }
    if !rollout.is_empty() {
        spec.insert("rollout".into(), Value::Object(rollout));
    }
    if ctx.logs {
        spec.insert("observability".into(), json!({"logs": true}));
    }
    t.finish(f);
    let doc = json!({
        "apiVersion": crate::manifest::API_VERSION,
        "kind": crate::manifest::KIND,
        "metadata": {"name": object_name(&application), "namespace": ctx.namespace},
        "spec": spec,
    });
    Some((class, doc))
}

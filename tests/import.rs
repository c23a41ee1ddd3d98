//! `flaredock import`: wrangler projects (tests/import/) printed as manifests, which
//! are then read by the loader `plan` and `apply` use. Unsupported keys are listed by
//! path and refused (or allowed), an import the main module cannot resolve is refused
//! naming the file, secrets become secretKeyRefs, large modules a ConfigMap.

use std::path::{Path, PathBuf};
use std::process::Command;

use flaredock::manifest;
use flaredock::spec::worker_settings::PlacementMode;
use flaredock::spec::{CloudflareContainer, CloudflareWorker, InstanceTypeName, Region};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/import")
        .join(name)
}

/// Runs `flaredock import ARGS` in `dir`: exit code, stdout, stderr.
fn import(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .arg("import")
        .args(args)
        .current_dir(dir)
        .env_remove("CLOUDFLARE_CONTAINER_REGISTRY")
        .output()
        .expect("flaredock runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The printed manifests through the loader `plan` uses (plus `extra` documents).
fn load(yaml: &str, extra: &str) -> (Vec<CloudflareWorker>, Vec<CloudflareContainer>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.yaml");
    std::fs::write(&file, format!("{yaml}{extra}")).unwrap();
    let loaded = manifest::load(&[file]);
    assert!(
        loaded.errors.is_empty(),
        "{:?}\n{yaml}",
        loaded
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    );
    (
        loaded.workers.into_iter().map(|l| l.object).collect(),
        loaded.objects.into_iter().map(|l| l.object).collect(),
    )
}

fn binding<'a>(w: &'a CloudflareWorker, name: &str) -> &'a flaredock::spec::WorkerBinding {
    w.spec
        .bindings
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("binding {name}: {:?}", w.spec.bindings))
}

#[test]
fn a_jsonc_project_with_a_container_and_every_binding_family() {
    let (code, out, err) = import(&fixture("jsonc"), &["--namespace", "shop"]);
    assert_eq!(code, 0, "{err}");
    let (workers, containers) = load(&out, "");
    assert_eq!(workers.len(), 1);
    let w = &workers[0];
    assert_eq!(w.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(w.script_name(), "shop");
    assert!(w.spec.adopt);
    assert_eq!(w.spec.compatibility_date, "2026-04-01");
    assert_eq!(w.spec.compatibility_flags, vec!["nodejs_compat"]);
    assert_eq!(
        w.spec.vars.get("GREETING").map(String::as_str),
        Some("hello")
    );
    assert!(!w.spec.workers_dev);
    assert_eq!(w.spec.crons, vec!["*/5 * * * *"]);
    assert_eq!(w.spec.routes[0].pattern, "shop.example.com/*");
    assert_eq!(w.spec.routes[0].zone_name.as_deref(), Some("example.com"));
    assert_eq!(w.spec.domains[0].hostname, "api.example.com");
    let field = |name: &str, member: &str, key: &str| -> String {
        let b = binding(w, name);
        let (m, _, fields) = b.kinds()[0];
        assert_eq!(m, member, "{name}");
        fields[key].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(
        field("CACHE", "kvNamespace", "namespaceId"),
        "0f2ac74b498b48028cb68387c421e279"
    );
    assert_eq!(field("ASSETS", "r2Bucket", "bucketName"), "shop-assets");
    assert_eq!(
        field("DB", "d1", "databaseId"),
        "5b1f2c3d-0000-4000-8000-000000000001"
    );
    assert_eq!(field("JOBS", "queue", "queueName"), "shop-jobs");
    assert_eq!(field("AUTH", "service", "entrypoint"), "Auth");
    assert_eq!(
        field("PG", "hyperdrive", "id"),
        "9a8b7c6d5e4f40312233445566778899"
    );
    assert_eq!(field("EVENTS", "analyticsEngine", "dataset"), "shop_events");
    assert_eq!(field("INDEX", "vectorize", "indexName"), "products");
    assert_eq!(field("ROOMS", "durableObject", "className"), "Room");
    assert_eq!(field("COUNTER", "durableObject", "scriptName"), "counters");
    assert!(binding(w, "AI").ai.is_some());
    assert_eq!(
        binding(w, "LIMITS").json.as_ref().unwrap()["json"]["max"],
        3,
        "a JSON var is a json binding"
    );
    assert!(
        !w.spec.bindings.iter().any(|b| b.name == "SHOP"),
        "the container class's binding comes from its CloudflareContainer"
    );
    let inline = w.spec.source.inline.as_ref().expect("inline modules");
    assert_eq!(inline.main_module, "index.js");
    assert!(inline.modules["index.js"].contains("export class Shop"));

    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c.spec.class_name, "Shop");
    assert_eq!(c.spec.application_name.as_deref(), Some("shop-shop"));
    assert!(c.spec.adopt);
    assert_eq!(
        c.spec.image.as_ref().unwrap().reference.as_deref(),
        Some("shop:v1"),
        "a Cloudflare registry image by its short name"
    );
    assert_eq!(c.spec.instance_type, Some(InstanceTypeName::Standard1));
    assert_eq!(c.spec.max_instances, 5);
    assert_eq!(c.spec.rollout.step_percentage, Some(25));
    assert_eq!(c.spec.rollout.active_grace_period_seconds, 30);
    assert_eq!(
        c.spec.constraints.as_ref().unwrap().regions,
        vec![Region::WEUR, Region::ENAM]
    );
    assert_eq!(c.spec.worker.name.as_deref(), Some("shop"));
    assert_eq!(c.spec.worker.binding_name.as_deref(), Some("SHOP"));
    // Nothing dropped silently: the dev-only keys and migrations are noted.
    assert!(err.contains("kv_namespaces[0].preview_id"), "{err}");
    assert!(err.contains("note: migrations"), "{err}");
    assert!(!err.contains("unsupported"), "{err}");
}

#[test]
fn a_toml_project_with_environments() {
    let dir = fixture("toml");
    // Top level: no environment applied.
    let (code, out, err) = import(&dir, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("env: not applied without --env"), "{err}");
    let (w, _) = load(&out, "");
    assert_eq!(w[0].script_name(), "greeter");
    assert_eq!(w[0].spec.vars["GREETING"], "hello");

    // staging: `<name>-<env>`, its own vars and KV, workers_dev inherited.
    let (code, out, err) = import(&dir, &["--env", "staging"]);
    assert_eq!(code, 0, "{err}");
    let (w, _) = load(&out, "");
    let w = &w[0];
    assert_eq!(w.script_name(), "greeter-staging");
    assert_eq!(w.metadata.name.as_deref(), Some("greeter-staging"));
    assert_eq!(w.spec.vars["GREETING"], "hello from staging");
    assert_eq!(
        binding(w, "CACHE").kv_namespace.as_ref().unwrap()["namespaceId"],
        "22222222222222222222222222222222"
    );
    assert!(!w.spec.workers_dev, "workers_dev is inherited");
    assert_eq!(w.spec.routes[0].pattern, "staging.example.com/*");

    // production: its own name; vars and KV are not inherited (as wrangler).
    let (code, out, err) = import(&dir, &["-e", "production"]);
    assert_eq!(code, 0, "{err}");
    let (w, _) = load(&out, "");
    let w = &w[0];
    assert_eq!(w.script_name(), "greeter-prod");
    assert!(w.spec.vars.is_empty(), "{:?}", w.spec.vars);
    assert!(w.spec.bindings.is_empty(), "{:?}", w.spec.bindings);
    assert!(w.spec.workers_dev);
    assert!(
        err.contains("vars: set at the top level but not in env.production"),
        "{err}"
    );

    let (code, out, err) = import(&dir, &["--env", "nope"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(
        err.contains("environment nope is not in the configuration"),
        "{err}"
    );
}

#[test]
fn unsupported_keys_are_listed_by_path_and_refused_unless_allowed() {
    let dir = fixture("unsupported");
    let (code, out, err) = import(&dir, &["--env", "staging"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "nothing printed: {out}");
    for path in [
        "unsupported: assets:",
        "unsupported: observability.traces:",
        "unsupported: env.staging.placement.hint:",
    ] {
        assert!(err.contains(path), "{path} in {err}");
    }
    let (code, out, err) = import(&dir, &["--env", "staging", "--allow-unsupported"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("unsupported: env.staging.placement.hint:"),
        "{err}"
    );
    let (w, _) = load(&out, "");
    assert_eq!(w[0].script_name(), "assets-site-staging");
    assert_eq!(w[0].spec.vars["A"], "b");
    // What the fields hold is mapped all the same.
    assert!(w[0].spec.observability.as_ref().is_some_and(|o| o.enabled));
    assert_eq!(
        w[0].spec.placement.as_ref().and_then(|p| p.mode),
        Some(PlacementMode::Smart)
    );
}

#[test]
fn an_import_the_main_module_cannot_resolve_is_refused_naming_the_file() {
    let dir = fixture("unresolved");
    let (code, out, err) = import(&dir, &["wrangler.json"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("greet.js"), "{err}");
    assert!(err.contains("--bundle"), "{err}");

    // The bundle wrangler writes resolves it.
    let bundle = tempfile::tempdir().unwrap();
    std::fs::write(
        bundle.path().join("index.js"),
        "var greet = () => \"hi\";\nexport default { fetch() { return new Response(greet()); } };\n",
    )
    .unwrap();
    std::fs::write(bundle.path().join("index.js.map"), "{}").unwrap();
    std::fs::write(bundle.path().join("README.md"), "wrangler's").unwrap();
    let (code, out, err) = import(
        &dir,
        &["--bundle", bundle.path().to_str().unwrap(), "wrangler.json"],
    );
    assert_eq!(code, 0, "{err}");
    let (w, _) = load(&out, "");
    let inline = w[0].spec.source.inline.as_ref().unwrap();
    assert_eq!(
        inline.modules.keys().collect::<Vec<_>>(),
        vec!["index.js"],
        "source maps and the README are not modules"
    );
    assert!(inline.modules["index.js"].contains("var greet"));
}

#[test]
fn declared_secrets_become_secret_key_refs_with_a_comment() {
    let (code, out, err) = import(&fixture("secrets"), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("# spec.secrets name Secret vault-secrets")
            && out.contains("kubectl create secret generic vault-secrets"),
        "{out}"
    );
    // Without the Secret the loader refuses the Worker; with it, it loads.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("out.yaml"), &out).unwrap();
    assert!(
        !manifest::load(&[dir.path().join("out.yaml")])
            .errors
            .is_empty()
    );
    let secret = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: vault-secrets, namespace: default}\nstringData: {API_KEY: a, DB_PASSWORD: b}\n";
    let (w, _) = load(&out, secret);
    let refs: Vec<(&str, &str, &str)> = w[0]
        .spec
        .secrets
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.secret_key_ref.name.as_str(),
                s.secret_key_ref.key.as_str(),
            )
        })
        .collect();
    assert_eq!(
        refs,
        vec![
            ("API_KEY", "vault-secrets", "API_KEY"),
            ("DB_PASSWORD", "vault-secrets", "DB_PASSWORD")
        ]
    );
}

#[test]
fn a_large_module_goes_to_a_config_map() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wrangler.json"),
        r#"{"name": "big", "main": "index.js", "compatibility_date": "2026-04-01"}"#,
    )
    .unwrap();
    let filler = format!("// {}\n", "x".repeat(200));
    let body = format!(
        "{}export default {{ fetch() {{ return new Response('big'); }} }};\n",
        filler.repeat(1000)
    );
    assert!(body.len() > flaredock::import::INLINE_LIMIT);
    std::fs::write(dir.path().join("index.js"), &body).unwrap();
    let (code, out, err) = import(dir.path(), &[]);
    assert_eq!(code, 0, "{err}");
    let (w, _) = load(&out, "");
    let cm = w[0]
        .spec
        .source
        .config_map_ref
        .as_ref()
        .expect("configMapRef");
    assert_eq!(cm.name, "big-modules");
    assert_eq!(cm.main_module, "index.js");
    let loaded = {
        let f = dir.path().join("out.yaml");
        std::fs::write(&f, &out).unwrap();
        manifest::load(&[f])
    };
    let data = loaded
        .data
        .config_maps
        .get("default/big-modules")
        .expect("the ConfigMap is among the documents");
    assert_eq!(data["index.js"], body.as_bytes());

    // A small one stays inline.
    std::fs::write(dir.path().join("index.js"), "export default {};\n").unwrap();
    let (code, out, _) = import(dir.path(), &[]);
    assert_eq!(code, 0);
    assert!(!out.contains("kind: ConfigMap"), "{out}");
}

#[test]
fn no_configuration_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = import(dir.path(), &[]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(
        err.contains("no wrangler.jsonc, wrangler.json or wrangler.toml"),
        "{err}"
    );
}

#[test]
fn the_example_wrangler_project_imports() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wrangler");
    let out = Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["import"])
        .current_dir(&dir)
        .env("CLOUDFLARE_CONTAINER_REGISTRY", "127.0.0.1:8787")
        .output()
        .expect("flaredock runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    let (w, c) = load(&stdout, "");
    assert_eq!(w[0].script_name(), "shop");
    assert!(w[0].spec.workers_dev, "wrangler's default without routes");
    assert_eq!(c[0].spec.worker.binding_name.as_deref(), Some("SHOP"));
    assert_eq!(
        c[0].spec.image.as_ref().unwrap().reference.as_deref(),
        Some("hello:v1"),
        "an image of the registry CLOUDFLARE_CONTAINER_REGISTRY names, by its short name"
    );
}

#[test]
fn container_applications_are_named_as_wrangler_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let env_part = |name: &str| {
        format!(
            r#"{{{name}"durable_objects": {{"bindings": [{{"name": "SHOP", "class_name": "Shop"}}]}},
                "containers": [{{"class_name": "Shop", "image": "docker.io/acme/shop:1"}}]}}"#
        )
    };
    std::fs::write(
        dir.path().join("wrangler.json"),
        format!(
            r#"{{"name": "shop", "main": "index.js", "compatibility_date": "2026-04-01",
                "durable_objects": {{"bindings": [{{"name": "SHOP", "class_name": "Shop"}}]}},
                "containers": [{{"class_name": "Shop", "image": "docker.io/acme/shop:1"}}],
                "env": {{"staging": {}, "bare": {}}}}}"#,
            env_part(r#""name": "shop-stg", "#),
            env_part("")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("index.js"),
        "export class Shop {}\nexport default {};\n",
    )
    .unwrap();
    let application = |args: &[&str]| {
        let (code, out, err) = import(dir.path(), args);
        assert_eq!(code, 0, "{err}");
        let (_, c) = load(&out, "");
        (
            c[0].spec.application_name.clone().unwrap(),
            c[0].spec.image.as_ref().unwrap().reference.clone().unwrap(),
        )
    };
    assert_eq!(
        application(&[]),
        ("shop-shop".into(), "docker.io/acme/shop:1".into()),
        "another registry's image is kept as it is"
    );
    assert_eq!(
        application(&["--env", "staging"]).0,
        "shop-stg-shop-staging"
    );
    // An environment without its own name: wrangler needs the container's name.
    let (code, _, err) = import(dir.path(), &["--env", "bare"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unsupported: env.bare.containers[0].name"),
        "{err}"
    );
}

/// Writes `wrangler.json` (with `extra` top-level members) and `index.js` and imports it.
fn import_json(extra: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wrangler.json"),
        format!(
            r#"{{"name": "shop", "main": "index.js", "compatibility_date": "2026-04-01", {extra}}}"#
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("index.js"), "export default {};\n").unwrap();
    import(dir.path(), args)
}

#[test]
fn observability_placement_limits_and_tail_consumers_are_mapped() {
    let (code, out, err) = import_json(
        r#""observability": {"enabled": true, "head_sampling_rate": 0.5,
              "logs": {"enabled": true, "invocation_logs": false, "head_sampling_rate": 0.25, "persist": true}},
            "placement": {"region": "aws:us-east-1"},
            "limits": {"cpu_ms": 50, "subrequests": 200},
            "tail_consumers": [{"service": "tail-a"}, {"service": "tail-b", "environment": "production"}]"#,
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("unsupported"), "{err}");
    let (w, _) = load(&out, "");
    let s = &w[0].spec;
    let o = s.observability.as_ref().expect("observability");
    assert!(o.enabled);
    assert_eq!(o.head_sampling_rate, Some(0.5));
    let logs = o.logs.as_ref().expect("logs");
    assert!(logs.enabled);
    assert!(!logs.invocation_logs);
    assert_eq!(logs.head_sampling_rate, Some(0.25));
    let p = s.placement.as_ref().expect("placement");
    assert_eq!(p.mode, Some(PlacementMode::Targeted));
    assert_eq!(p.region.as_deref(), Some("aws:us-east-1"));
    assert_eq!(p.host, None);
    let l = s.limits.as_ref().expect("limits");
    assert_eq!((l.cpu_ms, l.subrequests), (Some(50), Some(200)));
    let tails: Vec<(&str, Option<&str>)> = s
        .tail_consumers
        .iter()
        .map(|t| (t.service.as_str(), t.environment.as_deref()))
        .collect();
    assert_eq!(
        tails,
        vec![("tail-a", None), ("tail-b", Some("production"))]
    );

    // Smart Placement; logs without invocation_logs are invocation logs (wrangler's
    // default).
    let (code, out, err) = import_json(
        r#""observability": {"enabled": false, "logs": {"enabled": true}},
            "placement": {"mode": "smart"}, "limits": {"cpu_ms": 30000}"#,
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let (w, _) = load(&out, "");
    let s = &w[0].spec;
    assert_eq!(
        s.placement.as_ref().and_then(|p| p.mode),
        Some(PlacementMode::Smart)
    );
    let o = s.observability.as_ref().expect("observability");
    assert!(!o.enabled);
    assert!(
        o.logs
            .as_ref()
            .is_some_and(|l| l.enabled && l.invocation_logs)
    );
    assert_eq!(s.limits.as_ref().and_then(|l| l.subrequests), None);

    // Placement mode off is no placement at all (wrangler uploads none).
    let (code, out, err) = import_json(r#""placement": {"mode": "off"}"#, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("placement: mode off"), "{err}");
    assert_eq!(load(&out, "").0[0].spec.placement, None);
}

#[test]
fn settings_wrangler_allows_but_the_spec_cannot_hold_are_listed_by_path() {
    let (code, out, err) = import_json(
        r#""observability": {"logs": {"enabled": true, "destinations": ["sink"], "persist": false},
              "traces": {"enabled": true}, "head_sampling_rate": 2},
            "placement": {"mode": "smart", "hint": "aws:us-east-1"},
            "limits": {"cpu_ms": 1.5, "subrequests": 10, "memory": 3},
            "tail_consumers": [{"service": "t", "namespace": "n"}]"#,
        &["--allow-unsupported"],
    );
    assert_eq!(code, 0, "{err}");
    for path in [
        "unsupported: observability.enabled:",
        "unsupported: observability.head_sampling_rate:",
        "unsupported: observability.logs.destinations:",
        "unsupported: observability.logs.persist:",
        "unsupported: observability.traces:",
        "unsupported: placement.hint:",
        "unsupported: limits.cpu_ms:",
        "unsupported: limits.memory:",
        "unsupported: tail_consumers[0].namespace:",
    ] {
        assert!(err.contains(path), "{path} in {err}");
    }
    let (w, _) = load(&out, "");
    let s = &w[0].spec;
    assert_eq!(s.observability, None, "no enabled: no observability");
    assert_eq!(
        s.placement.as_ref().and_then(|p| p.mode),
        Some(PlacementMode::Smart)
    );
    let l = s.limits.as_ref().expect("limits");
    assert_eq!((l.cpu_ms, l.subrequests), (None, Some(10)));
    assert_eq!(s.tail_consumers.len(), 1);
    assert_eq!(s.tail_consumers[0].namespace, None);

    // Two targets: wrangler refuses them, and so does the import.
    let (code, _, err) = import_json(
        r#""placement": {"region": "aws:us-east-1", "host": "db:5432"}"#,
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("unsupported: placement:"), "{err}");
}

//! The whole-Worker example (`examples/whole-worker/`, issue 21) end to end: on a fresh
//! emulator, its storage is created through Cloudflare's endpoints as its README says,
//! the directory is applied with the `flaredock` binary, and each part is read back
//! through the official endpoints: the script settings (every binding by name and
//! value, compatibility, observability, placement, limits, tail consumers), the
//! workers.dev subdomain, the zone route, the custom domain, the schedules, the
//! container application and its Durable Object namespace. The Worker answers at its
//! workers.dev host (workerd); a second apply writes nothing; `delete` removes the route
//! and the domain it made.
//!
//! Needs workerd (`npm install -g workerd@1.20260426.1`, or `FLAREDOCK_WORKERD`).

mod common;

use serde_json::{Value, json};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/whole-worker");

fn workerd() -> std::path::PathBuf {
    flaredock::emulator::workerd::locate().unwrap_or_else(|| {
        panic!(
            "this test needs workerd: `npm install -g workerd@1.20260426.1` (scripts/test.sh installs it), or set FLAREDOCK_WORKERD=/path/to/workerd"
        )
    })
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// `METHOD {base}/accounts/{id}/{path}` (or `/{path}` when it starts with `zones/`),
/// as an API client would call it: status and JSON answer.
async fn call(em: &common::Emulator, method: &str, path: &str, body: Option<Value>) -> Value {
    let url = if path.starts_with("zones") {
        format!("{}/{path}", em.base_url())
    } else {
        format!("{}/accounts/{}/{path}", em.base_url(), em.account_id())
    };
    let mut req = http()
        .request(method.parse().unwrap(), url)
        .bearer_auth(em.api_token());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{method} {path}: {answer}");
    assert_eq!(answer["success"], true, "{method} {path}: {answer}");
    answer["result"].clone()
}

/// A request to the Worker at `host`, through the emulator's listener: status, body.
async fn visit(em: &common::Emulator, host: &str, path: &str) -> (u16, String) {
    common::visit(em, host, path).await
}

/// The example's binding `name` field `field` (what its README says the ids are).
fn example_binding_field(name: &str, kind: &str, field: &str) -> String {
    let loaded = flaredock::manifest::load(&[EXAMPLE.into()]);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let w = loaded
        .workers
        .iter()
        .find(|w| w.object.script_name() == "storefront")
        .expect("the storefront Worker");
    let b = w
        .object
        .spec
        .bindings
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("binding {name}"));
    let (_, _, fields) = b.kinds()[0];
    assert_eq!(b.kinds()[0].1, kind);
    fields[field].as_str().expect("a string").to_string()
}

/// `(name → binding)` of the live script settings.
fn by_name(settings: &Value) -> std::collections::BTreeMap<String, Value> {
    settings["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .map(|b| (b["name"].as_str().unwrap().to_string(), b.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_worker_example_is_ready_reads_back_answers_and_re_applies_without_writes() {
    let bin = workerd();
    let em = common::start_emulator(move |c| c.workerd = Some(bin)).await;
    let client = common::client_for(&em);

    // The storage its bindings name, created through the official endpoints in the
    // README's order: a fresh emulator gives them the ids the example holds.
    let kv = call(
        &em,
        "POST",
        "storage/kv/namespaces",
        Some(json!({"title": "storefront-cache"})),
    )
    .await;
    call(
        &em,
        "POST",
        "r2/buckets",
        Some(json!({"name": "storefront-assets"})),
    )
    .await;
    let d1 = call(
        &em,
        "POST",
        "d1/database",
        Some(json!({"name": "storefront-db"})),
    )
    .await;
    call(
        &em,
        "POST",
        "queues",
        Some(json!({"queue_name": "storefront-jobs"})),
    )
    .await;
    let kv_id = kv["id"].as_str().unwrap().to_string();
    let d1_id = d1["uuid"].as_str().unwrap().to_string();
    assert_eq!(
        kv_id,
        example_binding_field("CACHE", "kv_namespace", "namespaceId")
    );
    assert_eq!(d1_id, example_binding_field("DB", "d1", "databaseId"));

    // Apply the directory as it is. The service binding's Worker `auth` is in it too.
    let (code, out, err) = common::flaredock_cli(&em, ["apply", "--timeout", "60s", "-f", EXAMPLE]);
    assert_eq!(code, Some(0), "{out}{err}");
    for ready in [
        "CloudflareWorker storefront/auth: Ready=True",
        "CloudflareWorker storefront/storefront: Ready=True",
        "storefront/checkout: Ready=True",
        "url: https://storefront.flaredock.workers.dev",
    ] {
        assert!(out.contains(ready), "{ready}: {out}");
    }

    // ---- each part, read back through the official endpoints ----
    let settings = call(&em, "GET", "workers/scripts/storefront/settings", None).await;
    let live = by_name(&settings);
    let expected = [
        json!({"type": "plain_text", "name": "GREETING", "text": "welcome to the storefront"}),
        json!({"type": "secret_text", "name": "API_KEY"}),
        json!({"type": "kv_namespace", "name": "CACHE", "namespace_id": kv_id}),
        json!({"type": "r2_bucket", "name": "ASSETS_BUCKET", "bucket_name": "storefront-assets"}),
        json!({"type": "d1", "name": "DB", "database_id": d1_id}),
        json!({"type": "queue", "name": "JOBS", "queue_name": "storefront-jobs"}),
        json!({"type": "service", "name": "AUTH", "service": "auth"}),
        json!({"type": "durable_object_namespace", "name": "COUNTER", "class_name": "Counter"}),
        json!({"type": "durable_object_namespace", "name": "CHECKOUT", "class_name": "Checkout"}),
        json!({"type": "ai", "name": "AI"}),
        json!({"type": "analytics_engine", "name": "EVENTS", "dataset": "storefront_events"}),
        json!({"type": "browser", "name": "BROWSER"}),
        json!({"type": "images", "name": "IMAGES"}),
        json!({"type": "media", "name": "MEDIA"}),
        json!({"type": "version_metadata", "name": "VERSION"}),
        json!({"type": "json", "name": "SETTINGS", "json": {"currency": "EUR", "pageSize": 24}}),
        json!({"type": "ratelimit", "name": "LIMITER", "namespace_id": "1001", "simple": {"limit": 100, "period": 60}}),
        json!({"type": "send_email", "name": "MAILER", "allowed_destination_addresses": ["orders@example.com"]}),
    ];
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        {
            let mut names: Vec<&str> = expected
                .iter()
                .map(|b| b["name"].as_str().unwrap())
                .collect();
            names.sort();
            names
        },
        "{settings:#}"
    );
    for want in &expected {
        let got = &live[want["name"].as_str().unwrap()];
        for (k, v) in want.as_object().unwrap() {
            assert_eq!(&got[k], v, "binding {}: {got}", want["name"]);
        }
    }
    // A secret's value is never shown.
    assert!(!settings.to_string().contains("replace-me"), "{settings:#}");
    assert_eq!(settings["compatibility_date"], "2026-06-01");
    assert_eq!(settings["compatibility_flags"], json!(["nodejs_compat"]));
    assert_eq!(
        settings["observability"],
        json!({"enabled": true, "head_sampling_rate": 1.0, "logs": {"enabled": true, "invocation_logs": true}}),
        "{settings:#}"
    );
    assert_eq!(settings["placement"]["mode"], "smart", "{settings:#}");
    assert_eq!(settings["limits"], json!({"cpu_ms": 50}), "{settings:#}");
    assert_eq!(
        settings["tail_consumers"],
        json!([{"service": "auth"}]),
        "{settings:#}"
    );

    // workers.dev: on for the storefront, off for auth (workersDev: false).
    assert_eq!(
        call(&em, "GET", "workers/scripts/storefront/subdomain", None).await["enabled"],
        true
    );
    assert_eq!(
        call(&em, "GET", "workers/scripts/auth/subdomain", None).await["enabled"],
        false
    );
    assert_eq!(
        call(&em, "GET", "workers/subdomain", None).await["subdomain"],
        "flaredock"
    );
    // Schedules.
    let schedules = call(&em, "GET", "workers/scripts/storefront/schedules", None).await;
    let crons: Vec<&str> = schedules["schedules"]
        .as_array()
        .expect("schedules")
        .iter()
        .map(|s| s["cron"].as_str().unwrap())
        .collect();
    assert_eq!(crons, ["*/5 * * * *"]);
    // The zone route.
    let zones = call(&em, "GET", "zones?name=example.com", None).await;
    let zone = zones[0]["id"].as_str().expect("the zone").to_string();
    let routes = call(&em, "GET", &format!("zones/{zone}/workers/routes"), None).await;
    let routes = routes.as_array().expect("routes");
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0]["pattern"], "storefront.example.com/*");
    assert_eq!(routes[0]["script"], "storefront");
    // The custom domain.
    let domains = call(&em, "GET", "workers/domains", None).await;
    let domains = domains.as_array().expect("domains");
    assert_eq!(domains.len(), 1, "{domains:?}");
    assert_eq!(domains[0]["hostname"], "shop-api.example.com");
    assert_eq!(domains[0]["service"], "storefront");
    assert_eq!(domains[0]["zone_id"], zone.as_str());
    // The container application, on the Checkout class's Durable Object namespace; the
    // Counter class has its namespace too (migrated, no container).
    let namespaces = client.list_namespaces().await.unwrap();
    let namespace_of = |class: &str| {
        namespaces
            .iter()
            .find(|n| {
                n.script.as_deref() == Some("storefront") && n.class.as_deref() == Some(class)
            })
            .unwrap_or_else(|| panic!("no namespace for {class}: {namespaces:?}"))
            .id
            .clone()
    };
    let checkout_ns = namespace_of("Checkout");
    let _counter_ns = namespace_of("Counter");
    let apps = client.list_applications().await.unwrap();
    assert_eq!(apps.len(), 1, "{apps:?}");
    let app = &apps[0];
    assert_eq!(app.name, "checkout");
    assert_eq!(app.namespace_id(), Some(checkout_ns.as_str()));
    assert_eq!(app.max_instances, Some(3));
    assert!(
        app.configuration.image.contains("/hello@sha256:"),
        "deployed by digest: {}",
        app.configuration.image
    );

    // ---- the Worker answers at its workers.dev host (workerd) ----
    let (status, body) = visit(&em, "storefront.flaredock.workers.dev", "/").await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["greeting"], "welcome to the storefront");
    assert_eq!(answer["apiKeySet"], true);
    assert_eq!(
        answer["settings"],
        json!({"currency": "EUR", "pageSize": 24})
    );
    assert_eq!(
        answer["auth"], "auth: ok",
        "the service binding reaches auth"
    );
    assert_eq!(answer["visits"], 1);
    let names: Vec<&str> = answer["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for bound in [
        "API_KEY", "AUTH", "CHECKOUT", "COUNTER", "GREETING", "SETTINGS",
    ] {
        assert!(names.contains(&bound), "{bound} in {names:?}");
    }
    // The Counter Durable Object keeps its storage; route and custom domain reach the
    // same Worker.
    let (_, body) = visit(&em, "storefront.example.com", "/any").await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["visits"], 2);
    let (_, body) = visit(&em, "shop-api.example.com", "/").await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["visits"], 3);
    // The container class reaches the emulator's container runtime, which pulls the demo
    // image of its application and finds nothing to run in it (tests/container_serve.rs
    // serves from a real image).
    let (status, body) = visit(&em, "storefront.flaredock.workers.dev", "/checkout").await;
    assert_eq!(status, 503);
    assert!(
        body.starts_with(&format!(
            "the container image {}/{}/hello@sha256:",
            em.registry_host(),
            em.account_id()
        )) && body.ends_with(
            " has no Entrypoint or Cmd and start() gave no entrypoint: nothing to run\n"
        ),
        "{body}"
    );

    // ---- a second apply: zero writes ----
    em.shared.clear_requests();
    let (code, out, err) = common::flaredock_cli(&em, ["apply", "--timeout", "60s", "-f", EXAMPLE]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("CloudflareWorker storefront/storefront: Ready=True"),
        "{out}"
    );
    assert_eq!(
        common::cloudflare_writes(&em),
        Vec::<String>::new(),
        "{out}"
    );
    let reads = em.shared.requests().len();
    eprintln!("re-apply of the example: {reads} API requests, 0 writes");

    // ---- delete: the route and the domain flaredock made go; the scripts stay ----
    let (code, out, err) =
        common::flaredock_cli(&em, ["delete", "--timeout", "60s", "-f", EXAMPLE]);
    assert_eq!(code, Some(0), "{out}{err}");
    let routes = call(&em, "GET", &format!("zones/{zone}/workers/routes"), None).await;
    assert_eq!(routes, json!([]), "{out}");
    let domains = call(&em, "GET", "workers/domains", None).await;
    assert_eq!(domains, json!([]), "{out}");
    assert!(
        client.list_applications().await.unwrap().is_empty(),
        "{out}"
    );
    let scripts: Vec<String> = client
        .list_scripts()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert!(
        scripts.iter().any(|s| s == "storefront") && scripts.iter().any(|s| s == "auth"),
        "deletionPolicy Orphan keeps the scripts: {scripts:?}"
    );
    em.stop().await;
}

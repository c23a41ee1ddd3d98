//! The emulator runs what it is given: uploads are loaded by workerd (Cloudflare's own
//! runtime), refused with the runtime's message when they do not start, their exports
//! learnt from the runtime; Workers are served at their workers.dev host, routes and
//! custom domains, with their bindings and Durable Object storage.
//!
//! These tests need workerd (`npm install -g workerd@1.20260426.1`, which
//! `scripts/test.sh` does, or `FLAREDOCK_WORKERD`); without it they fail saying so.

mod common;

use std::path::PathBuf;

use serde_json::{Value, json};

fn workerd() -> PathBuf {
    flaredock::emulator::workerd::locate().unwrap_or_else(|| {
        panic!(
            "these tests need workerd: `npm install -g workerd@1.20260426.1` (scripts/test.sh installs it), or set FLAREDOCK_WORKERD=/path/to/workerd"
        )
    })
}

async fn emulator() -> common::Emulator {
    let bin = workerd();
    common::start_emulator(move |c| c.workerd = Some(bin)).await
}

/// Uploads `modules` (the first is the main module) with `metadata` merged into
/// `main_module`; status and body.
async fn upload(
    em: &common::Emulator,
    name: &str,
    metadata: Value,
    modules: &[(&str, &str)],
) -> (u16, Value) {
    let mut meta = json!({"main_module": modules[0].0, "compatibility_date": "2026-04-01"});
    if let (Some(m), Some(extra)) = (meta.as_object_mut(), metadata.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    let mut form = reqwest::multipart::Form::new().part(
        "metadata",
        reqwest::multipart::Part::text(meta.to_string())
            .mime_str("application/json")
            .unwrap(),
    );
    for (file, code) in modules {
        form = form.part(
            file.to_string(),
            reqwest::multipart::Part::text(code.to_string())
                .file_name(file.to_string())
                .mime_str("application/javascript+module")
                .unwrap(),
        );
    }
    let r = reqwest::Client::new()
        .put(format!(
            "{}/accounts/{}/workers/scripts/{name}",
            em.base_url(),
            em.account_id()
        ))
        .bearer_auth(em.api_token())
        .multipart(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// An API call with a JSON body; status and body.
async fn api(em: &common::Emulator, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = if path.starts_with("/zones") {
        format!("{}{path}", em.base_url())
    } else {
        format!("{}/accounts/{}{path}", em.base_url(), em.account_id())
    };
    let mut req = reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .bearer_auth(em.api_token());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A request to the emulator's address with this `Host`; status and body.
/// Turns on the script's workers.dev host (`POST …/subdomain {enabled: true}`).
async fn enable_workers_dev(em: &common::Emulator, script: &str) {
    let path = format!("/workers/scripts/{script}/subdomain");
    let (status, body) = api(em, "POST", &path, Some(json!({"enabled": true}))).await;
    assert_eq!(status, 200, "{body}");
}

async fn visit(em: &common::Emulator, host: &str, path: &str) -> (u16, String) {
    common::visit(em, host, path).await
}

fn namespaces(em: &common::Emulator, script: &str) -> Vec<String> {
    em.shared
        .account()
        .namespaces
        .iter()
        .filter(|n| n.script.as_deref() == Some(script))
        .filter_map(|n| n.class.clone())
        .collect()
}

fn container_metadata(class: &str) -> Value {
    json!({
        "bindings": [{"type": "durable_object_namespace", "name": "SHOP", "class_name": class}],
        "migrations": {"new_tag": "v1", "new_sqlite_classes": [class]},
        "containers": [{"class_name": class}],
    })
}

fn error_of(body: &Value) -> (i64, String) {
    (
        body["errors"][0]["code"].as_i64().unwrap_or(0),
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syntax_error_is_refused_with_10021_and_leaves_nothing_behind() {
    let em = emulator().await;
    let mut meta = container_metadata("Shop");
    meta["bindings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "secret_text", "name": "TOKEN", "text": "hunter2-secret-value"}));
    let (status, body) = upload(
        &em,
        "broken",
        meta.clone(),
        &[(
            "index.js",
            "export class Shop {}\nexport default { fetch( { return new Response('x') } };",
        )],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (code, message) = error_of(&body);
    assert_eq!(code, 10021, "{body}");
    assert!(message.contains("SyntaxError"), "{message}");
    assert!(
        !em.shared.account().scripts.contains_key("broken")
            && !em.shared.account().scripts.contains_key("thrower")
    );
    assert!(namespaces(&em, "broken").is_empty());

    // Top-level code that throws the secret: refused, and the message does not carry it.
    let (status, body) = upload(
        &em,
        "thrower",
        meta,
        &[(
            "index.js",
            "import { env } from 'cloudflare:workers';\nexport class Shop {}\nthrow new Error('boom ' + env.TOKEN);\nexport default {};",
        )],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (code, message) = error_of(&body);
    assert_eq!(code, 10021, "{body}");
    assert!(message.contains("boom"), "{message}");
    assert!(!body.to_string().contains("hunter2-secret-value"), "{body}");
    // No probe directory stays behind.
    let runtime = em.shared.runtime().expect("workerd runs");
    let left: Vec<_> = std::fs::read_dir(runtime.work_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        !em.shared.account().scripts.contains_key("broken")
            && !em.shared.account().scripts.contains_key("thrower")
    );
    em.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_class_the_code_does_not_export_is_refused_however_it_is_written() {
    let em = emulator().await;
    let cases = [
        // The parameter named like the class (the pattern reader took `env` for a class).
        (
            "env",
            "export default { async fetch(request, env) { return new Response('hi') } };",
        ),
        (
            "Shop",
            "// export class Shop {}\nexport default { fetch() { return new Response('x') } };",
        ),
        (
            "Shop",
            "const s = 'export class Shop {}';\nexport default { fetch() { return new Response(s) } };",
        ),
        (
            "Shop",
            "class Shop {}\nexport { Shop as Store };\nexport default { fetch() { return new Response('x') } };",
        ),
        (
            "Shop",
            "export const Shop = 'not a class';\nexport default { fetch() { return new Response('x') } };",
        ),
    ];
    for (class, code) in cases {
        let (status, body) = upload(
            &em,
            "ghost",
            container_metadata(class),
            &[("index.js", code)],
        )
        .await;
        assert_eq!(status, 400, "{code}: {body}");
        let (err, message) = error_of(&body);
        assert_eq!(err, 10021, "{code}: {body}");
        assert!(
            message.contains(&format!("class {class} is not exported")),
            "{code}: {message}"
        );
        assert!(namespaces(&em, "ghost").is_empty(), "{code}");
        assert!(!em.shared.account().scripts.contains_key("ghost"), "{code}");
    }
    em.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_valid_exporting_forms_are_accepted() {
    let em = emulator().await;
    let lib = "export class Shop { fetch() { return new Response('lib') } }";
    let cases: [&[(&str, &str)]; 5] = [
        &[("index.js", "export class Shop {}\nexport default {};")],
        &[("index.js", "class Shop {}\nexport { Shop };")],
        &[("index.js", "class Hidden {}\nexport { Hidden as Shop };")],
        &[
            ("index.js", "export { Shop } from './lib.js';"),
            ("lib.js", lib),
        ],
        &[("index.js", "export * from './lib.js';"), ("lib.js", lib)],
    ];
    for (i, modules) in cases.iter().enumerate() {
        let name = format!("shop{i}");
        let (status, body) = upload(&em, &name, container_metadata("Shop"), modules).await;
        assert_eq!(status, 200, "{modules:?}: {body}");
        assert_eq!(namespaces(&em, &name), ["Shop"], "{modules:?}");
        let account = em.shared.account();
        let ns = account
            .namespaces
            .iter()
            .find(|n| n.script.as_deref() == Some(name.as_str()))
            .unwrap();
        assert!(account.container_enabled.contains(&ns.id), "{modules:?}");
    }
    em.stop().await;
}

const COUNTER: &str = r#"
import { DurableObject } from "cloudflare:workers";
export class Counter extends DurableObject {
  async fetch() {
    const n = ((await this.ctx.storage.get("n")) || 0) + 1;
    await this.ctx.storage.put("n", n);
    return new Response(String(n));
  }
}
export default {
  async fetch(request, env) {
    const stub = env.COUNTER.get(env.COUNTER.idFromName("one"));
    const n = await (await stub.fetch(request)).text();
    const url = new URL(request.url);
    return new Response(`${env.GREETING} ${env.LIMITS.max} secret=${env.TOKEN.length} n=${n} path=${url.pathname}`);
  },
};
"#;

fn counter_metadata(greeting: &str, migrate: bool) -> Value {
    let mut m = json!({
        "bindings": [
            {"type": "plain_text", "name": "GREETING", "text": greeting},
            {"type": "secret_text", "name": "TOKEN", "text": "abcdef"},
            {"type": "json", "name": "LIMITS", "json": {"max": 7}},
            {"type": "durable_object_namespace", "name": "COUNTER", "class_name": "Counter"},
        ],
    });
    if migrate {
        m["migrations"] = json!({"new_tag": "v1", "new_sqlite_classes": ["Counter"]});
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_served_at_its_workers_dev_host_with_its_bindings_and_storage() {
    let em = emulator().await;
    let (status, body) = upload(
        &em,
        "counter",
        counter_metadata("hello", true),
        &[("index.js", COUNTER)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, sub) = api(&em, "GET", "/workers/subdomain", None).await;
    let host = format!(
        "counter.{}.workers.dev",
        sub["result"]["subdomain"].as_str().unwrap()
    );

    // workers.dev is off until the script's subdomain is enabled: the edge's answer.
    let (status, text) = visit(&em, &host, "/").await;
    assert_eq!((status, text.as_str()), (530, "error code: 1001"));
    let (status, body) = api(
        &em,
        "POST",
        "/workers/scripts/counter/subdomain",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["enabled"], true);

    let (status, text) = visit(&em, &host, "/a").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, "hello 7 secret=6 n=1 path=/a");
    let (_, text) = visit(&em, &host, "/b").await;
    assert_eq!(text, "hello 7 secret=6 n=2 path=/b");

    // A new upload serves at once; the Durable Object keeps its storage.
    let (status, body) = upload(
        &em,
        "counter",
        counter_metadata("bonjour", false),
        &[("index.js", COUNTER)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, text) = visit(&em, &host, "/c").await;
    assert_eq!(text, "bonjour 7 secret=6 n=3 path=/c");

    // Another script's name, another account's subdomain: the edge's answer.
    let (status, _) = visit(&em, &host.replacen("counter", "nobody", 1), "/").await;
    assert_eq!(status, 530);
    let (status, _) = visit(&em, "counter.someone-else.workers.dev", "/").await;
    assert_eq!(status, 530);
    em.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_and_a_custom_domain_reach_their_script() {
    let em = emulator().await;
    for (name, word) in [("shop", "from shop"), ("api", "from api")] {
        let code = format!(
            "export default {{ fetch(request) {{ return new Response('{word} ' + new URL(request.url).pathname) }} }};"
        );
        let (status, body) = upload(&em, name, json!({}), &[("index.js", code.as_str())]).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, zones) = api(&em, "GET", "/zones?name=example.com", None).await;
    assert_eq!(status, 200, "{zones}");
    let zone = zones["result"][0]["id"].as_str().unwrap().to_string();
    let (status, route) = api(
        &em,
        "POST",
        &format!("/zones/{zone}/workers/routes"),
        Some(json!({"pattern": "www.example.com/shop/*", "script": "shop"})),
    )
    .await;
    assert_eq!(status, 200, "{route}");
    let (status, domain) = api(
        &em,
        "PUT",
        "/workers/domains",
        Some(json!({"hostname": "api.example.com", "service": "api"})),
    )
    .await;
    assert_eq!(status, 200, "{domain}");
    assert_eq!(domain["result"]["zone_id"], zone.as_str());

    assert_eq!(
        visit(&em, "www.example.com", "/shop/cart").await,
        (200, "from shop /shop/cart".to_string())
    );
    assert_eq!(
        visit(&em, "api.example.com", "/v1").await,
        (200, "from api /v1".to_string())
    );
    // Outside the route's path, and a host of the zone no Worker takes.
    assert_eq!(visit(&em, "www.example.com", "/about").await.0, 530);
    assert_eq!(visit(&em, "other.example.com", "/").await.0, 530);

    // Listed, then gone.
    let (_, routes) = api(&em, "GET", &format!("/zones/{zone}/workers/routes"), None).await;
    assert_eq!(routes["result"][0]["pattern"], "www.example.com/shop/*");
    let id = route["result"]["id"].as_str().unwrap();
    let (status, _) = api(
        &em,
        "DELETE",
        &format!("/zones/{zone}/workers/routes/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(visit(&em, "www.example.com", "/shop/cart").await.0, 530);
    let domain_id = domain["result"]["id"].as_str().unwrap();
    let (status, _) = api(
        &em,
        "DELETE",
        &format!("/workers/domains/{domain_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(visit(&em, "api.example.com", "/v1").await.0, 530);
    em.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_binding_reaches_the_other_script() {
    let em = emulator().await;
    let (status, body) = upload(
        &em,
        "auth",
        json!({}),
        &[(
            "index.js",
            "export default { fetch(request) { return new Response('auth says ' + new URL(request.url).pathname) } };",
        )],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = upload(
        &em,
        "front",
        json!({"bindings": [{"type": "service", "name": "AUTH", "service": "auth"}]}),
        &[(
            "index.js",
            "export default { async fetch(request, env) { const r = await env.AUTH.fetch('https://auth/check'); return new Response('front: ' + await r.text()) } };",
        )],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    enable_workers_dev(&em, "front").await;
    let (status, text) = visit(&em, "front.flaredock.workers.dev", "/").await;
    assert_eq!((status, text.as_str()), (200, "front: auth says /check"));
    em.stop().await;
}

/// A container class that starts its container and forwards to its port 8080; `/env`
/// answers the names in the default export's and the Durable Object's `env`.
const CONTAINER_CODE: &str = r#"
export class Shop {
  constructor(ctx, env) { this.ctx = ctx; this.env = env; }
  async fetch(request) {
    if (new URL(request.url).pathname === "/env") return new Response(Object.keys(this.env).join(","));
    try {
      const c = this.ctx.container;
      if (!c.running) c.start();
      return await c.getTcpPort(8080).fetch(request);
    } catch (e) { return new Response(e.message, { status: 503 }); }
  }
}
export default {
  fetch(request, env) {
    if (new URL(request.url).pathname === "/default-env") return new Response(Object.keys(env).join(","));
    return env.SHOP.get(env.SHOP.idFromName("x")).fetch(request);
  }
};
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_buildah_starting_a_container_says_there_is_no_container_runtime() {
    let bin = workerd();
    let em = common::start_emulator(move |c| {
        c.workerd = Some(bin);
        c.buildah = None;
    })
    .await;
    assert!(!em.shared.containers.available());
    let mut metadata = container_metadata("Shop");
    metadata["bindings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "plain_text", "name": "MODE", "text": "test"}));
    let (status, body) = upload(&em, "shop", metadata, &[("index.js", CONTAINER_CODE)]).await;
    assert_eq!(status, 200, "{body}");
    enable_workers_dev(&em, "shop").await;
    let (status, text) = visit(&em, "shop.flaredock.workers.dev", "/").await;
    assert_eq!(status, 503, "{text}");
    assert_eq!(text, flaredock::emulator::containers::NO_CONTAINER_RUNTIME);
    // The wrapper's way to the emulator is not in the Worker's `env`.
    let (_, names) = visit(&em, "shop.flaredock.workers.dev", "/default-env").await;
    assert_eq!(names, "MODE,SHOP");
    let (_, names) = visit(&em, "shop.flaredock.workers.dev", "/env").await;
    assert_eq!(names, "MODE,SHOP");
    em.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_class_without_an_application_says_so() {
    let em = emulator().await;
    let (status, body) = upload(
        &em,
        "shop",
        container_metadata("Shop"),
        &[("index.js", CONTAINER_CODE)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    enable_workers_dev(&em, "shop").await;
    let (status, text) = visit(&em, "shop.flaredock.workers.dev", "/").await;
    assert_eq!(status, 503, "{text}");
    assert_eq!(
        text,
        "the Durable Object class Shop of the Worker shop has no container application (create one on its namespace, e.g. a CloudflareContainer naming the Worker)"
    );
    assert_eq!(em.shared.containers.running(), 0);
    em.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_workerd_uploads_are_checked_statically_and_workers_are_not_served() {
    let em = common::start_emulator(|c| c.workerd = None).await;
    // The static check cannot run code: a syntax error passes…
    let (status, body) = upload(
        &em,
        "static",
        json!({}),
        &[("index.js", "export default { fetch( {")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // …but a class only in a comment or a string is not taken for an export.
    let (status, body) = upload(
        &em,
        "ghost",
        container_metadata("Shop"),
        &[(
            "index.js",
            "// export class Shop {}\nconst s = 'export class Shop {}';\nexport default {};",
        )],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_of(&body).0, 10021);
    enable_workers_dev(&em, "static").await;
    let (status, text) = visit(&em, "static.flaredock.workers.dev", "/").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("Workers are not served"), "{text}");
    em.stop().await;
}

/// The pids of the children of `pid` (Linux `/proc`).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path().join("children");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

/// The README's quickstart, as a user runs it: `flaredock emulator` in one terminal,
/// `flaredock apply -f examples/quickstart.yaml` against it, then a request to the
/// Worker's workers.dev host, answered by the Worker → its Durable Object → the
/// emulator's container runtime (which finds nothing to run in the demo image).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_applied_by_flaredock_answers_at_its_workers_dev_host() {
    let bin = workerd();
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut emulator = std::process::Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["emulator", "--listen", &listen, "--zone", "shop.test"])
        .env(flaredock::emulator::workerd::WORKERD_ENV, &bin)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://{listen}/client/v4");
    let token = flaredock::emulator::DEFAULT_API_TOKEN;
    let account = flaredock::emulator::DEFAULT_ACCOUNT_ID;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut answer = None;
    for _ in 0..200 {
        match http
            .get(format!("{base}/zones?name=shop.test"))
            .bearer_auth(token)
            .send()
            .await
        {
            Ok(r) => {
                answer = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    let zones: Value = answer.expect("the emulator answers").json().await.unwrap();
    assert_eq!(zones["result"][0]["name"], "shop.test", "{zones}");

    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["apply", "--timeout", "60s", "-f", quickstart])
        .env("CLOUDFLARE_API_BASE_URL", &base)
        .env("CLOUDFLARE_ACCOUNT_ID", account)
        .env("CLOUDFLARE_API_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // workersDev defaults to true: apply turned workers.dev on and printed the URL (the
    // README's quickstart sends no request of its own before its curl).
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("url: https://hello.flaredock.workers.dev"),
        "{printed}"
    );
    let r = http
        .get(format!("http://{listen}/"))
        .header("host", "hello.flaredock.workers.dev")
        .send()
        .await
        .unwrap();
    // The emulator pulled the demo image to run it, and found nothing to run in it (the
    // demo image holds no program; tests/container_serve.rs serves from a real one).
    assert_eq!(r.status().as_u16(), 503);
    let text = r.text().await.unwrap();
    const NOTHING: &str =
        " has no Entrypoint or Cmd and start() gave no entrypoint: nothing to run\n";
    assert!(
        text.starts_with(&format!(
            "the container image {listen}/{account}/hello@sha256:"
        )) && text.ends_with(NOTHING),
        "{text}"
    );
    // The README shows this answer.
    assert!(
        include_str!("../README.md").contains(NOTHING.trim_end()),
        "README.md shows the quickstart's answer"
    );

    // The Worker runs in a workerd child of the emulator, which goes with it.
    let workers = children(emulator.id());
    assert!(!workers.is_empty(), "a workerd process serves the Worker");
    let stopped = std::process::Command::new("kill")
        .args(["-INT", &emulator.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = emulator.wait().unwrap();
    assert!(status.success(), "{status}");
    // Killed as the emulator stops; on a loaded machine the exit can take a moment to
    // show in /proc, so each gets up to 5 s (a workerd left running never goes).
    let alive = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while workers.iter().any(alive) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for pid in &workers {
        assert!(!alive(pid), "workerd {pid} outlived the emulator");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_seeded_by_the_hooks_start_no_workerd() {
    let em = emulator().await;
    em.put_script("seeded", &["Shop"]);
    let runtime = em.shared.runtime().expect("workerd runs");
    enable_workers_dev(&em, "seeded").await;
    let (status, text) = visit(&em, "seeded.flaredock.workers.dev", "/").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("has no code"), "{text}");
    assert_eq!(runtime.running().await, 0);
    em.stop().await;
}

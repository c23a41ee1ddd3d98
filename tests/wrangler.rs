//! Cloudflare's own CLI against the emulator: `wrangler containers` (npm `wrangler`
//! 4.86, the last release that runs on Node 20) lists, shows and deletes an
//! application that flaredock created, and mints registry credentials; `wrangler deploy`
//! of a plain Worker succeeds and the Worker answers at its workers.dev host (served by
//! workerd through the emulator). wrangler is an
//! independent client, so this checks the emulator (and the wrangler-only endpoints it
//! serves) against something other than flaredock's own types.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

fn wrangler_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WRANGLER") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join("wrangler");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "this test needs wrangler 4.86 from npm: `npm install -g wrangler@4.86.0` (scripts/test.sh installs it), or set WRANGLER=/path/to/wrangler"
    );
}

struct Wrangler {
    bin: PathBuf,
    home: tempfile::TempDir,
    base_url: String,
    account: String,
    token: String,
}

impl Wrangler {
    fn new(em: &common::Emulator) -> Wrangler {
        Wrangler {
            bin: wrangler_bin(),
            home: tempfile::tempdir().unwrap(),
            base_url: em.base_url(),
            account: em.account_id().to_string(),
            token: em.api_token().to_string(),
        }
    }

    /// Runs wrangler (non-interactive, as in CI); exit code, stdout, stderr.
    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(&self.bin)
            .args(args)
            .current_dir(self.home.path())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("CI", "true")
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_API_BASE_URL", &self.base_url)
            .env("CLOUDFLARE_ACCOUNT_ID", &self.account)
            .env("CLOUDFLARE_API_TOKEN", &self.token)
            .output()
            .expect("wrangler runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, Some(0), "wrangler {args:?} failed:\n{out}\n{err}");
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrangler_lists_shows_and_deletes_what_flaredock_created() {
    let em = common::start_emulator(|c| c.delete_delay = Duration::from_millis(1500)).await;
    let wrangler = Wrangler::new(&em);

    // flaredock creates the quickstart's Worker and application.
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["apply", "--timeout", "60s", "-f", quickstart])
        .env("CLOUDFLARE_API_BASE_URL", em.base_url())
        .env("CLOUDFLARE_ACCOUNT_ID", em.account_id())
        .env("CLOUDFLARE_API_TOKEN", em.api_token())
        .output()
        .expect("flaredock runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = common::client_for(&em);
    let apps = client.list_applications().await.unwrap();
    assert_eq!(apps.len(), 1);
    let id = apps[0].id.clone();

    // list, as a table and as JSON (wrangler-only `GET /containers/dash/applications`).
    let table = wrangler.ok(&["containers", "list"]);
    assert!(table.contains(&id) && table.contains("hello"), "{table}");
    let listed: Value = serde_json::from_str(&wrangler.ok(&["containers", "list", "--json"]))
        .expect("wrangler prints JSON");
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed[0]["name"], "hello");
    assert_eq!(listed[0]["image"], apps[0].configuration.image.as_str());

    // info: the application as the official GET returns it.
    let info: Value = serde_json::from_str(&wrangler.ok(&["containers", "info", &id]))
        .expect("wrangler prints the application as JSON");
    assert_eq!(info["id"], id.as_str());
    assert_eq!(info["name"], "hello");
    assert_eq!(
        info["durable_objects"]["namespace_id"],
        apps[0].namespace_id().unwrap()
    );

    // registry credentials that the emulator's registry accepts.
    let password = wrangler
        .ok(&[
            "containers",
            "registries",
            "credentials",
            "--push",
            "--pull",
        ])
        .trim()
        .to_string();
    assert!(!password.is_empty());
    let registry = format!("http://{}/v2/", em.addr);
    let http = reqwest::Client::new();
    let with = |p: String| http.get(&registry).basic_auth("v1", Some(p)).send();
    assert_eq!(with(password.clone()).await.unwrap().status().as_u16(), 200);
    assert_eq!(with("wrong".into()).await.unwrap().status().as_u16(), 401);

    // delete: asynchronous, as Cloudflare's.
    wrangler.ok(&["containers", "delete", &id]);
    let still = client.list_applications().await.unwrap();
    assert!(
        still.iter().any(|a| a.id == id),
        "a deleted application stays listed while Cloudflare deletes it"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(client.list_applications().await.unwrap().is_empty());
    let table = wrangler.ok(&["containers", "list"]);
    assert!(table.contains("No containers found"), "{table}");

    // An unknown id is a 404 that wrangler reports as an error.
    let (code, out, err) = wrangler.run(&[
        "containers",
        "delete",
        "00000000-0000-4000-8000-000000000000",
    ]);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(format!("{out}{err}").contains("not found"), "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_deployed_with_wrangler_answers_at_its_workers_dev_host() {
    let workerd = flaredock::emulator::workerd::locate().unwrap_or_else(|| {
        panic!(
            "this test needs workerd: `npm install -g workerd@1.20260426.1` (scripts/test.sh installs it), or set FLAREDOCK_WORKERD"
        )
    });
    let em = common::start_emulator(|c| c.workerd = Some(workerd)).await;
    let wrangler = Wrangler::new(&em);
    let project = wrangler.home.path();
    std::fs::write(
        project.join("wrangler.toml"),
        "name = \"greeter\"\nmain = \"index.js\"\ncompatibility_date = \"2026-04-01\"\n[vars]\nGREETING = \"hello from wrangler\"\n",
    )
    .unwrap();
    std::fs::write(
        project.join("index.js"),
        "export default { fetch(request, env) { return new Response(`${env.GREETING} at ${new URL(request.url).hostname}`); } };\n",
    )
    .unwrap();
    let out = wrangler.ok(&["deploy"]);
    assert!(
        out.contains("https://greeter.flaredock.workers.dev"),
        "{out}"
    );
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/", em.addr))
        .header("host", "greeter.flaredock.workers.dev")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(
        answer.text().await.unwrap(),
        "hello from wrangler at greeter.flaredock.workers.dev"
    );
    em.stop().await;
}

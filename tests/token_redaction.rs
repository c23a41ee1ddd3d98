//! No log line (at TRACE, every target, reqwest and hyper included), error or Debug
//! output ever carries the API token or a registry password.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use flaredock::cloudflare::CLOUDFLARE_REGISTRY;
use flaredock::cloudflare::types::RegistryPermission;
use flaredock::emulator::ScriptedFault;
use flaredock::reconcile::{ConvergeOptions, converge};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const TOKEN: &str = "tok-SUPERSECRET-4242";

#[tokio::test]
async fn trace_logs_never_contain_secrets() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let em = common::start_emulator(|c| {
        c.api_token = TOKEN.into();
        c.capture_bodies = true;
    })
    .await;
    let client = common::client_for(&em);
    em.shared.push_fault(None, ScriptedFault::ServerError(503));
    em.shared.push_fault(None, ScriptedFault::DropBefore);
    client.list_applications().await.unwrap();
    let creds = client
        .registry_credentials(CLOUDFLARE_REGISTRY, &[RegistryPermission::Pull], 5)
        .await
        .unwrap();
    let password = creds.password.expose().to_string();
    assert!(
        !format!("{creds:?}").contains(&password),
        "Debug of credentials shows the password"
    );
    assert!(
        !format!("{client:?}").contains(TOKEN),
        "Debug of the client shows the token"
    );

    // A whole apply, registry access included.
    let text = include_str!("../examples/quickstart.yaml");
    let obj = flaredock::manifest::parse_document(text, "quickstart.yaml", 1)
        .unwrap()
        .unwrap();
    let reconciler = common::reconciler_for(&client);
    let outcomes = converge(&reconciler, &[obj], &ConvergeOptions::default(), |_, _| {}).await;
    let outcome = outcomes.values().next().unwrap();
    assert!(outcome.ready(), "{:?}", outcome.status);
    let status = serde_json::to_string(&outcome.status).unwrap();

    // Errors, with the token in play.
    let e = client.get_application("missing").await.unwrap_err();
    let wrong = common::client_with(&em, |c| c.account_id = "other".into());
    let e2 = wrong.list_applications().await.unwrap_err();

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("Cloudflare call"),
        "the capture saw the client's logs"
    );
    assert!(
        logs.lines().count() > 20,
        "TRACE capture is too thin to prove anything"
    );
    // Every registry password the emulator handed out (the resolver mints its own).
    let mut passwords = vec![password];
    for x in em.shared.exchanges() {
        if x.path.ends_with("/credentials") && x.status == 201 {
            let v: serde_json::Value = serde_json::from_slice(&x.response_body).unwrap();
            passwords.push(v["result"]["password"].as_str().unwrap().to_string());
        }
    }
    assert!(
        passwords.len() >= 2,
        "the apply minted registry credentials"
    );
    for (what, text) in [("logs", logs.as_str()), ("status", status.as_str())] {
        assert!(!text.contains(TOKEN), "{what} contain the API token");
        for p in &passwords {
            assert!(
                !text.contains(p.as_str()),
                "{what} contain a registry password"
            );
        }
    }
    for e in [e, e2] {
        assert!(!format!("{e} {e:?}").contains(TOKEN));
    }
}

//! No log line (at TRACE, every target, reqwest and hyper included), error, status,
//! plan or Debug output ever carries the API token, a registry password or a Worker's
//! secret value.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use flaredock::cloudflare::CLOUDFLARE_REGISTRY;
use flaredock::cloudflare::types::RegistryPermission;
use flaredock::emulator::ScriptedFault;
use flaredock::reconcile::converge::Manifests;
use flaredock::reconcile::{ConvergeOptions, converge_all};

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
const WORKER_SECRET: &str = "worker-secret-value-7331";
const ENV_SECRET: &str = "env-secret-value-5519";
const ENV_SECRET_2: &str = "env-secret-rotated-6620";
const ENV_SECRET_3: &str = "env-secret-quoted-7731";

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

    // A whole apply of the quickstart (a Worker, here with a secret from a Secret, and
    // its container), registry access included.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quickstart.yaml");
    // …and the container's DB_PASSWORD from a Secret too.
    let text = include_str!("../examples/quickstart.yaml")
        .replace(
            "  vars:\n",
            "  secrets:\n    - {name: API_KEY, secretKeyRef: {name: keys, key: api}}\n  vars:\n",
        )
        .replace(
            "  env:\n",
            "  env:\n    - {name: DB_PASSWORD, valueFrom: {secretKeyRef: {name: keys, key: db}}}\n",
        );
    let secret_doc = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: keys, namespace: default}}\nstringData: {{api: {WORKER_SECRET}, db: {ENV_SECRET}}}\n"
    );
    std::fs::write(&file, format!("{text}{secret_doc}")).unwrap();
    let loaded = flaredock::manifest::load(&[file]);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(loaded.workers[0].object.spec.secrets.len(), 1);
    assert_eq!(loaded.objects[0].object.spec.env.len(), 2);
    let containers: Vec<_> = loaded.objects.iter().map(|l| l.object.clone()).collect();
    let workers: Vec<_> = loaded.workers.iter().map(|l| l.object.clone()).collect();
    let reconciler = common::reconciler_for(&client);
    let manifests = Manifests {
        containers: &containers,
        workers: &workers,
        data: &loaded.data,
    };
    let done = converge_all(
        &reconciler,
        manifests,
        &ConvergeOptions::default(),
        |_, _| {},
    )
    .await;
    let outcome = done.containers.values().next().unwrap();
    assert!(outcome.ready(), "{:?}", outcome.status);
    let worker = done.workers.values().next().unwrap();
    assert!(worker.ready(), "{:?}", worker.status);
    // The secret did reach Cloudflare (in the upload), and nowhere else.
    let uploads = common::request_bodies(&em, "PUT", "");
    assert!(
        uploads.iter().any(|u| u.contains(WORKER_SECRET)),
        "the secret was uploaded"
    );
    let status = format!(
        "{} {}",
        serde_json::to_string(&outcome.status).unwrap(),
        serde_json::to_string(&worker.status).unwrap()
    );
    let plan_text = format!(
        "{:?} {} {} {:?}",
        worker.plan,
        worker
            .plan
            .actions
            .iter()
            .map(ToString::to_string)
            .collect::<String>(),
        worker
            .plan
            .changes
            .iter()
            .map(ToString::to_string)
            .collect::<String>(),
        loaded.data
    );
    let events = format!("{:?}", worker.events);
    let container_output = format!(
        "{} {:?} {} {} {:?} {}",
        serde_json::to_string(&outcome.status).unwrap(),
        outcome.plan,
        outcome
            .plan
            .changes
            .iter()
            .map(ToString::to_string)
            .collect::<String>(),
        outcome.plan.to_json(),
        outcome.events,
        outcome
            .events
            .iter()
            .map(ToString::to_string)
            .collect::<String>(),
    );
    let created = common::request_bodies(&em, "POST", "/containers/applications").concat();
    assert!(
        created.contains(ENV_SECRET),
        "the env value from the Secret reached Cloudflare"
    );

    // The Secret changes: one rollout carries the new value, then nothing more.
    let mut data = loaded.data.clone();
    data.secrets
        .get_mut("default/keys")
        .unwrap()
        .insert("db".into(), ENV_SECRET_2.as_bytes().to_vec());
    // What `flaredock plan` would show.
    let peers = flaredock::reconcile::images::PeerIndex {
        workers: workers
            .iter()
            .map(|w| (w.key(), w.script_name().to_string()))
            .collect(),
        data: data.clone(),
        ..Default::default()
    };
    let (preview, _) = reconciler.preview(&containers[0], &peers).await.unwrap();
    let mut changed = vec![format!(
        "{:?} {} {}",
        preview,
        preview.to_json(),
        preview
            .changes
            .iter()
            .map(ToString::to_string)
            .collect::<String>()
    )];
    for _ in 0..2 {
        reconciler.view.invalidate().await;
        let again = converge_all(
            &reconciler,
            Manifests {
                containers: &containers,
                workers: &workers,
                data: &data,
            },
            &ConvergeOptions::default(),
            |_, _| {},
        )
        .await;
        let o = again.containers.values().next().unwrap();
        assert!(o.ready(), "{:?}", o.status);
        assert!(o.drift.is_empty(), "a Secret's new value is not drift");
        changed.push(format!(
            "{} {:?} {} {}",
            serde_json::to_string(&o.status).unwrap(),
            o.plan,
            o.plan.to_json(),
            o.events.iter().map(ToString::to_string).collect::<String>()
        ));
    }
    let rollouts = common::request_bodies(&em, "POST", "/rollouts");
    assert_eq!(rollouts.len(), 1, "one rollout for the Secret's change");
    assert!(rollouts[0].contains(ENV_SECRET_2));
    assert!(
        changed[0].contains("(from Secret keys/db, changed)"),
        "{}",
        changed[0]
    );

    // Cloudflare refuses the next rollout quoting its body, which carries a third value:
    // the error, the status and the logs show it redacted.
    data.secrets
        .get_mut("default/keys")
        .unwrap()
        .insert("db".into(), ENV_SECRET_3.as_bytes().to_vec());
    em.shared
        .push_fault(Some("POST"), ScriptedFault::RejectQuotingBody);
    reconciler.view.invalidate().await;
    let refused = converge_all(
        &reconciler,
        Manifests {
            containers: &containers,
            workers: &workers,
            data: &data,
        },
        &ConvergeOptions {
            wait: false,
            ..Default::default()
        },
        |_, _| {},
    )
    .await;
    let o = refused.containers.values().next().unwrap();
    let error = o.error.as_ref().expect("the rollout was refused");
    assert!(
        error.to_string().contains("could not process the request")
            && error.to_string().contains("[redacted]"),
        "{error}"
    );
    let quoted = common::request_bodies(&em, "POST", "/rollouts");
    assert!(
        quoted.iter().any(|b| b.contains(ENV_SECRET_3)),
        "the refused request did carry the value"
    );
    changed.push(format!(
        "{error} {error:?} {}",
        serde_json::to_string(&o.status).unwrap()
    ));

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
    for (what, text) in [
        ("logs", logs.as_str()),
        ("status", status.as_str()),
        ("plan", plan_text.as_str()),
        ("events", events.as_str()),
        ("the container's outcome", container_output.as_str()),
        (
            "the outcome after the Secret changed",
            changed.join(" ").as_str(),
        ),
    ] {
        for value in [ENV_SECRET, ENV_SECRET_2, ENV_SECRET_3] {
            assert!(
                !text.contains(value),
                "{what} contain an env value from a Secret"
            );
        }
        assert!(!text.contains(TOKEN), "{what} contain the API token");
        assert!(
            !text.contains(WORKER_SECRET),
            "{what} contain the Worker's secret value"
        );
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

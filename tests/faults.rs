//! The fault suite: injected 5xx and dropped connections, bursts of 429s, the CLI
//! killed mid-apply, deletion, and a response parser that no body can panic. After
//! every round, no object may be Ready while Cloudflare differs from its spec.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use flaredock::cloudflare::client::parse_response;
use flaredock::cloudflare::types::*;
use flaredock::emulator::{RunningEmulator, ScriptedFault};
use flaredock::manifest::parse_document;
use flaredock::reconcile::model::Desired;
use flaredock::reconcile::{ConvergeOptions, ReconcileOutcome, converge};
use flaredock::spec::{CloudflareContainer, OWNER_LABEL};

fn objects(count: usize, script: &str) -> Vec<CloudflareContainer> {
    objects_at(count, script, 1)
}

/// `count` objects at `generation`; from generation 2 on, their env changes (a rollout).
fn objects_at(count: usize, script: &str, generation: i64) -> Vec<CloudflareContainer> {
    (0..count)
        .map(|i| {
            let doc = format!(
                "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: app-{i}, namespace: faults, generation: {generation}}}\nspec:\n  className: C{i}\n  image: {{reference: 'hello:v1'}}\n  maxInstances: {}\n  env: [{{name: INDEX, value: '{i}'}}, {{name: GENERATION, value: '{generation}'}}]\n  worker: {{scriptName: {script}}}\n",
                2 + i % 5
            );
            parse_document(&doc, "gen.yaml", 1).unwrap().unwrap()
        })
        .collect()
}

fn seed_script(em: &RunningEmulator, script: &str, count: usize) {
    let classes: Vec<String> = (0..count).map(|i| format!("C{i}")).collect();
    let mut account = em.shared.account();
    account.seed_script(script, classes.clone(), None, true, true);
}

/// Every object reported Ready matches the emulator's application exactly.
fn check_ready_means_matching(
    em: &RunningEmulator,
    objects: &[CloudflareContainer],
    outcomes: &HashMap<String, ReconcileOutcome>,
) {
    let state: serde_json::Value = serde_json::to_value(&*em.shared.account()).unwrap();
    let apps: Vec<Application> = serde_json::from_value(serde_json::Value::Array(
        state["applications"]
            .as_object()
            .unwrap()
            .values()
            .cloned()
            .collect(),
    ))
    .unwrap();
    for obj in objects {
        let Some(outcome) = outcomes.get(&obj.key()) else {
            continue;
        };
        if !outcome.ready() {
            continue;
        }
        let d = Desired::from_spec(
            obj,
            &std::collections::HashMap::new(),
            &flaredock::spec::ClusterIdentity::cli(),
        );
        let app = apps
            .iter()
            .find(|a| a.name == d.application_name)
            .unwrap_or_else(|| panic!("{} is Ready without an application", obj.key()));
        let image = outcome.status.image.clone().unwrap();
        assert_eq!(
            app.configuration.image,
            image,
            "{} Ready with another image",
            obj.key()
        );
        assert_eq!(
            app.max_instances,
            Some(d.max_instances),
            "{} Ready with other maxInstances",
            obj.key()
        );
        assert_eq!(
            app.configuration.environment_variables.as_ref(),
            Some(&d.env),
            "{} Ready with other env",
            obj.key()
        );
        assert_eq!(app.configuration.label(OWNER_LABEL), Some(d.owner.as_str()));
        assert!(
            app.active_rollout_id.is_none(),
            "{} Ready during a rollout",
            obj.key()
        );
        // What runs, by the versions: every instance on the spec's image and env.
        let versions = em.shared.account().list_versions(&app.id).unwrap();
        let on_spec: i64 = versions
            .iter()
            .filter(|v| {
                v.configuration.image == image
                    && v.configuration.environment_variables.as_ref() == Some(&d.env)
            })
            .map(|v| v.percentage)
            .sum();
        assert_eq!(
            on_spec,
            100,
            "{} Ready while the versions differ from its spec: {versions:?}",
            obj.key()
        );
    }
}

#[tokio::test]
async fn two_hundred_objects_converge_through_a_fault_rate_of_a_fifth() {
    // With Cloudflare's asynchronous deletes too.
    let em = common::start_emulator(|c| {
        c.fault_rate = 0.2;
        c.delete_delay = Duration::from_millis(300);
    })
    .await;
    seed_script(&em, "w", 200);
    let objs = objects(200, "w");
    let client = common::client_with(&em, |c| c.max_attempts = 3);
    let reconciler = common::reconciler_for(&client);
    let options = ConvergeOptions {
        timeout: Duration::from_secs(120),
        poll: Duration::from_millis(10),
        ..Default::default()
    };
    let mut rounds = 0;
    let outcomes = converge(&reconciler, &objs, &options, |_, outcomes| {
        rounds += 1;
        check_ready_means_matching(&em, &objs, outcomes);
    })
    .await;
    let not_ready: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| !o.ready())
        .map(|(k, _)| k)
        .collect();
    assert!(not_ready.is_empty(), "not Ready: {not_ready:?}");
    let apps = common::client_for(&em).list_applications().await.unwrap();
    assert_eq!(apps.len(), 200, "exactly 200 applications");
    let names: HashSet<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names.len(), 200, "no duplicates");
    let failures = em
        .shared
        .requests()
        .iter()
        .filter(|r| r.status == 0 || r.status >= 500)
        .count();
    assert!(failures > 20, "the faults really happened ({failures})");
    assert!(rounds >= 1);
}

#[tokio::test]
async fn reverted_rollouts_and_asynchronous_deletes_never_pass_for_ready() {
    let em = common::start_emulator(|c| {
        c.rollout_revert_rate = 0.5;
        c.delete_delay = Duration::from_millis(300);
        c.rollout_step = Duration::from_millis(20);
    })
    .await;
    seed_script(&em, "w", 40);
    let reconciler = common::reconciler_for(&common::client_for(&em));
    let options = ConvergeOptions {
        timeout: Duration::from_secs(60),
        poll: Duration::from_millis(20),
        ..Default::default()
    };
    let first = objects_at(40, "w", 1);
    let outcomes = converge(&reconciler, &first, &options, |_, o| {
        check_ready_means_matching(&em, &first, o)
    })
    .await;
    assert!(outcomes.values().all(ReconcileOutcome::ready));

    // Generation 2 changes every env: one rollout each, half of them reverted.
    em.shared.clear_requests();
    let second = objects_at(40, "w", 2);
    let outcomes = converge(&reconciler, &second, &options, |_, o| {
        check_ready_means_matching(&em, &second, o)
    })
    .await;
    let reverted: Vec<&ReconcileOutcome> = outcomes.values().filter(|o| !o.ready()).collect();
    assert!(
        !reverted.is_empty() && reverted.len() < 40,
        "the revert rate took effect ({} of 40 not Ready)",
        reverted.len()
    );
    for o in &reverted {
        assert!(o.stalled(), "{:?}", o.status.conditions);
        let ready = o
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason, "RolloutReverted", "{}", ready.message);
    }
    // Exactly one rollout per application for the generation, however many rounds.
    let mut per_app: HashMap<String, usize> = HashMap::new();
    for r in em.shared.requests() {
        if r.method == "POST" && r.path.ends_with("/rollouts") {
            *per_app.entry(r.path.clone()).or_default() += 1;
        }
    }
    assert_eq!(per_app.len(), 40, "{per_app:?}");
    assert!(per_app.values().all(|n| *n == 1), "{per_app:?}");
    // Reconciles of the same generation, as the controller runs them with the status it
    // wrote, start nothing new (a fresh `apply` run has no status: it is a retry).
    em.shared.clear_requests();
    let peers: HashMap<String, String> = HashMap::new();
    for obj in &second {
        let previous = &outcomes[&obj.key()];
        if previous.ready() {
            continue;
        }
        let again = reconciler
            .reconcile(obj, Some(&previous.status), &peers)
            .await;
        assert!(again.stalled(), "{:?}", again.status.conditions);
    }
    assert!(
        common::cloudflare_writes(&em).is_empty(),
        "{:?}",
        common::cloudflare_writes(&em)
    );
}

#[tokio::test]
async fn a_burst_of_429s_is_waited_out_and_nothing_is_lost() {
    let em = common::start_emulator(|_| {}).await;
    seed_script(&em, "w", 20);
    for _ in 0..3 {
        em.shared
            .push_fault(Some("POST"), ScriptedFault::RateLimit(1));
    }
    let objs = objects(20, "w");
    let reconciler = common::reconciler_for(&common::client_for(&em));
    let started = Instant::now();
    let outcomes = converge(&reconciler, &objs, &ConvergeOptions::default(), |_, o| {
        check_ready_means_matching(&em, &objs, o)
    })
    .await;
    assert!(outcomes.values().all(ReconcileOutcome::ready));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the client waited as told"
    );
    let log = em.shared.requests();
    // Nothing was sent into a block: the emulator answers 429 to every request that
    // arrives while the token is blocked, so besides the three scripted ones only
    // requests already on their way when a block began (at most one per scripted 429)
    // were refused. A client that kept sending through the blocks would collect a 429
    // for each request (a reconcile no longer sits out a second 429 in one call: it
    // returns, and its other reads go on meanwhile).
    let limited = log.iter().filter(|r| r.status == 429).count();
    assert!((3..=6).contains(&limited), "{limited} answers 429: {log:?}");
    assert_eq!(
        common::client_for(&em)
            .list_applications()
            .await
            .unwrap()
            .len(),
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_killed_mid_apply_converges_on_rerun_without_duplicates_or_orphans() {
    let em = common::start_emulator(|c| c.latency = Duration::from_millis(40)).await;
    seed_script(&em, "w", 50);
    let dir = tempfile::tempdir().unwrap();
    let mut docs = Vec::new();
    for i in 0..50 {
        docs.push(format!(
            "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {{name: app-{i}, namespace: faults}}\nspec:\n  className: C{i}\n  image: {{reference: 'hello:v1'}}\n  worker: {{scriptName: w}}\n"
        ));
    }
    std::fs::write(dir.path().join("all.yaml"), docs.join("---\n")).unwrap();
    let run = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flaredock"));
        c.args(["apply", "--concurrency", "2", "-f"])
            .arg(dir.path())
            .env("CLOUDFLARE_API_BASE_URL", em.base_url())
            .env("CLOUDFLARE_ACCOUNT_ID", em.account_id())
            .env("CLOUDFLARE_API_TOKEN", em.api_token())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let mut rng = fastrand::Rng::with_seed(7);
    let mut kills = 0;
    let mut partial = Vec::new();
    for _ in 0..8 {
        let before = em.shared.account().application_count();
        let mut child = run().spawn().unwrap();
        // Kill at a random moment once this run has made progress (or after 3 s).
        let deadline = Instant::now() + Duration::from_secs(3);
        while em.shared.account().application_count() == before && Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..60))).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        partial.push(em.shared.account().application_count());
        if partial.last() == Some(&50) {
            break;
        }
    }
    assert!(
        kills >= 2,
        "the process was killed mid-apply ({kills} times)"
    );
    assert!(
        partial.iter().any(|n| *n > 0 && *n < 50),
        "a kill landed mid-way: {partial:?}"
    );
    let status = run().status().unwrap();
    assert_eq!(status.code(), Some(0));
    let apps = common::client_for(&em).list_applications().await.unwrap();
    assert_eq!(apps.len(), 50, "no duplicates, none missing");
    let names: HashSet<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names.len(), 50);
    for a in &apps {
        let owner = a.configuration.label(OWNER_LABEL).unwrap();
        assert_eq!(
            owner,
            format!("cli/faults.{}", a.name),
            "no orphans: every application is owned by its object"
        );
    }
}

#[tokio::test]
async fn deleting_everything_leaves_no_owned_application_and_spares_the_others() {
    let em = common::start_emulator(|c| c.delete_delay = Duration::from_millis(300)).await;
    seed_script(&em, "w", 12);
    let client = common::client_for(&em);
    // Someone else's application.
    client
        .create_application(&common::foreign_application(
            "not-ours",
            &format!("{}/{}/hello:v1", em.registry_host(), em.account_id()),
            None,
        ))
        .await
        .unwrap();
    let objs = objects(12, "w");
    let reconciler = common::reconciler_for(&client);
    let outcomes = converge(&reconciler, &objs, &ConvergeOptions::default(), |_, _| {}).await;
    assert!(outcomes.values().all(ReconcileOutcome::ready));
    // One object orphans its application.
    let mut orphaning = objs[0].clone();
    orphaning.spec.deletion_policy = flaredock::spec::DeletionPolicy::Orphan;
    reconciler.delete(&orphaning).await.unwrap();
    for obj in &objs[1..] {
        reconciler.delete(obj).await.unwrap();
    }
    // Deletes are asynchronous: the applications go after a while.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let left: Vec<String> = client
        .list_applications()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(
        left,
        ["app-0", "not-ours"],
        "only the orphaned and the foreign applications remain"
    );
    // Deleting again is a no-op.
    for obj in &objs[1..] {
        assert_eq!(
            reconciler.delete(obj).await.unwrap(),
            flaredock::reconcile::DeleteOutcome::Deleted(vec![])
        );
    }
}

#[test]
fn no_response_body_can_panic_the_parser() {
    let valid: Vec<&[u8]> = vec![
        br#"{"success":true,"errors":[],"messages":[],"result":[{"id":"a","name":"n","version":1,"created_at":"t","updated_at":"t","account_id":"x","scheduling_policy":"default","instances":0,"configuration":{"image":"i"}}]}"#,
        br#"{"success":false,"errors":[{"code":1608,"message":"{\"error\":\"DURABLE_OBJECT_ALREADY_HAS_APPLICATION\",\"details\":{\"name\":\"a\",\"id\":\"b\"}}"}],"messages":[],"result":null}"#,
        br#"{"success":true,"errors":[],"messages":[],"result":{"bindings":[{"type":"inherit","name":"A"}]},"result_info":{"page":1}}"#,
        b"<html>502</html>",
    ];
    let statuses = [200u16, 201, 400, 401, 403, 404, 429, 500, 502];
    let mut rng = fastrand::Rng::with_seed(42);
    let mut cases = 0;
    for round in 0..20_000 {
        let base = valid[round % valid.len()];
        let mut body = base.to_vec();
        match rng.u8(0..5) {
            0 => body.truncate(rng.usize(0..=body.len())),
            1 => {
                for _ in 0..rng.usize(1..8) {
                    let i = rng.usize(0..body.len());
                    body[i] = rng.u8(..);
                }
            }
            2 => {
                let i = rng.usize(0..=body.len());
                let junk: Vec<u8> = (0..rng.usize(1..32)).map(|_| rng.u8(..)).collect();
                body.splice(i..i, junk);
            }
            3 => body = (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect(),
            _ => {
                // Structurally valid JSON with surprising types.
                let v = [
                    "null",
                    "[]",
                    "{}",
                    "\"x\"",
                    "1e999",
                    "-1",
                    "true",
                    "{\"success\":\"yes\"}",
                ];
                body = format!(
                    "{{\"success\":{},\"errors\":{},\"messages\":[],\"result\":{}}}",
                    v[rng.usize(0..v.len())],
                    v[rng.usize(0..v.len())],
                    v[rng.usize(0..v.len())]
                )
                .into_bytes();
            }
        }
        let status = reqwest::StatusCode::from_u16(statuses[rng.usize(0..statuses.len())]).unwrap();
        let retry = rng.bool().then(|| Duration::from_secs(rng.u64(0..100)));
        // Every target type: none may panic, whatever the body.
        let _ = parse_response::<Vec<Application>>("fuzz", status, retry, &body);
        let _ = parse_response::<Application>("fuzz", status, retry, &body);
        let _ = parse_response::<ScriptSettings>("fuzz", status, retry, &body);
        let _ = parse_response::<Vec<DurableObjectNamespace>>("fuzz", status, retry, &body);
        let _ = parse_response::<ApplicationRollout>("fuzz", status, retry, &body);
        let _ = parse_response::<RegistryCredentials>("fuzz", status, retry, &body);
        if let Err(e) = parse_response::<Application>("fuzz", status, retry, &body) {
            let _ = e.to_string();
        }
        cases += 1;
    }
    assert_eq!(cases, 20_000);
}

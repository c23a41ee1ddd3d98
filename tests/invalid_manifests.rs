//! The corpus in `tests/invalid/`: every manifest is refused with exit code 2, naming
//! the file and the field (each file's first line says what must be named), before any
//! Cloudflare API call.

mod common;

use std::path::PathBuf;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_manifest_is_refused_before_any_api_call() {
    let em = common::start_emulator(|_| {}).await;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/invalid exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "the corpus has only {} manifests",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: …`", file.display()))
            .to_string();
        for command in ["apply", "plan"] {
            let out = Command::new(env!("CARGO_BIN_EXE_flaredock"))
                .args([command, "-f"])
                .arg(file)
                .env("CLOUDFLARE_API_BASE_URL", em.base_url())
                .env("CLOUDFLARE_ACCOUNT_ID", em.account_id())
                .env("CLOUDFLARE_API_TOKEN", em.api_token())
                .output()
                .expect("flaredock runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let name = file.file_name().unwrap().to_string_lossy();
            if out.status.code() != Some(2) {
                failures.push(format!(
                    "{name} ({command}): exit {:?}, not 2: {stderr}",
                    out.status.code()
                ));
            } else if !stderr.contains(&expect) {
                failures.push(format!(
                    "{name} ({command}): stderr does not name {expect:?}: {stderr}"
                ));
            } else if stderr.contains("secret-value-never-shown") {
                failures.push(format!("{name} ({command}): a Secret's value is printed"));
            } else if !stderr.contains(name.as_ref()) {
                failures.push(format!(
                    "{name} ({command}): stderr does not name the file: {stderr}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        em.shared.requests().is_empty(),
        "invalid input reached the API: {:?}",
        em.shared.requests()
    );
}

#[test]
fn a_directory_with_a_bad_file_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a-good.yaml"),
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {name: a}\nspec: {className: A, image: {reference: 'a:v1'}, worker: {scriptName: w}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b-bad.yaml"),
        "apiVersion: flaredock.dev/v1alpha1\nkind: CloudflareContainer\nmetadata: {name: b}\nspec: {className: B, image: {reference: 'b:v1'}, worker: {scriptName: w}, maxInstances: x}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flaredock"))
        .args(["apply", "--emulator", "-f"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("b-bad.yaml") && stderr.contains("spec.maxInstances"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("Ready"),
        "nothing was applied"
    );
}

/// Cases that only code can refuse: what a schema cannot say (a reference that must
/// parse, rules across objects or files) or what is refused before the schema is
/// reached (YAML that does not parse, a document that is not an object).
const CODE_ONLY: &[&str] = &[
    // References that must parse.
    "bad-digest.yaml",
    "bad-reference.yaml",
    // Rules across objects and files.
    "container-worker-not-in-files.yaml",
    "duplicate-object.yaml",
    "from-container-self.yaml",
    "env-secret-not-among-files.yaml",
    "env-secret-key-missing.yaml",
    // The API server's own rules, not the CRD's: names, metadata, the API version.
    "bad-name.yaml",
    "unknown-metadata-field.yaml",
    "missing-api-version.yaml",
    "wrong-api-version.yaml",
    // Refused before any schema: not YAML, not an object.
    "malformed-yaml.yaml",
    "not-a-mapping.yaml",
    // A module path that leaves the bundle (a path rule over map keys).
    "worker-module-escapes.yaml",
];

#[test]
fn the_crds_own_schema_and_cel_rules_refuse_the_corpus() {
    use flaredock::spec::crd_rules::CrdValidator;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut refused = 0;
    let mut missed = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut caught = false;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            // A stream that does not parse is refused before any schema (and its
            // iterator would repeat the error).
            let Ok(value) = <serde_json::Value as serde::Deserialize>::deserialize(doc) else {
                break;
            };
            let validator = match value["kind"].as_str() {
                Some("CloudflareContainer") => CrdValidator::container(),
                Some("CloudflareWorker") => CrdValidator::worker(),
                _ => continue,
            };
            if !validator.violations(&value).is_empty() {
                caught = true;
            }
        }
        if caught {
            refused += 1;
            assert!(
                !CODE_ONLY.contains(&name.as_str()),
                "{name} is refused by the CRD: not code-only"
            );
        } else if !CODE_ONLY.contains(&name.as_str()) {
            missed.push(name);
        }
    }
    missed.sort();
    assert!(
        missed.is_empty(),
        "not refused by the CRD's schema and rules: {missed:?}"
    );
    assert!(refused >= 25, "{refused}");
}

#[test]
fn a_rule_added_only_to_the_crd_is_enforced_by_the_command_line() {
    use flaredock::spec::crd_rules::CrdValidator;
    // A platform team adds a rule to its copy of the CRD: at most 10 instances.
    let mut crd = serde_json::to_value(flaredock::spec::container_crd()).unwrap();
    let spec = crd
        .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
        .unwrap();
    spec["x-kubernetes-validations"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"rule": "self.maxInstances <= 10", "message": "at most 10 instances here"}));
    let validator = CrdValidator::new(&crd);
    let doc = |max: i64| {
        serde_json::json!({"apiVersion": "flaredock.dev/v1alpha1", "kind": "CloudflareContainer",
            "metadata": {"name": "shop", "namespace": "apps"},
            "spec": {"className": "Shop", "image": {"reference": "shop:v1"}, "worker": {"scriptName": "w"}, "maxInstances": max}})
    };
    assert!(validator.violations(&doc(5)).is_empty());
    let found = validator.violations(&doc(20));
    assert!(
        found
            .iter()
            .any(|e| e.field == "spec" && e.message == "at most 10 instances here"),
        "{found:?}"
    );
    // The shipped CRD has no such rule.
    assert!(CrdValidator::container().violations(&doc(20)).is_empty());
}

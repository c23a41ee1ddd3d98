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

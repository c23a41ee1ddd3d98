//! The in-cluster build Job and its push-credentials Secret are pure functions of the
//! request: golden files pin them (`FLAREDOCK_UPDATE_GOLDEN=1` rewrites them).

use std::collections::BTreeMap;
use std::path::Path;

use flaredock::build::job::{JobSettings, Owner, build_job, build_secret, job_name};
use flaredock::build::{BuildInputs, BuildRequest, BuildSource};
use flaredock::cloudflare::Secret;
use flaredock::oci::{Credentials, Reference};

fn request() -> BuildRequest {
    BuildRequest {
        object: "apps/shop".into(),
        source: BuildSource::Git {
            url: "https://github.com/example/shop.git".into(),
            reference: Some("main".into()),
            subdir: Some("services/shop".into()),
        },
        inputs: BuildInputs {
            dockerfile: "Dockerfile".into(),
            args: BTreeMap::from([("VERSION".to_string(), "1.2.3".to_string())]),
            target: Some("runtime".into()),
            platform: "linux/amd64".into(),
        },
        destination: Reference::parse(
            "registry.cloudflare.com/acc123/shop:build-0123456789abcdef01234567",
        )
        .unwrap(),
        credentials: Credentials {
            username: "v1".into(),
            password: Secret::new("push-password"),
        },
        owner: None,
    }
}

fn owner() -> Owner {
    Owner {
        name: "shop".into(),
        namespace: "apps".into(),
        uid: "8a6c0f4e-0000-4000-8000-000000000001".into(),
    }
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("FLAREDOCK_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} is missing", path.display()));
    assert!(
        expected == actual,
        "{name} changed; if intended, rerun with FLAREDOCK_UPDATE_GOLDEN=1\n{actual}"
    );
}

#[test]
fn the_build_job_is_golden() {
    let r = request();
    let name = job_name(&owner(), r.destination.tag.as_deref().unwrap());
    assert!(name.len() <= 63 && name.starts_with("flaredock-build-shop-"));
    let job = build_job(&owner(), &name, &name, &r, &JobSettings::default()).unwrap();
    let other_tenant = Owner {
        namespace: "team-b".into(),
        ..owner()
    };
    assert_ne!(
        job_name(&other_tenant, r.destination.tag.as_deref().unwrap()),
        name,
        "two tenants' builds never share a Job in the build namespace"
    );
    golden("build-job.yaml", &serde_yaml_ng::to_string(&job).unwrap());
    let spec = job.spec.unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert!(spec.ttl_seconds_after_finished.is_some() && spec.active_deadline_seconds.is_some());
    let pod = spec.template.spec.unwrap();
    let c = &pod.containers[0];
    assert_eq!(
        c.command.as_deref(),
        Some(&["buildctl-daemonless.sh".to_string()][..])
    );
    let args = c.args.clone().unwrap().join(" ");
    assert!(args.contains("context=https://github.com/example/shop.git#main:services/shop"));
    assert!(args.contains("type=image,name=registry.cloudflare.com/acc123/shop:build-0123456789abcdef01234567,push=true"));
    assert!(args.contains("build-arg:VERSION=1.2.3") && args.contains("target=runtime"));
    assert!(args.contains(
        "--export-cache type=registry,ref=registry.cloudflare.com/acc123/shop:buildcache"
    ));
    assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
    // In the build namespace, on amd64 nodes, labelled with its object.
    assert_eq!(job.metadata.namespace.as_deref(), Some("flaredock-builds"));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["flaredock.dev/build-for"], "shop");
    assert_eq!(labels["flaredock.dev/build-for-namespace"], "apps");
    assert_eq!(
        pod.node_selector.as_ref().unwrap()["kubernetes.io/arch"],
        "amd64"
    );
    // Rootless BuildKit's newuidmap is setuid: escalation must be allowed (BuildKit's
    // job.rootless.yaml), and nothing else is granted.
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(true));
    assert!(sc.privileged.is_none() && sc.capabilities.is_none());
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert!(
        !serde_yaml_ng::to_string(&pod.containers)
            .unwrap()
            .contains("push-password"),
        "the password lives in the Secret only"
    );
}

#[test]
fn the_build_secret_is_golden() {
    let secret = build_secret(
        &owner(),
        "flaredock-builds",
        "flaredock-build-shop-x",
        &request(),
    );
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    assert_eq!(
        secret.metadata.namespace.as_deref(),
        Some("flaredock-builds")
    );
    assert_eq!(
        secret.metadata.labels.as_ref().unwrap()["flaredock.dev/build-for-namespace"],
        "apps"
    );
    golden(
        "build-secret.yaml",
        &serde_yaml_ng::to_string(&secret).unwrap(),
    );
}

#[test]
fn local_contexts_cannot_be_built_in_the_cluster() {
    let mut r = request();
    r.source = BuildSource::Local("/tmp/app".into());
    let err = build_job(&owner(), "n", "n", &r, &JobSettings::default()).unwrap_err();
    assert!(err.contains("git URL or an HTTPS tarball"));
}

//! The install manifests: `kubectl kustomize deploy/` renders offline and holds what a
//! platform team expects (least-privilege RBAC without wildcards, a hardened two-replica
//! Deployment with probes and limits); the Argo CD health check reads the conditions.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn kustomize(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", dir])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs kubectl (apt-get install kubectl, or run scripts/test.sh): {e}")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// YAML writers differ on `100000` vs `100000.0`; compare the values.
fn numbers_as_floats(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_floats).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} is not rendered"))
}

#[test]
fn the_base_renders_and_is_hardened() {
    let docs = kustomize("deploy/");
    let crd = find(
        &docs,
        "CustomResourceDefinition",
        "cloudflarecontainers.flaredock.dev",
    );
    let committed: Value = serde_yaml_ng::from_str(&flaredock::spec::crd_yaml()).unwrap();
    assert!(
        numbers_as_floats(&crd["spec"]) == numbers_as_floats(&committed["spec"]),
        "deploy/ does not install the current CRD"
    );
    let worker_crd = find(
        &docs,
        "CustomResourceDefinition",
        "cloudflareworkers.flaredock.dev",
    );
    let committed: Value = serde_yaml_ng::from_str(&flaredock::spec::worker_crd_yaml()).unwrap();
    assert!(
        numbers_as_floats(&worker_crd["spec"]) == numbers_as_floats(&committed["spec"]),
        "deploy/ does not install the current CloudflareWorker CRD"
    );
    find(&docs, "Namespace", "flaredock-system");
    find(&docs, "ServiceAccount", "flaredock");
    find(&docs, "Service", "flaredock-metrics");

    // RBAC: no wildcards anywhere, exactly the verbs needed.
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in d["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                for v in rule[field].as_array().unwrap() {
                    assert_ne!(v, "*", "wildcard in {}: {rule}", d["metadata"]["name"]);
                }
            }
        }
    }
    let role = find(&docs, "ClusterRole", "flaredock");
    let rules = role["rules"].as_array().unwrap();
    let verbs = |resource: &str| -> Vec<String> {
        rules
            .iter()
            .filter(|r| {
                r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x == resource)
            })
            .flat_map(|r| {
                r["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
            })
            .collect()
    };
    assert!(verbs("cloudflarecontainers/status").contains(&"patch".to_string()));
    assert!(verbs("cloudflareworkers/status").contains(&"patch".to_string()));
    assert!(verbs("cloudflareworkers/finalizers").contains(&"update".to_string()));
    assert_eq!(
        verbs("configmaps"),
        ["get", "list", "watch"],
        "ConfigMaps are only read"
    );
    assert!(verbs("cloudflarecontainers/finalizers").contains(&"update".to_string()));
    assert!(verbs("secrets").contains(&"watch".to_string()));
    assert!(
        !verbs("secrets").contains(&"update".to_string()),
        "Secrets are patched for the finalizer, never rewritten"
    );
    assert!(
        verbs("jobs").contains(&"create".to_string())
            && verbs("pods/log").contains(&"get".to_string())
    );
    assert!(verbs("events").contains(&"create".to_string()));
    let lease = find(&docs, "Role", "flaredock-leader-election");
    assert_eq!(lease["metadata"]["namespace"], "flaredock-system");
    assert_eq!(lease["rules"][0]["resources"][0], "leases");

    // The Deployment.
    let deploy = find(&docs, "Deployment", "flaredock");
    assert_eq!(deploy["metadata"]["namespace"], "flaredock-system");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["serviceAccountName"], "flaredock");
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        c["resources"]["requests"]["memory"].is_string()
            && c["resources"]["limits"]["memory"].is_string()
    );
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains(&"POD_NAME") && env.contains(&"POD_NAMESPACE"));
    // Every flag of `flaredock run` used here exists.
    assert_eq!(c["args"][0], "run");
}

#[test]
fn the_production_overlay_adds_monitoring_and_network_policy() {
    let docs = kustomize("deploy/overlays/production");
    find(&docs, "ServiceMonitor", "flaredock");
    let np = find(&docs, "NetworkPolicy", "flaredock");
    assert_eq!(
        np["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
}

fn health(status: &str) -> String {
    let out = Command::new("lua5.4")
        .args([
            "-e",
            &format!("obj = {status}"),
            "-e",
            "local hs = dofile('deploy/argocd/health.lua'); io.write(hs.status)",
        ])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs lua5.4 (apt-get install lua5.4, or run scripts/test.sh): {e}")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_argocd_health_check_follows_the_conditions() {
    let cond = |ready: &str, stalled: &str| {
        format!(
            "{{metadata = {{generation = 2}}, status = {{observedGeneration = 2, conditions = {{{{type = 'Ready', status = '{ready}', message = 'm'}}, {{type = 'Stalled', status = '{stalled}', message = 's'}}}}}}}}"
        )
    };
    assert_eq!(health(&cond("True", "False")), "Healthy");
    assert_eq!(health(&cond("False", "False")), "Progressing");
    assert_eq!(health(&cond("False", "True")), "Degraded");
    assert_eq!(health("{metadata = {generation = 1}}"), "Progressing");
    assert_eq!(
        health(
            "{metadata = {generation = 3}, status = {observedGeneration = 2, conditions = {{type = 'Ready', status = 'True'}}}}"
        ),
        "Progressing",
        "an old status is not trusted"
    );
    let patch = std::fs::read_to_string(root().join("deploy/argocd/argocd-cm-patch.yaml")).unwrap();
    let doc: Value = serde_yaml_ng::from_str(&patch).unwrap();
    let file = std::fs::read_to_string(root().join("deploy/argocd/health.lua")).unwrap();
    for kind in ["CloudflareContainer", "CloudflareWorker"] {
        let script = doc["data"][format!("resource.customizations.health.flaredock.dev_{kind}")]
            .as_str()
            .unwrap_or_else(|| panic!("no health check for {kind}"));
        assert_eq!(
            script.trim(),
            file.trim(),
            "argocd-cm-patch.yaml carries health.lua for {kind}"
        );
    }
}

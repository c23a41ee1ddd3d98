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
    // No Secret access at cluster scope in the default install: the only ClusterRole
    // bound cluster-wide grants none, and the Secret rules live in flaredock-tenant,
    // bound per namespace by deploy/tenant.
    for binding in docs.iter().filter(|d| d["kind"] == "ClusterRoleBinding") {
        let role = find(
            &docs,
            "ClusterRole",
            binding["roleRef"]["name"].as_str().unwrap(),
        );
        assert!(
            grants(role)
                .iter()
                .all(|(resource, _)| resource != "secrets"),
            "ClusterRoleBinding {} grants Secrets cluster-wide",
            binding["metadata"]["name"]
        );
        // Nor ConfigMaps: only those objects name, read by name, in onboarded namespaces.
        assert!(
            grants(role)
                .iter()
                .all(|(resource, _)| resource != "configmaps"),
            "ClusterRoleBinding {} grants ConfigMaps cluster-wide",
            binding["metadata"]["name"]
        );
    }
    // Exactly the verbs the code uses (each named in a comment of deploy/base/rbac.yaml).
    let expected = |pairs: &[(&str, &[&str])]| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = pairs
            .iter()
            .flat_map(|(r, verbs)| verbs.iter().map(move |v| (r.to_string(), v.to_string())))
            .collect();
        out.sort();
        out
    };
    assert_eq!(
        grants(find(&docs, "ClusterRole", "flaredock")),
        expected(&[
            ("cloudflarecontainers", &["list", "watch", "patch"]),
            ("cloudflareworkers", &["list", "watch", "patch"]),
            ("cloudflarecontainers/status", &["patch"]),
            ("cloudflareworkers/status", &["patch"]),
            ("namespaces", &["get"]),
            ("events", &["create", "patch"]),
        ])
    );
    assert_eq!(
        grants(find(&docs, "ClusterRole", "flaredock-tenant")),
        expected(&[("secrets", &["get", "patch"]), ("configmaps", &["get"])]),
        "Secrets and ConfigMaps are read by name (Secrets patched for the finalizer), never listed, watched or rewritten"
    );
    // No Role or ClusterRole of the default install lists or watches ConfigMaps.
    for role in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        assert!(
            grants(role)
                .iter()
                .all(|(r, v)| r != "configmaps" || v == "get"),
            "{} lists or watches ConfigMaps",
            role["metadata"]["name"]
        );
    }
    let lease = find(&docs, "Role", "flaredock-leader-election");
    assert_eq!(lease["metadata"]["namespace"], "flaredock-system");
    assert_eq!(
        grants(lease),
        expected(&[("leases", &["get", "create", "patch"])])
    );
    // Hardening around the pods.
    let ns = find(&docs, "Namespace", "flaredock-system");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let pdb = find(&docs, "PodDisruptionBudget", "flaredock");
    assert_eq!(pdb["spec"]["minAvailable"], 1);

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
    assert_flags_are_flaredock_run(c);
}

/// The container's command line is `flaredock run` with flags the CLI parses, and
/// every environment variable it sets is one the CLI reads (RUST_LOG aside: the log
/// filter's own).
fn assert_flags_are_flaredock_run(c: &Value) {
    use clap::{CommandFactory, Parser};
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args.first(), Some(&"run"), "{args:?}");
    let parsed = flaredock::cli::Cli::try_parse_from(
        std::iter::once("flaredock").chain(args.iter().copied()),
    )
    .unwrap_or_else(|e| panic!("the Deployment's args {args:?} do not parse: {e}"));
    assert!(
        matches!(parsed.command, Some(flaredock::cli::Command::Run(_))),
        "{args:?} is not `flaredock run`"
    );
    let command = flaredock::cli::Cli::command();
    let run = command
        .get_subcommands()
        .find(|s| s.get_name() == "run")
        .expect("flaredock run");
    let read: Vec<String> = run
        .get_arguments()
        .chain(command.get_arguments())
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().to_string())
        .collect();
    for var in c["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap();
        if name == "RUST_LOG" {
            continue;
        }
        assert!(
            read.iter().any(|r| r == name),
            "the Deployment sets {name}, which `flaredock run` does not read (it reads {read:?})"
        );
    }
}

/// Every `(resource, verb)` a Role or ClusterRole grants, sorted.
fn grants(role: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        for r in rule["resources"].as_array().unwrap() {
            for v in rule["verbs"].as_array().unwrap() {
                out.push((
                    r.as_str().unwrap().to_string(),
                    v.as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_tenant_namespace_is_onboarded_with_a_rolebinding_there() {
    let docs = kustomize("deploy/tenant-example");
    assert_eq!(docs.len(), 1, "{docs:?}");
    let binding = find(&docs, "RoleBinding", "flaredock-tenant");
    assert_eq!(binding["metadata"]["namespace"], "team-a");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], "flaredock-tenant");
    assert_eq!(binding["subjects"][0]["name"], "flaredock");
    assert_eq!(
        binding["subjects"][0]["namespace"], "flaredock-system",
        "the subject is the operator's service account, not one of the tenant"
    );
    // The single-tenant alternative binds the same role everywhere, and says so.
    let docs = kustomize("deploy/optional/cluster-secrets");
    let everywhere = find(&docs, "ClusterRoleBinding", "flaredock-tenant-everywhere");
    assert_eq!(everywhere["roleRef"]["name"], "flaredock-tenant");
}

#[test]
fn the_kustomizations_use_current_syntax() {
    for dir in [
        "deploy",
        "deploy/base",
        "deploy/overlays/production",
        "deploy/optional/networkpolicy",
        "deploy/optional/servicemonitor",
        "deploy/optional/cluster-secrets",
        "deploy/optional/builds",
        "deploy/tenant",
        "deploy/tenant-example",
    ] {
        let text = std::fs::read_to_string(root().join(dir).join("kustomization.yaml")).unwrap();
        let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
        for old in ["bases", "commonLabels", "patchesStrategicMerge", "vars"] {
            assert!(
                doc.get(old).is_none(),
                "{dir}/kustomization.yaml uses {old}"
            );
        }
    }
    let docs = kustomize("deploy/");
    let deploy = find(&docs, "Deployment", "flaredock");
    assert_eq!(
        deploy["spec"]["selector"]["matchLabels"],
        serde_json::json!({"app.kubernetes.io/name": "flaredock"}),
        "labels are not added to the immutable selector"
    );
    let spread = deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
        .as_array()
        .unwrap();
    let keys: Vec<&str> = spread
        .iter()
        .map(|c| c["topologyKey"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    );
}

#[test]
fn the_production_overlay_adds_monitoring_and_network_policy() {
    let docs = kustomize("deploy/overlays/production");
    // In-cluster builds: their own namespace, enabled on the operator, confined.
    let deploy = find(&docs, "Deployment", "flaredock");
    let args: Vec<&str> = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--enable-builds"), "{args:?}");
    assert!(args.contains(&"--build-namespace=flaredock-builds"));
    assert_flags_are_flaredock_run(&deploy["spec"]["template"]["spec"]["containers"][0]);
    let builds = find(&docs, "Namespace", "flaredock-builds");
    assert_eq!(
        builds["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "privileged",
        "rootless BuildKit needs it; nothing else runs there"
    );
    let role = find(&docs, "Role", "flaredock-builds");
    assert_eq!(role["metadata"]["namespace"], "flaredock-builds");
    let mut expected = vec![
        ("jobs", "create"),
        ("jobs", "get"),
        ("jobs", "list"),
        ("jobs", "watch"),
        ("pods", "list"),
        ("pods/log", "get"),
        ("secrets", "create"),
        ("secrets", "delete"),
    ];
    expected.sort();
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(r, v)| (r.to_string(), v.to_string()))
        .collect();
    assert_eq!(grants(role), expected);
    let deny = find(&docs, "NetworkPolicy", "default-deny-but-dns-and-https");
    assert_eq!(deny["metadata"]["namespace"], "flaredock-builds");
    assert!(deny["spec"].get("ingress").is_none(), "nothing in");
    let ports: Vec<i64> = deny["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["ports"].as_array().unwrap().iter())
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [53, 53, 443]);
    find(&docs, "ServiceMonitor", "flaredock");
    let np = find(&docs, "NetworkPolicy", "flaredock");
    assert_eq!(
        np["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert!(
        np["spec"]["ingress"][0]["from"][0]["namespaceSelector"].is_object(),
        "the metrics port is reachable only from the scraping namespace"
    );
}

/// A JSON value as a Lua table constructor.
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!(
            "\"{}\"",
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        ),
        Value::Array(a) => format!("{{{}}}", a.iter().map(lua).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("[{}] = {}", lua(&Value::String(k.clone())), lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs a health check under Lua 5.1 (Argo CD's gopher-lua dialect): (status, message).
fn health_of(script: &Path, obj: &Value) -> (String, String) {
    let out = Command::new("lua5.1")
        .args([
            "-e",
            &format!("obj = {}", lua(obj)),
            "-e",
            &format!(
                "local hs = dofile('{}'); io.write(hs.status, '\\n', hs.message or '')",
                script.display()
            ),
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs lua5.1 (apt-get install lua5.1, or run scripts/test.sh): {e}")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_string(), message.to_string())
}

#[test]
fn the_argocd_health_checks_pass_their_upstream_tests() {
    let shared = std::fs::read_to_string(root().join("deploy/argocd/health.lua")).unwrap();
    let patch = std::fs::read_to_string(root().join("deploy/argocd/argocd-cm-patch.yaml")).unwrap();
    let patch: Value = serde_yaml_ng::from_str(&patch).unwrap();
    let mut cases = 0;
    for kind in ["CloudflareContainer", "CloudflareWorker"] {
        let dir = root()
            .join("deploy/argocd/resource_customizations/flaredock.dev")
            .join(kind);
        let script = dir.join("health.lua");
        assert_eq!(
            std::fs::read_to_string(&script).unwrap(),
            shared,
            "{kind}: the upstream-layout script is deploy/argocd/health.lua"
        );
        let in_cm = patch["data"][format!("resource.customizations.health.flaredock.dev_{kind}")]
            .as_str()
            .unwrap_or_else(|| panic!("no health check for {kind} in argocd-cm-patch.yaml"));
        assert_eq!(
            in_cm.trim(),
            shared.trim(),
            "argocd-cm-patch.yaml carries health.lua for {kind}"
        );
        let tests: Value = serde_yaml_ng::from_str(
            &std::fs::read_to_string(dir.join("health_test.yaml")).unwrap(),
        )
        .unwrap();
        let mut statuses = std::collections::BTreeSet::new();
        for case in tests["tests"].as_array().unwrap() {
            let input = case["inputPath"].as_str().unwrap();
            let obj: Value =
                serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join(input)).unwrap())
                    .unwrap();
            assert_eq!(obj["kind"], kind, "{input}");
            let (status, message) = health_of(&script, &obj);
            assert_eq!(
                status,
                case["healthStatus"]["status"].as_str().unwrap(),
                "{kind} {input}"
            );
            assert_eq!(
                message,
                case["healthStatus"]["message"].as_str().unwrap(),
                "{kind} {input}"
            );
            statuses.insert(status);
            cases += 1;
        }
        for wanted in ["Healthy", "Progressing", "Degraded", "Suspended"] {
            assert!(statuses.contains(wanted), "{kind}: no {wanted} case");
        }
    }
    assert!(cases >= 12);
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_exported_metrics() {
    let docs = kustomize("deploy/optional/grafana");
    let cm = find(&docs, "ConfigMap", "flaredock-grafana-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: Value =
        serde_json::from_str(cm["data"]["flaredock-dashboard.json"].as_str().unwrap()).unwrap();
    // What the code exports: every family of a registry with each metric touched once.
    let metrics = flaredock::telemetry::metrics::Metrics::new();
    metrics.reconciliations.with_label_values(&["ready"]).inc();
    metrics.reconcile_errors.with_label_values(&["x"]).inc();
    metrics.set_ready("a/b", Some(true));
    metrics.set_rollout("a/b", true);
    let mut config = flaredock::cloudflare::ClientConfig::new(
        "http://127.0.0.1:9",
        "acc",
        flaredock::cloudflare::Secret::new("t"),
    );
    config.max_attempts = 1;
    let em = flaredock::cloudflare::CloudflareClient::new(config).unwrap();
    // One call (refused: nothing listens there) so that the call counter has a sample.
    assert!(em.list_applications().await.is_err());
    let images = flaredock::reconcile::images::ImageResolver::new(
        em.clone(),
        flaredock::oci::RegistryClient::new(vec![]).unwrap(),
        Default::default(),
        Default::default(),
    );
    metrics.collect_from("acc", &em, &images);
    let text = metrics.render();
    let exported: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("flaredock_"))
                .collect();
            assert!(!names.is_empty(), "{expr} queries no flaredock metric");
            for name in names {
                let family = name.trim_end_matches("_bucket");
                assert!(
                    exported.contains(family),
                    "{} queries {name}, which flaredock does not export ({exported:?})",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 10);
    for wanted in [
        "flaredock_reconcile_errors_total",
        "flaredock_rate_limit_headroom_requests",
        "flaredock_rollouts_in_progress",
    ] {
        assert!(
            dashboard.to_string().contains(wanted),
            "the dashboard shows {wanted}"
        );
    }
}

//! The committed CRD is what the code generates, and it carries the rules.

use flaredock::spec::crd_yaml;

#[test]
fn committed_crd_is_fresh() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/cloudflarecontainer.yaml");
    let committed = std::fs::read_to_string(&path).expect("crds/cloudflarecontainer.yaml exists");
    assert!(
        committed == crd_yaml(),
        "crds/cloudflarecontainer.yaml is stale: run `cargo run -- crd > crds/cloudflarecontainer.yaml`"
    );
}

#[test]
fn committed_worker_crd_is_fresh() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/cloudflareworker.yaml");
    let committed = std::fs::read_to_string(&path).expect("crds/cloudflareworker.yaml exists");
    assert!(
        committed == flaredock::spec::worker_crd_yaml(),
        "crds/cloudflareworker.yaml is stale: run `cargo run -- crd` and split its two documents"
    );
}

#[test]
fn worker_crd_carries_its_rules() {
    let crd: serde_json::Value =
        serde_yaml_ng::from_str(&flaredock::spec::worker_crd_yaml()).unwrap();
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "cfw");
    assert_eq!(
        crd["spec"]["names"]["categories"][0], "flaredock",
        "kubectl get flaredock"
    );
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let required: Vec<&str> = spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"compatibilityDate") && required.contains(&"source"));
    let source_rules = spec["properties"]["source"]["x-kubernetes-validations"].to_string();
    assert!(source_rules.contains("has(self.inline)"), "{source_rules}");
    let container: serde_json::Value = serde_yaml_ng::from_str(&crd_yaml()).unwrap();
    let worker_rules = container["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        ["spec"]["properties"]["worker"]["x-kubernetes-validations"]
        .to_string();
    assert!(
        worker_rules.contains("has(self.name) != has(self.scriptName)"),
        "{worker_rules}"
    );
}

#[test]
fn crd_has_validation_columns_and_descriptions() {
    let crd: serde_json::Value = serde_yaml_ng::from_str(&crd_yaml()).unwrap();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "cfc");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Ready",
            "Image",
            "Application",
            "Rollout",
            "Suspended",
            "Age"
        ]
    );
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rules: Vec<&str> = spec["x-kubernetes-validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules
            .iter()
            .any(|r| r.contains("has(self.image) != has(self.build)"))
    );
    assert!(
        rules
            .iter()
            .any(|r| r.contains("instanceType") && r.contains("resources"))
    );
    assert!(
        spec["properties"].get("instances").is_none(),
        "instances is the Durable Object's to manage, not a spec field"
    );
    let props = &spec["properties"];
    assert!(
        props["className"]["pattern"]
            .as_str()
            .unwrap()
            .contains("A-Za-z_$")
    );
    assert!(
        props["className"]["description"]
            .as_str()
            .unwrap()
            .contains("Durable Object")
    );
    assert_eq!(props["maxInstances"]["default"], 20);
    let regions = &props["constraints"]["properties"]["regions"]["items"]["enum"];
    assert_eq!(regions.as_array().unwrap().len(), 9);
    let types: Vec<&serde_json::Value> = props["instanceType"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| !v.is_null())
        .collect();
    assert_eq!(types.len(), 6);
    assert!(version["subresources"]["status"].is_object());
}

#[test]
fn both_crds_are_hardened() {
    for yaml in [
        flaredock::spec::crd_yaml(),
        flaredock::spec::worker_crd_yaml(),
    ] {
        let crd: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
        assert_eq!(
            root["x-kubernetes-validations"][0]["rule"], "self.metadata.name.size() <= 63",
            "{kind}"
        );
        let conditions = &root["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{kind}");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"][0], "type",
            "{kind}"
        );
        assert_eq!(
            conditions["items"]["properties"]["message"]["maxLength"],
            32768
        );
        assert_eq!(crd["spec"]["names"]["categories"][0], "flaredock");
    }
    let crd: serde_json::Value = serde_yaml_ng::from_str(&flaredock::spec::crd_yaml()).unwrap();
    let env = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["env"];
    assert_eq!(env["maxItems"], 128, "env is bounded");
    assert_eq!(
        (
            &env["x-kubernetes-list-type"],
            &env["x-kubernetes-list-map-keys"]
        ),
        (&serde_json::json!("map"), &serde_json::json!(["name"])),
        "env is a list map keyed by name, as a Pod's"
    );
    assert!(env["items"]["properties"]["value"]["maxLength"].is_number());
    assert!(
        env["items"]["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .is_some_and(|r| r.contains("valueFrom"))
    );
    let crd: serde_json::Value =
        serde_yaml_ng::from_str(&flaredock::spec::worker_crd_yaml()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["vars"]["maxProperties"], 128);
    assert_eq!(
        spec["properties"]["source"]["properties"]["inline"]["properties"]["modules"]["maxProperties"],
        64
    );
}

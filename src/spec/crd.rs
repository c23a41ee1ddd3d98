//! The two CustomResourceDefinitions as flaredock installs them: generated from the
//! types, then hardened with what the derive cannot say.

use kube::CustomResourceExt;

use super::{CloudflareContainer, CloudflareWorker};

/// The CloudflareContainer CRD as YAML (`crds/cloudflarecontainer.yaml`).
pub fn crd_yaml() -> String {
    render_crd(container_crd())
}

/// The CloudflareWorker CRD as YAML (`crds/cloudflareworker.yaml`).
pub fn worker_crd_yaml() -> String {
    render_crd(worker_crd())
}

/// Both CRDs, as `flaredock crd` prints them.
pub fn all_crds_yaml() -> String {
    format!("{}---\n{}", crd_yaml(), worker_crd_yaml())
}

type Crd =
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// The CloudflareContainer CRD, hardened (bounds the derive cannot say).
pub fn container_crd() -> Crd {
    harden(CloudflareContainer::crd())
}

/// The CloudflareWorker CRD, hardened (bounds the derive cannot say).
pub fn worker_crd() -> Crd {
    harden(CloudflareWorker::crd())
}

/// Bounds the derive cannot say, set on the generated schema:
/// - `metadata.name` at most 63 characters (it becomes part of the owner recorded at
///   Cloudflare and of label values);
/// - `maxProperties` and value `maxLength` on the maps CEL rules iterate (`vars`,
///   `modules`, build `args`), so the API server can bound the rules' cost;
/// - `spec.env` a list map keyed by `name`, as a Pod's (one entry per name; server-side
///   apply merges entries);
/// - `status.conditions` a list map keyed by `type` (one condition per type, merged by
///   server-side apply), each field bounded as `metav1.Condition` is.
fn harden(crd: Crd) -> Crd {
    let Ok(mut v) = serde_json::to_value(&crd) else {
        return crd;
    };
    if let Some(versions) = v
        .pointer_mut("/spec/versions")
        .and_then(|x| x.as_array_mut())
    {
        for version in versions {
            let Some(root) = version.pointer_mut("/schema/openAPIV3Schema") else {
                continue;
            };
            root["x-kubernetes-validations"] = serde_json::json!([{
                "rule": "self.metadata.name.size() <= 63",
                "message": "metadata.name must be at most 63 characters (it is recorded at Cloudflare as part of the owner)",
            }]);
            for (pointer, max_properties, max_value) in [
                ("/properties/spec/properties/vars", 128, 5_120),
                (
                    "/properties/spec/properties/build/properties/args",
                    64,
                    4_096,
                ),
                (
                    "/properties/spec/properties/source/properties/inline/properties/modules",
                    64,
                    1_048_576,
                ),
            ] {
                if let Some(map) = root.pointer_mut(pointer).and_then(|m| m.as_object_mut()) {
                    map.insert("maxProperties".into(), max_properties.into());
                    if let Some(values) = map
                        .get_mut("additionalProperties")
                        .and_then(|a| a.as_object_mut())
                    {
                        values.insert("maxLength".into(), max_value.into());
                    }
                }
            }
            if let Some(env) = root
                .pointer_mut("/properties/spec/properties/env")
                .and_then(|c| c.as_object_mut())
            {
                env.insert("x-kubernetes-list-type".into(), "map".into());
                env.insert(
                    "x-kubernetes-list-map-keys".into(),
                    serde_json::json!(["name"]),
                );
            }
            if let Some(conditions) = root
                .pointer_mut("/properties/status/properties/conditions")
                .and_then(|c| c.as_object_mut())
            {
                conditions.insert("x-kubernetes-list-type".into(), "map".into());
                conditions.insert(
                    "x-kubernetes-list-map-keys".into(),
                    serde_json::json!(["type"]),
                );
                conditions.insert("maxItems".into(), 16.into());
                if let Some(fields) = conditions
                    .get_mut("items")
                    .and_then(|i| i.get_mut("properties"))
                    .and_then(|p| p.as_object_mut())
                {
                    for (field, max) in [("type", 316), ("reason", 1_024), ("message", 32_768)] {
                        if let Some(f) = fields.get_mut(field).and_then(|f| f.as_object_mut()) {
                            f.insert("maxLength".into(), max.into());
                        }
                    }
                    if let Some(status) = fields.get_mut("status").and_then(|f| f.as_object_mut()) {
                        status.insert(
                            "enum".into(),
                            serde_json::json!(["True", "False", "Unknown"]),
                        );
                    }
                }
            }
        }
    }
    serde_json::from_value(v).unwrap_or(crd)
}

fn render_crd(crd: Crd) -> String {
    serde_yaml_ng::to_string(&crd).unwrap_or_else(|e| format!("# cannot render the CRD: {e}\n"))
}

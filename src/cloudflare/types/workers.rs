//! Wire types of the Workers API (`workers_*`): Durable Object namespaces, bindings,
//! migrations, scripts, their upload and their settings.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cloudflare::token::Secret;

/// `workers_namespace`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct DurableObjectNamespace {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_sqlite: Option<bool>,
}

/// `workers_binding_item`: the `type` and `name` every kind has, the rest kept as is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Binding {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl Binding {
    /// `workers_binding_kind_durable_object_namespace` bound to a class of the script itself.
    pub fn durable_object(name: &str, class_name: &str) -> Self {
        let mut rest = Map::new();
        rest.insert("class_name".into(), Value::String(class_name.into()));
        Binding {
            kind: "durable_object_namespace".into(),
            name: name.into(),
            rest,
        }
    }

    /// `workers_binding_kind_plain_text`.
    pub fn plain_text(name: &str, text: &str) -> Self {
        let mut rest = Map::new();
        rest.insert("text".into(), Value::String(text.into()));
        Binding {
            kind: "plain_text".into(),
            name: name.into(),
            rest,
        }
    }

    /// `workers_binding_kind_inherit`: keep the binding as the latest version has it.
    pub fn inherit(name: &str) -> Self {
        Binding {
            kind: "inherit".into(),
            name: name.into(),
            rest: Map::new(),
        }
    }

    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.rest.get(key).and_then(Value::as_str)
    }
}

/// `workers_single_step_migrations` (the step fields flaredock writes).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Migrations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_classes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_sqlite_classes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted_classes: Vec<String>,
}

/// One item of `GET /workers/scripts` (`workers_script-response`): the fields flaredock
/// reads. `tags` carry flaredock's ownership and upload hashes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ScriptInfo {
    /// The script name.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_on: Option<String>,
}

impl ScriptInfo {
    pub fn tags(&self) -> &[String] {
        self.tags.as_deref().unwrap_or(&[])
    }
}

/// `workers_container_item`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContainerItem {
    pub class_name: String,
}

/// A `secret_text` binding; the value is only put on the wire by the client.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretBinding {
    pub name: String,
    pub text: Secret,
}

/// The `metadata` part of a module upload (`workers_script_upload`). Secret bindings
/// are kept apart so that printing the metadata never shows a value.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct UploadMetadata {
    pub main_module: String,
    pub compatibility_date: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compatibility_flags: Vec<String>,
    /// Non-secret bindings (`plain_text`, `durable_object_namespace`).
    pub bindings: Vec<Binding>,
    #[serde(skip)]
    pub secrets: Vec<SecretBinding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrations: Option<Migrations>,
    /// Classes whose namespaces host containers (`workers_containers`; see the client
    /// docs on where the official schema and wrangler differ).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerItem>,
    pub tags: Vec<String>,
    /// `workers_observability`, `workers_placement_info`, `workers_limits`,
    /// `workers_tail_consumers` (`spec.observability`, … in the official form).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observability: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tail_consumers: Option<Value>,
}

/// One module part of an upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptModule {
    pub name: String,
    pub content_type: String,
    pub content: Vec<u8>,
}

impl ScriptModule {
    /// The part's content type, from the module's name (the types the official
    /// `workers_script_upload` encoding lists).
    pub fn content_type_for(name: &str) -> &'static str {
        match name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("js" | "mjs") => "application/javascript+module",
            Some("cjs") => "application/javascript",
            Some("py") => "text/x-python",
            Some("wasm") => "application/wasm",
            Some("map") => "application/source-map",
            Some("txt" | "html" | "json" | "md" | "css" | "svg") => "text/plain",
            _ => "application/octet-stream",
        }
    }
}

/// A module upload: metadata plus module parts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScriptUpload {
    pub metadata: UploadMetadata,
    pub modules: Vec<ScriptModule>,
}

/// `workers_script-and-version-settings-item` (the fields flaredock reads and writes).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ScriptSettings {
    #[serde(default)]
    pub bindings: Vec<Binding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<Migrations>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility_date: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compatibility_flags: Vec<String>,
    /// `workers_placement_info_no_status`, as Cloudflare returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Value>,
    /// `workers_observability`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<Value>,
    /// `workers_limits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Value>,
    /// `workers_tail_consumers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_consumers: Option<Value>,
}

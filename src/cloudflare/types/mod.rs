//! Wire types of the Cloudflare API, named after the official schemas in
//! `shared/cloudflare-api/` (`cc_*` for containers, `workers_*` for Workers).
//!
//! Responses tolerate unknown fields and unknown enum values (`Unknown`); requests
//! serialize only fields the schema defines and skip the ones that are unset.
//!
//! The envelope every answer comes in is here; the containers API's types are in
//! `containers.rs` (`cc_*`), the Workers API's in `workers.rs` (`workers_*`).

mod containers;
mod workers;

pub use containers::*;
pub use workers::*;

use std::fmt;

use serde::{Deserialize, Serialize};

/// One `{code, message}` item of the envelope's `errors` / `messages` (`cc_Messages`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documentation_url: Option<String>,
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

/// Page-number pagination info of Workers collections (`result_info`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ResultInfo {
    #[serde(default)]
    pub page: Option<f64>,
    #[serde(default)]
    pub per_page: Option<f64>,
    #[serde(default)]
    pub count: Option<f64>,
    #[serde(default)]
    pub total_count: Option<f64>,
    #[serde(default)]
    pub total_pages: Option<f64>,
}

/// The v4 envelope every response is wrapped in.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Envelope<T> {
    pub success: bool,
    #[serde(default)]
    pub errors: Vec<Message>,
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default = "none")]
    pub result: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_info: Option<ResultInfo>,
}

fn none<T>() -> Option<T> {
    None
}

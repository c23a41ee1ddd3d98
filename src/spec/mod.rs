//! The resources (`flaredock.dev/v1alpha1`): `CloudflareContainer` (its spec in
//! `container`, its status in `container_status`) and `CloudflareWorker` ([`worker`],
//! with [`bindings`], [`reach`] and [`worker_settings`]), what both share (the policy
//! fields in `policy`, environment variables and Secret references in `env`, naming
//! and ownership in `identity`, the name patterns in `patterns`), their CRDs and
//! validation. The schema carries the rules for the API server (enums, ranges,
//! patterns, CEL); [`validate`] enforces the same rules for the command line, naming
//! the field.

pub mod bindings;
mod container;
mod container_status;
mod crd;
pub mod crd_rules;
mod env;
mod identity;
mod patterns;
mod policy;
pub mod reach;
mod validate;
pub mod worker;
pub mod worker_settings;

pub use bindings::WorkerBinding;
pub use container::*;
pub use container_status::*;
pub use crd::{all_crds_yaml, container_crd, crd_yaml, worker_crd, worker_crd_yaml};
pub use env::*;
pub use identity::*;
pub use patterns::*;
pub use policy::*;
pub use validate::{FieldError, is_js_identifier, validate, validate_worker};
pub use worker::*;

//! flaredock: runs Docker images on Cloudflare Containers, driven by `CloudflareContainer`
//! Kubernetes resources or by the command line.
//!
//! Modules, one concern each:
//! - [`bounded`]: the map with an entry and byte budget every long-lived cache uses.
//! - [`cloudflare`]: typed Cloudflare API client (errors, rate limiter, secrets).
//! - [`emulator`]: a Cloudflare API emulator (and embedded OCI registry) on loopback.
//! - [`oci`]: image references and the OCI registry client.
//! - [`build`]: Dockerfile builds (buildah/buildx locally, BuildKit Jobs in a cluster).
//! - [`spec`]: the `CloudflareContainer` resource and its validation.
//! - [`manifest`]: reading manifests from files, with errors naming file, object, field.
//! - [`import`]: a wrangler project (jsonc, json, toml) as flaredock manifests.
//! - [`reconcile`]: observe → plan → act → status, free of Kubernetes plumbing.
//! - [`controller`]: the Kubernetes controller wiring (`flaredock run`).
//! - [`cli`]: the `flaredock` command line.
//! - [`telemetry`]: logging and metrics.

pub mod bounded;
pub mod build;
pub mod cli;
pub mod cloudflare;
pub mod controller;
pub mod emulator;
pub mod import;
pub mod manifest;
pub mod oci;
pub mod reconcile;
pub mod spec;
pub mod telemetry;

/// Locks a mutex, carrying on with its data when a panicking holder poisoned it: every
/// mutex here guards data that stays consistent (counters, caches, logs, windows).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

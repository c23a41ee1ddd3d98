//! The reconcile core, free of Kubernetes plumbing. Every kind goes through one
//! [`pipeline`]: what flaredock **wants** (from the spec and what Kubernetes holds),
//! what Cloudflare **has** (observed through a shared cached [`view::AccountView`] and
//! the [`images::ImageResolver`], reads only), **what to do** (a [`plan::Plan`] from a
//! pure function) and **doing it** ([`act`], idempotent), then observe again and derive
//! the status. The policy (suspend, `managementPolicy: Observe`, adoption approval,
//! drift, holds) lives in the pipeline, once for every kind. The CLI and the
//! controller both drive [`Reconciler`].
//!
//! Where each step is, per kind:
//!
//! | step | CloudflareContainer | CloudflareWorker |
//! |---|---|---|
//! | wants | [`model`] | [`worker::model`], [`worker::inputs`] |
//! | has | [`observe`], [`images`] | `worker/observe.rs` |
//! | what to do | [`plan`] | [`worker::plan`] |
//! | do it | [`act`], [`images`] (acquire) | [`act`] |
//! | status | [`status`] | [`worker::status`] |
//! | through the pipeline | `container.rs` | [`worker`] |

pub mod act;
mod bundle_cache;
mod container;
pub mod converge;
mod delete;
pub mod holds;
pub mod images;
pub mod model;
pub mod observe;
mod outcome;
pub mod pipeline;
pub mod plan;
pub mod reason;
pub mod status;
pub mod view;
pub mod worker;

use std::sync::Arc;

pub use converge::{ConvergeOptions, Converged, converge, converge_all};
use images::{ImageResolver, Peers};
use model::Desired;
pub use outcome::{DeleteOutcome, Happening, Outcome, ReconcileOutcome, Reconciled, WaitingOn};
use view::AccountView;

/// A Worker bundle's manifest digest and files.
type Bundle = (String, Vec<(String, Vec<u8>)>);

/// Observe → plan → act → status for objects of one account.
pub struct Reconciler {
    pub view: Arc<AccountView>,
    pub images: Arc<ImageResolver>,
    /// Who records ownership: every owner id and image repository names it.
    pub cluster: crate::spec::ClusterIdentity,
    /// Worker bundles pulled from registries: reference → (manifest digest, files).
    bundles: tokio::sync::Mutex<bundle_cache::BundleCache>,
    /// The deadline of one reconcile ([`pipeline::run`]).
    deadline: std::time::Duration,
    /// Zone ids and the workers.dev subdomain (bounded; [`worker::reach`]).
    reach: worker::reach::ReachCache,
    /// When the record on a script stands for reading its workers.dev state and crons.
    reach_reads: worker::reach::ReachReads,
}

/// The deadline of one reconcile unless told otherwise (`--reconcile-timeout`).
pub const DEFAULT_RECONCILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl Reconciler {
    pub fn new(
        view: Arc<AccountView>,
        images: Arc<ImageResolver>,
        cluster: crate::spec::ClusterIdentity,
    ) -> Self {
        Reconciler {
            view,
            images,
            cluster,
            bundles: Default::default(),
            deadline: DEFAULT_RECONCILE_TIMEOUT,
            reach: Default::default(),
            reach_reads: Default::default(),
        }
    }

    /// With this policy for reading Workers' workers.dev state and crons (the command
    /// line trusts the record flaredock left on the script; the controller reads once
    /// per resync).
    pub fn with_reach_reads(mut self, reads: worker::reach::ReachReads) -> Self {
        self.reach_reads = reads;
        self
    }

    /// With this deadline for each reconcile.
    pub fn with_reconcile_timeout(mut self, deadline: std::time::Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The desired state of a container, its Worker looked up among the peers.
    pub fn desired_of(&self, obj: &crate::spec::CloudflareContainer, peers: &dyn Peers) -> Desired {
        Desired::from_spec(obj, peers, &self.cluster)
    }
}

#[cfg(test)]
mod send_checks {
    use super::*;
    use crate::spec::{CloudflareContainer, CloudflareWorker};
    fn is_send<T: Send>(_: T) {}
    #[allow(dead_code)]
    fn futures_are_send(
        r: &'static Reconciler,
        o: &'static CloudflareContainer,
        w: &'static CloudflareWorker,
        d: &'static Desired,
        p: &'static plan::Plan,
    ) {
        let peers: &'static std::collections::HashMap<String, String> = Box::leak(Box::default());
        let data: &'static worker::inputs::SourceData = Box::leak(Box::default());
        is_send(r.observe(o, d, peers, true));
        is_send(r.reconcile(o, None, peers));
        is_send(r.reconcile_worker(w, vec![], data, None));
        is_send(r.delete(o));
        let mut ev = Vec::new();
        is_send(r.act(&d.owner, "x", p, &mut ev));
    }
}

//! The watched objects the reconciles read: the stores the runtime fills, and the
//! peer index built from them (Ready digests for promotion, Worker script names,
//! containers being deleted).

use std::sync::Arc;

use kube::runtime::reflector::Store;

use super::Context;
use crate::reconcile::images::{PeerIndex, being_deleted};
use crate::reconcile::status::is_ready;
use crate::spec::{CloudflareContainer, CloudflareWorker};

impl Context {
    /// The watched objects (the runtime sets them; tests may too).
    pub fn set_stores(
        &self,
        containers: Store<CloudflareContainer>,
        workers: Store<CloudflareWorker>,
    ) {
        let _ = self.store.set(containers);
        let _ = self.worker_store.set(workers);
    }

    /// The Ready digests of the other objects (promotion) and the CloudflareWorkers'
    /// script names.
    pub(super) fn peers(&self) -> PeerIndex {
        let images = self
            .store
            .get()
            .map(|store| {
                store
                    .state()
                    .iter()
                    .filter_map(|o| {
                        let status = o.status.as_ref()?;
                        is_ready(status).then(|| (o.key(), status.image.clone()))
                    })
                    .filter_map(|(k, i)| i.map(|i| (k, i)))
                    .collect()
            })
            .unwrap_or_default();
        let workers = self
            .worker_store
            .get()
            .map(|store| {
                store
                    .state()
                    .iter()
                    .map(|w| (w.key(), w.script_name().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        PeerIndex {
            images,
            workers,
            data: Default::default(),
            deleting: being_deleted(self.containers().iter().map(|o| o.as_ref())),
        }
    }

    /// The CloudflareContainers watched now.
    pub(super) fn containers(&self) -> Vec<Arc<CloudflareContainer>> {
        self.store.get().map(|s| s.state()).unwrap_or_default()
    }
}

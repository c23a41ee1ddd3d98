//! The per-account machinery: one reconciler (client, cached view, image resolver) per
//! account id and token, created on first use and dropped when idle, and what the
//! resync and the metrics scrape do with all of them.

use std::sync::Arc;
use std::time::Duration;

use super::{Context, Error};
use crate::cloudflare::{ClientConfig, CloudflareClient, Secret as SecretString};
use crate::oci::RegistryClient;
use crate::oci::copy::CopyOptions;
use crate::reconcile::Reconciler;
use crate::reconcile::images::{ImageResolver, SourceCredentials};
use crate::reconcile::view::AccountView;

/// One account's reconcile machinery, shared by every object of that account.
pub(super) struct Account {
    pub(super) reconciler: Arc<Reconciler>,
    pub(super) client: CloudflareClient,
    pub(super) account_id: String,
    /// When an object last used it: accounts (and tokens) nobody uses are dropped.
    pub(super) last_used: std::sync::Mutex<std::time::Instant>,
}

/// An account's machinery unused this long is dropped (a rotated token's old account,
/// deleted objects' accounts).
const ACCOUNT_IDLE: Duration = Duration::from_secs(3600);

/// Account id and token fingerprint.
pub(super) type AccountKey = (String, [u8; 32]);

impl Context {
    /// Forgets every account's machinery and cached view (leadership regained: what
    /// another replica did meanwhile is read afresh).
    pub async fn drop_accounts(&self) {
        self.accounts.lock().await.clear();
    }

    /// The reconcile machinery of an account (created on first use).
    pub(super) async fn account(
        &self,
        account_id: &str,
        token: &SecretString,
    ) -> Result<Arc<Account>, Error> {
        let key = (account_id.to_string(), token.fingerprint());
        let mut accounts = self.accounts.lock().await;
        accounts.retain(|_, a| crate::lock(&a.last_used).elapsed() < ACCOUNT_IDLE);
        if let Some(a) = accounts.get(&key) {
            *crate::lock(&a.last_used) = std::time::Instant::now();
            return Ok(a.clone());
        }
        let mut config = ClientConfig::new(
            self.settings.api_base_url.clone(),
            account_id,
            token.clone(),
        );
        config.rate_limit = self.settings.rate_limit;
        config.timeout = self.settings.api_timeout;
        config.connect_timeout = self.settings.connect_timeout;
        // Every write asks the leadership, and ends before it can.
        config.write_gate = Some(self.leadership.gate());
        let limiter = self.limiters.for_token(token, config.rate_limit);
        let client = CloudflareClient::with_limiter(config, limiter)?;
        let registry = RegistryClient::with_timeouts(
            self.settings.insecure_registries.clone(),
            self.settings.registry_timeouts,
        )
        .map_err(|e| Error::Credentials(e.to_string()))?
        .with_write_gate(self.leadership.gate());
        let builder =
            crate::build::job::JobBuilder::new(self.client.clone(), self.settings.build.clone())
                .with_write_gate(self.leadership.gate());
        let images = ImageResolver::new(
            client.clone(),
            registry,
            SourceCredentials::new(),
            CopyOptions::default(),
        )
        .with_builder(Arc::new(builder), false);
        let account = Arc::new(Account {
            reconciler: Arc::new(
                Reconciler::new(
                    Arc::new(AccountView::new(client.clone())),
                    Arc::new(images),
                    self.settings.cluster.clone(),
                )
                .with_reconcile_timeout(self.settings.reconcile_timeout),
            ),
            client,
            account_id: account_id.to_string(),
            last_used: std::sync::Mutex::new(std::time::Instant::now()),
        });
        accounts.insert(key, account.clone());
        Ok(account)
    }

    /// Marks every account's view stale (the periodic resync).
    pub async fn invalidate_all(&self) {
        let accounts: Vec<Arc<Account>> = self.accounts.lock().await.values().cloned().collect();
        for a in accounts {
            a.reconciler.view.invalidate().await;
            a.reconciler.images.new_round().await;
        }
    }

    /// Feeds the account-level counters into the metrics (on scrape).
    pub async fn collect_metrics(&self) {
        let accounts: Vec<Arc<Account>> = self.accounts.lock().await.values().cloned().collect();
        self.metrics.reset_account_gauges();
        for a in accounts {
            self.metrics
                .collect_from(&a.account_id, &a.client, &a.reconciler.images);
            let caches = a.reconciler.cache_stats().await;
            self.metrics.set_caches(&a.account_id, &caches);
        }
    }
}

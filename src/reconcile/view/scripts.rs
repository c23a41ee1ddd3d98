//! The Durable Object namespaces and the account's scripts (each replaced whole by
//! the next list), and the per-script locks.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use super::AccountView;
use crate::cloudflare::ApiError;
use crate::cloudflare::types::*;

/// How old a script list may be before a script missing from it is looked up again.
const MISSING_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The namespace list, indexed by (script, class).
pub(super) struct Namespaces {
    pub(super) by_key: HashMap<(String, String), DurableObjectNamespace>,
    classes_of: HashMap<String, Vec<String>>,
}

impl Namespaces {
    fn from(list: Vec<DurableObjectNamespace>) -> Namespaces {
        let mut by_key = HashMap::new();
        let mut classes_of: HashMap<String, Vec<String>> = HashMap::new();
        for n in list {
            if let (Some(script), Some(class)) = (n.script.clone(), n.class.clone()) {
                let list = classes_of.entry(script.clone()).or_default();
                if !list.contains(&class) {
                    list.push(class.clone());
                }
                // The first one listed wins (the list may hold preview namespaces too).
                by_key.entry((script, class)).or_insert(n);
            }
        }
        for classes in classes_of.values_mut() {
            classes.sort();
        }
        Namespaces { by_key, classes_of }
    }
}

impl AccountView {
    /// The namespace of (script, class), from the cached list.
    pub async fn namespace(
        &self,
        script: &str,
        class: &str,
    ) -> Result<Option<DurableObjectNamespace>, ApiError> {
        self.with_namespaces(|n| {
            n.by_key
                .get(&(script.to_string(), class.to_string()))
                .cloned()
        })
        .await
    }

    async fn with_namespaces<R>(&self, f: impl FnOnce(&Namespaces) -> R) -> Result<R, ApiError> {
        let mut st = self.state.lock().await;
        let namespaces = match st.namespaces.take() {
            Some(n) => n,
            None => Namespaces::from(self.client.list_namespaces().await?),
        };
        let result = f(&namespaces);
        st.namespaces = Some(namespaces);
        Ok(result)
    }

    /// The script of this name from the account's script list (listed once, then kept
    /// current by our own uploads and deletes). A missing script is not trusted to the
    /// cache: the list is read again when it is older than `MISSING_RECHECK` (someone
    /// may have deployed it meanwhile).
    pub async fn script(&self, name: &str) -> Result<Option<ScriptInfo>, ApiError> {
        let mut st = self.state.lock().await;
        let missing_and_old = st.scripts.as_ref().is_some_and(|m| !m.contains_key(name))
            && st
                .scripts_fetched
                .is_none_or(|t| t.elapsed() >= MISSING_RECHECK);
        if st.scripts.is_none() || missing_and_old {
            let list = self.client.list_scripts().await?;
            st.scripts = Some(list.into_iter().map(|s| (s.id.clone(), s)).collect());
            st.scripts_fetched = Some(tokio::time::Instant::now());
        }
        Ok(st.scripts.as_ref().and_then(|m| m.get(name).cloned()))
    }

    /// Records a script as our upload left it.
    pub async fn set_script(&self, info: ScriptInfo) {
        if let Some(m) = self.state.lock().await.scripts.as_mut() {
            m.insert(info.id.clone(), info);
        }
    }

    /// Records the tags a write left on a script.
    pub async fn set_script_tags(&self, name: &str, tags: Vec<String>) {
        if let Some(info) = self
            .state
            .lock()
            .await
            .scripts
            .as_mut()
            .and_then(|m| m.get_mut(name))
        {
            info.tags = Some(tags);
        }
    }

    pub async fn remove_script(&self, name: &str) {
        if let Some(m) = self.state.lock().await.scripts.as_mut() {
            m.remove(name);
        }
    }

    /// Classes of `script` that have a Durable Object namespace (sorted).
    pub async fn namespaced_classes(&self, script: &str) -> Result<Vec<String>, ApiError> {
        self.with_namespaces(|n| n.classes_of.get(script).cloned().unwrap_or_default())
            .await
    }

    /// The lock serialising changes to one Worker script. Locks nobody holds or waits
    /// for any more are dropped here (bounded by the reconciles in flight).
    pub fn script_lock(&self, name: &str) -> Arc<Mutex<()>> {
        let mut locks = crate::lock(&self.script_locks);
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(name.to_string()).or_default().clone()
    }
}

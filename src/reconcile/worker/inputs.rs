//! Resolves a `CloudflareWorker`'s code and secret values: inline modules, a ConfigMap's
//! keys, an OCI artifact's files, and `secret_text` values from Secrets. The caller
//! supplies the ConfigMaps and Secrets (the command line from `kind: ConfigMap` and
//! `kind: Secret` documents among its files, the controller from the API server).

use std::collections::{BTreeMap, HashMap};

use super::model::{SecretValue, WorkerInputs};
use crate::cloudflare::Secret;
use crate::cloudflare::types::ScriptModule;
use crate::reconcile::plan::Blocked;
use crate::reconcile::reason::Reason;
use crate::spec::{CloudflareWorker, SecretKeyRef};

/// Key → bytes of one ConfigMap (`data` and `binaryData`) or Secret (`data` and
/// `stringData`).
pub type DataMap = BTreeMap<String, Vec<u8>>;

/// ConfigMaps and Secrets by `namespace/name`.
#[derive(Clone, Default)]
pub struct SourceData {
    pub config_maps: HashMap<String, DataMap>,
    pub secrets: HashMap<String, DataMap>,
}

impl std::fmt::Debug for SourceData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secret values never print: only which Secrets and keys are known.
        let secrets: BTreeMap<&String, Vec<&String>> = self
            .secrets
            .iter()
            .map(|(k, v)| (k, v.keys().collect()))
            .collect();
        f.debug_struct("SourceData")
            .field("config_maps", &self.config_maps.keys().collect::<Vec<_>>())
            .field("secrets", &secrets)
            .finish()
    }
}

fn waiting(reason: Reason, message: String) -> Blocked {
    Blocked::Waiting { reason, message }
}

fn refused(reason: Reason, message: String) -> Blocked {
    Blocked::Refused { reason, message }
}

/// Modules from `name → bytes`, each with the content type its name implies.
pub fn modules_from(files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Vec<ScriptModule> {
    let mut modules: Vec<ScriptModule> = files
        .into_iter()
        .map(|(name, content)| ScriptModule {
            content_type: ScriptModule::content_type_for(&name).to_string(),
            name,
            content,
        })
        .collect();
    modules.sort_by(|a, b| a.name.cmp(&b.name));
    modules
}

/// The text of key `r.key` of Secret `r.name` in `ns`, given that Secret's data when it
/// is known. A missing Secret or key waits (it may be created next); a value that is
/// not text is refused. `used_by` names the spec entry (`spec.env DB_PASSWORD`). No
/// message says anything about a value.
pub fn secret_text(
    secret: Option<&DataMap>,
    ns: &str,
    r: &SecretKeyRef,
    used_by: &str,
) -> Result<String, Blocked> {
    let Some(secret) = secret else {
        return Err(waiting(
            Reason::SecretNotFound,
            format!("Secret {ns}/{} ({used_by}) does not exist", r.name),
        ));
    };
    let Some(bytes) = secret.get(&r.key) else {
        return Err(waiting(
            Reason::SecretNotFound,
            format!("Secret {ns}/{} has no key {} ({used_by})", r.name, r.key),
        ));
    };
    String::from_utf8(bytes.clone()).map_err(|_| {
        refused(
            Reason::SecretInvalid,
            format!(
                "Secret {ns}/{} key {} ({used_by}) is not UTF-8 text",
                r.name, r.key
            ),
        )
    })
}

/// The secret values of the Worker's `secrets`, from `data`.
pub fn resolve_secrets(
    obj: &CloudflareWorker,
    data: &SourceData,
) -> Result<Vec<SecretValue>, Blocked> {
    let ns = obj.namespace_or_default();
    let mut out = Vec::new();
    for s in &obj.spec.secrets {
        let r = &s.secret_key_ref;
        let secret = data.secrets.get(&format!("{ns}/{}", r.name));
        let text = secret_text(secret, ns, r, &format!("spec.secrets {}", s.name))?;
        out.push(SecretValue {
            name: s.name.clone(),
            value: Secret::new(text),
            from: format!("Secret {}/{}", r.name, r.key),
        });
    }
    Ok(out)
}

/// Inline or ConfigMap modules plus secrets. `None` for an image source, which the
/// reconciler pulls itself.
pub fn resolve_local(
    obj: &CloudflareWorker,
    data: &SourceData,
) -> Option<Result<WorkerInputs, Blocked>> {
    let ns = obj.namespace_or_default();
    let src = &obj.spec.source;
    let modules = if let Some(inline) = &src.inline {
        Ok(modules_from(
            inline
                .modules
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
        ))
    } else if let Some(c) = &src.config_map_ref {
        match data.config_maps.get(&format!("{ns}/{}", c.name)) {
            None => Err(waiting(
                Reason::ConfigMapNotFound,
                format!(
                    "ConfigMap {ns}/{} (spec.source.configMapRef) does not exist",
                    c.name
                ),
            )),
            Some(files) if !files.contains_key(&c.main_module) => Err(refused(
                Reason::MainModuleMissing,
                format!(
                    "ConfigMap {ns}/{} has no key {} (spec.source.configMapRef.mainModule); it has {}",
                    c.name,
                    c.main_module,
                    files.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )),
            Some(files) => Ok(modules_from(files.clone())),
        }
    } else {
        return None;
    };
    Some(modules.and_then(|modules| {
        Ok(WorkerInputs {
            modules,
            secrets: resolve_secrets(obj, data)?,
        })
    }))
}

//! What the Worker plan compares: the desired upload of a `CloudflareWorker` (its code,
//! settings, bindings and the container classes that name it) and the script as the
//! account's script list shows it. Plain data, no I/O.
//!
//! flaredock records in the script's `tags` (official `workers_tags`: at most ten
//! strings without `,` or `&`) who owns it and what was uploaded, so one
//! `GET /workers/scripts` tells which Workers are current:
//! - `flaredock.dev/owner=<namespace>.<name>`
//! - `flaredock.dev/hash=code:…;config:…;vars:…;secrets:…;bindings:…`, a short hash per
//!   part (secret values are hashed with a key derived from the API token, so the tag
//!   reveals nothing of them), then `observability:…;placement:…;limits:…;
//!   tailConsumers:…` for the settings the spec sets (a setting left unset has no part,
//!   so that a Worker without them keeps the tag it had before they existed)
//! - `flaredock.dev/containers=A;B` (more tags `flaredock.dev/containers.2=…` when long):
//!   the container-enabled classes of the upload.
//! - `flaredock.dev/reach=…`: what flaredock last set or read of the Worker's
//!   reachability (a hash of its workers.dev state and crons, the routes and custom
//!   domains it made), written after those writes succeeded
//!   ([`super::reach::ReachRecord`]); carried unchanged by uploads.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::cloudflare::Secret;
use crate::cloudflare::types::{ScriptInfo, ScriptModule};
use crate::spec::{CloudflareWorker, WorkerDeletionPolicy};

/// Tag prefix of everything flaredock records on a script.
pub const TAG_PREFIX: &str = "flaredock.dev/";
const OWNER_TAG: &str = "flaredock.dev/owner=";
const HASH_TAG: &str = "flaredock.dev/hash=";
const CONTAINERS_TAG: &str = "flaredock.dev/containers";
/// The tag of [`super::reach::ReachRecord`].
pub const REACH_TAG: &str = "flaredock.dev/reach=";
/// Tags a script may carry (official `workers_tags.maxItems`).
pub const MAX_TAGS: usize = 10;
const MAX_TAG_LEN: usize = 1024;

/// A container class the Worker's upload must container-enable.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContainerClass {
    pub class_name: String,
    pub binding_name: String,
    /// `namespace/name` of the CloudflareContainer asking for it.
    pub container: String,
}

/// A secret binding's value and where it came from.
#[derive(Clone, Debug)]
pub struct SecretValue {
    pub name: String,
    pub value: Secret,
    /// `Secret <name>/<key>`, for messages (never the value).
    pub from: String,
}

/// The code and secret values of a Worker, as resolved from its source and Secrets.
#[derive(Clone, Debug, Default)]
pub struct WorkerInputs {
    pub modules: Vec<ScriptModule>,
    pub secrets: Vec<SecretValue>,
}

/// Short hashes of each part of an upload, as recorded in the hash tag.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PartHashes {
    pub code: String,
    pub config: String,
    pub vars: String,
    pub secrets: String,
    pub bindings: String,
    /// The script settings (`spec.observability`, …): empty when the spec sets none.
    pub observability: String,
    pub placement: String,
    pub limits: String,
    pub tail_consumers: String,
}

/// Parts that are recorded only when set (the script settings).
const OPTIONAL_PARTS: [&str; 4] = ["observability", "placement", "limits", "tailConsumers"];

impl PartHashes {
    /// `(part, hash)` in tag order.
    pub fn parts(&self) -> [(&'static str, &str); 9] {
        [
            ("code", &self.code),
            ("config", &self.config),
            ("vars", &self.vars),
            ("secrets", &self.secrets),
            ("bindings", &self.bindings),
            ("observability", &self.observability),
            ("placement", &self.placement),
            ("limits", &self.limits),
            ("tailConsumers", &self.tail_consumers),
        ]
    }

    /// Is `part` one of the script settings (recorded only when set)?
    pub fn is_setting(part: &str) -> bool {
        OPTIONAL_PARTS.contains(&part)
    }

    fn tag(&self) -> String {
        let parts: Vec<String> = self
            .parts()
            .iter()
            .filter(|(k, v)| !(v.is_empty() && Self::is_setting(k)))
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        format!("{HASH_TAG}{}", parts.join(";"))
    }

    fn parse(value: &str) -> PartHashes {
        let mut h = PartHashes::default();
        for item in value.split(';') {
            let (k, v) = item.split_once(':').unwrap_or((item, ""));
            let v = v.to_string();
            match k {
                "code" => h.code = v,
                "config" => h.config = v,
                "vars" => h.vars = v,
                "secrets" => h.secrets = v,
                "bindings" => h.bindings = v,
                "observability" => h.observability = v,
                "placement" => h.placement = v,
                "limits" => h.limits = v,
                "tailConsumers" => h.tail_consumers = v,
                _ => {}
            }
        }
        h
    }

    /// The whole upload's hash (status `uploadHash`).
    pub fn combined(&self) -> String {
        short_hash(self.tag().as_bytes())
    }
}

/// What flaredock's tags on a script say.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RecordedTags {
    pub owner: Option<String>,
    pub hashes: Option<PartHashes>,
    /// Container-enabled classes of the last upload flaredock made (sorted).
    pub containers: Vec<String>,
    /// The reachability record (the whole tag), if any.
    pub reach: Option<String>,
    /// Tags someone else set, kept on upload.
    pub foreign: Vec<String>,
}

impl RecordedTags {
    pub fn read(script: &ScriptInfo) -> RecordedTags {
        let mut r = RecordedTags::default();
        let mut containers: BTreeMap<u32, String> = BTreeMap::new();
        for t in script.tags() {
            if let Some(o) = t.strip_prefix(OWNER_TAG) {
                r.owner = Some(o.to_string());
            } else if let Some(h) = t.strip_prefix(HASH_TAG) {
                r.hashes = Some(PartHashes::parse(h));
            } else if t.starts_with(REACH_TAG) {
                r.reach = Some(t.clone());
            } else if let Some(rest) = t.strip_prefix(CONTAINERS_TAG) {
                let (index, list) = match rest.split_once('=') {
                    Some(("", list)) => (1, list),
                    Some((n, list)) => {
                        (n.trim_start_matches('.').parse().unwrap_or(u32::MAX), list)
                    }
                    None => continue,
                };
                containers.insert(index, list.to_string());
            } else if !t.starts_with(TAG_PREFIX) {
                r.foreign.push(t.clone());
            }
        }
        r.containers = containers
            .values()
            .flat_map(|l| l.split(';'))
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        r.containers.sort();
        r.containers.dedup();
        r
    }

    /// Does the script's last flaredock upload container-enable `class`?
    pub fn has_container(&self, class: &str) -> bool {
        self.containers.iter().any(|c| c == class)
    }
}

/// What the Worker should look like.
#[derive(Clone, Debug)]
pub struct DesiredWorker {
    /// `namespace/name` of the object.
    pub key: String,
    pub owner: String,
    pub script_name: String,
    pub main_module: String,
    pub compatibility_date: String,
    pub compatibility_flags: Vec<String>,
    pub vars: BTreeMap<String, String>,
    pub inputs: WorkerInputs,
    /// Sorted by class.
    pub containers: Vec<ContainerClass>,
    pub adopt: bool,
    pub deletion_policy: WorkerDeletionPolicy,
    pub hashes: PartHashes,
    /// workers.dev, routes, domains, crons ([`super::reach`]).
    pub reach: super::reach::DesiredReach,
    /// `spec.bindings` in the official form, sorted by name.
    pub bindings: Vec<crate::cloudflare::types::Binding>,
    /// Classes of this script bound by `spec.bindings` without a container (they get a
    /// migration as container classes do), sorted.
    pub own_classes: Vec<String>,
    /// `spec.observability`, `placement`, `limits`, `tailConsumers` in the official form.
    pub settings: crate::spec::worker_settings::OfficialSettings,
}

/// 16 hex characters of SHA-256.
pub fn short_hash(data: &[u8]) -> String {
    hex::encode(&Sha256::digest(data)[..8])
}

fn hash_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefixed, so that no two different lists hash alike.
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..8])
}

impl DesiredWorker {
    /// The desired upload of `obj`, with its resolved code and secrets and the container
    /// classes that name it. `secret_key` keys the hash of secret values (a fingerprint
    /// of the API token: the tag is readable by anyone who can list scripts).
    pub fn new(
        obj: &CloudflareWorker,
        inputs: WorkerInputs,
        mut containers: Vec<ContainerClass>,
        secret_key: &[u8; 32],
        cluster: &crate::spec::ClusterIdentity,
    ) -> DesiredWorker {
        let s = &obj.spec;
        containers.sort();
        let mut modules = inputs.modules.clone();
        modules.sort_by(|a, b| a.name.cmp(&b.name));
        let main_module = obj.main_module().to_string();
        let code = hash_parts(std::iter::once(main_module.as_bytes()).chain(
            modules.iter().flat_map(|m| {
                [
                    m.name.as_bytes(),
                    m.content_type.as_bytes(),
                    m.content.as_slice(),
                ]
            }),
        ));
        let config = hash_parts(
            std::iter::once(s.compatibility_date.as_bytes())
                .chain(s.compatibility_flags.iter().map(|f| f.as_bytes())),
        );
        let vars = hash_parts(
            s.vars
                .iter()
                .flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()]),
        );
        let mut secrets: Vec<&SecretValue> = inputs.secrets.iter().collect();
        secrets.sort_by(|a, b| a.name.cmp(&b.name));
        let secret_hashes: Vec<Vec<u8>> = secrets
            .iter()
            .map(|sv| {
                let mut h = Sha256::new();
                h.update(secret_key);
                h.update(sv.name.as_bytes());
                h.update([0]);
                h.update(sv.value.expose().as_bytes());
                h.finalize().to_vec()
            })
            .collect();
        let secrets_hash = hash_parts(
            secrets
                .iter()
                .zip(&secret_hashes)
                .flat_map(|(sv, h)| [sv.name.as_bytes(), h.as_slice()]),
        );
        let declared = super::bindings::declared(obj);
        let declared_json: Vec<Vec<u8>> = declared
            .iter()
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .collect();
        // Without spec.bindings the hash is what it was before they existed.
        let bindings = hash_parts(
            containers
                .iter()
                .flat_map(|c| [c.class_name.as_bytes(), c.binding_name.as_bytes()])
                .chain(declared_json.iter().map(Vec::as_slice)),
        );
        let own_classes = super::bindings::own_classes(&declared);
        let settings = crate::spec::worker_settings::official(s);
        let setting_hash = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .map(|v| short_hash(v.to_string().as_bytes()))
                .unwrap_or_default()
        };
        DesiredWorker {
            key: obj.key(),
            owner: obj.owner_id(cluster),
            script_name: obj.script_name().to_string(),
            main_module,
            compatibility_date: s.compatibility_date.clone(),
            compatibility_flags: s.compatibility_flags.clone(),
            vars: s.vars.clone(),
            inputs: WorkerInputs {
                modules,
                secrets: inputs.secrets,
            },
            containers,
            // Observing a script uploaded elsewhere shows what adopting it would change.
            adopt: s.adopt || s.management_policy == crate::spec::ManagementPolicy::Observe,
            deletion_policy: s.deletion_policy,
            reach: super::reach::DesiredReach::from_spec(obj),
            hashes: PartHashes {
                code,
                config,
                vars,
                secrets: secrets_hash,
                bindings,
                observability: setting_hash(&settings.observability),
                placement: setting_hash(&settings.placement),
                limits: setting_hash(&settings.limits),
                tail_consumers: setting_hash(&settings.tail_consumers),
            },
            bindings: declared,
            own_classes,
            settings,
        }
    }

    /// Every class of this script that needs a Durable Object namespace: container
    /// classes and the classes `spec.bindings` binds, sorted and deduplicated.
    pub fn all_classes(&self) -> Vec<String> {
        let mut c = self.classes();
        c.extend(self.own_classes.iter().cloned());
        c.sort();
        c.dedup();
        c
    }

    /// Container classes, sorted and deduplicated.
    pub fn classes(&self) -> Vec<String> {
        let mut c: Vec<String> = self
            .containers
            .iter()
            .map(|c| c.class_name.clone())
            .collect();
        c.dedup();
        c
    }

    /// The tags of the upload: ours first, then others' as long as they fit. `Err` when
    /// the container classes do not fit in the tags a script may carry.
    pub fn tags(&self, foreign: &[String]) -> Result<Vec<String>, String> {
        self.tags_with_reach(foreign, None)
    }

    /// [`DesiredWorker::tags`] with the reachability record `reach` after ours (left
    /// out when it does not fit: then the reachability is read each time).
    pub fn tags_with_reach(
        &self,
        foreign: &[String],
        reach: Option<&str>,
    ) -> Result<Vec<String>, String> {
        let mut tags = vec![format!("{OWNER_TAG}{}", self.owner), self.hashes.tag()];
        let mut chunk = String::new();
        let mut chunks = Vec::new();
        for class in self.classes() {
            let head = format!("{CONTAINERS_TAG}.{}=", chunks.len() + 1).len();
            if !chunk.is_empty() && head + chunk.len() + 1 + class.len() > MAX_TAG_LEN {
                chunks.push(std::mem::take(&mut chunk));
            }
            if !chunk.is_empty() {
                chunk.push(';');
            }
            chunk.push_str(&class);
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        for (i, c) in chunks.into_iter().enumerate() {
            tags.push(if i == 0 {
                format!("{CONTAINERS_TAG}={c}")
            } else {
                format!("{CONTAINERS_TAG}.{}={c}", i + 1)
            });
        }
        if tags.len() > MAX_TAGS {
            return Err(format!(
                "the {} container classes of Worker {} do not fit in the {MAX_TAGS} tags a script may carry; split them over more CloudflareWorkers",
                self.classes().len(),
                self.script_name
            ));
        }
        if let Some(r) = reach
            && tags.len() < MAX_TAGS
        {
            tags.push(r.to_string());
        }
        for t in foreign {
            if tags.len() < MAX_TAGS {
                tags.push(t.clone());
            }
        }
        Ok(tags)
    }
}

/// The migration tag after `current`: `v1` first, the trailing number increased, or
/// `-1` appended when there is none.
pub fn next_migration_tag(current: Option<&str>) -> String {
    let Some(current) = current.filter(|c| !c.is_empty()) else {
        return "v1".into();
    };
    let digits = current.len() - current.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return format!("{current}-1");
    }
    let (head, number) = current.split_at(current.len() - digits);
    match number.parse::<u64>() {
        Ok(n) => format!("{head}{}", n + 1),
        Err(_) => format!("{current}-1"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_tags_count_up() {
        assert_eq!(next_migration_tag(None), "v1");
        assert_eq!(next_migration_tag(Some("v1")), "v2");
        assert_eq!(next_migration_tag(Some("v19")), "v20");
        assert_eq!(next_migration_tag(Some("release")), "release-1");
    }

    #[test]
    fn tags_round_trip() {
        let info = ScriptInfo {
            id: "s".into(),
            tags: Some(vec![
                "team-a".into(),
                "flaredock.dev/owner=apps.shop".into(),
                "flaredock.dev/hash=code:aa;config:bb;vars:cc;secrets:dd;bindings:ee".into(),
                "flaredock.dev/containers=A;B".into(),
                "flaredock.dev/containers.2=C".into(),
            ]),
            ..Default::default()
        };
        let r = RecordedTags::read(&info);
        assert_eq!(r.owner.as_deref(), Some("apps.shop"));
        assert_eq!(r.containers, ["A", "B", "C"]);
        assert_eq!(r.foreign, ["team-a"]);
        assert_eq!(r.hashes.unwrap().secrets, "dd");
    }
}

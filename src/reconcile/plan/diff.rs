//! The field-level diff of a container's plan: [`Change`] (`field: from → to`, and
//! whether making it destroys something), the environment's changes (a value
//! Cloudflare holds never shown), and [`runs_spec`], whether a configuration runs
//! what the spec asks for.

use std::collections::BTreeMap;
use std::fmt;

use super::Plan;
use crate::cloudflare::types::*;
use crate::reconcile::model::*;

/// A field that differs: `field: from → to`, and whether making it destroys
/// something that is there (a live binding, setting, route the spec leaves out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub field: String,
    pub from: String,
    pub to: String,
    pub effect: ChangeEffect,
}

/// What making a change does to what is there.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum ChangeEffect {
    /// Sets or changes a value.
    #[default]
    Update,
    /// Removes something live: `consequence` says what is lost, in words (shown as
    /// `(DESTRUCTIVE: consequence)` after the wanted value).
    Destructive { consequence: String },
}

impl Change {
    /// A change that sets or changes a value.
    pub fn new(field: impl Into<String>, from: impl Into<String>, to: impl Into<String>) -> Self {
        Change {
            field: field.into(),
            from: from.into(),
            to: to.into(),
            effect: ChangeEffect::Update,
        }
    }

    /// A change that removes something live; `consequence` says what is lost.
    pub fn destructive(
        field: impl Into<String>,
        from: impl Into<String>,
        to: impl Into<String>,
        consequence: impl Into<String>,
    ) -> Self {
        Change {
            effect: ChangeEffect::Destructive {
                consequence: consequence.into(),
            },
            ..Change::new(field, from, to)
        }
    }

    pub fn is_destructive(&self) -> bool {
        matches!(self.effect, ChangeEffect::Destructive { .. })
    }

    /// What a destructive change loses, in words.
    pub fn consequence(&self) -> Option<&str> {
        match &self.effect {
            ChangeEffect::Update => None,
            ChangeEffect::Destructive { consequence } => Some(consequence),
        }
    }

    /// The wanted value as people read it: `to`, and for a destructive change
    /// `to (DESTRUCTIVE: consequence)`. The approval hash and status cover this.
    pub fn shown_to(&self) -> String {
        match self.consequence() {
            None => self.to.clone(),
            Some(c) => format!("{} (DESTRUCTIVE: {c})", self.to),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} → {}", self.field, self.from, self.shown_to())
    }
}

/// Whether a deployment configuration (an application's, a version's) runs what the
/// spec asks for: image, size, environment, logs when the configuration carries them.
/// The owner label is not compared: adopting is the plan's business.
pub fn runs_spec(desired: &Desired, image: &str, config: &DeploymentConfiguration) -> bool {
    let logs_match = config
        .observability
        .as_ref()
        .is_none_or(|o| o.logs_enabled() == desired.logs);
    config.image == image
        && Size::of(config).same_as(&desired.size)
        && sorted_env(config) == desired.env
        && logs_match
}

pub(super) fn show_opt<T: fmt::Debug>(v: &Option<T>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "unset".into(),
    }
}

/// One change per environment variable that differs, as
/// `configuration.environment_variables.NAME`. A value Cloudflare holds is never shown
/// (`(set)`): it may have come from a Secret, under this spec or an earlier one, or
/// from another tool. A wanted value is shown when the spec holds it; a Secret's is
/// named by its source, `(from Secret name/key, changed)`.
pub(super) fn env_changes(plan: &mut Plan, live: &[EnvironmentVariable], desired: &Desired) {
    let live: BTreeMap<&str, &str> = live
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_str()))
        .collect();
    let wanted: BTreeMap<&str, &str> = desired
        .env
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_str()))
        .collect();
    let names: std::collections::BTreeSet<&str> =
        live.keys().chain(wanted.keys()).copied().collect();
    for name in names {
        let (from, to) = (live.get(name), wanted.get(name));
        if from == to {
            continue;
        }
        let shown_to = match (to, desired.env_sources.get(name)) {
            (None, _) => "unset".to_string(),
            (Some(_), Some(source)) if from.is_some() => format!("(from {source}, changed)"),
            (Some(_), Some(source)) => format!("(from {source})"),
            (Some(v), None) => format!("{v:?}"),
        };
        plan.change(
            &format!("configuration.environment_variables.{name}"),
            if from.is_some() { "(set)" } else { "unset" },
            shown_to,
        );
    }
}

pub(super) fn sorted_env(config: &DeploymentConfiguration) -> Vec<EnvironmentVariable> {
    let mut env = config.environment_variables.clone().unwrap_or_default();
    env.sort();
    env
}

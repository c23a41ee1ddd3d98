//! The rules of the CRDs checked on the command line, each naming its field. The schema
//! carries the same rules for the API server (enums, ranges, patterns, CEL).

use super::*;
use crate::oci::Reference;

/// A value for an error message: quoted, and cut short when long.
fn shown(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head:?}… ({} characters)", value.chars().count())
    }
}

/// One broken rule, with the field it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path, e.g. `spec.rollout.stepPercentage`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn matches_pattern(value: &str, first: impl Fn(char) -> bool, rest: impl Fn(char) -> bool) -> bool {
    let mut chars = value.chars();
    chars.next().is_some_and(first) && chars.all(rest)
}

/// JavaScript identifier (the rule of [`JS_IDENTIFIER`]).
pub fn is_js_identifier(s: &str) -> bool {
    matches_pattern(
        s,
        |c| c.is_ascii_alphabetic() || c == '_' || c == '$',
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '$',
    )
}

fn is_env_name(s: &str) -> bool {
    matches_pattern(
        s,
        |c| c.is_ascii_alphabetic() || c == '_',
        |c| c.is_ascii_alphanumeric() || c == '_',
    )
}

/// `^[a-zA-Z0-9]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?$` (or lowercase only for scripts).
fn is_dns_like(s: &str, lowercase: bool) -> bool {
    let ok_edge = |c: char| {
        c.is_ascii_digit() || c.is_ascii_lowercase() || (!lowercase && c.is_ascii_uppercase())
    };
    let ok_mid = |c: char| ok_edge(c) || c == '-' || c == '_';
    !s.is_empty()
        && s.len() <= 63
        && s.chars().next().is_some_and(ok_edge)
        && s.chars().last().is_some_and(ok_edge)
        && s.chars().all(ok_mid)
}

fn is_tag(s: &str) -> bool {
    matches_pattern(
        s,
        |c| c.is_ascii_alphanumeric() || c == '_',
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-',
    ) && s.len() <= 128
}

/// DNS-1123 subdomain (metadata.name, metadata.namespace).
fn is_dns1123(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// `metadata.name` and `metadata.namespace` as Kubernetes names.
fn check_metadata(name: Option<&str>, namespace: Option<&str>, err: &mut impl FnMut(&str, String)) {
    match name {
        None | Some("") => err("metadata.name", "is required".into()),
        Some(n) if !is_dns1123(n) => err(
            "metadata.name",
            format!(
                "{} must be a DNS-1123 name (lowercase letters, digits, '-', '.')",
                shown(n)
            ),
        ),
        Some(n) if n.len() > 63 => err(
            "metadata.name",
            format!(
                "{} is {} characters; at most 63 (it is recorded at Cloudflare as part of the owner)",
                shown(n),
                n.len()
            ),
        ),
        _ => {}
    }
    if let Some(ns) = namespace
        && !is_dns1123(ns)
    {
        err(
            "metadata.namespace",
            format!("{} must be a DNS-1123 label", shown(ns)),
        );
    }
}

/// The errors of an object: those of its metadata, then those `rules` reports.
fn field_errors(
    metadata: &kube::core::ObjectMeta,
    rules: impl FnOnce(&mut dyn FnMut(&str, String)),
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.to_string(),
            message,
        })
    };
    check_metadata(
        metadata.name.as_deref(),
        metadata.namespace.as_deref(),
        &mut err,
    );
    rules(&mut err);
    errors
}

/// Every rule of the CloudflareContainer schema and its CEL rules. Empty when valid.
pub fn validate(obj: &CloudflareContainer) -> Vec<FieldError> {
    field_errors(&obj.metadata, |err| {
        let s = &obj.spec;
        if !is_js_identifier(&s.class_name) || s.class_name.len() > 128 {
            err(
                "spec.className",
                format!(
                    "{} must be a JavaScript identifier ({JS_IDENTIFIER}, at most 128 characters)",
                    shown(&s.class_name)
                ),
            );
        }
        let app_name = obj.application_name();
        if !is_dns_like(app_name, false) {
            let field = if s.application_name.is_some() {
                "spec.applicationName"
            } else {
                "metadata.name"
            };
            err(
                field,
                format!(
                    "{} is not a valid application name ({APPLICATION_NAME})",
                    shown(app_name)
                ),
            );
        }
        match (&s.image, &s.build) {
            (Some(_), Some(_)) => err(
                "spec",
                "exactly one of image or build must be set, not both".into(),
            ),
            (None, None) => err("spec", "exactly one of image or build must be set".into()),
            _ => {}
        }
        if let Some(image) = &s.image {
            match (&image.reference, &image.from_container) {
                (Some(_), Some(_)) | (None, None) => err(
                    "spec.image",
                    "exactly one of reference or fromContainer must be set".into(),
                ),
                _ => {}
            }
            if let Some(r) = &image.reference
                && let Err(e) = Reference::parse(r)
            {
                err("spec.image.reference", e.reason.clone());
            }
            if let Some(c) = &image.from_container {
                if !is_dns1123(c) {
                    err(
                        "spec.image.fromContainer",
                        format!("{} must be the name of a CloudflareContainer", shown(c)),
                    );
                } else if c == obj.name() {
                    err(
                        "spec.image.fromContainer",
                        "cannot promote from itself".into(),
                    );
                }
            }
        }
        if let Some(b) = &s.build {
            if b.context.trim().is_empty() {
                err("spec.build.context", "is required".into());
            }
            if let Some(p) = &b.platform
                && p != "linux/amd64"
            {
                err(
                    "spec.build.platform",
                    format!("{}: only linux/amd64 runs on Cloudflare", shown(p)),
                );
            }
        }
        if let Some(t) = &s.tag
            && !is_tag(t)
        {
            err("spec.tag", format!("{} must match {TAG}", shown(t)));
        }
        if s.instance_type.is_some() && s.resources.is_some() {
            err(
                "spec.resources",
                "instanceType and resources are mutually exclusive".into(),
            );
        }
        if let Some(r) = &s.resources {
            if !(r.vcpu.is_finite() && (0.0625..=64.0).contains(&r.vcpu)) {
                err(
                    "spec.resources.vcpu",
                    format!("{} must be between 0.0625 and 64", r.vcpu),
                );
            }
            if !(128..=262_144).contains(&r.memory_mib) {
                err(
                    "spec.resources.memoryMib",
                    format!("{} must be between 128 and 262144", r.memory_mib),
                );
            }
            if let Some(d) = r.disk_mb
                && !(512..=1_048_576).contains(&d)
            {
                err(
                    "spec.resources.diskMb",
                    format!("{d} must be between 512 and 1048576"),
                );
            }
        }
        if !(0..=100_000).contains(&s.max_instances) {
            err(
                "spec.maxInstances",
                format!("{} must be between 0 and 100000", s.max_instances),
            );
        }
        let mut env_names = std::collections::HashSet::new();
        for (i, e) in s.env.iter().enumerate() {
            if !is_env_name(&e.name) {
                err(
                    &format!("spec.env[{i}].name"),
                    format!(
                        "{} must match {ENV_NAME} (an environment variable name)",
                        shown(&e.name)
                    ),
                );
            }
            if !env_names.insert(e.name.as_str()) {
                err(
                    &format!("spec.env[{i}].name"),
                    format!("{} is set twice", shown(&e.name)),
                );
            }
            if e.value.is_some() == e.value_from.is_some() {
                err(
                    &format!("spec.env[{i}]"),
                    "exactly one of value or valueFrom must be set".into(),
                );
            }
            if let Some(r) = e.value_from.as_ref().map(|f| &f.secret_key_ref)
                && !is_dns1123(&r.name)
            {
                err(
                    &format!("spec.env[{i}].valueFrom.secretKeyRef.name"),
                    format!("{} must be the name of a Secret", shown(&r.name)),
                );
            }
        }
        if let Some(p) = s.rollout.step_percentage
            && !crate::cloudflare::types::STEP_PERCENTAGES.contains(&p)
        {
            err(
                "spec.rollout.stepPercentage",
                format!("{p} must be one of 5, 10, 20, 25, 50, 100"),
            );
        }
        if !(0..=604_800).contains(&s.rollout.active_grace_period_seconds) {
            err(
                "spec.rollout.activeGracePeriodSeconds",
                format!(
                    "{} must be between 0 and 604800",
                    s.rollout.active_grace_period_seconds
                ),
            );
        }
        match (&s.worker.name, &s.worker.script_name) {
        (Some(_), Some(_)) | (None, None) => err(
            "spec.worker",
            "exactly one of name (a CloudflareWorker) or scriptName (a Worker deployed elsewhere) must be set".into(),
        ),
        _ => {}
    }
        if let Some(n) = &s.worker.name
            && !is_dns1123(n)
        {
            err(
                "spec.worker.name",
                format!("{} must be the name of a CloudflareWorker", shown(n)),
            );
        }
        if let Some(script) = &s.worker.script_name
            && !is_dns_like(script, true)
        {
            err(
                "spec.worker.scriptName",
                format!("{} must match {SCRIPT_NAME}", shown(script)),
            );
        }
        match (&s.worker.name, &s.worker.binding_name) {
        (Some(_), None) => err(
            "spec.worker.bindingName",
            "is required with spec.worker.name (the Durable Object binding the Worker gets)".into(),
        ),
        (None, Some(_)) => err(
            "spec.worker.bindingName",
            "is only allowed with spec.worker.name: flaredock never changes a Worker deployed elsewhere".into(),
        ),
        (Some(_), Some(b)) if !is_js_identifier(b) || b.len() > 128 => err(
            "spec.worker.bindingName",
            format!("{} must be a JavaScript identifier", shown(b)),
        ),
        _ => {}
    }
    })
}

/// `YYYY-MM-DD` with a plausible month and day.
fn is_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    matches!(parts.as_slice(), [y, m, d]
        if y.len() == 4 && m.len() == 2 && d.len() == 2
            && [y, m, d].iter().all(|p| p.chars().all(|c| c.is_ascii_digit()))
            && (1..=12).contains(&m.parse::<u32>().unwrap_or(0))
            && (1..=31).contains(&d.parse::<u32>().unwrap_or(0)))
}

/// A module name: a relative path without `..`, not empty.
fn is_module_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && !s.starts_with('/')
        && !s.split('/').any(|p| p.is_empty() || p == "." || p == "..")
        && !s.chars().any(|c| c.is_control() || c == '"' || c == '\\')
}

/// Every rule of the CloudflareWorker schema and its CEL rules. Empty when valid.
pub fn validate_worker(obj: &CloudflareWorker) -> Vec<FieldError> {
    field_errors(&obj.metadata, |mut err| {
        let s = &obj.spec;
        if !is_dns_like(obj.script_name(), true) {
            let field = if s.script_name.is_some() {
                "spec.scriptName"
            } else {
                "metadata.name"
            };
            err(
                field,
                format!("{} must match {SCRIPT_NAME}", shown(obj.script_name())),
            );
        }
        if !is_date(&s.compatibility_date) {
            err(
                "spec.compatibilityDate",
                format!(
                    "{} must be a date, YYYY-MM-DD",
                    shown(&s.compatibility_date)
                ),
            );
        }
        if s.compatibility_flags.len() > 64 {
            err("spec.compatibilityFlags", "at most 64 flags".into());
        }
        for (field, message) in super::bindings::validate_bindings(s) {
            err(&field, message);
        }
        for (field, message) in super::worker_settings::violations(s) {
            err(&field, message);
        }
        let src = &s.source;
        let count = [
            src.inline.is_some(),
            src.config_map_ref.is_some(),
            src.image.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if count != 1 {
            err(
                "spec.source",
                "exactly one of inline, configMapRef or image must be set".into(),
            );
        }
        if let Some(i) = &src.inline {
            if i.modules.is_empty() {
                err("spec.source.inline.modules", "at least one module".into());
            }
            for name in i.modules.keys() {
                if !is_module_name(name) {
                    err(
                        "spec.source.inline.modules",
                        format!("{} is not a valid module name", shown(name)),
                    );
                }
            }
            if !i.modules.contains_key(&i.main_module) {
                err(
                    "spec.source.inline.mainModule",
                    format!("{} must be one of the modules", shown(&i.main_module)),
                );
            }
        }
        if let Some(c) = &src.config_map_ref {
            if !is_dns1123(&c.name) {
                err(
                    "spec.source.configMapRef.name",
                    format!("{} must be the name of a ConfigMap", shown(&c.name)),
                );
            }
            if !is_module_name(&c.main_module) {
                err(
                    "spec.source.configMapRef.mainModule",
                    format!("{} is not a valid module name", shown(&c.main_module)),
                );
            }
        }
        if let Some(i) = &src.image {
            if let Err(e) = Reference::parse(&i.reference) {
                err("spec.source.image.reference", e.reason.clone());
            }
            if !is_module_name(&i.main_module) {
                err(
                    "spec.source.image.mainModule",
                    format!("{} is not a valid module name", shown(&i.main_module)),
                );
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for k in s.vars.keys() {
            names.insert(k.clone());
            if !is_js_identifier(k) {
                let key: String = k.chars().take(64).collect();
                err(
                    &format!("spec.vars.{key}"),
                    "variable names must be JavaScript identifiers".into(),
                );
            }
        }
        for (i, secret) in s.secrets.iter().enumerate() {
            if !is_js_identifier(&secret.name) || secret.name.len() > 128 {
                err(
                    &format!("spec.secrets[{i}].name"),
                    format!("{} must be a JavaScript identifier", shown(&secret.name)),
                );
            }
            if !names.insert(secret.name.clone()) {
                err(
                    &format!("spec.secrets[{i}].name"),
                    format!(
                        "{} is already a binding of this Worker",
                        shown(&secret.name)
                    ),
                );
            }
            if !is_dns1123(&secret.secret_key_ref.name) {
                err(
                    &format!("spec.secrets[{i}].secretKeyRef.name"),
                    format!(
                        "{} must be the name of a Secret",
                        shown(&secret.secret_key_ref.name)
                    ),
                );
            }
            if secret.secret_key_ref.key.is_empty() {
                err(
                    &format!("spec.secrets[{i}].secretKeyRef.key"),
                    "is required".into(),
                );
            }
        }
        super::reach::validate_reach(&s.routes, &s.domains, &s.crons, &mut err);
    })
}

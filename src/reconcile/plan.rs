//! The plan: a pure function from (desired, observed) to ordered actions with a
//! field-level diff. No I/O; the CLI prints it, the actor runs it, most tests hit it.

use std::collections::BTreeMap;
use std::fmt;

use super::model::*;
use super::reason::Reason;
use super::worker::model::RecordedTags;
use crate::cloudflare::types::*;
use crate::spec::OWNER_LABEL;

/// One change to make at Cloudflare.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Get the image into Cloudflare's registry: copy, build, or read its digest
    /// (which mints registry credentials). Always first.
    GetImage(ImageAction),
    /// Upload a CloudflareWorker's script (code, bindings, `containers`, migration).
    UploadScript {
        script: String,
        upload: Box<ScriptUpload>,
        creates: bool,
        /// This upload takes ownership of a script flaredock did not upload.
        adopts: bool,
    },
    CreateApplication {
        request: CreateApplicationRequest,
    },
    /// Delete an application this object owns (replacement, or left over by a rename).
    DeleteApplication {
        id: String,
        name: String,
        why: String,
    },
    /// PATCH of fields that change without a rollout.
    ModifyApplication {
        id: String,
        request: ModifyApplicationRequest,
    },
    CreateRollout {
        id: String,
        request: CreateRolloutRequest,
        /// This rollout takes ownership of a foreign application (`adopt: true`).
        adopts: bool,
    },
    /// A Worker's workers.dev state, route, custom domain or cron triggers.
    Reach(super::worker::reach::ReachAction),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::GetImage(a) => a.fmt(f),
            Action::Reach(a) => a.fmt(f),
            Action::UploadScript {
                script,
                upload,
                creates,
                adopts,
            } => {
                let m = &upload.metadata;
                write!(
                    f,
                    "{} Worker {script} ({} module(s)",
                    if *creates { "upload new" } else { "upload" },
                    upload.modules.len()
                )?;
                if !m.containers.is_empty() {
                    let classes: Vec<&str> =
                        m.containers.iter().map(|c| c.class_name.as_str()).collect();
                    write!(f, "; containers {}", classes.join(", "))?;
                }
                if let Some(mig) = &m.migrations {
                    write!(
                        f,
                        "; migration {} → {} new_sqlite_classes {}",
                        mig.old_tag.as_deref().unwrap_or("(none)"),
                        mig.new_tag.as_deref().unwrap_or(""),
                        mig.new_sqlite_classes.join(", ")
                    )?;
                }
                write!(f, ")")?;
                if *adopts {
                    write!(f, ", taking ownership")?;
                }
                Ok(())
            }
            Action::CreateApplication { request } => {
                write!(f, "create application {}", request.name)
            }
            Action::DeleteApplication { name, id, why } => {
                write!(f, "delete application {name} ({id}): {why}")
            }
            Action::ModifyApplication { id, .. } => {
                write!(f, "modify application {id} (no rollout)")
            }
            Action::CreateRollout {
                id,
                request,
                adopts,
            } => {
                let how = match (request.step_percentage, &request.steps) {
                    (Some(p), _) => format!("{p}% steps"),
                    (None, Some(s)) => s
                        .iter()
                        .map(|x| format!("{}%", x.step_size.percentage))
                        .collect::<Vec<_>>()
                        .join(" → "),
                    (None, None) => "100%".into(),
                };
                write!(f, "roll out application {id} ({how})")?;
                if *adopts {
                    write!(f, ", taking ownership")?;
                }
                Ok(())
            }
        }
    }
}

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

/// Why nothing (more) can be done now.
#[derive(Clone, Debug, PartialEq)]
pub enum Blocked {
    /// Will not proceed until the spec changes (status `Stalled`).
    Refused { reason: Reason, message: String },
    /// Waiting on something outside (image, Worker script): retried later.
    Waiting { reason: Reason, message: String },
}

impl Action {
    /// A stable machine name of the action (the JSON plan's `actions[].kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::GetImage(ImageAction::Copy { .. }) => "copy-image",
            Action::GetImage(ImageAction::Build { .. }) => "build-image",
            Action::GetImage(ImageAction::Resolve { .. }) => "resolve-image",
            Action::UploadScript { .. } => "upload-script",
            Action::CreateApplication { .. } => "create-application",
            Action::ModifyApplication { .. } => "modify-application",
            Action::CreateRollout { .. } => "create-rollout",
            Action::DeleteApplication { .. } => "delete-application",
            Action::Reach(a) => a.kind(),
        }
    }
}

impl Plan {
    /// The plan as the stable JSON of `flaredock plan -o json` (one object's entry;
    /// `schemas/plan.schema.json`). Secret values never appear: changes name secrets
    /// by their hash or source only.
    pub fn to_json(&self) -> serde_json::Value {
        let action =
            |a: &Action| serde_json::json!({"kind": a.kind(), "description": a.to_string()});
        let mut j = serde_json::json!({
            "changes": self.changes.iter().map(|c| {
                let mut j = serde_json::json!({
                    "field": c.field, "from": c.from, "to": c.to,
                    "destructive": c.is_destructive(),
                });
                if let Some(why) = c.consequence() {
                    j["consequence"] = serde_json::json!(why);
                }
                j
            }).collect::<Vec<_>>(),
            "actions": self.actions.iter().map(action).collect::<Vec<_>>(),
            "blocked": self.blocked.as_ref().map(|b| serde_json::json!({
                "waiting": matches!(b, Blocked::Waiting { .. }),
                "reason": b.reason().as_str(),
                "message": b.message(),
            })),
        });
        if !self.held.is_empty() {
            j["held"] = self.held.iter().map(action).collect();
        }
        j
    }
}

impl Blocked {
    pub fn reason(&self) -> Reason {
        match self {
            Blocked::Refused { reason, .. } | Blocked::Waiting { reason, .. } => *reason,
        }
    }
    pub fn message(&self) -> &str {
        match self {
            Blocked::Refused { message, .. } | Blocked::Waiting { message, .. } => message,
        }
    }
}

/// Ordered actions, the diff that motivates them, and what blocks the rest.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub changes: Vec<Change>,
    pub blocked: Option<Blocked>,
    /// Actions that make `changes` once `blocked` clears, shown for review (and
    /// covered by an adoption's approval) but never acted on: a container's adoption
    /// while its Worker's awaits.
    pub held: Vec<Action>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.actions.is_empty() && self.blocked.is_none()
    }

    /// Whether the plan would change anything: an action other than re-reading the
    /// tag of the repository the application already runs from (which changes
    /// something only if the tag moved: then the plan made after it says so), or
    /// keeping the record of a Worker's reachability on its script.
    pub fn changes_anything(&self) -> bool {
        !self.changes.is_empty()
            || self.actions.iter().any(|a| {
                !matches!(
                    a,
                    Action::GetImage(ImageAction::Resolve { .. })
                        | Action::Reach(super::worker::reach::ReachAction::Record { .. })
                )
            })
    }

    pub(crate) fn refuse(reason: Reason, message: String) -> Plan {
        Plan {
            blocked: Some(Blocked::Refused { reason, message }),
            ..Default::default()
        }
    }

    fn wait(mut self, reason: Reason, message: String) -> Plan {
        self.blocked = Some(Blocked::Waiting { reason, message });
        self
    }

    fn change(&mut self, field: &str, from: impl fmt::Display, to: impl fmt::Display) {
        self.changes
            .push(Change::new(field, from.to_string(), to.to_string()));
    }
}

fn show_opt<T: fmt::Debug>(v: &Option<T>) -> String {
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
fn env_changes(plan: &mut Plan, live: &[EnvironmentVariable], desired: &Desired) {
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

fn sorted_env(config: &DeploymentConfiguration) -> Vec<EnvironmentVariable> {
    let mut env = config.environment_variables.clone().unwrap_or_default();
    env.sort();
    env
}

/// Does the Worker's live script host the class as a container (whoever uploaded
/// it): the class's Durable Object namespace exists and an application is linked to
/// it. Enough to plan against what Cloudflare has, never to act.
fn hosted_live(desired: &Desired, observed: &Observed) -> bool {
    let Some(ns) = &observed.namespace else {
        return false;
    };
    let linked = |a: &Application| a.namespace_id() == Some(ns.id.as_str());
    matches!(
        desired.worker,
        WorkerTarget::Managed {
            script: Some(_),
            ..
        }
    ) && observed.script.is_some()
        && (observed.application.as_ref().is_some_and(linked)
            || observed.namespace_application.as_ref().is_some_and(linked))
}

/// Is the Worker ready to host this container's class? `Err` says what is awaited.
pub fn worker_gate(desired: &Desired, observed: &Observed) -> Result<(), Blocked> {
    let class = &desired.class_name;
    match &desired.worker {
        WorkerTarget::Managed {
            object,
            script: None,
        } => Err(Blocked::Waiting {
            reason: Reason::WorkerNotReady,
            message: format!(
                "CloudflareWorker {object} (spec.worker.name) does not exist in this namespace"
            ),
        }),
        WorkerTarget::Managed {
            object,
            script: Some(script),
        } => {
            let enabled = observed
                .script
                .as_ref()
                .is_some_and(|s| RecordedTags::read(s).has_container(class));
            if enabled && observed.namespace.is_some() {
                Ok(())
            } else {
                Err(Blocked::Waiting {
                    reason: Reason::WorkerNotReady,
                    message: format!(
                        "waiting for CloudflareWorker {object} to upload script {script} with class {class} in containers"
                    ),
                })
            }
        }
        WorkerTarget::External { script } => match (&observed.script, &observed.namespace) {
            (_, Some(_)) => Ok(()),
            (None, None) => Err(Blocked::Waiting {
                reason: Reason::WorkerNotFound,
                message: format!(
                    "Worker script {script} does not exist in the account; deploy it with class {class} in its containers (wrangler deploy), or manage it as a CloudflareWorker"
                ),
            }),
            (Some(_), None) => Err(Blocked::Waiting {
                reason: Reason::WorkerNotFound,
                message: format!(
                    "Worker script {script} has no Durable Object namespace for class {class}; deploy it with {class} in its containers (wrangler deploy), or manage it as a CloudflareWorker"
                ),
            }),
        },
    }
}

/// Desired vs observed → the plan.
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

pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
    // Getting the image is the first action. A copy's digest is known before it is
    // made: the plan deploys that digest, unless the application already runs it. A
    // build's or a tag's digest is known only once act has it: the plan shows the
    // tagged reference, and act plans again from what it found.
    let mut get = None;
    let mut reread = None;
    let adopted = adopted_tag(desired, observed);
    let pinned;
    let observed = match &observed.image {
        ImageState::Needs(action) => {
            let image = match action.deploys() {
                Some(deploys) => match running_image(observed) {
                    Some(r) if same_image(r, &deploys) => r.to_string(),
                    _ => {
                        get = Some(action.clone());
                        deploys
                    }
                },
                // A tag of the repository the application already runs from: until
                // act re-reads it, the plan assumes the digest it runs (the read is
                // not a change, and is always done).
                // (A build is never taken for one: it always goes to the object's own
                // repository, the one the application runs from.)
                // In an adoption, only when it runs that very tag: any other image
                // it runs is shown replaced by the tag (see `adopted_tag`).
                None if matches!(action, ImageAction::Resolve { .. })
                    && running_image(observed)
                        .is_some_and(|r| same_repository(r, &action.placeholder()))
                    && adopted.as_deref().is_none_or(|tag| {
                        running_image(observed).is_some_and(|r| names_tag(r, tag))
                    }) =>
                {
                    reread = Some(action.clone());
                    running_image(observed).unwrap_or_default().to_string()
                }
                None => {
                    get = Some(action.clone());
                    action.placeholder()
                }
            };
            pinned = Observed {
                image: ImageState::Ready(image),
                ..observed.clone()
            };
            &pinned
        }
        _ => observed,
    };
    let mut plan = plan_actions(desired, observed, adopted.as_deref());
    defer_blocked_creates(&mut plan, observed);
    let planned = if plan.held.is_empty() {
        &mut plan.actions
    } else {
        &mut plan.held
    };
    if let Some(get) = get
        && !planned.is_empty()
    {
        // The tagged reference standing in for a digest act has yet to find says so.
        let shown = match &get {
            ImageAction::Build { .. } => Some("digest once built"),
            ImageAction::Resolve { .. } => Some("digest read at apply"),
            ImageAction::Copy { .. } => None,
        };
        if let Some(shown) = shown {
            let p = get.placeholder();
            for c in plan.changes.iter_mut().filter(|c| c.to == p) {
                c.to = format!("{p} ({shown})");
            }
        }
        planned.insert(0, Action::GetImage(get));
    }
    if let Some(reread) = reread {
        // A held plan holds it too: nothing is read with minted credentials (a write)
        // for an object that waits, and its changes stay those put up for review.
        if plan.held.is_empty() {
            plan.actions.insert(0, Action::GetImage(reread));
        } else {
            plan.held.insert(0, Action::GetImage(reread));
        }
    }
    plan
}

/// The tag of Cloudflare's registry an adoption deploys (`host/account/repo:tag`), as
/// the spec names it: the application is not flaredock's (no owner label) and the spec
/// names a tag there, whether this pass read its digest (registry credentials held,
/// minted for another object minutes before: the image is that digest) or left the
/// read to act (none held). An adoption shows and approves the image in this one form
/// in both cases, so that its hash does not depend on credentials held at plan time;
/// act deploys the digest the tag names then.
fn adopted_tag(desired: &Desired, observed: &Observed) -> Option<String> {
    let app = observed.application.as_ref()?;
    let target = observed
        .target_configuration
        .as_ref()
        .unwrap_or(&app.configuration);
    if target.label(OWNER_LABEL).or(owner_of(app)).is_some() {
        return None;
    }
    match &observed.image {
        ImageState::Needs(ImageAction::Resolve { reference }) => Some(reference.clone()),
        ImageState::Ready(image) => {
            use crate::oci::Reference;
            let spec = Reference::parse(desired.image_reference.as_deref()?).ok()?;
            let tag = spec.tag.clone().filter(|_| spec.digest.is_none())?;
            let read = Reference::parse(image).ok()?;
            // The digest read for that tag (a short name is below the account).
            let named = read.repository == spec.repository
                || read
                    .repository
                    .strip_suffix(spec.repository.as_str())
                    .is_some_and(|account| account.ends_with('/'));
            (read.digest.is_some() && named).then(|| {
                Reference {
                    tag: Some(tag),
                    digest: None,
                    ..read
                }
                .to_string()
            })
        }
        _ => None,
    }
}

/// Is `image` the tag `tag` (same repository and tag, no digest; hosts may be written
/// differently)?
fn names_tag(image: &str, tag: &str) -> bool {
    use crate::oci::Reference;
    matches!(
        (Reference::parse(image), Reference::parse(tag)),
        (Ok(a), Ok(b)) if a.digest.is_none() && a.repository == b.repository && a.tag.is_some() && a.tag == b.tag
    )
}

/// The image the application runs, or is rolling out to.
fn running_image(observed: &Observed) -> Option<&str> {
    observed
        .target_configuration
        .as_ref()
        .or(observed.application.as_ref().map(|a| &a.configuration))
        .map(|c| c.image.as_str())
}

/// Cloudflare deletes applications asynchronously: their name and namespace stay taken
/// for a while. A create that would meet an application being deleted (one flaredock
/// deleted before, or one this plan deletes) waits for the next reconcile instead of
/// failing, or worse, finding the old one by name and taking it for its own.
fn defer_blocked_creates(plan: &mut Plan, observed: &Observed) {
    let known: Vec<&Application> = observed
        .application
        .iter()
        .chain(observed.owned_elsewhere.iter())
        .chain(observed.namespace_application.iter())
        .collect();
    let mut blockers: Vec<Application> = observed.deleting.iter().cloned().collect();
    let mut kept = Vec::new();
    for action in std::mem::take(&mut plan.actions) {
        match &action {
            Action::DeleteApplication { id, .. } => {
                if let Some(app) = known.iter().find(|a| a.id == *id) {
                    blockers.push((*app).clone());
                }
            }
            Action::CreateApplication { request } => {
                let ns = match &request.durable_objects {
                    Some(DurableObjectsConfiguration::NamespaceId { namespace_id }) => {
                        Some(namespace_id.as_str())
                    }
                    _ => None,
                };
                if let Some(b) = blockers
                    .iter()
                    .find(|b| b.name == request.name || (ns.is_some() && b.namespace_id() == ns))
                {
                    plan.blocked = Some(Blocked::Waiting {
                        reason: Reason::PreviousDeleting,
                        message: format!(
                            "waiting for application {} ({}) to finish its asynchronous deletion before creating {}",
                            b.name, b.id, request.name
                        ),
                    });
                    continue;
                }
            }
            _ => {}
        }
        kept.push(action);
    }
    plan.actions = kept;
}

fn plan_actions(desired: &Desired, observed: &Observed, adopted: Option<&str>) -> Plan {
    // The Worker must have uploaded the class container-enabled before anything is
    // done. While its script is not yet flaredock's but hosts the class live (a
    // wrangler deploy awaiting adoption), what this object would change is planned
    // against what Cloudflare has, and held: reviewed, and approved, with the Worker's.
    let Err(awaited) = worker_gate(desired, observed) else {
        return plan_actions_ungated(desired, observed, adopted);
    };
    if !hosted_live(desired, observed) {
        return Plan {
            blocked: Some(awaited),
            ..Default::default()
        };
    }
    let mut plan = plan_actions_ungated(desired, observed, adopted);
    plan.held = std::mem::take(&mut plan.actions);
    // A refusal stands whatever the Worker does; anything else waits for it.
    if !matches!(plan.blocked, Some(Blocked::Refused { .. })) {
        let message = if plan.changes.is_empty() {
            awaited.message().to_string()
        } else {
            format!(
                "{}; the changes shown are made once it has (approve an adoption with the Worker's)",
                awaited.message()
            )
        };
        plan.blocked = Some(Blocked::Waiting {
            reason: awaited.reason(),
            message,
        });
    }
    plan
}

/// The plan once the Worker hosts the class; `adopted`: the tag an adoption deploys,
/// shown as the image (see [`adopted_tag`]).
fn plan_actions_ungated(desired: &Desired, observed: &Observed, adopted: Option<&str>) -> Plan {
    let mut plan = Plan::default();
    // Every Secret the environment reads must be there: nothing runs without a value.
    if let Some(blocked) = &desired.env_blocked {
        plan.blocked = Some(blocked.clone());
        return plan;
    }

    let image = match &observed.image {
        ImageState::Ready(image) => image.clone(),
        // `plan` has pinned every image action; a tagged reference stands in.
        ImageState::Needs(action) => action.placeholder(),
        ImageState::Pending { reason, message } => return plan.wait(*reason, message.clone()),
        ImageState::Failed { reason, message } => return Plan::refuse(*reason, message.clone()),
    };
    let namespace_id = observed.namespace.as_ref().map(|n| n.id.clone());

    // Leftovers of a rename: applications owned by this object under another name.
    let mut cleanup: Vec<Action> = Vec::new();
    for app in &observed.owned_elsewhere {
        if app.name != desired.application_name {
            cleanup.push(Action::DeleteApplication {
                id: app.id.clone(),
                name: app.name.clone(),
                why: format!("replaced by application {}", desired.application_name),
            });
        }
    }

    let script_name = desired.worker.script().unwrap_or_default().to_string();
    let create = |plan: &mut Plan| {
        let durable_objects = namespace_id
            .clone()
            .map(|namespace_id| DurableObjectsConfiguration::NamespaceId { namespace_id });
        plan.change("application", "absent", &desired.application_name);
        plan.actions.push(Action::CreateApplication {
            request: CreateApplicationRequest {
                name: desired.application_name.clone(),
                scheduling_policy: SchedulingPolicy::Default,
                // The Durable Object starts instances on demand: `instances` is its
                // to manage, 0 at creation and never patched.
                instances: 0,
                max_instances: Some(desired.max_instances),
                configuration: desired.configuration(&image, None),
                constraints: desired.constraints.clone(),
                durable_objects,
                observability: Some(desired.observability()),
                rollout_active_grace_period: Some(desired.grace_period),
            },
        });
    };

    let Some(app) = &observed.application else {
        // The namespace may already serve an application of another name.
        if let Some(other) = &observed.namespace_application {
            let ours = owner_of(other) == Some(desired.owner.as_str());
            if !ours {
                return Plan::refuse(
                    Reason::NamespaceHasApplication,
                    format!(
                        "the Durable Object namespace of {}/{} already backs application {} ({}), which this object does not own; flaredock never takes it over",
                        script_name, desired.class_name, other.name, other.id
                    ),
                );
            }
            if !cleanup
                .iter()
                .any(|a| matches!(a, Action::DeleteApplication { id, .. } if *id == other.id))
            {
                cleanup.push(Action::DeleteApplication {
                    id: other.id.clone(),
                    name: other.name.clone(),
                    why: format!("replaced by application {}", desired.application_name),
                });
            }
            // The namespace admits one application: delete the old one first.
            plan.actions.append(&mut cleanup);
            create(&mut plan);
            return plan;
        }
        create(&mut plan);
        plan.actions.append(&mut cleanup);
        return plan;
    };

    let target = observed
        .target_configuration
        .clone()
        .unwrap_or_else(|| app.configuration.clone());
    let owner = target.label(OWNER_LABEL).or(owner_of(app));
    let ours = owner == Some(desired.owner.as_str());
    match owner {
        // Another flaredock object's, in this namespace, another or another cluster:
        // never taken, `adopt` or not.
        Some(other) if !ours => {
            return Plan::refuse(
                Reason::ApplicationOwnedByAnother,
                format!(
                    "application {} ({}) is owned by flaredock object {other}; flaredock never takes an application another object owns, adopt or not (delete that object, or give this one another applicationName)",
                    app.name, app.id
                ),
            );
        }
        None if !desired.adopt => {
            return Plan::refuse(
                Reason::ApplicationNotOwned,
                format!(
                    "application {} ({}) already exists and was not created by flaredock; set spec.adopt: true to take it over",
                    app.name, app.id
                ),
            );
        }
        _ => {}
    }

    // Bound to another namespace (or none): replace our own, never steal someone else's.
    let bound = app.namespace_id();
    if bound.is_none() || bound != namespace_id.as_deref() {
        let bound = bound.unwrap_or("no Durable Object namespace");
        if !ours {
            return Plan::refuse(
                Reason::BoundToAnotherNamespace,
                format!(
                    "application {} is bound to {bound}, not to the namespace of {}/{}; flaredock never moves an application it does not own",
                    app.name, script_name, desired.class_name
                ),
            );
        }
        plan.change(
            "durable_objects.namespace_id",
            bound,
            namespace_id.as_deref().unwrap_or("(new namespace)"),
        );
        plan.actions.push(Action::DeleteApplication {
            id: app.id.clone(),
            name: app.name.clone(),
            why: format!(
                "className or Worker changed: replaced to bind {}",
                desired.class_name
            ),
        });
        create(&mut plan);
        plan.actions.append(&mut cleanup);
        return plan;
    }

    // Fields that change in place.
    let mut modify = ModifyApplicationRequest::default();
    if app.max_instances != Some(desired.max_instances) {
        plan.change(
            "max_instances",
            show_opt(&app.max_instances),
            desired.max_instances,
        );
        modify.max_instances = Some(desired.max_instances);
    }
    let live_constraints = normalise_constraints(app.constraints.as_ref());
    if live_constraints != desired.constraints {
        plan.change(
            "constraints",
            show_opt(&live_constraints),
            show_opt(&desired.constraints),
        );
        modify.constraints = Some(desired.constraints.clone().unwrap_or_default());
    }
    // Observability lives at the top level (flaredock's form) or in the configuration
    // (wrangler's); the official schema makes them mutually exclusive, so a change is
    // written in the form the application already uses.
    let in_configuration = target.observability.is_some();
    let live_logs = if in_configuration {
        target
            .observability
            .as_ref()
            .is_some_and(Observability::logs_enabled)
    } else {
        app.observability
            .as_ref()
            .is_some_and(Observability::logs_enabled)
    };
    let logs_change = live_logs != desired.logs;
    if logs_change && !in_configuration {
        plan.change("observability.logs.enabled", live_logs, desired.logs);
        modify.observability = Some(desired.observability());
    }
    let live_grace = app.rollout_active_grace_period.unwrap_or(0);
    if live_grace != desired.grace_period {
        plan.change(
            "rollout_active_grace_period",
            live_grace,
            desired.grace_period,
        );
        modify.rollout_active_grace_period = Some(desired.grace_period);
    }
    if !modify.is_empty() {
        plan.actions.push(Action::ModifyApplication {
            id: app.id.clone(),
            request: modify,
        });
    }

    // Fields that need a rollout, compared with where the application is heading.
    let mut rollout_needed = false;
    match adopted {
        // The tag as the spec names it, whatever digest was read for it, or none yet;
        // when the application runs that very tag, pinning it to its digest is no
        // change of what it runs (the rollout that takes ownership does it).
        Some(tag) => {
            if !names_tag(&target.image, tag) {
                plan.change(
                    "configuration.image",
                    &target.image,
                    format!("{tag} (digest read at apply)"),
                );
            }
            rollout_needed |= target.image != image;
        }
        None if target.image != image => {
            plan.change("configuration.image", &target.image, &image);
            rollout_needed = true;
        }
        None => {}
    }
    let live_size = Size::of(&target);
    if !live_size.same_as(&desired.size) {
        plan.change("configuration.instance_type", &live_size, &desired.size);
        rollout_needed = true;
    }
    let live_env = sorted_env(&target);
    if live_env != desired.env {
        env_changes(&mut plan, &live_env, desired);
        rollout_needed = true;
    }
    if logs_change && in_configuration {
        plan.change(
            "configuration.observability.logs.enabled",
            live_logs,
            desired.logs,
        );
        rollout_needed = true;
    }
    if !ours {
        plan.change(
            &format!("configuration.labels.{OWNER_LABEL}"),
            show_opt(&owner.map(str::to_string)),
            &desired.owner,
        );
        rollout_needed = true;
    }
    if rollout_needed {
        let policy = &desired.rollout;
        let (step_percentage, steps) = if policy.immediate {
            (Some(100), None)
        } else if let Some(p) = policy.step_percentage {
            (Some(p), None)
        } else if desired.max_instances < 2 {
            (Some(100), None)
        } else {
            let step = |p: i64| RolloutStepRequest {
                description: format!("{p}% of instances"),
                step_size: StepSize { percentage: p },
            };
            (None, Some(vec![step(10), step(100)]))
        };
        let mut what: Vec<&str> = plan
            .changes
            .iter()
            .filter_map(|c| c.field.strip_prefix("configuration."))
            .map(|f| {
                if f.starts_with("environment_variables.") {
                    "environment_variables"
                } else {
                    f
                }
            })
            .collect();
        what.dedup();
        plan.actions.push(Action::CreateRollout {
            id: app.id.clone(),
            request: CreateRolloutRequest {
                description: format!("flaredock {}: {}", desired.key, what.join(", ")),
                strategy: RolloutStrategy::Rolling,
                kind: Some(if policy.manual {
                    RolloutKind::FullManual
                } else {
                    RolloutKind::FullAuto
                }),
                step_percentage,
                steps,
                target_configuration: desired.configuration(&image, Some(&target)),
            },
            adopts: !ours,
        });
    }
    plan.actions.append(&mut cleanup);
    plan
}

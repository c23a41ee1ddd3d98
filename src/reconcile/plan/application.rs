//! The application of a container's plan once its Worker hosts the class: create it,
//! replace it (rename, another namespace), modify what changes in place, roll out what
//! needs a rollout; refuse one another object owns; and defer a create that would meet
//! an application Cloudflare is still deleting.

use super::adoption::names_tag;
use super::diff::{env_changes, show_opt, sorted_env};
use super::{Action, Blocked, Plan};
use crate::cloudflare::types::*;
use crate::reconcile::model::*;
use crate::reconcile::reason::Reason;
use crate::spec::OWNER_LABEL;

/// The plan once the Worker hosts the class; `adopted`: the tag an adoption deploys,
/// shown as the image (see [`adopted_tag`](super::adoption::adopted_tag)).
pub(super) fn plan_actions_ungated(
    desired: &Desired,
    observed: &Observed,
    adopted: Option<&str>,
) -> Plan {
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

/// Cloudflare deletes applications asynchronously: their name and namespace stay taken
/// for a while. A create that would meet an application being deleted (one flaredock
/// deleted before, or one this plan deletes) waits for the next reconcile instead of
/// failing, or worse, finding the old one by name and taking it for its own.
pub(super) fn defer_blocked_creates(plan: &mut Plan, observed: &Observed) {
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

//! Container applications and their rollouts: create, modify and delete (a deleted
//! application stays listed for a while), versions, the rollouts' progress step by
//! step (and Cloudflare's reverts), with the checks of the real API.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{AccountState, Failure, Outcome, codes, timestamp};
use crate::cloudflare::error::CODE_NAMESPACE_HAS_APPLICATION;
use crate::cloudflare::types::*;

/// The regions Cloudflare accepts in `constraints.regions`.
pub const REGIONS: [&str; 9] = [
    "AFR", "APAC", "EEUR", "ENAM", "WNAM", "ME", "OC", "SAM", "WEUR",
];
/// The jurisdictions Cloudflare accepts.
pub const JURISDICTIONS: [&str; 2] = ["eu", "fedramp"];

#[derive(Serialize, Deserialize, Clone, Debug)]
pub(super) struct RolloutRecord {
    application_id: String,
    rollout: ApplicationRollout,
    started_ms: u64,
    /// Cloudflare reverts this rollout when it reaches its last step.
    #[serde(default)]
    reverts: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A configuration as the API answers it: a named instance type expanded to `vcpu`,
/// `memory_mib` and `disk.size_mb` (wrangler's client rebuilds the name from those).
fn expanded(mut c: DeploymentConfiguration) -> DeploymentConfiguration {
    if let Some((vcpu, memory_mib, disk_mb)) = c.instance_type.and_then(InstanceType::resources) {
        c.instance_type = None;
        c.vcpu = Some(vcpu);
        c.memory_mib = Some(memory_mib);
        c.disk = Some(Disk {
            size_mb: Some(disk_mb),
        });
    }
    c
}

impl AccountState {
    pub fn list_applications(&mut self, name: Option<&str>, labels: &[String]) -> Vec<Application> {
        self.advance_rollouts();
        self.applications
            .values()
            .filter(|a| name.is_none_or(|n| a.name == n))
            .filter(|a| {
                labels.iter().all(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                    a.configuration
                        .label(k)
                        .is_some_and(|have| v.is_empty() || have == v)
                })
            })
            .cloned()
            .collect()
    }

    pub fn get_application(&mut self, id: &str) -> Outcome<Application> {
        self.advance_rollouts();
        self.applications
            .get(id)
            .cloned()
            .ok_or_else(|| Failure::not_found("application"))
    }

    pub fn application_count(&self) -> usize {
        self.applications.len()
    }

    pub fn create_application(
        &mut self,
        req: CreateApplicationRequest,
        image_exists: impl Fn(&str) -> Result<(), String>,
    ) -> Outcome<Application> {
        if req.name.trim().is_empty() {
            return Err(Failure::invalid("name: must not be empty"));
        }
        if req.scheduling_policy == SchedulingPolicy::Unknown {
            return Err(Failure::invalid(
                "scheduling_policy: must be one of [default]",
            ));
        }
        check_counts(Some(req.instances), req.max_instances)?;
        check_configuration(&req.configuration, "configuration")?;
        if let Some(c) = &req.constraints {
            check_constraints(c)?;
        }
        if req.observability.is_some() && req.configuration.observability.is_some() {
            return Err(Failure::invalid(
                "observability: mutually exclusive with configuration.observability",
            ));
        }
        check_grace(req.rollout_active_grace_period)?;
        image_exists(&req.configuration.image).map_err(Failure::invalid)?;
        if self.applications.values().any(|a| a.name == req.name) {
            return Err(Failure::invalid(format!(
                "VALIDATE_INPUT: An application with the name {} already exists",
                req.name
            )));
        }
        let namespace_id = match &req.durable_objects {
            None => None,
            Some(DurableObjectsConfiguration::NamespaceId { namespace_id }) => {
                if !self.namespaces.iter().any(|n| &n.id == namespace_id) {
                    return Err(Failure::invalid(format!(
                        "durable_objects.namespace_id: namespace {namespace_id} does not exist"
                    )));
                }
                Some(namespace_id.clone())
            }
            Some(DurableObjectsConfiguration::ScriptAndClass {
                script_name,
                class_name,
            }) => Some(
                self.namespaces
                    .iter()
                    .find(|n| {
                        n.script.as_deref() == Some(script_name.as_str())
                            && n.class.as_deref() == Some(class_name.as_str())
                    })
                    .map(|n| n.id.clone())
                    .ok_or_else(|| {
                        Failure::invalid(format!(
                            "durable_objects: script {script_name} has no Durable Object namespace for class {class_name}"
                        ))
                    })?,
            ),
        };
        if let Some(ns) = &namespace_id
            && !self.container_enabled.contains(ns)
        {
            // As Cloudflare writes it: the error enum as JSON inside the message.
            let detail = serde_json::json!({
                "error": "DURABLE_OBJECT_NOT_CONTAINER_ENABLED",
                "details": {"namespace_id": ns},
            });
            return Err(Failure::new(400, codes::VALIDATE_INPUT, detail.to_string()));
        }
        if let Some(ns) = &namespace_id
            && let Some(other) = self
                .applications
                .values()
                .find(|a| a.namespace_id() == Some(ns.as_str()))
        {
            let detail = serde_json::json!({
                "error": "DURABLE_OBJECT_ALREADY_HAS_APPLICATION",
                "details": {"name": other.name, "id": other.id},
            });
            return Err(Failure::new(
                400,
                CODE_NAMESPACE_HAS_APPLICATION,
                detail.to_string(),
            ));
        }
        let id = self.new_uuid();
        let now = timestamp();
        let app = Application {
            id: id.clone(),
            account_id: self.account_id.clone(),
            name: req.name,
            version: 1,
            created_at: now.clone(),
            updated_at: now,
            scheduling_policy: req.scheduling_policy,
            instances: req.instances,
            max_instances: req.max_instances,
            configuration: expanded(req.configuration),
            constraints: req.constraints,
            durable_objects: namespace_id
                .map(|namespace_id| ApplicationDurableObjects { namespace_id }),
            health: Some(ApplicationHealth::default()),
            active_rollout_id: None,
            observability: req.observability,
            rollout_active_grace_period: req.rollout_active_grace_period,
        };
        self.applications.insert(id, app.clone());
        Ok(app)
    }

    pub fn modify_application(
        &mut self,
        id: &str,
        req: ModifyApplicationRequest,
    ) -> Outcome<Application> {
        self.advance_rollouts();
        check_counts(req.instances, req.max_instances)?;
        if let Some(c) = &req.constraints {
            check_constraints(c)?;
        }
        check_grace(req.rollout_active_grace_period)?;
        self.not_deleting(id)?;
        let app = self
            .applications
            .get_mut(id)
            .ok_or_else(|| Failure::not_found("application"))?;
        if req.observability.is_some() && app.configuration.observability.is_some() {
            return Err(Failure::invalid(
                "observability: mutually exclusive with configuration.observability, which this application uses",
            ));
        }
        if let Some(v) = req.instances {
            app.instances = v;
        }
        if let Some(v) = req.max_instances {
            app.max_instances = Some(v);
        }
        if let Some(v) = req.constraints {
            app.constraints = Some(v);
        }
        if let Some(v) = req.observability {
            app.observability = Some(v);
        }
        if let Some(v) = req.rollout_active_grace_period {
            app.rollout_active_grace_period = Some(v);
        }
        app.updated_at = timestamp();
        Ok(app.clone())
    }

    /// `DELETE`: asynchronous, as on Cloudflare. The application stays listed (name
    /// and namespace taken) for `delete_delay_ms`, then goes; a second delete meanwhile
    /// answers the same.
    pub fn delete_application(&mut self, id: &str) -> Outcome<DeleteApplicationResponse> {
        self.purge_deleted();
        if !self.applications.contains_key(id) {
            return Err(Failure::not_found("application"));
        }
        let gone_at = now_ms() + self.delete_delay_ms;
        self.deleting.entry(id.to_string()).or_insert(gone_at);
        self.purge_deleted();
        Ok(DeleteApplicationResponse {
            message: "starting asynchronous deletion".into(),
        })
    }

    /// Removes the applications whose deletion has finished.
    fn purge_deleted(&mut self) {
        let now = now_ms();
        let done: Vec<String> = self
            .deleting
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in done {
            self.deleting.remove(&id);
            self.applications.remove(&id);
            self.rollouts.retain(|_, r| r.application_id != id);
        }
    }

    /// Refuses changes to an application that is being deleted.
    fn not_deleting(&self, id: &str) -> Outcome<()> {
        if self.deleting.contains_key(id) {
            return Err(Failure::new(
                409,
                codes::VALIDATE_INPUT,
                "the application is being deleted",
            ));
        }
        Ok(())
    }

    pub fn create_rollout(
        &mut self,
        id: &str,
        req: CreateRolloutRequest,
    ) -> Outcome<ApplicationRollout> {
        self.advance_rollouts();
        if req.strategy == RolloutStrategy::Unknown {
            return Err(Failure::invalid(
                "strategy: must be one of [rolling, new_instances]",
            ));
        }
        if matches!(
            req.kind,
            Some(RolloutKind::Unknown | RolloutKind::DurableObjectsAuto)
        ) {
            return Err(Failure::invalid(
                "kind: must be one of [full_auto, full_manual]",
            ));
        }
        if let Some(step) = req.step_percentage {
            if !STEP_PERCENTAGES.contains(&step) {
                return Err(Failure::invalid(format!(
                    "step_percentage: {step} is not one of 5, 10, 20, 25, 50, 100"
                )));
            }
            if req.strategy != RolloutStrategy::Rolling {
                return Err(Failure::invalid(
                    "step_percentage: only valid for the rolling strategy",
                ));
            }
        }
        check_configuration(&req.target_configuration, "target_configuration")?;
        self.not_deleting(id)?;
        if req.target_configuration.observability.is_some()
            && self
                .applications
                .get(id)
                .is_some_and(|a| a.observability.is_some())
        {
            return Err(Failure::invalid(
                "target_configuration.observability: mutually exclusive with the application's observability",
            ));
        }
        let step_ms = self.rollout_step_ms;
        let reverts = if self.reverts_scripted > 0 {
            self.reverts_scripted -= 1;
            true
        } else {
            self.rollout_revert_rate > 0.0 && fastrand::f64() < self.rollout_revert_rate
        };
        let rollout_id = self.new_uuid();
        let app = self
            .applications
            .get_mut(id)
            .ok_or_else(|| Failure::not_found("application"))?;
        // A new rollout replaces the one in progress.
        if let Some(previous) = app.active_rollout_id.take()
            && let Some(r) = self.rollouts.get_mut(&previous)
        {
            r.rollout.status = RolloutStatus::Replaced;
        }
        let percentages: Vec<i64> = match (&req.step_percentage, &req.steps) {
            (Some(_), Some(_)) => {
                return Err(Failure::invalid(
                    "steps: specify only one of step_percentage or steps",
                ));
            }
            (_, Some(steps)) => {
                let p: Vec<i64> = steps.iter().map(|s| s.step_size.percentage).collect();
                let increasing = p.windows(2).all(|w| w[0] < w[1]);
                if p.is_empty()
                    || !increasing
                    || p.iter().any(|x| !(10..=100).contains(x))
                    || p.last() != Some(&100)
                {
                    return Err(Failure::invalid(
                        "steps: percentages must increase from at least 10 to 100",
                    ));
                }
                p
            }
            (step, None) => {
                let step = step.unwrap_or(100).max(1);
                (1..=(100 + step - 1) / step)
                    .map(|i| (i * step).min(100))
                    .collect()
            }
        };
        let total_steps = percentages.len() as i64;
        let now = timestamp();
        let rollout = ApplicationRollout {
            id: rollout_id.clone(),
            created_at: now.clone(),
            last_updated_at: now,
            description: req.description,
            kind: req.kind.unwrap_or(RolloutKind::FullAuto),
            strategy: req.strategy,
            current_version: app.version,
            target_version: app.version + 1,
            current_configuration: app.configuration.clone(),
            target_configuration: expanded(req.target_configuration),
            status: RolloutStatus::Progressing,
            health: ApplicationHealth::default(),
            progress: Some(RolloutProgress {
                total_steps,
                current_step: 1,
                updated_instances: 0,
                total_instances: app.instances.max(1),
            }),
            steps: Some(
                percentages
                    .iter()
                    .zip(1..)
                    .map(|(pct, i)| RolloutStep {
                        id: i,
                        step_size: StepSize { percentage: *pct },
                        description: format!("step {i} of {total_steps}"),
                        status: if i == 1 { "progressing" } else { "pending" }.into(),
                    })
                    .collect(),
            ),
        };
        app.active_rollout_id = Some(rollout_id.clone());
        app.updated_at = timestamp();
        self.rollouts.insert(
            rollout_id,
            RolloutRecord {
                application_id: id.to_string(),
                rollout: rollout.clone(),
                started_ms: now_ms(),
                reverts,
            },
        );
        if step_ms == 0 {
            self.advance_rollouts();
        }
        Ok(rollout)
    }

    /// The application of the container-enabled class `class` of `script` (on the
    /// class's namespace, not being deleted), its rollouts brought up to date.
    pub fn container_application(&mut self, script: &str, class: &str) -> Option<&Application> {
        self.advance_rollouts();
        let ns = self
            .namespaces
            .iter()
            .find(|n| n.script.as_deref() == Some(script) && n.class.as_deref() == Some(class))?;
        self.applications.values().find(|a| {
            !self.deleting.contains_key(&a.id)
                && a.durable_objects
                    .as_ref()
                    .is_some_and(|d| d.namespace_id == ns.id)
        })
    }

    pub fn list_versions(&mut self, id: &str) -> Outcome<Vec<ApplicationVersion>> {
        self.advance_rollouts();
        let app = self
            .applications
            .get(id)
            .ok_or_else(|| Failure::not_found("application"))?;
        let active = app
            .active_rollout_id
            .as_ref()
            .and_then(|r| self.rollouts.get(r));
        Ok(match active {
            None => vec![ApplicationVersion {
                version: app.version,
                percentage: 100,
                configuration: app.configuration.clone(),
            }],
            Some(r) => {
                let pct = r
                    .rollout
                    .steps
                    .as_ref()
                    .and_then(|s| {
                        let cur = r.rollout.progress.as_ref()?.current_step;
                        s.iter()
                            .find(|x| x.id == cur)
                            .map(|x| x.step_size.percentage)
                    })
                    .unwrap_or(0);
                vec![
                    ApplicationVersion {
                        version: r.rollout.current_version,
                        percentage: 100 - pct,
                        configuration: r.rollout.current_configuration.clone(),
                    },
                    ApplicationVersion {
                        version: r.rollout.target_version,
                        percentage: pct,
                        configuration: r.rollout.target_configuration.clone(),
                    },
                ]
            }
        })
    }

    /// Moves every progressing rollout forward by the time elapsed; a finished one
    /// becomes the application's configuration and version.
    pub fn advance_rollouts(&mut self) {
        self.purge_deleted();
        let now = now_ms();
        let step_ms = self.rollout_step_ms;
        for record in self.rollouts.values_mut() {
            if record.rollout.status != RolloutStatus::Progressing {
                continue;
            }
            let Some(progress) = record.rollout.progress.as_mut() else {
                continue;
            };
            let elapsed_steps = match now.saturating_sub(record.started_ms).checked_div(step_ms) {
                Some(steps) => steps as i64,
                None => progress.total_steps,
            };
            let current = (elapsed_steps + 1).min(progress.total_steps);
            progress.current_step = current;
            let done = elapsed_steps >= progress.total_steps;
            let total_instances = progress.total_instances;
            let total_steps = progress.total_steps;
            progress.updated_instances = if done {
                total_instances
            } else {
                total_instances * (current - 1) / total_steps.max(1)
            };
            if let Some(steps) = record.rollout.steps.as_mut() {
                for s in steps.iter_mut() {
                    s.status = if done || s.id < current {
                        "completed"
                    } else if s.id == current {
                        "progressing"
                    } else {
                        "pending"
                    }
                    .into();
                }
            }
            record.rollout.last_updated_at = timestamp();
            if done && record.reverts {
                // Reverted: every instance back on the version it came from.
                record.rollout.status = RolloutStatus::Reverted;
                if let Some(app) = self.applications.get_mut(&record.application_id)
                    && app.active_rollout_id.as_deref() == Some(record.rollout.id.as_str())
                {
                    app.active_rollout_id = None;
                    app.updated_at = timestamp();
                }
            } else if done {
                record.rollout.status = RolloutStatus::Completed;
                if let Some(app) = self.applications.get_mut(&record.application_id)
                    && app.active_rollout_id.as_deref() == Some(record.rollout.id.as_str())
                {
                    app.configuration = record.rollout.target_configuration.clone();
                    app.version = record.rollout.target_version;
                    app.active_rollout_id = None;
                    app.updated_at = timestamp();
                }
            }
        }
    }
}

fn check_counts(instances: Option<i64>, max_instances: Option<i64>) -> Outcome<()> {
    if instances.is_some_and(|i| i < 0) {
        return Err(Failure::invalid("instances: must be at least 0"));
    }
    if max_instances.is_some_and(|i| i < 0) {
        return Err(Failure::invalid("max_instances: must be at least 0"));
    }
    Ok(())
}

fn check_grace(grace: Option<i64>) -> Outcome<()> {
    if grace.is_some_and(|g| !(0..=604_800).contains(&g)) {
        return Err(Failure::invalid(
            "rollout_active_grace_period: must be between 0 and 604800",
        ));
    }
    Ok(())
}

fn check_constraints(c: &ApplicationConstraints) -> Outcome<()> {
    for r in c.regions.iter().flatten() {
        if !REGIONS.contains(&r.as_str()) {
            return Err(Failure::invalid(format!(
                "constraints.regions: {r:?} is not one of {}",
                REGIONS.join(", ")
            )));
        }
    }
    if let Some(j) = &c.jurisdiction
        && !JURISDICTIONS.contains(&j.as_str())
    {
        return Err(Failure::invalid(format!(
            "constraints.jurisdiction: {j:?} is not one of eu, fedramp"
        )));
    }
    Ok(())
}

fn check_configuration(c: &DeploymentConfiguration, field: &str) -> Outcome<()> {
    if c.image.trim().is_empty() {
        return Err(Failure::invalid(format!("{field}.image: is required")));
    }
    if c.instance_type == Some(InstanceType::Unknown) {
        return Err(Failure::invalid(format!(
            "{field}.instance_type: must be one of lite, basic, standard-1, standard-2, standard-3, standard-4"
        )));
    }
    let custom = c.vcpu.is_some()
        || c.memory_mib.is_some()
        || c.disk.as_ref().and_then(|d| d.size_mb).is_some();
    if c.instance_type.is_some() && custom {
        return Err(Failure::invalid(format!(
            "{field}: instance_type cannot be combined with vcpu, memory_mib or disk"
        )));
    }
    if c.vcpu.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
        return Err(Failure::invalid(format!("{field}.vcpu: must be positive")));
    }
    if c.memory_mib.is_some_and(|m| m <= 0) {
        return Err(Failure::invalid(format!(
            "{field}.memory_mib: must be positive"
        )));
    }
    let mut names = BTreeSet::new();
    for e in c.environment_variables.iter().flatten() {
        if e.name.is_empty() || !names.insert(e.name.as_str()) {
            return Err(Failure::invalid(format!(
                "{field}.environment_variables: empty or duplicate name {:?}",
                e.name
            )));
        }
    }
    Ok(())
}

//! The plan of a Stack: from what the record wants and what the swarm has,
//! the ordered steps that converge them, each with its field-level
//! differences. Pure: the reconciler observes, then executes the plan; `drift`
//! renders the same plan, so the two can never disagree.
//!
//! # Order
//! Networks, then secret and config versions, then services (which refer to
//! all three), then what the record no longer wants: services first, so the
//! secrets, configs and networks they used can go after them.
//!
//! # Guarantees
//! Executing every action of a plan and planning again gives a plan with no
//! action (a property test below checks it over random stacks): what is left
//! is only what is kept on purpose ([`Change::Keep`]).
//!
//! # Layout
//! - `desired.rs`: [`Desired`], [`Live`], [`Ids`], [`Blob`]: the inputs.
//! - `compare.rs`: comparing a service with the live one, compose paths, names.
//! - `ignore.rs`: `spec.ignoreDifferences`, fields whose live values are kept.

mod compare;
mod desired;
mod ignore;

use std::collections::HashSet;

use bollard::models::Service;

pub use compare::{
    SERVICE_DEFAULTS, add_labels, compare_service, compose_path, json_hash, keep_pinned_digest,
    network_ids, versioned_name,
};
pub use desired::{Blob, Desired, Drivers, Ids, Live, config_name, secret_name, service_name};
pub use ignore::{ignores, keep_live_fields};

use super::diff::FieldDiff;
use super::drift::{ObjectDrift, ObjectState};

/// The kind of swarm object a step is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Network,
    Secret,
    Config,
    Service,
}

impl Object {
    /// As drift reports and events name it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Object::Network => "network",
            Object::Secret => "secret",
            Object::Config => "config",
            Object::Service => "service",
        }
    }
}

/// Why a difference is left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Swarm networks cannot be updated; recreating one would detach every task.
    Immutable,
    /// Swarm rolled this update back (or paused it): sending it again would
    /// only fail the same way, until the record changes.
    RolledBack,
}

/// What a step does to its object.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The object is missing: create it.
    Create,
    /// The object differs in these fields: update it.
    Update(Vec<FieldDiff>),
    /// The object differs, and is left as it is.
    Keep {
        fields: Vec<FieldDiff>,
        reason: Reason,
    },
    /// The record no longer wants the object (by ID): remove it.
    Remove { id: String },
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub object: Object,
    /// The swarm name (a versioned name for secrets and configs).
    pub name: String,
    pub change: Change,
}

impl Step {
    /// Whether executing the step changes the swarm.
    #[must_use]
    pub fn is_action(&self) -> bool {
        !matches!(self.change, Change::Keep { .. })
    }
}

/// What converges a stack, in order; or what it waits for first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// External objects the stack needs that do not exist yet: nothing is
    /// done until they do.
    pub waits: Vec<String>,
    pub steps: Vec<Step>,
}

impl Plan {
    /// The steps that change the swarm.
    pub fn actions(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.is_action())
    }

    /// The plan as a drift report: missing, changed and orphaned objects.
    #[must_use]
    pub fn drift(&self) -> Vec<ObjectDrift> {
        self.steps
            .iter()
            .map(|step| {
                let (state, fields) = match &step.change {
                    Change::Create => (ObjectState::Missing, Vec::new()),
                    Change::Update(fields) | Change::Keep { fields, .. } => {
                        (ObjectState::Changed, fields.clone())
                    }
                    Change::Remove { .. } => (ObjectState::Orphan, Vec::new()),
                };
                ObjectDrift {
                    object: step.object.as_str().to_string(),
                    name: step.name.clone(),
                    state,
                    fields,
                }
            })
            .collect()
    }
}

/// Plans the convergence of `live` to `desired`.
///
/// `ids` holds the IDs known before any step (the owned objects that already
/// are desired, [`Ids::add_known`], and the external ones); `missing` names
/// external objects that do not exist; `held` says which live services keep
/// their spec because swarm rolled their update back.
#[must_use]
pub fn plan(
    desired: &Desired,
    live: &Live,
    ids: &Ids,
    missing: Vec<String>,
    held: impl Fn(&Service) -> bool,
) -> Plan {
    let mut steps = Vec::new();
    let step = |object, name: &str, change| Step {
        object,
        name: name.to_string(),
        change,
    };
    for net in &desired.objects.networks {
        match live
            .networks
            .iter()
            .find(|n| n.name.as_deref() == Some(&net.name))
        {
            None => steps.push(step(Object::Network, &net.name, Change::Create)),
            Some(l) => {
                let fields = super::network::compare(&desired.network_request(net), l);
                if !fields.is_empty() {
                    let reason = Reason::Immutable;
                    steps.push(step(
                        Object::Network,
                        &net.name,
                        Change::Keep { fields, reason },
                    ));
                }
            }
        }
    }
    let versions = |names: Vec<Option<&str>>, blobs: &[Blob], object| {
        blobs
            .iter()
            .filter(|b| !names.contains(&Some(b.versioned.as_str())))
            .map(|b| step(object, &b.versioned, Change::Create))
            .collect::<Vec<_>>()
    };
    let live_secrets = live.secrets.iter().map(secret_name).collect();
    steps.extend(versions(live_secrets, &desired.secrets, Object::Secret));
    let live_configs = live.configs.iter().map(config_name).collect();
    steps.extend(versions(live_configs, &desired.configs, Object::Config));
    for svc in &desired.objects.services {
        let Some(current) = live
            .services
            .iter()
            .find(|s| service_name(s) == Some(&svc.name))
        else {
            steps.push(step(Object::Service, &svc.name, Change::Create));
            continue;
        };
        let fields: Vec<FieldDiff> =
            compare_service(&desired.service_spec_over(svc, ids, current), current)
                .into_iter()
                .map(|f| FieldDiff {
                    path: compose_path(&svc.key, &f.path),
                    ..f
                })
                .collect();
        if fields.is_empty() {
            continue;
        }
        let change = if held(current) {
            let reason = Reason::RolledBack;
            Change::Keep { fields, reason }
        } else {
            Change::Update(fields)
        };
        steps.push(step(Object::Service, &svc.name, change));
    }
    steps.extend(orphans(desired, live));
    Plan {
        waits: missing,
        steps,
    }
}

/// Owned objects the record no longer wants: services first, then what they used.
fn orphans(desired: &Desired, live: &Live) -> Vec<Step> {
    let objects = &desired.objects;
    let services: HashSet<&str> = objects.services.iter().map(|s| s.name.as_str()).collect();
    let networks: HashSet<&str> = objects.networks.iter().map(|n| n.name.as_str()).collect();
    let secrets: HashSet<&str> = desired
        .secrets
        .iter()
        .map(|b| b.versioned.as_str())
        .collect();
    let configs: HashSet<&str> = desired
        .configs
        .iter()
        .map(|b| b.versioned.as_str())
        .collect();
    let mut out = Vec::new();
    let mut push = |object, name: Option<&str>, id: &Option<String>, keep: &HashSet<&str>| {
        if let Some(name) = name
            && !keep.contains(name)
        {
            out.push(Step {
                object,
                name: name.to_string(),
                change: Change::Remove {
                    id: id.clone().unwrap_or_default(),
                },
            });
        }
    };
    for s in &live.services {
        push(Object::Service, service_name(s), &s.id, &services);
    }
    for s in &live.secrets {
        push(Object::Secret, secret_name(s), &s.id, &secrets);
    }
    for c in &live.configs {
        push(Object::Config, config_name(c), &c.id, &configs);
    }
    for n in &live.networks {
        push(Object::Network, n.name.as_deref(), &n.id, &networks);
    }
    out
}

#[cfg(test)]
mod tests;

//! Renders what the controller would do to the live swarm if files were
//! applied (`diff`, `apply --dry-run`): each record's plan as its ordered
//! actions, with the field-level differences in the compose terms drift uses.
//!
//! Plans name objects and fields; the values shown are the ones the record
//! and the swarm objects hold in the clear (never a secret's content, which
//! no plan carries).

use std::fmt::Write as _;

use super::drift::show;
use crate::docker::labels::SPEC_HASH;
use crate::plan::diff::FieldDiff;
use crate::plan::drift::{ObjectDrift, ObjectState};
use crate::plan::stack::{self, Change, Reason};

/// What one action does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    Create,
    Update,
    Remove,
    /// The object differs and is left as it is, for this reason.
    Keep(&'static str),
    /// Nothing is done until this appears.
    WaitFor,
}

/// One action of a record's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub verb: Verb,
    /// `service`, `network`, `secret`, `config`, `node`, or `external` for what a stack waits for.
    pub object: String,
    pub name: String,
    pub fields: Vec<FieldDiff>,
}

impl Action {
    /// Whether the action changes the swarm.
    #[must_use]
    pub fn changes(&self) -> bool {
        matches!(self.verb, Verb::Create | Verb::Update | Verb::Remove)
    }
}

/// What the controller would do for one record.
#[derive(Debug, Clone, PartialEq)]
pub enum WouldDo {
    /// The plan's actions, in order; none when the swarm is as the record wants.
    Actions(Vec<Action>),
    /// The plan could not be computed here, and why.
    NotComputed(String),
}

/// One record's plan, as `Kind/name`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordPlan {
    pub record: String,
    pub would: WouldDo,
}

impl RecordPlan {
    /// Whether the controller would change something live; an uncomputed plan is not counted.
    #[must_use]
    pub fn changes(&self) -> bool {
        matches!(&self.would, WouldDo::Actions(a) if a.iter().any(Action::changes))
    }
}

fn action(verb: Verb, object: &str, name: &str, fields: Vec<FieldDiff>) -> Action {
    Action {
        verb,
        object: object.to_string(),
        name: name.to_string(),
        fields,
    }
}

/// `fields` without the spec hash label when other fields say what changed:
/// the hash follows from them, and a reader of the plan is after the fields.
fn without_hash(fields: &[FieldDiff]) -> Vec<FieldDiff> {
    let hash = format!("labels.{SPEC_HASH}");
    let told: Vec<FieldDiff> = fields
        .iter()
        .filter(|f| !f.path.ends_with(&hash))
        .cloned()
        .collect();
    if told.is_empty() {
        fields.to_vec()
    } else {
        told
    }
}

/// The actions of a stack's plan: what it waits for, then its steps in
/// order. With `report_only` (self-heal off, this generation applied) the
/// controller corrects nothing, so every step is kept.
#[must_use]
pub fn stack(plan: &stack::Plan, report_only: bool) -> Vec<Action> {
    let waits = plan
        .waits
        .iter()
        .map(|w| action(Verb::WaitFor, "external", w, Vec::new()));
    let steps = plan.steps.iter().map(|step| {
        let object = step.object.as_str();
        let (verb, fields) = match &step.change {
            Change::Create => (Verb::Create, Vec::new()),
            Change::Update(fields) => (Verb::Update, without_hash(fields)),
            Change::Keep { fields, reason } => (
                Verb::Keep(match reason {
                    Reason::Immutable => "swarm networks are immutable",
                    Reason::RolledBack => "swarm rolled this update back",
                }),
                without_hash(fields),
            ),
            Change::Remove { .. } => (Verb::Remove, Vec::new()),
        };
        let verb = if report_only {
            Verb::Keep("self-heal is off: drift is reported, not corrected")
        } else {
            verb
        };
        action(verb, object, &step.name, fields)
    });
    waits.chain(steps).collect()
}

/// The actions of a Network record's plan, from its drift: a missing network
/// is created; a differing one is reported, never recreated.
#[must_use]
pub fn network(objects: &[ObjectDrift]) -> Vec<Action> {
    objects
        .iter()
        .map(|o| {
            let verb = match o.state {
                ObjectState::Missing => Verb::Create,
                ObjectState::Changed => Verb::Keep("swarm networks are immutable"),
                ObjectState::Orphan => Verb::Remove,
            };
            action(verb, &o.object, &o.name, o.fields.clone())
        })
        .collect()
}

/// The actions of a Node record's plan, from its drift: nodes are never
/// created, so a missing one is waited for; a differing one is updated.
#[must_use]
pub fn node(objects: &[ObjectDrift]) -> Vec<Action> {
    objects
        .iter()
        .map(|o| {
            let verb = match o.state {
                ObjectState::Missing => Verb::WaitFor,
                ObjectState::Changed | ObjectState::Orphan => Verb::Update,
            };
            action(verb, &o.object, &o.name, o.fields.clone())
        })
        .collect()
}

fn line(a: &Action) -> String {
    let what = format!("{} {}", a.object, a.name);
    match a.verb {
        Verb::Create => format!("create {what}"),
        Verb::Update => format!("update {what}"),
        Verb::Remove => format!("remove {what}"),
        Verb::Keep(reason) => format!("leave {what} as it is ({reason})"),
        Verb::WaitFor if a.object == "external" => {
            format!(
                "wait for external {} (nothing is done until it exists)",
                a.name
            )
        }
        Verb::WaitFor => format!("wait for {what} (not in the swarm)"),
    }
}

/// The section `diff` and `apply --dry-run` print after the records: one
/// entry per record with a plan, its actions numbered in order. Empty when
/// no record has a plan.
#[must_use]
pub fn text(plans: &[RecordPlan]) -> String {
    if plans.is_empty() {
        return String::new();
    }
    let mut out = String::from("What the controller would do in the swarm:\n");
    for p in plans {
        match &p.would {
            WouldDo::NotComputed(why) => {
                let _ = writeln!(out, "{}: not computed: {why}", p.record);
            }
            WouldDo::Actions(actions) if actions.is_empty() => {
                let _ = writeln!(out, "{}: nothing to do", p.record);
            }
            WouldDo::Actions(actions) => {
                let _ = writeln!(out, "{}:", p.record);
                for (i, a) in actions.iter().enumerate() {
                    let _ = writeln!(out, "  {}. {}", i + 1, line(a));
                    for f in &a.fields {
                        let _ = writeln!(
                            out,
                            "       {}: {} -> {}",
                            f.path,
                            show(f.live.as_ref()),
                            show(f.desired.as_ref())
                        );
                    }
                }
            }
        }
    }
    out
}

/// The section when the live swarm could not be looked at.
#[must_use]
pub fn skipped(why: &str) -> String {
    format!("What the controller would do in the swarm: live comparison skipped: {why}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::stack::{Object, Plan, Step};
    use serde_json::json;

    fn replicas() -> FieldDiff {
        FieldDiff {
            path: "services.api.deploy.replicas".into(),
            desired: Some(json!(0)),
            live: Some(json!(1)),
        }
    }

    fn plan() -> Plan {
        let step = |object, name: &str, change| Step {
            object,
            name: name.into(),
            change,
        };
        Plan {
            waits: vec![],
            steps: vec![
                step(Object::Network, "web_back", Change::Create),
                step(Object::Service, "web_api", Change::Update(vec![replicas()])),
                step(Object::Service, "web_new", Change::Create),
                step(
                    Object::Service,
                    "web_old",
                    Change::Remove { id: "x1".into() },
                ),
            ],
        }
    }

    fn record(actions: Vec<Action>) -> RecordPlan {
        RecordPlan {
            record: "Stack/web".into(),
            would: WouldDo::Actions(actions),
        }
    }

    #[test]
    fn a_stack_plan_renders_its_steps_in_order_with_their_fields() {
        let out = text(&[record(stack(&plan(), false))]);
        assert_eq!(
            out,
            "What the controller would do in the swarm:\n\
             Stack/web:\n  \
             1. create network web_back\n  \
             2. update service web_api\n       \
             services.api.deploy.replicas: 1 -> 0\n  \
             3. create service web_new\n  \
             4. remove service web_old\n"
        );
        assert!(record(stack(&plan(), false)).changes());
    }

    #[test]
    fn the_spec_hash_is_shown_only_when_nothing_else_differs() {
        let hash = FieldDiff {
            path: format!("services.api.deploy.labels.{SPEC_HASH}"),
            desired: Some(json!("b")),
            live: Some(json!("a")),
        };
        let update = |fields| Plan {
            waits: vec![],
            steps: vec![Step {
                object: Object::Service,
                name: "web_api".into(),
                change: Change::Update(fields),
            }],
        };
        let fields = |p: &Plan| stack(p, false).remove(0).fields;
        assert_eq!(
            fields(&update(vec![hash.clone(), replicas()])),
            [replicas()]
        );
        assert_eq!(fields(&update(vec![hash.clone()])), [hash]);
    }

    #[test]
    fn waits_come_first_and_kept_steps_change_nothing() {
        let mut p = Plan {
            waits: vec!["network \"front\"".into()],
            steps: vec![],
        };
        assert!(!record(stack(&p, false)).changes());
        p.steps.push(Step {
            object: Object::Network,
            name: "web_back".into(),
            change: Change::Keep {
                fields: vec![],
                reason: Reason::Immutable,
            },
        });
        let out = text(&[record(stack(&p, false))]);
        assert!(
            out.contains(
                "1. wait for external network \"front\" (nothing is done until it exists)\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("2. leave network web_back as it is (swarm networks are immutable)"),
            "{out}"
        );
        assert!(!record(stack(&p, false)).changes());
    }

    #[test]
    fn with_self_heal_off_every_step_is_only_reported() {
        let r = record(stack(&plan(), true));
        assert!(!r.changes());
        assert!(text(&[r]).contains("leave service web_api as it is (self-heal is off"));
    }

    #[test]
    fn network_and_node_drift_map_to_their_controllers_actions() {
        let drift = |state| ObjectDrift {
            object: "x".into(),
            name: "n".into(),
            state,
            fields: vec![],
        };
        let verbs = |actions: Vec<Action>| actions.into_iter().map(|a| a.verb).collect::<Vec<_>>();
        let states = [ObjectState::Missing, ObjectState::Changed];
        assert_eq!(
            verbs(network(&states.map(drift))),
            [Verb::Create, Verb::Keep("swarm networks are immutable")]
        );
        assert_eq!(
            verbs(node(&states.map(drift))),
            [Verb::WaitFor, Verb::Update]
        );
    }

    #[test]
    fn empty_and_uncomputed_plans_say_so() {
        assert_eq!(text(&[]), "");
        let out = text(&[
            record(vec![]),
            RecordPlan {
                record: "DatabaseUser/app".into(),
                would: WouldDo::NotComputed("needs the database".into()),
            },
        ]);
        assert!(out.contains("Stack/web: nothing to do\n"), "{out}");
        assert!(
            out.contains("DatabaseUser/app: not computed: needs the database\n"),
            "{out}"
        );
        assert!(skipped("dockerd unreachable").contains("live comparison skipped"));
    }
}

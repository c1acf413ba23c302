//! The plan of a stack: its steps for known situations, and the property that
//! a second plan after executing the first has no action, over random
//! sequences of edits (each interrupted at any step) and a model of the swarm
//! that applies actions as dockerd would.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{Config, ConfigSpec, Secret, SecretSpec, Service, ServiceSpec};
use proptest::prelude::*;

use super::*;
use crate::api::SecretValue;
use crate::api::compose::tests::parse;
use crate::plan::convert::convert_stack;

const STACK: &str = "demo";

/// A stack of `services` (name, env value, replicas, networks, secrets,
/// configs by index), with each secret's and config's content version.
#[derive(Debug, Clone)]
struct Shape {
    services: Vec<ServiceShape>,
    secret_versions: [u8; 2],
    config_versions: [u8; 2],
}

#[derive(Debug, Clone)]
struct ServiceShape {
    name: usize,
    env: u8,
    replicas: u8,
    networks: Vec<usize>,
    secrets: Vec<usize>,
    configs: Vec<usize>,
}

fn list(prefix: &str, indexes: &[usize]) -> String {
    let items: Vec<String> = indexes.iter().map(|i| format!("{prefix}{i}")).collect();
    format!("[{}]", items.join(", "))
}

impl Shape {
    fn compose(&self) -> String {
        let mut text = String::from("version: \"3.8\"\nservices:\n");
        if self.services.is_empty() {
            text = String::from("version: \"3.8\"\nservices: {}\n");
        }
        for s in &self.services {
            text.push_str(&format!(
                "  s{}:\n    image: local/busybox:1\n    environment: {{V: \"{}\"}}\n    \
                 deploy: {{replicas: {}}}\n    networks: {}\n    secrets: {}\n    configs: {}\n",
                s.name,
                s.env,
                s.replicas,
                list("n", &s.networks),
                list("k", &s.secrets),
                list("c", &s.configs),
            ));
        }
        text.push_str("networks: {n0: {}, n1: {}, n2: {}}\nsecrets:\n");
        for k in 0..2 {
            text.push_str(&format!(
                "  k{k}: {{x-swarmkeeper-secret: \"stack:{STACK}:k{k}\"}}\n"
            ));
        }
        text.push_str("configs:\n");
        for (c, version) in self.config_versions.iter().enumerate() {
            text.push_str(&format!("  c{c}: {{content: \"config {c} v{version}\"}}\n"));
        }
        text
    }

    /// What the record wants, with each secret's content made from its version.
    fn desired(&self) -> Desired {
        let objects = convert_stack(STACK, &parse(&self.compose())).expect("converts");
        let owner_labels: BTreeMap<String, String> =
            [("swarmkeeper.owner".to_string(), format!("Stack.{STACK}"))].into();
        let blob = |name: &str, labels, content: String| {
            let digest = json_hash(&content);
            let content = SecretValue::new(content.into_bytes());
            Blob::new(
                name,
                labels,
                &owner_labels,
                &digest,
                content,
                Drivers::default(),
            )
            .unwrap()
        };
        let secrets = objects
            .secrets
            .iter()
            .map(|s| {
                let index = usize::from(s.key.ends_with('1'));
                let content = format!("{} v{}", s.key, self.secret_versions[index]);
                blob(&s.name, &s.labels, content)
            })
            .collect();
        let configs = objects
            .configs
            .iter()
            .map(|c| {
                let index = usize::from(c.key.ends_with('1'));
                blob(
                    &c.name,
                    &c.labels,
                    format!("{} v{}", c.key, self.config_versions[index]),
                )
            })
            .collect();
        Desired {
            objects,
            secrets,
            configs,
            owner_labels,
            ignore_differences: Vec::new(),
        }
    }
}

fn indexes() -> impl Strategy<Value = Vec<usize>> {
    proptest::sample::subsequence(vec![0, 1, 2], 0..=3)
}

fn service_shape() -> impl Strategy<Value = ServiceShape> {
    (0..4usize, 0..3u8, 0..3u8, indexes(), indexes(), indexes()).prop_map(
        |(name, env, replicas, networks, secrets, configs)| ServiceShape {
            name,
            env,
            replicas,
            networks,
            secrets: secrets.into_iter().filter(|k| *k < 2).collect(),
            configs: configs.into_iter().filter(|c| *c < 2).collect(),
        },
    )
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        proptest::collection::vec(service_shape(), 0..4),
        any::<[u8; 2]>(),
        any::<[u8; 2]>(),
    )
        .prop_map(|(services, secret_versions, config_versions)| {
            let mut seen = std::collections::HashSet::new();
            let services = services
                .into_iter()
                .filter(|s| seen.insert(s.name))
                .collect();
            Shape {
                services,
                secret_versions: secret_versions.map(|v| v % 3),
                config_versions: config_versions.map(|v| v % 3),
            }
        })
}

/// A model of the swarm: applies actions as dockerd would, IDs counted up.
#[derive(Default)]
struct Model {
    live: Live,
    next_id: usize,
}

impl Model {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("id{}", self.next_id)
    }

    /// The IDs a new pass starts from: what is owned and desired already.
    fn ids(&self, desired: &Desired) -> Ids {
        let mut ids = Ids::default();
        ids.add_known(desired, &self.live);
        ids
    }

    fn plan(&self, desired: &Desired) -> Plan {
        plan(desired, &self.live, &self.ids(desired), Vec::new(), |_| {
            false
        })
    }

    /// Executes the first `limit` actions of `plan`, as the executor does.
    fn execute(&mut self, desired: &Desired, plan: &Plan, limit: usize) {
        let mut ids = self.ids(desired);
        for step in plan.actions().take(limit) {
            match (&step.change, step.object) {
                (Change::Create, Object::Network) => {
                    let net = desired
                        .objects
                        .networks
                        .iter()
                        .find(|n| n.name == step.name);
                    let id = self.id();
                    let live = crate::plan::network::as_created(
                        &desired.network_request(net.unwrap()),
                        &id,
                    );
                    ids.networks.insert(step.name.clone(), id);
                    self.live.networks.push(live);
                }
                (Change::Create, Object::Secret) => {
                    let id = self.id();
                    let blob = created(&desired.secrets, step, &mut ids.secrets, &id);
                    let spec = Some(SecretSpec {
                        data: None,
                        ..blob.secret_spec()
                    });
                    let id = Some(id);
                    self.live.secrets.push(Secret {
                        id,
                        spec,
                        ..Default::default()
                    });
                }
                (Change::Create, Object::Config) => {
                    let id = self.id();
                    let blob = created(&desired.configs, step, &mut ids.configs, &id);
                    let spec = Some(ConfigSpec {
                        data: None,
                        ..blob.config_spec()
                    });
                    let id = Some(id);
                    self.live.configs.push(Config {
                        id,
                        spec,
                        ..Default::default()
                    });
                }
                (Change::Create, Object::Service) => {
                    let svc = desired
                        .objects
                        .services
                        .iter()
                        .find(|s| s.name == step.name);
                    let spec = desired.service_spec(svc.unwrap(), &ids);
                    let id = self.id();
                    self.live.services.push(service(&id, spec));
                }
                (Change::Update(_), _) => {
                    let svc = desired
                        .objects
                        .services
                        .iter()
                        .find(|s| s.name == step.name);
                    let spec = desired.service_spec(svc.unwrap(), &ids);
                    let live = self
                        .live
                        .services
                        .iter_mut()
                        .find(|s| service_name(s) == Some(&step.name))
                        .unwrap();
                    live.spec = Some(keep_pinned_digest(&spec, live.spec.as_ref().unwrap()));
                }
                (Change::Remove { id }, object) => {
                    let id = Some(id.clone());
                    match object {
                        Object::Service => self.live.services.retain(|s| s.id != id),
                        Object::Secret => self.live.secrets.retain(|s| s.id != id),
                        Object::Config => self.live.configs.retain(|c| c.id != id),
                        Object::Network => self.live.networks.retain(|n| n.id != id),
                    }
                }
                (change, object) => panic!("no action {change:?} on a {object:?}"),
            }
        }
    }
}

/// The names of what the model holds, and of what `desired` wants, by kind.
fn inventory(model: &Model, desired: &Desired) -> [(Vec<String>, Vec<String>); 4] {
    let sorted = |names: Vec<Option<&str>>| {
        let mut names: Vec<String> = names.into_iter().flatten().map(String::from).collect();
        names.sort();
        names
    };
    let live = &model.live;
    let want = &desired.objects;
    [
        (
            sorted(live.services.iter().map(service_name).collect()),
            sorted(
                want.services
                    .iter()
                    .map(|s| Some(s.name.as_str()))
                    .collect(),
            ),
        ),
        (
            sorted(live.networks.iter().map(|n| n.name.as_deref()).collect()),
            sorted(
                want.networks
                    .iter()
                    .map(|n| Some(n.name.as_str()))
                    .collect(),
            ),
        ),
        (
            sorted(live.secrets.iter().map(secret_name).collect()),
            sorted(
                desired
                    .secrets
                    .iter()
                    .map(|b| Some(b.versioned.as_str()))
                    .collect(),
            ),
        ),
        (
            sorted(live.configs.iter().map(config_name).collect()),
            sorted(
                desired
                    .configs
                    .iter()
                    .map(|b| Some(b.versioned.as_str()))
                    .collect(),
            ),
        ),
    ]
}

/// The version `step` creates, recorded in `ids` under `id`.
fn created<'a>(
    blobs: &'a [Blob],
    step: &Step,
    ids: &mut HashMap<String, (String, String)>,
    id: &str,
) -> &'a Blob {
    let blob = blobs.iter().find(|b| b.versioned == step.name).unwrap();
    ids.insert(
        blob.logical.clone(),
        (blob.versioned.clone(), id.to_owned()),
    );
    blob
}

fn service(id: &str, spec: ServiceSpec) -> Service {
    Service {
        id: Some(id.to_owned()),
        spec: Some(spec),
        ..Default::default()
    }
}

/// A desired state for a sequence of edits: a stack, or its record deleted.
fn edit() -> impl Strategy<Value = Option<Shape>> {
    prop_oneof![4 => shape().prop_map(Some), 1 => Just(None)]
}

fn desired_of(edit: Option<&Shape>) -> Desired {
    edit.map_or_else(Desired::nothing, Shape::desired)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A sequence of edits (a record deleted among them), each interrupted at
    /// any step by the next one, as a killed operator or a quick commit
    /// would: whenever a plan runs to its end, the next plan has no action,
    /// and resuming the last edit leaves exactly what it wants.
    #[test]
    fn a_second_plan_after_executing_the_first_has_no_action(
        edits in proptest::collection::vec((edit(), 0..12usize), 1..6),
    ) {
        let mut model = Model::default();
        for (edit, interrupted_after) in &edits {
            let desired = desired_of(edit.as_ref());
            let plan = model.plan(&desired);
            model.execute(&desired, &plan, *interrupted_after);
            if *interrupted_after >= plan.actions().count() {
                let again = model.plan(&desired);
                prop_assert_eq!(again.actions().count(), 0, "after {:#?}: {:#?}", plan, again);
            }
        }
        let last = desired_of(edits.last().and_then(|(edit, _)| edit.as_ref()));
        let resumed = model.plan(&last);
        model.execute(&last, &resumed, usize::MAX);
        let again = model.plan(&last);
        prop_assert_eq!(again.actions().count(), 0, "after {:#?}: {:#?}", resumed, again);
        // And what is left is exactly what the record wants, nothing more.
        for (live, want) in inventory(&model, &last) {
            prop_assert_eq!(live, want);
        }
    }
}

fn two_services() -> Shape {
    let web = ServiceShape {
        name: 0,
        env: 0,
        replicas: 1,
        networks: vec![0],
        secrets: vec![0],
        configs: vec![],
    };
    Shape {
        services: vec![web.clone(), ServiceShape { name: 1, ..web }],
        secret_versions: [0, 0],
        config_versions: [0, 0],
    }
}

#[test]
fn a_new_stack_is_created_in_dependency_order() {
    let desired = two_services().desired();
    let plan = Model::default().plan(&desired);
    let order: Vec<(Object, &Change)> = plan.steps.iter().map(|s| (s.object, &s.change)).collect();
    assert_eq!(
        order,
        [
            // Only the networks services use; every declared secret and config,
            // as `docker stack deploy` does.
            (Object::Network, &Change::Create),
            (Object::Secret, &Change::Create),
            (Object::Secret, &Change::Create),
            (Object::Config, &Change::Create),
            (Object::Config, &Change::Create),
            (Object::Service, &Change::Create),
            (Object::Service, &Change::Create),
        ]
    );
    let drift = plan.drift();
    assert!(
        drift.iter().all(|o| o.state == ObjectState::Missing),
        "{drift:?}"
    );
}

#[test]
fn a_changed_secret_is_a_new_version_the_services_move_to_and_the_old_one_goes_last() {
    let mut shape = two_services();
    let mut model = Model::default();
    let first = shape.desired();
    model.execute(&first, &model.plan(&first), usize::MAX);
    shape.secret_versions = [1, 0];
    let plan = model.plan(&shape.desired());
    let steps: Vec<(Object, &str)> = plan
        .steps
        .iter()
        .map(|s| {
            let change = match &s.change {
                Change::Create => "create",
                Change::Update(_) => "update",
                Change::Keep { .. } => "keep",
                Change::Remove { .. } => "remove",
            };
            (s.object, change)
        })
        .collect();
    assert_eq!(
        steps,
        [
            (Object::Secret, "create"),
            (Object::Service, "update"),
            (Object::Service, "update"),
            (Object::Secret, "remove"),
        ]
    );
    let Change::Update(fields) = &plan.steps[1].change else {
        unreachable!()
    };
    assert!(
        fields.iter().all(|f| f.path.starts_with("services.s0.")),
        "{fields:?}"
    );
}

#[test]
fn a_rolled_back_service_and_a_changed_network_are_kept_and_reported() {
    let shape = two_services();
    let mut model = Model::default();
    let first = shape.desired();
    model.execute(&first, &model.plan(&first), usize::MAX);
    let changed = ServiceShape {
        env: 2,
        ..shape.services[0].clone()
    };
    let second = Shape {
        services: vec![changed, shape.services[1].clone()],
        ..shape
    }
    .desired();
    model.live.networks[0].attachable = Some(true);
    let plan = plan(&second, &model.live, &model.ids(&second), Vec::new(), |s| {
        service_name(s) == Some("demo_s0")
    });
    assert_eq!(plan.actions().count(), 0, "{plan:#?}");
    let reasons: Vec<_> = plan
        .steps
        .iter()
        .map(|s| match &s.change {
            Change::Keep { reason, .. } => (s.object, *reason),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (Object::Network, Reason::Immutable),
            (Object::Service, Reason::RolledBack)
        ]
    );
    assert!(plan.drift().iter().all(|o| o.state == ObjectState::Changed));
}

#[test]
fn a_deleted_record_removes_services_before_what_they_used() {
    let mut model = Model::default();
    let first = two_services().desired();
    model.execute(&first, &model.plan(&first), usize::MAX);
    let plan = model.plan(&Desired::nothing());
    let objects: Vec<Object> = plan.steps.iter().map(|s| s.object).collect();
    assert_eq!(
        objects,
        [
            Object::Service,
            Object::Service,
            Object::Secret,
            Object::Secret,
            Object::Config,
            Object::Config,
            Object::Network
        ]
    );
    assert!(plan.drift().iter().all(|o| o.state == ObjectState::Orphan));
}

#[test]
fn an_external_that_is_missing_is_waited_for() {
    let desired = two_services().desired();
    let plan = plan(
        &desired,
        &Live::default(),
        &Ids::default(),
        vec!["network \"edge\"".into()],
        |_| false,
    );
    assert_eq!(plan.waits, ["network \"edge\""]);
}

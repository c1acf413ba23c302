//! The timed parts of `hack/bench.sh` that no command line can time; each
//! prints one JSON object on stdout.
//!
//! - `bare STACK SERVICES REPLICAS`: the lower bound a client could reach, an
//!   overlay network and then SERVICES services created straight through the
//!   Engine API, 8 at a time, labelled as `docker stack deploy` labels them.
//! - `heal LABEL TRIALS`: an out-of-band scale (replicas 0 to 1, as `docker
//!   service scale` sends it) of TRIALS services carrying LABEL, one at a
//!   time, each timed until the operator has set it back to 0.
//! - `put ENDPOINT PREFIX NAME TRIALS`: a Stack record of one service written
//!   to etcd, timed until dockerd reports the first create of the stack's
//!   objects (its network).
//!
//! Not a controller: it calls bollard itself, since what it measures is what
//! a client without swarmkeeper would send.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{
    NetworkAttachmentConfig, NetworkCreateRequest, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
};
use bollard::query_parameters::{EventsOptions, ListServicesOptions, UpdateServiceOptions};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::json;
use swarmkeeper::api::{API_VERSION, Record};
use swarmkeeper::store::{Expect, RecordPut, Store, StoreConfig};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const IMAGE: &str = "local/busybox:1";
const NAMESPACE: &str = "com.docker.stack.namespace";
/// How long one heal or put may take before the trial counts as failed.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let docker = Docker::connect_with_local_defaults()?
        .negotiate_version()
        .await?;
    let out = match args.as_slice() {
        ["bare", stack, services, replicas] => {
            bare(&docker, stack, services.parse()?, replicas.parse()?).await?
        }
        ["heal", label, trials] => heal(&docker, label, trials.parse()?).await?,
        ["put", endpoint, prefix, name, trials] => {
            put(&docker, endpoint, prefix, name, trials.parse()?).await?
        }
        _ => {
            return Err(
                "usage: bench bare STACK SERVICES REPLICAS | heal LABEL TRIALS | \
                        put ENDPOINT PREFIX NAME TRIALS"
                    .into(),
            );
        }
    };
    println!("{out}");
    Ok(())
}

/// Seconds since `start`.
fn since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// The network and services of a stack sent straight to dockerd.
async fn bare(
    docker: &Docker,
    stack: &str,
    services: usize,
    replicas: i64,
) -> Result<serde_json::Value> {
    let labels = HashMap::from([(NAMESPACE.to_owned(), stack.to_owned())]);
    let network = format!("{stack}_default");
    let spec = |i: usize| ServiceSpec {
        name: Some(format!("{stack}_s{i}")),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(IMAGE.to_owned()),
                command: Some(vec!["sleep".into(), "3600".into()]),
                labels: Some(labels.clone()),
                ..TaskSpecContainerSpec::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(network.clone()),
                aliases: Some(vec![format!("s{i}")]),
                ..NetworkAttachmentConfig::default()
            }]),
            ..TaskSpec::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas),
            }),
            ..ServiceSpecMode::default()
        }),
        ..ServiceSpec::default()
    };
    let specs: Vec<ServiceSpec> = (0..services).map(spec).collect();
    let start = Instant::now();
    docker
        .create_network(NetworkCreateRequest {
            name: network.clone(),
            driver: Some("overlay".into()),
            scope: Some("swarm".into()),
            labels: Some(labels.clone()),
            ..NetworkCreateRequest::default()
        })
        .await?;
    stream::iter(specs)
        .map(|spec| docker.create_service(spec, None))
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(json!({ "seconds": since(start) }))
}

/// The replica count a service's spec asks for.
fn replicas_of(spec: &ServiceSpec) -> Option<i64> {
    spec.mode.as_ref()?.replicated.as_ref()?.replicas
}

/// Scales services carrying `label` out of band and times each heal.
async fn heal(docker: &Docker, label: &str, trials: usize) -> Result<serde_json::Value> {
    let options = ListServicesOptions {
        filters: Some(HashMap::from([("label".into(), vec![label.to_owned()])])),
        status: None,
    };
    let mut ids: Vec<String> = docker
        .list_services(Some(options))
        .await?
        .into_iter()
        .filter_map(|s| s.id)
        .collect();
    ids.sort();
    if ids.is_empty() {
        return Err(format!("no service carries {label}").into());
    }
    let step = (ids.len() / trials.max(1)).max(1);
    let mut seconds = Vec::new();
    let mut failed = 0;
    for id in ids.iter().step_by(step).take(trials) {
        let service = docker.inspect_service(id, None).await?;
        let mut spec = service.spec.clone().unwrap_or_default();
        if replicas_of(&spec) != Some(0) {
            return Err(format!("service {id} does not want 0 replicas").into());
        }
        spec.mode = Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..ServiceSpecMode::default()
        });
        let version = service.version.and_then(|v| v.index).unwrap_or(0);
        let options = UpdateServiceOptions {
            version: i32::try_from(version)?,
            ..UpdateServiceOptions::default()
        };
        let start = Instant::now();
        docker.update_service(id, spec, options, None).await?;
        loop {
            let now = docker.inspect_service(id, None).await?;
            if now.spec.as_ref().and_then(replicas_of) == Some(0) {
                seconds.push(since(start));
                break;
            }
            if start.elapsed() > TRIAL_TIMEOUT {
                failed += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Let the follow-up pass that the heal's own event causes finish first.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(json!({ "seconds": seconds, "failed": failed }))
}

fn unix_nanos(at: SystemTime) -> i64 {
    let nanos = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

/// Writes Stack records of one service and times each until its first Docker write.
async fn put(
    docker: &Docker,
    endpoint: &str,
    prefix: &str,
    name: &str,
    trials: usize,
) -> Result<serde_json::Value> {
    let store = Store::connect(StoreConfig {
        endpoints: vec![endpoint.to_owned()],
        prefix: prefix.to_owned(),
        ..StoreConfig::default()
    })
    .await?;
    let mut seconds = Vec::new();
    let mut failed = 0;
    for trial in 0..trials {
        let stack = format!("{name}{trial}");
        let compose = json!({"version": "3.8", "services": {"s": {
            "image": IMAGE, "command": ["sleep", "3600"], "deploy": {"replicas": 0}}}});
        let record = json!({"apiVersion": API_VERSION, "kind": "Stack",
            "metadata": {"name": stack}, "spec": {"compose": compose}});
        let value = Record::from_value(record)
            .map_err(|errors| format!("invalid bench record: {errors:?}"))?
            .to_value();
        let put_at = SystemTime::now();
        store
            .put_records(vec![RecordPut {
                kind: "Stack".into(),
                name: stack.clone(),
                value,
                expect: Expect::Any,
            }])
            .await?;
        // From the put on, replayed by dockerd: nothing is missed while subscribing.
        let from = put_at.duration_since(UNIX_EPOCH)?;
        let options = EventsOptions {
            since: Some(format!("{}.{:09}", from.as_secs(), from.subsec_nanos())),
            until: None,
            // The first write of a new stack creates its network, then its services.
            filters: Some(HashMap::from([(
                "type".into(),
                vec!["network".into(), "service".into()],
            )])),
        };
        let mut events = docker.events(Some(options));
        let wanted = format!("{stack}_");
        let first = tokio::time::timeout(TRIAL_TIMEOUT, async {
            while let Some(event) = events.next().await {
                let event = event?;
                let named = event
                    .actor
                    .as_ref()
                    .and_then(|a| a.attributes.as_ref())
                    .and_then(|a| a.get("name"))
                    .is_some_and(|n| n.starts_with(&wanted));
                if named && event.action.as_deref() == Some("create") {
                    return Ok::<_, bollard::errors::Error>(event.time_nano);
                }
            }
            Ok(None)
        })
        .await;
        match first {
            Ok(Ok(Some(at))) => {
                let nanos = at.saturating_sub(unix_nanos(put_at));
                seconds.push(Duration::from_nanos(u64::try_from(nanos)?).as_secs_f64());
            }
            _ => failed += 1,
        }
    }
    Ok(json!({ "seconds": seconds, "failed": failed }))
}

//! Notifications: a receiver run by the test gets exactly one message when a
//! record fails and one when it recovers, none for a steady state; a receiver
//! that never answers holds up no reconcile.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::{Value, json};
use swarmkeeper::api::{API_VERSION, Kind};
use swarmkeeper::controllers::status::Phase;
use swarmkeeper::controllers::{Controllers, RecordKey};
use swarmkeeper::metrics::NotifyLabels;
use swarmkeeper::notify::{Format, Notifier, NotifyConfig};
use swarmkeeper::store::{Expect, RecordPut, Store};

use super::harness::{Guard, eventually, serve, status_line};
use crate::common::Etcd;
use crate::common::controllers::{controllers, pass, status};
use crate::common::swarm::require_swarm_manager;

async fn put_network(store: &Store, name: &str, spec: Value) {
    let value = json!({
        "apiVersion": API_VERSION, "kind": "Network", "metadata": {"name": name}, "spec": spec,
    });
    let put = RecordPut {
        kind: "Network".into(),
        name: name.into(),
        value,
        expect: Expect::Any,
    };
    store.put_records(vec![put]).await.expect("etcd takes it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_gets_one_message_per_transition_and_a_hanging_one_delays_nothing() {
    require_swarm_manager();
    let name = format!("skn{:08x}", rand::random::<u32>());
    let _guard = Guard(vec![format!("Network.{name}")]);
    let store = Etcd::shared().store("gitops-notify").await;
    let (good, received) = serve(|_| Some(status_line(200, "OK", "")));
    let (hanging, held) = serve(|_| None);
    let notifier = Notifier::start(
        NotifyConfig {
            urls: vec![
                format!("http://{hanging}/hook"),
                format!("http://{good}/hook"),
            ],
            format: Format::Json,
            prefix: store.prefix().to_owned(),
            window: Duration::from_secs(1),
        },
        Family::<NotifyLabels, Counter>::default(),
    );
    let plain = controllers(&store).await;
    let controllers = Arc::new(Controllers {
        ctx: plain.ctx.clone().with_notifier(notifier),
        metrics: None,
    });
    let key = RecordKey::new(Kind::Network, &name);
    let messages = || {
        received
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.body.clone())
            .collect::<Vec<_>>()
    };
    let count = |n: usize| {
        let received = received.clone();
        move || {
            let len = received.lock().unwrap().len();
            async move { len == n }
        }
    };

    // A record that cannot converge: one message, however often it is looked at.
    put_network(&store, &name, json!({"driver": "overlay", "colour": "red"})).await;
    pass(&controllers, std::slice::from_ref(&key)).await;
    assert_eq!(
        status(&store, &key).await.expect("status").phase,
        Phase::Failed
    );
    eventually(Duration::from_secs(5), "the failing message", count(1)).await;
    pass(&controllers, std::slice::from_ref(&key)).await;
    // Failing another way is no new transition: its status changes, no message is sent.
    put_network(&store, &name, json!({"driver": "overlay", "size": 3})).await;
    pass(&controllers, std::slice::from_ref(&key)).await;
    let failed = status(&store, &key).await.expect("status");
    assert!(failed.message.contains("size"), "{}", failed.message);

    // Fixed: one message when it recovers (after the one-second window).
    put_network(&store, &name, json!({"driver": "overlay"})).await;
    pass(&controllers, std::slice::from_ref(&key)).await;
    assert_eq!(
        status(&store, &key).await.expect("status").phase,
        Phase::Ready
    );
    eventually(Duration::from_secs(5), "the recovery message", count(2)).await;
    pass(&controllers, std::slice::from_ref(&key)).await;
    pass(&controllers, std::slice::from_ref(&key)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let bodies: Vec<Value> = messages()
        .iter()
        .map(|b| serde_json::from_str(b).expect("a JSON message"))
        .collect();
    assert_eq!(bodies.len(), 2, "a steady state says nothing: {bodies:?}");
    let subject = format!("Network/{name}");
    assert_eq!(
        (bodies[0]["event"].as_str(), bodies[0]["subject"].as_str()),
        (Some("failing"), Some(subject.as_str()))
    );
    assert!(
        bodies[0]["message"].as_str().unwrap().contains("colour"),
        "{}",
        bodies[0]
    );
    assert_eq!(bodies[1]["event"], "recovered");
    assert_eq!(bodies[1]["folded"], 0);
    // The first receiver got the messages and never answered, while every pass finished.
    assert!(
        !held.lock().unwrap().is_empty(),
        "the hanging receiver was sent to"
    );
}

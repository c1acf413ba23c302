//! One test per merge rule, each the case docker/cli 20.10 decides that way (its
//! `merge_test.go` and what `docker stack deploy -c a -c b` deploys here).

use serde_json::{Value, json};

use super::*;
use crate::api::load::parse_documents;

fn layer(text: &str) -> Layer {
    let mut documents = parse_documents(text, false).expect("yaml");
    Layer::from_value(documents.remove(0), "").expect("compose")
}

fn merged(files: &[&str]) -> Value {
    let compose = merge_layers(files.iter().map(|f| layer(f)).collect()).expect("merge");
    serde_json::to_value(&compose).expect("serialize")
}

/// The merged `web` service of a base and an override, each given as its YAML fields.
fn web(base: &str, over: &str) -> Value {
    let file = |fields: &str| format!("services:\n  web:\n{fields}");
    merged(&[&file(base), &file(over)])["services"]["web"].clone()
}

#[test]
fn services_merge_by_name_and_come_out_sorted() {
    let out = merged(&[
        "services:\n  web: {image: a}\n  db: {image: d}\n",
        "services:\n  web: {image: b}\n  api: {image: c}\n",
    ]);
    let names: Vec<&String> = out["services"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["api", "db", "web"]);
    assert_eq!(out["services"]["web"]["image"], "b");
    assert_eq!(out["services"]["db"]["image"], "d");
}

#[test]
fn zero_values_of_the_override_leave_the_base_alone() {
    let out = web(
        "    image: a\n    user: root\n    read_only: true\n    stop_grace_period: 5s\n    deploy: {replicas: 2}\n",
        "    user: ''\n    read_only: false\n    stop_grace_period: 0s\n    deploy: {replicas: 0}\n",
    );
    assert_eq!(out["user"], "root");
    assert_eq!(out["read_only"], true);
    assert_eq!(out["stop_grace_period"], "5s");
    assert_eq!(out["deploy"]["replicas"], 2);
    let out = web("    deploy: {replicas: 2}\n", "    deploy: {replicas: 3}\n");
    assert_eq!(out["deploy"]["replicas"], 3);
}

#[test]
fn command_entrypoint_and_healthcheck_test_are_appended() {
    let out = web(
        "    command: sleep 1\n    entrypoint: [sh, -c]\n    healthcheck: {test: 'true'}\n",
        "    command: [sleep, '2']\n    entrypoint: [-x]\n    healthcheck: {test: [CMD, 'false']}\n",
    );
    assert_eq!(out["command"], json!(["sleep", "1", "sleep", "2"]));
    assert_eq!(out["entrypoint"], json!(["sh", "-c", "-x"]));
    assert_eq!(
        out["healthcheck"]["test"],
        json!(["CMD-SHELL", "true", "CMD", "false"])
    );
    let only_base = web("    command: sleep 1\n", "    image: x\n");
    assert_eq!(
        only_base["command"], "sleep 1",
        "a lone command is kept as written"
    );
}

#[test]
fn lists_are_appended() {
    let out = web(
        "    volumes: ['./a:/a']\n    cap_add: [NET_ADMIN]\n    dns: 1.1.1.1\n    extra_hosts: {b: 10.0.0.2, a: 10.0.0.1}\n    deploy: {placement: {constraints: [node.role==manager]}}\n",
        "    volumes: ['./b:/a']\n    cap_add: [SYS_ADMIN]\n    dns: [8.8.8.8]\n    extra_hosts: ['c:10.0.0.3']\n    deploy: {placement: {constraints: [node.role!=worker]}}\n",
    );
    assert_eq!(
        out["volumes"],
        json!(["./a:/a", "./b:/a"]),
        "same target: both stay"
    );
    assert_eq!(out["cap_add"], json!(["NET_ADMIN", "SYS_ADMIN"]));
    assert_eq!(out["dns"], json!(["1.1.1.1", "8.8.8.8"]));
    assert_eq!(
        out["extra_hosts"],
        json!(["a:10.0.0.1", "b:10.0.0.2", "c:10.0.0.3"])
    );
    assert_eq!(
        out["deploy"]["placement"]["constraints"],
        json!(["node.role==manager", "node.role!=worker"])
    );
}

#[test]
fn ports_merge_by_published_port_sorted() {
    let out = web(
        "    ports: ['8080:80', '9090:90', {target: 81, published: 7070, mode: host}]\n",
        "    ports: [{target: 81, published: 8080}]\n",
    );
    assert_eq!(
        out["ports"],
        json!([
            {"target": 81, "published": 7070, "mode": "host"},
            {"target": 81, "published": 8080},
            {"target": 90, "published": 9090, "protocol": "tcp", "mode": "ingress"},
        ])
    );
    // Unpublished ports share the key 0, so only the last survives, as in the CLI.
    let out = web("    ports: ['80', '81']\n", "    image: x\n");
    assert_eq!(
        out["ports"],
        json!([{"target": 81, "protocol": "tcp", "mode": "ingress"}])
    );
    let out = web("    image: x\n", "    ports: ['80', '81']\n");
    assert_eq!(out["ports"], json!(["80", "81"]), "nothing to merge into");
}

#[test]
fn secrets_and_configs_merge_by_source_sorted() {
    let out = web(
        "    secrets: [foo, {source: bar, target: waw}]\n    configs: [c]\n",
        "    secrets: [{source: bar, target: other}, abc]\n",
    );
    assert_eq!(
        out["secrets"],
        json!(["abc", {"source": "bar", "target": "other"}, "foo"])
    );
    assert_eq!(out["configs"], json!(["c"]));
}

#[test]
fn environment_and_label_maps_merge_by_key() {
    let out = web(
        "    environment: {A: '1', B: '2', C: '', D: '4', E: '5'}\n    labels: [l1=a, l2=b]\n    deploy: {labels: {d1: a}}\n    sysctls: {x: '1'}\n",
        "    environment: [A=10, B=, C=3, E]\n    labels: {l2: '', l3: c}\n    deploy: {labels: {d2: b}}\n    sysctls: {x: '2'}\n",
    );
    assert_eq!(
        out["environment"],
        json!({"A": "10", "B": "2", "C": "3", "D": "4", "E": "5"}),
        "a blank override keeps the base's value"
    );
    assert_eq!(out["labels"], json!({"l1": "a", "l2": "", "l3": "c"}));
    assert_eq!(out["deploy"]["labels"], json!({"d1": "a", "d2": "b"}));
    assert_eq!(out["sysctls"], json!({"x": "2"}));
    let out = web("    environment: [A]\n", "    environment: [A]\n");
    assert_eq!(out["environment"], json!({"A": null}));
}

#[test]
fn network_attachments_merge_with_the_override_aliases() {
    let out = web(
        "    networks: {a: {aliases: [one]}, b: {aliases: [two]}, c: {aliases: [three]}, d: }\n",
        "    networks: {a: {aliases: [new]}, b: {}, c: , d: {aliases: [four]}, e: }\n",
    );
    assert_eq!(
        out["networks"],
        json!({
            "a": {"aliases": ["new"]},
            "b": {},
            "c": {"aliases": ["three"]},
            "d": {"aliases": ["four"]},
            "e": {},
        })
    );
    let out = web("    networks: [a, b]\n", "    networks: [a, c]\n");
    assert_eq!(out["networks"], json!(["a", "b", "c"]));
    let out = web("    networks: {a: {aliases: [x]}}\n", "    networks: [a]\n");
    assert_eq!(out["networks"], json!({"a": {"aliases": ["x"]}}));
}

#[test]
fn ulimits_merge_by_name_each_replaced() {
    let out = web(
        "    ulimits: {nofile: {soft: 1, hard: 2}, nproc: 3}\n",
        "    ulimits: {nofile: 5, core: {soft: 0, hard: 0}}\n",
    );
    assert_eq!(
        out["ulimits"],
        json!({"nofile": 5, "nproc": 3, "core": {"soft": 0, "hard": 0}})
    );
}

#[test]
fn logging_merges_options_of_one_driver_and_takes_another_whole() {
    let logging = |base: &str, over: &str| {
        web(
            &format!("    logging: {base}\n"),
            &format!("    logging: {over}\n"),
        )["logging"]
            .clone()
    };
    assert_eq!(
        logging(
            "{driver: json-file, options: {frequency: '2000', timeout: '23'}}",
            "{options: {timeout: '360', pretty-print: 'on'}}"
        ),
        json!({"driver": "json-file", "options": {"frequency": "2000", "timeout": "360", "pretty-print": "on"}})
    );
    assert_eq!(
        logging(
            "{driver: json-file, options: {frequency: '2000'}}",
            "{driver: syslog}"
        ),
        json!({"driver": "syslog"})
    );
    assert_eq!(
        logging(
            "{options: {a: '1'}}",
            "{driver: json-file, options: {b: '2'}}"
        ),
        json!({"driver": "json-file", "options": {"a": "1", "b": "2"}})
    );
    assert_eq!(
        logging(
            "{driver: json-file}",
            "{driver: json-file, options: {max-size: 1m}}"
        ),
        json!({"driver": "json-file"}),
        "the CLI drops options the base has no map for"
    );
}

#[test]
fn deploy_sub_maps_merge_field_by_field() {
    let out = web(
        "    deploy:\n      mode: replicated\n      update_config: {parallelism: 2, delay: 5s}\n      restart_policy: {condition: on-failure, max_attempts: 3}\n      resources: {limits: {memory: 64M, cpus: '0.5'}, reservations: {memory: 32M}}\n",
        "    deploy:\n      update_config: {delay: 0s, order: start-first}\n      restart_policy: {max_attempts: 0, window: 10s}\n      resources: {limits: {cpus: '0'}}\n      endpoint_mode: dnsrr\n",
    );
    assert_eq!(
        out["deploy"],
        json!({
            "mode": "replicated",
            "update_config": {"parallelism": 2, "delay": "5s", "order": "start-first"},
            "restart_policy": {"condition": "on-failure", "max_attempts": 3, "window": "10s"},
            "resources": {"limits": {"memory": "64M", "cpus": "0"}, "reservations": {"memory": "32M"}},
            "endpoint_mode": "dnsrr",
        }),
        "cpus is a string to the CLI: a written 0 replaces"
    );
}

#[test]
fn top_level_objects_are_replaced_whole() {
    let out = merged(&[
        "services: {}\nnetworks:\n  hostnet: {driver: overlay, ipam: {config: [{subnet: 10.0.0.0/20}]}}\nvolumes: {data: {driver: local}}\nsecrets: {s: {file: ./a}}\n",
        "services: {}\nnetworks:\n  hostnet: {external: {name: host}}\nsecrets: {s: {external: true}}\nconfigs: {c: {content: x}}\n",
    ]);
    assert_eq!(
        out["networks"],
        json!({"hostnet": {"external": {"name": "host"}}})
    );
    assert_eq!(out["volumes"], json!({"data": {"driver": "local"}}));
    assert_eq!(out["secrets"], json!({"s": {"external": true}}));
    assert_eq!(out["configs"], json!({"c": {"content": "x"}}));
}

#[test]
fn files_of_different_versions_are_refused() {
    let err = merge_layers(vec![
        layer("version: '3.1'\nservices: {}\n"),
        layer("version: '3.4'\nservices: {}\n"),
    ])
    .unwrap_err();
    assert_eq!((err.0, err.1.as_str()), (1, "version"));
    assert!(
        err.2
            .contains("\"3.4\" differs from the first file's \"3.1\""),
        "{}",
        err.2
    );
    let same = merge_layers(vec![
        layer("version: '3'\nservices: {}\n"),
        layer("version: '3.0'\nservices: {}\n"),
    ]);
    assert!(same.is_ok(), "3 is 3.0");
}

#[test]
fn an_unreadable_command_names_its_service_and_field() {
    let err = merge_layers(vec![
        layer("services:\n  web: {command: \"echo 'oops\"}\n"),
        layer("services:\n  web: {command: [x]}\n"),
    ])
    .unwrap_err();
    assert_eq!((err.0, err.1.as_str()), (1, "services.web.command"));
}

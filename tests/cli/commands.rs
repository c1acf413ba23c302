//! The other commands and the binary's settings: `delete`, `describe`, `events`,
//! usage errors, flags from the environment, and an unreachable etcd.

use super::common::Etcd;
use super::{Cli, binary, examples, network, path_str};

#[tokio::test]
async fn delete_describe_events_and_usage_errors() {
    let cli = Cli::new("delete").await;
    let cluster = examples().join("01-cluster.yaml");
    let traefik = examples().join("03-traefik.yaml");
    cli.run(&["apply", "-f", path_str(&cluster), "-f", path_str(&traefik)])
        .expect(0);

    let described = cli.run(&["describe", "STACKS", "traefik"]).expect(0);
    for needle in [
        "Kind:        Stack",
        "Name:        traefik",
        "not observed yet",
        "image: traefik:v2.10",
        "Events: none",
    ] {
        assert!(
            described.stdout.contains(needle),
            "{needle}: {described:#?}"
        );
    }
    let events = cli.run(&["events"]).expect(0);
    assert_eq!(events.lines(), ["Events: none"]);
    cli.run(&["events", "stack/traefik"]).expect(0);

    let run = cli.run(&["delete", "stacks", "traefik"]).expect(0);
    assert_eq!(run.lines(), ["Stack/traefik deleted"]);
    let run = cli.run(&["delete", "Stack", "whoami"]).expect(0);
    assert_eq!(run.lines(), ["Stack/whoami deleted"]);
    let run = cli.run(&["delete", "network", "frontend"]).expect(0);
    assert_eq!(run.lines(), ["Network/frontend deleted"]);
    assert!(cli.record("Stack", "traefik").await.is_none());
    assert!(cli.record("Network", "frontend").await.is_none());

    // The file still names the deleted network: it is reported, not fatal to the rest.
    let run = cli.run(&["delete", "-f", path_str(&cluster)]).expect(1);
    assert_eq!(
        run.lines(),
        [
            "Node/docker04 deleted",
            "Node/docker05 deleted",
            "Network/backend deleted"
        ]
    );
    assert!(
        run.stderr.contains("Network/frontend not found"),
        "{run:#?}"
    );
    assert!(cli.revisions().await.is_empty());

    cli.run(&["delete", "stack", "traefik"]).expect(1);
    for usage in [
        &["delete", "widgets", "x"][..],
        &["get", "widget"],
        &["describe", "gizmo", "x"],
        &["events", "widget/x"],
        &["apply", "--no-such-flag", "-f", path_str(&cluster)],
        &["delete", "stack"],
        &["apply", "-f", path_str(&cluster), "--prune"],
        &["apply", "-f", path_str(&cluster), "--source", "Not A Name"],
        &["apply", "-f", "/no/such/file.yaml"],
        // A zero resync would list every record in a busy loop.
        &["run", "--resync", "0s"],
        &["frobnicate"],
    ] {
        let run = cli.run(usage).expect(64);
        assert!(!run.stderr.is_empty(), "{usage:?} said nothing");
    }
    assert_eq!(cli.raw_entries().await.len(), 0);
}

#[tokio::test]
async fn flags_can_come_from_the_environment() {
    let cli = Cli::new("environment").await;
    let file = cli.write("net.yaml", &network("from-env"));
    let output = binary()
        .env("SWARMKEEPER_ETCD_ENDPOINTS", Etcd::shared().endpoint())
        .env("SWARMKEEPER_PREFIX", cli.store.prefix())
        .env("SWARMKEEPER_SOURCE", "env-source")
        .args(["apply", "-f", path_str(&file)])
        .output()
        .expect("cannot run the swarmkeeper binary");
    assert!(output.status.success(), "{output:?}");
    assert!(cli.record("Network", "from-env").await.is_some());
    let source = cli
        .store
        .get_source("env-source")
        .await
        .expect("cannot read the source")
        .expect("SWARMKEEPER_SOURCE was not recorded");
    assert_eq!(source.records, ["Network/from-env"]);
}

#[tokio::test]
async fn an_unreachable_etcd_fails_with_exit_code_1_naming_it() {
    let cli = Cli::new("unreachable").await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("no free port");
        format!("http://{}", listener.local_addr().expect("bound"))
    };
    let file = cli.write("net.yaml", &network("lost"));
    for args in [&["get"][..], &["apply", "-f", path_str(&file)]] {
        let output = binary()
            .args(["--etcd-endpoints", &dead, "--prefix", cli.store.prefix()])
            .args(args)
            .output()
            .expect("cannot run the swarmkeeper binary");
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&dead), "{args:?}: {stderr}");
    }
}

//! `diff` and `apply --dry-run` through the binary: the records in files
//! against etcd, and what the controller would do to the live swarm, which
//! they only read (etcd revisions, the Docker write counter and the live
//! service versions say so).

use swarmkeeper::api::Kind;
use swarmkeeper::controllers::RecordKey;

use super::common::controllers::{controllers, pass};
use super::common::swarm::{IMAGE, docker, docker_ok, names_with_label, require_swarm_manager};
use super::common::unique_name;
use super::{Cli, network, path_str};

/// Where no dockerd answers.
const NO_DOCKER: (&str, &str) = ("DOCKER_HOST", "unix:///nonexistent/docker.sock");

/// Logs as JSON lines, so the write counter's field reads plainly.
const JSON_LOGS: (&str, &str) = ("SWARMKEEPER_LOG_JSON", "true");
/// What the log line after the live comparison says of the Docker write counter.
const WRITES_0: &str = r#""writes":0"#;

const SKIPPED: &str =
    "What the controller would do in the swarm: live comparison skipped: dockerd unreachable";

#[tokio::test]
async fn diff_shows_created_unchanged_and_changed_fields() {
    let cli = Cli::new("diff").await;
    let applied = cli.write(
        "applied.yaml",
        &format!(
            "{}---\napiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata: {{name: net-changed}}\nspec: {{driver: overlay, attachable: true}}\n",
            network("net-same")
        ),
    );
    cli.run(&["apply", "-f", path_str(&applied)]).expect(0);
    let before = cli.revisions().await;

    let wanted = cli.write(
        "wanted.yaml",
        &format!(
            "{}---\napiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata: {{name: net-changed}}\nspec: {{driver: overlay, attachable: false, labels: {{team: cats}}}}\n---\n{}",
            network("net-same"),
            network("net-new")
        ),
    );
    // Like `drift`: differences are exit code 2 with --exit-code, and not an
    // error without it. Without dockerd only the records count.
    cli.run_env(&[NO_DOCKER], &["diff", "-f", path_str(&wanted)])
        .expect(0);
    let run = cli
        .run_env(
            &[NO_DOCKER],
            &["diff", "--exit-code", "-f", path_str(&wanted)],
        )
        .expect(2);
    let lines = run.lines();
    assert_eq!(lines[0], "Network/net-same unchanged", "{run:#?}");
    assert_eq!(
        lines[1], "Network/net-changed would be configured:",
        "{run:#?}"
    );
    assert!(
        lines.contains(&"  spec.attachable: true -> false"),
        "{run:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  spec.labels") && l.contains("cats")),
        "{run:#?}"
    );
    assert_eq!(lines[lines.len() - 2], "Network/net-new would be created");
    assert!(lines[lines.len() - 1].starts_with(SKIPPED), "{run:#?}");
    assert_eq!(cli.revisions().await, before, "diff wrote to etcd");

    let run = cli
        .run_env(
            &[NO_DOCKER],
            &["diff", "--exit-code", "-f", path_str(&applied)],
        )
        .expect(0);
    assert_eq!(
        run.lines()[..2],
        [
            "Network/net-same unchanged",
            "Network/net-changed unchanged"
        ]
    );
    assert!(run.lines()[2].starts_with(SKIPPED), "{run:#?}");
    // The records are in etcd, but no controller ran: the networks would be created.
    let run = cli
        .run(&["diff", "--exit-code", "-f", path_str(&applied)])
        .expect(2);
    assert_eq!(
        run.lines()[2..],
        [
            "What the controller would do in the swarm:",
            "Network/net-same:",
            "  1. create network net-same",
            "Network/net-changed:",
            "  1. create network net-changed",
        ],
        "{run:#?}"
    );
    // Swarm's own ingress network is not swarmkeeper's: it is never taken over.
    let foreign = cli.write("foreign.yaml", &network("ingress"));
    let run = cli.run(&["diff", "-f", path_str(&foreign)]).expect(0);
    assert!(
        run.stdout.contains(
            "  1. leave network ingress as it is (a network of this name exists that swarmkeeper does not manage"
        ),
        "{run:#?}"
    );
}

/// Removes the services, secrets and networks of a stack when dropped, even on panic.
struct StackGuard(String);

impl StackGuard {
    /// A fresh stack name in a swarm that can run it, and its guard.
    fn new() -> (String, StackGuard) {
        require_swarm_manager();
        let name = format!("skd{:08x}", rand::random::<u32>());
        (name.clone(), StackGuard(name))
    }
}

impl Drop for StackGuard {
    fn drop(&mut self) {
        let label = format!("swarmkeeper.owner=Stack.{}", self.0);
        for object in ["service", "secret", "network"] {
            for name in names_with_label(object, &label) {
                let _ = docker(&[object, "rm", &name]);
            }
        }
    }
}

fn stack(name: &str, services: &str) -> String {
    format!(
        "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {{name: {name}}}\nspec:\n  compose:\n    services:\n{services}"
    )
}

/// A service with no task to start: the plan is the point, not the tasks.
fn service(key: &str, mode: &str) -> String {
    format!(
        "      {key}:\n        image: {IMAGE}\n        command: [sleep, '3600']\n        environment: [MODE={mode}]\n        deploy: {{replicas: 0}}\n"
    )
}

#[tokio::test]
async fn diff_shows_the_plan_against_the_live_stack_and_writes_nothing() {
    let (name, _guard) = StackGuard::new();
    let cli = Cli::new("diff-plan").await;
    let applied = cli.write("applied.yaml", &stack(&name, &service("api", "one")));
    cli.run(&["apply", "-f", path_str(&applied)]).expect(0);
    let controllers = controllers(&cli.store).await;
    pass(&controllers, &[RecordKey::new(Kind::Stack, &name)]).await;
    let api = format!("{name}_api");
    let version = || docker_ok(&["service", "inspect", &api, "--format", "{{.Version.Index}}"]);
    let converged = version();

    let run = cli
        .run(&["diff", "--exit-code", "-f", path_str(&applied)])
        .expect(0);
    assert_eq!(
        run.lines(),
        [
            format!("Stack/{name} unchanged"),
            "What the controller would do in the swarm:".into(),
            format!("Stack/{name}: nothing to do"),
        ],
        "{run:#?}"
    );

    let before = cli.raw_revisions().await;
    let services = format!("{}{}", service("api", "two"), service("worker", "one"));
    let wanted = cli.write("wanted.yaml", &stack(&name, &services));
    let run = cli
        .run_env(
            &[JSON_LOGS],
            &["diff", "--exit-code", "-f", path_str(&wanted)],
        )
        .expect(2);
    let section: Vec<&str> = run
        .lines()
        .into_iter()
        .skip_while(|l| !l.starts_with("What the controller would do"))
        .collect();
    assert_eq!(
        section,
        [
            "What the controller would do in the swarm:".to_string(),
            format!("Stack/{name}:"),
            format!("  1. update service {name}_api"),
            "       services.api.environment[0]: MODE=one -> MODE=two".into(),
            format!("  2. create service {name}_worker"),
        ],
        "{run:#?}"
    );
    // The Docker connection counts its requests: reads only, no write even tried.
    assert!(run.stderr.contains(WRITES_0), "{run:#?}");
    assert!(!run.stderr.contains("write not sent"), "{run:#?}");
    let dry = cli
        .run_env(
            &[JSON_LOGS],
            &["apply", "--dry-run", "-f", path_str(&wanted)],
        )
        .expect(0);
    assert_eq!(
        dry.lines()[0],
        format!("Stack/{name} configured (dry run)"),
        "{dry:#?}"
    );
    assert_eq!(dry.lines()[1..], section, "{dry:#?}");
    assert!(dry.stderr.contains(WRITES_0), "{dry:#?}");

    assert_eq!(cli.raw_revisions().await, before, "diff wrote to etcd");
    assert_eq!(version(), converged, "diff updated the service");
    assert_eq!(
        names_with_label("service", &format!("swarmkeeper.owner=Stack.{name}")),
        [api],
        "diff created a service"
    );
}

#[tokio::test]
async fn a_stack_secret_in_the_files_names_its_version_as_the_controller_does() {
    let (name, _guard) = StackGuard::new();
    let cli = Cli::new("diff-secret").await;
    let canaries = [unique_name("canary-one"), unique_name("canary-two")];
    let services = format!("{}        secrets: [token]\n", service("api", "one"));
    let record = format!(
        "{}    secrets:\n      token:\n        file: ./token.txt\n",
        stack(&name, &services)
    );
    let file = cli.write("stack/stack.yaml", &record);
    cli.write("stack/token.txt", &canaries[0]);
    cli.run(&["apply", "-f", path_str(&file)]).expect(0);
    // The controller as it runs, with the same key: its digest key names the version.
    cli.run(&["run", "--once"]).expect(0);
    let run = cli
        .run(&["diff", "--exit-code", "-f", path_str(&file)])
        .expect(0);
    assert_eq!(
        run.lines()[1..],
        [
            "What the controller would do in the swarm:".to_string(),
            format!("Stack/{name}: nothing to do")
        ],
        "{run:#?}"
    );

    cli.write("stack/token.txt", &canaries[1]);
    let run = cli
        .run(&["diff", "--exit-code", "-f", path_str(&file)])
        .expect(2);
    let section = run
        .stdout
        .split("What the controller would do")
        .nth(1)
        .unwrap_or_default();
    for needle in [
        format!("1. create secret {name}_token.v"),
        format!("2. update service {name}_api"),
        format!("3. remove secret {name}_token.v"),
    ] {
        assert!(section.contains(&needle), "{needle:?} missing: {run:#?}");
    }
    for canary in &canaries {
        assert!(
            !run.stdout.contains(canary.as_str()) && !run.stderr.contains(canary.as_str()),
            "{canary} printed: {run:#?}"
        );
    }
}

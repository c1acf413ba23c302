//! The docker CLI for integration tests: run it, list objects by label, and
//! require a swarm manager (a missing swarm fails the test, it never passes).

use std::process::{Command, Output};

/// The docker CLI of the same release as the daemon (Debian's docker.io).
pub const DOCKER: &str = "/usr/bin/docker";
/// The image tests run; `hack/setup.sh` builds it.
pub const IMAGE: &str = "local/busybox:1";

/// Runs the docker CLI.
pub fn docker(args: &[&str]) -> Output {
    Command::new(DOCKER)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {DOCKER}: {e}: run hack/setup.sh"))
}

/// Runs the docker CLI with extra environment variables and returns its
/// stdout, panicking with its stderr when it fails.
pub fn docker_with_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(DOCKER)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {DOCKER}: {e}: run hack/setup.sh"));
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker stack deploy` of a compose file as `stack`, never resolving images
/// (there is no registry to ask), with `env` for its interpolation.
pub fn stack_deploy(compose: &str, stack: &str, env: &[(&str, &str)]) {
    stack_deploy_files(&[compose], stack, env);
}

/// [`stack_deploy`] of several compose files (`-c a.yml -c b.yml`), which the CLI merges.
pub fn stack_deploy_files(composes: &[&str], stack: &str, env: &[(&str, &str)]) {
    let mut args = vec!["stack", "deploy", "--resolve-image", "never"];
    for compose in composes {
        args.extend(["-c", compose]);
    }
    args.push(stack);
    docker_with_env(&args, env);
}

/// Runs the docker CLI and returns its stdout, trimmed, panicking with its
/// stderr when it fails.
pub fn docker_ok(args: &[&str]) -> String {
    docker_with_env(args, &[]).trim().to_owned()
}

/// Names of the objects of one type (`service`, `secret`, `config`, `network`) with a label, sorted.
pub fn names_with_label(object: &str, label: &str) -> Vec<String> {
    let out = docker_ok(&[
        object,
        "ls",
        "--filter",
        &format!("label={label}"),
        "--format",
        "{{.Name}}",
    ]);
    let mut names: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// Panics unless dockerd is a swarm manager with the test image.
pub fn require_swarm_manager() {
    let info = docker(&[
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&info.stdout).trim(),
        "active true",
        "dockerd is not running as a swarm manager: run hack/setup.sh"
    );
    assert!(
        docker(&["image", "inspect", IMAGE]).status.success(),
        "{IMAGE} is missing: run hack/setup.sh"
    );
}

/// Forwards a unix socket to the real dockerd until aborted: dropping the task drops every
/// proxied connection, which is what a client sees when dockerd goes away.
pub fn proxy_to_dockerd(listener: tokio::net::UnixListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut client, _)) = listener.accept().await {
            connections.spawn(async move {
                let mut daemon = tokio::net::UnixStream::connect("/var/run/docker.sock")
                    .await
                    .expect("dockerd socket");
                let _ = tokio::io::copy_bidirectional(&mut client, &mut daemon).await;
            });
        }
    })
}

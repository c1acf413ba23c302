//! Parity with `docker stack deploy`: the same compose file deployed by swarmkeeper and by
//! the docker CLI gives equal services, networks, secrets and configs, apart from names,
//! IDs, versions and bookkeeping labels (the harness is `common/parity.rs`).
//!
//! Needs a swarm manager (`hack/setup.sh`) and the `local/busybox:1` image.

mod common;

use common::parity::{
    Cleanup, ExternalObjects, Swarmkeeper, alphanumeric_name, assert_parity, assert_parity_sides,
    assert_parity_with, fixture,
};
use common::swarm::{docker_ok, require_swarm_manager};

#[test]
fn web_with_configs_secrets_healthcheck_update_resources_placement() {
    assert_parity("web.yml");
}

#[test]
fn global_agent_with_ulimits_mounts_dns_logging_and_dnsrr() {
    assert_parity("agent.yml");
}

#[test]
fn backend_with_two_networks_legacy_restart_and_partial_policies() {
    assert_parity("backend.yml");
}

#[test]
fn edge_cases_of_yaml_interpolation_units_and_ignored_options() {
    assert_parity("edge.yml");
}

#[test]
fn external_network_secret_and_config_named_by_interpolation() {
    require_swarm_manager();
    let externals = ExternalObjects::create();
    assert_parity_with("external.yml", &[("PARITY_EXTERNAL", &externals.base)]);
}

#[test]
fn templated_config_and_secret_keep_their_template_driver() {
    assert_parity("templated.yml");
}

/// The shell a `wild.yml` deployment runs in: interpolated values, and the values bare or
/// empty `environment` and `env_file` entries take.
const WILD_ENV: &[(&str, &str)] = &[
    ("SHELL_FILLED", "from-shell"),
    ("FROM_SHELL_EMPTY", "shell"),
    ("PARITY_SHELL_ONLY", "shell-only"),
    ("PARITY_TAG", "1.2"),
    ("PARITY_TRUE", "true"),
    ("PARITY_FALSE", "no"),
    ("PARITY_ZERO", "0"),
    ("PARITY_TWO", "2"),
    ("PARITY_RATIO", "0.5"),
];

#[test]
fn env_files_literal_defaults_casts_credential_spec_unused_externals_and_home_binds() {
    assert_parity_with("wild.yml", WILD_ENV);
}

#[test]
fn env_files_of_the_record_give_what_the_cli_takes_from_the_shell() {
    let files = ["wild/base-vars.env", "wild/prod-vars.env"]
        .map(|file| format!("    - {}\n", fixture(file).display()))
        .concat();
    assert_parity_sides(
        "envfiles.yml",
        &[
            ("PARITY_GREETING", "hello from a .env"),
            ("PARITY_WHO", "from-the-shell"),
            ("PARITY_REPLICAS", "0"),
            ("PARITY_RELEASE", "1.1"),
            ("PARITY_TIER", "prod"),
        ],
        &[("PARITY_WHO", "from-the-shell")],
        &format!("  envFiles:\n{files}"),
    );
}

#[test]
fn docker_cli_full_example() {
    require_swarm_manager();
    let externals = ExternalObjects::create();
    assert_parity_with(
        "cli-full-example.yml",
        &[("PARITY_EXTERNAL", &externals.base)],
    );
}

#[test]
fn docker_cli_interpolation_cast_test() {
    require_swarm_manager();
    let externals = ExternalObjects::create();
    assert_parity_with(
        "cli-interpolation-cast.yml",
        &[
            ("PARITY_EXTERNAL", &externals.base),
            ("theint", "555"),
            ("thefloat", "0.5"),
            ("thebool", "true"),
            ("thezero", "0"),
        ],
    );
}

/// `spec.ignoreDifferences`: replicas set by someone else (an autoscaler) are not drift,
/// a pass writes nothing, and an update for another reason keeps them.
#[test]
fn ignored_differences_are_neither_reported_nor_reset() {
    require_swarm_manager();
    let stack = alphanumeric_name("skpi");
    let _cleanup = Cleanup {
        cli: format!("{stack}c"),
        swarmkeeper: stack.clone(),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let compose = dir.path().join("compose.yml");
    let write = |value: &str| {
        let text = format!(
            "services:\n  web:\n    image: local/busybox:1\n    command: [sleep, '3600']\n    environment: {{A: '{value}'}}\n    deploy: {{replicas: 0}}\n"
        );
        std::fs::write(&compose, text).expect("write compose");
    };
    write("1");
    let swarmkeeper = Swarmkeeper::apply_with(
        &stack,
        &compose,
        &[],
        "  ignoreDifferences: [services.web.deploy.replicas]\n",
    );
    swarmkeeper.converge();
    let service = format!("{stack}_web");
    docker_ok(&["service", "update", "--detach", "--replicas", "1", &service]);
    let again = swarmkeeper.converge();
    assert!(again.contains("with 0 writes to dockerd"), "{again}");
    let drift = swarmkeeper.run(&["drift", "--exit-code", "-o", "json"], &[]);
    assert!(!drift.contains("replicas"), "{drift}");

    write("2");
    swarmkeeper.run(&["apply", "-f", &swarmkeeper.record()], &[]);
    swarmkeeper.converge();
    let spec = docker_ok(&[
        "service",
        "inspect",
        &service,
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}} {{json .Spec.TaskTemplate.ContainerSpec.Env}}",
    ]);
    assert_eq!(
        spec, r#"1 ["A=2"]"#,
        "the update kept the replicas set by hand"
    );
}

//! The compose examples every converter test starts from (`KITTENAPI`, `LAB3`,
//! `EVERYTHING`...), the parser as `apply` runs it, and the tests of parsing, validation
//! and ignored keys.

use super::*;

/// The compose parts of the shared examples, as users write them.
pub(crate) const KITTENAPI: &str = r#"
version: '3.8'
services:
  kittenapi:
    image: sirrtea/kittenapi
    environment:
      DATABASE_URI_FILE: /run/secrets/kittenapi_db_uri
    secrets:
      - kittenapi_db_uri
    networks:
      - frontend
      - backend
    deploy:
      replicas: 2
      labels:
        traefik.http.routers.kittenapi.rule: Host(`kittenapi.example.com`)
        traefik.http.services.kittenapi.loadbalancer.server.port: "8080"
        traefik.enable: "true"
      placement:
        constraints:
          - node.labels.usage == apps
networks:
  frontend:
    external: true
  backend:
    external: true
secrets:
  kittenapi_db_uri:
    external: true
"#;

pub(crate) const TRAEFIK: &str = r#"
version: '3.2'
services:
  traefik:
    image: traefik:v2.10
    command: --api.insecure=true --providers.docker --providers.docker.swarmMode --providers.docker.exposedbydefault=false
    ports:
      - target: 80
        published: 80
        protocol: tcp
        mode: host
      - target: 8080
        published: 8080
        protocol: tcp
        mode: host
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
    networks:
      - frontend
    deploy:
      mode: global
      placement:
        constraints:
          - node.role == manager
networks:
  frontend:
    external: true
"#;

pub(crate) const WHOAMI: &str = r#"
version: '3'
services:
  whoami:
    image: emilevauge/whoami
    networks:
      - frontend
    deploy:
      replicas: 4
      labels:
        traefik.http.routers.whoami.rule: Host(`whoami.docker.localhost`)
        traefik.http.services.whoami.loadbalancer.server.port: "80"
        traefik.enable: "true"
networks:
  frontend:
    external: true
"#;

pub(crate) const LAB3: &str = r#"
version: '3.8'
services:
  gateway:
    image: mobylab/cc-laborator3-gateway
    environment:
      BOOKS_SERVICE_API_ROUTE: books-service/api
      NODE_ENV: development
    ports:
      - "3000:80"
    networks: [gateway-books]
    deploy:
      replicas: 3
      placement:
        max_replicas_per_node: 2
  books-service:
    image: mobylab/cc-laborator3-books
    environment:
      IO_SERVICE_API_ROUTE: io-service/api
      NODE_ENV: development
    networks: [gateway-books, books-io]
    deploy:
      replicas: 2
      placement:
        max_replicas_per_node: 1
  io-service:
    image: mobylab/cc-laborator3-io
    environment:
      PGUSER_FILE: db_user
      PGPASSWORD_FILE: db_password
      PGHOST: db
      PGPORT: "5432"
      PGDATABASE: books
      NODE_ENV: staging
    secrets: [db_user, db_password]
    networks: [books-io, io-db]
    deploy:
      replicas: 3
      resources:
        limits:
          cpus: "0.2"
          memory: 50M
      restart_policy:
        condition: on-failure
  db:
    image: postgres:12
    environment:
      POSTGRES_DB: books
      POSTGRES_USER_FILE: /run/secrets/db_user
      POSTGRES_PASSWORD_FILE: /run/secrets/db_password
    secrets: [db_user, db_password]
    volumes:
      - db-data:/var/lib/postgresql/data
      - ./database/init-db.sql:/docker-entrypoint-initdb.d/init-db.sql
    networks: [io-db, db-adminer]
  adminer:
    image: adminer
    ports:
      - "8080:8080"
    networks: [db-adminer]
volumes:
  db-data: {}
networks:
  gateway-books: {}
  books-io: {}
  io-db: {}
  db-adminer: {}
secrets:
  db_user:
    external: true
  db_password:
    external: true
"#;

/// Every key swarm honours, in both spellings where there are two.
pub(crate) const EVERYTHING: &str = r#"
version: "3.13"
x-common: &common
  TZ: UTC
services:
  web:
    image: local/busybox:1
    x-note: ignored
    command: ["sh", "-c", "sleep 1000"]
    entrypoint: /bin/sh -c
    environment:
      <<: *common
      PORT: 8080
      DEBUG: true
      EMPTY:
    labels: ["com.example.a=1", "com.example.b"]
    ports:
      - "3000:80"
      - "8080:80/udp"
      - 9000
      - target: 443
        published: 8443
        protocol: tcp
        mode: host
    networks:
      front:
        aliases: [www]
      back: {}
    volumes:
      - data:/data:ro
      - /etc/hosts:/host/hosts:ro
      - type: volume
        source: data
        target: /other
        volume: {nocopy: true}
      - type: bind
        source: /tmp
        target: /tmp2
        bind: {propagation: rshared}
      - type: tmpfs
        target: /scratch
        tmpfs: {size: 1048576}
    secrets:
      - token
      - source: token
        target: /etc/token
        uid: "100"
        gid: "101"
        mode: 0400
    configs:
      - app_conf
      - source: app_conf
        target: /etc/app.conf
    healthcheck:
      test: ["CMD", "true"]
      interval: 10s
      timeout: 1m30s
      retries: 3
      start_period: 1.5s
    hostname: web1
    user: "1000:1000"
    working_dir: /srv
    stop_grace_period: 20s
    stop_signal: SIGINT
    init: true
    read_only: true
    cap_add: [net_admin]
    cap_drop: [ALL]
    sysctls:
      net.core.somaxconn: 1024
    ulimits:
      nproc: 65535
      nofile: {soft: 20000, hard: 40000}
    extra_hosts:
      - "somehost:162.242.195.82"
      - "otherhost=50.31.209.229"
    dns: 8.8.8.8
    dns_search: [example.com]
    logging:
      driver: json-file
      options: {max-size: 10m, max-file: 3}
    tty: true
    stdin_open: true
    deploy:
      mode: replicated
      replicas: 2
      endpoint_mode: dnsrr
      labels: {team: cats}
      placement:
        constraints: [node.role == worker]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 1
      resources:
        limits: {cpus: 0.5, memory: 50M, pids: 100}
        reservations:
          cpus: '0.25'
          memory: 20M
          generic_resources:
            - discrete_resource_spec: {kind: gpu, value: 2}
      restart_policy:
        condition: on-failure
        delay: 5s
        max_attempts: 3
        window: 2m
      update_config:
        parallelism: 2
        delay: 10s
        order: start-first
      rollback_config:
        failure_action: continue
        monitor: 30s
        max_failure_ratio: 0.5
  job:
    image: local/busybox:1
    build: .
    depends_on: [web]
    container_name: thejob
    restart: on-failure:3
    expose: ["80"]
    privileged: true
    deploy:
      mode: global-job
networks:
  front:
    driver: overlay
    attachable: true
    driver_opts: {encrypted: ""}
    labels: [a=b]
    ipam:
      config: [{subnet: 10.77.0.0/24}]
  back:
    name: shared-back
    external: true
volumes:
  data:
    driver: local
    labels: {kind: data}
secrets:
  token:
    x-swarmkeeper-secret: stacks/demo/token
configs:
  app_conf:
    content: "listen 80\n"
    template_driver: golang
"#;

/// Reads a compose file as `apply` does: the hardened YAML loader (budgets against
/// alias bombs, `0440` octal and `yes` a string as in the docker CLI), then the
/// typed pass.
fn try_parse(text: &str) -> Result<ComposeFile, String> {
    let mut documents = crate::api::load::parse_documents(text, false)?;
    if documents.len() != 1 {
        return Err(format!("{} documents, not one", documents.len()));
    }
    ComposeFile::from_value(documents.remove(0), "").map_err(|err| err.to_string())
}

pub(crate) fn parse(text: &str) -> ComposeFile {
    try_parse(text).unwrap_or_else(|e| panic!("parse failed: {e}"))
}

#[test]
fn the_examples_parse_and_validate() {
    for text in [KITTENAPI, TRAEFIK, WHOAMI, LAB3, EVERYTHING] {
        let compose = parse(text);
        assert_eq!(compose.validate("spec.compose"), vec![]);
    }
    let lab3 = parse(LAB3);
    assert_eq!(lab3.services.len(), 5);
    let io = &lab3.services["io-service"];
    let limits = io
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.limits.as_ref())
        .unwrap();
    assert_eq!(
        limits.memory.as_ref().map(ByteSize::bytes),
        Some(52_428_800)
    );
    assert_eq!(limits.cpus.as_ref().map(Cpus::nanos), Some(200_000_000));
}

#[test]
fn serialization_round_trips() {
    for text in [KITTENAPI, TRAEFIK, LAB3, EVERYTHING] {
        let compose = parse(text);
        let json = serde_json::to_value(&compose).unwrap();
        let back: ComposeFile = serde_json::from_value(json).unwrap();
        assert_eq!(back, compose);
    }
}

#[test]
fn extension_keys_are_dropped_but_labels_keep_x_keys() {
    let compose = parse(
        "x-top: 1\nservices:\n  a:\n    image: i\n    x-s: 2\n    labels: {x-keep: v}\n    deploy: {x-d: 3}\n",
    );
    let labels = compose.services["a"]
        .labels
        .as_ref()
        .unwrap()
        .to_string_map();
    assert_eq!(labels.get("x-keep").map(String::as_str), Some("v"));
}

#[test]
fn unknown_keys_are_errors_naming_the_path() {
    let cases = [
        ("servics: {}\n", "servics"),
        ("services:\n  web:\n    imag: x\n", "services.web"),
        (
            "services:\n  web:\n    image: x\n    deploy: {replica: 2}\n",
            "services.web.deploy",
        ),
        (
            "services:\n  web:\n    image: x\n    ports: [{target: 80, publised: 1}]\n",
            "publised",
        ),
        (
            "services:\n  web:\n    image: x\n    stop_grace_period: 10\n",
            "services.web.stop_grace_period",
        ),
        (
            "services:\n  web:\n    image: x\n    healthcheck: {interval: 10x}\n",
            "services.web.healthcheck.interval",
        ),
        (
            "services:\n  web:\n    image: x\n    deploy: {resources: {limits: {memory: lots}}}\n",
            "services.web.deploy.resources.limits.memory",
        ),
        (
            "services:\n  web:\n    image: x\n    deploy: {mode: everywhere}\n",
            "services.web.deploy.mode",
        ),
        (
            "services:\n  web:\n    image: x\n    mem_limit: 1g\n",
            "services.web.mem_limit: mem_limit is not supported by docker stack deploy: set resource limits under deploy.resources",
        ),
    ];
    for (text, needle) in cases {
        let err = try_parse(text).expect_err(text);
        assert!(err.contains(needle), "{text}: {err}");
    }
}

fn errors_of(text: &str) -> Vec<String> {
    parse(text)
        .validate("spec.compose")
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn validation_names_the_field() {
    let cases = [
        (
            "services:\n  web:\n    image: x\n    networks: [nope]\n",
            "spec.compose.services.web.networks[0]: service \"web\" refers to undefined network \"nope\"",
        ),
        (
            "services:\n  web:\n    image: x\n    networks: {nope: {}}\n",
            "spec.compose.services.web.networks.nope:",
        ),
        (
            "services:\n  web:\n    image: x\n    secrets: [s]\n",
            "spec.compose.services.web.secrets[0]: service \"web\" refers to undefined secret \"s\"",
        ),
        (
            "services:\n  web:\n    image: x\n    configs: [{source: c}]\n",
            "spec.compose.services.web.configs[0]:",
        ),
        (
            "services:\n  web:\n    image: x\n    volumes: [data:/d]\n",
            "spec.compose.services.web.volumes[0]: undefined volume \"data\"",
        ),
        ("services:\n  web: {}\n", "spec.compose.services.web.image:"),
        (
            "services:\n  web:\n    image: x\n    deploy: {mode: global, replicas: 2}\n",
            "spec.compose.services.web.deploy.replicas:",
        ),
        (
            "services:\n  web:\n    image: x\n    ports: ['70000:80']\n",
            "spec.compose.services.web.ports[0]:",
        ),
        (
            "services:\n  web:\n    image: x\n    env_file: .env\n",
            "spec.compose.services.web.env_file: env_file is read by `swarmkeeper apply`",
        ),
        (
            "services:\n  web:\n    image: x\n    credential_spec: {config: nope}\n",
            "spec.compose.services.web.credential_spec.config: service \"web\" refers to undefined config \"nope\"",
        ),
        (
            "services:\n  web:\n    image: x\n    volumes: [{type: tmpfs, source: x, target: /t}]\n",
            "invalid tmpfs source",
        ),
        (
            "services:\n  web:\n    image: x\n    volumes: [{type: bind, source: /x, target: /t, volume: {nocopy: true}}]\n",
            "spec.compose.services.web.volumes[0].volume: volume options are incompatible",
        ),
        (
            "services:\n  web:\n    image: x\n    healthcheck: {test: [CMD, 'true'], disable: true}\n",
            "test and disable",
        ),
        (
            "services:\n  web:\n    image: x\n    restart: sometimes\n",
            "spec.compose.services.web.restart:",
        ),
        (
            "services:\n  web:\n    image: x\nsecrets:\n  s: {}\n",
            "spec.compose.secrets.s:",
        ),
        (
            "services:\n  web:\n    image: x\nvolumes:\n  v: {external: true, driver: local}\n",
            "spec.compose.volumes.v.driver:",
        ),
        ("version: '2.4'\nservices: {}\n", "spec.compose.version:"),
    ];
    for (text, needle) in cases {
        let errors = errors_of(text);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{text}: {errors:?}"
        );
    }
}

#[test]
fn the_default_network_needs_no_definition() {
    assert!(errors_of("services:\n  web:\n    image: x\n    networks: [default]\n").is_empty());
}

#[test]
fn ignored_keys_are_listed_as_the_cli_warns() {
    let compose = parse(EVERYTHING);
    let keys: Vec<String> = compose
        .ignored_keys()
        .iter()
        .flat_map(|k| k.paths.clone())
        .collect();
    assert_eq!(
        keys,
        vec![
            "services.job.build",
            "services.job.container_name",
            "services.job.depends_on",
            "services.job.expose",
            "services.job.privileged",
            "services.job.restart",
        ]
    );
}

#[test]
fn each_ignored_key_is_one_warning_naming_every_service_that_uses_it() {
    let compose = parse(
        "name: app\nservices:\n  a:\n    image: x\n    profiles: [debug]\n    depends_on: {b: {condition: service_healthy}}\n  b:\n    image: x\n    profiles: [debug]\n    pull_policy: always\n    platform: linux/amd64\n    networks: {n: {ipv4_address: 10.0.0.2}}\nnetworks:\n  n: {}\n",
    );
    let warnings: Vec<String> = compose
        .ignored_keys()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        warnings,
        [
            "services.a.depends_on: ignored (swarm starts services in no order: a service must wait for what it needs)",
            "services.b.networks.n.ipv4_address: ignored (swarm assigns addresses from the network's pool)",
            "name: ignored (the stack is named by the record's metadata.name)",
            "services.b.platform: ignored (swarm schedules by placement constraints: use node.platform.os/arch)",
            "services.a.profiles, services.b.profiles: ignored (docker stack deploy has no profiles: every service is deployed)",
            "services.b.pull_policy: ignored (each node pulls the image when it has not got it)",
        ]
    );
}

#[test]
fn enum_names_match_their_serde_spelling() {
    for mode in [
        DeployMode::Replicated,
        DeployMode::Global,
        DeployMode::ReplicatedJob,
        DeployMode::GlobalJob,
    ] {
        assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
    }
    for order in [UpdateOrder::StartFirst, UpdateOrder::StopFirst] {
        assert_eq!(serde_json::to_value(order).unwrap(), order.as_str());
    }
    for condition in [
        RestartCondition::None,
        RestartCondition::OnFailure,
        RestartCondition::Any,
    ] {
        assert_eq!(serde_json::to_value(condition).unwrap(), condition.as_str());
    }
}

#[test]
fn schema_generates() {
    let schema = schemars::schema_for!(ComposeFile);
    let text = serde_json::to_string(&schema).unwrap();
    assert!(text.contains("max_replicas_per_node"));
    assert!(text.contains("x-swarmkeeper-secret"));
}

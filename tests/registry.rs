//! The Registry controller through the binary, against the real swarm and
//! the real registry (`local/registry:2`): the record deploys a registry with
//! htpasswd auth on a free port, `registry login` lets the docker CLI push to
//! it, a stack pulls from it with the auth the operator sends and pinned to
//! the pushed digest, a moved tag is drift and an update, a rotated password
//! rolls the registry, a registry that does not answer stops nothing, and the
//! credentials show nowhere. One registry serves the whole test: its task
//! really runs, which is what costs time.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use common::Etcd;
use common::http::free_port;
use common::swarm::{docker, docker_ok, names_with_label, require_swarm_manager};
use swarmkeeper::store::Store;

/// Panics unless `local/registry:2` has the shell and `nc` its health check runs
/// (`hack/setup.sh` builds it with busybox; an older build has neither).
fn require_registry_image() {
    let probe = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
        "local/registry:2",
        "-c",
        "command -v nc",
    ]);
    assert!(
        probe.status.success(),
        "local/registry:2 has no shell or nc for its health check: run hack/setup.sh"
    );
}

/// Removes what the test's records own, its images and the registry's volume.
struct Guard {
    name: String,
    port: u16,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let name = &self.name;
        for owner in [format!("Registry.{name}"), format!("Stack.{name}")] {
            let label = format!("swarmkeeper.owner={owner}");
            for service in names_with_label("service", &label) {
                let _ = docker(&["service", "rm", &service]);
            }
        }
        let secrets = ["pw", "crt", "key"].map(|s| format!("Secret.{name}-{s}"));
        for owner in std::iter::once(format!("Registry.{name}")).chain(secrets) {
            let label = format!("swarmkeeper.owner={owner}");
            for object in ["secret", "config"] {
                for found in names_with_label(object, &label) {
                    let _ = docker(&[object, "rm", &found]);
                }
            }
        }
        let images = docker(&[
            "image",
            "ls",
            "--quiet",
            &format!("127.0.0.1:{}/{name}/*", self.port),
        ]);
        let mut ids: Vec<String> = String::from_utf8_lossy(&images.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        ids.dedup();
        for id in ids {
            let _ = docker(&["image", "rm", "-f", &id]);
        }
        // The registry's container goes a moment after its service.
        for _ in 0..20 {
            let volume = format!("{name}-data");
            let gone = docker(&["volume", "inspect", &volume]);
            if !gone.status.success() || docker(&["volume", "rm", &volume]).status.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

struct Env {
    store: Store,
    dir: tempfile::TempDir,
    /// Everything the binary printed, for the canary.
    seen: std::cell::RefCell<String>,
}

impl Env {
    fn key(&self) -> PathBuf {
        self.dir.path().join("secret.key")
    }

    fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker")
    }

    fn run(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_swarmkeeper"))
            .args(["--etcd-endpoints", &Etcd::shared().endpoint()])
            .args(["--prefix", self.store.prefix()])
            .args(["--secret-key-file", self.key().to_str().unwrap()])
            .args(args)
            .env("RUST_LOG", "debug")
            .env("DOCKER_CONFIG", self.docker_config())
            .output()
            .expect("the binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // What `secret reveal` prints is the value itself; everything else must not hold it.
        let shown = if args.first() == Some(&"secret") {
            ""
        } else {
            &stdout
        };
        self.seen
            .borrow_mut()
            .push_str(&format!("{shown}\n{stderr}\n"));
        (out.status.code().unwrap_or(-1), stdout)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, stdout) = self.run(args);
        assert_eq!(code, 0, "{args:?}:\n{stdout}");
        stdout
    }

    fn apply(&self, file: &str, yaml: &str) {
        let path = self.dir.path().join(file);
        std::fs::write(&path, yaml).unwrap();
        self.ok(&["apply", "-f", path.to_str().unwrap()]);
    }

    /// `run --once` until a line of its output starts with each of `want`; the last output.
    fn converge(&self, want: &[&str]) -> String {
        let mut last = String::new();
        for _ in 0..40 {
            last = self.run(&["run", "--once"]).1;
            if want.iter().all(|w| last.lines().any(|l| l.starts_with(w))) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("never reached {want:?}; last pass:\n{last}");
    }
}

/// The status code of `GET /v2/` on the registry, with Basic credentials if given.
fn v2(port: u16, basic: Option<(&str, &str)>) -> u16 {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("the registry listens");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = basic
        .map(|(u, p)| {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Authorization: Basic {token}\r\n")
        })
        .unwrap_or_default();
    write!(
        conn,
        "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Builds an image distinct from every other (a label says which) under `tag`.
fn build(tag: &str, variant: &str) {
    let mut child = Command::new("/usr/bin/docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("docker build runs");
    write!(
        child.stdin.take().unwrap(),
        "FROM local/busybox:1\nLABEL swarmkeeper.test={variant}\n"
    )
    .unwrap();
    assert!(child.wait().unwrap().success(), "docker build {tag}");
}

/// `docker push` with the client config in `config`: the digest pushed, or the error.
fn push(config: &Path, tag: &str) -> Result<String, String> {
    let out = Command::new("/usr/bin/docker")
        .args(["--config", config.to_str().unwrap(), "push", tag])
        .output()
        .expect("docker push runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(text);
    }
    let digest = text
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in {text}"));
    Ok(digest.to_owned())
}

fn service_image(service: &str) -> String {
    docker_ok(&[
        "service",
        "inspect",
        service,
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
    ])
}

fn mounted_secrets(service: &str) -> String {
    docker_ok(&[
        "service",
        "inspect",
        service,
        "--format",
        "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}{{end}}",
    ])
}

fn registry_yaml(name: &str, port: u16, credentials: bool) -> String {
    let credentials = if credentials {
        format!("  credentials: {{username: ci, passwordSecret: {name}-pw}}\n")
    } else {
        String::new()
    };
    format!(
        "apiVersion: swarmkeeper.dev/v1alpha1
kind: Registry
metadata: {{name: {name}}}
spec:
  address: 127.0.0.1:{port}
  deploy:
    image: local/registry:2
    port: {port}
    volume: {name}-data
    placement: {{constraints: [node.role == manager]}}
    users: [{{name: ci, passwordSecret: {name}-pw}}]
{credentials}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_serves_stacks_with_auth_and_pinned_digests() {
    require_swarm_manager();
    require_registry_image();
    let name = common::unique_name("reg");
    let port = free_port();
    let guard = Guard {
        name: name.clone(),
        port,
    };
    let env = Env {
        store: Etcd::shared().store("registry").await,
        dir: tempfile::tempdir().unwrap(),
        seen: Default::default(),
    };
    std::fs::write(env.key(), rand::random::<[u8; 32]>()).unwrap();
    let secret = |rotation: u32| {
        format!(
            "apiVersion: swarmkeeper.dev/v1alpha1
kind: Secret
metadata: {{name: {name}-pw}}
spec: {{generate: {{length: 24}}, rotation: {rotation}}}
"
        )
    };
    env.apply("secret.yaml", &secret(0));
    env.apply("registry.yaml", &registry_yaml(&name, port, true));
    env.converge(&[&format!("Registry/{name}: Ready")]);

    // The registry wants credentials; the generated ones work, through `registry login`.
    let password = env.ok(&["secret", "reveal", &format!("{name}-pw")]);
    let password = password.trim_end().to_owned();
    assert_eq!(v2(port, None), 401);
    assert_eq!(v2(port, Some(("ci", "not-the-password"))), 401);
    assert_eq!(v2(port, Some(("ci", &password))), 200);
    let app = format!("127.0.0.1:{port}/{name}/app:1");
    build(&app, &format!("{name}-1"));
    let anonymous = env.dir.path().join("anonymous");
    std::fs::create_dir_all(&anonymous).unwrap();
    push(&anonymous, &app).expect_err("an anonymous push is refused");
    let login = env.ok(&["registry", "login", &name]);
    assert!(login.contains(&format!("127.0.0.1:{port}")), "{login}");
    let first = push(&env.docker_config(), &app).expect("an authenticated push");
    let _ = docker(&["image", "rm", &app]);

    // A stack pulls it, pinned to the pushed digest, with the auth the operator sends.
    let stack = format!(
        "apiVersion: swarmkeeper.dev/v1alpha1
kind: Stack
metadata: {{name: {name}}}
spec:
  compose:
    version: '3.8'
    services:
      app:
        image: {app}
        command: [sleep, '3600']
"
    );
    env.apply("stack.yaml", &stack);
    let service = format!("{name}_app");
    env.converge(&[&format!("Stack/{name}: Ready")]);
    assert_eq!(service_image(&service), format!("{app}@{first}"));
    let pulled = docker(&["image", "inspect", &format!("{app}@{first}")]);
    assert!(pulled.status.success(), "the task's image was not pulled");
    let describe = env.ok(&["describe", "registry", &name]);
    assert!(describe.contains(&format!("pull/{service}")), "{describe}");

    // A converged pass changes nothing: no service is updated, no etcd key written.
    let version = |s: &str| docker_ok(&["service", "inspect", s, "--format", "{{.Version.Index}}"]);
    let registry_service = format!("registry-{name}");
    // The pass that saw the stack become Ready ran after the Registry's, whose
    // status lists the stack's tasks: one more pass settles it.
    env.ok(&["run", "--once"]);
    let owned = || {
        let label = format!("swarmkeeper.owner=Registry.{name}");
        (
            names_with_label("secret", &label),
            names_with_label("config", &label),
        )
    };
    let before = (version(&service), version(&registry_service), owned());
    let written = common::http::last_write(&env.store, Some("leader")).await;
    env.ok(&["run", "--once"]);
    assert_eq!(
        (version(&service), version(&registry_service), owned()),
        before
    );
    assert_eq!(
        common::http::last_write(&env.store, Some("leader")).await,
        written
    );

    // The tag moves: drift shows the image, the next pass pins the new digest.
    build(&app, &format!("{name}-2"));
    let second = push(&env.docker_config(), &app).unwrap();
    let _ = docker(&["image", "rm", &app]);
    assert_ne!(second, first);
    let (code, report) = env.run(&["drift", "stack", &name, "--exit-code", "-o", "json"]);
    assert_eq!(code, 2, "{report}");
    assert!(
        report.contains("image") && report.contains(&second),
        "{report}"
    );
    env.converge(&[&format!("Stack/{name}: Ready")]);
    assert_eq!(service_image(&service), format!("{app}@{second}"));

    // Rotation: a new htpasswd version the registry rolls to; the old password is refused.
    let htpasswd = mounted_secrets(&registry_service);
    env.apply("secret.yaml", &secret(1));
    env.converge(&[&format!("Registry/{name}: Ready")]);
    assert_ne!(mounted_secrets(&registry_service), htpasswd);
    let rotated = env.ok(&["secret", "reveal", &format!("{name}-pw")]);
    let rotated = rotated.trim_end().to_owned();
    assert_ne!(rotated, password);
    assert_eq!(v2(port, Some(("ci", &password))), 401);
    assert_eq!(v2(port, Some(("ci", &rotated))), 200);
    // The stack's next update pulls with the new password.
    env.ok(&["registry", "login", &name]);
    build(&app, &format!("{name}-3"));
    let third = push(&env.docker_config(), &app).unwrap();
    let _ = docker(&["image", "rm", &app]);
    env.converge(&[&format!("Stack/{name}: Ready")]);
    assert_eq!(service_image(&service), format!("{app}@{third}"));

    // The port closed by hand: the stack keeps its digest and converges, the Registry is Degraded.
    docker_ok(&[
        "service",
        "scale",
        "--detach",
        &format!("{registry_service}=0"),
    ]);
    for _ in 0..40 {
        if v2_closed(port) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, closed) = env.run(&["run", "--once"]);
    assert!(
        closed.contains(&format!("Registry/{name}: Degraded")),
        "{closed}"
    );
    assert!(closed.contains(&format!("Stack/{name}: Ready")), "{closed}");
    assert_eq!(service_image(&service), format!("{app}@{third}"));
    env.converge(&[&format!("Registry/{name}: Ready")]);

    // Without credentials the stack's new task cannot pull, and its status says why.
    env.apply("registry.yaml", &registry_yaml(&name, port, false));
    // The local copy is by digest; the new task must pull the tag, anonymously.
    docker_ok(&["service", "rm", &service]);
    let mut status = String::new();
    for _ in 0..40 {
        env.run(&["run", "--once"]);
        status = env.ok(&["get", "stack", &name, "-o", "json"]);
        if status.contains("last task error") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(status.contains("last task error"), "{status}");
    assert!(!status.contains("\"Ready\""), "{status}");

    // The credentials never show: not in logs, events, status, drift or the services.
    env.ok(&["drift", "-o", "json"]);
    env.ok(&["events"]);
    env.ok(&["get", "registry", &name, "-o", "json"]);
    let mut seen = env.seen.borrow().clone();
    for s in [&registry_service, &service] {
        seen.push_str(&String::from_utf8_lossy(
            &docker(&["service", "inspect", s]).stdout,
        ));
    }
    for canary in [&password, &rotated] {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("ci:{canary}"));
        assert!(!seen.contains(canary.as_str()), "a password leaked");
        assert!(!seen.contains(&basic), "an auth header leaked");
    }
    drop(guard);
}

/// Whether nothing listens on the registry's port any more.
fn v2_closed(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_with_tls_answers_over_https_with_its_certificate() {
    require_swarm_manager();
    require_registry_image();
    let name = common::unique_name("regtls");
    let port = free_port();
    let guard = Guard {
        name: name.clone(),
        port,
    };
    let env = Env {
        store: Etcd::shared().store("registry-tls").await,
        dir: tempfile::tempdir().unwrap(),
        seen: Default::default(),
    };
    std::fs::write(env.key(), rand::random::<[u8; 32]>()).unwrap();
    let dir = env.dir.path();
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // A server certificate, not a CA: it is its own trust anchor.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    let indented = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .unwrap()
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    };
    let records = format!(
        "apiVersion: swarmkeeper.dev/v1alpha1
kind: Secret
metadata: {{name: {name}-crt}}
spec:
  value:
    literal: |
{cert}---
apiVersion: swarmkeeper.dev/v1alpha1
kind: Secret
metadata: {{name: {name}-key}}
spec:
  value:
    literal: |
{key}---
apiVersion: swarmkeeper.dev/v1alpha1
kind: Registry
metadata: {{name: {name}}}
spec:
  address: 127.0.0.1:{port}
  deploy:
    image: local/registry:2
    port: {port}
    tls: {{certificateSecret: {name}-crt, keySecret: {name}-key}}
",
        cert = indented("cert.pem"),
        key = indented("key.pem"),
    );
    env.apply("tls.yaml", &records);
    // Ready only once `GET /v2/` answered over HTTPS, trusting the record's certificate.
    env.converge(&[&format!("Registry/{name}: Ready")]);
    assert_eq!(v2(port, None), 400, "plain HTTP to the TLS port");
    let key = std::fs::read_to_string(dir.join("key.pem")).unwrap();
    let body = key.lines().nth(1).unwrap();
    assert!(!env.seen.borrow().contains(body), "the TLS key leaked");
    drop(guard);
}

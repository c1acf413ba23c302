//! What the GitOps tests share: a local bare Git repository with a work
//! clone, the `swarmkeeper` binary on the test's prefix, tiny HTTP servers
//! (a notification receiver, one that never answers, a Git server that asks
//! for credentials), and a guard that removes the swarm objects of the test's
//! records.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use swarmkeeper::docker::labels::OWNER;
use swarmkeeper::store::Store;

use crate::common::Etcd;
use crate::common::swarm::{docker, names_with_label};

/// A bare repository (the "remote") and a clone commits are made in.
pub struct Repo {
    dir: tempfile::TempDir,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=swarmkeeper-test",
            "-c",
            "user.email=test@swarmkeeper.invalid",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .expect("git runs (hack/setup.sh installs it)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Repo {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("swarmkeeper-git-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("work")).expect("work dir");
        git(dir.path(), &["init", "--quiet", "--bare", "remote.git"]);
        let work = dir.path().join("work");
        git(&work, &["init", "--quiet"]);
        let url = format!("file://{}/remote.git", dir.path().display());
        git(&work, &["remote", "add", "origin", &url]);
        Self { dir }
    }

    pub fn url(&self) -> String {
        format!("file://{}/remote.git", self.dir.path().display())
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Writes `files` (path, content; empty content removes the file),
    /// commits, pushes to `main` and returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let path = self.work().join(path);
            if content.is_empty() {
                let _ = std::fs::remove_file(&path);
            } else {
                std::fs::create_dir_all(path.parent().expect("a folder")).expect("folder");
                std::fs::write(&path, content).expect("write");
            }
        }
        git(&self.work(), &["add", "-A"]);
        git(&self.work(), &["commit", "--quiet", "-m", message]);
        self.push()
    }

    /// Reverts the last commit, pushes, and returns the revert's id.
    pub fn revert_last(&self) -> String {
        git(&self.work(), &["revert", "--no-edit", "HEAD"]);
        self.push()
    }

    fn push(&self) -> String {
        git(&self.work(), &["push", "--quiet", "origin", "HEAD:main"]);
        git(&self.work(), &["rev-parse", "HEAD"])
    }
}

/// A Stack of one busybox service with no replica: the control plane is the
/// point, not tasks. `version` goes into its environment.
pub fn stack_yaml(name: &str, version: &str) -> String {
    format!(
        r#"apiVersion: swarmkeeper.dev/v1alpha1
kind: Stack
metadata:
  name: {name}
spec:
  compose:
    services:
      web:
        image: local/busybox:1
        command: ["sleep", "3600"]
        environment:
          VERSION: "{version}"
        deploy:
          replicas: 0
"#
    )
}

/// A Network record (no swarm object is made unless a controller runs).
pub fn network_yaml(name: &str) -> String {
    format!(
        "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: {name}\nspec:\n  driver: overlay\n"
    )
}

/// The binary on the shared etcd under `store`'s prefix, without the runner's `SWARMKEEPER_*`.
pub fn swarmkeeper(store: &Store) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmkeeper"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SWARMKEEPER_") {
            command.env_remove(name);
        }
    }
    // Debug logs too must never show a credential.
    command
        .env("RUST_LOG", "debug")
        .args(["--etcd-endpoints", &Etcd::shared().endpoint()])
        .args(["--prefix", store.prefix()]);
    command
}

/// Runs the binary to its end: exit code and stdout + stderr.
pub fn run(store: &Store, args: &[&str]) -> (i32, String) {
    let out: Output = swarmkeeper(store)
        .args(args)
        .output()
        .expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().expect("not killed"), text)
}

/// Runs the binary to its end: exit code and stdout alone.
pub fn stdout(store: &Store, args: &[&str]) -> (i32, String) {
    let out: Output = swarmkeeper(store)
        .args(args)
        .output()
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().expect("not killed"), text)
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes the swarm objects of the test's Stack and Network records, even when it fails.
pub struct Guard(pub Vec<String>);

impl Drop for Guard {
    fn drop(&mut self) {
        for owner in &self.0 {
            let label = format!("{OWNER}={owner}");
            for object in ["service", "secret", "config", "network"] {
                for name in names_with_label(object, &label) {
                    let _ = docker(&[object, "rm", &name]);
                }
            }
        }
    }
}

/// One HTTP request as a test server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub head: String,
    pub body: String,
}

fn read_request(conn: &mut TcpStream) -> Option<Request> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A server on a loopback port answering each request with `answer(request)`
/// (`None`: hold the connection open and never answer); what it received.
pub fn serve(
    answer: impl Fn(&Request) -> Option<String> + Send + 'static,
) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("an address").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let Some(request) = read_request(&mut conn) else {
                continue;
            };
            let reply = answer(&request);
            log.lock().unwrap().push(request);
            match reply {
                Some(reply) => {
                    let _ = conn.write_all(reply.as_bytes());
                }
                None => held.push(conn),
            }
        }
    });
    (addr, seen)
}

/// A plain HTTP response with no body.
pub fn status_line(code: u16, reason: &str, extra: &str) -> String {
    format!("HTTP/1.1 {code} {reason}\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n")
}

/// A POST over plain HTTP/1.1 with extra headers: the status code.
pub fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    let mut conn = TcpStream::connect(addr).expect("the server listens");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    conn.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"))
}

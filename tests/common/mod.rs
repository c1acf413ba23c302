//! Shared integration-test harness: a private etcd per test binary, unique names, stores.
//!
//! # Usage
//! ```ignore
//! mod common;
//! use common::{Etcd, unique_name};
//!
//! #[tokio::test]
//! async fn something() {
//!     let store = Etcd::shared().store("something").await;   // own prefix per call
//!     // ...
//! }
//! ```
//! [`Etcd::shared`] starts one etcd lazily and shares it between the tests of
//! a binary; each test isolates itself by its prefix (and by
//! [`unique_name`] for anything outside etcd). A test that stops or
//! restarts etcd takes its own with [`Etcd::start`].
//!
//! etcd must be installed (`hack/setup.sh` does it); without it every test
//! using this harness panics, so a missing etcd never looks like a pass.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod controllers;
pub mod http;
pub mod parity;
pub mod swarm;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use swarmkeeper::store::{Store, StoreConfig};

/// A running etcd on free loopback ports with a temporary data dir.
///
/// Dropping it kills etcd. The shared instance lives in a `static`, which
/// is never dropped: a watchdog shell around etcd kills it (and removes its
/// data dir) once the test process is gone.
pub struct Etcd {
    ports: Ports,
    tls: Option<TlsFiles>,
    data: tempfile::TempDir,
    shell: Child,
    etcd_pid: u32,
}

/// Client, peer, and plain-HTTP metrics (for `/health`, even under TLS) ports.
#[derive(Clone, Copy)]
struct Ports {
    client: u16,
    peer: u16,
    metrics: u16,
}

/// PEM files of a TLS etcd: the CA that signed everything, and a client
/// certificate it accepts.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Runs etcd in the background and kills it when the test process (`$1`) exits.
const WATCHDOG: &str = r#"
parent="$1"; data="$2"; shift 2
"$@" >>"$data/etcd.log" 2>&1 &
pid=$!
echo "$pid" >"$data/etcd.pid"
while kill -0 "$parent" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 0.5; done
kill -9 "$pid" 2>/dev/null
kill -0 "$parent" 2>/dev/null || rm -rf "$data"
"#;

fn etcd_binary() -> PathBuf {
    let fixed = Path::new("/usr/bin/etcd");
    if fixed.exists() {
        return fixed.to_owned();
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("etcd"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| panic!("etcd is not installed: run hack/setup.sh first"))
}

/// Three distinct free loopback ports: all are held until all are found.
fn free_ports() -> Ports {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("no free loopback port"))
        .collect();
    let port = |i: usize| {
        listeners[i]
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    };
    Ports {
        client: port(0),
        peer: port(1),
        metrics: port(2),
    }
}

impl Etcd {
    /// The etcd shared by every test of this binary, started on first use.
    pub fn shared() -> &'static Etcd {
        static SHARED: OnceLock<Etcd> = OnceLock::new();
        SHARED.get_or_init(Etcd::start)
    }

    /// A private etcd, for tests that stop or restart it.
    pub fn start() -> Etcd {
        Self::start_with(false)
    }

    /// A private etcd that serves clients over TLS only and requires a
    /// client certificate; [`Etcd::config`] fills in the CA and client files.
    /// Needs `openssl` to make the certificates.
    pub fn start_tls() -> Etcd {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Etcd {
        // Test processes start etcds in parallel: a port found free can be taken
        // before etcd binds it. Such a start fails at once and is retried on new ports.
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let data = tempfile::Builder::new()
                .prefix("swarmkeeper-etcd-")
                .tempdir()
                .expect("cannot create a temp dir for etcd");
            let ports = free_ports();
            let tls = tls.then(|| make_certificates(data.path()));
            let (shell, etcd_pid) = spawn(data.path(), ports, tls.is_some());
            let mut etcd = Etcd {
                ports,
                tls,
                data,
                shell,
                etcd_pid,
            };
            match etcd.wait_healthy() {
                Ok(()) => return etcd,
                Err(log) if attempt < ATTEMPTS && log.contains("address already in use") => {}
                Err(log) => panic!("etcd did not start; its log:\n{log}"),
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    /// `http://127.0.0.1:<port>`, or `https://` for a TLS etcd.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.ports.client)
    }

    /// The certificate files of a TLS etcd.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// A store config for this etcd with a prefix of its own (`/t-<test>-<random>`).
    pub fn config(&self, test: &str) -> StoreConfig {
        StoreConfig {
            endpoints: vec![self.endpoint()],
            prefix: format!("/t-{}", unique_name(test)),
            ca: self.tls.as_ref().map(|t| t.ca.clone()),
            cert: self.tls.as_ref().map(|t| t.client_cert.clone()),
            key: self.tls.as_ref().map(|t| t.client_key.clone()),
            ..StoreConfig::default()
        }
    }

    /// A store connected to this etcd with a prefix of its own.
    ///
    /// Connect inside the test's runtime: a client does not outlive the
    /// runtime it was made in, so stores are never shared between tests.
    pub async fn store(&self, test: &str) -> Store {
        Store::connect(self.config(test))
            .await
            .unwrap_or_else(|err| panic!("cannot connect to the test etcd: {err}"))
    }

    /// Kills etcd (as a crash would); [`Etcd::resume`] starts it again on the same data.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.etcd_pid.to_string()])
            .status();
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }

    /// Starts a stopped etcd again on the same ports and data.
    pub fn resume(&mut self) {
        let (shell, pid) = spawn(self.data.path(), self.ports, self.tls.is_some());
        self.shell = shell;
        self.etcd_pid = pid;
        if let Err(log) = self.wait_healthy() {
            panic!("etcd did not start again; its log:\n{log}");
        }
    }

    /// Waits until this etcd answers; its log when it died or never answered.
    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.ports.metrics));
        let log = |data: &Path| std::fs::read_to_string(log_path(data)).unwrap_or_default();
        while Instant::now() < deadline {
            // The watchdog shell ends with etcd: a dead etcd is not waited for, and
            // another process answering on a stolen port is not taken for ours.
            if matches!(self.shell.try_wait(), Ok(Some(_))) {
                return Err(log(self.data.path()));
            }
            if health(addr) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "no answer on {addr} within 30 s\n{}",
            log(self.data.path())
        ))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn log_path(data: &Path) -> PathBuf {
    data.join("etcd.log")
}

fn spawn(data: &Path, ports: Ports, tls: bool) -> (Child, u32) {
    let pid_file = data.join("etcd.pid");
    let _ = std::fs::remove_file(&pid_file);
    let scheme = if tls { "https" } else { "http" };
    let client = format!("{scheme}://127.0.0.1:{}", ports.client);
    let peer = format!("http://127.0.0.1:{}", ports.peer);
    let metrics = format!("http://127.0.0.1:{}", ports.metrics);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(WATCHDOG)
        .arg("etcd-watchdog")
        .arg(std::process::id().to_string())
        .arg(data)
        .arg(etcd_binary())
        .args(["--name", "test", "--data-dir"])
        .arg(data.join("etcd"))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("test={peer}")])
        .args(["--listen-metrics-urls", &metrics])
        .args(["--logger", "zap", "--log-level", "warn"])
        // etcd logs to its data dir; holding the test's stdout open would make the
        // runner wait for (and report as leaked) a process that outlives the test.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if tls {
        command
            .arg("--cert-file")
            .arg(data.join("server.pem"))
            .arg("--key-file")
            .arg(data.join("server.key"))
            .arg("--trusted-ca-file")
            .arg(data.join("ca.pem"))
            .arg("--client-cert-auth");
    }
    let mut shell = command.spawn().expect("cannot run sh to start etcd");
    match read_pid(&pid_file) {
        Some(pid) => (shell, pid),
        None => {
            let _ = shell.kill();
            let _ = shell.wait();
            panic!("etcd did not start within 5 s");
        }
    }
}

/// The pid the watchdog writes once etcd is spawned.
fn read_pid(pid_file: &Path) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Some(pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
fn make_certificates(dir: &Path) -> TlsFiles {
    const SCRIPT: &str = r#"
set -e
cd "$1"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj /CN=swarmkeeper-test-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
sign() {
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1"
  printf '%s\n' "$2" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -out "$1.pem" -extfile "$1.ext" 2>/dev/null
}
sign server "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth,clientAuth"
sign client "extendedKeyUsage=clientAuth"
"#;
    let status = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("make-certificates")
        .arg(dir)
        .status()
        .expect("cannot run sh to make certificates");
    assert!(status.success(), "openssl failed to make test certificates");
    TlsFiles {
        ca: dir.join("ca.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    }
}

/// etcd's `/health` answers `{"health":"true"}` once it serves requests.
fn health(addr: SocketAddr) -> bool {
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    if conn
        .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer.contains(r#""health":"true""#)
}

/// A name unique to this test run, valid as a record name
/// (`[a-z0-9][a-z0-9_.-]{0,62}`): `<base>-<pid><counter><random>`.
pub fn unique_name(base: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut clean: String = base
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !clean.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        clean.insert(0, 't');
    }
    let suffix = format!(
        "-{:x}{:x}{:06x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>() & 0xff_ffff
    );
    clean.truncate(63 - suffix.len());
    clean + &suffix
}

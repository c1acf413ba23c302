//! Proxies the test owns, in front of etcd (TCP) and of dockerd (a unix
//! socket): cutting one drops every connection through it and refuses new
//! ones until restored, which is what a client sees when the far side goes
//! away and comes back. A proxy can also cut itself right after it passed on
//! a chosen write request, so that the write lands and its answer is lost.
//! The dockerd proxy keeps every byte the client sent, so a test can check
//! what the operator wrote.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// A running proxy; it stops with the test's runtime.
pub struct Link {
    cut: watch::Sender<bool>,
    sent: Arc<Mutex<Vec<u8>>>,
    /// Write requests to pass on before cutting; 0 when not armed.
    armed: Arc<AtomicUsize>,
    /// `http://127.0.0.1:<port>` for TCP, the socket's path for unix.
    pub address: String,
}

impl Link {
    /// A TCP proxy to `upstream` (`host:port`).
    pub async fn tcp(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        let link = Self::idle(address);
        let (cut, sent, armed) = (link.cut.clone(), link.sent.clone(), link.armed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *cut.borrow() {
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(pipe(
                    client,
                    server,
                    cut.clone(),
                    sent.clone(),
                    armed.clone(),
                ));
            }
        });
        link
    }

    /// A unix-socket proxy at `socket` to the machine's dockerd.
    pub fn docker(socket: &Path) -> Self {
        let listener = tokio::net::UnixListener::bind(socket).expect("bind the socket");
        let link = Self::idle(socket.display().to_string());
        let (cut, sent, armed) = (link.cut.clone(), link.sent.clone(), link.armed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *cut.borrow() {
                    continue;
                }
                let Ok(daemon) = tokio::net::UnixStream::connect("/var/run/docker.sock").await
                else {
                    continue;
                };
                tokio::spawn(pipe(
                    client,
                    daemon,
                    cut.clone(),
                    sent.clone(),
                    armed.clone(),
                ));
            }
        });
        link
    }

    fn idle(address: String) -> Self {
        Self {
            cut: watch::channel(false).0,
            sent: Arc::default(),
            armed: Arc::default(),
            address,
        }
    }

    pub fn socket(&self) -> PathBuf {
        PathBuf::from(&self.address)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Cuts right after passing on the `nth` write request (POST or DELETE) from now.
    pub fn cut_after_write(&self, nth: usize) {
        self.armed.store(nth, Ordering::SeqCst);
    }

    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// Everything clients sent through the proxy so far.
    pub fn sent(&self) -> Vec<u8> {
        self.sent.lock().unwrap().clone()
    }
}

/// Copies both ways until either side closes or the link is cut.
async fn pipe<C, S>(
    client: C,
    server: S,
    cut: watch::Sender<bool>,
    sent: Arc<Mutex<Vec<u8>>>,
    armed: Arc<AtomicUsize>,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut is_cut = cut.subscribe();
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let requests = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            sent.lock().unwrap().extend_from_slice(&buf[..n]);
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
            let write = buf.starts_with(b"POST ") || buf.starts_with(b"DELETE ");
            let last = |left: usize| (left > 0).then(|| left - 1);
            if write && armed.fetch_update(Ordering::SeqCst, Ordering::SeqCst, last) == Ok(1) {
                // Passed on; its answer is not.
                cut.send_replace(true);
            }
        }
    };
    let answers = tokio::io::copy(&mut server_read, &mut client_write);
    tokio::select! {
        () = requests => {}
        _ = answers => {}
        _ = is_cut.wait_for(|cut| *cut) => {}
    }
}

//! Talking to a `swarmkeeper run` the tests started: free ports, plain HTTP
//! GETs, one series of its `/metrics`, and what was last written to etcd.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use etcd_client::GetOptions;
use swarmkeeper::store::Store;

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A GET over plain HTTP/1.1: status code and body.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut conn = TcpStream::connect(addr).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).ok()?;
    let code = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// The value of one series of `/metrics` (its name and labels, as exposed),
/// 0 while it has none; `None` until `/metrics` answers.
pub fn metric(addr: &str, series: &str) -> Option<f64> {
    let (code, body) = http_get(addr, "/metrics")?;
    (code == 200).then(|| {
        body.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    })
}

/// The `swarmkeeper_leader` gauge of a replica, once its `/metrics` answers.
pub fn leader_gauge(addr: &str) -> Option<i64> {
    metric(addr, "swarmkeeper_leader").map(|v| v as i64)
}

/// The newest revision of any key under the store's prefix, but those under
/// `<prefix>/<except>`: what moves on any write there.
pub async fn last_write(store: &Store, except: Option<&str>) -> i64 {
    let prefix = format!("{}/", store.prefix());
    let skip = except.map(|e| format!("{prefix}{e}"));
    let resp = store
        .raw_client()
        .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await
        .expect("list the prefix");
    resp.kvs()
        .iter()
        .filter(|kv| {
            skip.as_ref()
                .is_none_or(|s| !kv.key().starts_with(s.as_bytes()))
        })
        .map(etcd_client::KeyValue::mod_revision)
        .max()
        .unwrap_or(0)
}

//! Shared by dhtdump's process tests: real `dhtnode` processes (the binary is built on first use
//! with `cargo build -p dhtnode`, a no-op when up to date, and found next to the test binary's
//! target directory), `dhtdump` and `dumptool` processes, logs to wait on, and signals.

#![allow(dead_code)] // Each test binary uses a different subset.

use client::{ClientOptions, DhtClient};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(30);

/// The dhtnode binary next to this test's own target directory, built once if needed.
pub fn dhtnode_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| testkit::workspace_binary("dhtnode", "dhtnode"))
}

pub fn dhtdump_binary() -> &'static str {
    env!("CARGO_BIN_EXE_dhtdump")
}

pub fn dumptool_binary() -> &'static str {
    env!("CARGO_BIN_EXE_dumptool")
}

/// Sends `signal` (a name such as "TERM") to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Waits for `child` to exit, at most `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process {} did not exit",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `condition` until it holds, failing after [`WAIT`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A dhtnode process on an OS-chosen loopback port.
pub struct Node {
    pub child: Child,
    pub addr: SocketAddr,
    pub log_dir: PathBuf,
}

impl Node {
    /// Starts dhtnode on `data_dir`, logging to `log_dir` (which must not hold a root.log of
    /// an earlier node: its `listening on` line tells the port).
    pub fn start(data_dir: &Path, log_dir: &Path) -> Node {
        let _ = std::fs::remove_file(log_dir.join("root.log"));
        let child = Command::new(dhtnode_binary())
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--log-dir")
            .arg(log_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dhtnode");
        let addr = wait_for_listen_addr(&log_dir.join("root.log"));
        Node {
            child,
            addr,
            log_dir: log_dir.to_path_buf(),
        }
    }

    pub fn client(&self) -> DhtClient {
        DhtClient::connect(
            &[self.addr],
            ClientOptions {
                connect_timeout_ms: 5000,
                request_timeout_ms: 20_000,
                allow_incomplete_ranges: true,
                ..ClientOptions::default()
            },
        )
        .expect("connect to dhtnode")
    }

    /// SIGTERM, then exit status 0.
    pub fn stop(mut self) {
        signal(self.child.id(), "TERM");
        let status = wait_exit(&mut self.child, WAIT);
        assert_eq!(status.code(), Some(0), "dhtnode graceful shutdown exits 0");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The node logs `listening on ADDR` once it serves.
fn wait_for_listen_addr(root_log: &Path) -> SocketAddr {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = read_text(root_log);
        if let Some(rest) = text.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().expect("address");
            return addr.parse().expect("listen address");
        }
        assert!(
            Instant::now() < deadline,
            "no 'listening on' line in {}",
            root_log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A dhtdump process.
pub struct Dump {
    pub child: Child,
    pub log_dir: PathBuf,
}

impl Dump {
    /// Starts dhtdump with `args` (and `--log-dir log_dir`).
    pub fn spawn(args: &[&str], log_dir: &Path) -> Dump {
        let child = Command::new(dhtdump_binary())
            .args(args)
            .arg("--log-dir")
            .arg(log_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dhtdump");
        Dump {
            child,
            log_dir: log_dir.to_path_buf(),
        }
    }

    pub fn root_log(&self) -> String {
        read_text(&self.log_dir.join("root.log"))
    }

    pub fn stats_log(&self) -> String {
        read_text(&self.log_dir.join("stats.log"))
    }

    /// Waits until root.log holds `text` at least `count` times.
    pub fn wait_for_log(&self, text: &str, count: usize) {
        wait_until(
            &format!("{count} × {text:?} in dhtdump's root.log"),
            || self.root_log().matches(text).count() >= count,
        );
    }
}

impl Drop for Dump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `dhtdump --oneshot` against `node` into `data_dir`; returns its exit status.
pub fn oneshot(node: SocketAddr, data_dir: &Path, log_dir: &Path) -> ExitStatus {
    let mut dump = Dump::spawn(
        &[
            "--oneshot",
            "--node",
            &node.to_string(),
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
        ],
        log_dir,
    );
    wait_exit(&mut dump.child, Duration::from_secs(60))
}

/// Runs dumptool with `args`.
pub fn dumptool(args: &[&str]) -> Output {
    Command::new(dumptool_binary())
        .args(args)
        .output()
        .expect("run dumptool")
}

/// A deterministic value for `key`: `len` pseudo-random bytes (incompressible, like real data).
pub fn value_for(key: u64, len: usize) -> Vec<u8> {
    let mut x = key ^ 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Stores `count` records `first..first+count` in `channel`, values of `len(key)` bytes.
pub fn fill(
    dht: &DhtClient,
    channel: &str,
    keys: std::ops::Range<u64>,
    len: impl Fn(u64) -> usize,
) -> Vec<(u64, Vec<u8>)> {
    let records: Vec<(u64, Vec<u8>)> = keys.map(|key| (key, value_for(key, len(key)))).collect();
    for part in records.chunks(20_000) {
        dht.put_batch(
            channel,
            part.iter().map(|(key, value)| (*key, value.as_slice())),
        )
        .expect("put_batch");
    }
    records
}

//! A real cluster for the node-failure tests: dht, logfiles and queue node processes (the real
//! binaries, built on first use), each in a directory of its own on an OS-chosen loopback port,
//! that a test can kill with SIGKILL and restart on the same port; and the topology file that
//! lists them.

#![allow(dead_code)] // Each test binary uses a different subset.

use client::ClientOptions;
use node_core::protocol::dht::{split_evenly, HashRange};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use testkit::TempNode;

/// Small rings, so that many queue nodes fit in memory while tests run in parallel.
const QUEUE_CONFIG: &str = "[queue]\nchannel_size_bytes = 1048576\n";

fn binary(package: &'static str) -> String {
    static BINARIES: OnceLock<[PathBuf; 3]> = OnceLock::new();
    let all = BINARIES.get_or_init(|| {
        ["dhtnode", "logfilesnode", "queuenode"].map(|name| testkit::workspace_binary(name, name))
    });
    let index = ["dhtnode", "logfilesnode", "queuenode"]
        .iter()
        .position(|name| *name == package)
        .expect("a node package");
    all[index].to_string_lossy().into_owned()
}

pub struct RealCluster {
    pub dht: Vec<TempNode>,
    pub logfiles: Vec<TempNode>,
    pub queue: Vec<TempNode>,
    /// The dht nodes' ranges, in node order (unless given: the hash space split evenly).
    pub ranges: Vec<HashRange>,
    /// Holds the topology files the test writes.
    pub dir: tempfile::TempDir,
}

impl RealCluster {
    /// Starts every node at once and waits until each listens.
    pub fn start(dht: usize, logfiles: usize, queue: usize) -> RealCluster {
        let ranges = split_evenly(dht.max(1)).into_iter().take(dht).collect();
        RealCluster::start_with_ranges(ranges, logfiles, queue)
    }

    /// [`RealCluster::start`] with one dht node per range given (ranges may leave gaps,
    /// overlap, or repeat).
    pub fn start_with_ranges(ranges: Vec<HashRange>, logfiles: usize, queue: usize) -> RealCluster {
        let dht_binary = binary("dhtnode");
        let log_binary = binary("logfilesnode");
        let queue_binary = binary("queuenode");
        let (dht, logfiles, queue) = std::thread::scope(|scope| {
            let dht: Vec<_> = ranges
                .iter()
                .map(|range| {
                    let range = range.to_string();
                    let binary = &dht_binary;
                    scope.spawn(move || TempNode::start(binary, "", &["--range", &range]))
                })
                .collect();
            let logfiles: Vec<_> = (0..logfiles)
                .map(|_| scope.spawn(|| TempNode::start(&log_binary, "", &[])))
                .collect();
            let queue: Vec<_> = (0..queue)
                .map(|_| scope.spawn(|| TempNode::start(&queue_binary, QUEUE_CONFIG, &[])))
                .collect();
            let join =
                |handles: Vec<std::thread::ScopedJoinHandle<'_, TempNode>>| -> Vec<TempNode> {
                    handles
                        .into_iter()
                        .map(|handle| handle.join().expect("node starts"))
                        .collect()
                };
            (join(dht), join(logfiles), join(queue))
        });
        RealCluster {
            dht,
            logfiles,
            queue,
            ranges,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// `sets` replica sets of `members` dht nodes each (the hash space split evenly; node
    /// order: the members of a set next to each other), every node configured with the other
    /// members of its set as `[dht] replica_peers`, so that a member restarted without its
    /// data catches up from them (docs/replication.md "Catch-up"). The nodes start without
    /// peers (their ports are chosen by the OS), then each is given its peers and restarted on
    /// its port in turn, and waited for until it is ready.
    pub fn start_replica_sets(sets: usize, members: usize) -> RealCluster {
        let binary = binary("dhtnode");
        let ranges: Vec<HashRange> = split_evenly(sets)
            .into_iter()
            .flat_map(|range| std::iter::repeat_n(range, members))
            .collect();
        let dht: Vec<TempNode> = std::thread::scope(|scope| {
            let started: Vec<_> = ranges
                .iter()
                .map(|range| {
                    let range = range.to_string();
                    let binary = &binary;
                    scope.spawn(move || TempNode::start(binary, "[dht]\n", &["--range", &range]))
                })
                .collect();
            started
                .into_iter()
                .map(|handle| handle.join().expect("node starts"))
                .collect()
        });
        let mut cluster = RealCluster {
            dht,
            logfiles: Vec::new(),
            queue: Vec::new(),
            ranges,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for node in 0..cluster.dht.len() {
            let set = node / members;
            let peers: Vec<String> = (set * members..(set + 1) * members)
                .filter(|peer| *peer != node)
                .map(|peer| format!("\"{}\"", cluster.dht[peer].addr))
                .collect();
            cluster.dht[node]
                .rewrite_config(&format!("[dht]\nreplica_peers = [{}]\n", peers.join(", ")));
            cluster.dht[node].restart();
            testkit::wait_caught_up(cluster.dht[node].addr);
        }
        cluster
    }

    /// Writes a topology file listing every node; with `ranges`, the dht nodes in the form that
    /// states each one's range.
    pub fn write_topology(&self, name: &str, ranges: bool) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, self.topology_text(ranges)).expect("write topology");
        path
    }

    pub fn topology_text(&self, ranges: bool) -> String {
        let dht: Vec<String> = self
            .dht
            .iter()
            .zip(&self.ranges)
            .map(|(node, range)| match ranges {
                true => format!("{{ addr = \"{}\", range = \"{range}\" }}", node.addr),
                false => format!("\"{}\"", node.addr),
            })
            .collect();
        format!(
            "[dht]\nnodes = [{}]\n[logfiles]\nnodes = [{}]\n[queue]\nnodes = [{}]\n",
            dht.join(", "),
            listed(&self.logfiles),
            listed(&self.queue)
        )
    }
}

fn listed(nodes: &[TempNode]) -> String {
    let quoted: Vec<String> = nodes.iter().map(|n| format!("\"{}\"", n.addr)).collect();
    quoted.join(", ")
}

pub fn addrs(nodes: &[TempNode]) -> Vec<SocketAddr> {
    nodes.iter().map(|node| node.addr).collect()
}

/// Generous request limits: the machine running the tests may be busy. The connect timeout is
/// the default, so that a request that waited for one would show.
pub fn options() -> ClientOptions {
    ClientOptions {
        request_timeout_ms: 10_000,
        ..ClientOptions::default()
    }
}

/// Polls `condition` every 10 ms until it holds; panics after `limit`. Returns how long it took.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

/// A topology file's path as a `&str` for a command line.
pub fn path_arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

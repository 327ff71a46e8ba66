//! Many async streams on one tokio runtime, against real dht nodes: 1000 Listens open at once
//! cost the process no thread each. The process's thread count (`Threads:` of
//! /proc/self/status) is read with every listener open and receiving, so this test has a
//! binary of its own: no other test's threads are counted.

mod real_cluster;

use client::asynchronous::AsyncDhtClient;
use client::dht::ListenEvent;
use real_cluster::{options, RealCluster};
use std::collections::BTreeSet;
use std::time::Duration;

const LISTENERS: usize = 1000;
/// The runtime's threads: its workers and at most this many on its blocking pool.
const WORKERS: usize = 2;
const BLOCKING_THREADS: usize = 4;
/// Threads the test may add besides the runtime's: none is needed per listener.
const SLACK_THREADS: usize = 4;

fn threads_now() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
        .expect("a Threads: line")
}

/// Takes changes until every key of `keys` was seen.
async fn until_all_seen(mut listener: client::asynchronous::AsyncListener, keys: Vec<u64>) {
    let mut seen = BTreeSet::new();
    while seen.len() < keys.len() {
        let change = tokio::time::timeout(Duration::from_secs(60), listener.next()).await;
        match change
            .expect("a change in time")
            .expect("open")
            .expect("change")
        {
            ListenEvent::Changed { key, value } => {
                assert_eq!(value, key.to_le_bytes());
                seen.insert(key);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, keys.into_iter().collect());
}

#[test]
fn a_thousand_listens_on_one_runtime_hold_no_thread_each() {
    let cluster = RealCluster::start(2, 0, 0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .expect("runtime");
    let nodes = real_cluster::addrs(&cluster.dht);
    runtime.block_on(async {
        let dht = AsyncDhtClient::connect(&nodes, options())
            .await
            .expect("connect");
        // Keys on both nodes, so that every listener merges two nodes' streams.
        let keys: Vec<u64> = (0..8).map(|i| i * 0x2000_0000_0000_0001).collect();
        let owners: BTreeSet<usize> = keys
            .iter()
            .map(|key| dht.blocking().node_for(*key).expect("tiled"))
            .collect();
        assert_eq!(owners.len(), 2);
        let baseline = threads_now();
        let mut listeners = Vec::with_capacity(LISTENERS);
        for _ in 0..LISTENERS {
            listeners.push(dht.listen("watched").await.expect("listen"));
        }
        let open = threads_now();
        let readers: Vec<_> = listeners
            .into_iter()
            .map(|listener| tokio::spawn(until_all_seen(listener, keys.clone())))
            .collect();
        for &key in &keys {
            dht.put("watched", key, &key.to_le_bytes())
                .await
                .expect("put");
        }
        let receiving = threads_now();
        for reader in readers {
            reader.await.expect("every listener saw every change");
        }
        let bound = baseline + BLOCKING_THREADS + SLACK_THREADS;
        assert!(
            open <= bound && receiving <= bound,
            "{LISTENERS} listeners: {baseline} threads before, {open} with them open, \
             {receiving} while they received (bound {bound})"
        );
    });
}

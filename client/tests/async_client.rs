//! The async client (`client::asynchronous`) against a real cluster (3 dht, 2 logfiles and 2
//! queue node processes on OS-chosen loopback ports), on a multi-thread tokio runtime, with the
//! blocking client's main cases:
//!
//! - dht: keyed round trips on every node (each key on its owner), update, put_batch, GetAll
//!   exactly once per record, Listen merging every node's changes until the channel is removed;
//! - logfiles: puts spread round-robin, GetRange and GetAll merged in key order;
//! - queue: pushes spread round-robin, pops, a consumer that takes everything and acknowledges;
//! - many tasks at once over one connection per node, through a small in-flight limit;
//! - the node-level `AsyncClient`: requests, a stream of more items than its window,
//!   a fan-out, and a node that never answers (Timeout after request_timeout_ms);
//! - a node of each kind killed and restarted on its port: the dead dht node's keys fail at
//!   once with NodeDown while the others work, writes land on the live nodes, a partial pop
//!   names the missing node; after the restart every key works again within 5 s, with no new
//!   client.

mod common;
mod real_cluster;

use client::asynchronous::{AsyncClient, AsyncDhtClient, AsyncLogClient, AsyncQueueClient};
use client::dht::{GetAllOptions, ListenEvent, UpdateDecision};
use client::logfiles::ValueFilter;
use client::{ClientError, ClientOptions, NodeKind, NodeState, StreamEvent, Topology};
use node_core::protocol::batch::decode_batch;
use node_core::protocol::dht::{self as wire, GetAllRequest, PutRequest};
use node_core::protocol::{RequestCode, Status};
use real_cluster::{options, RealCluster};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A NodeDown comes without a connect attempt: far below the 2 s connect timeout.
const FAIL_FAST: Duration = Duration::from_millis(500);
const BACK_WITHIN: Duration = Duration::from_secs(5);

fn run<F: Future>(test: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(test)
}

/// The async clients of the kinds `cluster` has nodes of.
struct Clients {
    dht: Option<AsyncDhtClient>,
    logs: Option<AsyncLogClient>,
    queue: Option<AsyncQueueClient>,
}

impl Clients {
    fn dht(&self) -> &AsyncDhtClient {
        self.dht.as_ref().expect("dht nodes")
    }

    fn logs(&self) -> &AsyncLogClient {
        self.logs.as_ref().expect("logfiles nodes")
    }

    fn queue(&self) -> &AsyncQueueClient {
        self.queue.as_ref().expect("queue nodes")
    }
}

async fn connect(cluster: &RealCluster, options: ClientOptions) -> Clients {
    let text = cluster.topology_text(false);
    let topology = Topology::parse(&text, std::path::Path::new("cluster.toml")).expect("topology");
    let mut clients = Clients {
        dht: None,
        logs: None,
        queue: None,
    };
    if !cluster.dht.is_empty() {
        let dht = AsyncDhtClient::from_topology(&topology, options.clone()).await;
        clients.dht = Some(dht.expect("dht client"));
    }
    if !cluster.logfiles.is_empty() {
        let logs = AsyncLogClient::from_topology(&topology, options.clone()).await;
        clients.logs = Some(logs.expect("logfiles client"));
    }
    if !cluster.queue.is_empty() {
        let queue = AsyncQueueClient::from_topology(&topology, options).await;
        clients.queue = Some(queue.expect("queue client"));
    }
    clients
}

fn value_of(key: u64) -> Vec<u8> {
    format!("value-{key}").into_bytes()
}

#[test]
fn dht_keyed_requests_update_batches_get_all_and_listen() {
    let cluster = RealCluster::start(3, 0, 0);
    run(async {
        let c = connect(&cluster, options()).await;
        let dht = c.dht();
        assert_eq!(dht.get("users", 1).await.expect("get"), None);
        assert!(!dht.exists("users", 1).await.expect("exists"));
        assert!(!dht.remove("users", 1).await.expect("remove"), "absent");
        let keys: Vec<u64> = (0..60).map(|i| i * 0x0444_4444_4444_4444 + i).collect();
        let owners: BTreeSet<usize> = keys
            .iter()
            .map(|key| dht.blocking().node_for(*key).expect("tiled"))
            .collect();
        assert_eq!(owners.len(), 3, "the keys cover every node");
        for &key in &keys {
            dht.put("users", key, &value_of(key)).await.expect("put");
        }
        for &key in &keys {
            assert_eq!(
                dht.get("users", key).await.expect("get"),
                Some(value_of(key))
            );
            assert!(dht.exists("users", key).await.expect("exists"));
            // The blocking client, on the same connections, sees the same.
            assert_eq!(
                dht.blocking().get("users", key).expect("get"),
                Some(value_of(key))
            );
        }
        let expected: BTreeMap<u64, Vec<u8>> = keys.iter().map(|k| (*k, value_of(*k))).collect();
        let all = dht
            .get_all("users", GetAllOptions::default())
            .expect("get_all")
            .collect()
            .await
            .expect("every record");
        assert_eq!(all.len(), expected.len(), "each record once");
        assert_eq!(all.into_iter().collect::<BTreeMap<_, _>>(), expected);

        assert!(dht.remove("users", keys[0]).await.expect("remove"));
        assert_eq!(dht.get("users", keys[0]).await.expect("get"), None);
        dht.update("users", keys[1], |value| {
            let mut value = value.expect("present").to_vec();
            value.extend_from_slice(b"+1");
            UpdateDecision::Write(value)
        })
        .await
        .expect("update");
        let updated = dht.get("users", keys[1]).await.expect("get");
        assert_eq!(updated, Some([value_of(keys[1]), b"+1".to_vec()].concat()));
        let batch: Vec<(u64, Vec<u8>)> = (0..500).map(|k| (k << 54 | k, value_of(k))).collect();
        dht.put_batch("batch", batch.clone())
            .await
            .expect("put_batch");
        for (key, value) in batch.iter().step_by(50) {
            assert_eq!(
                dht.get("batch", *key).await.expect("get"),
                Some(value.clone())
            );
        }
        assert_eq!(
            dht.get_channel_size("batch").await.expect("size").records,
            500
        );
        listen_merges_every_node(dht, &keys).await;
    });
}

/// Listen sees a change on each node, in order per node, and ends with ChannelRemoved.
async fn listen_merges_every_node(dht: &AsyncDhtClient, keys: &[u64]) {
    let mut changes = dht.listen("watched").await.expect("listen");
    for &key in keys {
        dht.put("watched", key, b"new").await.expect("put");
    }
    dht.remove("watched", keys[2]).await.expect("remove");
    let (mut changed, mut removed) = (BTreeSet::new(), false);
    let deadline = Duration::from_secs(20);
    while changed.len() < keys.len() || !removed {
        let event = tokio::time::timeout(deadline, changes.next()).await;
        match event
            .expect("a change in time")
            .expect("stream open")
            .expect("event")
        {
            ListenEvent::Changed { key, value } => {
                assert_eq!(value, b"new");
                changed.insert(key);
            }
            // Each node's changes come in order; the nodes' streams are merged.
            ListenEvent::Removed { key } => {
                assert_eq!(key, keys[2]);
                assert!(changed.contains(&key), "its Changed came first");
                removed = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    dht.remove_channel("watched").await.expect("remove_channel");
    loop {
        let event = tokio::time::timeout(deadline, changes.next()).await;
        match event.expect("the end in time") {
            Some(Ok(ListenEvent::ChannelRemoved)) => break,
            Some(Ok(ListenEvent::Removed { .. })) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let after = tokio::time::timeout(deadline, changes.next()).await;
    assert!(
        after.expect("ends").is_none(),
        "nothing after ChannelRemoved"
    );
}

#[test]
fn logfiles_puts_spread_round_robin_and_reads_merge_in_key_order() {
    let cluster = RealCluster::start(0, 2, 0);
    run(async {
        let c = connect(&cluster, options()).await;
        let mut per_node = [0usize; 2];
        for key in (0..40u64).rev() {
            let node = c
                .logs()
                .put("events", key, &value_of(key))
                .await
                .expect("put");
            per_node[node] += 1;
        }
        assert_eq!(per_node, [20, 20], "round-robin");
        let range = c
            .logs()
            .get_range("events", 10, 29, &ValueFilter::All)
            .expect("get_range")
            .collect()
            .await
            .expect("range");
        let expected: Vec<(u64, Vec<u8>)> = (10..30).map(|k| (k, value_of(k))).collect();
        assert_eq!(range, expected, "merged in key order, bounds inclusive");
        let filter = ValueFilter::Substring(b"value-3".to_vec());
        let all = c.logs().get_all("events", &filter).expect("get_all");
        let keys: Vec<u64> = all
            .collect()
            .await
            .expect("all")
            .iter()
            .map(|r| r.0)
            .collect();
        let mut wanted: Vec<u64> = vec![3];
        wanted.extend(30..40);
        assert_eq!(keys, wanted, "filtered, in key order");
        let stored = c
            .logs()
            .put_batch("batch", (0..300).map(|k| (k, value_of(k))).collect())
            .await
            .expect("put_batch");
        assert_eq!(stored, 300);
        assert_eq!(
            c.logs().channels().await.expect("channels"),
            ["batch", "events"]
        );
    });
}

#[test]
fn queue_pushes_pops_and_a_consumer_that_acknowledges() {
    let cluster = RealCluster::start(0, 0, 2);
    run(async {
        let c = connect(&cluster, options()).await;
        let mut per_node = [0usize; 2];
        for i in 0..20 {
            let node = c.queue().push("jobs", &value_of(i)).await.expect("push");
            per_node[node] += 1;
        }
        assert_eq!(per_node, [10, 10], "round-robin");
        let mut popped = BTreeSet::new();
        while let Some(value) = c.queue().pop("jobs").await.expect("pop") {
            popped.insert(value);
        }
        assert_eq!(popped, (0..20).map(value_of).collect::<BTreeSet<_>>());
        for i in 0..30 {
            c.queue().push("stream", &value_of(i)).await.expect("push");
        }
        let mut consumer = c.queue().consume("stream", "", 0).await.expect("consume");
        let mut consumed = BTreeSet::new();
        while consumed.len() < 30 {
            let next = consumer.next(Duration::from_secs(10)).await.expect("next");
            consumed.insert(next.expect("a record in time"));
        }
        assert!(consumer.missing().await.expect("missing").is_empty());
        consumer.stop().await.expect("stop acknowledges");
        assert_eq!(consumed, (0..30).map(value_of).collect::<BTreeSet<_>>());
        assert_eq!(
            c.queue().pop("stream").await.expect("pop"),
            None,
            "all acknowledged"
        );
    });
}

#[test]
fn many_tasks_share_the_connections_through_a_small_in_flight_limit() {
    let cluster = RealCluster::start(2, 0, 0);
    run(async {
        let tight = ClientOptions {
            max_in_flight: 4,
            ..options()
        };
        let c = connect(&cluster, tight).await;
        let tasks: Vec<_> = (0..64u64)
            .map(|task| {
                let dht = c.dht().clone();
                tokio::spawn(async move {
                    for i in 0..50u64 {
                        let key = task << 40 | i << 8 | task;
                        dht.put("load", key, &value_of(key)).await.expect("put");
                        assert_eq!(
                            dht.get("load", key).await.expect("get"),
                            Some(value_of(key))
                        );
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        assert_eq!(c.dht().get_size().await.expect("size").records, 64 * 50);
    });
}

#[test]
fn a_node_of_each_kind_down_and_back() {
    let mut cluster = RealCluster::start(3, 2, 2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let c = runtime.block_on(connect(&cluster, options()));
    let keys: Vec<u64> = (0..120).map(|i| i * 0x0222_2222_2222_2222 + i).collect();
    let dead_node = 1;
    let dead_addr = cluster.dht[dead_node].addr;
    let (dead_keys, live_keys): (Vec<u64>, Vec<u64>) = keys
        .iter()
        .partition(|key| c.dht().blocking().node_for(**key).expect("tiled") == dead_node);
    assert!(!dead_keys.is_empty() && !live_keys.is_empty());
    runtime.block_on(async {
        for &key in &keys {
            c.dht()
                .put("users", key, &value_of(key))
                .await
                .expect("preload");
        }
    });

    cluster.dht[dead_node].kill9();
    cluster.logfiles[0].kill9();
    cluster.queue[1].kill9();
    let (log_addr, queue_addr) = (cluster.logfiles[0].addr, cluster.queue[1].addr);
    real_cluster::wait_until("the client sees the nodes down", BACK_WITHIN, || {
        is_down(c.dht().blocking().client(), dead_node)
            && is_down(c.logs().blocking().client(), 0)
            && is_down(c.queue().blocking().client(), 1)
    });
    runtime.block_on(async {
        dht_while_down(&c, &dead_keys, &live_keys, dead_addr).await;
        logs_and_queue_while_down(&c, log_addr, queue_addr).await;
    });

    cluster.dht[dead_node].restart();
    cluster.logfiles[0].restart();
    cluster.queue[1].restart();
    let restarted = Instant::now();
    runtime.block_on(async {
        dht_back(&c, &dead_keys, restarted).await;
        logs_and_queue_back(&c, restarted).await;
    });
}

/// The dead node's keys fail at once with NodeDown naming it; the live nodes' keys are served.
async fn dht_while_down(c: &Clients, dead_keys: &[u64], live_keys: &[u64], dead_addr: SocketAddr) {
    for &key in dead_keys {
        let started = Instant::now();
        let error = c
            .dht()
            .get("users", key)
            .await
            .expect_err("its node is down");
        let took = started.elapsed();
        assert!(
            matches!(&error, ClientError::NodeDown { node, .. } if *node == dead_addr),
            "{error:?}"
        );
        assert!(took < FAIL_FAST, "NodeDown after {took:?}: not at once");
        let put = c.dht().put("users", key, b"x").await.expect_err("down");
        assert!(put.is_node_down(), "{put:?}");
    }
    for &key in live_keys {
        assert_eq!(
            c.dht().get("users", key).await.expect("live"),
            Some(value_of(key))
        );
    }
}

/// Writes land on the live logfiles and queue nodes; a pop and a complete read name the dead
/// ones.
async fn logs_and_queue_while_down(c: &Clients, log_addr: SocketAddr, queue_addr: SocketAddr) {
    for key in 0..10 {
        let node = c
            .logs()
            .put("events", key, b"e")
            .await
            .expect("put while down");
        assert_eq!(node, 1, "a write lands on the live logfiles node");
        let node = c.queue().push("jobs", b"j").await.expect("push while down");
        assert_eq!(node, 0, "a push lands on the live queue node");
    }
    while let Some(value) = c.queue().pop_partial("jobs").await.expect("pop").value {
        assert_eq!(value, b"j");
    }
    let popped = c.queue().pop_partial("jobs").await.expect("partial pop");
    assert_eq!(popped.value, None);
    let missing: Vec<_> = popped.missing.iter().map(|(addr, _)| *addr).collect();
    assert_eq!(
        missing,
        [queue_addr],
        "the empty answer names the dead node"
    );
    let records = c
        .logs()
        .get_range("events", 0, 9, &ValueFilter::All)
        .expect("open");
    let error = records
        .collect()
        .await
        .expect_err("a complete read needs every node");
    assert!(error.is_node_down() && error.to_string().contains(&log_addr.to_string()));
}

/// Every dead key is served again (and written) within [`BACK_WITHIN`] of the restart.
async fn dht_back(c: &Clients, dead_keys: &[u64], restarted: Instant) {
    for &key in dead_keys {
        loop {
            match c.dht().get("users", key).await {
                Ok(value) => {
                    // A dht node keeps its data in memory: the restarted node may have
                    // lost the record, but it answers.
                    assert!(value.is_none() || value == Some(value_of(key)));
                    break;
                }
                Err(error) if error.is_node_down() => {
                    assert!(restarted.elapsed() < BACK_WITHIN, "still down: {error}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("{error:?}"),
            }
        }
        c.dht()
            .put("users", key, &value_of(key))
            .await
            .expect("put after the restart");
    }
    let back_after = restarted.elapsed();
    assert!(back_after < BACK_WITHIN, "back after {back_after:?}");
}

/// A complete logfiles read and a queue push/pop work again within [`BACK_WITHIN`].
async fn logs_and_queue_back(c: &Clients, restarted: Instant) {
    // The logfiles node is reconnected to on its own backoff: a complete read works again
    // within the same bound.
    loop {
        let records = c.logs().get_range("events", 0, 9, &ValueFilter::All);
        match records.expect("open").collect().await {
            Ok(records) => {
                assert_eq!(records.len(), 10, "every record, from both nodes");
                break;
            }
            Err(error) if error.is_node_down() => {
                assert!(restarted.elapsed() < BACK_WITHIN, "still down: {error}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("{error:?}"),
        }
    }
    let pushed = c.queue().push("jobs", b"after").await.expect("push");
    let popped = c.queue().pop_partial("jobs").await.expect("pop");
    assert_eq!(
        popped.value.as_deref(),
        Some(&b"after"[..]),
        "from node {pushed}"
    );
}

fn is_down(client: &client::Client, node: usize) -> bool {
    matches!(
        client.node_status(node).map(|status| status.state),
        Some(NodeState::Down { .. })
    )
}

#[test]
fn the_node_level_client_requests_streams_and_fans_out() {
    let cluster = RealCluster::start(1, 0, 0);
    let addr = cluster.dht[0].addr;
    run(async {
        // A window of 4 items: a stream of more items than that must grant credit as they are
        // taken, or it stalls.
        let narrow = ClientOptions {
            stream_window: 4,
            ..options()
        };
        let node = AsyncClient::connect(&[addr], Some(NodeKind::Dht), narrow)
            .await
            .expect("connect");
        assert_eq!(
            node.get_version(0).await.expect("version").kind,
            NodeKind::Dht
        );
        let records = 400u64;
        let value = vec![b'x'; 4000];
        for key in 0..records {
            let mut body = Vec::new();
            PutRequest {
                channel: "raw",
                key,
                value: &value,
            }
            .encode(&mut body);
            let reply = node.request(0, wire::PUT, &body).await.expect("put");
            assert_eq!(reply.status, Status::Ok);
        }
        let mut body = Vec::new();
        GetAllRequest {
            channel: "raw",
            keys_only: false,
            resume_after: None,
            filter: &[],
            scope: Default::default(),
        }
        .encode(&mut body);
        let mut stream = node.stream(0, wire::GET_ALL, &body).await.expect("stream");
        let (mut items, mut received, mut end) = (0, 0, None);
        let mut scratch = Vec::new();
        let wait = Duration::from_secs(20);
        while let Some(event) = tokio::time::timeout(wait, stream.next())
            .await
            .expect("in time")
        {
            match event.expect("event") {
                StreamEvent::Item { body, .. } => {
                    items += 1;
                    received += decode_batch(&body, &mut scratch).expect("batch").count();
                }
                StreamEvent::End(reply) => end = Some(reply.status),
            }
        }
        assert!(items > 4, "{items} items: more than the window");
        assert_eq!(received as u64, records, "every record once");
        assert_eq!(end, Some(Status::Ok));
        let sizes = node
            .fan_out_partial(RequestCode::GET_VERSION, &[])
            .await
            .expect("fan-out");
        assert_eq!((sizes.value.len(), sizes.missing.len()), (1, 0));
    });
}

#[test]
fn the_node_level_client_times_out_on_a_node_that_never_answers() {
    // A node that completes the handshake, then never answers.
    let silent = common::fake_node(|_, mut stream| {
        common::accept_handshake(&mut stream);
        while common::read_frame(&mut stream).is_some() {}
    });
    run(async {
        let quick = ClientOptions {
            request_timeout_ms: 300,
            ..options()
        };
        let node = AsyncClient::connect(&[silent], Some(NodeKind::Dht), quick)
            .await
            .expect("connect");
        let started = Instant::now();
        let error = node.request(0, RequestCode::GET_VERSION, &[]).await;
        let took = started.elapsed();
        assert!(
            matches!(error, Err(ClientError::Timeout { .. })),
            "{error:?}"
        );
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{took:?}"
        );
    });
}

/// Waits (off the runtime's workers) until the client of `owner` sees node `node` down.
async fn seen_down<T: Send + Sync + 'static>(
    owner: std::sync::Arc<T>,
    client_of: fn(&T) -> &client::Client,
    node: usize,
) {
    tokio::task::spawn_blocking(move || {
        real_cluster::wait_until("the client sees the node down", BACK_WITHIN, || {
            is_down(client_of(&owner), node)
        })
    })
    .await
    .expect("wait");
}

/// Collects a partial stream to its end; returns the records and the nodes it went without.
async fn collect_partial(
    mut stream: client::asynchronous::ThreadStream<(u64, Vec<u8>)>,
) -> (Vec<(u64, Vec<u8>)>, Vec<SocketAddr>) {
    let mut records = Vec::new();
    while let Some(item) = stream.next().await {
        records.push(item.expect("a partial read fails only on what is not a node down"));
    }
    let missing = stream.missing().into_iter().map(|(addr, _)| addr).collect();
    (records, missing)
}

/// The dht operations the other tests leave out: sizes of one channel, GetAll over the nodes
/// that are up (naming the one that is not), and a topology applied and reloaded.
#[test]
fn dht_partial_reads_and_topology_changes() {
    let mut cluster = RealCluster::start(3, 0, 0);
    run(async {
        let c = connect(&cluster, options()).await;
        let dht = c.dht();
        let keys: Vec<u64> = (0..90u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        for &key in &keys {
            dht.put("sized", key, &value_of(key)).await.expect("put");
        }
        let bytes: u64 = keys.iter().map(|key| 8 + value_of(*key).len() as u64).sum();
        let size = dht.get_channel_size_partial("sized").await.expect("size");
        assert!(size.missing.is_empty());
        assert_eq!((size.value.records, size.value.bytes), (90, bytes));
        let (all, missing) = collect_partial(
            dht.get_all_partial("sized", GetAllOptions::default())
                .expect("open"),
        )
        .await;
        assert_eq!((all.len(), missing.len()), (90, 0));

        cluster.dht[2].kill9();
        let dead = cluster.dht[2].addr;
        seen_down(dht.blocking().clone(), client::DhtClient::client, 2).await;
        let live: BTreeSet<u64> = keys
            .iter()
            .copied()
            .filter(|key| dht.blocking().node_for(*key).expect("tiled") != 2)
            .collect();
        let (all, missing) = collect_partial(
            dht.get_all_partial("sized", GetAllOptions::default())
                .expect("open"),
        )
        .await;
        assert_eq!(missing, [dead], "the stream names the node it went without");
        let got: BTreeSet<u64> = all.iter().map(|record| record.0).collect();
        assert_eq!(got, live, "every record of the live nodes, once");
        let size = dht.get_channel_size_partial("sized").await.expect("size");
        assert_eq!(size.missing.len(), 1);
        assert_eq!(size.value.records, live.len() as u64);
        let error = dht.get_channel_size("sized").await.expect_err("needs all");
        assert!(error.is_node_down(), "{error:?}");

        // Two nodes left in the topology: the dead one is retired.
        let two = format!(
            "[dht]\nnodes = [\"{}\", \"{}\"]\n",
            cluster.dht[0].addr, cluster.dht[1].addr
        );
        let topology = Topology::parse(&two, std::path::Path::new("two.toml")).expect("parse");
        let changes = dht.apply_topology(&topology).await.expect("apply");
        assert_eq!(changes.removed, [(2, dead)], "{changes:?}");
        assert_eq!(dht.blocking().client().active_nodes().len(), 2);
    });
}

/// `reload_topology` reads the followed file again and applies it at once; a client opened
/// without a file says it has none.
#[test]
fn topology_reloaded_on_demand() {
    let cluster = RealCluster::start(0, 2, 2);
    let path = cluster.write_topology("cluster.toml", false);
    run(async {
        let options = ClientOptions {
            topology_watch_ms: 0,
            ..options()
        };
        let logs = AsyncLogClient::open_topology(&path, options.clone()).await;
        let logs = logs.expect("logs");
        let queue = AsyncQueueClient::open_topology(&path, options).await;
        let queue = queue.expect("queue");
        let text = format!(
            "[logfiles]\nnodes = [\"{}\"]\n[queue]\nnodes = [\"{}\"]\n",
            cluster.logfiles[1].addr, cluster.queue[0].addr
        );
        std::fs::write(&path, text).expect("rewrite");
        let changes = logs.reload_topology().await.expect("reload");
        assert_eq!(changes.removed, [(0, cluster.logfiles[0].addr)]);
        let changes = queue.reload_topology().await.expect("reload");
        assert_eq!(changes.removed, [(1, cluster.queue[1].addr)]);
        for _ in 0..4 {
            assert_eq!(logs.put("after", 1, b"v").await.expect("put"), 1);
            assert_eq!(queue.push("after", b"v").await.expect("push"), 0);
        }
        let c = connect(&cluster, real_cluster::options()).await;
        let error = c.logs().reload_topology().await.expect_err("no file");
        assert!(error.to_string().contains("topology file"), "{error}");
    });
}

/// The logfiles operations the other tests leave out: the partial reads naming the node that
/// is down, channels of the nodes that answer, and disk sizes in total and per node.
#[test]
fn logfiles_partial_reads_and_sizes() {
    let mut cluster = RealCluster::start(0, 2, 0);
    run(async {
        let c = connect(&cluster, options()).await;
        let logs = c.logs();
        // The keys each node took (round-robin).
        let mut on_node = [Vec::new(), Vec::new()];
        for key in 0..20u64 {
            let node = logs.put("events", key, &value_of(key)).await.expect("put");
            on_node[node].push(key);
        }
        let per_node = logs.size_per_node(Some("events")).await.expect("sizes");
        let addrs: Vec<SocketAddr> = per_node.iter().map(|(addr, _)| *addr).collect();
        assert_eq!(addrs, [cluster.logfiles[0].addr, cluster.logfiles[1].addr]);
        assert!(per_node
            .iter()
            .all(|(_, size)| size.buckets >= 1 && size.bytes > 0));
        let total = logs.size(Some("events")).await.expect("size");
        assert_eq!(
            total.bytes,
            per_node.iter().map(|(_, s)| s.bytes).sum::<u64>()
        );
        assert_eq!(logs.size(None).await.expect("all").bytes, total.bytes);
        assert_eq!(logs.size(Some("none")).await.expect("absent").bytes, 0);
        let (range, missing) = collect_partial(
            logs.get_range_partial("events", 5, 14, &ValueFilter::All)
                .expect("open"),
        )
        .await;
        assert!(missing.is_empty());
        let expected: Vec<(u64, Vec<u8>)> = (5..15).map(|k| (k, value_of(k))).collect();
        assert_eq!(range, expected);

        cluster.logfiles[0].kill9();
        let dead = cluster.logfiles[0].addr;
        seen_down(logs.blocking().clone(), client::LogClient::client, 0).await;
        let live = &on_node[1];
        let (range, missing) = collect_partial(
            logs.get_range_partial("events", 0, 19, &ValueFilter::All)
                .expect("open"),
        )
        .await;
        assert_eq!(missing, [dead]);
        assert_eq!(&range.iter().map(|r| r.0).collect::<Vec<_>>(), live);
        let (all, missing) = collect_partial(
            logs.get_all_partial("events", &ValueFilter::All)
                .expect("open"),
        )
        .await;
        assert_eq!(missing, [dead]);
        assert_eq!(&all.iter().map(|r| r.0).collect::<Vec<_>>(), live);
        let channels = logs.channels_partial().await.expect("channels");
        assert_eq!(channels.value, ["events"]);
        assert_eq!(channels.missing.len(), 1);
        let sizes = logs.size_per_node_partial(Some("events")).await;
        let sizes = sizes.expect("sizes");
        assert_eq!(sizes.value.len(), 1);
        assert_eq!(sizes.missing[0].0, dead);
        assert!(logs.size(None).await.expect_err("needs all").is_node_down());
        assert!(logs.size_per_node(None).await.is_err());
    });
}

/// A value bigger than a batch's target fills a node's 1 MiB ring in a few sends: the producer
/// goes on to the other node, then fails with ChannelFull when neither has room.
async fn producer_fills_every_ring(queue: &AsyncQueueClient) {
    let mut producer = queue.producer(&["big"]);
    let mut sent = 0u64;
    let error = loop {
        match producer.send(vec![7u8; 100_000]).await {
            Ok(()) => sent += 1,
            Err(error) => break error,
        }
        if sent > 100 {
            break producer.flush().await.expect_err("two 1 MiB rings fill");
        }
    };
    assert!(
        matches!(
            &error,
            ClientError::Status {
                status: Status::ChannelFull,
                ..
            }
        ),
        "{error:?}"
    );
    let big = queue.get_channel_size_per_node("big").await.expect("sizes");
    assert!(
        big.iter().all(|(_, size)| size.records >= 9),
        "both filled: {big:?}"
    );
}

/// The queue operations the other tests leave out: sizes, channels of the nodes that answer,
/// and the producer (Produce), whose values a full node does not store go to the other node.
#[test]
fn queue_sizes_and_the_producer() {
    let mut cluster = RealCluster::start(0, 0, 2);
    run(async {
        let c = connect(&cluster, options()).await;
        let queue = c.queue();
        let mut producer = queue.producer(&["made", "copied"]);
        for i in 0..5000u32 {
            producer
                .send(format!("v{i}").into_bytes())
                .await
                .expect("send");
        }
        let empty = producer.send(Vec::new()).await.expect_err("empty value");
        assert!(empty.to_string().contains("empty"), "{empty}");
        assert_eq!(producer.finish().await.expect("finish"), 5000);
        let per_node = queue
            .get_channel_size_per_node("made")
            .await
            .expect("sizes");
        assert_eq!(per_node.len(), 2);
        assert!(
            per_node.iter().all(|(_, size)| size.records > 0),
            "spread: {per_node:?}"
        );
        let made = queue.get_channel_size("made").await.expect("size");
        assert_eq!(made.records, 5000);
        assert_eq!(
            queue
                .get_channel_size("copied")
                .await
                .expect("size")
                .records,
            5000
        );
        let size = queue.get_size().await.expect("size");
        assert_eq!(size.records, 10_000, "both channels of both nodes");
        let mut popped = BTreeSet::new();
        while let Some(value) = queue.pop("made").await.expect("pop") {
            popped.insert(value);
        }
        assert_eq!(popped.len(), 5000, "each value once");

        producer_fills_every_ring(queue).await;

        cluster.queue[1].kill9();
        seen_down(
            queue.blocking().clone(),
            client::queue::QueueClient::client,
            1,
        )
        .await;
        let channels = queue.get_channels_partial().await.expect("channels");
        assert_eq!(channels.value, ["big", "copied", "made"]);
        assert_eq!(channels.missing[0].0, cluster.queue[1].addr);
        let sizes = queue.get_size_partial().await.expect("sizes");
        assert_eq!(sizes.missing.len(), 1);
        let one = queue
            .get_channel_size_partial("copied")
            .await
            .expect("size");
        assert_eq!(one.value.records, per_node[0].1.records);
        let per = queue.get_channel_size_per_node_partial("copied").await;
        assert_eq!(per.expect("sizes").value.len(), 1);
        assert!(queue
            .get_size()
            .await
            .expect_err("needs all")
            .is_node_down());
        let mut producer = queue.producer(&["after"]);
        producer.send(b"one".to_vec()).await.expect("send");
        assert_eq!(producer.finish().await.expect("to the live node"), 1);
    });
}

/// Records in the cluster before it grows (the blocking client's test moves 200 000).
const MOVING_RECORDS: u64 = 40_000;

/// What the writer and reader tasks of [`async_writes_and_reads_go_on_through_a_redistribution`]
/// did while records moved.
#[derive(Default)]
struct MoveLoad {
    written: Vec<u64>,
    reads: u64,
    errors: Vec<String>,
}

/// An async writer of new keys (from `first_key` on) and reader of loaded and just-written
/// ones, until `stop`.
async fn load_while_moving(
    dht: AsyncDhtClient,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    first_key: u64,
) -> MoveLoad {
    use std::sync::atomic::Ordering;
    let mut load = MoveLoad::default();
    let mut key = first_key;
    let mut step = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match dht.put("moving", key, &value_of(key)).await {
            Ok(()) => load.written.push(key),
            Err(error) => load.errors.push(format!("put {key}: {error}")),
        }
        key += 1;
        step += 1;
        // A loaded record spread over the keys, then the last write.
        for key in [step.wrapping_mul(7919) % MOVING_RECORDS, key - 1] {
            match dht.get("moving", key).await {
                Ok(Some(value)) if value == value_of(key) => {}
                other => load.errors.push(format!("get {key}: {other:?}")),
            }
            load.reads += 1;
        }
    }
    load
}

/// `swarmctl dht redistribute --execute` over `nodes`, off the runtime's workers.
async fn redistribute(nodes: Vec<SocketAddr>) -> std::process::Output {
    let swarmctl = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_swarmctl"));
        for node in &nodes {
            command.arg("--node").arg(node.to_string());
        }
        command
            .args(["--timeout-ms", "20000", "dht", "redistribute", "--execute"])
            .output()
            .expect("swarmctl runs")
    });
    swarmctl.await.expect("swarmctl")
}

/// The async dht client through a redistribution (the blocking client's case in
/// dht_redistribute.rs): a two-node cluster grows to three while tasks write and read; the
/// WrongNode and moving-record fallbacks keep every request right, and afterwards every
/// record is where the new ranges say.
#[test]
fn async_writes_and_reads_go_on_through_a_redistribution() {
    use node_core::protocol::dht::{split_evenly, HashRange};
    let mut ranges = split_evenly(2);
    ranges.push(HashRange::EMPTY);
    let cluster = RealCluster::start_with_ranges(ranges, 0, 0);
    let nodes = real_cluster::addrs(&cluster.dht);
    run(async {
        let dht = AsyncDhtClient::connect(&nodes, options())
            .await
            .expect("connect");
        let records: Vec<(u64, Vec<u8>)> = (0..MOVING_RECORDS)
            .map(|key| (key, value_of(key)))
            .collect();
        dht.put_batch("moving", records).await.expect("load");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks: Vec<_> = (1..=4u64)
            .map(|task| {
                let first_key = task << 40;
                tokio::spawn(load_while_moving(dht.clone(), stop.clone(), first_key))
            })
            .collect();
        let output = redistribute(nodes).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut written = Vec::new();
        for task in tasks {
            let load = task.await.expect("load task");
            assert!(
                load.errors.is_empty(),
                "errors: {:?}",
                &load.errors[..load.errors.len().min(5)]
            );
            assert!(
                load.reads > 0 && !load.written.is_empty(),
                "the tasks worked during the move"
            );
            written.extend(load.written);
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("the ranges tile the hash space"),
            "{stdout}"
        );
        dht.refresh_ranges().await.expect("ranges");
        let table = dht.blocking().range_table();
        let now: Vec<HashRange> = table.entries().iter().map(|(_, range)| *range).collect();
        assert_eq!(now, split_evenly(3), "the new node took its share");
        let total = MOVING_RECORDS + written.len() as u64;
        for key in (0..MOVING_RECORDS).step_by(37).chain(written) {
            assert_eq!(
                dht.get("moving", key).await.expect("get"),
                Some(value_of(key)),
                "{key}"
            );
        }
        let size = dht.get_channel_size("moving").await.expect("size");
        assert_eq!(size.records, total, "each record on one node, none lost");
    });
}

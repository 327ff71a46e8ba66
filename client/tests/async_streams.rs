//! Many async streams on one tokio runtime, against real nodes: 1000 dht Listens, then 500
//! queue consumers, open at once cost the process no thread each; 200 logfiles GetRange reads
//! at once (merged reads, which run on a thread each) never hold more than
//! `MAX_STREAM_THREADS` threads. The process's thread count
//! (`Threads:` of /proc/self/status) is read with every stream open and receiving, so this
//! binary has one test, whose phases run one after the other: no other test's threads are
//! counted.

mod real_cluster;

use client::asynchronous::{
    AsyncConsumer, AsyncDhtClient, AsyncLogClient, AsyncQueueClient, MAX_STREAM_THREADS,
};
use client::dht::ListenEvent;
use client::logfiles::ValueFilter;
use real_cluster::{options, RealCluster};
use std::collections::BTreeSet;
use std::time::Duration;

const LISTENERS: usize = 1000;
/// Consumers of one subscriber sharing a channel's records (each holds a stream on each of
/// two queue nodes; the nodes' in-flight limit, 1024 per connection, leaves room for their
/// acknowledgements).
const CONSUMERS: usize = 500;
const RECORDS: usize = 2000;
/// Merged reads at once, and the records each reads.
const READS: usize = 200;
const READ_RECORDS: u64 = 2000;
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
fn thousands_of_streams_on_one_runtime_hold_no_thread_each_and_reads_a_bounded_few() {
    let cluster = RealCluster::start(2, 2, 2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(listens(real_cluster::addrs(&cluster.dht)));
    runtime.block_on(consumers(real_cluster::addrs(&cluster.queue)));
    runtime.block_on(ranges(real_cluster::addrs(&cluster.logfiles)));
}

/// 1000 Listens on one channel, each seeing every change of both nodes.
async fn listens(nodes: Vec<std::net::SocketAddr>) {
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
}

/// One consumer task: takes records until told the run is over, sending each to `taken`.
async fn consume(
    mut consumer: AsyncConsumer,
    taken: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> AsyncConsumer {
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        let next = consumer.next(Duration::from_millis(50)).await;
        if let Some(record) = next.expect("a record or none") {
            taken.send(record).expect("collector");
        }
    }
    consumer
}

async fn consumers(nodes: Vec<std::net::SocketAddr>) {
    let queue = AsyncQueueClient::connect(&nodes, options())
        .await
        .expect("connect");
    queue.subscribe("jobs", "workers").await.expect("subscribe");
    let baseline = threads_now();
    let mut consumers = Vec::with_capacity(CONSUMERS);
    for _ in 0..CONSUMERS {
        consumers.push(queue.consume("jobs", "workers", 16).await.expect("consume"));
    }
    let open = threads_now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (taken, mut collected) = tokio::sync::mpsc::unbounded_channel();
    let tasks: Vec<_> = consumers
        .into_iter()
        .map(|consumer| tokio::spawn(consume(consumer, taken.clone(), done.clone())))
        .collect();
    for i in 0..RECORDS {
        queue
            .push("jobs", format!("job-{i}").as_bytes())
            .await
            .expect("push");
    }
    let mut seen = BTreeSet::new();
    while seen.len() < RECORDS {
        let record = tokio::time::timeout(Duration::from_secs(60), collected.recv()).await;
        let record = record.expect("records in time").expect("open");
        assert!(seen.insert(record), "a record taken twice");
    }
    let receiving = threads_now();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.expect("consumer").stop().await.expect("stop");
    }
    let bound = baseline + BLOCKING_THREADS + SLACK_THREADS;
    assert!(
        open <= bound && receiving <= bound,
        "{CONSUMERS} consumers: {baseline} threads before, {open} with them open, \
         {receiving} while they received (bound {bound})"
    );
}

/// One reader: the whole range, slowly (a pause every 100 records), so the reads overlap.
async fn read_slowly(logs: AsyncLogClient) {
    let mut records = logs
        .get_range("events", 0, READ_RECORDS - 1, &ValueFilter::All)
        .expect("open");
    let mut expected = 0u64;
    while let Some(record) = records.next().await {
        let (key, value) = record.expect("record");
        assert_eq!((key, value), (expected, expected.to_le_bytes().to_vec()));
        expected += 1;
        if expected.is_multiple_of(100) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert_eq!(expected, READ_RECORDS, "every record, in key order");
}

/// 200 merged reads at once: every one completes, and the threads they run on never exceed
/// the bound (sampled every 2 ms while they run).
async fn ranges(nodes: Vec<std::net::SocketAddr>) {
    let logs = AsyncLogClient::connect(&nodes, options())
        .await
        .expect("connect");
    let records = (0..READ_RECORDS).map(|key| (key, key.to_le_bytes().to_vec()));
    logs.put_batch("events", records.collect())
        .await
        .expect("load");
    let baseline = threads_now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(threads_now());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            most
        })
    };
    let readers: Vec<_> = (0..READS)
        .map(|_| tokio::spawn(read_slowly(logs.clone())))
        .collect();
    for reader in readers {
        reader.await.expect("every read completes");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = sampler.await.expect("sampler");
    let bound = baseline + MAX_STREAM_THREADS + BLOCKING_THREADS + SLACK_THREADS;
    assert!(
        most <= bound,
        "{READS} reads: {baseline} threads before, at most {most} while they ran (bound {bound})"
    );
    assert!(
        most > baseline + MAX_STREAM_THREADS / 2,
        "the reads ran side by side ({most} threads at most, {baseline} before): the bound was tested"
    );
}

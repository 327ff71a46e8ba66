//! The cluster keeps serving when nodes are down, through the client library, on a real cluster
//! (3 dht, 2 logfiles and 2 queue node processes on OS-chosen loopback ports):
//!
//! - [`one_node_of_each_kind_killed_and_restarted_on_the_same_port`]: a writer and a reader per
//!   kind run while one node of each kind is killed with SIGKILL and later restarted on the same
//!   port. While it is down, every operation on keys of live dht nodes succeeds, those on the dead
//!   node's keys fail at once with `ClientError::NodeDown`, logfiles and queue writes all land on
//!   the live nodes, and fan-out reads say which node is missing. A client started while the
//!   nodes are down passes the same checks. After the restart, every key works again within 5 s,
//!   with no client restart, and a listener and a consumer resume on the restarted nodes.
//! - [`a_client_that_never_saw_a_down_node_routes_by_the_topology`]: the ranges the topology
//!   states (or, for one unknown node, the gap the others leave) tell a client that never saw
//!   a node where its keys are.
//! - [`membership_follows_the_topology_file`]: nodes added to and removed from a followed
//!   topology file are connected to and retired, with no restart;
//!   [`reload_topology_reads_the_file_when_asked`]: the same through the API call.
//!
//! "At once" is checked as: the error is `NodeDown` (returned without a connect attempt, see
//! `node_set`), and every such request took less than [`FAIL_FAST`], a quarter of the 2 s
//! connect timeout a request would otherwise wait (it takes microseconds; the bound only has to
//! tell the two apart on a busy machine). The time measured is printed.

mod real_cluster;

use client::dht::GetAllOptions;
use client::logfiles::{LogClient, ValueFilter};
use client::queue::QueueClient;
use client::{ClientError, DhtClient, NodeState, Topology};
use real_cluster::{options, wait_until, RealCluster};
use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keys of the dht channel the tests use.
const KEYS: u64 = 240;
/// A quarter of the default connect timeout (2 s): see the module documentation.
const FAIL_FAST: Duration = Duration::from_millis(500);
/// After a restart, everything works again within this.
const BACK_WITHIN: Duration = Duration::from_secs(5);
/// The down window: long enough for every worker to meet the dead nodes many times.
const DOWN_FOR: Duration = Duration::from_millis(1200);

const BEFORE: u8 = 0;
const KILLING: u8 = 1;
const DOWN: u8 = 2;
const RESTARTING: u8 = 3;
const AFTER: u8 = 4;
/// An operation that started in one phase and ended in another (other than one that started
/// while the node was known to be down, which is judged by its start): like a transition.
const MIXED: u8 = 5;

/// The phase of the test, as the workers see it when they start an operation.
struct Clock {
    phase: AtomicU8,
    stop: AtomicBool,
}

/// One operation of a worker: the phase it started in, how long it took, what came of it.
struct Op<T> {
    phase: u8,
    took: Duration,
    outcome: T,
}

/// Runs `op(seq)` for seq = 0, 1, ... until the clock stops, a millisecond apart; each
/// operation is recorded with its phase ([`MIXED`] if the phase changed while it ran).
fn worker<T: Send + 'static>(
    clock: &Arc<Clock>,
    mut op: impl FnMut(u64) -> T + Send + 'static,
) -> std::thread::JoinHandle<Vec<Op<T>>> {
    let clock = Arc::clone(clock);
    std::thread::spawn(move || {
        let mut done = Vec::new();
        let mut seq = 0;
        while !clock.stop.load(Ordering::Acquire) {
            let phase = clock.phase.load(Ordering::Acquire);
            let started = Instant::now();
            let outcome = op(seq);
            let took = started.elapsed();
            let ended = clock.phase.load(Ordering::Acquire);
            let phase = if phase == ended || phase == DOWN {
                phase
            } else {
                MIXED
            };
            done.push(Op {
                phase,
                took,
                outcome,
            });
            seq += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        done
    })
}

/// The three clients of one topology.
struct Clients {
    dht: Arc<DhtClient>,
    logs: Arc<LogClient>,
    queue: Arc<QueueClient>,
}

impl Clients {
    fn connect(topology: &Path) -> Clients {
        let topology = Topology::load(topology).expect("topology");
        Clients {
            dht: Arc::new(DhtClient::from_topology(&topology, options()).expect("dht client")),
            logs: Arc::new(LogClient::from_topology(&topology, options()).expect("log client")),
            queue: Arc::new(
                QueueClient::from_topology(&topology, options()).expect("queue client"),
            ),
        }
    }
}

/// Which nodes are killed: dht node 1, logfiles node 0, queue node 1.
struct Victims {
    dht: usize,
    log: usize,
    queue: usize,
    dht_addr: SocketAddr,
    log_addr: SocketAddr,
    queue_addr: SocketAddr,
}

fn is_down(client: &client::Client, node: usize) -> bool {
    matches!(
        client.node_status(node).map(|status| status.state),
        Some(NodeState::Down { .. })
    )
}

/// Asserts that `error` is the fail-fast error of the killed dht node.
fn assert_node_down(error: &ClientError, dead: SocketAddr, took: Duration, what: &str) {
    assert!(
        matches!(error, ClientError::NodeDown { node, .. } if *node == dead),
        "{what}: expected NodeDown of {dead}, got {error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with(&format!("node {dead}: down: ")),
        "{error}"
    );
    assert!(
        took < FAIL_FAST,
        "{what}: failed after {took:?}, not at once"
    );
}

#[test]
fn one_node_of_each_kind_killed_and_restarted_on_the_same_port() {
    let mut cluster = RealCluster::start(3, 2, 2);
    let plain = cluster.write_topology("plain.toml", false);
    let a = Clients::connect(&plain);
    for key in 0..KEYS {
        a.dht
            .put("users", key, format!("v{key}").as_bytes())
            .expect("preload");
    }
    let victims = Victims {
        dht: 1,
        log: 0,
        queue: 1,
        dht_addr: cluster.dht[1].addr,
        log_addr: cluster.logfiles[0].addr,
        queue_addr: cluster.queue[1].addr,
    };
    let owners: Vec<usize> = (0..KEYS)
        .map(|key| a.dht.node_for(key).expect("tiled"))
        .collect();
    let dead_keys: Vec<u64> = (0..KEYS)
        .filter(|k| owners[*k as usize] == victims.dht)
        .collect();
    assert!(!dead_keys.is_empty() && dead_keys.len() < KEYS as usize);

    let clock = Arc::new(Clock {
        phase: AtomicU8::new(BEFORE),
        stop: AtomicBool::new(false),
    });
    let streams = Streams::start(&a);
    let workers = Workers::start(&a, &clock);
    std::thread::sleep(Duration::from_millis(300));

    clock.phase.store(KILLING, Ordering::Release);
    cluster.dht[victims.dht].kill9();
    cluster.logfiles[victims.log].kill9();
    cluster.queue[victims.queue].kill9();
    wait_until("client A to see the killed nodes down", BACK_WITHIN, || {
        is_down(a.dht.client(), victims.dht)
            && is_down(a.logs.client(), victims.log)
            && is_down(a.queue.client(), victims.queue)
    });
    clock.phase.store(DOWN, Ordering::Release);
    let down_since = Instant::now();
    fan_outs_name_the_missing_nodes(&a, &victims, &owners);
    // A client started now, while the nodes are down, passes the same checks.
    let b = Clients::connect(&plain);
    serves_while_down(&b, &victims, &owners);
    std::thread::sleep(DOWN_FOR.saturating_sub(down_since.elapsed()));

    clock.phase.store(RESTARTING, Ordering::Release);
    cluster.dht[victims.dht].restart();
    cluster.logfiles[victims.log].restart();
    cluster.queue[victims.queue].restart();
    let restarted = Instant::now();
    every_key_works_again(&[&a, &b], &victims, &dead_keys);
    let back_after = restarted.elapsed();
    assert!(back_after <= BACK_WITHIN, "back after {back_after:?}");
    println!("every key worked again {back_after:?} after the restart");
    clock.phase.store(AFTER, Ordering::Release);
    streams.resume_on_the_restarted_nodes(&a, &victims, &dead_keys);
    std::thread::sleep(Duration::from_millis(300));

    clock.stop.store(true, Ordering::Release);
    workers.check(&a, &victims, &owners);
    streams.stop();
}

/// While the nodes are down: fan-out reads return what the live nodes hold and name the
/// missing node; the complete-only ones fail with its error.
fn fan_outs_name_the_missing_nodes(a: &Clients, victims: &Victims, owners: &[usize]) {
    let size = a.dht.get_size_partial().expect("partial size");
    assert_eq!(missing_addrs(&size.missing), [victims.dht_addr]);
    assert!(matches!(
        a.dht.get_size(),
        Err(ClientError::NodeDown { node, .. }) if node == victims.dht_addr
    ));
    let mut records = a.dht.get_all_partial("users", GetAllOptions::default());
    let keys: BTreeSet<u64> = records.by_ref().map(|r| r.expect("record").0).collect();
    assert_eq!(missing_addrs(records.missing()), [victims.dht_addr]);
    assert!(!records.is_complete());
    let live: BTreeSet<u64> = (0..KEYS)
        .filter(|k| owners[*k as usize] != victims.dht)
        .collect();
    assert!(
        live.is_subset(&keys) && keys.iter().all(|k| live.contains(k) || *k >= KEYS),
        "GetAll returns exactly the live nodes' records"
    );
    let channels = a.dht.get_channels_partial().expect("channels");
    assert!(channels.value.contains(&"users".to_string()));
    assert_eq!(missing_addrs(&channels.missing), [victims.dht_addr]);
    let log_size = a.logs.size_partial(None).expect("log size");
    assert_eq!(missing_addrs(&log_size.missing), [victims.log_addr]);
    let queue_size = a.queue.get_size_partial().expect("queue size");
    assert_eq!(missing_addrs(&queue_size.missing), [victims.queue_addr]);
}

/// Keys of live nodes work, keys of the dead node fail at once with NodeDown, and writes of
/// logfiles and queue land on the live nodes.
fn serves_while_down(clients: &Clients, victims: &Victims, owners: &[usize]) {
    for key in 0..KEYS {
        let started = Instant::now();
        let put = clients.dht.put("users", key, b"late");
        let took = started.elapsed();
        if owners[key as usize] == victims.dht {
            let error = put.expect_err("the dead node's key");
            assert_node_down(&error, victims.dht_addr, took, "late client put");
            let started = Instant::now();
            let error = clients.dht.get("users", key).expect_err("dead");
            assert_node_down(
                &error,
                victims.dht_addr,
                started.elapsed(),
                "late client get",
            );
        } else {
            put.expect("a live node's key");
            assert_eq!(
                clients.dht.get("users", key).expect("get").as_deref(),
                Some(&b"late"[..])
            );
        }
    }
    for n in 0..8 {
        let node = clients.logs.put("late", n, b"x").expect("log put");
        assert_ne!(node, victims.log, "a log write landed on the dead node");
        let node = clients.queue.push("late", b"x").expect("queue push");
        assert_ne!(node, victims.queue, "a push landed on the dead node");
    }
}

/// Waits until every key of the restarted dht node works for every client, and the restarted
/// logfiles and queue nodes take writes again.
fn every_key_works_again(clients: &[&Clients], victims: &Victims, dead_keys: &[u64]) {
    wait_until("every key to work again", BACK_WITHIN, || {
        clients.iter().all(|c| {
            dead_keys.iter().all(|&key| {
                c.dht.put("users", key, b"back").is_ok()
                    && c.dht.get("users", key).ok().flatten().as_deref() == Some(&b"back"[..])
            })
        })
    });
    for c in clients {
        wait_until(
            "a log write to reach the restarted node",
            BACK_WITHIN,
            || c.logs.put("back", 1, b"x").ok() == Some(victims.log),
        );
        wait_until("a push to reach the restarted node", BACK_WITHIN, || {
            c.queue.push("back", b"x").ok() == Some(victims.queue)
        });
    }
}

fn missing_addrs(missing: &[(SocketAddr, ClientError)]) -> Vec<SocketAddr> {
    missing.iter().map(|(addr, _)| *addr).collect()
}

/// A worker thread, and what each of its operations did.
type Worker<T> = std::thread::JoinHandle<Vec<Op<T>>>;
/// A dht put or get: the key, and the outcome.
type DhtOp<T> = (u64, Result<T, ClientError>);
/// A logfiles put or queue push: what was written, and the node that took it.
type Write<T> = (T, Result<usize, ClientError>);
/// A partial logfiles read: the nodes it missed.
type LogRead = Result<Vec<SocketAddr>, ClientError>;

/// The writer and reader of each kind, on client A.
struct Workers {
    clock: Arc<Clock>,
    dht_writer: Worker<DhtOp<()>>,
    dht_reader: Worker<DhtOp<Option<Vec<u8>>>>,
    log_writer: Worker<Write<u64>>,
    log_reader: Worker<LogRead>,
    queue_writer: Worker<Write<Vec<u8>>>,
    queue_reader: Worker<PopOutcome>,
}

/// A pop: the value, and the nodes that could not be asked with their errors.
type PopOutcome = Result<(Option<Vec<u8>>, Vec<(SocketAddr, ClientError)>), ClientError>;

impl Workers {
    fn start(a: &Clients, clock: &Arc<Clock>) -> Workers {
        let dht = Arc::clone(&a.dht);
        let dht_writer = worker(clock, move |seq| {
            let key = seq % KEYS;
            (key, dht.put("users", key, format!("w{seq}").as_bytes()))
        });
        let dht = Arc::clone(&a.dht);
        let dht_reader = worker(clock, move |seq| {
            let key = (seq * 7) % KEYS;
            (key, dht.get("users", key))
        });
        let logs = Arc::clone(&a.logs);
        let log_writer = worker(clock, move |seq| (seq, logs.put("events", seq, b"e")));
        let logs = Arc::clone(&a.logs);
        let log_reader = worker(clock, move |_| {
            let mut records = logs.get_range_partial("events", 0, u64::MAX, &ValueFilter::All)?;
            for record in records.by_ref() {
                record?;
            }
            Ok(missing_addrs(records.missing()))
        });
        let queue = Arc::clone(&a.queue);
        let queue_writer = worker(clock, move |seq| {
            let value = format!("j{seq}").into_bytes();
            let pushed = queue.push("jobs", &value);
            (value, pushed)
        });
        let queue = Arc::clone(&a.queue);
        let queue_reader = worker(clock, move |_| {
            let popped = queue.pop_partial("jobs")?;
            Ok((popped.value, popped.missing))
        });
        Workers {
            clock: Arc::clone(clock),
            dht_writer,
            dht_reader,
            log_writer,
            log_reader,
            queue_writer,
            queue_reader,
        }
    }

    fn check(self, a: &Clients, victims: &Victims, owners: &[usize]) {
        assert!(self.clock.stop.load(Ordering::Acquire));
        let writes = join(self.dht_writer).into_iter().map(|op| Op {
            phase: op.phase,
            took: op.took,
            outcome: (op.outcome.0, op.outcome.1.map(drop)),
        });
        let reads = join(self.dht_reader).into_iter().map(|op| Op {
            phase: op.phase,
            took: op.took,
            outcome: (op.outcome.0, op.outcome.1.map(drop)),
        });
        let mut slowest = Duration::ZERO;
        let mut fast_failures = 0;
        for op in writes.chain(reads) {
            let (key, outcome) = op.outcome;
            let dead = owners[key as usize] == victims.dht;
            slowest = check_dht_op(&op.phase, op.took, dead, outcome, victims).max(slowest);
            fast_failures += usize::from(dead && op.phase == DOWN);
        }
        assert!(
            fast_failures > 10,
            "the workers met the dead node while it was down"
        );
        println!("{fast_failures} requests to the dead dht node failed with NodeDown; the slowest took {slowest:?}");
        let on_live_log_node = check_log_ops(join(self.log_writer), join(self.log_reader), victims);
        let complete: HashSet<u64> = a
            .logs
            .get_range("events", 0, u64::MAX, &ValueFilter::All)
            .expect("read after the restart")
            .map(|record| record.expect("complete read").0)
            .collect();
        assert!(
            on_live_log_node.iter().all(|seq| complete.contains(seq)),
            "every record written to the live logfiles node is there"
        );
        check_queue_ops(join(self.queue_writer), join(self.queue_reader), a, victims);
    }
}

fn join<T>(handle: std::thread::JoinHandle<T>) -> T {
    handle.join().expect("worker thread")
}

/// A dht operation by phase: live keys always work; the dead node's keys fail at once with
/// NodeDown while it is down, and may fail around the kill and the restart. Returns how long a
/// NodeDown failure took (zero otherwise).
fn check_dht_op(
    phase: &u8,
    took: Duration,
    dead: bool,
    outcome: Result<(), ClientError>,
    victims: &Victims,
) -> Duration {
    match (dead, *phase, outcome) {
        (false, _, outcome) => {
            outcome.expect("an operation on a live node's key");
            Duration::ZERO
        }
        (true, BEFORE | AFTER, outcome) => {
            outcome.expect("the key's node was up");
            Duration::ZERO
        }
        (true, DOWN, outcome) => {
            let error = outcome.expect_err("the key's node is down");
            assert_node_down(&error, victims.dht_addr, took, "worker");
            took
        }
        (true, _, Err(error)) => {
            assert!(error.is_node_down(), "around a kill or restart: {error:?}");
            Duration::ZERO
        }
        (true, _, Ok(())) => Duration::ZERO,
    }
}

/// Logfiles: every write succeeds, on the live node while the other is down; every partial read
/// succeeds, naming the dead node while it is down. Returns the keys written to the live node.
fn check_log_ops(
    writes: Vec<Op<Write<u64>>>,
    reads: Vec<Op<LogRead>>,
    victims: &Victims,
) -> Vec<u64> {
    let mut on_live = Vec::new();
    for op in writes {
        let (seq, outcome) = op.outcome;
        let node = outcome.expect("a logfiles write");
        if op.phase == DOWN {
            assert_ne!(node, victims.log, "a write landed on the dead node");
        }
        if node != victims.log {
            on_live.push(seq);
        }
    }
    let mut down_reads = 0;
    for op in reads {
        let missing = op.outcome.expect("a partial read");
        match op.phase {
            DOWN => {
                assert_eq!(missing, [victims.log_addr]);
                down_reads += 1;
            }
            BEFORE | AFTER => assert!(missing.is_empty(), "{missing:?}"),
            _ => {}
        }
    }
    assert!(down_reads > 0);
    on_live
}

/// Queue: every push succeeds, on the live node while the other is down; every pop succeeds;
/// an empty answer names the dead node while it is down. Then every value pushed comes out,
/// except at most those of the pops lost in flight at the kill.
fn check_queue_ops(
    pushes: Vec<Op<Write<Vec<u8>>>>,
    pops: Vec<Op<PopOutcome>>,
    a: &Clients,
    victims: &Victims,
) {
    let mut pushed = HashSet::new();
    for op in pushes {
        let (value, outcome) = op.outcome;
        let node = outcome.expect("a push");
        if op.phase == DOWN {
            assert_ne!(node, victims.queue, "a push landed on the dead node");
        }
        pushed.insert(value);
    }
    let mut received = HashSet::new();
    let mut lost_in_flight = 0;
    for op in pops {
        let (value, missing) = op.outcome.expect("a partial pop");
        lost_in_flight += missing
            .iter()
            .filter(|(_, error)| !matches!(error, ClientError::NodeDown { .. }))
            .count();
        if op.phase == DOWN && value.is_none() {
            assert_eq!(missing_addrs(&missing), [victims.queue_addr]);
        }
        received.extend(value);
    }
    while let Some(value) = a.queue.pop("jobs").expect("drain after the restart") {
        received.insert(value);
    }
    let lost = pushed.difference(&received).count();
    assert!(
        lost <= lost_in_flight,
        "{lost} pushed values never came out ({lost_in_flight} pops were lost in flight)"
    );
}

/// What a listener heard: keys and values.
type Heard = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// A listener and a consumer on client A, running through the failure.
struct Streams {
    stop: Arc<AtomicBool>,
    changes: Heard,
    consumed: Arc<Mutex<Vec<Vec<u8>>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Streams {
    fn start(a: &Clients) -> Streams {
        let stop = Arc::new(AtomicBool::new(false));
        let changes = Arc::new(Mutex::new(Vec::new()));
        let consumed = Arc::new(Mutex::new(Vec::new()));
        let (dht, seen, done) = (Arc::clone(&a.dht), Arc::clone(&changes), Arc::clone(&stop));
        let listener = std::thread::spawn(move || {
            let mut listener = dht.listen_partial("users").expect("listen");
            while !done.load(Ordering::Acquire) {
                if let Ok(Some(client::dht::ListenEvent::Changed { key, value })) =
                    listener.next(Duration::from_millis(50))
                {
                    seen.lock().expect("lock").push((key, value));
                }
            }
        });
        let (queue, got, done) = (
            Arc::clone(&a.queue),
            Arc::clone(&consumed),
            Arc::clone(&stop),
        );
        let consumer = std::thread::spawn(move || {
            let mut consumer = queue.consume_partial("tasks", "", 0).expect("consume");
            while !done.load(Ordering::Acquire) {
                if let Ok(Some(value)) = consumer.next(Duration::from_millis(50)) {
                    got.lock().expect("lock").push(value);
                }
            }
            let _ = consumer.stop();
        });
        Streams {
            stop,
            changes,
            consumed,
            threads: vec![listener, consumer],
        }
    }

    /// After the restart: a change on the restarted dht node reaches the listener, and a value
    /// pushed to the restarted queue node reaches the consumer, each within 5 s.
    fn resume_on_the_restarted_nodes(&self, a: &Clients, victims: &Victims, dead_keys: &[u64]) {
        let key = dead_keys[0];
        let mut round = 0u32;
        wait_until(
            "the listener to hear the restarted node",
            BACK_WITHIN,
            || {
                round += 1;
                let value = format!("resumed {round}").into_bytes();
                a.dht
                    .put("users", key, &value)
                    .expect("put on the restarted node");
                std::thread::sleep(Duration::from_millis(100));
                let heard = self.changes.lock().expect("lock");
                heard
                    .iter()
                    .any(|(k, v)| *k == key && v.starts_with(b"resumed"))
            },
        );
        let mut on_restarted = Vec::new();
        wait_until(
            "the consumer to take from the restarted node",
            BACK_WITHIN,
            || {
                let value = format!("task {}", on_restarted.len() + round as usize).into_bytes();
                if a.queue.push("tasks", &value).expect("push") == victims.queue {
                    on_restarted.push(value);
                }
                std::thread::sleep(Duration::from_millis(50));
                let got = self.consumed.lock().expect("lock");
                on_restarted.iter().any(|value| got.contains(value))
            },
        );
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for thread in self.threads {
            thread.join().expect("stream thread");
        }
    }
}

#[test]
fn a_client_that_never_saw_a_down_node_routes_by_the_topology() {
    let mut cluster = RealCluster::start(3, 0, 0);
    // Killed before any client of this process saw them: only the topology knows their ranges.
    cluster.dht[1].kill9();
    cluster.dht[2].kill9();
    let ranged = cluster.write_topology("ranged.toml", true);
    let topology = Topology::load(&ranged).expect("topology");
    let dht = DhtClient::from_topology(&topology, options()).expect("starts with nodes down");
    let owner = |key: u64| {
        cluster
            .ranges
            .iter()
            .position(|r| r.is_responsible_for(key))
    };
    for key in 0..KEYS {
        let started = Instant::now();
        let put = dht.put("users", key, b"v");
        match owner(key) {
            Some(0) => put.expect("the live node's key"),
            Some(node) => {
                let error = put.expect_err("a dead node's key");
                assert_node_down(&error, cluster.dht[node].addr, started.elapsed(), "put");
            }
            None => unreachable!("the ranges tile the space"),
        }
    }
    // Without the ranges, keys of the two unknown nodes cannot be told apart.
    let plain = cluster.write_topology("plain.toml", false);
    let topology = Topology::load(&plain).expect("topology");
    let unsure = DhtClient::from_topology(&topology, options()).expect("starts");
    let dead_key = (0..KEYS)
        .find(|k| owner(*k) == Some(2))
        .expect("a key of node 2");
    match unsure.put("users", dead_key, b"v") {
        Err(ClientError::OwnerDown { candidates, .. }) => {
            assert_eq!(candidates, [cluster.dht[1].addr, cluster.dht[2].addr])
        }
        other => panic!("expected OwnerDown, got {other:?}"),
    }
    // With one of them back, the other is the only unknown: its keys fail with NodeDown, and
    // the one back serves its keys again with no client restart.
    cluster.dht[1].restart();
    let live_key = (0..KEYS)
        .find(|k| owner(*k) == Some(1))
        .expect("a key of node 1");
    wait_until("node 1 to serve its keys", BACK_WITHIN, || {
        unsure.put("users", live_key, b"v").is_ok()
    });
    let error = unsure
        .put("users", dead_key, b"v")
        .expect_err("node 2 is down");
    assert!(
        matches!(error, ClientError::NodeDown { node, .. } if node == cluster.dht[2].addr),
        "{error:?}"
    );
}

/// A topology file the membership tests rewrite: the cluster's nodes by index.
struct TopologyFile {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TopologyFile {
    fn new() -> TopologyFile {
        let dir = tempfile::tempdir().expect("temp dir");
        TopologyFile {
            path: dir.path().join("topology.toml"),
            _dir: dir,
        }
    }

    /// Lists the dht nodes `dht` (with their ranges) and the logfiles nodes `logs`; written
    /// aside and renamed over, as careful tools (and editors) do.
    fn write(&self, cluster: &RealCluster, dht: &[usize], logs: &[usize]) {
        let dht: Vec<String> = dht
            .iter()
            .map(|&i| {
                format!(
                    "{{ addr = \"{}\", range = \"{}\" }}",
                    cluster.dht[i].addr, cluster.ranges[i]
                )
            })
            .collect();
        let logs: Vec<String> = logs
            .iter()
            .map(|&i| format!("\"{}\"", cluster.logfiles[i].addr))
            .collect();
        let aside = self.path.with_extension("new");
        let text = format!(
            "[dht]\nnodes = [{}]\n[logfiles]\nnodes = [{}]\n",
            dht.join(", "),
            logs.join(", ")
        );
        std::fs::write(&aside, text).expect("write");
        std::fs::rename(&aside, &self.path).expect("rename");
    }
}

/// Options for a half-tiled dht cluster, watching the topology file every `watch_ms`.
fn following(watch_ms: u64) -> client::ClientOptions {
    client::ClientOptions {
        allow_incomplete_ranges: true,
        topology_watch_ms: watch_ms,
        ..options()
    }
}

#[test]
fn membership_follows_the_topology_file() {
    let cluster = RealCluster::start(2, 2, 0);
    let file = TopologyFile::new();
    file.write(&cluster, &[0], &[0]);
    let dht = DhtClient::open_topology(&file.path, following(100)).expect("dht follows");
    let logs = LogClient::open_topology(&file.path, following(100)).expect("logs follow");
    let second_half = (0..KEYS)
        .find(|k| cluster.ranges[1].is_responsible_for(*k))
        .expect("a key of node 1");
    assert!(matches!(
        dht.put("users", second_half, b"v"),
        Err(ClientError::NoNodeForKey { .. })
    ));

    // Added: connected to, with no restart.
    file.write(&cluster, &[0, 1], &[0, 1]);
    wait_until("the dht client to take node 1", BACK_WITHIN, || {
        dht.put("users", second_half, b"v").is_ok()
    });
    wait_until("the log client to write to node 1", BACK_WITHIN, || {
        logs.put("ch", 1, b"v").ok() == Some(1)
    });
    assert_eq!(logs.client().active_nodes(), [0, 1]);

    // Removed: retired; the index is never used again.
    file.write(&cluster, &[0], &[1]);
    wait_until("the log client to retire node 0", BACK_WITHIN, || {
        logs.client().active_nodes() == [1]
    });
    assert!(matches!(
        logs.client()
            .request(0, client::RequestCode::GET_VERSION, &[]),
        Err(ClientError::NodeRetired { .. })
    ));
    for n in 0..4 {
        assert_eq!(logs.put("ch", n, b"v").expect("put"), 1);
    }
    wait_until("the dht client to drop node 1", BACK_WITHIN, || {
        matches!(
            dht.put("users", second_half, b"v"),
            Err(ClientError::NoNodeForKey { .. })
        )
    });

    // A file that lists no node is refused: the client keeps its nodes.
    std::fs::write(&file.path, "[dht]\nnodes = []\n").expect("write");
    let error = dht.reload_topology().expect_err("no dht nodes");
    assert!(error.to_string().contains("lists no dht nodes"), "{error}");
    assert_eq!(dht.client().active_nodes(), [0]);
    // Node 1 listed again: a new index, never node 1's old one.
    file.write(&cluster, &[0, 1], &[1]);
    wait_until("the dht client to take node 1 again", BACK_WITHIN, || {
        dht.client().active_nodes() == [0, 2]
    });
    assert_eq!(dht.client().node_addr(2), Some(cluster.dht[1].addr));
    dht.put("users", second_half, b"v")
        .expect("node 1 again, under its new index");
}

#[test]
fn reload_topology_reads_the_file_when_asked() {
    let cluster = RealCluster::start(2, 0, 0);
    let file = TopologyFile::new();
    file.write(&cluster, &[0], &[]);
    let dht = DhtClient::open_topology(&file.path, following(0)).expect("opens");
    file.write(&cluster, &[0, 1], &[]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dht.client().active_nodes(), [0], "not watched");
    let changes = dht.reload_topology().expect("reload");
    assert_eq!(changes.added, [(1, cluster.dht[1].addr)]);
    assert!(changes.removed.is_empty());
    let second_half = (0..KEYS)
        .find(|k| cluster.ranges[1].is_responsible_for(*k))
        .expect("a key of node 1");
    dht.put("users", second_half, b"v").expect("node 1 taken");
}

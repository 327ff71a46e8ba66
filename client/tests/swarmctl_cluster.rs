//! swarmctl against a real cluster (node processes, see `real_cluster`), one test per behaviour
//! operators rely on when things go wrong: per-node reports with nodes down and their exit
//! status, `health` (text and JSON) on a healthy and on a degraded cluster, a closed pipe,
//! options after the verb, channel names refused before connecting, and the value limit (its
//! message, and the memory it takes to find out).

mod common;
mod real_cluster;

use node_core::protocol::NodeKind;
use real_cluster::{path_arg, RealCluster};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn swarmctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args(args)
        .output()
        .expect("swarmctl runs")
}

fn with_topology(topology: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--timeout-ms", "5000", "--nodes", path_arg(topology)];
    all.extend_from_slice(args);
    swarmctl(&all)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

/// A listening socket that never accepts: a command that connects would show up in its queue.
fn silent_node() -> TcpListener {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    listener
}

fn assert_no_connection(listener: &TcpListener) {
    match listener.accept() {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("swarmctl connected (from {peer}) before refusing"),
        Err(error) => panic!("accept: {error}"),
    }
}

/// On a healthy cluster every report is complete, status 0; returns each kind's channels.
fn complete_reports(topology: &Path) -> Vec<String> {
    let pings = ok(with_topology(topology, &["ping"]));
    assert_eq!(
        pings.lines().filter(|l| l.contains(" kind=")).count(),
        7,
        "{pings}"
    );
    ["dht", "log", "queue"]
        .iter()
        .map(|kind| {
            ok(with_topology(topology, &[kind, "size"]));
            ok(with_topology(topology, &[kind, "channels"]))
        })
        .collect()
}

/// `size` and `channels` of each kind with one node of each kind dead: the live nodes' answer,
/// then status 3 naming the dead node.
fn partial_answers_name_the_dead_nodes(
    topology: &Path,
    dead: &[std::net::SocketAddr; 3],
    channels_before: &[String],
) {
    for (index, (kind, addr)) in [("dht", dead[0]), ("log", dead[1]), ("queue", dead[2])]
        .into_iter()
        .enumerate()
    {
        for verb in ["size", "channels"] {
            let output = with_topology(topology, &[kind, verb]);
            assert_eq!(output.status.code(), Some(3), "{kind} {verb}");
            assert_eq!(
                text(&output.stderr),
                format!(
                    "swarmctl: partial result: 1 node(s) could not answer: node {addr}: down: \
                     connection refused\n"
                ),
                "{kind} {verb}"
            );
            // What the live nodes answer: a size line; channel names they hold (the one
            // record may have gone to the dead node).
            let answer = text(&output.stdout);
            match verb {
                "size" => assert_eq!(answer.lines().count(), 1, "{kind} size: {answer}"),
                _ => assert!(
                    answer
                        .lines()
                        .all(|name| channels_before[index].lines().any(|known| known == name)),
                    "{kind} channels: {answer}"
                ),
            }
        }
    }
}

#[test]
fn ping_stats_size_and_channels_report_every_node_and_fail_with_nodes_down() {
    let mut cluster = RealCluster::start(3, 2, 2);
    let topology = cluster.write_topology("topology.toml", false);
    ok(with_topology(
        &topology,
        &["dht", "put", "users", "7", "seven"],
    ));
    ok(with_topology(
        &topology,
        &["log", "put", "web", "1", "GET /"],
    ));
    ok(with_topology(&topology, &["queue", "push", "jobs", "j1"]));
    let channels_before = complete_reports(&topology);

    let dead = [
        cluster.dht[1].addr,
        cluster.logfiles[0].addr,
        cluster.queue[1].addr,
    ];
    cluster.dht[1].kill9();
    cluster.logfiles[0].kill9();
    cluster.queue[1].kill9();

    let output = with_topology(&topology, &["ping"]);
    assert_eq!(output.status.code(), Some(3));
    let pings = text(&output.stdout);
    assert_eq!(pings.lines().count(), 7, "every node is reported: {pings}");
    assert_eq!(pings.lines().filter(|l| l.contains(" kind=")).count(), 4);
    for addr in dead {
        assert!(
            pings.contains(&format!("{addr} down: connection refused\n")),
            "{pings}"
        );
    }
    assert_eq!(text(&output.stderr), "swarmctl: 3 of 7 nodes failed\n");

    let output = with_topology(&topology, &["stats"]);
    assert_eq!(output.status.code(), Some(3));
    let stats = text(&output.stdout);
    assert_eq!(stats.lines().filter(|l| l.starts_with("# ")).count(), 7);
    assert!(stats.contains(&format!("# {} down: connection refused\n", dead[0])));
    assert!(stats
        .lines()
        .any(|line| line.starts_with("connections_open ")));

    partial_answers_name_the_dead_nodes(&topology, &dead, &channels_before);
    let output = with_topology(&topology, &["dht", "size"]);
    assert!(
        text(&output.stdout).starts_with("records "),
        "{}",
        text(&output.stdout)
    );
}

/// `health --json` of the healthy 3+2+2 cluster: every node up with its details.
fn check_healthy_json(output: Output) {
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["healthy"], true);
    assert_eq!(report["verdict"], "healthy");
    assert_eq!(report["problems"].as_array().map(Vec::len), Some(0));
    let nodes = report["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 7);
    for node in nodes {
        assert_eq!(node["state"], "up", "{node}");
        assert_eq!(node["version"], env!("CARGO_PKG_VERSION"));
        assert!(node["connections_open"]
            .as_u64()
            .is_some_and(|open| open >= 1));
        assert!(node["connections_max"].as_u64().is_some_and(|max| max > 0));
    }
    let of_kind = |kind: &str| nodes.iter().filter(|n| n["kind"] == kind).count();
    assert_eq!(
        (of_kind("dht"), of_kind("logfiles"), of_kind("queue")),
        (3, 2, 2)
    );
    let dht = &nodes[0]["dht"];
    assert_eq!(
        dht["dump_period_s"], 21_600,
        "the default dump period: {dht}"
    );
    assert!(dht["last_dump_age_s"].as_u64().is_some());
    assert!(nodes[3]["logfiles"]["disk_size_bytes"]
        .as_u64()
        .is_some_and(|s| s > 0));
    assert!(nodes[5]["queue"]["fill_percent"].as_u64().is_some());
    assert_eq!(report["dht_ranges"]["tile"], true);
}

#[test]
fn health_is_healthy_then_degraded_in_text_and_json() {
    let mut cluster = RealCluster::start(3, 2, 2);
    let topology = cluster.write_topology("topology.toml", false);
    // The disk check judges the machine's real disk: its threshold is set here so that the
    // verdict does not depend on how full the disk running the tests is (checked below).
    let health = |more: &[&str]| {
        let mut args = vec!["health", "--min-disk-free-percent", "0"];
        args.extend_from_slice(more);
        with_topology(&topology, &args)
    };
    check_healthy_json(health(&["--json"]));
    let output = health(&[]);
    assert!(ok(output).ends_with("verdict: healthy\n"));

    // Other problems: another version than expected, a disk fuller than allowed.
    let output = health(&["--expect-version", "9.9.9"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).contains("runs version 0.1.0, expected 9.9.9"));
    let output = with_topology(&topology, &["health", "--min-disk-free-percent", "101"]);
    assert_eq!(output.status.code(), Some(1));
    let shown = text(&output.stdout);
    assert_eq!(
        shown.matches("(logfiles): its disk has ").count(),
        2,
        "{shown}"
    );

    let dead = cluster.dht[2].addr;
    cluster.dht[2].kill9();
    let output = health(&["--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["healthy"], false);
    assert_eq!(report["verdict"], "degraded");
    let down: Vec<&serde_json::Value> = report["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|node| node["state"] != "up")
        .collect();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0]["addr"], dead.to_string());
    assert_eq!(down[0]["state"], "down");
    assert_eq!(down[0]["error"], "connection refused");
    let problems = report["problems"].to_string();
    assert!(
        problems.contains(&format!("node {dead} (dht): down: connection refused")),
        "{problems}"
    );
    assert_eq!(report["dht_ranges"]["tile"], false, "its range is unknown");
    let output = health(&[]);
    assert_eq!(output.status.code(), Some(1));
    let shown = text(&output.stdout);
    assert!(shown.contains("verdict: degraded"), "{shown}");
    assert!(shown.contains(&format!("node {dead} (dht): down: connection refused")));
}

#[test]
fn writing_into_a_closed_pipe_ends_quietly_with_success() {
    let cluster = RealCluster::start(1, 0, 1);
    let topology = cluster.write_topology("topology.toml", false);
    for key in 0..50 {
        ok(with_topology(
            &topology,
            &["dht", "put", "ch", &key.to_string(), "v"],
        ));
    }
    for n in 0..3 {
        ok(with_topology(
            &topology,
            &["queue", "push", "jobs", &format!("j{n}")],
        ));
    }
    for verb in [
        &["dht", "getall", "ch"][..],
        &["queue", "consume", "jobs", "--count", "3"],
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_swarmctl"));
        let mut child = command
            .args(["--nodes", path_arg(&topology)])
            .args(verb)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("swarmctl");
        // The reader goes away before anything is written (as `| head -n 0` would).
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("wait");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{verb:?}: {}",
            text(&output.stderr)
        );
        assert!(
            output.stderr.is_empty(),
            "{verb:?}: {}",
            text(&output.stderr)
        );
    }
    // What consume could not write was not acknowledged: every value is still there.
    let mut left = Vec::new();
    loop {
        let output = with_topology(&topology, &["queue", "pop", "jobs"]);
        if output.status.code() == Some(1) {
            break;
        }
        left.push(ok(output));
    }
    left.sort();
    assert_eq!(left, ["j0", "j1", "j2"]);
}

#[test]
fn options_may_follow_the_verb() {
    let cluster = RealCluster::start(2, 0, 0);
    let (a, b) = (
        cluster.dht[0].addr.to_string(),
        cluster.dht[1].addr.to_string(),
    );
    // The two halves of the hash space: the command needs both --node options, one given
    // before the verb and one after; and --timeout-ms after it.
    let key = (0..100u64)
        .find(|k| cluster.ranges[1].is_responsible_for(*k))
        .expect("a key of the second node")
        .to_string();
    ok(swarmctl(&[
        "--node",
        &a,
        "dht",
        "put",
        "ch",
        &key,
        "v",
        "--node",
        &b,
        "--timeout-ms",
        "3000",
    ]));
    assert_eq!(
        ok(swarmctl(&[
            "dht", "get", "ch", &key, "--node", &a, "--node", &b
        ])),
        "v"
    );
    let topology = cluster.write_topology("topology.toml", false);
    assert_eq!(
        ok(swarmctl(&[
            "dht",
            "get",
            "ch",
            &key,
            "--nodes",
            path_arg(&topology)
        ])),
        "v"
    );
    // Only one half: the other half's keys have no node (a cluster failure, status 3).
    assert_eq!(
        swarmctl(&["dht", "get", "ch", &key, "--node", &a])
            .status
            .code(),
        Some(3)
    );
    // After `--`, an argument that looks like an option is a value.
    ok(swarmctl(&[
        "--node", &a, "--node", &b, "dht", "put", "ch", &key, "--", "--node",
    ]));
    assert_eq!(
        ok(swarmctl(&[
            "--node", &a, "--node", &b, "dht", "get", "ch", &key
        ])),
        "--node"
    );
}

/// --key-file and --name after the verb, for a node that requires authentication.
#[test]
fn key_options_may_follow_the_verb() {
    let auth = common::start(NodeKind::Dht, common::require_alice);
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("client.key");
    std::fs::write(&key_file, format!("alice:{}\n", common::KEY_A)).expect("key file");
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let addr = auth.addr().to_string();
    assert_eq!(swarmctl(&["ping", "--node", &addr]).status.code(), Some(3));
    let pinged = ok(swarmctl(&[
        "ping",
        "--node",
        &addr,
        "--key-file",
        path_arg(&key_file),
        "--name",
        "alice",
    ]));
    assert!(pinged.starts_with(&format!("{addr} kind=dht ")), "{pinged}");
}

#[test]
fn bad_channel_names_are_refused_before_connecting() {
    let node = silent_node();
    let addr = node.local_addr().expect("addr").to_string();
    for args in [
        &["dht", "put", "a b", "1", "v"][..],
        &["dht", "get", "ünï", "1"],
        &["dht", "getall", ""],
        &["log", "put", "a/b", "1", "v"],
        &["log", "getrange", "a.b", "0", "1"],
        &["queue", "push", "ok", "not ok", "v"],
        &["queue", "pop", "x y"],
    ] {
        let mut all = vec!["--node", addr.as_str()];
        all.extend_from_slice(args);
        let output = swarmctl(&all);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = text(&output.stderr);
        assert!(
            message.contains("is not a channel name: 1 to 100 characters of A-Z a-z 0-9 _ -"),
            "{args:?}: {message}"
        );
        assert_no_connection(&node);
    }
}

#[test]
fn help_says_what_arguments_may_be_and_the_exit_statuses() {
    let help = ok(swarmctl(&["--help"]));
    assert!(
        help.contains(
            "Exit status: 0 success; 1 absent, empty or false (get, exists, pop); 2 usage error"
        ),
        "{help}"
    );
    assert!(help.contains("3 a node or the cluster failed, partial results included"));
    assert!(help.contains("health: 0 healthy, 1 degraded, 2 usage"));
    for verb in [
        &["dht", "put"][..],
        &["dht", "get"],
        &["dht", "getall"],
        &["log", "getrange"],
        &["queue", "push"],
        &["queue", "consume"],
        &["health"],
        &["ping"],
    ] {
        let mut args = verb.to_vec();
        args.push("--help");
        let help = ok(swarmctl(&args));
        assert!(help.contains("Example: swarmctl "), "{verb:?}: {help}");
    }
    let put = ok(swarmctl(&["dht", "put", "--help"]));
    for what in [
        "Channel name: 1 to 100 characters",
        "Key: a number from 0 to 2^64-1",
        "Value: the bytes as given",
    ] {
        assert!(put.contains(what), "{put}");
    }
}

/// Runs `swarmctl ARGS` with `stdin_bytes` bytes on its standard input (written in 1 MiB
/// chunks, until swarmctl stops reading); returns its output and its peak resident memory.
// The child is reaped with wait4, for its resource usage, not with Child::wait.
#[allow(clippy::zombie_processes)]
fn run_with_big_stdin(args: &[&str], stdin_bytes: usize) -> (Output, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("swarmctl");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let mut written = 0;
        while written < stdin_bytes {
            let take = chunk.len().min(stdin_bytes - written);
            // swarmctl stops reading once it knows the value is too big: a closed pipe then.
            if stdin.write_all(&chunk[..take]).is_err() {
                break;
            }
            written += take;
        }
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let readers = std::thread::spawn(move || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let _ = stdout.read_to_end(&mut out);
        let _ = stderr.read_to_end(&mut err);
        (out, err)
    });
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    let mut status = 0;
    // SAFETY: rusage is plain data; all-zero bytes are a valid value of it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; `status` and `usage` are valid,
    // writable locations for the call's duration.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    writer.join().expect("writer");
    let (stdout, stderr) = readers.join().expect("readers");
    assert!(libc::WIFEXITED(status), "swarmctl did not exit normally");
    let output = Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(status),
        stdout,
        stderr,
    };
    // ru_maxrss is in KiB on Linux.
    (output, u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024)
}

#[test]
fn a_value_over_the_limit_is_refused_naming_it_without_reading_it_all() {
    const MB: usize = 1_000_000;
    // 100 MB on stdin, to a node that is never even connected to.
    let node = silent_node();
    let addr = node.local_addr().expect("addr").to_string();
    let (output, peak_rss) =
        run_with_big_stdin(&["--node", &addr, "dht", "put", "ch", "1", "-"], 100 * MB);
    assert_eq!(output.status.code(), Some(2));
    let message = text(&output.stderr);
    assert!(
        message.starts_with("swarmctl: the value on standard input exceeds the value limit of "),
        "{message}"
    );
    assert!(
        !message.contains("frame"),
        "names the value limit, not the frame limit: {message}"
    );
    assert_no_connection(&node);
    // The limit is 16 MiB less a few bytes: at most that much is read into memory (reading all
    // of it used to take three times the value, about 300 MB here).
    println!("peak RSS with 100 MB on stdin: {} MiB", peak_rss >> 20);
    assert!(peak_rss < 48 << 20, "peak RSS {} MiB", peak_rss >> 20);
    drop(node);

    // Under the request limit but over the node's max_value_bytes (1 MiB by default): the
    // node refuses it, naming its value limit; a usage error too.
    let cluster = RealCluster::start(1, 0, 0);
    let target = cluster.dht[0].addr.to_string();
    let (output, _) =
        run_with_big_stdin(&["--node", &target, "dht", "put", "ch", "1", "-"], 2 * MB);
    assert_eq!(output.status.code(), Some(2));
    let message = text(&output.stderr);
    assert!(message.contains("max_value_bytes"), "{message}");
}

/// A dht node that dumps every second: health sees its dump age stay within the period (the
/// age restarts with every complete cycle), and says so.
#[test]
fn health_sees_dump_age_against_the_dump_period() {
    let binary = testkit::workspace_binary("dhtnode", "dhtnode");
    let node = testkit::TempNode::start(
        binary.to_str().expect("utf-8 path"),
        "[dht]\ndump_period_s = 1\n",
        &[],
    );
    let addr = node.addr.to_string();
    ok(swarmctl(&[
        "--node",
        &addr,
        "dht",
        "--allow-incomplete-ranges",
        "put",
        "ch",
        "1",
        "v",
    ]));
    // Long enough for the age to exceed the period, had no cycle completed.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let output = swarmctl(&[
        "--node",
        &addr,
        "health",
        "--json",
        "--min-disk-free-percent",
        "0",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let dht = &report["nodes"][0]["dht"];
    assert_eq!(dht["dump_period_s"], 1, "{dht}");
    let age = dht["last_dump_age_s"].as_u64().expect("an age");
    assert!(
        age <= 2,
        "the last complete dump is {age} s old with a 1 s period"
    );
}

/// A topology of `cluster` (with each node's range) stating `replication_factor`.
fn replicated_topology(cluster: &RealCluster, name: &str, factor: u32) -> std::path::PathBuf {
    let text = cluster.topology_text(true).replacen(
        "\n[logfiles]",
        &format!("\nreplication_factor = {factor}\n[logfiles]"),
        1,
    );
    let path = cluster.dir.path().join(name);
    std::fs::write(&path, text).expect("write topology");
    path
}

/// A cluster of two replica sets of two: its nodes' addresses and the two ranges.
struct Sets {
    cluster: RealCluster,
    addrs: [String; 4],
    low: String,
    high: String,
}

impl Sets {
    fn start() -> Sets {
        let halves = node_core::protocol::dht::split_evenly(2);
        let ranges = vec![halves[0], halves[0], halves[1], halves[1]];
        let cluster = RealCluster::start_with_ranges(ranges, 0, 0);
        let addrs = [0, 1, 2, 3].map(|node| cluster.dht[node].addr.to_string());
        Sets {
            cluster,
            addrs,
            low: halves[0].to_string(),
            high: halves[1].to_string(),
        }
    }

    /// `set RANGE members A,B live L/2` with a member pair: 0 the low set, 1 the high one.
    fn line(&self, set: usize, live: usize) -> String {
        let range = [&self.low, &self.high][set];
        let (a, b) = (&self.addrs[2 * set], &self.addrs[2 * set + 1]);
        format!("set {range} members {a},{b} live {live}/2")
    }
}

#[test]
fn dht_ranges_and_health_show_replica_sets_and_flag_short_ones() {
    let mut sets = Sets::start();
    let two = replicated_topology(&sets.cluster, "two.toml", 2);
    let (low, [a, b, ..]) = (sets.low.clone(), sets.addrs.clone());

    let shown = ok(with_topology(&two, &["dht", "ranges"]));
    for set in 0..2 {
        assert!(
            shown.contains(&format!("{}\n", sets.line(set, 2))),
            "{shown}"
        );
    }
    assert!(
        !shown.contains("overlap") && !shown.contains("short"),
        "{shown}"
    );
    let shown = ok(with_topology(&two, &["health"]));
    assert!(shown.contains("dht ranges: tile the hash space"), "{shown}");
    assert!(
        shown.contains(&format!("replica set {low}: 2/2 live ({a} up, {b} up)\n")),
        "{shown}"
    );
    assert!(shown.ends_with("verdict: healthy\n"), "{shown}");

    // Replica sets are planned whole: two sets of two and no new node change nothing.
    let planned = ok(with_topology(&two, &["dht", "redistribute"]));
    assert!(
        planned.contains(&format!("{a} {low} -> {low} "))
            && planned.contains(&format!("{b} {low} -> {low} "))
            && planned.ends_with("No change in node hash ranges\n"),
        "{planned}"
    );

    a_factor_of_three_makes_every_set_short(&sets);
    sets.cluster.dht[1].kill9();
    a_member_down_makes_its_set_short(&sets, &two);
}

fn a_factor_of_three_makes_every_set_short(sets: &Sets) {
    let three = replicated_topology(&sets.cluster, "three.toml", 3);
    let output = with_topology(&three, &["dht", "ranges"]);
    assert_eq!(output.status.code(), Some(3));
    let shown = text(&output.stdout);
    assert!(
        shown.contains(&format!("{} short\n", sets.line(1, 2))),
        "{shown}"
    );
    assert!(text(&output.stderr).contains("2 replica set(s) short of members"));
    let output = with_topology(&three, &["health"]);
    assert_eq!(output.status.code(), Some(1));
    let shown = text(&output.stdout);
    let problem = format!(
        "  dht ranges: replica set {}: 2 of 2 member(s) live; the topology's \
         replication_factor is 3, the set has 2 member(s)\n",
        sets.low
    );
    assert!(shown.contains(&problem), "{shown}");
}

/// With the second member of the low set killed.
fn a_member_down_makes_its_set_short(sets: &Sets, two: &Path) {
    let output = with_topology(two, &["dht", "ranges"]);
    assert_eq!(output.status.code(), Some(3));
    let shown = text(&output.stdout);
    assert!(
        shown.contains(&format!("{} short\n", sets.line(0, 1))),
        "{shown}"
    );
    assert!(shown.contains(&format!("{}\n", sets.line(1, 2))), "{shown}");
    let output = with_topology(two, &["health", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let ranges = &report["dht_ranges"];
    let (a, b) = (&sets.addrs[0], &sets.addrs[1]);
    assert_eq!(ranges["tile"], true, "{ranges}");
    assert_eq!(ranges["replication_factor"], 2);
    assert_eq!(ranges["sets"][0]["members"], serde_json::json!([a, b]));
    assert_eq!(ranges["sets"][0]["live"], serde_json::json!([a]));
    assert_eq!(ranges["sets"][0]["short"], true);
    assert_eq!(ranges["sets"][1]["short"], false);
    let problems = report["problems"].to_string();
    let problem = format!(
        "replica set {}: 1 of 2 member(s) live (not answering: {b})",
        sets.low
    );
    assert!(problems.contains(&problem), "{problems}");
    // The short set's keys are still written and read through swarmctl.
    ok(with_topology(two, &["dht", "put", "users", "1", "one"]));
    assert_eq!(ok(with_topology(two, &["dht", "get", "users", "1"])), "one");
    // A set with a member down is not redistributed: refused, naming the member and its set.
    let output = with_topology(two, &["dht", "redistribute"]);
    assert_eq!(output.status.code(), Some(3));
    let refusal = text(&output.stderr);
    assert!(
        refusal.contains(&format!("member {b} of replica set {} is down", sets.low)),
        "{refusal}"
    );
}

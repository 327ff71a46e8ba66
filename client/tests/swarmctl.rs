//! swarmctl against real in-process nodes: output formats and the exit convention.

mod common;

use common::*;
use node_core::protocol::NodeKind;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn swarmctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args(args)
        .output()
        .expect("swarmctl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_file(path: &Path, text: &str, mode: u32) {
    let mut file = std::fs::File::create(path).expect("create");
    file.write_all(text.as_bytes()).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `HOST:PORT kind=K version=0.1.0 protocol=1 rtt=N.NNNms`
fn assert_ping_line(line: &str, addr: &str, kind: &str) {
    let prefix = format!("{addr} kind={kind} version=0.1.0 protocol=1 rtt=");
    let rtt = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("bad ping line {line:?}"));
    let ms = rtt.strip_suffix("ms").expect("ms suffix");
    assert_eq!(
        ms.split('.').nth(1).map(str::len),
        Some(3),
        "three decimals in {line:?}"
    );
    ms.parse::<f64>().expect("a number");
}

#[test]
fn ping_prints_one_line_per_node() {
    let first = start(NodeKind::Dht, |_| {});
    let second = start(NodeKind::Queue, |_| {});
    let (a, b) = (first.addr().to_string(), second.addr().to_string());
    let output = swarmctl(&["--node", &a, "--node", &b, "ping"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_ping_line(lines[0], &a, "dht");
    assert_ping_line(lines[1], &b, "queue");
}

#[test]
fn stats_prints_a_heading_and_name_value_lines_per_node() {
    let node = start(NodeKind::Dht, |_| {});
    let addr = node.addr().to_string();
    let output = swarmctl(&["--node", &addr, "stats"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(format!("# {addr}").as_str()));
    let mut counted = 0;
    for line in lines {
        let (name, value) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(!name.is_empty());
        value
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        counted += 1;
    }
    assert!(counted > 0, "{text}");
}

#[test]
fn a_topology_with_credentials_pings_every_kind() {
    let dht = start(NodeKind::Dht, require_alice);
    let queue = start(NodeKind::Queue, require_alice);
    let dir = tempfile::tempdir().expect("tempdir");
    write_file(
        &dir.path().join("client.key"),
        &format!("alice:{KEY_A}\n"),
        0o600,
    );
    let topology = dir.path().join("topology.toml");
    let text = format!(
        "[dht]\nnodes = [\"{}\"]\n[queue]\nnodes = [\"{}\"]\n[credentials]\nkey_file = \"client.key\"\n",
        dht.addr(),
        queue.addr()
    );
    write_file(&topology, &text, 0o644);
    let output = swarmctl(&["--nodes", topology.to_str().expect("utf-8 path"), "ping"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_ping_line(lines[0], &dht.addr().to_string(), "dht");
    assert_ping_line(lines[1], &queue.addr().to_string(), "queue");
}

#[test]
fn a_node_listed_under_the_wrong_kind_is_reported_and_fails_the_command() {
    let queue = start(NodeKind::Queue, |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let topology = dir.path().join("topology.toml");
    write_file(
        &topology,
        &format!("[dht]\nnodes = [\"{}\"]\n", queue.addr()),
        0o644,
    );
    let output = swarmctl(&["--nodes", topology.to_str().expect("utf-8 path"), "ping"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        stdout(&output),
        format!("{} error: is a queue node, expected dht\n", queue.addr())
    );
    assert_eq!(stderr(&output), "swarmctl: 1 of 1 nodes failed\n");
}

#[test]
fn failures_are_one_line_with_status_3_and_usage_errors_status_2() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let output = swarmctl(&["--node", &dead.to_string(), "ping"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        stdout(&output),
        format!("{dead} down: connection refused\n")
    );
    assert_eq!(stderr(&output), "swarmctl: 1 of 1 nodes failed\n");

    let auth = start(NodeKind::Dht, require_alice);
    let output = swarmctl(&["--node", &auth.addr().to_string(), "stats"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stdout(&output).ends_with("error: requires authentication but no credentials were given\n")
    );

    // A request to a node that is down: one line naming it.
    let output = swarmctl(&["--node", &dead.to_string(), "dht", "get", "ch", "1"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        stderr(&output),
        format!("swarmctl: node {dead}: down: connection refused\n")
    );
    assert!(stdout(&output).is_empty());

    assert_eq!(swarmctl(&["ping"]).status.code(), Some(2));
    // The target may also follow the verb (`swarmctl dht redistribute --nodes FILE`).
    let output = swarmctl(&["ping", "--node", &dead.to_string()]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        stdout(&output),
        format!("{dead} down: connection refused\n")
    );
    assert_eq!(
        swarmctl(&["--node", "127.0.0.1:1", "frobnicate"])
            .status
            .code(),
        Some(2)
    );
}

/// A dht node that completes the handshake, then reads every frame and answers none; records
/// the request codes it got.
fn stalling_node() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) {
    let codes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = codes.clone();
    let addr = fake_node(move |_, mut stream| {
        accept_handshake(&mut stream);
        let seen = seen.clone();
        std::thread::spawn(move || {
            while let Some((header, _)) = read_frame(&mut stream) {
                seen.lock().unwrap().push(header.code);
            }
        });
    });
    (addr, codes)
}

/// `--timeout-ms MS` bounds a dht verb of one request whole against a node that stalls after
/// the handshake: the range lookup at connect and the request share MS, so the request the
/// lookup left no time for is not sent (it was, and waited MS again: the command took 2×MS).
/// The client still starts (the stalled node counts as down), and the command fails with the
/// timeout named.
#[test]
fn a_node_that_stalls_fails_a_one_request_dht_verb_within_its_timeout_ms() {
    let (addr, codes) = stalling_node();
    let addr = addr.to_string();
    let timeout_ms = 1500u64;
    let verbs: [&[&str]; 2] = [&["dht", "get", "ch", "1"], &["dht", "channels"]];
    for verb in verbs {
        codes.lock().unwrap().clear();
        let mut args = vec!["--node", addr.as_str(), "--timeout-ms", "1500"];
        args.extend_from_slice(verb);
        let started = std::time::Instant::now();
        let output = swarmctl(&args);
        let elapsed = started.elapsed();
        let all = format!("{}{}", stdout(&output), stderr(&output));
        assert_eq!(output.status.code(), Some(3), "{verb:?}: {all}");
        assert!(all.contains("timed out after 1500 ms"), "{verb:?}: {all}");
        // The range lookup alone (the GetVersion probe the client sends after a timeout aside).
        let sent = codes.lock().unwrap().clone();
        let requests: Vec<u8> = sent.iter().copied().filter(|code| *code != 1).collect();
        assert_eq!(requests.len(), 1, "{verb:?}: requests sent {sent:?}");
        let bound = std::time::Duration::from_millis(3 * timeout_ms);
        assert!(
            elapsed < bound,
            "{verb:?}: {elapsed:?} for --timeout-ms {timeout_ms}"
        );
    }
}

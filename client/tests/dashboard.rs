//! `swarmctl dashboard` against a real cluster (node processes, see `real_cluster`): the page in
//! headless Chromium (testkit::chromium) loads with no console error, shows every node with
//! kind, version and uptime, the dht ranges with their gap, overlap and replica set, the
//! channels, the plots, and a node killed with SIGKILL going down within a few seconds; and
//! its HTTP side keeps to its limits (loopback only, Host check, methods, sizes, connections).
//!
//! `SWARM_DASHBOARD_SCREENSHOT=FILE` writes the page as the browser test last saw it (a node
//! down) to FILE: docs/dashboard.png is made that way (docs/operations.md, "Dashboard").

mod common;
mod real_cluster;

use client::dht::HashRange;
use client::queue::QueueClient;
use client::{ClientOptions, DhtClient, LogClient};
use node_core::protocol::dht::hash_position;
use real_cluster::{path_arg, RealCluster};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::chromium::Browser;

/// Where the test cluster's gap begins: no node owns the hash space from here.
const GAP_START: u64 = 0xe000_0000_0000_0000;

/// A generous limit for the page to show something: collections come every 500 ms.
const PAGE_DEADLINE: Duration = Duration::from_secs(20);

/// A running `swarmctl dashboard`, killed on drop.
struct Dashboard {
    child: Child,
    addr: SocketAddr,
}

impl Dashboard {
    fn start(topology: &Path, more: &[&str]) -> Dashboard {
        let mut child = Command::new(env!("CARGO_BIN_EXE_swarmctl"))
            .args([
                "--nodes",
                path_arg(topology),
                "dashboard",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--interval-ms", "500", "--min-disk-free-percent", "0"])
            .args(more)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("swarmctl dashboard starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(PAGE_DEADLINE)
            .expect("swarmctl dashboard prints its URL");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        Dashboard { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn range(min: u64, max: u64) -> HashRange {
    HashRange::new(min, max)
}

/// Writes, queue pushes and log puts until `stop` (each kind on a thread of its own: a log
/// put waits for its group commit), so the page has rates to show; a few hundred a second.
fn traffic(topology: &Path, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    let options = ClientOptions {
        allow_incomplete_ranges: true,
        ..real_cluster::options()
    };
    let text = std::fs::read_to_string(topology).expect("topology");
    let topology = client::Topology::parse(&text, topology).expect("topology parses");
    let dht = DhtClient::from_topology(&topology, options.clone()).expect("dht client");
    let logs = LogClient::from_topology(&topology, options.clone()).expect("log client");
    let queue = QueueClient::from_topology(&topology, options).expect("queue client");
    // Keys of the node killed fail at once: the traffic goes on regardless. (Keys in the gap
    // are left out: the client waits out its request timeout on them.)
    vec![
        repeat(stop, move |i| {
            if hash_position(i) < GAP_START {
                let _ = dht.put("users", i, b"a user's record");
            }
        }),
        repeat(stop, move |_| {
            let _ = queue.push("jobs", b"a job");
        }),
        repeat(stop, move |i| {
            let _ = logs.put("events", 1_700_000_000 + i, b"an event");
        }),
    ]
}

/// Calls `request` with 0, 1, ... every 2 ms until `stop` (at most 100 000 times).
fn repeat(
    stop: &Arc<AtomicBool>,
    request: impl Fn(u64) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        for i in 0..100_000 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            request(i);
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

#[test]
fn the_page_shows_the_cluster_and_a_node_going_down_with_no_console_error() {
    let half = 0x8000_0000_0000_0000u64;
    // An overlap (0x4000.. to 0x5fff..), a replica set (two nodes of 0x8000.. to 0xdfff..) and
    // a gap (0xe000.. to the end).
    let mut cluster = RealCluster::start_with_ranges(
        vec![
            range(0, 0x5fff_ffff_ffff_ffff),
            range(0x4000_0000_0000_0000, half - 1),
            range(half, GAP_START - 1),
            range(half, GAP_START - 1),
        ],
        1,
        1,
    );
    let topology = cluster.write_topology("topology.toml", false);
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(&topology, &stop);
    let dashboard = Dashboard::start(&topology, &[]);
    let Some(mut browser) = Browser::start(1280, 1060) else {
        stop.store(true, Ordering::Relaxed);
        return;
    };
    browser.navigate(&dashboard.url());
    browser.wait_for(
        "every node up on the page",
        "document.querySelectorAll('#nodes tbody tr[data-state=\"up\"]').length === 6",
        PAGE_DEADLINE,
    );
    check_nodes(&mut browser);
    check_ranges(&mut browser);
    check_channels_and_plots(&mut browser);

    check_node_going_down(&mut browser, &mut cluster.dht[3]);
    // Let the plots take in a few more points with the node down.
    std::thread::sleep(Duration::from_secs(2));
    let png = browser.screenshot_png();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG screenshot");
    if let Some(path) = std::env::var_os("SWARM_DASHBOARD_SCREENSHOT") {
        std::fs::write(&path, &png).expect("write the screenshot");
    }
    let problems = browser.problems();
    assert!(problems.is_empty(), "the page logged errors: {problems:#?}");
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().expect("a traffic thread");
    }
}

/// SIGKILL to a node of the replica set: its row, its place in the set and the verdict say so.
fn check_node_going_down(browser: &mut Browser, node: &mut testkit::TempNode) {
    let dead = node.addr;
    let killed = Instant::now();
    node.kill9();
    browser.wait_for(
        "the killed node shown down",
        &format!(
            "document.querySelector('#nodes tr[data-addr=\"{dead}\"]').dataset.state === 'down' \
             && document.querySelector('#nodes tr[data-addr=\"{dead}\"] td.details')\
                .textContent === 'connection refused' \
             && document.querySelector('#replica-sets [data-addr=\"{dead}\"]').dataset.state \
                === 'down' && document.getElementById('verdict').dataset.verdict === 'degraded'"
        ),
        PAGE_DEADLINE,
    );
    eprintln!(
        "the page showed {dead} down {:?} after SIGKILL",
        killed.elapsed()
    );
    let row = browser.eval(&format!(
        "[...document.querySelectorAll('#nodes tr[data-addr=\"{dead}\"] td')]\
         .map(td => td.textContent)"
    ));
    assert_eq!(row[2], "down", "{row}");
    assert_eq!(row[9], "connection refused", "{row}");
    // The other member of its replica set still serves: the set is drawn degraded, not down.
    let set =
        browser.eval("document.querySelector('#ranges rect[data-group=\"2\"]').dataset.state");
    assert_eq!(set, "degraded");
}

/// Every node's kind, version and uptime.
fn check_nodes(browser: &mut Browser) {
    let rows = browser.eval(
        "[...document.querySelectorAll('#nodes tbody tr')].map(tr => \
         [...tr.querySelectorAll('td')].map(td => td.textContent))",
    );
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 6, "{rows:?}");
    let kinds: Vec<&str> = rows.iter().map(|r| r[1].as_str().unwrap_or("")).collect();
    assert_eq!(kinds, ["dht", "dht", "dht", "dht", "logfiles", "queue"]);
    for row in rows {
        assert_eq!(row[2], "up", "{row}");
        assert_eq!(row[3], env!("CARGO_PKG_VERSION"), "{row}");
        let uptime = row[4].as_str().unwrap_or("");
        assert!(
            uptime.ends_with(" s") || uptime.contains("min"),
            "uptime {uptime:?} in {row}"
        );
    }
}

/// The ranges bar: owned, overlap, owned, owned (the replica set), gap; and the replica set.
fn check_ranges(browser: &mut Browser) {
    let spans = browser.eval(
        "[...document.querySelectorAll('#ranges rect[data-kind]')]\
         .map(r => [r.dataset.kind, r.dataset.min, r.dataset.max])",
    );
    let expected = serde_json::json!([
        ["owned", "0x0000000000000000", "0x3fffffffffffffff"],
        ["overlap", "0x4000000000000000", "0x5fffffffffffffff"],
        ["owned", "0x6000000000000000", "0x7fffffffffffffff"],
        ["owned", "0x8000000000000000", "0xdfffffffffffffff"],
        ["gap", "0xe000000000000000", "0xffffffffffffffff"],
    ]);
    assert_eq!(spans, expected);
    let sets = browser.eval(
        "[...document.querySelectorAll('#replica-sets li[data-replica-set]')]\
         .map(li => [...li.querySelectorAll('.member')].map(m => m.dataset.state))",
    );
    assert_eq!(sets, serde_json::json!([["up", "up"]]));
    let lanes = browser.eval("document.querySelectorAll('#ranges rect[data-group]').length");
    assert_eq!(lanes, 3, "one lane per distinct range");
}

/// Channels of every kind with their figures, request rates, and the plots drawn.
fn check_channels_and_plots(browser: &mut Browser) {
    browser.wait_for(
        "traffic in the nodes' rates and in the plot",
        "[...document.querySelectorAll('#nodes td.rate')].some(td => parseFloat(td.textContent) > 0) \
         && document.querySelector('#plot-rate path[data-series=\"cluster\"]') !== null \
         && document.querySelectorAll('#channels tr[data-channel]').length === 3",
        PAGE_DEADLINE,
    );
    let channels: Value = browser.eval(
        "Object.fromEntries([...document.querySelectorAll('#channels tr[data-channel]')]\
         .map(tr => [tr.dataset.kind + '/' + tr.dataset.channel, \
                     [...tr.querySelectorAll('td')].map(td => td.textContent.trim())]))",
    );
    let users = &channels["dht/users"];
    assert_ne!(users[3], "—", "dht records shown: {channels}");
    assert!(
        users[4].as_str().is_some_and(|b| b.ends_with('B')),
        "{channels}"
    );
    let jobs = &channels["queue/jobs"];
    assert!(
        jobs[6].as_str().is_some_and(|f| f.ends_with('%')),
        "queue fill: {channels}"
    );
    let events = &channels["logfiles/events"];
    assert!(
        events[4].as_str().is_some_and(|b| b.ends_with('B')),
        "{channels}"
    );
    let p99 = browser.eval("document.querySelector('#plot-p99 path[data-series]') !== null");
    assert_eq!(p99, true, "a p99 line");
}

/// One raw HTTP/1.1 request (`Connection: close`); the status and the whole response.
fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    try_http(addr, request).unwrap_or_else(|response| panic!("no status in {response:?}"))
}

/// [`http`], or the response that has no status line (nothing, when the connection closed).
fn try_http(addr: SocketAddr, request: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).expect("connect to the dashboard");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    // A write into a connection the dashboard closed shows as no answer below.
    let _ = stream.write_all(request.as_bytes());
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok());
    match status {
        Some(status) => Ok((status, response)),
        None => Err(response),
    }
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn the_http_side_serves_the_page_and_keeps_to_its_limits() {
    let cluster = RealCluster::start(1, 0, 1);
    let topology = cluster.write_topology("topology.toml", false);
    let dashboard = Dashboard::start(&topology, &[]);
    let addr = dashboard.addr;

    let (status, page) = get(addr, "/");
    assert_eq!(status, 200);
    assert!(
        page.contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    assert!(page.contains("<script src=\"/dashboard.js\""));
    for asset in ["/dashboard.js", "/dashboard.css", "/api/history"] {
        assert_eq!(get(addr, asset).0, 200, "{asset}");
    }
    let (_, state) = get(addr, "/api/state");
    let body = state.split("\r\n\r\n").nth(1).expect("a body");
    let state: Value = serde_json::from_str(body).expect("JSON state");
    assert_eq!(state["health"]["verdict"], "healthy", "{state}");
    assert_eq!(state["nodes"].as_array().map(Vec::len), Some(2));
    assert!(state["nodes"][0]["uptime_s"].as_u64().is_some(), "{state}");
    assert_eq!(state["ranges"]["spans"][0]["kind"], "owned");

    assert_eq!(get(addr, "/nothing").0, 404);
    let post = format!("POST /api/state HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}");
    let (status, response) = http(addr, &post);
    assert_eq!(status, 405);
    assert!(response.contains("allow: GET, HEAD"), "{response}");
    // Another Host: a page elsewhere reaching us through DNS rebinding.
    let rebound =
        "GET /api/state HTTP/1.1\r\nHost: attacker.example:80\r\nConnection: close\r\n\r\n";
    assert_eq!(http(addr, rebound).0, 421);
    let localhost = format!(
        "GET /api/state HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    assert_eq!(http(addr, &localhost).0, 200);
    // A request head over the limit is refused (431), not buffered.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "x".repeat(64 * 1024)
    );
    assert_eq!(http(addr, &big).0, 431);

    check_connection_limit(addr);

    check_follows_topology(addr, &topology, cluster.dht[0].addr);
}

/// The topology file changes: the queue node leaves, and the dashboard follows.
fn check_follows_topology(addr: SocketAddr, topology: &Path, dht: SocketAddr) {
    let dht_only = format!("[dht]\nnodes = [\"{dht}\"]\n");
    std::fs::write(topology, dht_only).expect("rewrite the topology");
    let deadline = Instant::now() + PAGE_DEADLINE;
    loop {
        let (_, response) = get(addr, "/api/state");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        let state: Value = serde_json::from_str(body).expect("JSON state");
        if state["nodes"].as_array().map(Vec::len) == Some(1) {
            assert_eq!(state["health"]["nodes"][0]["kind"], "dht", "{state}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard kept the removed node: {state}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 64 connections open at once; the next one is closed at once, and once some close, the
/// dashboard answers again.
fn check_connection_limit(addr: SocketAddr) {
    let mut open: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    // Make sure the dashboard has accepted them all: each answers one request.
    for stream in &mut open {
        let request = format!("GET /api/history HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("send");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut first = [0u8; 12];
        stream.read_exact(&mut first).expect("an answer");
        assert_eq!(&first, b"HTTP/1.1 200");
    }
    let mut extra = TcpStream::connect(addr).expect("the kernel still accepts");
    extra
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let _ = extra.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    let mut buf = [0u8; 16];
    let read = extra.read(&mut buf).unwrap_or(0);
    assert_eq!(
        read, 0,
        "the connection over the limit is closed without an answer"
    );
    open.truncate(60);
    let deadline = Instant::now() + Duration::from_secs(20);
    let request = format!("GET /api/state HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    loop {
        if try_http(addr, &request).is_ok_and(|(status, _)| status == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer once connections closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_non_loopback_listener_needs_insecure() {
    let dashboard = |listen: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_swarmctl"))
            .args(["--node", "127.0.0.1:1", "dashboard", "--listen", listen])
            .output()
            .expect("swarmctl runs");
        assert_eq!(output.status.code(), Some(2), "--listen {listen}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = dashboard("0.0.0.0:0");
    assert!(
        stderr.contains("--listen 0.0.0.0:0 is not a loopback address")
            && stderr.contains("add --insecure"),
        "{stderr}"
    );
    let stderr = dashboard("nowhere:80");
    assert!(stderr.contains("not an IP address and port"), "{stderr}");
}

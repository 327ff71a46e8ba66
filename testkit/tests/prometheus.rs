//! The metrics endpoint as an operator's Prometheus sees it: a small cluster (a dht node with its
//! dhtdump, a logfiles node, a queue node), each serving `/metrics` on an OS-chosen loopback port;
//! Debian's `promtool check metrics` accepts every exposition; a real `prometheus` (Debian's
//! package, installed by .ci/run) scrapes them all, and queries through its HTTP API return the
//! series the requests made. Also: the bearer-token variant refuses a scrape without the token.

use client::queue::QueueClient;
use client::{ClientOptions, DhtClient, LogClient};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{http_get, wait_for_metrics_addr, workspace_binary, TempNode};

const METRICS_CONFIG: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// A Debian tool the test needs; .ci/run installs the `prometheus` package that ships both.
fn tool(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: install Debian's `prometheus` package (.ci/run does)",
        path.display()
    );
    path
}

/// `promtool check metrics` on an exposition: its verdict and what it said.
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let output = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

/// Kills the child when dropped (a failing test leaves no Prometheus behind).
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dhtdump on `node`, periodic, serving metrics; its address from its root.log.
fn start_dhtdump(dir: &Path, node: SocketAddr) -> (Process, SocketAddr) {
    let config = dir.join("dhtdump.toml");
    std::fs::write(&config, METRICS_CONFIG).expect("write config");
    let child = Command::new(workspace_binary("dhtdump", "dhtdump"))
        .arg("-c")
        .arg(&config)
        .args(["--node", &node.to_string()])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dhtdump");
    let process = Process(child);
    let addr = wait_for_metrics_addr(&dir.join("log/root.log"));
    (process, addr)
}

/// Starts Prometheus on a free loopback port scraping `targets` (job → address) every second.
/// Prometheus cannot report a port the OS chose, so the test asks the OS for a free one and
/// tries again should another process take it first.
fn start_prometheus(dir: &Path, targets: &[(&str, SocketAddr)]) -> (Process, SocketAddr) {
    let mut config =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for (job, addr) in targets {
        config.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"
        ));
    }
    std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
    for _attempt in 0..3 {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let child = Command::new(tool("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let mut process = Process(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if process.0.try_wait().expect("try_wait").is_some() {
                break; // the port was taken meanwhile: try another
            }
            if std::net::TcpStream::connect(addr).is_ok()
                && http_get(addr, "/-/ready", None).0 == 200
            {
                return (process, addr);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(process);
    }
    panic!("prometheus did not start");
}

/// An instant query through Prometheus's HTTP API: each series's labels and value.
fn query(prometheus: SocketAddr, promql: &str) -> Vec<(serde_json::Value, f64)> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = http_get(prometheus, &format!("/api/v1/query?query={encoded}"), None);
    assert_eq!(status, 200, "{promql}: {body}");
    let reply: serde_json::Value = serde_json::from_str(&body).expect("JSON reply");
    assert_eq!(reply["status"], "success", "{body}");
    reply["data"]["result"]
        .as_array()
        .expect("a vector result")
        .iter()
        .map(|series| {
            let value = series["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .expect("a sample value");
            (series["metric"].clone(), value)
        })
        .collect()
}

/// Waits until `promql` returns series for which `check` holds.
fn wait_for_query(
    prometheus: SocketAddr,
    promql: &str,
    check: impl Fn(&[(serde_json::Value, f64)]) -> bool,
) -> Vec<(serde_json::Value, f64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let result = query(prometheus, promql);
        if check(&result) {
            return result;
        }
        assert!(Instant::now() < deadline, "{promql} never held: {result:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Writes what the queries below count: 50 dht Puts to "users" (and one Get), 20 logfiles Puts
/// to "events", 30 queue Pushes to "jobs".
fn write_records(dht: SocketAddr, logfiles: SocketAddr, queue: SocketAddr) {
    let options = ClientOptions::default;
    let dht_client = DhtClient::connect(&[dht], options()).expect("dht client");
    for key in 0..50u64 {
        dht_client.put("users", key, b"a value").expect("put");
    }
    assert!(dht_client.get("users", 7).expect("get").is_some());
    let log_client = LogClient::connect(&[logfiles], options()).expect("logfiles client");
    for key in 0..20u64 {
        log_client
            .put("events", 1_700_000_000 + key, b"an event")
            .expect("put");
    }
    let queue_client = QueueClient::connect(&[queue], options()).expect("queue client");
    for _ in 0..30 {
        queue_client.push("jobs", b"a job").expect("push");
    }
}

/// The exposition of `job` at `addr`: served on /metrics, accepted by promtool without a word,
/// with its swarm_info; any other path is 404.
fn check_exposition(job: &str, addr: SocketAddr) {
    let (status, text) = http_get(addr, "/metrics", None);
    assert_eq!(status, 200, "{job}: {text}");
    let (valid, said) = promtool_check(&text);
    assert!(
        valid && said.trim().is_empty(),
        "{job}: promtool says {said}\n{text}"
    );
    assert!(text.contains("swarm_info{kind=\""), "{job}: {text}");
    assert_eq!(http_get(addr, "/other", None).0, 404, "{job}");
}

#[test]
fn prometheus_scrapes_a_small_cluster_and_promtool_accepts_every_exposition() {
    let dht = TempNode::start(
        &workspace_binary("dhtnode", "dhtnode").to_string_lossy(),
        METRICS_CONFIG,
        &[],
    );
    let logfiles = TempNode::start(
        &workspace_binary("logfilesnode", "logfilesnode").to_string_lossy(),
        &format!("{METRICS_CONFIG}[logfiles]\nfsync = \"always\"\n"),
        &[],
    );
    let queue = TempNode::start(
        &workspace_binary("queuenode", "queuenode").to_string_lossy(),
        METRICS_CONFIG,
        &[],
    );
    let dump_dir = tempfile::tempdir().expect("temp dir");
    let (_dhtdump, dhtdump_metrics) = start_dhtdump(dump_dir.path(), dht.addr);

    write_records(dht.addr, logfiles.addr, queue.addr);

    let targets = [
        ("dht", wait_for_metrics_addr(&dht.path("log/root.log"))),
        (
            "logfiles",
            wait_for_metrics_addr(&logfiles.path("log/root.log")),
        ),
        ("queue", wait_for_metrics_addr(&queue.path("log/root.log"))),
        ("dhtdump", dhtdump_metrics),
    ];
    for (job, addr) in targets {
        check_exposition(job, addr);
    }

    let prometheus_dir = tempfile::tempdir().expect("temp dir");
    let (_prometheus, prometheus) = start_prometheus(prometheus_dir.path(), &targets);
    let up = wait_for_query(prometheus, "up == 1", |series| series.len() == 4);
    assert_eq!(up.len(), 4, "{up:?}");

    let puts = wait_for_query(
        prometheus,
        "swarm_requests_total{job=\"dht\",type=\"Put\",status=\"ok\"}",
        |series| series.len() == 1,
    );
    assert_eq!(puts[0].1, 50.0, "{puts:?}");
    let records = query(
        prometheus,
        "swarm_channel_records{job=\"dht\",channel=\"users\"}",
    );
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].1, 50.0);
    let kinds = query(prometheus, "swarm_info");
    let mut kinds: Vec<String> = kinds
        .iter()
        .map(|(labels, _)| labels["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["dht", "dhtdump", "logfiles", "queue"]);
    let latency = query(
        prometheus,
        "swarm_request_duration_seconds_count{job=\"logfiles\",type=\"Put\"}",
    );
    assert_eq!(latency.len(), 1, "{latency:?}");
    assert_eq!(latency[0].1, 20.0);
    let fsyncs = query(prometheus, "swarm_logfiles_fsyncs_total");
    assert!(fsyncs.len() == 1 && fsyncs[0].1 >= 1.0, "{fsyncs:?}");
    let fill = query(
        prometheus,
        "swarm_queue_records{job=\"queue\",channel=\"jobs\",subscriber=\"\"}",
    );
    assert_eq!(fill.len(), 1, "{fill:?}");
    assert_eq!(fill[0].1, 30.0);
    let node_up = query(prometheus, "swarm_dhtdump_node_up");
    assert!(node_up.len() == 1 && node_up[0].1 == 1.0, "{node_up:?}");
    check_dashboard(prometheus);
}

/// Every query of the Grafana dashboard (deploy/grafana/swarm.json) is one this Prometheus
/// accepts, and names only metrics docs/operations.md documents.
fn check_dashboard(prometheus: SocketAddr) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("deploy/grafana/swarm.json")).expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let operations = std::fs::read_to_string(root.join("docs/operations.md")).expect("docs");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queries = 0;
    for target in panels
        .iter()
        .filter_map(|panel| panel["targets"].as_array())
        .flatten()
    {
        let expr = target["expr"].as_str().expect("expr");
        let concrete = expr
            .replace("$__rate_interval", "1m")
            .replace("$job", ".*")
            .replace("$instance", ".*");
        query(prometheus, &concrete);
        queries += 1;
        for name in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !(name.starts_with("swarm_") || name.starts_with("process_")) {
                continue;
            }
            let family = name.trim_end_matches("_bucket");
            assert!(
                operations.contains(&format!("`{family}`")),
                "the dashboard uses {family}, which docs/operations.md does not document"
            );
        }
    }
    assert!(queries > 20, "{queries} queries");
}

#[test]
fn a_token_protected_listener_refuses_scrapes_without_the_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, "s3cret-token-0123456789\n").expect("write token");
    let config = format!(
        "[metrics]\nlisten = \"127.0.0.1:0\"\nbearer_token_file = \"{}\"\n",
        token_file.display()
    );
    let node = TempNode::start(
        &workspace_binary("queuenode", "queuenode").to_string_lossy(),
        &config,
        &[],
    );
    let addr = wait_for_metrics_addr(&node.path("log/root.log"));
    assert_eq!(http_get(addr, "/metrics", None).0, 401);
    assert_eq!(
        http_get(addr, "/metrics", Some("Bearer wrong-token-0123456789")).0,
        401
    );
    let (status, text) = http_get(addr, "/metrics", Some("Bearer s3cret-token-0123456789"));
    assert_eq!(status, 200);
    assert!(text.contains("swarm_info{kind=\"queue\""), "{text}");
}

//! A node still loading its dumps is a live scrape target: its metrics listener starts before
//! the data loads and answers `/metrics` with `swarm_ready 0` (docs/operations.md, "Metrics"),
//! then `swarm_ready 1` once the node serves.

mod common;

use common::*;
use std::process::{Command, Stdio};

/// The value of an unlabelled sample in a scrape.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn a_loading_node_answers_scrapes_with_swarm_ready_0() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    // Enough data that loading takes a while (a debug build loads a few hundred thousand
    // records a second).
    for channel in ["a", "b", "c", "d"] {
        write_dump(&data_dir, channel, 100_000);
    }
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[metrics]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let mut node = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "-c"])
        .arg(&config)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let root_log = dir.path().join("log/root.log");
    let metrics = wait_for_metrics_addr(&root_log);

    let (status, text) = http_get(metrics, "/metrics", None);
    let loaded = std::fs::read_to_string(&root_log)
        .unwrap_or_default()
        .contains("listening on");
    assert_eq!(status, 200, "{text}");
    assert!(
        !loaded,
        "the node finished loading before the scrape: the test needs more data"
    );
    assert_eq!(sample(&text, "swarm_ready"), Some(0.0), "{text}");
    assert!(text.contains("swarm_info{kind=\"dht\""), "{text}");

    wait_until("swarm_ready 1 once the node serves", || {
        let (_, text) = http_get(metrics, "/metrics", None);
        sample(&text, "swarm_ready") == Some(1.0)
    });
    let _ = node.kill();
    let _ = node.wait();
}

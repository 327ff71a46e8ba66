//! dhtdump and the dht node take the same `<data_dir>/.lock` (issue #15, defect 3): run on one
//! directory, they raced on the renames of `<ch>.dump.tmp` and `<ch>.dump`. Now the second one
//! is refused, naming the holder.

mod common;

use common::{dhtdump_binary, dhtnode_binary, read_text, wait_until, Dump, Node};
use std::path::Path;
use std::process::{Command, Output};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a program that is expected to refuse to start; its output.
fn run_refused(binary: &Path, args: &[&str]) -> Output {
    let output = Command::new(binary).args(args).output().expect("run");
    assert_eq!(
        output.status.code(),
        Some(1),
        "{} {args:?} was not refused: {}",
        binary.display(),
        stderr(&output)
    );
    output
}

#[test]
fn dhtdump_and_a_node_never_share_a_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    let node = Node::start(&dir.path().join("node/data"), &dir.path().join("node/log"));
    let addr = node.addr.to_string();
    let node_holder = format!("(pid {}, dhtnode)", node.child.id());
    // `dhtdump --oneshot` on `data_dir`, which must refuse to start.
    let refused_oneshot = |data_dir: &str, log_dir: &str| {
        run_refused(
            Path::new(dhtdump_binary()),
            &[
                "--oneshot",
                "--node",
                &addr,
                "--data-dir",
                data_dir,
                "--log-dir",
                &path(log_dir),
            ],
        )
    };

    // dhtdump on the node's directory: refused, naming the node; it wrote nothing there (the
    // node's own files: its lock and its change log, wal/).
    let list = || {
        let mut files: Vec<String> = std::fs::read_dir(dir.path().join("node/data"))
            .expect("list")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into())
            .collect();
        files.sort();
        files
    };
    let before = list();
    assert_eq!(before, vec![".lock".to_string(), "wal".to_string()]);
    let node_data = path("node/data");
    let output = refused_oneshot(&node_data, "refused/log");
    let message = stderr(&output);
    assert!(
        message.contains(&format!("data directory {node_data} is in use")),
        "{message}"
    );
    assert!(message.contains(&node_holder), "{message}");
    assert_eq!(list(), before, "dhtdump wrote in the node's directory");

    // A running dhtdump holds its own directory: a node there, or a second dhtdump, is refused.
    let dump_data = path("dump/data");
    let dump = Dump::spawn(
        &["--node", &addr, "--data-dir", &dump_data],
        &dir.path().join("dump/log"),
    );
    let dump_holder = format!("{} dhtdump", dump.child.id());
    wait_until("dhtdump to hold its data directory", || {
        read_text(&dir.path().join("dump/data/.lock")).trim() == dump_holder
    });
    let output = run_refused(
        dhtnode_binary(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &dump_data,
            "--log-dir",
            &path("second-node/log"),
        ],
    );
    let holder = format!("(pid {}, dhtdump)", dump.child.id());
    assert!(stderr(&output).contains(&holder), "{}", stderr(&output));
    let output = refused_oneshot(&dump_data, "second-dump/log");
    assert!(stderr(&output).contains(&holder), "{}", stderr(&output));
    drop(dump);
    node.stop();
}

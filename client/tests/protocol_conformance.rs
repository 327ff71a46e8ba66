//! The independent conformance client, `scripts/conformance/protocol_client.py` (Python, written
//! from docs/protocol.md alone), run as part of the suite against the real nodes of this
//! test's profile: every request of the three node kinds and the common ones, the handshake with
//! and without authentication, protocol errors and limits, each reply checked field by field
//! against the document. A change that makes the nodes and the document disagree fails here.
//!
//! It needs `python3` (standard library only; `.ci/run` installs it) and `openssl` (a throwaway
//! certificate for its TLS part, as the deployment test). On a machine without it
//! the test fails, unless `SWARM_TEST_ALLOW_SKIP` names `python3` (docs/testing.md). The script
//! bounds itself (`--limit-s`, stopping every node it started); this test kills it a little
//! after that.

#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The script's own limit (`--limit-s`); this test allows a little more.
const SCRIPT_LIMIT_S: u64 = 100;
const GRACE: Duration = Duration::from_secs(10);

/// target/<profile>, with the three node binaries built in it.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/protocol_conformance-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory")
        .to_path_buf();
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut build = Command::new(cargo);
        build.args(["build", "--bins"]);
        for package in ["dhtnode", "logfilesnode", "queuenode"] {
            build.args(["-p", package]);
        }
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build --bins");
        assert!(status.success(), "cargo build --bins failed");
    }
    profile_dir
}

#[test]
fn the_nodes_answer_as_docs_protocol_md_says() {
    let python = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !python.is_ok_and(|status| status.success()) {
        testkit::skip::skip_or_fail(
            "python3",
            "the conformance client scripts/conformance/protocol_client.py",
            "no python3 on the PATH",
        );
        return;
    }
    let bin_dir = bin_dir();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let script = repo.join("scripts/conformance/protocol_client.py");
    let log = tempfile::NamedTempFile::new().expect("output file");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--limit-s")
        .arg(SCRIPT_LIMIT_S.to_string())
        .current_dir(repo)
        .stdin(Stdio::null())
        .stdout(log.reopen().expect("output file"))
        .stderr(log.reopen().expect("output file"))
        .spawn()
        .expect("run scripts/conformance/protocol_client.py");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(SCRIPT_LIMIT_S) + GRACE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "protocol_client.py did not finish within {} s:\n{}",
                SCRIPT_LIMIT_S,
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(log.path()).unwrap_or_default();
    // Shown with --nocapture, or when the test fails.
    println!("{output}");
    assert!(
        status.success(),
        "scripts/conformance/protocol_client.py failed ({status}):\n{output}"
    );
    assert!(
        output.contains(" checks passed, 0 failed"),
        "protocol_client.py did not report its checks:\n{output}"
    );
}

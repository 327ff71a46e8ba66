//! The deployment's own test, `scripts/tests/test_scripts.sh`, run as part of the suite: systemd
//! units (`systemd-analyze verify`), `scripts/install.sh` into a temporary prefix (twice,
//! idempotent; file ownership as root), the logrotate files (a forced rotation), and
//! `scripts/cluster.sh` end to end on 127.0.0.1 (3 dht nodes with their dhtdumps, 2 logfiles and
//! 2 queue nodes; a dht node killed with SIGKILL and restored from its dhtdump's files).
//!
//! A step the machine cannot run (no systemd-analyze, no logrotate, not root) fails the script,
//! unless `SWARM_TEST_ALLOW_SKIP` names what is missing (docs/testing.md); the steps it then
//! skipped ("SKIP: ..." lines) go into the suite's skip log, which `.ci/run` prints at the end.
//!
//! The binaries of this test's profile are built first (`cargo build --bins`, a no-op when they
//! are up to date) and handed to the script as its BIN_DIR. The script cleans up after itself
//! (its processes and its temporary directory) also when it fails, and gives up after 50 s; this
//! test sends it SIGTERM (which makes it clean up) if it ever runs longer than that, and SIGKILL
//! a few seconds later.

#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The script's own limit (TEST_SCRIPTS_LIMIT_S); this test allows a little more.
const SCRIPT_LIMIT_S: u64 = 50;
const GRACE: Duration = Duration::from_secs(5);

/// target/<profile>, with every binary the script runs built in it.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/deploy_scripts-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory")
        .to_path_buf();
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut build = Command::new(cargo);
        build.args(["build", "--bins"]);
        for package in ["dhtnode", "dhtdump", "logfilesnode", "queuenode", "client"] {
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
fn deployment_scripts() {
    let bin_dir = bin_dir();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let script = repo.join("scripts/tests/test_scripts.sh");
    let log = tempfile::NamedTempFile::new().expect("output file");
    let mut child = Command::new("bash")
        .arg(&script)
        .arg(&bin_dir)
        .env("TEST_SCRIPTS_LIMIT_S", SCRIPT_LIMIT_S.to_string())
        .current_dir(repo)
        .stdin(Stdio::null())
        .stdout(log.reopen().expect("output file"))
        .stderr(log.reopen().expect("output file"))
        .spawn()
        .expect("run scripts/tests/test_scripts.sh");

    let started = Instant::now();
    let term_at = Duration::from_secs(SCRIPT_LIMIT_S) + GRACE;
    let mut terminated = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break status;
        }
        let elapsed = started.elapsed();
        if !terminated && elapsed > term_at {
            // SIGTERM: the script's trap stops its cluster and removes its files.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            terminated = true;
        } else if elapsed > term_at + GRACE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "test_scripts.sh did not finish within {} s:\n{}",
                term_at.as_secs(),
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
        "scripts/tests/test_scripts.sh failed ({status}):\n{output}"
    );
    assert!(
        output.contains("test_scripts.sh: all passed"),
        "test_scripts.sh did not report success:\n{output}"
    );
    for skipped in output
        .lines()
        .filter_map(|line| line.trim().strip_prefix("SKIP: "))
    {
        testkit::skip::record_skip(&format!(
            "{} {}: test_scripts.sh: {skipped}",
            testkit::skip::current_test_binary(),
            testkit::skip::current_test()
        ));
    }
}

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

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The script's own limit (TEST_SCRIPTS_LIMIT_S); this test allows a little more.
const SCRIPT_LIMIT_S: u64 = 50;
const GRACE: Duration = Duration::from_secs(5);

#[test]
fn deployment_scripts() {
    let bin_dir = testkit::workspace_bin_dir(&[
        "dhtnode",
        "dhtdump",
        "logfilesnode",
        "logfiles-check",
        "queuenode",
        "client",
    ]);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let script = repo.join("scripts/tests/test_scripts.sh");
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .arg(&bin_dir)
        .env("TEST_SCRIPTS_LIMIT_S", SCRIPT_LIMIT_S.to_string())
        .current_dir(repo);
    // Past the limit, SIGTERM: the script's trap stops its cluster and removes its files.
    let (status, output) =
        testkit::run_script_bounded(command, Duration::from_secs(SCRIPT_LIMIT_S) + GRACE, GRACE);
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

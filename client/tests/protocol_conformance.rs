//! The independent conformance client, `scripts/conformance/protocol_client.py` (Python, written
//! from docs/protocol.md alone), run as part of the suite against the real nodes of this
//! test's profile: every request of the three node kinds and the common ones, the handshake with
//! and without authentication, protocol errors and limits, each reply checked field by field
//! against the document. A change that makes the nodes and the document disagree fails here.
//!
//! It needs `python3` (standard library only; `.ci/run` installs it) and `openssl` (a throwaway
//! CA and certificates for its TLS part, as the deployment test). On a machine without it
//! the test fails, unless `SWARM_TEST_ALLOW_SKIP` names `python3` (docs/testing.md). Its
//! disk-full checks mount small tmpfs file systems (root); where that is refused the script
//! fails them, unless the same variable names `mount`: then it fills the logfiles node's disk
//! with a file-size limit instead, leaves out the dht's and the queue's (the change log counts
//! that as an I/O error; ring files are memory-mapped), and prints a `SKIPPED mount:` line for each, which this test records in the skip log.
//! The script bounds itself (`--limit-s`, stopping every node it started); this test kills it a
//! little after that.

#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The script's own limit (`--limit-s`); this test allows a little more.
const SCRIPT_LIMIT_S: u64 = 100;
const GRACE: Duration = Duration::from_secs(10);

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
    let bin_dir = testkit::workspace_bin_dir(&["dhtnode", "logfilesnode", "queuenode"]);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let script = repo.join("scripts/conformance/protocol_client.py");
    let mut command = Command::new("python3");
    command
        .arg(&script)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--limit-s")
        .arg(SCRIPT_LIMIT_S.to_string())
        .current_dir(repo);
    // Past the limit, SIGTERM: the client stops every node it started.
    let (status, output) =
        testkit::run_script_bounded(command, Duration::from_secs(SCRIPT_LIMIT_S) + GRACE, GRACE);
    assert!(
        status.success(),
        "scripts/conformance/protocol_client.py failed ({status}):\n{output}"
    );
    assert!(
        output.contains(" checks passed, 0 failed"),
        "protocol_client.py did not report its checks:\n{output}"
    );
    // The script skipped only what the variable allows; the skip log lists each.
    for line in output.lines() {
        if let Some(skipped) = line.strip_prefix("SKIPPED mount: ") {
            let (what, reason) = skipped.split_once(": ").unwrap_or((skipped, ""));
            testkit::skip::skip_or_fail("mount", what, reason);
        }
    }
}

//! Checks that cannot run on this machine: they fail the test, unless the one opt-out variable,
//! [`ALLOW_SKIP_VAR`], names what the machine lacks — then the skip is written to the skip log
//! ([`skip_log_path`]) that `.ci/run` prints in its last lines, so a green run never hides a
//! check that did not run.
//!
//! The variable holds a comma-separated list of capabilities ([`CAPABILITIES`]), or `all`:
//! `SWARM_TEST_ALLOW_SKIP=mount,root` on a developer machine without root. An unknown word
//! fails every test that consults it (a typo must not look like an opt-out).

use std::io::Write;
use std::path::{Path, PathBuf};

/// The opt-out variable (docs/testing.md).
pub const ALLOW_SKIP_VAR: &str = "SWARM_TEST_ALLOW_SKIP";

/// What the variable may name, with what each stands for.
pub const CAPABILITIES: &[(&str, &str)] = &[
    ("mount", "mounting a tmpfs (root, or CAP_SYS_ADMIN)"),
    ("root", "running as root (file ownership checks)"),
    (
        "systemd",
        "systemd-analyze and systemd-sysusers (Debian's systemd package)",
    ),
    ("logrotate", "the logrotate program"),
    (
        "chromium",
        "headless Chromium (Debian's chromium package, or SWARM_CHROMIUM naming the binary)",
    ),
    (
        "python3",
        "python3 for the conformance client (Debian's python3 package)",
    ),
];

/// The skip log's file name, in the target directory.
pub const SKIP_LOG_NAME: &str = "swarm-test-skips.log";

/// Whether the opt-out variable allows skipping checks that need `capability`. Panics on a
/// capability this module does not know (a bug in the caller) and on an unknown word in the
/// variable.
pub fn skip_allowed(capability: &str) -> bool {
    assert!(
        CAPABILITIES.iter().any(|(name, _)| *name == capability),
        "unknown capability {capability:?}"
    );
    let Ok(value) = std::env::var(ALLOW_SKIP_VAR) else {
        return false;
    };
    let mut allowed = false;
    for word in value
        .split(',')
        .map(str::trim)
        .filter(|word| !word.is_empty())
    {
        let known = word == "all" || CAPABILITIES.iter().any(|(name, _)| *name == word);
        assert!(
            known,
            "{ALLOW_SKIP_VAR}={value:?}: unknown word {word:?}; it takes a comma-separated list \
             of {} or `all`",
            capability_list()
        );
        allowed |= word == "all" || word == capability;
    }
    allowed
}

fn capability_list() -> String {
    CAPABILITIES
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A check of the running test that needs `capability` cannot run here (`reason` says why):
/// fails the test, or — when [`skip_allowed`] — records the skip and returns, and the caller
/// then leaves the check out.
pub fn skip_or_fail(capability: &str, what: &str, reason: &str) {
    let description = CAPABILITIES
        .iter()
        .find(|(name, _)| *name == capability)
        .map_or("", |(_, description)| *description);
    if !skip_allowed(capability) {
        panic!(
            "{what} cannot run on this machine: {reason}. It needs {description}; on a machine \
             that cannot do that, set {ALLOW_SKIP_VAR}={capability} to skip it (the run then \
             lists it as skipped; see docs/testing.md)"
        );
    }
    record_skip(&format!(
        "{} {}: {what} (needs {capability}: {reason})",
        current_test_binary(),
        current_test()
    ));
}

/// Appends `line` to the skip log and says it on stderr (shown with `--nocapture`).
pub fn record_skip(line: &str) {
    let line = line.replace('\n', " ");
    eprintln!("SKIPPED: {line}");
    let path = skip_log_path();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{line}"));
    if let Err(err) = written {
        // A skip nobody would see is a silent skip: fail instead.
        panic!("cannot record a skipped check in {}: {err}", path.display());
    }
}

/// `<target dir>/swarm-test-skips.log`: the target directory is found from the running test
/// binary (`target/<profile>/deps/<test>`), so it follows `CARGO_TARGET_DIR`.
pub fn skip_log_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target directory above the test binary");
    target.join(SKIP_LOG_NAME)
}

/// The name of the running test binary: `target/<profile>/deps/<name>-<hash>` gives `<name>`
/// (the file under `tests/`, or the crate for unit tests).
pub fn current_test_binary() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| {
            stem.rsplit_once('-')
                .map_or(stem.clone(), |(name, _)| name.to_string())
        })
        .unwrap_or_default()
}

/// The running test's name (libtest names each test's thread after it).
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .map_or_else(
            || {
                std::env::current_exe()
                    .ok()
                    .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| "a test".to_string())
            },
            str::to_string,
        )
}

//! Every file under `fuzz/seeds/<target>/` — the seed corpus and the crash inputs saved as
//! regressions (`regression-*`) — goes through its target's checks, the same entry point the
//! cargo-fuzz target calls (`fuzz_checks::<target>::check`). A file that panics fails the test,
//! named with the panic's message; so a fixed crash cannot come back unnoticed, and a seed that
//! no longer satisfies its target's invariants is found without a fuzzing run.
//!
//! Also checked: every cargo-fuzz target (`fuzz/Cargo.toml`) is replayed here and calls these
//! checks, and every seed directory belongs to a target (a misnamed directory would otherwise
//! never be replayed).

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .unwrap_or_else(|err| panic!("read {}: {err}", current.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Runs every input of `target` through its checks; fails naming each input that panicked.
fn replay(target: &str) {
    let target = fuzz_checks::TARGETS
        .iter()
        .find(|candidate| candidate.name == target)
        .unwrap_or_else(|| panic!("no target {target} in fuzz_checks::TARGETS"));
    let (check, name) = (target.check, target.name);
    let dir = fuzz_dir().join("seeds").join(name);
    let inputs = files_under(&dir);
    assert!(
        !inputs.is_empty(),
        "{name}: no inputs in {} (every target has seeds)",
        dir.display()
    );
    let mut failures = Vec::new();
    for input in &inputs {
        let data = std::fs::read(input).unwrap_or_else(|err| panic!("{}: {err}", input.display()));
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            failures.push(format!("{}: {}", input.display(), panic_message(&*payload)));
        }
    }
    if let Some(work_dir) = target.work_dir {
        fuzz_checks::remove_work_dir(work_dir);
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} inputs fail the target's checks:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )*

        /// The targets this file has a test for.
        const REPLAYED: &[&str] = &[$(stringify!($target)),*];
    };
}

replay_tests!(
    batch_decoder,
    bucket_decoder,
    bucket_index,
    client_hello,
    config_files,
    credentials_file,
    dht_dump_reader,
    dht_log_reader,
    frame_decoder,
    queue_ring_file,
    request_payloads,
    state_files,
    tcm_reader,
);

/// The `name = "..."` of every `[[bin]]` in fuzz/Cargo.toml: the cargo-fuzz targets.
fn cargo_fuzz_targets() -> BTreeSet<String> {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut targets = BTreeSet::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if let Some(value) = line.strip_prefix("name = ").filter(|_| in_bin) {
            targets.insert(value.trim_matches('"').to_string());
        }
    }
    targets
}

#[test]
fn every_cargo_fuzz_target_runs_these_checks_and_is_replayed() {
    let cargo_fuzz = cargo_fuzz_targets();
    let shared: BTreeSet<String> = fuzz_checks::TARGETS
        .iter()
        .map(|target| target.name.to_string())
        .collect();
    let replayed: BTreeSet<String> = REPLAYED.iter().map(|name| name.to_string()).collect();
    assert!(
        cargo_fuzz.len() >= 12,
        "fuzz/Cargo.toml lists {cargo_fuzz:?}"
    );
    assert_eq!(
        cargo_fuzz, shared,
        "fuzz/Cargo.toml against fuzz_checks::TARGETS"
    );
    assert_eq!(
        cargo_fuzz, replayed,
        "fuzz/Cargo.toml against the tests here"
    );
    for target in &cargo_fuzz {
        let path = fuzz_dir().join(format!("fuzz_targets/{target}.rs"));
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert!(
            source.contains(&format!("fuzz_checks::{target}::check(data)")),
            "{} does not call fuzz_checks::{target}::check",
            path.display()
        );
    }
}

#[test]
fn every_seed_directory_belongs_to_a_target() {
    let targets = cargo_fuzz_targets();
    for entry in std::fs::read_dir(fuzz_dir().join("seeds")).expect("fuzz/seeds") {
        let path = entry.expect("directory entry").path();
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(
            path.is_dir() && targets.contains(&name),
            "{}: not the seed directory of a fuzz target (those are {targets:?})",
            path.display()
        );
    }
}

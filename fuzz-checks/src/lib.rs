//! The invariants of every fuzz target, one module per target with one entry point,
//! `check(data)`, that panics when an invariant does not hold. Shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/<name>.rs`, one line each) and the suite's replay of every seed and saved
//! crash input (`tests/replay.rs`, run by `cargo test --workspace`), so the two never drift.
//!
//! [`TARGETS`] lists them by the name of their cargo-fuzz target, which is also the name of
//! their directory under `fuzz/seeds/`.

use std::path::{Path, PathBuf};

pub mod batch_decoder;
pub mod bucket_decoder;
pub mod bucket_index;
pub mod client_hello;
pub mod config_files;
pub mod credentials_file;
pub mod dht_dump_reader;
pub mod dht_log_reader;
pub mod frame_decoder;
pub mod queue_ring_file;
pub mod request_payloads;
pub mod state_files;
pub mod tcm_reader;

/// A fuzz target.
pub struct Target {
    /// Its cargo-fuzz name, and the name of its directory under `fuzz/seeds/`.
    pub name: &'static str,
    /// Its entry point: one input; panics when an invariant does not hold.
    pub check: fn(&[u8]),
    /// The name of its [`work_dir`], for the targets that need files.
    pub work_dir: Option<&'static str>,
}

const fn target(name: &'static str, check: fn(&[u8])) -> Target {
    Target {
        name,
        check,
        work_dir: None,
    }
}

/// Every target.
pub const TARGETS: &[Target] = &[
    target("batch_decoder", batch_decoder::check),
    target("bucket_decoder", bucket_decoder::check),
    target("bucket_index", bucket_index::check),
    target("client_hello", client_hello::check),
    target("config_files", config_files::check),
    target("credentials_file", credentials_file::check),
    target("dht_dump_reader", dht_dump_reader::check),
    Target {
        work_dir: Some(dht_log_reader::WORK_DIR),
        ..target("dht_log_reader", dht_log_reader::check)
    },
    target("frame_decoder", frame_decoder::check),
    Target {
        work_dir: Some(queue_ring_file::WORK_DIR),
        ..target("queue_ring_file", queue_ring_file::check)
    },
    target("request_payloads", request_payloads::check),
    Target {
        work_dir: Some(state_files::WORK_DIR),
        ..target("state_files", state_files::check)
    },
    target("tcm_reader", tcm_reader::check),
];

/// `swarm-fuzz-<name>-<pid>` under /dev/shm (or the temp directory where there is none): a
/// directory of this process's own for the targets that need files, emptied and made afresh
/// (with `subdirs`) on first use. `scripts/fuzz.sh` removes those of ended processes; the replay
/// test removes its own with [`remove_work_dir`].
pub fn work_dir(name: &str, subdirs: &[&str]) -> PathBuf {
    let dir = work_dir_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the fuzz work directory");
    for sub in subdirs {
        std::fs::create_dir_all(dir.join(sub)).expect("create the fuzz work directory");
    }
    dir
}

/// Removes this process's work directory `name` (see [`work_dir`]).
pub fn remove_work_dir(name: &str) {
    let _ = std::fs::remove_dir_all(work_dir_path(name));
}

fn work_dir_path(name: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("swarm-fuzz-{name}-{}", std::process::id()))
}

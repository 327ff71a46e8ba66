//! Reads arbitrary bytes as the state files a node reads back at start:
//! - even first byte: the logfiles open-bucket journal (`<data_dir>/open-buckets.journal`, read
//!   by `Journal::open` after an unclean stop);
//! - odd first byte: the dht node's range state file (`<data_dir>/dht-state.toml`, read by
//!   `dhtnode::state::load`).
//!
//! The rest of the input is the file. Invariants checked:
//! - nothing panics;
//! - the journal's entries are valid channel names, sorted, without duplicates; recorded again
//!   into a new journal (`record_open`) and read back after a "crash", they are the same list;
//! - a state file that loads saves (`state::save`) and loads back to the same state.

use dhtnode::state;
use logfilesnode::engine::journal::{Journal, JOURNAL_FILE_NAME};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The name of this target's work directory ([`crate::work_dir`]).
pub const WORK_DIR: &str = "state-files";

fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| crate::work_dir(WORK_DIR, &["journal", "state", "state-saved"]))
}

fn journal(data: &[u8]) {
    let dir = work_dir().join("journal");
    std::fs::write(dir.join(JOURNAL_FILE_NAME), data).expect("write the journal");
    let Ok((mut journal, left)) = Journal::open(&dir) else {
        // Not UTF-8: refused as a whole (the node then refuses to start, naming the file).
        return;
    };
    for pair in left.windows(2) {
        assert!(pair[0] < pair[1], "journal entries not sorted and unique");
    }
    for (channel, bucket) in &left {
        assert!(
            logfilesnode::valid_channel_name(channel),
            "bad channel {channel:?}"
        );
        journal.record_open(channel, *bucket).expect("record");
    }
    drop(journal); // a crash: the file stays
    let (journal, again) = Journal::open(&dir).expect("reopen the journal");
    assert_eq!(again, left, "recorded entries read back differently");
    journal.remove().expect("remove the journal");
}

fn dht_state(data: &[u8]) {
    let dir = work_dir().join("state");
    std::fs::write(dir.join(state::STATE_FILE), data).expect("write the state file");
    let loaded = match state::load(&dir) {
        Ok(Some(loaded)) => loaded,
        Ok(None) => panic!("an existing state file read as missing"),
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    assert_eq!(loaded.range, loaded.range.normalized());
    let saved_dir = work_dir().join("state-saved");
    state::save(&saved_dir, &loaded).expect("save a loaded state");
    let again = state::load(&saved_dir)
        .expect("load a saved state")
        .expect("the saved state file exists");
    assert_eq!(again, loaded, "state changed through save and load");
}

/// The target's entry point: one input. Panics when an invariant above does not hold.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        journal(rest);
    } else {
        dht_state(rest);
    }
}

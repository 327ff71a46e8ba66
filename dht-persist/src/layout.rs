//! The dht data directory (`data_dir` in the config): every file name in it, what each file is,
//! and the small file-system steps the writers share (naming a removed or corrupt file, making a
//! rename durable).
//!
//! | path | what |
//! |---|---|
//! | `<data_dir>/<ch>.dump` | the latest complete dump of channel `<ch>` ([`crate::dump::format`], version 1) |
//! | `<data_dir>/<ch>.dump.backup` | the dump before it (kept when a new dump is renamed into place) |
//! | `<data_dir>/<ch>.dump.tmp` | a dump being written; a leftover after a crash is never loaded and is removed at start-up (logged) |
//! | `<data_dir>/<ch>.tcm` | a dump in the reference system's format ([`crate::tcm`]); imported when `<ch>` has no `.dump`/`.dump.backup` |
//! | `<data_dir>/removed/<ch>.<unix_s>.dump` (`.dump.backup`, `.tcm`) | files of a channel removed by RemoveChannel: kept, never loaded |
//! | `<data_dir>/corrupt/<ch>.<unix_s>.dump` (`.dump.backup`) | files that failed their checks at start-up: kept for inspection, never loaded |
//! | `<data_dir>/corrupt/wal.<unix_s>/` | change-log bytes an operator gave up past damage (`dumptool log-check --repair --discard-after-damage`, [`crate::wal::discard_from`]): kept, never read |
//! | `<data_dir>/wal/<n>.log` | the change log's segments ([`crate::wal`]): `<n>` is the segment number in decimal, at least 8 digits (`00000001.log`); besides them the node writes only `wal/covered` and `wal/jump-base` ([`crate::wal::covered`], [`crate::wal::jump_base`]) |
//! | `<data_dir>/dht-state.toml` (`.tmp` while written) | the node's hash range and an unfinished redistribution (`dhtnode::state`) |
//! | `<data_dir>/.lock` | one process per data directory (`node_core::data_lock`) |
//!
//! Channel names are `[A-Za-z0-9_-]{1,100}` and contain no `.`, so every file name parses back
//! to one channel ([`classify`]). Anything else in the directory is left alone by the loader,
//! with a warning.

use node_core::protocol::dht::valid_channel_name;
use std::fs;
use std::path::{Path, PathBuf};

pub const DUMP_SUFFIX: &str = ".dump";
pub const BACKUP_SUFFIX: &str = ".dump.backup";
pub const TMP_SUFFIX: &str = ".dump.tmp";
pub const TCM_SUFFIX: &str = ".tcm";

/// Where RemoveChannel's files go ([`crate::dump::writer::DumpThread::move_aside`]).
pub const REMOVED_DIR: &str = "removed";
/// Where the loader moves dump files that failed their checks.
pub const CORRUPT_DIR: &str = "corrupt";

/// The change log's directory under the data directory ([`crate::wal`]).
pub const WAL_DIR: &str = "wal";
/// The suffix of a change-log segment file.
pub const SEGMENT_SUFFIX: &str = ".log";
/// The digits a segment number is padded to in its file name.
const SEGMENT_DIGITS: usize = 8;

/// `<data_dir>/wal`.
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(WAL_DIR)
}

/// A segment's file name: its number, zero-padded to 8 digits (more when it is larger).
pub fn segment_file_name(number: u64) -> String {
    format!("{number:0SEGMENT_DIGITS$}{SEGMENT_SUFFIX}")
}

/// The segment number a file name of `wal/` stands for: exactly what [`segment_file_name`]
/// writes (at least 8 decimal digits, no sign, `.log`), else `None`.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() < SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = digits.parse().ok()?;
    (segment_file_name(number) == name).then_some(number)
}

/// The node's state file (its hash range; written by `dhtnode::state`).
pub const STATE_FILE: &str = "dht-state.toml";
/// The state file while it is written (renamed over [`STATE_FILE`] once complete).
pub const STATE_TMP_FILE: &str = "dht-state.toml.tmp";

/// `<data_dir>/<channel><suffix>`.
pub fn channel_file(data_dir: &Path, channel: &str, suffix: &str) -> PathBuf {
    data_dir.join(format!("{channel}{suffix}"))
}

/// Which of a channel's files a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelFileKind {
    /// `<ch>.dump`
    Dump,
    /// `<ch>.dump.backup`
    Backup,
    /// `<ch>.tcm`
    Tcm,
    /// `<ch>.dump.tmp`: a dump that never finished.
    Unfinished,
}

/// What a plain file of the data directory is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// One of a channel's dump files.
    Channel {
        channel: &'a str,
        kind: ChannelFileKind,
    },
    /// A file of the directory that is not a dump: the state file, the lock.
    NotADump,
    /// A dump suffix after something that is not a valid channel name.
    BadChannelName(&'a str),
    /// No dump suffix.
    Unknown,
}

/// Names a plain file of the data directory (see the module doc).
pub fn classify(name: &str) -> Entry<'_> {
    if name == STATE_FILE || name == STATE_TMP_FILE || name == node_core::data_dir::LOCK_FILE_NAME {
        return Entry::NotADump;
    }
    let suffixes = [
        (TMP_SUFFIX, ChannelFileKind::Unfinished),
        (BACKUP_SUFFIX, ChannelFileKind::Backup),
        (DUMP_SUFFIX, ChannelFileKind::Dump),
        (TCM_SUFFIX, ChannelFileKind::Tcm),
    ];
    for (suffix, kind) in suffixes {
        if let Some(channel) = name.strip_suffix(suffix) {
            return if valid_channel_name(channel) {
                Entry::Channel { channel, kind }
            } else {
                Entry::BadChannelName(channel)
            };
        }
    }
    Entry::Unknown
}

/// `<dir>/<ch>.<stamp><suffix>`, or `<ch>.<stamp>-<n><suffix>` if that is taken: a name in
/// `removed/` or `corrupt/` that never overwrites an earlier file.
pub fn free_name(dir: &Path, channel: &str, stamp: u64, suffix: &str) -> PathBuf {
    let mut candidate = dir.join(format!("{channel}.{stamp}{suffix}"));
    let mut n = 1u32;
    while fs::symlink_metadata(&candidate).is_ok() {
        candidate = dir.join(format!("{channel}.{stamp}-{n}{suffix}"));
        n += 1;
    }
    candidate
}

/// Makes renames in `dir` durable (node-core's, which every node's data directory uses).
pub use node_core::data_dir::sync_dir;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_channel_and_kind() {
        for (suffix, kind) in [
            (DUMP_SUFFIX, ChannelFileKind::Dump),
            (BACKUP_SUFFIX, ChannelFileKind::Backup),
            (TMP_SUFFIX, ChannelFileKind::Unfinished),
            (TCM_SUFFIX, ChannelFileKind::Tcm),
        ] {
            let name = format!("users-1{suffix}");
            assert_eq!(
                classify(&name),
                Entry::Channel {
                    channel: "users-1",
                    kind
                },
                "{name}"
            );
        }
        assert_eq!(classify("bad.name.dump"), Entry::BadChannelName("bad.name"));
        assert_eq!(classify(".dump"), Entry::BadChannelName(""));
        assert_eq!(classify("notes.txt"), Entry::Unknown);
        for name in [
            STATE_FILE,
            STATE_TMP_FILE,
            node_core::data_dir::LOCK_FILE_NAME,
        ] {
            assert_eq!(classify(name), Entry::NotADump, "{name}");
        }
    }

    #[test]
    fn segment_names_parse_back_to_their_number_only() {
        for number in [0, 1, 42, 99_999_999, 100_000_000, u64::MAX] {
            let name = segment_file_name(number);
            assert_eq!(parse_segment_file_name(&name), Some(number), "{name}");
        }
        assert_eq!(segment_file_name(1), "00000001.log");
        assert_eq!(segment_file_name(123_456_789), "123456789.log");
        for bad in [
            "1.log",
            "0000001.log",
            "000000001.log", // 9 digits for a number that takes 8: not a name we write
            "0000000a.log",
            "+0000001.log",
            "00000001.log.tmp",
            "00000001",
            "99999999999999999999.log", // past u64
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn free_names_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let first = free_name(dir.path(), "ch", 7, DUMP_SUFFIX);
        assert_eq!(first, dir.path().join("ch.7.dump"));
        fs::write(&first, b"x").unwrap();
        let second = free_name(dir.path(), "ch", 7, DUMP_SUFFIX);
        assert_eq!(second, dir.path().join("ch.7-1.dump"));
    }
}

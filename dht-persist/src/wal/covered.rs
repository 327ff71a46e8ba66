//! The log position the last complete dump cycle covers, kept in `wal/covered` so that a
//! start knows where the replay may begin for a channel that has **no** dump: every channel
//! that held records when that cycle began was dumped by it, so a channel without a dump now
//! was created after that position (or removed since), and the log after it holds all of its
//! changes. Without the file (no cycle completed since the log began) the replay starts at the
//! log's first entry.
//!
//! The file: 20 bytes — the magic `SWLCOV01`, the position (`u64` little-endian), and a CRC32
//! of those 16 bytes (`u32` little-endian). Written to `covered.tmp`, fsynced and renamed into
//! place, the directory fsynced. A damaged file counts as missing (the replay then reads the
//! whole log: slower, never wrong).

use std::io;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SWLCOV01";
const FILE_LEN: usize = 20;
pub const COVERED_FILE: &str = "covered";
/// Where [`write_covered`] writes before renaming into place.
pub const COVERED_TMP_FILE: &str = "covered.tmp";
/// The largest position a dump or this file can cover: the log's writer continues after it,
/// and sequence numbers end below 2^64 - 1. A larger one is damage (or forgery).
pub const MAX_COVERED_POSITION: u64 = u64::MAX - 2;

fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Records that every channel's dump covers `position` (a complete dump cycle).
pub fn write_covered(dir: &Path, position: u64) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(FILE_LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&position.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(bytes.len(), FILE_LEN);
    node_core::data_dir::replace_file(
        &path_in(dir, COVERED_TMP_FILE),
        &path_in(dir, COVERED_FILE),
        &bytes,
    )
}

/// What the last complete dump cycle covers, if `dir` records it: `Ok(None)` when the file is
/// missing, `Err` naming the problem when it is there but damaged.
pub fn read_covered(dir: &Path) -> Result<Option<u64>, String> {
    let path = path_in(dir, COVERED_FILE);
    // One that is not a regular file is not read (a FIFO would block): the replay reads the
    // whole log, and the next complete cycle renames a real file over it.
    let Some(bytes) = node_core::data_dir::read_small_file(&path, FILE_LEN as u64)? else {
        return Ok(None);
    };
    let damaged = |what: &str| Err(format!("{}: {what}", path.display()));
    if bytes.len() != FILE_LEN {
        return damaged(&format!("{} bytes, expected {FILE_LEN}", bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return damaged("not a covered-position file (bad magic)");
    }
    let (head, crc) = bytes.split_at(16);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(head) != stored {
        return damaged("CRC mismatch");
    }
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&head[8..16]);
    let position = u64::from_le_bytes(bytes);
    if position > MAX_COVERED_POSITION {
        return damaged(&format!(
            "position {position} is past the largest a change log reaches \
             ({MAX_COVERED_POSITION}): damaged or forged"
        ));
    }
    Ok(Some(position))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_written_position_reads_back_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_covered(dir.path()), Ok(None));
        write_covered(dir.path(), 12345).unwrap();
        assert_eq!(read_covered(dir.path()), Ok(Some(12345)));
        write_covered(dir.path(), u64::MAX - 2).unwrap();
        assert_eq!(read_covered(dir.path()), Ok(Some(u64::MAX - 2)));
        let path = dir.path().join(COVERED_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[9] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let error = read_covered(dir.path()).unwrap_err();
        assert!(error.contains("CRC mismatch"), "{error}");
        fs::write(&path, b"short").unwrap();
        let error = read_covered(dir.path()).unwrap_err();
        assert!(error.contains("5 bytes"), "{error}");
        assert!(!dir.path().join("covered.tmp").exists());
    }
}

//! The dumps a log's sequence jump was begun over, kept in `wal/jump-base`, so that the start's
//! gap check tells them from older dumps restored since.
//!
//! A node whose dumps cover more than its log holds (the first start after a restore from
//! dhtdump's dumps, or after the log was deleted) begins its log with a sequence jump past the
//! newest dump. A channel whose dump covers less was loaded from that dump as it is: the changes
//! between were in no file when the log began, and never in this node since. A crash before the
//! next complete dump cycle leaves that dump below the log's first position: without this record
//! the next start could not tell it from an old dump restored over a newer one (a real gap).
//! With it, a dump at or past the position recorded for its channel is no gap; one below it, or
//! of a channel not recorded, still is.
//!
//! The file: text; a first line `segment <number> <first_seq>` (the segment the jump begins),
//! then one line `<channel> <position>` per channel whose dump covered less than the jump. It
//! says something only while that segment is the log's first (once dumps cover the jump and the
//! segment is deleted, the log's first segment is another). Written to `jump-base.tmp`, fsynced
//! and renamed into place, the directory fsynced. A damaged file counts as missing (the gap check
//! is then as strict as without it: never less).

use node_core::protocol::channels::valid_channel_name;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

pub const JUMP_BASE_FILE: &str = "jump-base";
/// Where [`write_jump_base`] writes before renaming into place.
pub const JUMP_BASE_TMP_FILE: &str = "jump-base.tmp";
/// The longest file read (a line per channel: far more than any node's channels).
const MAX_FILE_BYTES: u64 = 256 << 20;

/// The segment a sequence jump begins, and the position each channel's dump covered then.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JumpBase {
    pub segment: u64,
    pub first_seq: u64,
    pub positions: BTreeMap<String, u64>,
}

impl JumpBase {
    /// Whether a dump of `channel` covering `position`, below the first position of the log
    /// whose first segment is `segment` starting at `first_seq`, is one the log was begun over
    /// (or newer): then the log holds every change since, and there is no gap.
    pub fn accepts(&self, segment: u64, first_seq: u64, channel: &str, position: u64) -> bool {
        self.segment == segment
            && self.first_seq == first_seq
            && self
                .positions
                .get(channel)
                .is_some_and(|&base| position >= base)
    }
}

/// Records `base` in `dir` (see the module doc).
pub fn write_jump_base(dir: &Path, base: &JumpBase) -> io::Result<()> {
    let mut text = format!("segment {} {}\n", base.segment, base.first_seq);
    for (channel, position) in &base.positions {
        text.push_str(&format!("{channel} {position}\n"));
    }
    node_core::data_dir::replace_file(
        &dir.join(JUMP_BASE_TMP_FILE),
        &dir.join(JUMP_BASE_FILE),
        text.as_bytes(),
    )
}

/// What `dir` records: `Ok(None)` when there is no file, `Err` naming the problem when it is
/// there but damaged (or not a regular file).
pub fn read_jump_base(dir: &Path) -> Result<Option<JumpBase>, String> {
    let path = dir.join(JUMP_BASE_FILE);
    let Some(bytes) = node_core::data_dir::read_small_file(&path, MAX_FILE_BYTES)? else {
        return Ok(None);
    };
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
    parse(&text)
        .map(Some)
        .map_err(|problem| format!("{}: {problem}", path.display()))
}

fn parse(text: &str) -> Result<JumpBase, String> {
    let mut lines = text.lines().enumerate();
    let head = lines.next().map_or("", |(_, line)| line);
    let mut base = match head.split(' ').collect::<Vec<_>>()[..] {
        ["segment", number, first_seq] => JumpBase {
            segment: number
                .parse()
                .map_err(|_| format!("bad segment number {number:?}"))?,
            first_seq: first_seq
                .parse()
                .map_err(|_| format!("bad first position {first_seq:?}"))?,
            positions: BTreeMap::new(),
        },
        _ => {
            return Err(format!(
                "line 1 is {head:?}, not `segment <number> <first_seq>`"
            ))
        }
    };
    for (index, line) in lines {
        let parsed = line
            .split_once(' ')
            .filter(|(channel, _)| valid_channel_name(channel))
            .and_then(|(channel, position)| Some((channel, position.parse::<u64>().ok()?)));
        let Some((channel, position)) = parsed else {
            return Err(format!(
                "line {} is {line:?}, not `<channel> <position>`",
                index + 1
            ));
        };
        base.positions.insert(channel.to_string(), position);
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_written_base_reads_back_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_jump_base(dir.path()), Ok(None));
        let base = JumpBase {
            segment: 3,
            first_seq: 21,
            positions: [("a".to_string(), 10), ("b-2".to_string(), 15)].into(),
        };
        write_jump_base(dir.path(), &base).unwrap();
        assert_eq!(read_jump_base(dir.path()), Ok(Some(base.clone())));
        assert!(base.accepts(3, 21, "a", 10));
        assert!(base.accepts(3, 21, "a", 12), "a newer dump");
        assert!(!base.accepts(3, 21, "a", 9), "an older dump");
        assert!(!base.accepts(3, 21, "c", 10), "a channel not recorded");
        assert!(!base.accepts(4, 21, "a", 10), "another first segment");
        let path = dir.path().join(JUMP_BASE_FILE);
        fs::write(&path, "segment 3 21\na ten\n").unwrap();
        let problem = read_jump_base(dir.path()).unwrap_err();
        assert!(
            problem.contains("line 2") && problem.contains("jump-base"),
            "{problem}"
        );
        fs::write(&path, "a 10\n").unwrap();
        assert!(read_jump_base(dir.path()).unwrap_err().contains("line 1"));
    }
}

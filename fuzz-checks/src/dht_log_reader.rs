//! Reads arbitrary bytes as a segment of the dht change log (`DATA_DIR/wal/<n>.log`, replayed
//! at start). Invariants checked:
//! - nothing panics, and nothing allocates beyond the entry limit (the reader sizes a body by
//!   the bytes the segment has);
//! - in memory (`SegmentReader`): every entry accepted re-encodes (`encode_entry`) to exactly
//!   its own bytes, or for a PutBatch, whose LZ4 block may be encoded differently, to an entry
//!   with the same records;
//! - as a log directory (`LogReader`, the file as `00000001.log`): reading ends cleanly, at a
//!   torn tail, or with an error; a torn tail, once cut, leaves a log that reads to the same
//!   end with the same entries and nothing torn.

use dht_persist::wal::format::{encode_entry, Change, ENTRY_HEADER_LEN};
use dht_persist::wal::segment::SegmentReader;
use dht_persist::wal::{LogReader, LoggedChange, ReadFrom};
use node_core::protocol::batch::append_record;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The name of this target's work directory ([`crate::work_dir`]).
pub const WORK_DIR: &str = "dht-log";

fn log_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| crate::work_dir(WORK_DIR, &["wal"]).join("wal"))
}

/// The target's entry point: one input. Panics when an invariant above does not hold.
pub fn check(data: &[u8]) {
    in_memory(data);
    as_a_log(data);
}

fn in_memory(data: &[u8]) {
    let mut reader = SegmentReader::new(data, data.len() as u64);
    if reader.read_header().is_err() {
        return;
    }
    while let Ok(Some(entry)) = reader.next_entry() {
        let Ok(change) = reader.decode(entry.kind) else {
            return;
        };
        let start = entry.offset as usize;
        let original = &data[start..start + entry.len as usize];
        let again = re_encode(entry.seq, &change);
        match change {
            LoggedChange::PutBatch { .. } => {
                let mut scratch = Vec::new();
                let (_, body) = again.split_at(ENTRY_HEADER_LEN);
                let (_, original_body) = original.split_at(ENTRY_HEADER_LEN);
                assert_eq!(
                    records_of(body, &mut scratch),
                    records_of(original_body, &mut Vec::new())
                );
            }
            _ => assert_eq!(
                again, original,
                "entry {} re-encodes differently",
                entry.seq
            ),
        }
    }
}

/// The records of a PutBatch body (channel, then a batch).
fn records_of(body: &[u8], scratch: &mut Vec<u8>) -> Vec<(u64, Vec<u8>)> {
    let channel_len = 1 + usize::from(body[0]);
    node_core::protocol::batch::decode_batch(&body[channel_len..], scratch)
        .expect("an accepted batch decodes")
        .map(|(key, value)| (key, value.to_vec()))
        .collect()
}

/// The entry the writer makes of a change read back.
fn re_encode(seq: u64, change: &LoggedChange<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut raw = Vec::new();
    let keys: Vec<u64>;
    let change = match change.clone() {
        LoggedChange::Put {
            channel,
            key,
            value,
        } => Change::Put {
            channel,
            key,
            value,
        },
        LoggedChange::Remove { channel, key } => Change::Remove { channel, key },
        LoggedChange::PutBatch { channel, records } => {
            let count = records.len();
            for (key, value) in records {
                append_record(&mut raw, key, value);
            }
            Change::PutRecords {
                channel,
                raw: &raw,
                count,
            }
        }
        LoggedChange::RemoveKeys {
            channel,
            keys: read,
        } => {
            keys = read.collect();
            Change::RemoveKeys {
                channel,
                keys: &keys,
            }
        }
        LoggedChange::RemoveChannel { channel } => Change::RemoveChannel { channel },
        LoggedChange::PutVersion {
            channel,
            key,
            version,
            value,
        } => Change::PutVersion {
            channel,
            key,
            version,
            value,
        },
        LoggedChange::RemoveVersion {
            channel,
            key,
            version,
            stored_unix_s,
        } => Change::RemoveVersion {
            channel,
            key,
            version,
            stored_unix_s,
        },
    };
    encode_entry(seq, &change, &mut out).expect("a change read back can be logged again");
    out
}

fn as_a_log(data: &[u8]) {
    let dir = log_dir();
    let segment = dir.join("00000001.log");
    std::fs::write(&segment, data).expect("write the segment");
    let Some((entries, end)) = read_all(dir) else {
        return;
    };
    let Some(mut end) = end else {
        return;
    };
    if end.torn.is_none() {
        return;
    }
    let last_seq = end.last_seq;
    end.cut_torn_tail().expect("cut the torn tail");
    let (again, end) = read_all(dir).expect("a cut log reads");
    let end = end.expect("a cut log reads to its end");
    assert_eq!(again, entries, "the cut changed the entries before it");
    assert_eq!(end.last_seq, last_seq);
    assert!(
        end.torn.is_none(),
        "torn again after the cut: {:?}",
        end.torn
    );
    let _ = std::fs::remove_file(&segment);
}

/// The sequence numbers read and the end, or `None` when reading failed.
fn read_all(dir: &Path) -> Option<(Vec<u64>, Option<dht_persist::wal::LogEnd>)> {
    let mut reader = LogReader::open(dir, ReadFrom::Start).ok()?;
    let mut seqs = Vec::new();
    loop {
        match reader.next_entry() {
            Ok(Some(entry)) => seqs.push(entry.seq),
            Ok(None) => break,
            Err(err) => {
                let _ = err.to_string();
                return None;
            }
        }
    }
    Some((seqs, reader.into_end()))
}

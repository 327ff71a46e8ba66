//! The change log end to end: what the writer writes, the reader reads back, in order and
//! exactly; torn tails at every byte of the last entry are cut exactly; damage anywhere before
//! it is refused, never skipped; segments, gaps and positions.

use super::format::{
    encode_entry, HeaderProblem, SegmentHeader, ENTRY_FLAG_VERSIONS, ENTRY_HEADER_LEN,
    SEGMENT_FLAG_SEQUENCE_JUMP, SEGMENT_HEADER_LEN,
};
use super::*;
use crate::layout::segment_file_name;
use node_core::protocol::batch::{append_record, encode_batch};
use proptest::prelude::*;
use std::fs;
use std::path::{Path, PathBuf};

/// A change as the tests keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Owned {
    Put(String, u64, Vec<u8>),
    Remove(String, u64),
    PutBatch(String, Vec<(u64, Vec<u8>)>),
    RemoveKeys(String, Vec<u64>),
    RemoveChannel(String),
    /// Channel, key, version, value.
    PutVersion(String, u64, u64, Vec<u8>),
    /// Channel, key, version, stored_unix_s.
    RemoveVersion(String, u64, u64, u64),
}

/// Appends `change`; a PutBatch goes in as an encoded batch when `encoded`, else as records.
fn append(log: &mut LogWriter, change: &Owned, encoded: bool) -> Result<u64, AppendError> {
    let mut raw = Vec::new();
    let mut batch = Vec::new();
    let change = match change {
        Owned::Put(channel, key, value) => Change::Put {
            channel,
            key: *key,
            value,
        },
        Owned::Remove(channel, key) => Change::Remove { channel, key: *key },
        Owned::PutBatch(channel, records) => {
            for (key, value) in records {
                append_record(&mut raw, *key, value);
            }
            let count = records.len() as u32;
            if encoded {
                encode_batch(&raw, count, &mut batch);
                Change::PutBatch {
                    channel,
                    batch: &batch,
                }
            } else {
                Change::PutRecords {
                    channel,
                    raw: &raw,
                    count,
                }
            }
        }
        Owned::RemoveKeys(channel, keys) => Change::RemoveKeys { channel, keys },
        Owned::RemoveChannel(channel) => Change::RemoveChannel { channel },
        Owned::PutVersion(channel, key, version, value) => Change::PutVersion {
            channel,
            key: *key,
            version: *version,
            value,
        },
        Owned::RemoveVersion(channel, key, version, stored_unix_s) => Change::RemoveVersion {
            channel,
            key: *key,
            version: *version,
            stored_unix_s: *stored_unix_s,
        },
    };
    log.append(&change)
}

fn owned(change: &LoggedChange<'_>) -> Owned {
    match change.clone() {
        LoggedChange::Put {
            channel,
            key,
            value,
        } => Owned::Put(channel.into(), key, value.to_vec()),
        LoggedChange::Remove { channel, key } => Owned::Remove(channel.into(), key),
        LoggedChange::PutBatch { channel, records } => Owned::PutBatch(
            channel.into(),
            records.map(|(key, value)| (key, value.to_vec())).collect(),
        ),
        LoggedChange::RemoveKeys { channel, keys } => {
            Owned::RemoveKeys(channel.into(), keys.collect())
        }
        LoggedChange::RemoveChannel { channel } => Owned::RemoveChannel(channel.into()),
        LoggedChange::PutVersion {
            channel,
            key,
            version,
            value,
        } => Owned::PutVersion(channel.into(), key, version, value.to_vec()),
        LoggedChange::RemoveVersion {
            channel,
            key,
            version,
            stored_unix_s,
        } => Owned::RemoveVersion(channel.into(), key, version, stored_unix_s),
    }
}

/// A log directory's end as a fresh log has it.
fn empty_end(dir: &Path) -> LogEnd {
    LogEnd {
        dir: dir.to_path_buf(),
        last_seq: 0,
        next_segment: 1,
        torn: None,
        cut: false,
    }
}

fn small_segments() -> LogOptions {
    LogOptions {
        segment_bytes: 4096,
        group_bytes: 1 << 20,
    }
}

/// Writes `changes` to a new log in `dir`, one group per `per_group` changes.
fn write_log(dir: &Path, changes: &[Owned], per_group: usize, options: LogOptions) -> LogWriter {
    let mut log = LogWriter::create(&empty_end(dir), 1, options).unwrap();
    for (index, change) in changes.iter().enumerate() {
        let seq = append(&mut log, change, index % 2 == 0).unwrap();
        assert_eq!(seq, index as u64 + 1);
        if (index + 1) % per_group == 0 {
            log.write_out().unwrap();
        }
    }
    log.write_out().unwrap();
    log
}

/// Every entry of the log after `from`, and where it ends.
fn read_log(dir: &Path, from: ReadFrom) -> Result<(Vec<(u64, Owned)>, LogEnd), LogError> {
    let mut reader = LogReader::open(dir, from)?;
    let mut entries = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        entries.push((entry.seq, owned(&entry.change)));
    }
    Ok((entries, reader.into_end().expect("the end was reached")))
}

fn numbered(changes: &[Owned]) -> Vec<(u64, Owned)> {
    changes
        .iter()
        .enumerate()
        .map(|(index, change)| (index as u64 + 1, change.clone()))
        .collect()
}

/// A mix of every kind, with values of varied sizes.
fn sample(count: usize) -> Vec<Owned> {
    (0..count)
        .map(|i| {
            let channel = format!("ch-{}", i % 3);
            let key = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let value = vec![i as u8; 1 + (i * 37) % 300];
            match i % 9 {
                0..=2 => Owned::Put(channel, key, value),
                3 => Owned::Remove(channel, key),
                4 => Owned::PutBatch(channel, vec![(key, value.clone()), (key + 1, value)]),
                5 => Owned::RemoveKeys(channel, vec![key, key ^ 1, 7]),
                6 => Owned::PutVersion(channel, key, i as u64 * 11, value),
                7 => Owned::RemoveVersion(channel, key, u64::MAX - i as u64, 1_700_000_000),
                _ => Owned::RemoveChannel(channel),
            }
        })
        .collect()
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(segment_file_name(number))
}

/// Copies the segment files of `from` into a fresh directory.
fn copy_log(from: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    copy
}

/// Offsets of the entries of one segment, from its bytes.
fn entry_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN;
    while offset < bytes.len() {
        offsets.push(offset);
        let len = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().unwrap());
        offset += ENTRY_HEADER_LEN + len as usize;
    }
    offsets
}

#[test]
fn every_kind_round_trips_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let changes = sample(50);
    let mut log = write_log(dir.path(), &changes, 4, LogOptions::default());
    assert_eq!((log.written_seq(), log.next_seq()), (50, 51));
    let (entries, end) = read_log(dir.path(), ReadFrom::Start).unwrap();
    assert_eq!(entries, numbered(&changes));
    assert_eq!((end.last_seq, end.next_segment, end.torn), (50, 2, None));
    assert_eq!(log.sync_now().unwrap(), 50);
    assert_eq!(log.synced_seq(), 50);
}

/// The layout of `docs/formats.md`, byte by byte, for one Put in a fresh segment.
#[test]
fn a_put_entry_is_laid_out_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let changes = [Owned::Put(
        "ab".into(),
        0x0102_0304_0506_0708,
        b"xyz".to_vec(),
    )];
    write_log(dir.path(), &changes, 1, LogOptions::default());
    let bytes = fs::read(segment_path(dir.path(), 1)).unwrap();
    assert_eq!(&bytes[..8], b"SWDHTLOG");
    assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
    assert_eq!(&bytes[12..16], &0u32.to_le_bytes());
    assert_eq!(&bytes[16..24], &1u64.to_le_bytes());
    assert_eq!(&bytes[24..32], &1u64.to_le_bytes());
    assert_eq!(&bytes[32..36], &crc32fast::hash(&bytes[..32]).to_le_bytes());
    let entry = &bytes[36..];
    let body: Vec<u8> = [
        &[2u8][..],
        b"ab",
        &0x0102_0304_0506_0708u64.to_le_bytes(),
        &3u32.to_le_bytes(),
        b"xyz",
    ]
    .concat();
    assert_eq!(entry.len(), ENTRY_HEADER_LEN + body.len());
    assert_eq!(&entry[4..8], &(body.len() as u32).to_le_bytes());
    assert_eq!(&entry[8..16], &1u64.to_le_bytes());
    assert_eq!(
        &entry[16..20],
        &[1, 0, 0, 0],
        "kind Put, flags 0, reserved 0"
    );
    assert_eq!(&entry[20..], &body[..]);
    assert_eq!(&entry[..4], &crc32fast::hash(&entry[4..]).to_le_bytes());
}

#[test]
fn segments_rotate_at_the_size_limit_with_positions_running_on() {
    let dir = tempfile::tempdir().unwrap();
    let changes = sample(200);
    let mut log = write_log(dir.path(), &changes, 3, small_segments());
    let mut reader = LogReader::open(dir.path(), ReadFrom::Start).unwrap();
    let mut count = 0;
    while reader.next_entry().unwrap().is_some() {
        count += 1;
    }
    assert_eq!(count, 200);
    let summaries = reader.summaries();
    assert!(summaries.len() >= 5, "{} segments", summaries.len());
    let mut next = 1;
    for summary in summaries {
        let header = summary.header.unwrap();
        assert_eq!(header.first_seq, next, "segment {}", summary.number);
        assert_eq!(summary.first_seq, Some(next));
        next = summary.last_seq.unwrap() + 1;
        assert_eq!(summary.entries, next - header.first_seq);
        assert_eq!(summary.good_len, summary.file_len);
        assert_eq!(summary.kinds.total(), summary.entries);
        if summary.number < summaries.len() as u64 {
            // A group goes to a new segment when it would take this one past the limit.
            assert!(summary.file_len <= 4096, "{summary:?}");
        }
    }
    assert_eq!(next, 201);
    // Every closed segment, the current one and the directory are in the next sync request.
    let request = log.sync_request().unwrap();
    assert_eq!(request.seq, 200);
    assert_eq!(request.files.len(), summaries.len());
    assert_eq!(request.dirs, vec![dir.path().to_path_buf()]);
    assert!(log.sync_request().is_none(), "nothing new to sync");
    log.mark_synced(request.seq);
    append(&mut log, &changes[0], false).unwrap();
    assert!(
        log.sync_request().is_none(),
        "buffered entries are not written yet"
    );
    log.write_out().unwrap();
    let request = log.sync_request().unwrap();
    assert_eq!(
        (request.seq, request.files.len(), request.dirs.len()),
        (201, 1, 0)
    );
}

#[test]
fn reading_from_a_position_skips_the_segments_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let changes = sample(200);
    write_log(dir.path(), &changes, 3, small_segments());
    for after in [0, 1, 57, 120, 199, 200, 250] {
        let mut reader = LogReader::open(dir.path(), ReadFrom::After(after)).unwrap();
        let mut entries = Vec::new();
        while let Some(entry) = reader.next_entry().unwrap() {
            entries.push((entry.seq, owned(&entry.change)));
        }
        let expected: Vec<_> = numbered(&changes)
            .into_iter()
            .skip(after as usize)
            .collect();
        assert_eq!(entries, expected, "after {after}");
        for summary in reader.summaries() {
            let ends_by = summary.header.unwrap().first_seq <= after;
            if summary.skipped {
                assert!(ends_by, "segment {} skipped", summary.number);
            }
        }
        assert_eq!(
            reader.summaries().iter().any(|s| s.skipped),
            after > 40,
            "after {after}"
        );
        assert_eq!(reader.end().unwrap().last_seq, 200);
    }
}

#[test]
fn a_torn_last_entry_is_cut_exactly_at_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let changes = sample(40);
    write_log(dir.path(), &changes, 5, small_segments());
    let last = fs::read_dir(dir.path()).unwrap().count() as u64;
    let bytes = fs::read(segment_path(dir.path(), last)).unwrap();
    let start = *entry_offsets(&bytes).last().unwrap();
    for len in start..bytes.len() {
        let copy = copy_log(dir.path());
        let segment = segment_path(copy.path(), last);
        fs::write(&segment, &bytes[..len]).unwrap();
        let (entries, mut end) = read_log(copy.path(), ReadFrom::Start).unwrap();
        assert_eq!(entries, numbered(&changes[..39]), "cut at {len}");
        assert_eq!(end.last_seq, 39);
        if len == start {
            assert!(end.torn.is_none());
            continue;
        }
        let torn = end.torn.clone().unwrap();
        assert_eq!(
            (torn.offset, torn.bytes),
            (start as u64, (len - start) as u64)
        );
        let begun = u64::from(bytes[start..len].iter().any(|byte| *byte != 0));
        assert_eq!(torn.entries, begun, "cut at {len}");
        assert!(torn.header_ok && torn.later.is_empty());
        end.cut_torn_tail().unwrap();
        assert_eq!(fs::metadata(&segment).unwrap().len(), start as u64);
        // The writer goes on after the cut, and the log reads whole.
        let mut log = LogWriter::create(&end, 40, LogOptions::default()).unwrap();
        append(&mut log, &changes[39], true).unwrap();
        log.write_out().unwrap();
        let (entries, end) = read_log(copy.path(), ReadFrom::Start).unwrap();
        assert_eq!(entries, numbered(&changes));
        assert!(end.torn.is_none());
    }
}

/// Zeros from an entry's place to the end of the file are where the entries end (space written
/// ahead, or allocated and never written: a power cut), not a torn tail; zeros followed by
/// anything else are.
#[test]
fn zeros_to_the_end_end_the_entries_and_garbled_last_entries_are_torn_tails() {
    let dir = tempfile::tempdir().unwrap();
    let changes = sample(12);
    write_log(dir.path(), &changes, 4, LogOptions::default());
    let path = segment_path(dir.path(), 1);
    let bytes = fs::read(&path).unwrap();
    let offsets = entry_offsets(&bytes);
    let start = offsets[10];
    let mut zeroed = bytes.clone();
    zeroed[start..].fill(0);
    zeroed.resize(zeroed.len() + 100_000, 0);
    fs::write(&path, &zeroed).unwrap();
    let mut reader = LogReader::open(dir.path(), ReadFrom::Start).unwrap();
    let mut read = 0;
    while reader.next_entry().unwrap().is_some() {
        read += 1;
    }
    assert_eq!(read, 10);
    let summary = &reader.summaries()[0];
    assert_eq!(summary.good_len, start as u64);
    assert_eq!(summary.zeros_after, (zeroed.len() - start) as u64);
    let end = reader.into_end().unwrap();
    assert!(end.torn.is_none() && end.is_clean());
    assert_eq!(end.last_seq, 10);
    // A short run of zeros at the very end (less than a header) ends them too.
    fs::write(&path, [&bytes[..start], &[0u8; 7][..]].concat()).unwrap();
    let (entries, end) = read_log(dir.path(), ReadFrom::Start).unwrap();
    assert_eq!(entries, numbered(&changes[..10]));
    assert!(end.torn.is_none());
    // Zeros, then one byte that is not: a torn tail from the zeros on, no entry begun.
    let last = zeroed.len() - 1;
    zeroed[last] = 1;
    fs::write(&path, &zeroed).unwrap();
    let (entries, end) = read_log(dir.path(), ReadFrom::Start).unwrap();
    assert_eq!(entries, numbered(&changes[..10]));
    let torn = end.torn.unwrap();
    assert_eq!((torn.offset, torn.entries), (start as u64, 0));
    // Half the last entry written, the rest garbage.
    let mut garbled = bytes.clone();
    let last = offsets[11];
    for (i, byte) in garbled[last + 30..].iter_mut().enumerate() {
        *byte = (i * 31 + 7) as u8;
    }
    fs::write(&path, &garbled).unwrap();
    let (entries, end) = read_log(dir.path(), ReadFrom::Start).unwrap();
    assert_eq!(entries, numbered(&changes[..11]));
    assert_eq!(end.torn.unwrap().entries, 1);
}

/// Any flipped byte before the last entry — segment headers, entry headers, bodies — is damage
/// in the middle: reading refuses it and names where, and an intact entry after it. (A flip in
/// the last entry is indistinguishable from a torn write: it is cut as a torn tail.)
#[test]
fn a_flipped_byte_anywhere_before_the_last_entry_is_damage_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let changes = sample(50);
    write_log(dir.path(), &changes, 3, small_segments());
    let segments = fs::read_dir(dir.path()).unwrap().count() as u64;
    assert!(segments >= 2);
    let last_bytes = fs::read(segment_path(dir.path(), segments)).unwrap();
    let last_start = *entry_offsets(&last_bytes).last().unwrap();
    for number in 1..=segments {
        let bytes = fs::read(segment_path(dir.path(), number)).unwrap();
        let end = if number == segments {
            last_start
        } else {
            bytes.len()
        };
        let path = segment_path(dir.path(), number);
        let mut damaged = bytes.clone();
        for position in 0..end {
            damaged[position] ^= 0x40;
            fs::write(&path, &damaged).unwrap();
            damaged[position] ^= 0x40;
            match read_log(dir.path(), ReadFrom::Start) {
                Err(LogError::Damaged(damage)) => {
                    assert_eq!(damage.segment, path);
                    assert!(damage.offset <= position as u64, "{damage}");
                }
                other => panic!("flip at byte {position} of segment {number}: {other:?}"),
            }
        }
        fs::write(&path, &bytes).unwrap();
    }
    // The last entry: a torn tail.
    let mut damaged = last_bytes.clone();
    damaged[last_start + 25] ^= 0x40;
    fs::write(segment_path(dir.path(), segments), &damaged).unwrap();
    let (entries, end) = read_log(dir.path(), ReadFrom::Start).unwrap();
    assert_eq!(entries, numbered(&changes[..49]));
    assert_eq!(end.torn.unwrap().offset, last_start as u64);
}

#[test]
fn a_torn_segment_header_deletes_that_segment_and_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let changes = sample(60);
    write_log(dir.path(), &changes, 2, small_segments());
    let segments = fs::read_dir(dir.path()).unwrap().count() as u64;
    // The writer died creating a segment: its header half written.
    let next = segment_path(dir.path(), segments + 1);
    fs::write(
        &next,
        &SegmentHeader {
            number: segments + 1,
            first_seq: 61,
            flags: 0,
        }
        .encode()[..20],
    )
    .unwrap();
    let (entries, mut end) = read_log(dir.path(), ReadFrom::Start).unwrap();
    assert_eq!(entries, numbered(&changes));
    let torn = end.torn.clone().unwrap();
    assert_eq!((torn.offset, torn.bytes, torn.header_ok), (0, 20, false));
    assert_eq!(end.next_segment, segments + 1);
    end.cut_torn_tail().unwrap();
    assert!(!next.exists());
    let mut log = LogWriter::create(&end, 61, LogOptions::default()).unwrap();
    assert_eq!(log.segment().0, segments + 1);
    append(&mut log, &changes[0], false).unwrap();
    log.write_out().unwrap();
    assert_eq!(read_log(dir.path(), ReadFrom::Start).unwrap().0.len(), 61);

    // A torn first entry of the last segment, and an empty segment after it: both go.
    let copy = copy_log(dir.path());
    let last = segment_path(copy.path(), segments + 1);
    let bytes = fs::read(&last).unwrap();
    fs::write(&last, &bytes[..bytes.len() - 3]).unwrap();
    let after = segment_path(copy.path(), segments + 2);
    fs::write(
        &after,
        SegmentHeader {
            number: segments + 2,
            first_seq: 62,
            flags: 0,
        }
        .encode(),
    )
    .unwrap();
    let (entries, mut end) = read_log(copy.path(), ReadFrom::Start).unwrap();
    assert_eq!(entries.len(), 60);
    let torn = end.torn.clone().unwrap();
    assert_eq!((torn.offset, torn.later.clone()), (36, vec![after.clone()]));
    assert_eq!(torn.bytes, (bytes.len() - 3 - 36 + 36) as u64);
    end.cut_torn_tail().unwrap();
    assert!(!after.exists());
    assert_eq!(fs::metadata(&last).unwrap().len(), 36);
    assert_eq!((end.last_seq, end.next_segment), (60, segments + 2));
}

#[test]
fn gaps_missing_segments_and_wrong_sequences_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let changes = sample(150);
    write_log(dir.path(), &changes, 2, small_segments());
    let segments = fs::read_dir(dir.path()).unwrap().count() as u64;
    assert!(segments >= 3);

    let copy = copy_log(dir.path());
    fs::remove_file(segment_path(copy.path(), 2)).unwrap();
    let err = read_log(copy.path(), ReadFrom::Start).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::MissingSegment {
                missing: 2,
                before: 1,
                after: 3,
                ..
            }
        ),
        "{err}"
    );

    // Segment 2's header says it starts one entry later than segment 1 ends.
    let copy = copy_log(dir.path());
    let path = segment_path(copy.path(), 2);
    let mut bytes = fs::read(&path).unwrap();
    let header = SegmentHeader::decode(&bytes).unwrap();
    let moved = SegmentHeader {
        first_seq: header.first_seq + 1,
        ..header
    };
    bytes[..SEGMENT_HEADER_LEN].copy_from_slice(&moved.encode());
    fs::write(&path, &bytes).unwrap();
    let err = read_log(copy.path(), ReadFrom::Start).unwrap_err();
    assert!(
        matches!(err, LogError::Gap { ref path, .. } if path.ends_with("00000002.log")),
        "{err}"
    );
    assert!(err.to_string().contains("gap"), "{err}");
    // Marked as a jump, the same header passes the segment boundary — but its first entry
    // still carries its old number, which is damage.
    let jump = SegmentHeader {
        flags: SEGMENT_FLAG_SEQUENCE_JUMP,
        ..moved
    };
    bytes[..SEGMENT_HEADER_LEN].copy_from_slice(&jump.encode());
    fs::write(&path, &bytes).unwrap();
    let err = read_log(copy.path(), ReadFrom::Start).unwrap_err();
    let LogError::Damaged(damage) = err else {
        panic!("{err}")
    };
    assert!(damage.problem.contains("sequence number"), "{damage}");
    assert_eq!((damage.offset, damage.next_intact), (36, None));
}

#[test]
fn an_intact_entry_out_of_sequence_or_with_unknown_flags_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogWriter::create(&empty_end(dir.path()), 1, LogOptions::default()).unwrap();
    append(&mut log, &Owned::Remove("a".into(), 1), false).unwrap();
    log.write_out().unwrap();
    let path = segment_path(dir.path(), 1);
    let good = fs::read(&path).unwrap();
    for (seq, flags, what) in [
        (3, 0, "sequence number 3 where 2"),
        (2, ENTRY_FLAG_VERSIONS, "flags 0x01"),
    ] {
        let mut entry = Vec::new();
        encode_entry(
            seq,
            &Change::Remove {
                channel: "a",
                key: 2,
            },
            &mut entry,
        )
        .unwrap();
        entry[17] = flags;
        let crc = crc32fast::hash(&entry[4..]);
        entry[..4].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, [&good[..], &entry[..]].concat()).unwrap();
        let err = read_log(dir.path(), ReadFrom::Start).unwrap_err();
        assert!(err.to_string().contains(what), "{err}");
    }
}

#[test]
fn a_log_must_reach_back_to_the_position_even_when_it_starts_with_a_jump() {
    let dir = tempfile::tempdir().unwrap();
    let end = LogEnd {
        last_seq: 99,
        ..empty_end(dir.path())
    };
    let mut log = LogWriter::create(&end, 100, LogOptions::default()).unwrap();
    append(&mut log, &Owned::RemoveChannel("x".into()), false).unwrap();
    log.write_out().unwrap();
    assert!(read_log(dir.path(), ReadFrom::After(99)).is_ok());
    assert!(read_log(dir.path(), ReadFrom::Start).is_ok());
    let err = read_log(dir.path(), ReadFrom::After(50)).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::Missing {
                after: 50,
                first_seq: 100,
                ..
            }
        ),
        "{err}"
    );

    // Dumps covering 500 while the log ends at 100: the writer jumps, and says so.
    let (_, mut end) = read_log(dir.path(), ReadFrom::After(500)).unwrap();
    assert_eq!(end.last_seq, 100);
    end.cut_torn_tail().unwrap();
    let mut log = LogWriter::create(&end, 501, LogOptions::default()).unwrap();
    append(&mut log, &Owned::Remove("x".into(), 5), false).unwrap();
    log.write_out().unwrap();
    let header = SegmentHeader::decode(&fs::read(segment_path(dir.path(), 2)).unwrap()).unwrap();
    assert!(header.is_jump());
    let (entries, _) = read_log(dir.path(), ReadFrom::After(99)).unwrap();
    assert_eq!(
        entries.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        vec![100, 501]
    );
    // Once the jump segment is the first, a replay from before it would skip 101..500
    // silently: the jump flag does not excuse that (an old dump restored, say).
    fs::remove_file(segment_path(dir.path(), 1)).unwrap();
    let err = read_log(dir.path(), ReadFrom::After(99)).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::Missing {
                after: 99,
                first_seq: 501,
                ..
            }
        ),
        "{err}"
    );
    let (entries, _) = read_log(dir.path(), ReadFrom::After(500)).unwrap();
    assert_eq!(entries.len(), 1);
    // A fresh log started past 1 is a jump too: read from just before it, nothing is missing;
    // from further back, the entries in between are.
    let fresh = tempfile::tempdir().unwrap();
    let mut log = LogWriter::create(&empty_end(fresh.path()), 42, LogOptions::default()).unwrap();
    append(&mut log, &Owned::Remove("x".into(), 5), false).unwrap();
    log.write_out().unwrap();
    assert_eq!(
        read_log(fresh.path(), ReadFrom::After(41)).unwrap().0.len(),
        1
    );
    assert!(matches!(
        read_log(fresh.path(), ReadFrom::After(7)).unwrap_err(),
        LogError::Missing { first_seq: 42, .. }
    ));
}

#[test]
fn the_writer_refuses_what_it_cannot_log() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        segment_bytes: 1 << 20,
        group_bytes: 1000,
    };
    let mut log = LogWriter::create(&empty_end(dir.path()), 1, options).unwrap();
    let bad_name = log
        .append(&Change::Remove {
            channel: "a.b",
            key: 1,
        })
        .unwrap_err();
    assert!(matches!(
        bad_name,
        AppendError::Invalid(EncodeError::BadChannelName(_))
    ));
    let huge = vec![1u8; format::MAX_ENTRY_BODY_BYTES as usize];
    let too_big = log
        .append(&Change::Put {
            channel: "a",
            key: 1,
            value: &huge,
        })
        .unwrap_err();
    assert!(
        too_big
            .to_string()
            .contains("exceeds the change log's limit"),
        "{too_big}"
    );
    let bad_records = log.append(&Change::PutRecords {
        channel: "a",
        raw: b"short",
        count: 1,
    });
    assert!(matches!(
        bad_records,
        Err(AppendError::Invalid(EncodeError::BadRecords(_)))
    ));
    let bad_batch = log.append(&Change::PutBatch {
        channel: "a",
        batch: b"tiny",
    });
    assert!(matches!(
        bad_batch,
        Err(AppendError::Invalid(EncodeError::BadBatch(_)))
    ));
    assert_eq!(
        log.buffered_bytes(),
        0,
        "refused changes leave nothing behind"
    );
    assert_eq!(log.next_seq(), 1);
}

#[test]
fn the_group_buffer_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        segment_bytes: 1 << 20,
        group_bytes: 1000,
    };
    let mut log = LogWriter::create(&empty_end(dir.path()), 1, options).unwrap();
    let value = [7u8; 300];
    let mut appended = 0;
    while !log.wants_write_out() {
        log.append(&Change::Put {
            channel: "a",
            key: appended,
            value: &value,
        })
        .unwrap();
        appended += 1;
    }
    let full = log
        .append(&Change::Remove {
            channel: "a",
            key: 1,
        })
        .unwrap_err();
    assert!(matches!(full, AppendError::GroupFull { .. }));
    let written = log.write_out().unwrap().unwrap();
    assert_eq!((written.first_seq, written.last_seq), (1, appended));
    assert_eq!(
        log.append(&Change::Remove {
            channel: "a",
            key: 1
        })
        .unwrap(),
        appended + 1
    );
}

#[test]
fn a_failed_rotation_takes_the_group_back_and_its_numbers_are_used_again() {
    let dir = tempfile::tempdir().unwrap();
    let changes = sample(80);
    let mut log = write_log(dir.path(), &changes[..10], 10, small_segments());
    // The next segment's name is taken: creating it fails.
    let blocker = segment_path(dir.path(), 2);
    std::os::unix::fs::symlink("/dev/full", &blocker).unwrap();
    let mut failed = None;
    for change in &changes[10..] {
        append(&mut log, change, false).unwrap();
        if let Err(err) = log.write_out() {
            failed = Some(err);
            break;
        }
    }
    let failed = failed.expect("a rotation was needed");
    assert_eq!(failed.first_seq, log.next_seq());
    assert_eq!(failed.first_seq, failed.last_seq);
    let written = failed.first_seq - 1;
    fs::remove_file(&blocker).unwrap();
    let (entries, end) = read_log(dir.path(), ReadFrom::Start).unwrap();
    assert_eq!(entries, numbered(&changes[..written as usize]));
    assert!(end.torn.is_none());
    // Writing resumes where it stopped, with the same numbers.
    for change in &changes[written as usize..] {
        append(&mut log, change, true).unwrap();
    }
    log.write_out().unwrap();
    assert_eq!(
        read_log(dir.path(), ReadFrom::Start).unwrap().0,
        numbered(&changes)
    );
}

#[test]
fn the_writer_starts_only_after_a_clean_end() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &sample(5), 5, LogOptions::default());
    let path = segment_path(dir.path(), 1);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let (_, mut end) = read_log(dir.path(), ReadFrom::Start).unwrap();
    let err = LogWriter::create(&end, 5, LogOptions::default()).unwrap_err();
    assert!(err.to_string().contains("torn tail must be cut"), "{err}");
    end.cut_torn_tail().unwrap();
    let err = LogWriter::create(&end, 4, LogOptions::default()).unwrap_err();
    assert!(err.to_string().contains("reuse"), "{err}");
    assert!(LogWriter::create(&end, 5, LogOptions::default()).is_ok());
    // Things in the directory that are not segments are named, never read.
    fs::write(dir.path().join("notes.txt"), b"x").unwrap();
    let reader = LogReader::open(dir.path(), ReadFrom::Start).unwrap();
    assert_eq!(reader.others(), [dir.path().join("notes.txt")]);
}

/// A directory (or a symbolic link) named like a segment is an error naming it, never passed
/// over: its entries would be missing, and a writer would later fail creating that name with
/// a bare "File exists".
#[test]
fn a_directory_named_like_a_segment_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &sample(5), 5, LogOptions::default());
    let impostor = segment_path(dir.path(), 2);
    fs::create_dir(&impostor).unwrap();
    let err = LogReader::open(dir.path(), ReadFrom::Start).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&impostor.display().to_string()) && message.contains("not a regular file"),
        "{message}"
    );
    fs::remove_dir(&impostor).unwrap();
    std::os::unix::fs::symlink(segment_path(dir.path(), 1), &impostor).unwrap();
    let err = LogReader::open(dir.path(), ReadFrom::Start).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

fn arb_change() -> impl Strategy<Value = Owned> {
    let channel = "[a-c]{1,3}";
    let value = proptest::collection::vec(any::<u8>(), 0..400);
    prop_oneof![
        (channel, any::<u64>(), value.clone()).prop_map(|(c, k, v)| Owned::Put(c, k, v)),
        (channel, any::<u64>()).prop_map(|(c, k)| Owned::Remove(c, k)),
        (
            channel,
            proptest::collection::vec((any::<u64>(), value.clone()), 0..6)
        )
            .prop_map(|(c, r)| Owned::PutBatch(c, r)),
        (channel, proptest::collection::vec(any::<u64>(), 0..20))
            .prop_map(|(c, k)| Owned::RemoveKeys(c, k)),
        channel.prop_map(Owned::RemoveChannel),
        (channel, any::<u64>(), any::<u64>(), value)
            .prop_map(|(c, k, v, b)| Owned::PutVersion(c, k, v, b)),
        (channel, any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(c, k, v, t)| Owned::RemoveVersion(c, k, v, t)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random changes in random groups over small segments read back exactly, from the start
    /// and from any position, with positions consecutive across segments.
    #[test]
    fn random_logs_round_trip(
        changes in proptest::collection::vec(arb_change(), 1..80),
        groups in proptest::collection::vec(1usize..8, 1..20),
        segment_bytes in 4096u64..12_000,
        after in 0u64..100,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions { segment_bytes, group_bytes: 1 << 20 };
        let mut log = LogWriter::create(&empty_end(dir.path()), 1, options).unwrap();
        let mut sizes = groups.iter().cycle();
        let mut in_group = 0;
        for (index, change) in changes.iter().enumerate() {
            append(&mut log, change, index % 3 == 0).unwrap();
            in_group += 1;
            if in_group >= *sizes.next().unwrap() {
                log.write_out().unwrap();
                in_group = 0;
            }
        }
        log.write_out().unwrap();
        let (entries, end) = read_log(dir.path(), ReadFrom::Start).unwrap();
        prop_assert_eq!(&entries, &numbered(&changes));
        prop_assert_eq!(end.last_seq, changes.len() as u64);
        prop_assert!(end.torn.is_none());
        let (later, _) = read_log(dir.path(), ReadFrom::After(after)).unwrap();
        let expected: Vec<_> = numbered(&changes).into_iter().skip(after as usize).collect();
        prop_assert_eq!(later, expected);
    }
}

#[test]
fn damage_can_be_given_up_on_purpose_keeping_every_byte_aside() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("wal");
    let changes = sample(150);
    write_log(&log_dir, &changes, 2, small_segments());
    let segments = fs::read_dir(&log_dir).unwrap().count() as u64;
    assert!(segments >= 4);
    let damaged_path = segment_path(&log_dir, 2);
    let original = fs::read(&damaged_path).unwrap();
    let third = entry_offsets(&original)[2];
    let mut bytes = original.clone();
    bytes[third + 22] ^= 0xff;
    fs::write(&damaged_path, &bytes).unwrap();
    let LogError::Damaged(damage) = read_log(&log_dir, ReadFrom::Start).unwrap_err() else {
        panic!("damage expected");
    };
    assert_eq!(
        (damage.segment.clone(), damage.offset),
        (damaged_path.clone(), third as u64)
    );
    let kept: Vec<_> = {
        let mut reader = LogReader::open(&log_dir, ReadFrom::Start).unwrap();
        let mut kept = Vec::new();
        while let Ok(Some(entry)) = reader.next_entry() {
            kept.push((entry.seq, owned(&entry.change)));
        }
        kept
    };

    let aside = dir.path().join("corrupt").join("wal.1");
    let discarded = discard_from(&log_dir, &damage.segment, damage.offset, &aside).unwrap();
    assert_eq!(discarded.segments.len() as u64, segments - 2);
    let (cut, offset, saved) = discarded.cut.clone().unwrap();
    assert_eq!((cut, offset), (damaged_path.clone(), third as u64));
    assert_eq!(fs::read(&saved).unwrap(), &bytes[third..]);
    let moved: u64 = (3..=segments)
        .map(|n| {
            fs::metadata(aside.join(segment_file_name(n)))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(discarded.bytes, moved + (bytes.len() - third) as u64);

    let (entries, end) = read_log(&log_dir, ReadFrom::Start).unwrap();
    assert_eq!(entries, kept);
    assert!(end.torn.is_none());
    assert_eq!(end.next_segment, 3);
    // Moving a whole segment (offset 0): the log ends with the segment before it.
    discard_from(&log_dir, &damaged_path, 0, &aside.join("again")).unwrap();
    let (entries, _) = read_log(&log_dir, ReadFrom::Start).unwrap();
    let first_of_two = SegmentHeader::decode(&original).unwrap().first_seq;
    assert_eq!(entries.len() as u64, first_of_two - 1);
}

#[test]
fn the_last_sequence_number_is_refused_not_overflowed() {
    let dir = tempfile::tempdir().unwrap();
    let header = SegmentHeader {
        number: 1,
        first_seq: u64::MAX,
        flags: 0,
    };
    let mut bytes = header.encode().to_vec();
    encode_entry(
        u64::MAX,
        &Change::RemoveChannel { channel: "a" },
        &mut bytes,
    )
    .unwrap();
    fs::write(segment_path(dir.path(), 1), &bytes).unwrap();
    let err = read_log(dir.path(), ReadFrom::Start).unwrap_err();
    assert!(err.to_string().contains("sequence number"), "{err}");
    let end = LogEnd {
        last_seq: u64::MAX - 1,
        ..empty_end(dir.path())
    };
    assert!(LogWriter::create(&end, u64::MAX, LogOptions::default()).is_err());
}

#[test]
fn a_header_starting_at_the_last_position_is_refused_jump_or_not() {
    for flags in [0, SEGMENT_FLAG_SEQUENCE_JUMP] {
        let header = |first_seq| SegmentHeader {
            number: 1,
            first_seq,
            flags,
        };
        let refused = SegmentHeader::decode(&header(u64::MAX).encode());
        assert_eq!(
            refused,
            Err(HeaderProblem::FirstSeqPastLast),
            "flags {flags}"
        );
        let last_usable = header(u64::MAX - 1);
        assert_eq!(
            SegmentHeader::decode(&last_usable.encode()),
            Ok(last_usable)
        );
    }
}

#[test]
fn segments_a_position_covers_are_deleted_and_the_rest_still_replays_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let changes = sample(200);
    let mut log = write_log(dir.path(), &changes, 3, small_segments());
    let before = LogReader::open(dir.path(), ReadFrom::Start).unwrap();
    let headers: Vec<_> = before
        .summaries()
        .iter()
        .map(|s| s.header.unwrap())
        .collect();
    assert!(headers.len() >= 5);
    let position = headers[3].first_seq + 2; // inside segment 4
    let deleted = log.delete_covered(position).unwrap();
    assert_eq!(
        deleted,
        (1..=3)
            .map(|n| segment_path(dir.path(), n))
            .collect::<Vec<_>>()
    );
    let (entries, _) = read_log(dir.path(), ReadFrom::After(position)).unwrap();
    let expected: Vec<_> = numbered(&changes)
        .into_iter()
        .skip(position as usize)
        .collect();
    assert_eq!(entries, expected);
    let err = read_log(dir.path(), ReadFrom::After(headers[3].first_seq - 2)).unwrap_err();
    assert!(matches!(err, LogError::Missing { .. }), "{err}");
    // A position past everything keeps the current segment.
    log.delete_covered(10_000).unwrap();
    let left = fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(left, 1);
    assert_eq!(
        log.segment().1,
        segment_path(dir.path(), headers.len() as u64)
    );
    append(&mut log, &changes[0], false).unwrap();
    log.write_out().unwrap();
    assert_eq!(
        read_log(dir.path(), ReadFrom::After(200)).unwrap().0.len(),
        1
    );
}

/// With space reserved, appends start the segments (write-outs never do), each segment's
/// blocks are reserved when it starts (its size stays what was written), a group fills the
/// reservation before the next segment starts, and the log reads back whole.
#[test]
fn reserved_segments_are_started_by_appends_and_read_back_whole() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogWriter::create(&empty_end(dir.path()), 1, small_segments()).unwrap();
    assert!(log.reserve_space(), "the test's file system reserves space");
    let first = fs::metadata(segment_path(dir.path(), 1)).unwrap();
    assert_eq!(
        first.len(),
        SEGMENT_HEADER_LEN as u64,
        "the size stays what was written"
    );
    assert!(
        first.blocks() * 512 >= 4096,
        "the segment's blocks are reserved"
    );
    let changes = sample(200);
    for (index, change) in changes.iter().enumerate() {
        let seq = match append(&mut log, change, true) {
            Err(AppendError::WriteOutFirst) => {
                log.write_out().unwrap();
                append(&mut log, change, true).unwrap()
            }
            other => other.unwrap(),
        };
        assert_eq!(seq, index as u64 + 1);
        if index % 7 == 6 {
            log.write_out().unwrap();
        }
    }
    log.write_out().unwrap();
    let segments = crate::wal::segment::list_segments(dir.path())
        .unwrap()
        .segments;
    assert!(segments.len() > 3, "{} segments", segments.len());
    for segment in &segments[..segments.len() - 1] {
        assert!(
            segment.len <= 4096,
            "segment {} holds {}",
            segment.number,
            segment.len
        );
    }
    let (read, end) = read_log(dir.path(), ReadFrom::Start).unwrap();
    assert_eq!(read, numbered(&changes));
    assert!(end.torn.is_none());
}

/// With space reserved, the writer keeps zeros written ahead of its last group (so groups
/// overwrite written blocks inside the file: a cheaper fdatasync), topped up in small steps
/// (each zero write is short: it runs on the event loop), the log reads back whole with the
/// zeros taken for its end, and a clean stop gives them back.
#[test]
fn zeros_are_written_ahead_of_the_groups_and_read_as_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogWriter::create(&empty_end(dir.path()), 1, LogOptions::default()).unwrap();
    assert!(log.reserve_space(), "the test's file system reserves space");
    let path = segment_path(dir.path(), 1);
    let changes = sample(1500);
    let (mut most_ahead, mut top_ups, mut last_len, mut last_segment_len) = (0, 0, 0, 0);
    for (index, change) in changes.iter().enumerate() {
        append(&mut log, change, true).unwrap();
        if index % 10 == 9 {
            log.write_out().unwrap();
            let len = fs::metadata(&path).unwrap().len();
            let ahead = len - log.segment_len();
            assert!(
                (ZERO_AHEAD_BYTES - ZERO_TOP_UP_BYTES..=ZERO_AHEAD_BYTES).contains(&ahead),
                "{ahead} bytes ahead"
            );
            most_ahead = most_ahead.max(ahead);
            // After the first, a top-up writes what the groups used since the last one: about
            // ZERO_TOP_UP_BYTES, never the whole room again.
            if last_len > 0 && len > last_len {
                let group = log.segment_len() - last_segment_len;
                assert!(
                    len - last_len <= ZERO_TOP_UP_BYTES + group,
                    "topped up {}",
                    len - last_len
                );
                top_ups += 1;
            }
            (last_len, last_segment_len) = (len, log.segment_len());
        }
    }
    log.write_out().unwrap();
    assert_eq!(most_ahead, ZERO_AHEAD_BYTES);
    assert!(
        top_ups >= 2,
        "{top_ups} top-ups over {} bytes",
        log.segment_len()
    );
    let mut reader = LogReader::open(dir.path(), ReadFrom::Start).unwrap();
    let mut read = Vec::new();
    while let Some(entry) = reader.next_entry().unwrap() {
        read.push((entry.seq, owned(&entry.change)));
    }
    assert_eq!(read, numbered(&changes));
    let summary = reader.summaries()[0].clone();
    assert_eq!(summary.good_len, log.segment_len());
    assert_eq!(
        summary.good_len + summary.zeros_after,
        fs::metadata(&path).unwrap().len()
    );
    assert!(reader.into_end().unwrap().torn.is_none());
    log.release_reserved().unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), log.segment_len());
}

/// Zeros after the last entry of a segment that later segments follow (a node restarted after
/// a crash continues in a new segment and leaves them) end that segment's entries too: the log
/// reads on, whole, into the next segment.
#[test]
fn zeros_at_the_end_of_a_middle_segment_are_read_past() {
    let dir = tempfile::tempdir().unwrap();
    let changes = sample(200);
    write_log(dir.path(), &changes, 7, small_segments());
    let segments = crate::wal::segment::list_segments(dir.path())
        .unwrap()
        .segments;
    assert!(segments.len() >= 3, "{} segments", segments.len());
    let middle = &segments[1].path;
    let mut bytes = fs::read(middle).unwrap();
    let entries_end = bytes.len() as u64;
    bytes.resize(bytes.len() + 5000, 0);
    fs::write(middle, &bytes).unwrap();
    let mut reader = LogReader::open(dir.path(), ReadFrom::Start).unwrap();
    let mut read = Vec::new();
    while let Some(entry) = reader.next_entry().unwrap() {
        read.push((entry.seq, owned(&entry.change)));
    }
    assert_eq!(read, numbered(&changes));
    let summary = &reader.summaries()[1];
    assert_eq!((summary.good_len, summary.zeros_after), (entries_end, 5000));
    assert!(reader.into_end().unwrap().torn.is_none());
}

/// The segment number of the file a sync request names, by its inode among the log's segments.
fn segment_of(dir: &Path, file: &std::fs::File) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let inode = file.metadata().unwrap().ino();
    (1..100)
        .find(|&number| {
            fs::metadata(segment_path(dir, number)).is_ok_and(|meta| meta.ino() == inode)
        })
        .expect("a segment of the log")
}

/// Sync requests name, for dropping from the page cache once synced, the current segment's
/// whole pages from its start to [`UNCACHE_STEP_BYTES`] behind the last group — once a step of
/// them is new since the last range — and each sealed segment whole, once.
#[test]
fn sync_requests_name_the_written_pages_for_dropping_from_the_page_cache() {
    name_the_written_pages(false);
    // As a node writes: space reserved, zeros written ahead, segments started by appends.
    name_the_written_pages(true);
}

/// Appends a Put of 1000 bytes under `key`; when reserving and the segment is full, its group
/// goes out first (the next segment starts with the append).
fn append_put(log: &mut LogWriter, key: u64) {
    let change = Owned::Put("ch".into(), key, vec![7; 1000]);
    match append(log, &change, true) {
        Err(AppendError::WriteOutFirst) => {
            log.write_out().unwrap();
            append(log, &change, true).unwrap();
        }
        other => {
            other.unwrap();
        }
    }
}

fn name_the_written_pages(reserve: bool) {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        segment_bytes: 4 * UNCACHE_STEP_BYTES,
        group_bytes: 1 << 20,
    };
    let mut log = LogWriter::create(&empty_end(dir.path()), 1, options).unwrap();
    assert!(
        !reserve || log.reserve_space(),
        "the test's file system reserves space"
    );
    let page = node_core::page_cache::page_bytes();
    // Per segment: where the last range named ended; the sealed segments named whole.
    let mut named_to: std::collections::BTreeMap<u64, u64> = Default::default();
    let mut sealed_named = Vec::new();
    let mut ranges_of_the_current = 0;
    for index in 0..13000u64 {
        append_put(&mut log, index);
        if index % 10 != 9 {
            continue;
        }
        log.write_out().unwrap();
        let (current, _) = log.segment();
        let behind = log.segment_len().saturating_sub(UNCACHE_STEP_BYTES);
        let whole_pages = behind - behind % page;
        let Some(request) = log.sync_request() else {
            continue;
        };
        let last_end = named_to.get(&current).copied().unwrap_or(0);
        let mut named_current = false;
        for (file, range) in &request.uncache {
            let number = segment_of(dir.path(), file);
            assert_eq!(range.start, 0, "segment {number}: {range:?}");
            if number == current {
                assert_eq!(
                    range.end, whole_pages,
                    "whole pages a step behind the last group"
                );
                assert!(
                    range.end >= last_end + UNCACHE_STEP_BYTES,
                    "{range:?} after {last_end}"
                );
                named_to.insert(number, range.end);
                ranges_of_the_current += 1;
                named_current = true;
            } else {
                let len = fs::metadata(segment_path(dir.path(), number))
                    .unwrap()
                    .len();
                assert_eq!(
                    range.end,
                    len.div_ceil(page) * page,
                    "a sealed segment whole"
                );
                assert!(
                    !sealed_named.contains(&number),
                    "segment {number} named twice"
                );
                sealed_named.push(number);
            }
        }
        if !named_current {
            assert!(
                whole_pages < last_end + UNCACHE_STEP_BYTES,
                "{whole_pages} vs {last_end}"
            );
        }
    }
    let (current, _) = log.segment();
    assert!(current >= 3, "the test rotates segments ({current})");
    assert_eq!(sealed_named, (1..current).collect::<Vec<_>>());
    assert!(ranges_of_the_current >= 4, "{ranges_of_the_current}");
}

/// A node's replay reads its log once (the writer then goes on in a new segment): the reader
/// drops the segments it read from the page cache when asked, and not those it passed over.
#[test]
fn the_segments_read_leave_the_page_cache_once_asked() {
    use testkit::page_cache::{cached_pages, disk_backed_tempdir};
    let dir = disk_backed_tempdir(env!("CARGO_MANIFEST_DIR"));
    let mut writer = write_log(dir.path(), &sample(300), 10, small_segments());
    // Synced: the kernel drops clean pages only (a restart after a crash may find dirty ones,
    // which stay).
    writer.sync_now().unwrap();
    let (last, _) = writer.segment();
    assert!(last >= 4, "{last} segments");
    let cached = |number: u64| {
        let file = fs::File::open(segment_path(dir.path(), number)).unwrap();
        let len = file.metadata().unwrap().len();
        cached_pages(&file, 0..len)
    };
    assert!(
        (1..=last).all(|number| cached(number) > 0),
        "written segments are cached"
    );
    let listing = LogReader::open(dir.path(), ReadFrom::Start).unwrap();
    let third_first_seq = listing.summaries()[2].header.unwrap().first_seq;
    let mut reader = LogReader::open(dir.path(), ReadFrom::After(third_first_seq - 1)).unwrap();
    while reader.next_entry().unwrap().is_some() {}
    reader.uncache_read_segments();
    assert!(
        cached(1) > 0 && cached(2) > 0,
        "the segments passed over stay"
    );
    assert!(
        (3..=last).all(|number| cached(number) == 0),
        "the segments read are dropped"
    );
}

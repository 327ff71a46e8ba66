//! Our bucket format and the storage helpers on generated data: round trips, every flipped byte
//! detected, every truncation recovered, range scans exact and limited to overlapping buckets,
//! repair, and no panic on random bytes.

use logfilesnode::storage::format::{file_header, v1_file_header, FILE_HEADER_BYTES};
use logfilesnode::storage::{
    bucket_path, check_bucket_file, check_data_dir, recover_tail, repair_bucket_file,
    BucketDecoder, BucketFormat, BucketId, BucketWriter, DamageKind, RangeScan, StorageError,
    MAX_VALUE_BYTES,
};
use proptest::prelude::*;
use std::fs;
use std::path::Path;

type Rec = (u64, Vec<u8>);

fn decode(data: &[u8]) -> (Vec<Rec>, Vec<DamageKind>, u64) {
    let mut decoder = BucketDecoder::new(data);
    let mut records = Vec::new();
    let mut damage = Vec::new();
    for item in decoder.by_ref() {
        match item {
            Ok(r) => records.push((r.key, r.value.to_vec())),
            Err(d) => damage.push(d.kind),
        }
    }
    (records, damage, decoder.good_end())
}

fn sample_records() -> Vec<Rec> {
    vec![
        (0x5727_5000, b"first".to_vec()),
        (0x5727_5fff, Vec::new()),
        (0x5727_5001, b"out of key order".to_vec()),
        (0x5727_5001, vec![0xab; 300]),
        (0x5727_5800, b"last".to_vec()),
    ]
}

fn write_bucket(path: &Path, records: &[Rec], buffer_bytes: usize) {
    let mut writer = BucketWriter::open(path, buffer_bytes).expect("open");
    for (key, value) in records {
        writer.append(*key, value).expect("append");
    }
    writer.sync().expect("sync");
}

#[test]
fn round_trip_with_buffering() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = bucket_path(tmp.path(), 0x5727_5000);
    assert!(path.ends_with("0000000057/275"));
    let mut writer = BucketWriter::open(&path, 1024).expect("open");
    assert_eq!(writer.format(), BucketFormat::Crc);
    writer.append(1, b"small").expect("append");
    // Buffered: only the header is on disk yet.
    assert_eq!(
        fs::metadata(&path).expect("meta").len(),
        FILE_HEADER_BYTES as u64
    );
    writer.flush().expect("flush");
    assert_eq!(fs::metadata(&path).expect("meta").len(), writer.len_bytes());
    // A record larger than the buffer is written through.
    writer.append(2, &vec![7u8; 5000]).expect("append");
    assert_eq!(writer.buffered_bytes(), 0);
    match writer.append(3, &vec![0u8; MAX_VALUE_BYTES + 1]) {
        Err(StorageError::ValueTooLong { .. }) => {}
        other => panic!("expected ValueTooLong, got {other:?}"),
    }
    writer.append(3, b"").expect("empty value");
    writer.sync().expect("sync");
    drop(writer);
    // Reopening appends in our format after what is there.
    let mut writer = BucketWriter::open(&path, 1024).expect("reopen");
    assert_eq!(writer.recovery().cut_bytes, 0);
    writer.append(4, b"again").expect("append");
    drop(writer);
    let (records, damage, _) = decode(&fs::read(&path).expect("read"));
    assert!(damage.is_empty());
    assert_eq!(
        records,
        vec![
            (1, b"small".to_vec()),
            (2, vec![7u8; 5000]),
            (3, Vec::new()),
            (4, b"again".to_vec())
        ]
    );
}

#[test]
fn every_flipped_byte_is_detected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("bucket");
    let records = sample_records();
    write_bucket(&path, &records, 0);
    let clean = fs::read(&path).expect("read");
    // Record boundaries, to know which record a byte belongs to.
    let mut starts = vec![FILE_HEADER_BYTES];
    for (_, value) in &records {
        let last = *starts.last().expect("start");
        starts.push(last + 16 + value.len());
    }
    assert_eq!(*starts.last().expect("end"), clean.len());
    for at in 0..clean.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut data = clean.clone();
            data[at] ^= flip;
            let (got, damage, _) = decode(&data);
            assert!(!damage.is_empty(), "flip {flip:#x} at {at} not detected");
            if at < FILE_HEADER_BYTES {
                assert!(got.is_empty());
                continue;
            }
            let hit = starts.iter().rposition(|&s| s <= at).expect("record");
            let mut expected = records.clone();
            expected.remove(hit);
            let in_length_field = (8..12).contains(&(at - starts[hit]));
            if in_length_field {
                // The records after it may be lost, but none is invented or altered.
                assert_eq!(got[..], expected[..got.len()], "flip at {at}");
                assert!(got.len() >= hit);
            } else {
                assert_eq!(got, expected, "flip {flip:#x} at {at}");
                assert_eq!(damage, vec![DamageKind::Crc]);
            }
        }
    }
}

#[test]
fn every_truncation_keeps_the_complete_records() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let full_path = tmp.path().join("full");
    let records = sample_records();
    write_bucket(&full_path, &records, 64);
    let full = fs::read(&full_path).expect("read");
    let mut ends = vec![FILE_HEADER_BYTES];
    for (_, value) in &records {
        let last = *ends.last().expect("end");
        ends.push(last + 16 + value.len());
    }
    for len in 0..=full.len() {
        let path = tmp.path().join(format!("cut{len}"));
        fs::write(&path, &full[..len]).expect("write");
        let complete = ends.iter().filter(|&&e| e <= len).count().saturating_sub(1);
        let (got, damage, good_end) = decode(&full[..len]);
        assert_eq!(got, records[..complete].to_vec(), "len {len}");
        let expected_end = if len < FILE_HEADER_BYTES {
            0
        } else {
            ends[complete]
        };
        assert_eq!(good_end as usize, expected_end, "len {len}");
        assert_eq!(damage.is_empty(), len == expected_end, "len {len}");
        let recovery = recover_tail(&path).expect("recover");
        assert_eq!(recovery.cut_bytes as usize, len - expected_end, "len {len}");
        // After the cut the bucket takes appends and reads back cleanly.
        let mut writer = BucketWriter::open(&path, 64).expect("open");
        assert_eq!(writer.format(), BucketFormat::Crc);
        writer.append(0x5727_5999, b"after crash").expect("append");
        drop(writer);
        let (got, damage, _) = decode(&fs::read(&path).expect("read"));
        assert!(damage.is_empty(), "len {len}: {damage:?}");
        let mut expected = records[..complete].to_vec();
        expected.push((0x5727_5999, b"after crash".to_vec()));
        assert_eq!(got, expected, "len {len}");
    }
}

#[test]
fn zero_filled_tail_is_cut() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("bucket");
    write_bucket(&path, &sample_records(), 0);
    let clean_len = fs::metadata(&path).expect("meta").len();
    let mut data = fs::read(&path).expect("read");
    data.extend_from_slice(&[0u8; 4096]);
    fs::write(&path, &data).expect("write");
    let recovery = recover_tail(&path).expect("recover");
    assert_eq!(recovery.cut_bytes, 4096);
    assert_eq!(recovery.reason, Some(DamageKind::Crc));
    assert_eq!(fs::metadata(&path).expect("meta").len(), clean_len);
}

#[test]
fn unusable_headers_are_refused_not_cut() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("bucket");
    let mut header = v1_file_header();
    header[0] = 7;
    fs::write(&path, header).expect("write");
    assert!(matches!(
        recover_tail(&path),
        Err(StorageError::BadHeader { .. })
    ));
    assert!(BucketWriter::open(&path, 0).is_err());
    assert_eq!(fs::metadata(&path).expect("meta").len(), 16);
    let mut header = file_header();
    header[13] ^= 1;
    fs::write(&path, header).expect("write");
    assert!(BucketWriter::open(&path, 0).is_err());
}

/// One changed byte of our magic made the file look headerless (legacy) with a first "record"
/// running past the end, and the next append cut the whole bucket to zero as a torn tail: every
/// record lost. A file in which nothing reads from the first byte is refused and left as it is.
#[test]
fn a_bucket_whose_magic_is_damaged_is_refused_not_emptied() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("bucket");
    write_bucket(&path, &sample_records(), 0);
    let mut data = fs::read(&path).expect("read");
    data[3] ^= 0xff;
    fs::write(&path, &data).expect("write");
    match recover_tail(&path) {
        Err(StorageError::BadHeader { kind, .. }) => assert_eq!(kind, DamageKind::NothingReads),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(BucketWriter::open(&path, 0).is_err());
    assert_eq!(
        fs::read(&path).expect("read"),
        data,
        "the file is untouched"
    );
    // Bytes that are no bucket at all are refused the same way, never emptied.
    fs::write(&path, [0xa5u8; 100]).expect("write");
    assert!(BucketWriter::open(&path, 0).is_err());
    assert_eq!(fs::metadata(&path).expect("meta").len(), 100);
}

/// Keys spread over several buckets and two slots, some out of order within their bucket.
fn spread_keys() -> Vec<u64> {
    let base = 0x57ff_e000u64; // two buckets before the end of slot 0x57
    let mut keys = Vec::new();
    for i in 0..400u64 {
        keys.push(base + (i * 37) % 0x5000);
    }
    keys.extend([0, 1, 0xfff, 0x1000, u64::MAX, u64::MAX - 1]);
    keys
}

#[test]
fn range_scans_return_exactly_the_records_in_range() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let channel = tmp.path().join("chan");
    let keys = spread_keys();
    let mut all: Vec<Rec> = Vec::new();
    {
        let mut writers = std::collections::HashMap::new();
        for (i, &key) in keys.iter().enumerate() {
            let value = format!("{key}:{i}").into_bytes();
            let writer = writers.entry(BucketId::from_key(key)).or_insert_with(|| {
                BucketWriter::open(&bucket_path(&channel, key), 256).expect("open")
            });
            writer.append(key, &value).expect("append");
            all.push((key, value));
        }
    }
    // A damaged file in a bucket no range below overlaps except the full ones.
    let far = bucket_path(&channel, 0x1234_5678_0000);
    fs::create_dir_all(far.parent().expect("parent")).expect("mkdir");
    fs::write(&far, b"SWLOGBKT garbage").expect("write");
    let base = 0x57ff_e000u64;
    let ranges = [
        (base, base + 0x4fff),
        (base + 0xfff, base + 0x1000),
        (base + 0x1fff, base + 0x2000), // across the slot boundary
        (base + 10, base + 10),
        (base + 0x100, base + 0x2100),
        (base + 0x6000, base + 0x9000), // after everything
        (5, 4),                         // empty
        (0, 0x1000),
        (u64::MAX - 1, u64::MAX),
    ];
    let existing: Vec<BucketId> = RangeScan::new(&channel, 0, u64::MAX)
        .expect("scan")
        .remaining()
        .expect("list")
        .iter()
        .map(|b| b.id)
        .collect();
    for (from, to) in ranges {
        let scan = RangeScan::new(&channel, from, to).expect("scan");
        let visited: Vec<BucketId> = scan
            .remaining()
            .expect("list")
            .iter()
            .map(|b| b.id)
            .collect();
        let overlapping: Vec<BucketId> = existing
            .iter()
            .copied()
            .filter(|id| from <= to && id.last_key() >= from && id.first_key() <= to)
            .collect();
        assert_eq!(visited, overlapping, "[{from:#x}, {to:#x}]");
        let mut got = Vec::new();
        let (damage, errors) = scan.for_each(|r| got.push((r.key, r.value.to_vec())));
        assert!(
            damage.is_empty() && errors.is_empty(),
            "[{from:#x}, {to:#x}]"
        );
        let mut expected: Vec<Rec> = all
            .iter()
            .filter(|(k, _)| (from..=to).contains(k))
            .cloned()
            .collect();
        expected.sort_by_key(|r| r.0); // stable: equal keys keep append order
        assert_eq!(got, expected, "[{from:#x}, {to:#x}]");
    }
    // The full range meets the damaged file and reports it.
    let (damage, _) = RangeScan::new(&channel, 0, u64::MAX)
        .expect("scan")
        .for_each(|_| {});
    assert_eq!(damage.len(), 1);
    assert_eq!(damage[0].0, far);
}

#[test]
fn check_and_repair_cut_at_the_first_bad_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let channel = tmp.path().join("chan");
    let path = bucket_path(&channel, 0x5727_5000);
    let records = sample_records();
    write_bucket(&path, &records, 0);
    assert!(check_data_dir(tmp.path(), None).expect("check").is_clean());
    // Damage the value of the second record: readers skip it, check reports it.
    let mut data = fs::read(&path).expect("read");
    let second = FILE_HEADER_BYTES + 16 + records[0].1.len();
    data[second + 3] ^= 0x40;
    fs::write(&path, &data).expect("write");
    let report = check_bucket_file(&path, Some(BucketId::from_key(0x5727_5000))).expect("check");
    assert_eq!(report.records, 4);
    assert_eq!(report.first_bad_offset(), Some(second as u64));
    assert!(!check_data_dir(tmp.path(), Some("chan"))
        .expect("check")
        .is_clean());
    let repair = repair_bucket_file(&report)
        .expect("repair")
        .expect("something cut");
    assert_eq!(repair.cut_from_offset, second as u64);
    assert_eq!(repair.cut_bytes, (data.len() - second) as u64);
    assert_eq!(
        fs::read(&repair.saved_to).expect("saved"),
        data[second..].to_vec()
    );
    let report = check_data_dir(tmp.path(), None).expect("check");
    assert!(report.is_clean());
    assert_eq!(report.records(), 1);
    // A record in the wrong bucket is reported as misplaced.
    let mut writer = BucketWriter::open(&path, 0).expect("open");
    writer.append(0x5727_6000, b"wrong bucket").expect("append");
    drop(writer);
    let report = check_data_dir(tmp.path(), None).expect("check");
    assert_eq!(report.files[0].misplaced_records, 1);
    assert!(!report.is_clean());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoder_never_panics(
        prefix in 0usize..4,
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut data = match prefix {
            0 => Vec::new(),
            1 => file_header().to_vec(),
            2 => v1_file_header().to_vec(),
            _ => b"SWLOGBKT".to_vec(),
        };
        data.extend_from_slice(&body);
        let (records, _, good_end) = decode(&data);
        prop_assert!(good_end as usize <= data.len());
        let total: usize = records.iter().map(|r| r.1.len()).sum();
        prop_assert!(total <= data.len());
    }

    #[test]
    fn recover_tail_keeps_every_good_record(
        records in proptest::collection::vec((any::<u64>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..8),
        garbage in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("bucket");
        write_bucket(&path, &records, 128);
        let mut data = fs::read(&path).expect("read");
        data.extend_from_slice(&garbage);
        fs::write(&path, &data).expect("write");
        let (before, _, _) = decode(&data);
        prop_assert!(before.len() >= records.len());
        prop_assert_eq!(&before[..records.len()], &records[..]);
        if recover_tail(&path).is_ok() {
            let (after, _, _) = decode(&fs::read(&path).expect("read"));
            prop_assert_eq!(after, before);
        }
    }
}

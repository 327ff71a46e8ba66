//! Reads arbitrary bytes as a logfiles bucket file, through `BucketDecoder` and the check built
//! on it (`logfiles_check`). Nothing may panic, and:
//! - every record and every damage item lies within the input, in file order, without overlap;
//!   a record's value is the slice right after its header;
//! - `good_end` is at most the input's length;
//! - the check counts exactly the records the decoder yields, and its first bad offset (where
//!   `--repair` cuts) is within the input; the bytes before it check clean and hold every good
//!   record before it (so a repaired file checks clean), with and without the key-in-bucket check.

use logfilesnode::storage::check::check_bucket_bytes;
use logfilesnode::storage::{BucketDecoder, BucketId, DamageKind};
use std::path::Path;

/// The target's entry point: one input. Panics when an invariant above does not hold.
pub fn check(data: &[u8]) {
    let len = data.len() as u64;
    let start = data.as_ptr() as usize;
    let mut decoder = BucketDecoder::new(data);
    let header = decoder.format().map_or(0, |f| f.record_header_bytes()) as u64;
    let mut pos = 0u64;
    let mut records = 0u64;
    let mut first_key = None;
    for item in decoder.by_ref() {
        match item {
            Ok(record) => {
                assert!(record.offset >= pos, "records in file order");
                let value_at = (record.value.as_ptr() as usize).wrapping_sub(start) as u64;
                assert_eq!(
                    value_at,
                    record.offset + header,
                    "value right after its header"
                );
                let end = value_at + record.value.len() as u64;
                assert!(end <= len, "record within the input");
                pos = end;
                records += 1;
                first_key.get_or_insert(record.key);
            }
            Err(damage) => {
                assert!(damage.offset >= pos, "damage in file order");
                let end = damage
                    .offset
                    .checked_add(damage.len_bytes)
                    .expect("no overflow");
                assert!(end <= len, "damage within the input");
                pos = end;
            }
        }
    }
    assert!(decoder.good_end() <= len);

    for id in [None, first_key.map(BucketId::from_key)] {
        let report = check_bucket_bytes(Path::new("fuzz"), id, data);
        assert_eq!(report.records, records);
        assert_eq!(report.len_bytes, len);
        let Some(cut) = report.first_bad_offset() else {
            assert!(report.is_clean());
            continue;
        };
        assert!(cut <= len);
        assert!(report.records_past_first_bad <= report.records);
        let unusable_header = report.format.is_none()
            && report
                .damage
                .first()
                .is_some_and(|d| d.kind != DamageKind::TornFileHeader);
        if unusable_header {
            continue; // repair refuses these files
        }
        let prefix = check_bucket_bytes(Path::new("fuzz"), id, &data[..cut as usize]);
        assert!(prefix.is_clean(), "{prefix:?}");
        assert_eq!(
            prefix.records,
            report.records - report.records_past_first_bad
        );
    }
}

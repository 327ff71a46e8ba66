//! Reads arbitrary bytes as a bucket's index file (`<bucket>.idx`) and as the bucket itself.
//! Nothing may panic, and:
//! - an index file `decode_index` accepts has exactly one encoding: re-encoding gives the input;
//!   its entries rise by at least the interval, stay below the bucket's length and (in order)
//!   have rising keys;
//! - the same bytes read as a bucket: the index `build_index` makes of them encodes, decodes to
//!   itself, passes `validate` and `verify_index` against them, and every entry a read would
//!   seek to starts a record with the entry's key; an accepted index file checked against them
//!   (`validate`, `verify_index`, seeking) answers without panicking.

use logfilesnode::storage::index::{
    build_index, decode_index, encode_index, verify_index, BucketIndex, MAX_INDEX_ENTRIES,
    MIN_INDEX_INTERVAL_BYTES,
};

/// The target's entry point: one input. Panics when an invariant above does not hold.
pub fn check(data: &[u8]) {
    if let Ok(index) = decode_index(data) {
        check_decoded(&index, data);
    }

    // The bytes as a bucket: the index a read builds of them is right about them.
    let interval = MIN_INDEX_INTERVAL_BYTES + u32::from(data.first().copied().unwrap_or(0));
    let built = build_index(data, interval);
    let bytes = encode_index(&built);
    assert_eq!(decode_index(&bytes).as_ref(), Ok(&built));
    assert_eq!(built.validate(data), Ok(()));
    assert_eq!(verify_index(&built, data), Ok(()));
    if built.in_order {
        for entry in built.entries.iter().filter(|e| e.min_key < u64::MAX) {
            let sought = built.seek(entry.min_key.saturating_add(1), data.len() as u64);
            let sought = sought.expect("a stretch starts below a key above its own");
            assert_eq!(built.check_entry(data, sought), Ok(()));
        }
    }
}

/// The invariants of an index file `decode_index` accepted (`data`, also read as its bucket).
fn check_decoded(index: &BucketIndex, data: &[u8]) {
    assert_eq!(encode_index(index), data, "one encoding");
    assert!(index.entries.len() <= MAX_INDEX_ENTRIES);
    assert!(index.interval_bytes >= MIN_INDEX_INTERVAL_BYTES);
    for pair in index.entries.windows(2) {
        assert!(
            pair[1].offset
                >= pair[0]
                    .offset
                    .saturating_add(u64::from(index.interval_bytes))
        );
        assert!(!index.in_order || pair[1].min_key >= pair[0].min_key);
    }
    assert!(index
        .entries
        .iter()
        .all(|e| e.offset < index.bucket_len_bytes));
    // Against whatever bucket: answers, never panics.
    let _ = index.validate(data);
    let _ = verify_index(index, data);
    if index.in_order {
        for from in [0, 1, u64::MAX] {
            if let Some(entry) = index.seek(from, data.len() as u64) {
                let _ = index.check_entry(data, entry);
            }
        }
    }
}

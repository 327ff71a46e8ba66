//! Decodes arbitrary bytes as an LZ4 record batch and as an uncompressed one.
//! `decode_batch` and `decode_uncompressed_batch` must return `Ok` or `Err` without panicking;
//! when one accepts a batch:
//! - walking the records yields exactly the declared count (and `len()` counts down to 0);
//! - the records tile the declared uncompressed length;
//! - re-encoding them with `BatchBuilder` (the same kind of batch) and decoding again gives the
//!   same records, in order; an accepted uncompressed batch re-encodes to exactly the input.

use node_core::protocol::batch::{
    decode_batch, decode_uncompressed_batch, BatchBuilder, BatchRecords, PushOutcome,
    MAX_BATCH_UNCOMPRESSED_BYTES, RECORD_OVERHEAD,
};

/// The target's entry point: one input. Panics when an invariant above does not hold.
pub fn check(data: &[u8]) {
    if let Ok(records) = decode_uncompressed_batch(data) {
        let list = walk(data, records);
        let mut reencoded = Vec::new();
        builder_of(&list).finish_uncompressed_into(&mut reencoded);
        assert_eq!(reencoded, data, "an uncompressed batch has one encoding");
    }
    let mut scratch = Vec::new();
    let Ok(records) = decode_batch(data, &mut scratch) else {
        return;
    };
    let list = walk(data, records);
    let mut reencoded = Vec::new();
    builder_of(&list).finish_into(&mut reencoded);
    // The header is deterministic: same length, count and CRC as the input's.
    assert_eq!(&reencoded[..12], &data[..12], "re-encoded header differs");
    let mut scratch2 = Vec::new();
    let again: Vec<(u64, Vec<u8>)> = decode_batch(&reencoded, &mut scratch2)
        .expect("a re-encoded batch does not decode")
        .map(|(key, value)| (key, value.to_vec()))
        .collect();
    assert_eq!(again, list, "re-encoded batch decodes to different records");
}

/// A builder holding `list`, every record of which it must take.
fn builder_of(list: &[(u64, Vec<u8>)]) -> BatchBuilder {
    let mut builder = BatchBuilder::new(MAX_BATCH_UNCOMPRESSED_BYTES);
    for (key, value) in list {
        assert_eq!(builder.push(*key, value), PushOutcome::Added);
    }
    builder
}

/// Walks an accepted batch's records, checking the count and that they tile its length.
fn walk(data: &[u8], records: BatchRecords<'_>) -> Vec<(u64, Vec<u8>)> {
    let declared_count = records.len();
    let declared_len = u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
    let mut walked = records.clone();
    let mut list: Vec<(u64, Vec<u8>)> = Vec::new();
    while let Some((key, value)) = walked.next() {
        list.push((key, value.to_vec()));
        assert_eq!(walked.len() as usize, declared_count as usize - list.len());
    }
    assert!(walked.is_empty());
    assert_eq!(
        list.len(),
        declared_count as usize,
        "walk disagrees with the declared count"
    );
    let raw_len: usize = list
        .iter()
        .map(|(_, value)| RECORD_OVERHEAD + value.len())
        .sum();
    assert_eq!(raw_len, declared_len, "records do not tile the batch");
    list
}

//! LZ4 record batches (docs/protocol.md §4): how bulk data (GetAll, GetRange, Consume, PutBatch)
//! travels. A batch is a 12-byte header (uncompressed length, record count, CRC32 of the
//! uncompressed bytes) and an LZ4 block; the records inside are `u64 key, u32 len, value`.
//!
//! An **uncompressed batch** (logfiles reads that ask for it, docs/protocol.md §4.1) has the same
//! header followed by the records themselves: no compression work on either side, for links
//! faster than LZ4 ([`encode_uncompressed_batch`], [`decode_uncompressed_batch`]).

use thiserror::Error;

pub const BATCH_HEADER_LEN: usize = 12;
/// Bytes of per-record framing inside a batch: key and value length.
pub const RECORD_OVERHEAD: usize = 12;
/// The most uncompressed bytes a batch may hold; a decoder refuses more before allocating.
pub const MAX_BATCH_UNCOMPRESSED_BYTES: usize = 16 * 1024 * 1024;
/// The size a producer aims for: large enough to amortise compression and framing, small enough
/// to interleave with other replies on the connection.
pub const DEFAULT_BATCH_TARGET_BYTES: usize = 64 * 1024;
/// The most bytes one byte of an LZ4 block can decompress to.
const LZ4_MAX_EXPANSION: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error("batch shorter than its {BATCH_HEADER_LEN}-byte header")]
    Truncated,
    #[error("batch declares {declared} uncompressed bytes; the limit is {max}")]
    TooLarge { declared: usize, max: usize },
    #[error("batch does not decompress: {0}")]
    Corrupt(String),
    #[error("batch decompressed to {actual} bytes, header says {declared}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("batch checksum mismatch: header {declared:#010x}, content {actual:#010x}")]
    ChecksumMismatch { declared: u32, actual: u32 },
    #[error("batch record {index} runs past the end of the batch")]
    RecordOverrun { index: u32 },
    #[error("batch holds {actual} records, header says {declared}")]
    CountMismatch { declared: u32, actual: u32 },
}

/// What happened to a record offered to a [`BatchBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Added,
    /// Not added: it would take the batch past its target. Finish the batch and push it again.
    Full,
    /// Not added, and never will be: the record alone exceeds the batch limit.
    TooBig,
}

/// How a finished batch is encoded (§4.1 of docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchEncoding {
    /// LZ4-compressed: what every stream sends unless its request asks otherwise.
    #[default]
    Lz4,
    /// Uncompressed: for links faster than the node can compress.
    Uncompressed,
}

/// Collects records up to a target size, then compresses them into one batch.
#[derive(Debug)]
pub struct BatchBuilder {
    raw: Vec<u8>,
    count: u32,
    target_bytes: usize,
}

impl BatchBuilder {
    pub fn new(target_bytes: usize) -> BatchBuilder {
        let target_bytes = target_bytes.clamp(RECORD_OVERHEAD, MAX_BATCH_UNCOMPRESSED_BYTES);
        BatchBuilder {
            raw: Vec::with_capacity(target_bytes),
            count: 0,
            target_bytes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn record_count(&self) -> u32 {
        self.count
    }

    /// Uncompressed bytes collected so far.
    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    /// Offers a record. A record larger than the target still goes into an empty batch (alone),
    /// as long as it fits the hard limit.
    pub fn push(&mut self, key: u64, value: &[u8]) -> PushOutcome {
        self.push_with_prefix(key, &[], value)
    }

    /// As [`push`](Self::push), for a record whose value is `prefix` followed by `value` (a dht
    /// Mirror's refresh record: its version, then its value), without joining them first.
    pub fn push_with_prefix(&mut self, key: u64, prefix: &[u8], value: &[u8]) -> PushOutcome {
        let value_len = prefix.len() + value.len();
        let record_len = RECORD_OVERHEAD + value_len;
        if record_len > MAX_BATCH_UNCOMPRESSED_BYTES {
            return PushOutcome::TooBig;
        }
        if !self.is_empty() && self.raw.len() + record_len > self.target_bytes {
            return PushOutcome::Full;
        }
        self.raw.extend_from_slice(&key.to_le_bytes());
        self.raw
            .extend_from_slice(&(value_len as u32).to_le_bytes());
        self.raw.extend_from_slice(prefix);
        self.raw.extend_from_slice(value);
        self.count += 1;
        PushOutcome::Added
    }

    /// Compresses the collected records, appends the batch to `out` and empties the builder
    /// (keeping its buffer for the next batch).
    pub fn finish_into(&mut self, out: &mut Vec<u8>) {
        encode_batch(&self.raw, self.count, out);
        self.raw.clear();
        self.count = 0;
    }

    /// As [`finish_into`](Self::finish_into), as an uncompressed batch.
    pub fn finish_uncompressed_into(&mut self, out: &mut Vec<u8>) {
        encode_uncompressed_batch(&self.raw, self.count, out);
        self.raw.clear();
        self.count = 0;
    }

    /// [`finish_into`](Self::finish_into) or
    /// [`finish_uncompressed_into`](Self::finish_uncompressed_into), as `encoding` says.
    pub fn finish_as(&mut self, encoding: BatchEncoding, out: &mut Vec<u8>) {
        match encoding {
            BatchEncoding::Lz4 => self.finish_into(out),
            BatchEncoding::Uncompressed => self.finish_uncompressed_into(out),
        }
    }
}

/// The batch builder a node's streams share, one turn at a time: a stream takes it, fills it
/// and sends it within its turn, and gives it back empty. So no stream holds a batch buffer
/// while it waits for credit or for its client to read (docs/security.md, stream memory).
#[derive(Debug, Default)]
pub struct SharedBatch {
    spare: Option<BatchBuilder>,
}

/// A shared batch buffer grown beyond this (by one large record) is let go after use.
const SHARED_BATCH_KEEP_BYTES: usize = 1024 * 1024;

impl SharedBatch {
    /// The builder, empty, aiming at [`DEFAULT_BATCH_TARGET_BYTES`].
    pub fn take(&mut self) -> BatchBuilder {
        self.spare
            .take()
            .unwrap_or_else(|| BatchBuilder::new(DEFAULT_BATCH_TARGET_BYTES))
    }

    /// Gives the builder back; it must be empty (its batch was sent).
    pub fn put_back(&mut self, batch: BatchBuilder) {
        debug_assert!(batch.is_empty(), "a shared batch is sent within its turn");
        if batch.is_empty() && batch.raw.capacity() <= SHARED_BATCH_KEEP_BYTES {
            self.spare = Some(batch);
        }
    }
}

/// Appends one record in the uncompressed batch layout (`u64 key, u32 len, value`). With
/// [`encode_batch`] this lets one thread collect records cheaply and another compress them.
pub fn append_record(raw: &mut Vec<u8>, key: u64, value: &[u8]) {
    debug_assert!(value.len() <= MAX_BATCH_UNCOMPRESSED_BYTES);
    raw.extend_from_slice(&key.to_le_bytes());
    raw.extend_from_slice(&(value.len() as u32).to_le_bytes());
    raw.extend_from_slice(value);
}

/// Compresses `record_count` records laid out by [`append_record`] into one batch appended to
/// `out`.
pub fn encode_batch(raw: &[u8], record_count: u32, out: &mut Vec<u8>) {
    debug_assert!(raw.len() <= MAX_BATCH_UNCOMPRESSED_BYTES);
    put_header(raw, record_count, out);
    if !raw.is_empty() {
        // Compressing into a Vec that grows as needed cannot fail for inputs this small; should
        // liblz4 still refuse, the empty block fails the reader's length check loudly.
        if let Err(err) = lzzzz::lz4::compress_to_vec(raw, out, lzzzz::lz4::ACC_LEVEL_DEFAULT) {
            tracing::error!("lz4 compression failed: {err}");
        }
    }
}

/// Appends `record_count` records laid out by [`append_record`] to `out` as one uncompressed
/// batch: the batch header, then `raw` itself.
pub fn encode_uncompressed_batch(raw: &[u8], record_count: u32, out: &mut Vec<u8>) {
    debug_assert!(raw.len() <= MAX_BATCH_UNCOMPRESSED_BYTES);
    out.reserve(BATCH_HEADER_LEN + raw.len());
    put_header(raw, record_count, out);
    out.extend_from_slice(raw);
}

/// Appends the 12-byte header of an uncompressed batch of `raw` to `out`, without `raw` itself:
/// for a writer that sends `raw` from where it lies, right after the header.
pub fn encode_batch_header(raw: &[u8], record_count: u32, out: &mut Vec<u8>) {
    debug_assert!(raw.len() <= MAX_BATCH_UNCOMPRESSED_BYTES);
    put_header(raw, record_count, out);
}

/// The 12-byte header every batch starts with: length and CRC32 of `raw`, the record count.
fn put_header(raw: &[u8], record_count: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(&record_count.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(raw).to_le_bytes());
}

/// A batch's header, checked against the limit: declared length, count and CRC, and the bytes
/// after the header.
struct Header<'a> {
    len: usize,
    count: u32,
    crc: u32,
    rest: &'a [u8],
}

fn read_header(batch: &[u8]) -> Result<Header<'_>, BatchError> {
    let Some((header, rest)) = batch.split_first_chunk::<BATCH_HEADER_LEN>() else {
        return Err(BatchError::Truncated);
    };
    let field = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let len = field(0) as usize;
    if len > MAX_BATCH_UNCOMPRESSED_BYTES {
        return Err(BatchError::TooLarge {
            declared: len,
            max: MAX_BATCH_UNCOMPRESSED_BYTES,
        });
    }
    Ok(Header {
        len,
        count: field(4),
        crc: field(8),
        rest,
    })
}

/// Checks the CRC of the records, then that they tile them and match the count.
fn check_content(raw: &[u8], header: &Header<'_>) -> Result<(), BatchError> {
    let actual = crc32fast::hash(raw);
    if actual != header.crc {
        return Err(BatchError::ChecksumMismatch {
            declared: header.crc,
            actual,
        });
    }
    check_records(raw, header.count)
}

/// Decodes and fully checks an uncompressed batch: its length is the header's, its CRC and
/// record count match. The records are borrowed from `batch`; nothing is allocated.
pub fn decode_uncompressed_batch(batch: &[u8]) -> Result<BatchRecords<'_>, BatchError> {
    let header = read_header(batch)?;
    let raw = header.rest;
    if raw.len() != header.len {
        return Err(BatchError::LengthMismatch {
            declared: header.len,
            actual: raw.len(),
        });
    }
    check_content(raw, &header)?;
    Ok(BatchRecords {
        rest: raw,
        remaining: header.count,
    })
}

/// Decodes and fully checks a batch, decompressing into `scratch` (reused across calls). The
/// records can then be walked without further checks.
pub fn decode_batch<'a>(
    batch: &[u8],
    scratch: &'a mut Vec<u8>,
) -> Result<BatchRecords<'a>, BatchError> {
    let header = read_header(batch)?;
    let (declared_len, block) = (header.len, header.rest);
    // One byte of LZ4 block expands to at most 255 bytes, so a tiny batch that declares a huge
    // size is refused before it costs an allocation (fuzzing found 13 bytes buying 16 MiB).
    if declared_len > block.len().saturating_mul(LZ4_MAX_EXPANSION) {
        return Err(BatchError::LengthMismatch {
            declared: declared_len,
            actual: 0,
        });
    }
    scratch.clear();
    scratch.resize(declared_len, 0);
    let actual_len = if declared_len == 0 && block.is_empty() {
        0
    } else {
        lzzzz::lz4::decompress(block, scratch)
            .map_err(|err| BatchError::Corrupt(err.to_string()))?
    };
    if actual_len != declared_len {
        return Err(BatchError::LengthMismatch {
            declared: declared_len,
            actual: actual_len,
        });
    }
    check_content(scratch, &header)?;
    Ok(BatchRecords {
        rest: scratch.as_slice(),
        remaining: header.count,
    })
}

/// Walks the records once to prove that they tile the batch exactly and match the count.
fn check_records(raw: &[u8], declared_count: u32) -> Result<(), BatchError> {
    let mut offset = 0usize;
    let mut count = 0u32;
    while offset < raw.len() {
        let Some(fixed) = raw[offset..].first_chunk::<RECORD_OVERHEAD>() else {
            return Err(BatchError::RecordOverrun { index: count });
        };
        let value_len = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]) as usize;
        let end = offset + RECORD_OVERHEAD + value_len;
        if end > raw.len() {
            return Err(BatchError::RecordOverrun { index: count });
        }
        offset = end;
        count = count.saturating_add(1);
    }
    if count != declared_count {
        return Err(BatchError::CountMismatch {
            declared: declared_count,
            actual: count,
        });
    }
    Ok(())
}

/// The records of a checked batch, in order.
#[derive(Debug, Clone)]
pub struct BatchRecords<'a> {
    rest: &'a [u8],
    remaining: u32,
}

impl<'a> BatchRecords<'a> {
    pub fn len(&self) -> u32 {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl<'a> Iterator for BatchRecords<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<(u64, &'a [u8])> {
        // decode_batch checked every boundary, so these lookups only fail on an empty batch.
        let fixed = self.rest.first_chunk::<RECORD_OVERHEAD>()?;
        let mut key = [0u8; 8];
        key.copy_from_slice(&fixed[0..8]);
        let value_len = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]) as usize;
        let value = self
            .rest
            .get(RECORD_OVERHEAD..RECORD_OVERHEAD + value_len)?;
        self.rest = &self.rest[RECORD_OVERHEAD + value_len..];
        self.remaining = self.remaining.saturating_sub(1);
        Some((u64::from_le_bytes(key), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(records: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut builder = BatchBuilder::new(MAX_BATCH_UNCOMPRESSED_BYTES);
        for (key, value) in records {
            assert_eq!(builder.push(*key, value), PushOutcome::Added);
        }
        let mut out = Vec::new();
        builder.finish_into(&mut out);
        out
    }

    #[test]
    fn records_round_trip_in_order() {
        let records: Vec<(u64, Vec<u8>)> = (0..1000u64)
            .map(|i| (i * 7, i.to_string().into_bytes()))
            .collect();
        let batch = build(&records);
        let mut scratch = Vec::new();
        let decoded: Vec<(u64, Vec<u8>)> = decode_batch(&batch, &mut scratch)
            .unwrap()
            .map(|(key, value)| (key, value.to_vec()))
            .collect();
        assert_eq!(decoded, records);
    }

    #[test]
    fn empty_batch_and_empty_values_round_trip() {
        let mut scratch = Vec::new();
        assert_eq!(decode_batch(&build(&[]), &mut scratch).unwrap().count(), 0);
        let batch = build(&[(1, vec![]), (2, vec![])]);
        let keys: Vec<u64> = decode_batch(&batch, &mut scratch)
            .unwrap()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![1, 2]);
    }

    #[test]
    fn builder_reports_full_then_takes_oversized_record_alone() {
        let mut builder = BatchBuilder::new(64);
        assert_eq!(builder.push(1, &[0; 40]), PushOutcome::Added);
        assert_eq!(builder.push(2, &[0; 40]), PushOutcome::Full);
        builder.finish_into(&mut Vec::new());
        assert_eq!(builder.push(2, &[0; 100]), PushOutcome::Added);
        assert_eq!(
            builder.push(3, &vec![0; MAX_BATCH_UNCOMPRESSED_BYTES]),
            PushOutcome::TooBig
        );
    }

    #[test]
    fn a_tiny_batch_claiming_a_huge_size_is_refused_without_allocating() {
        let mut batch = vec![0u8; BATCH_HEADER_LEN + 1];
        batch[0..4].copy_from_slice(&(16u32 * 1024 * 1024).to_le_bytes());
        let mut scratch = Vec::new();
        assert!(matches!(
            decode_batch(&batch, &mut scratch),
            Err(BatchError::LengthMismatch { .. })
        ));
        assert_eq!(scratch.capacity(), 0);
        // The most compressible batch there is still decodes: 16 MiB of zeros in one record.
        let mut builder = BatchBuilder::new(MAX_BATCH_UNCOMPRESSED_BYTES);
        assert_eq!(
            builder.push(1, &vec![0; MAX_BATCH_UNCOMPRESSED_BYTES - RECORD_OVERHEAD]),
            PushOutcome::Added
        );
        let mut zeros = Vec::new();
        builder.finish_into(&mut zeros);
        assert_eq!(decode_batch(&zeros, &mut scratch).unwrap().count(), 1);
    }

    #[test]
    fn uncompressed_batches_round_trip_and_damage_is_detected() {
        let records: Vec<(u64, Vec<u8>)> = (0..300u64)
            .map(|i| (i * 3, format!("value {i}").into_bytes()))
            .collect();
        let mut builder = BatchBuilder::new(MAX_BATCH_UNCOMPRESSED_BYTES);
        for (key, value) in &records {
            assert_eq!(builder.push(*key, value), PushOutcome::Added);
        }
        let mut batch = Vec::new();
        builder.finish_uncompressed_into(&mut batch);
        let decoded: Vec<(u64, Vec<u8>)> = decode_uncompressed_batch(&batch)
            .unwrap()
            .map(|(key, value)| (key, value.to_vec()))
            .collect();
        assert_eq!(decoded, records);
        // The header is the one the LZ4 batch of the same records has.
        let mut lz4 = Vec::new();
        let mut again = BatchBuilder::new(MAX_BATCH_UNCOMPRESSED_BYTES);
        for (key, value) in &records {
            again.push(*key, value);
        }
        again.finish_into(&mut lz4);
        assert_eq!(lz4[..BATCH_HEADER_LEN], batch[..BATCH_HEADER_LEN]);
        let mut empty = Vec::new();
        builder.finish_uncompressed_into(&mut empty);
        assert_eq!(decode_uncompressed_batch(&empty).unwrap().count(), 0);

        let mut flipped = batch.clone();
        flipped[BATCH_HEADER_LEN + 20] ^= 1;
        assert!(matches!(
            decode_uncompressed_batch(&flipped),
            Err(BatchError::ChecksumMismatch { .. })
        ));
        assert!(matches!(
            decode_uncompressed_batch(&batch[..batch.len() - 1]),
            Err(BatchError::LengthMismatch { .. })
        ));
        let mut wrong_count = batch.clone();
        wrong_count[4] ^= 1;
        assert!(matches!(
            decode_uncompressed_batch(&wrong_count),
            Err(BatchError::CountMismatch { .. })
        ));
        assert_eq!(
            decode_uncompressed_batch(&batch[..11]).unwrap_err(),
            BatchError::Truncated
        );
        // An LZ4 batch is not an uncompressed one.
        assert!(decode_uncompressed_batch(&lz4).is_err());
    }

    #[test]
    fn damage_is_detected() {
        let batch = build(&[(1, b"hello world hello world".to_vec()), (2, b"x".to_vec())]);
        let mut scratch = Vec::new();
        let mut wrong_count = batch.clone();
        wrong_count[4] = 9;
        assert!(matches!(
            decode_batch(&wrong_count, &mut scratch),
            Err(BatchError::CountMismatch { .. })
        ));
        let mut wrong_crc = batch.clone();
        wrong_crc[8] ^= 1;
        assert!(matches!(
            decode_batch(&wrong_crc, &mut scratch),
            Err(BatchError::ChecksumMismatch { .. })
        ));
        let mut huge = batch.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_batch(&huge, &mut scratch),
            Err(BatchError::TooLarge { .. })
        ));
        assert_eq!(
            decode_batch(&batch[..5], &mut scratch).unwrap_err(),
            BatchError::Truncated
        );
        let truncated_block = &batch[..batch.len() - 1];
        assert!(decode_batch(truncated_block, &mut scratch).is_err());
    }
}

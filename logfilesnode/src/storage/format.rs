//! Bucket file formats: detection by header, decoding of all three formats, encoding of records.
//!
//! All integers are little-endian. Also documented in `docs/formats.md`, "logfiles bucket".
//!
//! **Ours** ([`BucketFormat::Crc`], written to every new bucket file):
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 8]` | magic `"SWLOGBKT"` |
//! | 8 | `u32` | format version = `1` |
//! | 12 | `u32` | CRC32 (IEEE) of bytes `0 .. 12` |
//! | 16 | records | each: `u64` key, `u32` value length (at most [`MAX_VALUE_BYTES`]), `u32` CRC32 of the 12 header bytes before it followed by the value, then the value |
//!
//! **Reference v1** ([`BucketFormat::V1`]): `u64` version `1`, `"DLSBUCKT"`, then records
//! `u64` key, `u64` length, `u8` parity (the 17 header bytes XOR to 0), value. A header with
//! `"DLSBUCKT"` and version `0` is followed by legacy records (as in the reference).
//!
//! **Reference legacy** ([`BucketFormat::Legacy`]): no file header; records `u64` key, `u64`
//! length, value.
//!
//! Detection: bytes `0 .. 8` = `"SWLOGBKT"` ⇒ ours; bytes `8 .. 16` = `"DLSBUCKT"` ⇒ reference
//! header; anything else ⇒ legacy. (A legacy file whose first key is the integer spelled
//! `"SWLOGBKT"` (≈ 6.1 × 10^18) would be misdetected; no real timestamp is that large.)
//!
//! Decoding ([`BucketDecoder`]) works on the whole file as a byte slice (a memory map or one
//! large read), hands out borrowed values and allocates nothing, so no length field can make it
//! allocate. Damage is reported as [`Damage`] items (offset, bytes covered, why):
//! - a record whose end lies past the end of the file (torn tail), fewer bytes left than a
//!   record header, a v1 parity failure, a length over [`MAX_VALUE_BYTES`] (ours) ⇒ the rest of
//!   the file is unreadable: one damage item covering it, then the decoder ends;
//! - ours: a CRC mismatch whose declared length leads exactly to the end of the file or to a
//!   record that passes its CRC ⇒ only that record is skipped; otherwise the rest is unreadable.
//!
//! One difference from the reference reader: a record whose header ends exactly at the end of
//! the file with an empty value is returned (the reference's `>=` test drops it).

use std::fmt;

/// Bytes of every file header (ours and the reference v1).
pub const FILE_HEADER_BYTES: usize = 16;
/// Magic at the start of our bucket files.
pub const MAGIC: [u8; 8] = *b"SWLOGBKT";
/// Our format version.
pub const FORMAT_VERSION: u32 = 1;
/// Magic at bytes 8 .. 16 of a reference v1 bucket file.
pub const REF_MAGIC: [u8; 8] = *b"DLSBUCKT";
/// Bytes of our record header: key, length, CRC32.
pub const RECORD_HEADER_BYTES: usize = 16;
/// Bytes of a reference legacy record header: key, length.
pub const LEGACY_RECORD_HEADER_BYTES: usize = 16;
/// Bytes of a reference v1 record header: key, length, parity.
pub const V1_RECORD_HEADER_BYTES: usize = 17;
/// The longest value this module writes in any format, and reads in ours.
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// The format of one bucket file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BucketFormat {
    /// Reference legacy: no header, 16-byte record headers without any check.
    Legacy,
    /// Reference v1: `DLSBUCKT` header, 17-byte record headers with a parity byte.
    V1,
    /// Ours: `SWLOGBKT` header, 16-byte record headers with a CRC32 over header and value.
    Crc,
}

impl BucketFormat {
    /// Bytes of one record header in this format.
    pub fn record_header_bytes(self) -> usize {
        match self {
            BucketFormat::Legacy => LEGACY_RECORD_HEADER_BYTES,
            BucketFormat::V1 => V1_RECORD_HEADER_BYTES,
            BucketFormat::Crc => RECORD_HEADER_BYTES,
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            BucketFormat::Legacy => "legacy",
            BucketFormat::V1 => "v1",
            BucketFormat::Crc => "crc",
        }
    }
}

/// What is wrong at some offset of a bucket file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// The file is shorter than the file header its first bytes announce.
    TornFileHeader,
    /// Our file header fails its CRC.
    FileHeaderCrc,
    /// A file header with a version this module does not know.
    UnsupportedVersion(u64),
    /// Fewer bytes left than a record header.
    TornRecordHeader,
    /// The value would end past the end of the file.
    TornValue { declared_bytes: u64 },
    /// Ours: a declared length over [`MAX_VALUE_BYTES`].
    ValueTooLong { declared_bytes: u64 },
    /// v1: the record header's parity check fails.
    Parity,
    /// Ours: the record's CRC32 does not match.
    Crc,
    /// A file without a recognized header in which not even the first record reads: not a
    /// bucket, or our header damaged beyond recognition (a byte of its magic changed).
    NothingReads,
}

impl fmt::Display for DamageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DamageKind::TornFileHeader => write!(f, "file header cut short"),
            DamageKind::FileHeaderCrc => write!(f, "file header CRC mismatch"),
            DamageKind::UnsupportedVersion(v) => write!(f, "unsupported bucket version {v}"),
            DamageKind::TornRecordHeader => write!(f, "record header cut short"),
            DamageKind::TornValue { declared_bytes } => {
                write!(
                    f,
                    "value of {declared_bytes} bytes runs past the end of the file"
                )
            }
            DamageKind::ValueTooLong { declared_bytes } => {
                write!(f, "declared value length {declared_bytes} over the limit")
            }
            DamageKind::Parity => write!(f, "record header parity mismatch"),
            DamageKind::Crc => write!(f, "record CRC32 mismatch"),
            DamageKind::NothingReads => write!(
                f,
                "no header is recognized and no record reads from the first byte (not a bucket \
                 file, or its header is damaged): left untouched, see logfiles_check"
            ),
        }
    }
}

/// Damaged bytes `offset .. offset + len_bytes` of a bucket file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub len_bytes: u64,
    pub kind: DamageKind,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {} ({} bytes skipped)",
            self.kind, self.offset, self.len_bytes
        )
    }
}

/// One record, borrowed from the file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub key: u64,
    pub value: &'a [u8],
    /// Offset of the record header in the file.
    pub offset: u64,
}

/// What the first bytes of a file say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// A zero-length file: no format yet.
    Empty,
    /// Records of `format` start at byte `records_start`.
    Format {
        format: BucketFormat,
        records_start: usize,
    },
    /// The header is unusable; nothing can be read.
    Bad(DamageKind),
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Our 16-byte file header.
pub fn file_header() -> [u8; FILE_HEADER_BYTES] {
    let mut header = [0u8; FILE_HEADER_BYTES];
    header[..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&header[..12]);
    header[12..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The reference v1 file header (version 1, `DLSBUCKT`).
pub fn v1_file_header() -> [u8; FILE_HEADER_BYTES] {
    let mut header = [0u8; FILE_HEADER_BYTES];
    header[..8].copy_from_slice(&1u64.to_le_bytes());
    header[8..].copy_from_slice(&REF_MAGIC);
    header
}

/// Detects the format of a bucket file from its first bytes (the whole file may be passed).
pub fn detect(data: &[u8]) -> Detected {
    if data.is_empty() {
        return Detected::Empty;
    }
    let prefix = &data[..data.len().min(MAGIC.len())];
    if prefix == &MAGIC[..prefix.len()] {
        if data.len() < FILE_HEADER_BYTES {
            return Detected::Bad(DamageKind::TornFileHeader);
        }
        let version = u32_at(data, 8).unwrap_or(0);
        let crc = u32_at(data, 12).unwrap_or(0);
        if crc32fast::hash(&data[..12]) != crc {
            return Detected::Bad(DamageKind::FileHeaderCrc);
        }
        if version != FORMAT_VERSION {
            return Detected::Bad(DamageKind::UnsupportedVersion(u64::from(version)));
        }
        return Detected::Format {
            format: BucketFormat::Crc,
            records_start: FILE_HEADER_BYTES,
        };
    }
    if data.get(8..16) == Some(&REF_MAGIC[..]) {
        return match u64_at(data, 0).unwrap_or(u64::MAX) {
            0 => Detected::Format {
                format: BucketFormat::Legacy,
                records_start: FILE_HEADER_BYTES,
            },
            1 => Detected::Format {
                format: BucketFormat::V1,
                records_start: FILE_HEADER_BYTES,
            },
            v => Detected::Bad(DamageKind::UnsupportedVersion(v)),
        };
    }
    Detected::Format {
        format: BucketFormat::Legacy,
        records_start: 0,
    }
}

/// CRC32 of our record: the 12 header bytes (key, length) followed by the value.
pub fn record_crc(key: u64, value: &[u8]) -> u32 {
    let mut header = [0u8; 12];
    header[..8].copy_from_slice(&key.to_le_bytes());
    header[8..].copy_from_slice(&(value.len() as u32).to_le_bytes());
    crc_of_record(&header, value)
}

/// CRC32 of `header` (key, length) followed by `value`.
fn crc_of_record(header: &[u8], value: &[u8]) -> u32 {
    // A clone of one hasher: `Hasher::new` detects the CPU's features each time, which costs
    // a few percent of a scan of short records.
    static PROTOTYPE: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
    let mut hasher = PROTOTYPE.get_or_init(crc32fast::Hasher::new).clone();
    hasher.update(header);
    hasher.update(value);
    hasher.finalize()
}

/// The reference v1 parity byte: XOR of the 16 key and length bytes.
pub fn v1_parity(key: u64, len: u64) -> u8 {
    let mut p = key ^ len;
    p ^= p >> 32;
    p ^= p >> 16;
    p ^= p >> 8;
    p as u8
}

/// Appends one record in `format` to `out`. The caller checks `value.len() <= MAX_VALUE_BYTES`.
pub fn encode_record(format: BucketFormat, key: u64, value: &[u8], out: &mut Vec<u8>) {
    assert!(value.len() <= MAX_VALUE_BYTES, "value over MAX_VALUE_BYTES");
    out.reserve(format.record_header_bytes() + value.len());
    out.extend_from_slice(&key.to_le_bytes());
    match format {
        BucketFormat::Legacy => out.extend_from_slice(&(value.len() as u64).to_le_bytes()),
        BucketFormat::V1 => {
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.push(v1_parity(key, value.len() as u64));
        }
        BucketFormat::Crc => {
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(&record_crc(key, value).to_le_bytes());
        }
    }
    out.extend_from_slice(value);
}

/// Why a record could not be read at some offset.
enum Bad {
    /// The rest of the file is unreadable.
    Rest(DamageKind),
    /// Only this record (of `len_bytes`) is bad; reading goes on after it.
    Skip(DamageKind, usize),
}

/// Reads the records of one bucket file in file order; see the module doc for the rules.
/// Yields `Ok(record)` or `Err(damage)`; ends after the last record or the first damage that
/// makes the rest unreadable.
#[derive(Debug, Clone)]
pub struct BucketDecoder<'a> {
    data: &'a [u8],
    format: Option<BucketFormat>,
    pos: usize,
    good_end: usize,
    header_damage: Option<DamageKind>,
    done: bool,
}

impl<'a> BucketDecoder<'a> {
    /// A decoder over the whole content of a bucket file.
    pub fn new(data: &'a [u8]) -> Self {
        let (format, pos, header_damage) = match detect(data) {
            Detected::Empty => (None, 0, None),
            Detected::Format {
                format,
                records_start,
            } => (Some(format), records_start, None),
            Detected::Bad(kind) => (None, 0, Some(kind)),
        };
        BucketDecoder {
            data,
            format,
            pos,
            good_end: pos,
            header_damage,
            done: false,
        }
    }

    /// A decoder over the same `data` continuing at `pos`, a record boundary that
    /// [`position`](Self::position) of an earlier decoder over it returned (lets a reader work
    /// through a large file in slices). Records before `pos` are not revisited.
    pub fn resume(data: &'a [u8], pos: usize) -> Self {
        let mut decoder = BucketDecoder::new(data);
        if decoder.format.is_some() && decoder.header_damage.is_none() {
            decoder.pos = pos.clamp(decoder.pos, data.len());
            decoder.good_end = decoder.pos;
        }
        decoder
    }

    /// Where the next record starts.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether the decoder has ended (after the last record, or after damage that makes the
    /// rest unreadable: [`position`](Self::position) then stays at the damage, so resuming
    /// there would report it again).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The detected format; `None` for an empty file or an unusable header.
    pub fn format(&self) -> Option<BucketFormat> {
        self.format
    }

    /// The end of the last good record (or of the file header when there is none). Everything
    /// after it is damaged once the decoder has ended with a damage item; cutting the file here
    /// removes a torn tail and keeps every good record.
    pub fn good_end(&self) -> u64 {
        self.good_end as u64
    }

    /// The header damage, when the file header is unusable.
    pub fn header_damage(&self) -> Option<DamageKind> {
        self.header_damage
    }

    fn rest(&mut self, kind: DamageKind) -> Option<Result<Record<'a>, Damage>> {
        self.done = true;
        Some(Err(Damage {
            offset: self.pos as u64,
            len_bytes: (self.data.len() - self.pos) as u64,
            kind,
        }))
    }

    /// Decodes the record at `pos` without moving: `(key, value range, record length)`.
    fn decode_at(
        &self,
        format: BucketFormat,
        pos: usize,
    ) -> Result<(u64, usize, usize, usize), Bad> {
        let data = self.data;
        let left = data.len() - pos;
        let header = format.record_header_bytes();
        if left < header {
            return Err(Bad::Rest(DamageKind::TornRecordHeader));
        }
        let key = u64_at(data, pos).unwrap_or(0);
        let (declared, value_start) = match format {
            BucketFormat::Legacy => (u64_at(data, pos + 8).unwrap_or(u64::MAX), pos + header),
            BucketFormat::V1 => {
                let parity = data[pos..pos + header].iter().fold(0u8, |acc, b| acc ^ b);
                if parity != 0 {
                    return Err(Bad::Rest(DamageKind::Parity));
                }
                (u64_at(data, pos + 8).unwrap_or(u64::MAX), pos + header)
            }
            BucketFormat::Crc => {
                let declared = u64::from(u32_at(data, pos + 8).unwrap_or(u32::MAX));
                if declared > MAX_VALUE_BYTES as u64 {
                    return Err(Bad::Rest(DamageKind::ValueTooLong {
                        declared_bytes: declared,
                    }));
                }
                (declared, pos + header)
            }
        };
        if declared > (left - header) as u64 {
            return Err(Bad::Rest(DamageKind::TornValue {
                declared_bytes: declared,
            }));
        }
        let value_len = declared as usize;
        let record_len = header + value_len;
        if format == BucketFormat::Crc {
            let stored = u32_at(data, pos + 12).unwrap_or(0);
            let value = &data[value_start..value_start + value_len];
            if crc_of_record(&data[pos..pos + 12], value) != stored {
                return Err(Bad::Skip(DamageKind::Crc, record_len));
            }
        }
        Ok((key, value_start, value_len, record_len))
    }
}

impl<'a> Iterator for BucketDecoder<'a> {
    type Item = Result<Record<'a>, Damage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(kind) = self.header_damage {
            return self.rest(kind);
        }
        let Some(format) = self.format else {
            self.done = true;
            return None;
        };
        if self.pos == self.data.len() {
            self.done = true;
            return None;
        }
        match self.decode_at(format, self.pos) {
            Ok((key, value_start, value_len, record_len)) => {
                let record = Record {
                    key,
                    value: &self.data[value_start..value_start + value_len],
                    offset: self.pos as u64,
                };
                self.pos += record_len;
                self.good_end = self.pos;
                Some(Ok(record))
            }
            Err(Bad::Rest(kind)) => self.rest(kind),
            Err(Bad::Skip(kind, record_len)) => {
                let next = self.pos + record_len;
                let next_ok = next == self.data.len() || self.decode_at(format, next).is_ok();
                if !next_ok {
                    return self.rest(kind);
                }
                let damage = Damage {
                    offset: self.pos as u64,
                    len_bytes: record_len as u64,
                    kind,
                };
                self.pos = next;
                Some(Err(damage))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_parity_matches_reference_sample() {
        // parity-fine/0000000057/275, first record: key 0x5727545c, length 11, parity 0x73.
        assert_eq!(v1_parity(0x5727_545c, 11), 0x73);
    }

    #[test]
    fn header_detection() {
        assert_eq!(detect(&[]), Detected::Empty);
        assert_eq!(
            detect(&file_header()),
            Detected::Format {
                format: BucketFormat::Crc,
                records_start: 16
            }
        );
        assert_eq!(
            detect(&v1_file_header()),
            Detected::Format {
                format: BucketFormat::V1,
                records_start: 16
            }
        );
        assert_eq!(detect(b"SWLOG"), Detected::Bad(DamageKind::TornFileHeader));
        let mut bad = file_header();
        bad[9] ^= 1;
        assert_eq!(detect(&bad), Detected::Bad(DamageKind::FileHeaderCrc));
        let mut v2 = v1_file_header();
        v2[0] = 2;
        assert_eq!(
            detect(&v2),
            Detected::Bad(DamageKind::UnsupportedVersion(2))
        );
    }
}

//! The change log's bytes (`docs/formats.md`, "dht change log"): the segment header, the entry
//! header, and each kind of entry's body. Pure functions on slices: [`super::writer`] encodes
//! with them, [`super::segment`] and [`super::tail`] decode with them.
//!
//! All integers are little-endian.
//!
//! **Segment header** ([`SEGMENT_HEADER_LEN`] = 36 bytes):
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 8]` | magic `"SWDHTLOG"` |
//! | 8 | `u32` | format version = `1` |
//! | 12 | `u32` | flags: `0`, or [`SEGMENT_FLAG_SEQUENCE_JUMP`]; a reader refuses any other bit |
//! | 16 | `u64` | segment number (the file name's) |
//! | 24 | `u64` | `first_seq`: the sequence number of the segment's first entry (1 to 2^64 − 2) |
//! | 32 | `u32` | CRC32 (IEEE) of bytes `0 .. 32` |
//!
//! **Entry** ([`ENTRY_HEADER_LEN`] = 20 bytes of header, then `body_len` bytes of body):
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `u32` | CRC32 (IEEE) of bytes `4 .. 20 + body_len`: the rest of the header and the body |
//! | 4 | `u32` | `body_len`, at most [`MAX_ENTRY_BODY_BYTES`] |
//! | 8 | `u64` | `seq`: the entry's position; consecutive within the log |
//! | 16 | `u8` | kind ([`EntryKind`]) |
//! | 17 | `u8` | flags: `0`; bit `0x01` ([`ENTRY_FLAG_VERSIONS`]) is reserved for record versions (issue #19), and this reader refuses every bit |
//! | 18 | `u16` | reserved, `0` |
//!
//! **Bodies** (`str8` = `u8` length and that many bytes; the channel is a valid channel name):
//!
//! | kind | body |
//! |---|---|
//! | 1 Put | `str8 channel`, `u64 key`, `u32 value_len`, value |
//! | 2 Remove | `str8 channel`, `u64 key` |
//! | 3 PutBatch | `str8 channel`, then one protocol batch (`docs/protocol.md` §4) to the end of the body |
//! | 4 RemoveKeys | `str8 channel`, `u32 count`, `count` × `u64 key` |
//! | 5 RemoveChannel | `str8 channel` |
//! | 6 PutVersion | `str8 channel`, `u64 key`, `u64 version`, `u32 value_len`, value |
//! | 7 RemoveVersion | `str8 channel`, `u64 key`, `u64 version`, `u64 stored_unix_s` (the tombstone) |
//!
//! Every body must be consumed exactly.

use crate::dump::format::check_chunk;
use node_core::protocol::batch::{
    decode_batch, encode_batch, BatchRecords, BATCH_HEADER_LEN, MAX_BATCH_UNCOMPRESSED_BYTES,
};
use node_core::protocol::dht::valid_channel_name;
use node_core::protocol::wire::{put_bytes, put_str8, put_u32, put_u64, Reader, WireError};
use std::fmt;
use thiserror::Error;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SWDHTLOG";
/// The format version this module writes and reads.
pub const SEGMENT_VERSION: u32 = 1;
/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 36;
/// Segment flag: the segment's `first_seq` may lie beyond the end of the segment before it, on
/// purpose. The writer sets it when it starts after a position the log does not reach (dumps
/// that cover entries the log lost, or gave up); the reader then accepts the jump instead of
/// refusing a gap.
pub const SEGMENT_FLAG_SEQUENCE_JUMP: u32 = 0x1;
/// Bytes of an entry header.
pub const ENTRY_HEADER_LEN: usize = 20;
/// The largest body an entry may have: a 16 MiB value, or a 16 MiB batch that LZ4 could not
/// shrink, with their framing. Checked before any buffer grows.
pub const MAX_ENTRY_BODY_BYTES: u32 = 17 * 1024 * 1024;
/// Entry flag reserved for record versions (issue #19): when set, each record of the entry
/// will carry a `u64` version. This version of the format writes no flag and refuses every
/// flag, so an older reader refuses a newer log clearly instead of misreading it.
pub const ENTRY_FLAG_VERSIONS: u8 = 0x01;

/// What an entry records: one change the node acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    /// Put, and an Update that wrote a value.
    Put = 1,
    /// Remove, and an Update that removed the value.
    Remove = 2,
    /// PutBatch, and the records a redistribution stored here.
    PutBatch = 3,
    /// The records a redistribution handed to another node, removed here.
    RemoveKeys = 4,
    RemoveChannel = 5,
    /// A PutVersion that stored its record.
    PutVersion = 6,
    /// A RemoveVersion that applied: the record (if any) removed, the tombstone set.
    RemoveVersion = 7,
}

impl EntryKind {
    /// Every kind, in code order.
    pub const ALL: [EntryKind; 7] = [
        EntryKind::Put,
        EntryKind::Remove,
        EntryKind::PutBatch,
        EntryKind::RemoveKeys,
        EntryKind::RemoveChannel,
        EntryKind::PutVersion,
        EntryKind::RemoveVersion,
    ];

    pub fn from_code(code: u8) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|kind| *kind as u8 == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Put => "Put",
            EntryKind::Remove => "Remove",
            EntryKind::PutBatch => "PutBatch",
            EntryKind::RemoveKeys => "RemoveKeys",
            EntryKind::RemoveChannel => "RemoveChannel",
            EntryKind::PutVersion => "PutVersion",
            EntryKind::RemoveVersion => "RemoveVersion",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ----- segment header ----------------------------------------------------------------------------

/// A segment's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub number: u64,
    pub first_seq: u64,
    pub flags: u32,
}

/// What is wrong with a segment header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderProblem {
    #[error("the file ends inside the segment header ({0} of {SEGMENT_HEADER_LEN} bytes)")]
    Truncated(usize),
    #[error("not a change-log segment: magic {0:02x?}, expected \"SWDHTLOG\"")]
    BadMagic([u8; 8]),
    #[error("unsupported change-log version {0} (this node reads version {SEGMENT_VERSION})")]
    UnsupportedVersion(u32),
    #[error("segment header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("unsupported segment flags {0:#x}")]
    UnsupportedFlags(u32),
    #[error("the header says segment {header}, the file name says {name}")]
    NumberMismatch { header: u64, name: u64 },
    #[error("the segment's first sequence number is 0 (they start at 1)")]
    FirstSeqZero,
    #[error(
        "the segment's first sequence number is 2^64 - 1, past the last one an entry can carry \
         (2^64 - 2): no entry fits in it and the log cannot continue after it"
    )]
    FirstSeqPastLast,
}

impl HeaderProblem {
    /// Whether the header's bytes are as written (its CRC matched, or it is of another
    /// version): then it is no torn write, whatever follows it.
    pub fn header_is_intact(&self) -> bool {
        !matches!(
            self,
            HeaderProblem::Truncated(_)
                | HeaderProblem::BadMagic(_)
                | HeaderProblem::Checksum { .. }
        )
    }
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut bytes = [0u8; SEGMENT_HEADER_LEN];
        bytes[..8].copy_from_slice(&SEGMENT_MAGIC);
        bytes[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.flags.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.number.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.first_seq.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..32]);
        bytes[32..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decodes and checks a header; `bytes` may be short (a torn file).
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderProblem> {
        let Some(bytes) = bytes.first_chunk::<SEGMENT_HEADER_LEN>() else {
            return Err(HeaderProblem::Truncated(bytes.len()));
        };
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&bytes[..8]);
        if magic != SEGMENT_MAGIC {
            return Err(HeaderProblem::BadMagic(magic));
        }
        let version = le_u32(&bytes[8..12]);
        if version != SEGMENT_VERSION {
            return Err(HeaderProblem::UnsupportedVersion(version));
        }
        let stored = le_u32(&bytes[32..36]);
        let computed = crc32fast::hash(&bytes[..32]);
        if stored != computed {
            return Err(HeaderProblem::Checksum { stored, computed });
        }
        let header = SegmentHeader {
            flags: le_u32(&bytes[12..16]),
            number: le_u64(&bytes[16..24]),
            first_seq: le_u64(&bytes[24..32]),
        };
        if header.flags & !SEGMENT_FLAG_SEQUENCE_JUMP != 0 {
            return Err(HeaderProblem::UnsupportedFlags(header.flags));
        }
        if header.first_seq == 0 {
            return Err(HeaderProblem::FirstSeqZero);
        }
        // The writer never numbers an entry u64::MAX (the next one would overflow), so a header
        // starting there is forged or damaged: refused here, where the node's replay and
        // `dumptool log-check` both decide it, rather than by the writer after a "clean" read.
        if header.first_seq == u64::MAX {
            return Err(HeaderProblem::FirstSeqPastLast);
        }
        Ok(header)
    }

    pub fn is_jump(&self) -> bool {
        self.flags & SEGMENT_FLAG_SEQUENCE_JUMP != 0
    }
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

// ----- entry header ------------------------------------------------------------------------------

/// The fields of an entry header, as stored (not yet checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    pub crc: u32,
    pub body_len: u32,
    pub seq: u64,
    pub kind: u8,
    pub flags: u8,
    pub reserved: u16,
}

impl EntryHeader {
    pub fn parse(bytes: &[u8; ENTRY_HEADER_LEN]) -> EntryHeader {
        EntryHeader {
            crc: le_u32(&bytes[0..4]),
            body_len: le_u32(&bytes[4..8]),
            seq: le_u64(&bytes[8..16]),
            kind: bytes[16],
            flags: bytes[17],
            reserved: u16::from_le_bytes([bytes[18], bytes[19]]),
        }
    }

    /// Whether this could be the header of an entry this or a later format version wrote: a
    /// known kind, the reserved field 0, a body within the limit. (Flags are left to
    /// [`EntryHeader::check`], so that an entry of a newer writer still counts as intact.)
    pub fn is_plausible(&self) -> bool {
        EntryKind::from_code(self.kind).is_some()
            && self.reserved == 0
            && self.body_len <= MAX_ENTRY_BODY_BYTES
    }

    /// The checks of a header before its body is read: the body length within the limit.
    pub fn check_len(&self) -> Result<(), EntryProblem> {
        if self.body_len > MAX_ENTRY_BODY_BYTES {
            return Err(EntryProblem::TooLarge(self.body_len));
        }
        Ok(())
    }

    /// The checks of a header whose CRC matched: kind, flags, reserved field.
    pub fn check(&self) -> Result<EntryKind, EntryProblem> {
        if self.flags != 0 {
            return Err(EntryProblem::UnsupportedFlags(self.flags));
        }
        if self.reserved != 0 {
            return Err(EntryProblem::Reserved(self.reserved));
        }
        EntryKind::from_code(self.kind).ok_or(EntryProblem::UnknownKind(self.kind))
    }
}

/// The CRC an entry's header should carry: over header bytes 4..20 and the body.
pub fn entry_crc(header: &[u8; ENTRY_HEADER_LEN], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[4..]);
    hasher.update(body);
    hasher.finalize()
}

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EntryProblem {
    #[error("the file ends inside an entry header ({0} of {ENTRY_HEADER_LEN} bytes)")]
    TruncatedHeader(usize),
    #[error("entry declares a body of {0} bytes; the limit is {MAX_ENTRY_BODY_BYTES}")]
    TooLarge(u32),
    #[error("the file ends inside an entry body ({have} of {need} bytes)")]
    TruncatedBody { have: u64, need: u32 },
    #[error("entry checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("entry flags {0:#04x} are not supported by this version (0x01: record versions)")]
    UnsupportedFlags(u8),
    #[error("entry's reserved field is {0:#06x}, not 0")]
    Reserved(u16),
    #[error("unknown entry kind {0}")]
    UnknownKind(u8),
    #[error("entry has sequence number {found} where {expected} was expected")]
    Sequence { expected: u64, found: u64 },
    #[error("malformed {kind} entry: {problem}")]
    Body { kind: EntryKind, problem: String },
}

impl EntryProblem {
    /// Whether the entry's bytes are as written (its CRC matched) and the problem is what they
    /// say: then it is no torn write, whatever follows it.
    pub fn entry_is_intact(&self) -> bool {
        matches!(
            self,
            EntryProblem::UnsupportedFlags(_)
                | EntryProblem::Reserved(_)
                | EntryProblem::UnknownKind(_)
                | EntryProblem::Sequence { .. }
                | EntryProblem::Body { .. }
        )
    }
}

// ----- bodies: writing ---------------------------------------------------------------------------

/// A change to log, as the node has it at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// A Put, or an Update that wrote `value`.
    Put {
        channel: &'a str,
        key: u64,
        value: &'a [u8],
    },
    /// A Remove, or an Update that removed the value.
    Remove {
        channel: &'a str,
        key: u64,
    },
    /// A PutBatch, as the request carried it: one protocol batch that `decode_batch` accepted
    /// (logged as it is, without decompressing it again).
    PutBatch {
        channel: &'a str,
        batch: &'a [u8],
    },
    /// Records stored by other means (a redistribution's batch, of which only the absent keys
    /// were stored): `count` records laid out by
    /// [`append_record`](node_core::protocol::batch::append_record), at most 16 MiB. Logged as
    /// a PutBatch entry (compressed here).
    PutRecords {
        channel: &'a str,
        raw: &'a [u8],
        count: u32,
    },
    /// Keys a redistribution handed to another node and removed here.
    RemoveKeys {
        channel: &'a str,
        keys: &'a [u64],
    },
    RemoveChannel {
        channel: &'a str,
    },
    /// A PutVersion that stored its record.
    PutVersion {
        channel: &'a str,
        key: u64,
        version: u64,
        value: &'a [u8],
    },
    /// A RemoveVersion that applied, with the time its tombstone was stored.
    RemoveVersion {
        channel: &'a str,
        key: u64,
        version: u64,
        stored_unix_s: u64,
    },
}

impl Change<'_> {
    pub fn kind(&self) -> EntryKind {
        match self {
            Change::Put { .. } => EntryKind::Put,
            Change::Remove { .. } => EntryKind::Remove,
            Change::PutBatch { .. } | Change::PutRecords { .. } => EntryKind::PutBatch,
            Change::RemoveKeys { .. } => EntryKind::RemoveKeys,
            Change::RemoveChannel { .. } => EntryKind::RemoveChannel,
            Change::PutVersion { .. } => EntryKind::PutVersion,
            Change::RemoveVersion { .. } => EntryKind::RemoveVersion,
        }
    }

    pub fn channel(&self) -> &str {
        match self {
            Change::Put { channel, .. }
            | Change::PutVersion { channel, .. }
            | Change::RemoveVersion { channel, .. }
            | Change::Remove { channel, .. }
            | Change::PutBatch { channel, .. }
            | Change::PutRecords { channel, .. }
            | Change::RemoveKeys { channel, .. }
            | Change::RemoveChannel { channel } => channel,
        }
    }
}

/// Why a change cannot be logged (the caller's input, never the disk).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("channel name {0:?} is not valid (1 to 100 of A-Z a-z 0-9 _ -)")]
    BadChannelName(String),
    #[error(
        "{kind} entry of {len} bytes exceeds the change log's limit of {MAX_ENTRY_BODY_BYTES}"
    )]
    TooLarge { kind: EntryKind, len: usize },
    #[error("malformed records for a PutBatch entry: {0}")]
    BadRecords(String),
    #[error("PutBatch entry: not a protocol batch ({0})")]
    BadBatch(String),
}

/// Appends one complete entry (header and body) for `change` with sequence number `seq` to
/// `out`. On error `out` is as it was.
pub fn encode_entry(seq: u64, change: &Change<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let channel = change.channel();
    if !valid_channel_name(channel) {
        return Err(EncodeError::BadChannelName(channel.to_string()));
    }
    let start = out.len();
    out.extend_from_slice(&[0; ENTRY_HEADER_LEN]);
    if let Err(err) = encode_body(change, out) {
        out.truncate(start);
        return Err(err);
    }
    let body_len = out.len() - start - ENTRY_HEADER_LEN;
    if body_len > MAX_ENTRY_BODY_BYTES as usize {
        out.truncate(start);
        return Err(EncodeError::TooLarge {
            kind: change.kind(),
            len: body_len,
        });
    }
    let (header, body) = out[start..].split_at_mut(ENTRY_HEADER_LEN);
    header[4..8].copy_from_slice(&(body_len as u32).to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header[16] = change.kind() as u8;
    let mut fixed = [0u8; ENTRY_HEADER_LEN];
    fixed.copy_from_slice(header);
    let crc = entry_crc(&fixed, body);
    header[..4].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn encode_body(change: &Change<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let kind = change.kind();
    let too_large = |len| EncodeError::TooLarge { kind, len };
    put_str8(out, change.channel());
    match *change {
        Change::Put { key, value, .. } => {
            if value.len() > MAX_ENTRY_BODY_BYTES as usize {
                return Err(too_large(value.len()));
            }
            put_u64(out, key);
            put_bytes(out, value);
        }
        Change::Remove { key, .. } => put_u64(out, key),
        Change::PutBatch { batch, .. } => {
            check_batch_header(batch)?;
            debug_assert!(
                decode_batch(batch, &mut Vec::new()).is_ok(),
                "PutBatch entries take batches that decode"
            );
            if batch.len() > MAX_ENTRY_BODY_BYTES as usize {
                return Err(too_large(batch.len()));
            }
            out.extend_from_slice(batch);
        }
        Change::PutRecords { raw, count, .. } => {
            if raw.len() > MAX_BATCH_UNCOMPRESSED_BYTES {
                return Err(too_large(raw.len()));
            }
            check_chunk(raw, count).map_err(|err| EncodeError::BadRecords(err.to_string()))?;
            encode_batch(raw, count, out);
        }
        Change::RemoveKeys { keys, .. } => {
            let len = keys.len().saturating_mul(8);
            if len > MAX_ENTRY_BODY_BYTES as usize {
                return Err(too_large(len));
            }
            put_u32(out, keys.len() as u32);
            for key in keys {
                put_u64(out, *key);
            }
        }
        Change::RemoveChannel { .. } => {}
        Change::PutVersion {
            key,
            version,
            value,
            ..
        } => {
            if value.len() > MAX_ENTRY_BODY_BYTES as usize {
                return Err(too_large(value.len()));
            }
            put_u64(out, key);
            put_u64(out, version);
            put_bytes(out, value);
        }
        Change::RemoveVersion {
            key,
            version,
            stored_unix_s,
            ..
        } => {
            put_u64(out, key);
            put_u64(out, version);
            put_u64(out, stored_unix_s);
        }
    }
    Ok(())
}

/// The cheap checks of a batch handed in already encoded (its full decoding is the caller's
/// promise, asserted in debug builds).
fn check_batch_header(batch: &[u8]) -> Result<(), EncodeError> {
    let Some(header) = batch.first_chunk::<BATCH_HEADER_LEN>() else {
        return Err(EncodeError::BadBatch(format!(
            "{} bytes, shorter than a batch header",
            batch.len()
        )));
    };
    let declared = le_u32(&header[..4]) as usize;
    if declared > MAX_BATCH_UNCOMPRESSED_BYTES {
        return Err(EncodeError::BadBatch(format!(
            "declares {declared} uncompressed bytes"
        )));
    }
    Ok(())
}

// ----- bodies: reading ---------------------------------------------------------------------------

/// A logged change, decoded and checked; borrows the reader's buffers.
#[derive(Debug, Clone)]
pub enum LoggedChange<'a> {
    Put {
        channel: &'a str,
        key: u64,
        value: &'a [u8],
    },
    Remove {
        channel: &'a str,
        key: u64,
    },
    /// The batch's records, decompressed and checked.
    PutBatch {
        channel: &'a str,
        records: BatchRecords<'a>,
    },
    RemoveKeys {
        channel: &'a str,
        keys: Keys<'a>,
    },
    RemoveChannel {
        channel: &'a str,
    },
    PutVersion {
        channel: &'a str,
        key: u64,
        version: u64,
        value: &'a [u8],
    },
    RemoveVersion {
        channel: &'a str,
        key: u64,
        version: u64,
        stored_unix_s: u64,
    },
}

impl LoggedChange<'_> {
    pub fn kind(&self) -> EntryKind {
        match self {
            LoggedChange::Put { .. } => EntryKind::Put,
            LoggedChange::Remove { .. } => EntryKind::Remove,
            LoggedChange::PutBatch { .. } => EntryKind::PutBatch,
            LoggedChange::RemoveKeys { .. } => EntryKind::RemoveKeys,
            LoggedChange::RemoveChannel { .. } => EntryKind::RemoveChannel,
            LoggedChange::PutVersion { .. } => EntryKind::PutVersion,
            LoggedChange::RemoveVersion { .. } => EntryKind::RemoveVersion,
        }
    }

    pub fn channel(&self) -> &str {
        match self {
            LoggedChange::Put { channel, .. }
            | LoggedChange::PutVersion { channel, .. }
            | LoggedChange::RemoveVersion { channel, .. }
            | LoggedChange::Remove { channel, .. }
            | LoggedChange::PutBatch { channel, .. }
            | LoggedChange::RemoveKeys { channel, .. }
            | LoggedChange::RemoveChannel { channel } => channel,
        }
    }

    /// Records (Put, PutBatch) or keys (Remove, RemoveKeys) the change touches; 1 for a
    /// RemoveChannel.
    pub fn record_count(&self) -> u64 {
        match self {
            LoggedChange::Put { .. }
            | LoggedChange::Remove { .. }
            | LoggedChange::RemoveChannel { .. }
            | LoggedChange::PutVersion { .. }
            | LoggedChange::RemoveVersion { .. } => 1,
            LoggedChange::PutBatch { records, .. } => u64::from(records.len()),
            LoggedChange::RemoveKeys { keys, .. } => keys.len() as u64,
        }
    }
}

/// The keys of a RemoveKeys entry, in order.
#[derive(Debug, Clone)]
pub struct Keys<'a> {
    rest: &'a [u8],
}

impl Keys<'_> {
    pub fn len(&self) -> usize {
        self.rest.len() / 8
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

impl Iterator for Keys<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let (word, rest) = self.rest.split_first_chunk::<8>()?;
        self.rest = rest;
        Some(u64::from_le_bytes(*word))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

/// Decodes and checks the body of an intact entry of `kind`; a PutBatch is decompressed into
/// `scratch` (at most 16 MiB).
pub fn decode_body<'a>(
    kind: EntryKind,
    body: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<LoggedChange<'a>, EntryProblem> {
    let malformed = |problem: String| EntryProblem::Body { kind, problem };
    let wire = |err: WireError| malformed(err.to_string());
    let mut reader = Reader::new(body);
    let channel = reader.str8("channel").map_err(wire)?;
    if !valid_channel_name(channel) {
        return Err(malformed(format!(
            "{channel:?} is not a valid channel name"
        )));
    }
    let change = match kind {
        EntryKind::Put | EntryKind::PutVersion => {
            let key = reader.u64("key").map_err(wire)?;
            let version = match kind {
                EntryKind::PutVersion => Some(reader.u64("version").map_err(wire)?),
                _ => None,
            };
            let value = reader
                .bytes("value", MAX_ENTRY_BODY_BYTES as usize)
                .map_err(wire)?;
            match version {
                None => LoggedChange::Put {
                    channel,
                    key,
                    value,
                },
                Some(version) => LoggedChange::PutVersion {
                    channel,
                    key,
                    version,
                    value,
                },
            }
        }
        EntryKind::Remove => LoggedChange::Remove {
            channel,
            key: reader.u64("key").map_err(wire)?,
        },
        EntryKind::PutBatch => {
            let records = decode_batch(reader.rest(), scratch)
                .map_err(|err| malformed(format!("its batch: {err}")))?;
            LoggedChange::PutBatch { channel, records }
        }
        EntryKind::RemoveKeys => {
            let count = reader.u32("count").map_err(wire)? as usize;
            let rest = reader.rest();
            if rest.len() != count.saturating_mul(8) {
                return Err(malformed(format!(
                    "{count} keys declared, {} bytes of keys follow",
                    rest.len()
                )));
            }
            LoggedChange::RemoveKeys {
                channel,
                keys: Keys { rest },
            }
        }
        EntryKind::RemoveChannel => LoggedChange::RemoveChannel { channel },
        EntryKind::RemoveVersion => LoggedChange::RemoveVersion {
            channel,
            key: reader.u64("key").map_err(wire)?,
            version: reader.u64("version").map_err(wire)?,
            stored_unix_s: reader.u64("stored_unix_s").map_err(wire)?,
        },
    };
    reader.finish().map_err(wire)?;
    Ok(change)
}

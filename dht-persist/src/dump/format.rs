//! The dht dump file format, versions 1 and 2: one file per channel, LZ4-compressed blocks, every
//! part checksummed (also documented in `docs/formats.md`, section "dht dump file"). Version 2
//! differs only in what a record's value holds: a kind, a version, then the value or a
//! tombstone's time ([`super::entry::DumpEntry`]).
//!
//! All integers are little-endian; `str8` is a `u8` length followed by that many bytes of UTF-8.
//!
//! **Header**
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 8]` | magic `"SWDHTDMP"` |
//! | 8 | `u32` | format version: `1` (plain values) or `2` (entries with versions, tombstones) |
//! | 12 | `u32` | flags: any of [`FLAG_LOG_POSITION`] (`0x1`) and [`FLAG_UNCOMPRESSED`] (`0x2`); a reader refuses any other bit |
//! | 16 | `u64` | creation time, seconds since the Unix epoch |
//! | 24 | `str8` | channel name (`n` = its length, at most 255) |
//! | 25 + n | `u64` | only with flag `0x1`: the change-log position the dump covers (`p` = 8; else `p` = 0) |
//! | 25 + n + p | `u32` | CRC32 (IEEE) of header bytes `0 .. 25 + n + p` |
//!
//! A header without the position (every dump written before the change log, and dumps written
//! without one) covers no log entry: its position reads as 0 ([`DumpHeader::log_position`]).
//!
//! Flag `0x2` clear (every dump written before the flag existed, and `dump_compression = "lz4"`):
//! every block's batch body is an LZ4 raw block. Set (`dump_compression = "none"`): every
//! block's batch body is the uncompressed records themselves (`block_len` = 12 + the batch's
//! uncompressed length). A file never mixes the two ([`DumpCompression`]).
//!
//! **Blocks**, zero or more, each:
//!
//! | type | field |
//! |---|---|
//! | `u32` | `block_len`: 1 ..= 17 MiB ([`MAX_BLOCK_LEN`]) |
//! | `[u8; block_len]` | one protocol batch (`docs/protocol.md` §4): `u32` uncompressed length (at most 16 MiB), `u32` record count, `u32` CRC32 of the uncompressed bytes, then an LZ4 raw block (flag `0x2` clear) or the uncompressed bytes themselves (flag `0x2` set); the uncompressed bytes are records `u64 key, u32 value_len, value` |
//!
//! **End**
//!
//! | type | field |
//! |---|---|
//! | `u32` | `0` (end of blocks) |
//! | `u64` | total record count |
//! | `u64` | total value bytes (sum of all value lengths) |
//! | `u32` | CRC32 of the 16 bytes of the two counts above |
//! | `[u8; 8]` | end magic `"SWDMPEND"` |
//!
//! Nothing may follow the end magic. A reader accepts a file only when the magic, version, flags
//! and header CRC are right, every block decodes and passes its batch checks (declared length,
//! CRC32, record count, records tiling the block), the trailer CRC and end magic are right, the
//! trailer's counts equal what the blocks held, and the file ends right there. So a torn write
//! (any truncation) and any damaged byte in a header, length field, batch header or trailer is
//! detected; a damaged byte inside an LZ4 block is detected unless it decompresses to exactly the
//! same records (an LZ4 match offset redirected to identical earlier bytes), in which case no
//! record changed.
//!
//! Reading is streaming and allocation-bounded: a block length is checked against the limit
//! before any buffer grows, buffers are reused from block to block, and records are handed out as
//! borrowed slices.

use super::entry::{DumpEntry, VERSIONED_FORMAT_VERSION};
use node_core::protocol::batch::{
    decode_batch, decode_uncompressed_batch, encode_batch, encode_batch_header, BatchError,
    BatchRecords, BATCH_HEADER_LEN, MAX_BATCH_UNCOMPRESSED_BYTES, RECORD_OVERHEAD,
};
use std::io::{self, BufReader, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// First bytes of every dump file.
pub const MAGIC: [u8; 8] = *b"SWDHTDMP";
/// Last bytes of every complete dump file.
pub const END_MAGIC: [u8; 8] = *b"SWDMPEND";
/// The format version of dumps without record versions (dumptool imports, dhtdump): read and
/// written. Version 2 ([`VERSIONED_FORMAT_VERSION`]) is read and written too.
pub const FORMAT_VERSION: u32 = 1;
/// Header flag: the header carries the change-log position the dump covers (a `u64` after the
/// channel name). The only flag; a reader refuses any other bit.
pub const FLAG_LOG_POSITION: u32 = 0x1;
/// Header flag: the blocks are not compressed (each batch body is its records as they are).
/// Older readers refuse the file (an unknown flag) rather than misread it.
pub const FLAG_UNCOMPRESSED: u32 = 0x2;
/// Every flag this reader knows.
const KNOWN_FLAGS: u32 = FLAG_LOG_POSITION | FLAG_UNCOMPRESSED;

/// How a dump's blocks are stored (the node's `[dht] dump_compression`). One choice per file,
/// recorded in its header ([`FLAG_UNCOMPRESSED`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DumpCompression {
    /// LZ4 (the default): smaller files, bounded by one core's compression speed.
    #[default]
    Lz4,
    /// No compression: the file is the records themselves, bounded by the disk.
    None,
}

impl DumpCompression {
    /// The setting's name in the config: `"lz4"` or `"none"`.
    pub fn name(self) -> &'static str {
        match self {
            DumpCompression::Lz4 => "lz4",
            DumpCompression::None => "none",
        }
    }

    /// Parses a setting's name (see [`name`](Self::name)).
    pub fn from_name(name: &str) -> Option<DumpCompression> {
        match name {
            "lz4" => Some(DumpCompression::Lz4),
            "none" => Some(DumpCompression::None),
            _ => None,
        }
    }

    fn flag(self) -> u32 {
        match self {
            DumpCompression::Lz4 => 0,
            DumpCompression::None => FLAG_UNCOMPRESSED,
        }
    }
}

/// The largest `block_len` a reader accepts: a 16 MiB batch that LZ4 could not shrink, plus
/// room for LZ4's worst-case expansion and the batch header.
pub const MAX_BLOCK_LEN: u32 = 17 * 1024 * 1024;
/// The read buffer [`read_dump`] and [`DumpReader::open_buffered`] put in front of the input.
pub const READ_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Bytes from the end-of-blocks marker to the end of the file.
pub const END_LEN: usize = 4 + 8 + 8 + 4 + 8;

/// What a dump file holds, as written or as read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpSummary {
    pub records: u64,
    /// Sum of all value lengths.
    pub value_bytes: u64,
}

/// The checked header of a dump file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpHeader {
    pub version: u32,
    pub flags: u32,
    pub created_unix_s: u64,
    /// The channel the file was written for (the loader names channels after the file name and
    /// only warns when the two differ).
    pub channel: String,
    /// The change-log position the dump covers: every log entry up to this sequence number is
    /// in it (entries after it may be too; replaying them again changes nothing). 0 — covering
    /// nothing — when the header has no position ([`FLAG_LOG_POSITION`] clear), as in every
    /// dump written before the change log existed.
    pub log_position: u64,
}

impl DumpHeader {
    /// How the file's blocks are stored ([`FLAG_UNCOMPRESSED`]).
    pub fn compression(&self) -> DumpCompression {
        if self.flags & FLAG_UNCOMPRESSED != 0 {
            DumpCompression::None
        } else {
            DumpCompression::Lz4
        }
    }
}

/// Seconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

// ----- writing -----------------------------------------------------------------------------------

/// Writes one dump file: the header on creation, one block per [`write_chunk`](Self::write_chunk),
/// the end marker and trailer on [`finish`](Self::finish). After an I/O error the writer is
/// unusable and the file incomplete (which any reader detects).
#[derive(Debug)]
pub struct DumpFileWriter<W: Write> {
    out: W,
    /// The block being built (length prefix and batch), reused across chunks.
    block: Vec<u8>,
    summary: DumpSummary,
    bytes_written: u64,
    compression: DumpCompression,
}

impl<W: Write> DumpFileWriter<W> {
    /// Starts a dump of `channel` (at most 255 bytes) created now, writing the header (without
    /// a log position: the dump covers no change-log entry).
    pub fn new(out: W, channel: &str) -> io::Result<DumpFileWriter<W>> {
        DumpFileWriter::with_header(out, channel, unix_now(), None)
    }

    /// Like [`new`](Self::new) with an explicit creation time.
    pub fn with_created(
        out: W,
        channel: &str,
        created_unix_s: u64,
    ) -> io::Result<DumpFileWriter<W>> {
        DumpFileWriter::with_header(out, channel, created_unix_s, None)
    }

    /// Starts a dump created now that covers the change log up to `log_position` (see
    /// [`DumpHeader::log_position`]).
    pub fn covering(out: W, channel: &str, log_position: u64) -> io::Result<DumpFileWriter<W>> {
        DumpFileWriter::with_header(out, channel, unix_now(), Some(log_position))
    }

    /// Writes the header: with [`FLAG_LOG_POSITION`] and the position when there is one.
    pub fn with_header(
        out: W,
        channel: &str,
        created_unix_s: u64,
        log_position: Option<u64>,
    ) -> io::Result<DumpFileWriter<W>> {
        DumpFileWriter::with_format(out, FORMAT_VERSION, channel, created_unix_s, log_position)
    }

    /// [`with_header`](Self::with_header) of a dump of `format_version` (1, or 2: its chunks
    /// hold entries laid out by [`DumpEntry::append_to`]).
    pub fn with_format(
        out: W,
        format_version: u32,
        channel: &str,
        created_unix_s: u64,
        log_position: Option<u64>,
    ) -> io::Result<DumpFileWriter<W>> {
        let compression = DumpCompression::Lz4;
        DumpFileWriter::with_compression(
            out,
            format_version,
            channel,
            created_unix_s,
            log_position,
            compression,
        )
    }

    /// [`with_format`](Self::with_format) with its blocks stored as `compression` says.
    pub fn with_compression(
        mut out: W,
        format_version: u32,
        channel: &str,
        created_unix_s: u64,
        log_position: Option<u64>,
        compression: DumpCompression,
    ) -> io::Result<DumpFileWriter<W>> {
        debug_assert!(
            format_version == FORMAT_VERSION || format_version == VERSIONED_FORMAT_VERSION
        );
        let name_len = u8::try_from(channel.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "channel name of {} bytes is too long for a dump header",
                    channel.len()
                ),
            )
        })?;
        let position_flag = if log_position.is_some() {
            FLAG_LOG_POSITION
        } else {
            0
        };
        let flags = position_flag | compression.flag();
        let mut header = Vec::with_capacity(40 + channel.len());
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&format_version.to_le_bytes());
        header.extend_from_slice(&flags.to_le_bytes());
        header.extend_from_slice(&created_unix_s.to_le_bytes());
        header.push(name_len);
        header.extend_from_slice(channel.as_bytes());
        if let Some(position) = log_position {
            header.extend_from_slice(&position.to_le_bytes());
        }
        let crc = crc32fast::hash(&header);
        header.extend_from_slice(&crc.to_le_bytes());
        out.write_all(&header)?;
        Ok(DumpFileWriter {
            out,
            block: Vec::with_capacity(128 * 1024),
            summary: DumpSummary::default(),
            bytes_written: header.len() as u64,
            compression,
        })
    }

    /// Compresses `record_count` records laid out by
    /// [`append_record`](node_core::protocol::batch::append_record) (at most 16 MiB of them) into
    /// one block and writes it. The records are checked first: a chunk whose records do not tile
    /// `raw` exactly or whose count differs is refused (`InvalidInput`) rather than written into
    /// a file that would not load. An empty chunk writes nothing.
    pub fn write_chunk(&mut self, raw: &[u8], record_count: u32) -> io::Result<()> {
        if raw.len() > MAX_BATCH_UNCOMPRESSED_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "dump chunk of {} bytes exceeds the batch limit of {MAX_BATCH_UNCOMPRESSED_BYTES}",
                    raw.len()
                ),
            ));
        }
        let value_bytes = check_chunk(raw, record_count)?;
        if record_count == 0 {
            return Ok(());
        }
        if self.compression == DumpCompression::None {
            return self.write_uncompressed(raw, record_count, value_bytes);
        }
        self.block.clear();
        self.block.extend_from_slice(&[0; 4]);
        encode_batch(raw, record_count, &mut self.block);
        let block_len = self.block.len() - 4;
        // Paired with the reader's checks in `next_block`: the batch header says what was asked
        // for, and compression produced a body (a failed LZ4 call leaves the header alone, a
        // block no reader would accept).
        let (declared_len, declared_count) = batch_header(&self.block[4..]);
        assert_eq!(
            (declared_len as usize, declared_count),
            (raw.len(), record_count),
            "dump block header disagrees with its chunk"
        );
        if block_len <= BATCH_HEADER_LEN {
            return Err(io::Error::other(
                "LZ4 compression of a dump block produced nothing",
            ));
        }
        if block_len > MAX_BLOCK_LEN as usize {
            // Cannot happen for input within the batch limit (LZ4's worst case is far smaller),
            // but a reader would refuse such a block, so refuse to write it.
            return Err(io::Error::other(format!(
                "compressed block of {block_len} bytes exceeds the block limit"
            )));
        }
        self.block[..4].copy_from_slice(&(block_len as u32).to_le_bytes());
        self.out.write_all(&self.block)?;
        self.bytes_written += self.block.len() as u64;
        self.summary.records += u64::from(record_count);
        self.summary.value_bytes += value_bytes;
        Ok(())
    }

    /// An uncompressed block: its length, the batch header, then `raw` as it is (no copy: at
    /// disk speed a copy of every record is a noticeable part of the dump's time).
    fn write_uncompressed(
        &mut self,
        raw: &[u8],
        record_count: u32,
        value_bytes: u64,
    ) -> io::Result<()> {
        let block_len = BATCH_HEADER_LEN + raw.len();
        // Within the batch limit (checked by the caller), so far below the block limit.
        assert!(block_len <= MAX_BLOCK_LEN as usize);
        self.block.clear();
        self.block
            .extend_from_slice(&(block_len as u32).to_le_bytes());
        encode_batch_header(raw, record_count, &mut self.block);
        self.out.write_all(&self.block)?;
        self.out.write_all(raw)?;
        self.bytes_written += (4 + block_len) as u64;
        self.summary.records += u64::from(record_count);
        self.summary.value_bytes += value_bytes;
        Ok(())
    }

    /// Records and value bytes written so far.
    pub fn summary(&self) -> DumpSummary {
        self.summary
    }

    /// File bytes written so far (header and blocks; [`finish`](Self::finish) adds [`END_LEN`]).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Writes the end marker and trailer, flushes, and hands back the output (not synced: the
    /// caller fsyncs the file).
    pub fn finish(mut self) -> io::Result<(W, DumpSummary)> {
        let mut end = [0u8; END_LEN];
        end[4..12].copy_from_slice(&self.summary.records.to_le_bytes());
        end[12..20].copy_from_slice(&self.summary.value_bytes.to_le_bytes());
        let crc = crc32fast::hash(&end[4..20]);
        end[20..24].copy_from_slice(&crc.to_le_bytes());
        end[24..32].copy_from_slice(&END_MAGIC);
        self.out.write_all(&end)?;
        self.out.flush()?;
        self.bytes_written += END_LEN as u64;
        Ok((self.out, self.summary))
    }
}

/// Walks the records of a chunk; returns the sum of their value lengths.
pub(crate) fn check_chunk(raw: &[u8], record_count: u32) -> io::Result<u64> {
    let mut offset = 0usize;
    let mut count = 0u64;
    while offset < raw.len() {
        let Some(fixed) = raw[offset..].first_chunk::<RECORD_OVERHEAD>() else {
            return Err(bad_chunk(format!("record {count} is cut short")));
        };
        let value_len = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]) as usize;
        offset += RECORD_OVERHEAD;
        if raw.len() - offset < value_len {
            return Err(bad_chunk(format!("record {count} runs past the chunk")));
        }
        offset += value_len;
        count += 1;
    }
    if count != u64::from(record_count) {
        return Err(bad_chunk(format!(
            "chunk holds {count} records, caller says {record_count}"
        )));
    }
    Ok((raw.len() as u64) - count * RECORD_OVERHEAD as u64)
}

fn bad_chunk(text: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("malformed dump chunk: {text}"),
    )
}

// ----- reading -----------------------------------------------------------------------------------

/// Why a dump file was refused, and where.
#[derive(Debug, Error)]
#[error("{problem} (at byte {offset})")]
pub struct DumpError {
    /// Offset of the field (or block) that failed.
    pub offset: u64,
    pub problem: DumpProblem,
}

/// What was wrong with a dump file.
#[derive(Debug, Error)]
pub enum DumpProblem {
    #[error("not a dht dump file: magic {found:02x?}, expected \"SWDHTDMP\"")]
    BadMagic { found: [u8; 8] },
    #[error("unsupported dump version {0} (this node reads versions 1 and 2)")]
    UnsupportedVersion(u32),
    #[error("header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderChecksum { stored: u32, computed: u32 },
    #[error("unsupported dump flags {0:#x}")]
    UnsupportedFlags(u32),
    #[error("channel name in the header is not UTF-8")]
    ChannelNameNotUtf8,
    #[error("file ends inside the {0} (truncated dump)")]
    Truncated(&'static str),
    #[error("block {index} declares {len} bytes; the limit is {MAX_BLOCK_LEN}")]
    BlockTooLarge { index: u64, len: u32 },
    #[error("block {index} is damaged: {error}")]
    Block { index: u64, error: BatchError },
    #[error("trailer checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    TrailerChecksum { stored: u32, computed: u32 },
    #[error("bad end magic {found:02x?}, expected \"SWDMPEND\"")]
    BadEndMagic { found: [u8; 8] },
    #[error("trailer says {trailer} records, the blocks hold {read}")]
    RecordCountMismatch { trailer: u64, read: u64 },
    #[error("trailer says {trailer} value bytes, the blocks hold {read}")]
    ValueBytesMismatch { trailer: u64, read: u64 },
    #[error("data follows the end of the dump")]
    TrailingData,
    #[error("the entry of key 0x{key:016x} in the block here is malformed: {problem}")]
    BadEntry { key: u64, problem: String },
    #[error("read error: {0}")]
    Io(io::Error),
}

/// Reads a dump file block by block, checking everything (see the module doc). Wrap a file in a
/// large `BufReader` first, or use [`open_buffered`](Self::open_buffered).
#[derive(Debug)]
pub struct DumpReader<R: Read> {
    input: R,
    offset: u64,
    header: DumpHeader,
    block: Vec<u8>,
    scratch: Vec<u8>,
    blocks: u64,
    read: DumpSummary,
    finished: bool,
}

impl<R: Read> DumpReader<BufReader<R>> {
    /// Puts a [`READ_BUFFER_BYTES`] buffer in front of `input`, then reads the header.
    pub fn open_buffered(input: R) -> Result<DumpReader<BufReader<R>>, DumpError> {
        DumpReader::new(BufReader::with_capacity(READ_BUFFER_BYTES, input))
    }
}

impl<R: Read> DumpReader<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R) -> Result<DumpReader<R>, DumpError> {
        let mut offset = 0u64;
        let header = read_header(&mut input, &mut offset)?;
        Ok(DumpReader {
            input,
            offset,
            header,
            block: Vec::with_capacity(128 * 1024),
            scratch: Vec::new(),
            blocks: 0,
            read: DumpSummary::default(),
            finished: false,
        })
    }

    pub fn header(&self) -> &DumpHeader {
        &self.header
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Records and value bytes of the blocks read so far.
    pub fn summary(&self) -> DumpSummary {
        self.read
    }

    /// The records of the next block, fully checked; `Ok(None)` once the trailer has been read
    /// and checked and the input has ended. Records of a file that later fails its checks have
    /// already been handed out, so a caller must not commit anything before `Ok(None)`.
    pub fn next_block(&mut self) -> Result<Option<BatchRecords<'_>>, DumpError> {
        if self.finished {
            return Ok(None);
        }
        let block_offset = self.offset;
        let mut len = [0u8; 4];
        read_field(&mut self.input, &mut len, &mut self.offset, "block length")?;
        let len = u32::from_le_bytes(len);
        if len == 0 {
            self.read_end(block_offset)?;
            self.finished = true;
            return Ok(None);
        }
        let index = self.blocks;
        if len > MAX_BLOCK_LEN {
            return Err(DumpError {
                offset: block_offset,
                problem: DumpProblem::BlockTooLarge { index, len },
            });
        }
        // Grows the buffer only as far as the input really goes.
        self.block.clear();
        let got = (&mut self.input)
            .take(u64::from(len))
            .read_to_end(&mut self.block)
            .map_err(|err| DumpError {
                offset: self.offset,
                problem: DumpProblem::Io(err),
            })?;
        self.offset += got as u64;
        if got != len as usize {
            return Err(DumpError {
                offset: block_offset,
                problem: DumpProblem::Truncated("block"),
            });
        }
        let (raw_len, count) = batch_header(&self.block);
        let decoded = match self.header.compression() {
            DumpCompression::Lz4 => decode_batch(&self.block, &mut self.scratch),
            DumpCompression::None => decode_uncompressed_batch(&self.block),
        };
        let records = decoded.map_err(|error| DumpError {
            offset: block_offset,
            problem: DumpProblem::Block { index, error },
        })?;
        // decode_batch proved that `count` records tile `raw_len` bytes exactly (the pair of the
        // writer's assertion on the block it wrote).
        let overhead = u64::from(count) * RECORD_OVERHEAD as u64;
        assert!(
            records.len() == count && u64::from(raw_len) >= overhead,
            "block {index}: a checked batch of {raw_len} bytes does not hold {count} records"
        );
        self.blocks += 1;
        self.read.records += u64::from(count);
        self.read.value_bytes += u64::from(raw_len) - overhead;
        Ok(Some(records))
    }

    /// Reads every remaining block, handing each record's key and value to `on_record` (a
    /// version 2 dump's tombstones and versions are left out), and checks the end.
    pub fn for_each_record(
        &mut self,
        mut on_record: impl FnMut(u64, &[u8]),
    ) -> Result<DumpSummary, DumpError> {
        self.for_each_entry(|key, entry| {
            if let DumpEntry::Record { value, .. } = entry {
                on_record(key, value);
            }
        })
    }

    /// Reads every remaining block, handing each entry (a record with its version — 0 in a
    /// version 1 dump — or a tombstone) to `on_entry`, and checks the end.
    pub fn for_each_entry(
        &mut self,
        mut on_entry: impl FnMut(u64, DumpEntry<'_>),
    ) -> Result<DumpSummary, DumpError> {
        let version = self.header.version;
        loop {
            let offset = self.offset;
            let Some(records) = self.next_block()? else {
                return Ok(self.read);
            };
            for (key, raw) in records {
                let entry = DumpEntry::decode(version, raw).map_err(|problem| DumpError {
                    offset,
                    problem: DumpProblem::BadEntry { key, problem },
                })?;
                on_entry(key, entry);
            }
        }
    }

    fn read_end(&mut self, marker_offset: u64) -> Result<(), DumpError> {
        let trailer_offset = self.offset;
        let mut trailer = [0u8; END_LEN - 4];
        read_field(&mut self.input, &mut trailer, &mut self.offset, "trailer")?;
        let stored = u32::from_le_bytes([trailer[16], trailer[17], trailer[18], trailer[19]]);
        let computed = crc32fast::hash(&trailer[..16]);
        if stored != computed {
            return Err(DumpError {
                offset: trailer_offset + 16,
                problem: DumpProblem::TrailerChecksum { stored, computed },
            });
        }
        let mut found = [0u8; 8];
        found.copy_from_slice(&trailer[20..28]);
        if found != END_MAGIC {
            return Err(DumpError {
                offset: trailer_offset + 20,
                problem: DumpProblem::BadEndMagic { found },
            });
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&trailer[..8]);
        let records = u64::from_le_bytes(word);
        word.copy_from_slice(&trailer[8..16]);
        let value_bytes = u64::from_le_bytes(word);
        if records != self.read.records {
            return Err(DumpError {
                offset: marker_offset,
                problem: DumpProblem::RecordCountMismatch {
                    trailer: records,
                    read: self.read.records,
                },
            });
        }
        if value_bytes != self.read.value_bytes {
            return Err(DumpError {
                offset: marker_offset,
                problem: DumpProblem::ValueBytesMismatch {
                    trailer: value_bytes,
                    read: self.read.value_bytes,
                },
            });
        }
        let mut probe = [0u8; 1];
        loop {
            match self.input.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(DumpError {
                        offset: self.offset,
                        problem: DumpProblem::TrailingData,
                    })
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(DumpError {
                        offset: self.offset,
                        problem: DumpProblem::Io(err),
                    })
                }
            }
        }
    }
}

/// Reads and checks a dump header (magic, version, flags, CRC, channel name), advancing
/// `offset` past it.
fn read_header(input: &mut impl Read, offset: &mut u64) -> Result<DumpHeader, DumpError> {
    let mut fixed = [0u8; 25];
    read_field(input, &mut fixed[..12], offset, "header")?;
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&fixed[..8]);
    if magic != MAGIC {
        return Err(DumpError {
            offset: 0,
            problem: DumpProblem::BadMagic { found: magic },
        });
    }
    let version = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
    if version != FORMAT_VERSION && version != VERSIONED_FORMAT_VERSION {
        return Err(DumpError {
            offset: 8,
            problem: DumpProblem::UnsupportedVersion(version),
        });
    }
    read_field(input, &mut fixed[12..], offset, "header")?;
    let flags = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]);
    // Unknown flags may mean fields this reader does not know: refuse before reading on.
    if flags & !KNOWN_FLAGS != 0 {
        return Err(DumpError {
            offset: 12,
            problem: DumpProblem::UnsupportedFlags(flags),
        });
    }
    let mut created = [0u8; 8];
    created.copy_from_slice(&fixed[16..24]);
    let name_len = fixed[24] as usize;
    let mut name = [0u8; 255];
    read_field(input, &mut name[..name_len], offset, "header")?;
    let mut position = [0u8; 8];
    let position_len = if flags & FLAG_LOG_POSITION != 0 { 8 } else { 0 };
    read_field(input, &mut position[..position_len], offset, "header")?;
    let crc_offset = *offset;
    let mut stored = [0u8; 4];
    read_field(input, &mut stored, offset, "header")?;
    let stored = u32::from_le_bytes(stored);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&fixed);
    hasher.update(&name[..name_len]);
    hasher.update(&position[..position_len]);
    let computed = hasher.finalize();
    if stored != computed {
        return Err(DumpError {
            offset: crc_offset,
            problem: DumpProblem::HeaderChecksum { stored, computed },
        });
    }
    let channel = std::str::from_utf8(&name[..name_len])
        .map_err(|_| DumpError {
            offset: 25,
            problem: DumpProblem::ChannelNameNotUtf8,
        })?
        .to_owned();
    Ok(DumpHeader {
        version,
        flags,
        created_unix_s: u64::from_le_bytes(created),
        channel,
        log_position: u64::from_le_bytes(position),
    })
}

/// The uncompressed length and record count a batch's header declares (zeros when the block is
/// too short to hold a header, which `decode_batch` then refuses).
fn batch_header(block: &[u8]) -> (u32, u32) {
    match block.first_chunk::<BATCH_HEADER_LEN>() {
        Some(h) => (
            u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
            u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
        ),
        None => (0, 0),
    }
}

fn read_field(
    input: &mut impl Read,
    buf: &mut [u8],
    offset: &mut u64,
    what: &'static str,
) -> Result<(), DumpError> {
    match input.read_exact(buf) {
        Ok(()) => {
            *offset += buf.len() as u64;
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Err(DumpError {
            offset: *offset,
            problem: DumpProblem::Truncated(what),
        }),
        Err(err) => Err(DumpError {
            offset: *offset,
            problem: DumpProblem::Io(err),
        }),
    }
}

/// Reads a whole dump through a [`READ_BUFFER_BYTES`] buffer, handing every record to
/// `on_record` as it goes, and checks everything. On error, records already handed out belong
/// to a file that failed: discard them.
pub fn read_dump(
    reader: impl Read,
    on_record: impl FnMut(u64, &[u8]),
) -> Result<DumpSummary, DumpError> {
    DumpReader::open_buffered(reader)?.for_each_record(on_record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_core::protocol::batch::append_record;

    fn value_for(key: u64) -> Vec<u8> {
        // Varied content and length, so blocks are neither trivial nor all alike.
        let len = (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize;
        (0..len)
            .map(|i| {
                (key as u8)
                    .wrapping_mul(31)
                    .wrapping_add((i as u8).wrapping_mul(7))
            })
            .collect()
    }

    /// A dump of `records` records in chunks of `per_chunk`.
    fn dump_of(records: u64, per_chunk: u64) -> (Vec<u8>, Vec<(u64, Vec<u8>)>) {
        dump_covering(records, per_chunk, None)
    }

    /// [`dump_of`], with a log position in the header when given one.
    fn dump_covering(
        records: u64,
        per_chunk: u64,
        log_position: Option<u64>,
    ) -> (Vec<u8>, Vec<(u64, Vec<u8>)>) {
        dump_stored(records, per_chunk, log_position, DumpCompression::Lz4)
    }

    /// [`dump_covering`], its blocks stored as `compression` says.
    fn dump_stored(
        records: u64,
        per_chunk: u64,
        log_position: Option<u64>,
        compression: DumpCompression,
    ) -> (Vec<u8>, Vec<(u64, Vec<u8>)>) {
        let mut writer = DumpFileWriter::with_compression(
            Vec::new(),
            FORMAT_VERSION,
            "test_channel",
            1_700_000_000,
            log_position,
            compression,
        )
        .expect("header");
        let mut expected = Vec::new();
        let mut raw = Vec::new();
        let mut count = 0u32;
        for key in 0..records {
            let key = key.wrapping_mul(0x1234_5678_9abc_def1);
            let value = value_for(key);
            append_record(&mut raw, key, &value);
            expected.push((key, value));
            count += 1;
            if u64::from(count) == per_chunk {
                writer.write_chunk(&raw, count).unwrap();
                raw.clear();
                count = 0;
            }
        }
        writer.write_chunk(&raw, count).unwrap();
        let (bytes, summary) = writer.finish().unwrap();
        assert_eq!(summary.records, records);
        (bytes, expected)
    }

    type Records = Vec<(u64, Vec<u8>)>;

    fn read_all(bytes: &[u8]) -> Result<(Records, DumpSummary), DumpError> {
        let mut got = Vec::new();
        let summary = read_dump(bytes, |key, value| got.push((key, value.to_vec())))?;
        Ok((got, summary))
    }

    #[test]
    fn round_trip_with_many_chunks() {
        let (bytes, expected) = dump_of(20_000, 97);
        let (got, summary) = read_all(&bytes).unwrap();
        assert_eq!(got, expected);
        let value_bytes: u64 = expected.iter().map(|(_, v)| v.len() as u64).sum();
        assert_eq!(
            summary,
            DumpSummary {
                records: 20_000,
                value_bytes
            }
        );
        let reader = DumpReader::new(&bytes[..]).unwrap();
        assert_eq!(
            reader.header(),
            &DumpHeader {
                version: 1,
                flags: 0,
                created_unix_s: 1_700_000_000,
                channel: "test_channel".into(),
                log_position: 0,
            }
        );
    }

    #[test]
    fn the_log_position_round_trips_and_a_dump_without_one_covers_nothing() {
        let mut writer = DumpFileWriter::covering(Vec::new(), "ch", 0x0102_0304_0506_0708).unwrap();
        let mut raw = Vec::new();
        append_record(&mut raw, 7, b"seven");
        writer.write_chunk(&raw, 1).unwrap();
        let (bytes, _) = writer.finish().unwrap();
        let reader = DumpReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.header().flags, FLAG_LOG_POSITION);
        assert_eq!(reader.header().log_position, 0x0102_0304_0506_0708);
        // The position sits right after the channel name, little-endian, inside the header CRC.
        assert_eq!(&bytes[27..35], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(crc32fast::hash(&bytes[..35]).to_le_bytes(), bytes[35..39]);
        assert_eq!(read_all(&bytes).unwrap().0, vec![(7, b"seven".to_vec())]);

        // A dump as written before the position existed, byte by byte: flags 0, no position.
        let mut old = Vec::new();
        old.extend_from_slice(b"SWDHTDMP");
        old.extend_from_slice(&1u32.to_le_bytes());
        old.extend_from_slice(&0u32.to_le_bytes());
        old.extend_from_slice(&1_600_000_000u64.to_le_bytes());
        old.push(2);
        old.extend_from_slice(b"ch");
        let crc = crc32fast::hash(&old);
        old.extend_from_slice(&crc.to_le_bytes());
        old.extend_from_slice(&0u32.to_le_bytes());
        old.extend_from_slice(&[0; 16]);
        let crc = crc32fast::hash(&[0; 16]);
        old.extend_from_slice(&crc.to_le_bytes());
        old.extend_from_slice(b"SWDMPEND");
        let reader = DumpReader::new(&old[..]).unwrap();
        assert_eq!(reader.header().flags, 0);
        assert_eq!(reader.header().log_position, 0);
        assert_eq!(read_all(&old).unwrap().0, vec![]);
        // ... which is exactly what the writer still writes when given no position.
        let (again, _) = DumpFileWriter::with_created(Vec::new(), "ch", 1_600_000_000)
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(again, old);

        // A flag this reader does not know is refused before anything else is read.
        let mut unknown = bytes.clone();
        unknown[12] |= 0x4;
        let err = read_all(&unknown).unwrap_err();
        assert_eq!(err.offset, 12);
        assert!(matches!(err.problem, DumpProblem::UnsupportedFlags(0x5)));
        // The flag set on a header without a position: the CRC no longer matches.
        let mut flagged = old.clone();
        flagged[12] = 1;
        assert!(matches!(
            read_all(&flagged).unwrap_err().problem,
            DumpProblem::HeaderChecksum { .. }
        ));
    }

    #[test]
    fn empty_dump_and_empty_values_round_trip() {
        let (bytes, _) = dump_of(0, 10);
        assert_eq!(bytes.len(), 25 + "test_channel".len() + 4 + END_LEN);
        assert_eq!(read_all(&bytes).unwrap().0, vec![]);

        let mut raw = Vec::new();
        append_record(&mut raw, 1, b"");
        append_record(&mut raw, 2, b"x");
        let mut writer = DumpFileWriter::new(Vec::new(), "c").unwrap();
        writer.write_chunk(&raw, 2).unwrap();
        writer.write_chunk(&[], 0).unwrap();
        let (bytes, summary) = writer.finish().unwrap();
        assert_eq!(
            summary,
            DumpSummary {
                records: 2,
                value_bytes: 1
            }
        );
        assert_eq!(
            read_all(&bytes).unwrap().0,
            vec![(1, vec![]), (2, b"x".to_vec())]
        );
    }

    #[test]
    fn malformed_chunks_are_refused() {
        let mut writer = DumpFileWriter::new(Vec::new(), "c").unwrap();
        let mut raw = Vec::new();
        append_record(&mut raw, 1, b"abc");
        assert_eq!(
            writer.write_chunk(&raw, 2).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            writer
                .write_chunk(&raw[..raw.len() - 1], 1)
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(DumpFileWriter::new(Vec::new(), &"x".repeat(256)).is_err());
        writer.write_chunk(&raw, 1).unwrap();
        let (bytes, _) = writer.finish().unwrap();
        assert_eq!(read_all(&bytes).unwrap().0, vec![(1, b"abc".to_vec())]);
    }

    /// Flipping any single byte of a dump (to several different values) is detected — unless the
    /// damaged byte sits inside an LZ4 block and the block still decompresses to exactly the same
    /// records (a match offset redirected to identical bytes), which changes no record.
    #[test]
    fn every_single_byte_corruption_is_detected() {
        for position in [None, Some(987_654_321)] {
            let (bytes, expected) = dump_covering(300, 40, position);
            check_every_flip(&bytes, &expected);
        }
    }

    /// An uncompressed dump: the same records, the flag in its header, blocks that are the
    /// records themselves; every damaged byte is detected (no LZ4 match offsets to hide one),
    /// and so is every truncation.
    #[test]
    fn an_uncompressed_dump_round_trips_and_refuses_damage() {
        let (lz4, expected) = dump_stored(300, 40, Some(5), DumpCompression::Lz4);
        let (bytes, same) = dump_stored(300, 40, Some(5), DumpCompression::None);
        assert_eq!(same, expected);
        assert_eq!(read_all(&bytes).unwrap(), read_all(&lz4).unwrap());
        let reader = DumpReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.header().flags, FLAG_LOG_POSITION | FLAG_UNCOMPRESSED);
        assert_eq!(reader.header().compression(), DumpCompression::None);
        assert_eq!(
            DumpReader::new(&lz4[..]).unwrap().header().compression(),
            DumpCompression::Lz4
        );
        // The first block holds the first 40 records as they are, after its 12-byte batch header.
        let header_len = 25 + "test_channel".len() + 8 + 4;
        let mut raw = Vec::new();
        for (key, value) in &expected[..40] {
            append_record(&mut raw, *key, value);
        }
        let block_len = u32::from_le_bytes(bytes[header_len..header_len + 4].try_into().unwrap());
        assert_eq!(block_len as usize, 12 + raw.len());
        assert_eq!(
            &bytes[header_len + 16..header_len + 16 + raw.len()],
            &raw[..]
        );

        for position in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[position] ^= mask;
                assert!(
                    read_all(&damaged).is_err(),
                    "flip {mask:#04x} at byte {position} went undetected"
                );
            }
        }
        check_every_truncation(&bytes);
        // A damaged record inside a block: refused, naming the block and the checksum.
        let mut damaged = bytes.clone();
        damaged[header_len + 16 + 20] ^= 0x10;
        let err = read_all(&damaged).unwrap_err();
        assert_eq!(err.offset, header_len as u64);
        assert!(err.to_string().starts_with("block 0 is damaged"), "{err}");
        // Read as LZ4 (the flag cleared, the header CRC fixed), the blocks are refused too.
        let mut unflagged = bytes.clone();
        unflagged[12] &= !(FLAG_UNCOMPRESSED as u8);
        let crc = crc32fast::hash(&unflagged[..header_len - 4]);
        unflagged[header_len - 4..header_len].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            read_all(&unflagged).unwrap_err().problem,
            DumpProblem::Block { index: 0, .. }
        ));
    }

    fn check_every_flip(bytes: &[u8], expected: &[(u64, Vec<u8>)]) {
        let mut harmless = 0;
        for position in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut damaged = bytes.to_vec();
                damaged[position] ^= mask;
                match read_all(&damaged) {
                    Err(_) => {}
                    Ok((got, _)) => {
                        assert_eq!(
                            got, expected,
                            "flip {mask:#04x} at byte {position} went undetected and changed records"
                        );
                        harmless += 1;
                    }
                }
            }
        }
        eprintln!(
            "{harmless} harmless flips in {} bytes x 3 masks",
            bytes.len()
        );
        // Such cases are rare; a format hole would make them common.
        assert!(
            harmless * 200 < bytes.len() * 3,
            "{harmless} undetected flips"
        );
    }

    /// Every proper prefix of `bytes` is refused as a truncated dump.
    fn check_every_truncation(bytes: &[u8]) {
        for len in 0..bytes.len() {
            let err = read_all(&bytes[..len]).unwrap_err();
            assert!(
                matches!(err.problem, DumpProblem::Truncated(_)),
                "length {len}: {err}"
            );
        }
    }

    #[test]
    fn every_truncation_and_any_extension_is_detected() {
        let (bytes, _) = dump_covering(200, 30, Some(42));
        check_every_truncation(&bytes);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            read_all(&longer).unwrap_err().problem,
            DumpProblem::TrailingData
        ));
    }

    #[test]
    fn errors_name_what_failed_and_where() {
        let (bytes, _) = dump_of(10, 5);
        let mut other_version = bytes.clone();
        other_version[8] = 3;
        let err = read_all(&other_version).unwrap_err();
        assert_eq!(err.offset, 8);
        assert_eq!(
            err.to_string(),
            "unsupported dump version 3 (this node reads versions 1 and 2) (at byte 8)"
        );

        let mut not_a_dump = bytes.clone();
        not_a_dump[0] = b'X';
        assert!(matches!(
            read_all(&not_a_dump).unwrap_err().problem,
            DumpProblem::BadMagic { .. }
        ));

        let header_len = 25 + "test_channel".len() + 4;
        let mut huge_block = bytes.clone();
        huge_block[header_len..header_len + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = read_all(&huge_block).unwrap_err();
        assert_eq!(err.offset, header_len as u64);
        assert!(matches!(
            err.problem,
            DumpProblem::BlockTooLarge { index: 0, .. }
        ));

        // A block length just under the limit on a tiny file: refused as truncated without
        // reserving the declared size up front.
        let mut long_block = bytes[..header_len].to_vec();
        long_block.extend_from_slice(&MAX_BLOCK_LEN.to_le_bytes());
        long_block.extend_from_slice(&[0; 100]);
        let mut reader = DumpReader::new(&long_block[..]).unwrap();
        assert!(matches!(
            reader.next_block().unwrap_err().problem,
            DumpProblem::Truncated("block")
        ));
        assert!(reader.block.capacity() < 1024 * 1024);

        // A whole block dropped: every remaining part is intact, the trailer's count disagrees.
        let first_len = u32::from_le_bytes(bytes[header_len..header_len + 4].try_into().unwrap());
        let mut dropped = bytes[..header_len].to_vec();
        dropped.extend_from_slice(&bytes[header_len + 4 + first_len as usize..]);
        assert!(matches!(
            read_all(&dropped).unwrap_err().problem,
            DumpProblem::RecordCountMismatch {
                trailer: 10,
                read: 5
            }
        ));
    }
}

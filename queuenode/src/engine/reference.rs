//! The reference node's files in a data directory, read at start so that an existing reference
//! node's data can be served (`reference/queue.md` §4.2–4.5):
//!
//! - `<storage>.rq`: one ring dump per storage (read by [`crate::engine::rq`]);
//! - `overflow.dat` + `ofchannels.csv`: the disk overflow, records that did not fit the ring.
//!   The index has one line `name records bytes first_offset last_offset` per storage; the data
//!   file starts with the magic `QDSKOF01`, then records of a 32-byte header (`u32 channel id`,
//!   4 zero bytes, `i64 next_offset` relative to this record (0 = last), `u8 parity` making the
//!   XOR of the id, next, parity and length bytes 0, 7 zero bytes, `u64 length`) and the value.
//!
//! A storage's records are its dump's (the reference's memory queue, popped first), then its
//! overflow's, as the reference served them. Every length and offset is checked against the file;
//! anything inconsistent is an error naming the file and the record, never a panic.
//!
//! After a successful import the files move to `<data_dir>/imported/<unix_s>/`, so they are not
//! imported twice. (A crash between the import and the move imports them again at the next start:
//! records may then be delivered twice, never lost.)

use crate::engine::names::valid_storage_name;
use crate::engine::rq;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const OVERFLOW_DATA: &str = "overflow.dat";
pub const OVERFLOW_INDEX: &str = "ofchannels.csv";
pub const OVERFLOW_MAGIC: [u8; 8] = *b"QDSKOF01";
const OVERFLOW_HEADER_BYTES: u64 = 32;
/// The longest index file read (one short line per storage).
const MAX_INDEX_BYTES: u64 = 64 << 20;
/// The largest single value read from the overflow (the reference's 10 MiB request limit, with
/// room).
const MAX_OVERFLOW_VALUE_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Rq {
        path: PathBuf,
        #[source]
        source: rq::RqError,
    },
    #[error("{path}: {problem}")]
    Bad { path: PathBuf, problem: String },
}

/// The reference files found in a data directory and what they hold.
#[derive(Debug, Default)]
pub struct ReferenceData {
    /// Storage name → values, oldest first.
    pub storages: BTreeMap<String, Vec<Vec<u8>>>,
    /// The files read.
    pub files: Vec<PathBuf>,
}

impl ReferenceData {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn records(&self) -> u64 {
        self.storages
            .values()
            .map(|values| values.len() as u64)
            .sum()
    }
}

/// Reads every reference file in `dir` (none: an empty result).
pub fn scan(dir: &Path) -> Result<ReferenceData, ReferenceError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReferenceError::Io { path, source }
    };
    let mut data = ReferenceData::default();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    paths.sort();
    for path in paths {
        let Some(file_name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        let Some(name) = file_name.strip_suffix(".rq") else {
            continue;
        };
        // Passed over, not read (a FIFO would block the start), and said: left in place, so
        // it is not moved to `imported/` either.
        if let Some(kind) = node_core::data_dir::passed_over_entry(&path) {
            tracing::warn!(
                path = %path.display(),
                "reference import: ignoring {kind} where a reference dump belongs (a dump is a \
                 regular file); its storage is not imported"
            );
            continue;
        }
        if !valid_storage_name(name) {
            tracing::warn!(path = %path.display(), "reference dump with a bad storage name ignored");
            continue;
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let values = rq::decode(&bytes).map_err(|source| ReferenceError::Rq {
            path: path.clone(),
            source,
        })?;
        data.storages.insert(name.to_string(), values);
        data.files.push(path);
    }
    let index = dir.join(OVERFLOW_INDEX);
    let overflow = dir.join(OVERFLOW_DATA);
    if index.exists() || overflow.exists() {
        for path in [&index, &overflow] {
            // Refused rather than passed over: the import would take the dumps without the
            // overflow behind them (and a FIFO would block the start).
            if let Some(kind) = node_core::data_dir::not_regular(path) {
                return Err(ReferenceError::Bad {
                    path: path.clone(),
                    problem: format!("{kind}, not a regular file: move it away"),
                });
            }
        }
        for (name, values) in read_overflow(&index, &overflow)? {
            data.storages.entry(name).or_default().extend(values);
        }
        data.files
            .extend([index, overflow].into_iter().filter(|path| path.exists()));
    }
    Ok(data)
}

/// Moves imported files to `<dir>/imported/<unix_s>/`; returns that directory.
pub fn move_imported(dir: &Path, files: &[PathBuf]) -> Result<PathBuf, ReferenceError> {
    let unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let target = dir.join("imported").join(unix_s.to_string());
    std::fs::create_dir_all(&target).map_err(|source| ReferenceError::Io {
        path: target.clone(),
        source,
    })?;
    for file in files {
        let Some(name) = file.file_name() else {
            continue;
        };
        std::fs::rename(file, target.join(name)).map_err(|source| ReferenceError::Io {
            path: file.clone(),
            source,
        })?;
    }
    Ok(target)
}

/// One line of `ofchannels.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexLine {
    name: String,
    records: u64,
    bytes: u64,
    first: u64,
    last: u64,
}

fn parse_index(text: &str) -> Result<Vec<IndexLine>, String> {
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let [name, records, bytes, first, last] = fields[..] else {
            return Err(format!(
                "line {}: {} fields, expected 5 (name records bytes first last)",
                number + 1,
                fields.len()
            ));
        };
        if !valid_storage_name(name) {
            return Err(format!("line {}: bad storage name {name:?}", number + 1));
        }
        let number_field = |field: &str, what: &str| {
            field
                .parse::<u64>()
                .map_err(|_| format!("line {}: {what} {field:?} is not a number", number + 1))
        };
        let line = IndexLine {
            name: name.to_string(),
            records: number_field(records, "records")?,
            bytes: number_field(bytes, "bytes")?,
            first: number_field(first, "first offset")?,
            last: number_field(last, "last offset")?,
        };
        if lines
            .iter()
            .any(|other: &IndexLine| other.name == line.name)
        {
            return Err(format!("line {}: {name} listed twice", number + 1));
        }
        lines.push(line);
    }
    Ok(lines)
}

/// Storage names with their values, oldest first.
type StorageValues = Vec<(String, Vec<Vec<u8>>)>;

/// Reads the disk overflow: storage name → values, oldest first.
fn read_overflow(index_path: &Path, data_path: &Path) -> Result<StorageValues, ReferenceError> {
    let bad = |path: &Path, problem: String| ReferenceError::Bad {
        path: path.to_path_buf(),
        problem,
    };
    let index_text = if index_path.exists() {
        let len = std::fs::metadata(index_path)
            .map_err(|source| ReferenceError::Io {
                path: index_path.to_path_buf(),
                source,
            })?
            .len();
        if len > MAX_INDEX_BYTES {
            return Err(bad(
                index_path,
                format!("{len} bytes is too long for an index"),
            ));
        }
        std::fs::read_to_string(index_path).map_err(|source| ReferenceError::Io {
            path: index_path.to_path_buf(),
            source,
        })?
    } else {
        String::new()
    };
    let lines = parse_index(&index_text).map_err(|problem| bad(index_path, problem))?;
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    let file = File::open(data_path).map_err(|source| ReferenceError::Io {
        path: data_path.to_path_buf(),
        source,
    })?;
    let io = |source| ReferenceError::Io {
        path: data_path.to_path_buf(),
        source,
    };
    let file_len = file.metadata().map_err(io)?.len();
    let mut magic = [0u8; 8];
    if file_len < 8 {
        return Err(bad(
            data_path,
            format!("{file_len} bytes: no room for the magic"),
        ));
    }
    file.read_exact_at(&mut magic, 0).map_err(io)?;
    if magic != OVERFLOW_MAGIC {
        return Err(bad(data_path, "not an overflow file (bad magic)".into()));
    }
    let mut out = Vec::new();
    for line in lines {
        let values = read_overflow_channel(&file, file_len, &line)
            .map_err(|problem| bad(data_path, format!("storage {}: {problem}", line.name)))?;
        out.push((line.name, values));
    }
    Ok(out)
}

/// Follows one storage's chain of records from its first offset.
fn read_overflow_channel(
    file: &File,
    file_len: u64,
    line: &IndexLine,
) -> Result<Vec<Vec<u8>>, String> {
    if line.records == 0 {
        return Err("the index lists 0 records".into());
    }
    if line.records > file_len / OVERFLOW_HEADER_BYTES {
        return Err(format!("{} records cannot fit the file", line.records));
    }
    let mut values = Vec::new();
    let mut offset = line.first;
    let mut channel_id = None;
    let mut bytes = 0u64;
    for index in 0..line.records {
        if offset < 8 || offset.saturating_add(OVERFLOW_HEADER_BYTES) > file_len {
            return Err(format!("record {index} at {offset} is outside the file"));
        }
        let header = read_overflow_header(file, offset, index)?;
        let id = header.channel_id;
        if id == 0 || *channel_id.get_or_insert(id) != id {
            return Err(format!(
                "record {index} at {offset}: channel id {id} does not continue the chain"
            ));
        }
        let len = header.value_len;
        let value_at = offset + OVERFLOW_HEADER_BYTES;
        if len == 0 || len > MAX_OVERFLOW_VALUE_BYTES || len > file_len - value_at {
            return Err(format!("record {index} at {offset}: bad length {len}"));
        }
        let mut value = vec![0u8; len as usize];
        file.read_exact_at(&mut value, value_at)
            .map_err(|e| format!("record {index} at {offset}: {e}"))?;
        values.push(value);
        bytes += len;
        if index + 1 == line.records {
            check_last_record(&header, offset, index, line)?;
        } else {
            offset = offset.saturating_add(next_record_step(&header, offset, index)?);
        }
    }
    if bytes != line.bytes {
        return Err(format!(
            "the records hold {bytes} bytes, the index says {}",
            line.bytes
        ));
    }
    Ok(values)
}

/// The fields of one overflow record's 32-byte header that the reader uses.
struct OverflowHeader {
    channel_id: u32,
    /// Distance in bytes from this record to the next one of its chain; 0 on the last.
    next: i64,
    value_len: u64,
}

/// Reads the header of record `index` at `offset` and checks its parity byte.
fn read_overflow_header(file: &File, offset: u64, index: u64) -> Result<OverflowHeader, String> {
    let mut header = [0u8; OVERFLOW_HEADER_BYTES as usize];
    file.read_exact_at(&mut header, offset)
        .map_err(|e| format!("record {index} at {offset}: {e}"))?;
    let channel_id = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&header[8..16]);
    let next = i64::from_le_bytes(eight);
    eight.copy_from_slice(&header[24..32]);
    let value_len = u64::from_le_bytes(eight);
    let parity = header[0..4]
        .iter()
        .chain(&header[8..17])
        .chain(&header[24..32])
        .fold(0u8, |acc, byte| acc ^ byte);
    if parity != 0 {
        return Err(format!(
            "record {index} at {offset}: header parity mismatch"
        ));
    }
    Ok(OverflowHeader {
        channel_id,
        next,
        value_len,
    })
}

/// The last record of a chain links nowhere and sits where the index says the chain ends.
fn check_last_record(
    header: &OverflowHeader,
    offset: u64,
    index: u64,
    line: &IndexLine,
) -> Result<(), String> {
    let next = header.next;
    if next != 0 || offset != line.last {
        return Err(format!(
            "record {index} at {offset} should be the last (index says {}), but links on \
             by {next}",
            line.last
        ));
    }
    Ok(())
}

/// The step to the next record of a chain: forward, and past this record's header and value.
fn next_record_step(header: &OverflowHeader, offset: u64, index: u64) -> Result<u64, String> {
    let next = header.next;
    let step = u64::try_from(next).unwrap_or(0);
    if step < OVERFLOW_HEADER_BYTES + header.value_len {
        return Err(format!("record {index} at {offset}: bad link {next}"));
    }
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u32, next: i64, value: &[u8]) -> Vec<u8> {
        let mut header = vec![0u8; 32];
        header[0..4].copy_from_slice(&id.to_le_bytes());
        header[8..16].copy_from_slice(&next.to_le_bytes());
        header[24..32].copy_from_slice(&(value.len() as u64).to_le_bytes());
        let parity = header.iter().fold(0u8, |acc, byte| acc ^ byte);
        header[16] = parity;
        header.extend_from_slice(value);
        header
    }

    #[test]
    fn index_lines_parse_and_bad_ones_are_named() {
        let lines = parse_index("sub1@ch1 1 10 50 50\n\nch2 2 20 134 176\n").expect("parses");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].records, 2);
        assert!(parse_index("ch 1 2 3").unwrap_err().contains("line 1"));
        assert!(parse_index("ch.x 1 2 3 4")
            .unwrap_err()
            .contains("bad storage name"));
        assert!(parse_index("ch 1 x 3 4").unwrap_err().contains("bytes"));
        assert!(parse_index("ch 1 1 8 8\nch 1 1 8 8")
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn chains_are_followed_and_damage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut data = OVERFLOW_MAGIC.to_vec();
        // ch: "one" at 8 -> "two" at 8+35+35=78; other: "x" at 43.
        data.extend(record(1, 70, b"one"));
        data.extend(record(2, 0, b"xyz"));
        data.extend(record(1, 0, b"two"));
        let data_path = dir.path().join(OVERFLOW_DATA);
        let index_path = dir.path().join(OVERFLOW_INDEX);
        std::fs::write(&data_path, &data).expect("write");
        std::fs::write(&index_path, "ch 2 6 8 78\nsub@other 1 3 43 43\n").expect("write");
        let read = read_overflow(&index_path, &data_path).expect("reads");
        assert_eq!(
            read,
            vec![
                ("ch".to_string(), vec![b"one".to_vec(), b"two".to_vec()]),
                ("sub@other".to_string(), vec![b"xyz".to_vec()]),
            ]
        );
        for at in 8..data.len() {
            let mut damaged = data.clone();
            damaged[at] ^= 0x21;
            std::fs::write(&data_path, &damaged).expect("write");
            // Either detected, or a flipped payload or padding byte (the format has no
            // checksum over those).
            if let Ok(read) = read_overflow(&index_path, &data_path) {
                let unchecked = [8usize, 43, 78].iter().any(|&r| {
                    (r + 4..r + 8).contains(&at)
                        || (r + 17..r + 24).contains(&at)
                        || (r + 32..r + 35).contains(&at)
                });
                assert!(unchecked, "flip at {at} passed: {read:?}");
            }
        }
        for cut in 0..data.len() {
            std::fs::write(&data_path, &data[..cut]).expect("write");
            assert!(
                read_overflow(&index_path, &data_path).is_err(),
                "cut at {cut}"
            );
        }
    }
}

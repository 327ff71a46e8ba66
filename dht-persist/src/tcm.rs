//! Reader for the reference system's `.tcm` dump files (format version 0), so a data directory of
//! the original dhtnode can be imported.
//!
//! Layout (all integers little-endian `u64`): the format version, which must be `0`; then records
//! `key_len, key, value_len, value`; then an end marker `0` (an empty key). Bytes after the end
//! marker (the reference pads to 512 bytes when writing with O_DIRECT) are ignored.
//!
//! Keys are 16 hex characters (either case). As in the reference, an 8-byte key is taken as a raw
//! little-endian `u64` (its compatibility hack). Any other key is invalid: counted and skipped.
//! Empty values and values longer than `max_value_bytes` are counted and skipped. A file that ends
//! before the end marker keeps the records read so far and is reported as truncated.
//!
//! Nothing is allocated from a length field before it is bounded: keys longer than
//! [`MAX_KEY_LEN`] and values longer than `max_value_bytes` are skipped by streaming through a
//! small buffer, and value buffers only grow as far as the input really goes.

use std::io::{self, BufReader, Read};
use thiserror::Error;

/// The only `.tcm` format version.
pub const TCM_VERSION: u64 = 0;
/// Keys longer than this are invalid and skipped without being read into memory.
pub const MAX_KEY_LEN: u64 = 64;
/// The read buffer [`read_tcm`] puts in front of its input.
pub const TCM_READ_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// What an import of a `.tcm` file found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcmReport {
    /// Records handed to the caller.
    pub loaded: u64,
    /// Records skipped because the key is neither 16 hex characters nor 8 raw bytes.
    pub invalid_keys: u64,
    /// Records skipped because the value is empty.
    pub empty_values: u64,
    /// Records skipped because the value is longer than `max_value_bytes`.
    pub too_large: u64,
    /// The file ended before its end marker (records read until then were handed out).
    pub truncated: bool,
    /// Bytes consumed, up to and including the end marker (or the end of a truncated file).
    pub bytes_read: u64,
}

/// Why a `.tcm` file could not be read at all.
#[derive(Debug, Error)]
#[error("{problem} (at byte {offset})")]
pub struct TcmError {
    pub offset: u64,
    pub problem: TcmProblem,
}

#[derive(Debug, Error)]
pub enum TcmProblem {
    #[error("unsupported .tcm version {0} (only version 0 is known)")]
    UnsupportedVersion(u64),
    #[error("file too short for the .tcm version field")]
    TooShort,
    #[error("read error: {0}")]
    Io(io::Error),
}

/// Reads a `.tcm` file record by record (see the module doc).
#[derive(Debug)]
pub struct TcmReader<R: Read> {
    input: R,
    max_value_bytes: usize,
    offset: u64,
    value: Vec<u8>,
    report: TcmReport,
    done: bool,
}

enum Field {
    Read,
    Eof,
}

impl<R: Read> TcmReader<R> {
    /// Reads and checks the version. Put a large `BufReader` in front of a file.
    pub fn new(mut input: R, max_value_bytes: usize) -> Result<TcmReader<R>, TcmError> {
        let mut version = [0u8; 8];
        match input.read_exact(&mut version) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(TcmError {
                    offset: 0,
                    problem: TcmProblem::TooShort,
                })
            }
            Err(err) => {
                return Err(TcmError {
                    offset: 0,
                    problem: TcmProblem::Io(err),
                })
            }
        }
        let version = u64::from_le_bytes(version);
        if version != TCM_VERSION {
            return Err(TcmError {
                offset: 0,
                problem: TcmProblem::UnsupportedVersion(version),
            });
        }
        Ok(TcmReader {
            input,
            max_value_bytes,
            offset: 8,
            value: Vec::new(),
            report: TcmReport {
                bytes_read: 8,
                ..TcmReport::default()
            },
            done: false,
        })
    }

    /// The counts so far (complete once [`next_record`](Self::next_record) returned `Ok(None)`).
    pub fn report(&self) -> TcmReport {
        TcmReport {
            bytes_read: self.offset,
            ..self.report
        }
    }

    /// The next valid record; `Ok(None)` at the end marker or at a premature end of the file
    /// (then [`report`](Self::report) says `truncated`). Invalid records are counted and passed
    /// over.
    pub fn next_record(&mut self) -> Result<Option<(u64, &[u8])>, TcmError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(key_len) = self.read_u64()? else {
                return Ok(None);
            };
            if key_len == 0 {
                self.done = true;
                return Ok(None);
            }
            let mut key_bytes = [0u8; MAX_KEY_LEN as usize];
            let key = if key_len <= MAX_KEY_LEN {
                let key_bytes = &mut key_bytes[..key_len as usize];
                if let Field::Eof = self.read_exact(key_bytes)? {
                    return Ok(None);
                }
                parse_key(key_bytes)
            } else {
                if let Field::Eof = self.skip(key_len)? {
                    return Ok(None);
                }
                None
            };
            let Some(value_len) = self.read_u64()? else {
                return Ok(None);
            };
            let fits = value_len <= self.max_value_bytes as u64;
            if key.is_some() && value_len != 0 && fits {
                self.value.clear();
                let got = (&mut self.input)
                    .take(value_len)
                    .read_to_end(&mut self.value)
                    .map_err(|err| self.io_error(err))?;
                self.offset += got as u64;
                if got as u64 != value_len {
                    return Ok(self.truncated());
                }
            } else if let Field::Eof = self.skip(value_len)? {
                return Ok(None);
            }
            match key {
                None => self.report.invalid_keys += 1,
                Some(_) if value_len == 0 => self.report.empty_values += 1,
                Some(_) if !fits => self.report.too_large += 1,
                Some(key) => {
                    self.report.loaded += 1;
                    return Ok(Some((key, &self.value)));
                }
            }
        }
    }

    fn truncated(&mut self) -> Option<(u64, &[u8])> {
        self.report.truncated = true;
        self.done = true;
        None
    }

    fn io_error(&self, err: io::Error) -> TcmError {
        TcmError {
            offset: self.offset,
            problem: TcmProblem::Io(err),
        }
    }

    /// `None` (and the report marked truncated) when the file ends inside the field.
    fn read_u64(&mut self) -> Result<Option<u64>, TcmError> {
        let mut word = [0u8; 8];
        Ok(match self.read_exact(&mut word)? {
            Field::Read => Some(u64::from_le_bytes(word)),
            Field::Eof => None,
        })
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<Field, TcmError> {
        match self.input.read_exact(buf) {
            Ok(()) => {
                self.offset += buf.len() as u64;
                Ok(Field::Read)
            }
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                self.truncated();
                Ok(Field::Eof)
            }
            Err(err) => Err(self.io_error(err)),
        }
    }

    /// Passes over `len` bytes through a small buffer.
    fn skip(&mut self, len: u64) -> Result<Field, TcmError> {
        let skipped = io::copy(&mut (&mut self.input).take(len), &mut io::sink())
            .map_err(|err| self.io_error(err))?;
        self.offset += skipped;
        if skipped == len {
            Ok(Field::Read)
        } else {
            self.truncated();
            Ok(Field::Eof)
        }
    }
}

/// 16 hex characters (either case), or 8 raw bytes taken as a little-endian `u64`.
pub fn parse_key(key: &[u8]) -> Option<u64> {
    match key.len() {
        16 => key.iter().try_fold(0u64, |acc, &byte| {
            let digit = (byte as char).to_digit(16)?;
            Some(acc << 4 | u64::from(digit))
        }),
        8 => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(key);
            Some(u64::from_le_bytes(raw))
        }
        _ => None,
    }
}

/// Reads a whole `.tcm` file through a [`TCM_READ_BUFFER_BYTES`] buffer, handing every valid
/// record to `on_record`.
pub fn read_tcm(
    reader: impl Read,
    max_value_bytes: usize,
    mut on_record: impl FnMut(u64, &[u8]),
) -> Result<TcmReport, TcmError> {
    let mut tcm = TcmReader::new(
        BufReader::with_capacity(TCM_READ_BUFFER_BYTES, reader),
        max_value_bytes,
    )?;
    while let Some((key, value)) = tcm.next_record()? {
        on_record(key, value);
    }
    Ok(tcm.report())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sample(name: &str) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/dht-tcm")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }

    type Records = Vec<(u64, Vec<u8>)>;

    fn load(bytes: &[u8], max: usize) -> Result<(Records, TcmReport), TcmError> {
        let mut got = Vec::new();
        let report = read_tcm(bytes, max, |key, value| got.push((key, value.to_vec())))?;
        Ok((got, report))
    }

    fn sample_records() -> Vec<(u64, Vec<u8>)> {
        vec![
            (0xa, b"value a".to_vec()),
            (0xb, b"value b".to_vec()),
            (0xdead_beef, b"hello world".to_vec()),
        ]
    }

    /// Builds a `.tcm` file from raw (key, value) byte strings.
    fn tcm(version: u64, records: &[(&[u8], &[u8])], end_marker: bool) -> Vec<u8> {
        let mut out = version.to_le_bytes().to_vec();
        for (key, value) in records {
            out.extend_from_slice(&(key.len() as u64).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value);
        }
        if end_marker {
            out.extend_from_slice(&0u64.to_le_bytes());
        }
        out
    }

    #[test]
    fn example_sample_loads_three_records() {
        let (got, report) = load(&sample("example.tcm"), 65536).unwrap();
        assert_eq!(got, sample_records());
        assert_eq!(
            report,
            TcmReport {
                loaded: 3,
                invalid_keys: 1,
                empty_values: 1,
                too_large: 0,
                truncated: false,
                bytes_read: sample("example.tcm").len() as u64,
            }
        );
    }

    #[test]
    fn truncated_sample_keeps_records_and_says_truncated() {
        let (got, report) = load(&sample("truncated.tcm"), 65536).unwrap();
        assert_eq!(got, sample_records());
        assert!(report.truncated);
        assert_eq!(
            (report.loaded, report.invalid_keys, report.empty_values),
            (3, 1, 1)
        );
    }

    #[test]
    fn version_other_than_zero_is_rejected_with_or_without_trailer() {
        for end_marker in [true, false] {
            let file = tcm(1, &[(b"000000000000000a", b"v")], end_marker);
            let err = load(&file, 100).unwrap_err();
            assert!(matches!(err.problem, TcmProblem::UnsupportedVersion(1)));
            assert_eq!(
                err.to_string(),
                "unsupported .tcm version 1 (only version 0 is known) (at byte 0)"
            );
        }
        assert!(matches!(
            load(&[0, 0, 0], 100).unwrap_err().problem,
            TcmProblem::TooShort
        ));
    }

    #[test]
    fn version_zero_without_end_marker_is_truncated_with_end_marker_complete() {
        let records: [(&[u8], &[u8]); 3] = [
            (b"0000000000000001", b"one"),
            (b"0000000000000002", b"two"),
            (b"0000000000000003", b"three"),
        ];
        let (got, report) = load(&tcm(0, &records, true), 100).unwrap();
        assert_eq!(got.len(), 3);
        assert!(!report.truncated);
        let (got, report) = load(&tcm(0, &records, false), 100).unwrap();
        assert_eq!(got.len(), 3);
        assert!(report.truncated);
        // Cut inside a record: the records before it stay.
        let full = tcm(0, &records, true);
        for cut in 8..full.len() - 8 {
            let (got, report) = load(&full[..cut], 100).unwrap();
            assert!(report.truncated, "cut at {cut}");
            assert!(got.len() < 3);
        }
    }

    #[test]
    fn padding_after_the_end_marker_is_ignored() {
        let mut file = tcm(0, &[(b"00000000000000FF", b"v")], true);
        file.resize(512, 0xaa);
        let (got, report) = load(&file, 100).unwrap();
        assert_eq!(got, vec![(0xff, b"v".to_vec())]);
        assert!(!report.truncated);
    }

    #[test]
    fn keys_of_wrong_length_or_not_hex_are_skipped() {
        let records: [(&[u8], &[u8]); 7] = [
            (b"000000000000001", b"15 chars"),
            (b"00000000000000001", b"17 chars"),
            (b"000000000000000/", b"slash"),
            (b"+00000000000000a", b"plus sign"),
            (b"00000000000000aB", b"mixed case ok"),
            (&0x1122_3344_5566_7788u64.to_le_bytes(), b"raw 8-byte key"),
            (&[b'0'; 65], b"long key"),
        ];
        let (got, report) = load(&tcm(0, &records, true), 100).unwrap();
        assert_eq!(
            got,
            vec![
                (0xab, b"mixed case ok".to_vec()),
                (0x1122_3344_5566_7788, b"raw 8-byte key".to_vec())
            ]
        );
        assert_eq!(report.invalid_keys, 5);
    }

    #[test]
    fn value_of_exactly_max_loads_and_one_more_is_skipped() {
        let max = 1000;
        let exact = vec![b'x'; max];
        let over = vec![b'y'; max + 1];
        let records: [(&[u8], &[u8]); 3] = [
            (b"0000000000000001", &exact),
            (b"0000000000000002", &over),
            (b"0000000000000003", b"after"),
        ];
        let (got, report) = load(&tcm(0, &records, true), max).unwrap();
        assert_eq!(got, vec![(1, exact.clone()), (3, b"after".to_vec())]);
        assert_eq!(report.too_large, 1);
    }

    #[test]
    fn empty_values_are_discarded_also_in_the_middle() {
        let records: [(&[u8], &[u8]); 4] = [
            (b"0000000000000000", b""),
            (b"0000000000000001", b"a"),
            (b"0000000000000002", b""),
            (b"0000000000000003", b"c"),
        ];
        let (got, report) = load(&tcm(0, &records, true), 100).unwrap();
        assert_eq!(got, vec![(1, b"a".to_vec()), (3, b"c".to_vec())]);
        assert_eq!(report.empty_values, 2);
    }

    #[test]
    fn huge_length_fields_do_not_allocate() {
        // A key length and a value length near u64::MAX on a tiny file: skipped, truncated.
        let mut file = 0u64.to_le_bytes().to_vec();
        file.extend_from_slice(&(u64::MAX - 1).to_le_bytes());
        file.extend_from_slice(b"0123");
        let (got, report) = load(&file, 100).unwrap();
        assert!(got.is_empty() && report.truncated);

        let mut file = 0u64.to_le_bytes().to_vec();
        file.extend_from_slice(&16u64.to_le_bytes());
        file.extend_from_slice(b"0000000000000001");
        file.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        file.extend_from_slice(b"abc");
        let (got, report) = load(&file, usize::MAX).unwrap();
        assert!(got.is_empty() && report.truncated);
    }
}

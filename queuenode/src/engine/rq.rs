//! Reader for the reference node's ring dump files, `<storage name>.rq` (`queue.md` §4.2):
//! `u32 record count`, `u64 data bytes`, then that many bytes of records, each a `u64 length` and
//! the value, little-endian. The reader checks every length against the data that is there and
//! never panics on any input; import into a ring is the caller's business.

/// Largest dump accepted (the reference's rings were at most a few GB).
pub const MAX_DUMP_BYTES: u64 = 1 << 36;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RqError {
    #[error("file of {0} bytes is shorter than the 12-byte header")]
    TooShort(usize),
    #[error("header says {declared} data bytes, the file holds {present}")]
    DataLength { declared: u64, present: u64 },
    #[error("record {index} declares {len} bytes, only {left} left")]
    RecordOverrun { index: u64, len: u64, left: u64 },
    #[error("header says {declared} records, the data holds {found}")]
    RecordCount { declared: u64, found: u64 },
    #[error("record {index} is empty")]
    EmptyRecord { index: u64 },
}

/// Decodes a whole `.rq` file into its values, oldest first.
pub fn decode(bytes: &[u8]) -> Result<Vec<Vec<u8>>, RqError> {
    if bytes.len() < 12 {
        return Err(RqError::TooShort(bytes.len()));
    }
    let count = u64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[4..12]);
    let declared = u64::from_le_bytes(n);
    let data = &bytes[12..];
    if declared != data.len() as u64 || declared > MAX_DUMP_BYTES {
        return Err(RqError::DataLength {
            declared,
            present: data.len() as u64,
        });
    }
    let mut values = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let index = values.len() as u64;
        if index >= count {
            return Err(RqError::RecordCount {
                declared: count,
                found: index + 1,
            });
        }
        if rest.len() < 8 {
            return Err(RqError::RecordOverrun {
                index,
                len: 8,
                left: rest.len() as u64,
            });
        }
        n.copy_from_slice(&rest[..8]);
        let len = u64::from_le_bytes(n);
        let left = (rest.len() - 8) as u64;
        if len > left {
            return Err(RqError::RecordOverrun { index, len, left });
        }
        if len == 0 {
            return Err(RqError::EmptyRecord { index });
        }
        values.push(rest[8..8 + len as usize].to_vec());
        rest = &rest[8 + len as usize..];
    }
    if values.len() as u64 != count {
        return Err(RqError::RecordCount {
            declared: count,
            found: values.len() as u64,
        });
    }
    Ok(values)
}

/// Encodes values in the `.rq` format (for tests and for exporting to the reference).
pub fn encode(values: &[&[u8]]) -> Vec<u8> {
    let data: u64 = values.iter().map(|v| 8 + v.len() as u64).sum();
    let mut out = Vec::with_capacity(12 + data as usize);
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    out.extend_from_slice(&data.to_le_bytes());
    for value in values {
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_truncation_is_an_error() {
        let bytes = encode(&[b"foo", b"barbaz", b"q"]);
        assert_eq!(
            decode(&bytes),
            Ok(vec![b"foo".to_vec(), b"barbaz".to_vec(), b"q".to_vec()])
        );
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(decode(&encode(&[])), Ok(vec![]));
    }

    #[test]
    fn count_mismatch_and_garbage_are_errors_not_panics() {
        let mut bytes = encode(&[b"foo"]);
        bytes[0] = 2;
        assert!(matches!(decode(&bytes), Err(RqError::RecordCount { .. })));
        bytes[0] = 0;
        assert!(matches!(decode(&bytes), Err(RqError::RecordCount { .. })));
        let mut state = 0x1234_5678_u32;
        for _ in 0..2000 {
            let len = (state % 64) as usize;
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let _ = decode(&junk);
        }
    }
}

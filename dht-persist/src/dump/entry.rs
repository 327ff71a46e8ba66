//! What a record of a dump of format version 2 holds (docs/formats.md, "dht dump file"): the
//! batch record's value starts with a `u8` kind, then a `u64` version; a record (kind 0) has its
//! value after that, a tombstone (kind 1) the `u64` Unix second it was stored. Format version 1
//! (every dump before record versions) holds plain values, which read as records of version 0.

/// The dump format version whose records carry versions and which holds tombstones.
pub const VERSIONED_FORMAT_VERSION: u32 = 2;
const KIND_RECORD: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;
/// Bytes before a record's value in a version 2 dump: kind and version.
pub const ENTRY_PREFIX_LEN: usize = 9;

/// One entry of a dump: a record with its version, or a tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpEntry<'a> {
    Record { version: u64, value: &'a [u8] },
    Tombstone { version: u64, stored_unix_s: u64 },
}

impl<'a> DumpEntry<'a> {
    /// Reads a batch record's value from a dump of `format_version` (1 or 2).
    pub fn decode(format_version: u32, raw: &'a [u8]) -> Result<DumpEntry<'a>, String> {
        if format_version < VERSIONED_FORMAT_VERSION {
            return Ok(DumpEntry::Record {
                version: 0,
                value: raw,
            });
        }
        let Some((&kind, rest)) = raw.split_first() else {
            return Err("an entry of 0 bytes (at least its kind and version)".into());
        };
        let Some((version, rest)) = rest.split_first_chunk::<8>() else {
            return Err(format!(
                "an entry of {} bytes, shorter than its kind and version",
                raw.len()
            ));
        };
        let version = u64::from_le_bytes(*version);
        match kind {
            KIND_RECORD => Ok(DumpEntry::Record {
                version,
                value: rest,
            }),
            KIND_TOMBSTONE => {
                let stored: [u8; 8] = rest
                    .try_into()
                    .map_err(|_| format!("a tombstone of {} bytes, not 17", raw.len()))?;
                Ok(DumpEntry::Tombstone {
                    version,
                    stored_unix_s: u64::from_le_bytes(stored),
                })
            }
            other => Err(format!("unknown entry kind {other}")),
        }
    }

    /// Bytes the entry's batch value takes in a version 2 dump.
    pub fn encoded_len(&self) -> usize {
        match self {
            DumpEntry::Record { value, .. } => ENTRY_PREFIX_LEN + value.len(),
            DumpEntry::Tombstone { .. } => ENTRY_PREFIX_LEN + 8,
        }
    }

    /// Appends the entry under `key` to `raw`, in the batch record layout of a version 2 dump
    /// (`u64 key`, `u32 value_len`, value).
    pub fn append_to(&self, raw: &mut Vec<u8>, key: u64) {
        raw.extend_from_slice(&key.to_le_bytes());
        raw.extend_from_slice(&(self.encoded_len() as u32).to_le_bytes());
        match *self {
            DumpEntry::Record { version, value } => {
                raw.push(KIND_RECORD);
                raw.extend_from_slice(&version.to_le_bytes());
                raw.extend_from_slice(value);
            }
            DumpEntry::Tombstone {
                version,
                stored_unix_s,
            } => {
                raw.push(KIND_TOMBSTONE);
                raw.extend_from_slice(&version.to_le_bytes());
                raw.extend_from_slice(&stored_unix_s.to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_core::protocol::batch::{decode_uncompressed_batch, encode_uncompressed_batch};

    #[test]
    fn entries_round_trip_and_version_1_values_are_records_of_version_0() {
        let entries = [
            DumpEntry::Record {
                version: 7,
                value: b"value",
            },
            DumpEntry::Tombstone {
                version: 9,
                stored_unix_s: 1_700_000_000,
            },
        ];
        let mut raw = Vec::new();
        for (key, entry) in entries.iter().enumerate() {
            entry.append_to(&mut raw, key as u64);
        }
        let mut batch = Vec::new();
        encode_uncompressed_batch(&raw, 2, &mut batch);
        let decoded: Vec<DumpEntry<'_>> = decode_uncompressed_batch(&batch)
            .unwrap()
            .map(|(_, value)| DumpEntry::decode(VERSIONED_FORMAT_VERSION, value).unwrap())
            .collect();
        assert_eq!(decoded, entries);
        assert_eq!(
            DumpEntry::decode(1, b"plain"),
            Ok(DumpEntry::Record {
                version: 0,
                value: b"plain"
            })
        );
        assert!(DumpEntry::decode(2, &[0; 5]).is_err());
        assert!(DumpEntry::decode(2, &[1; 10]).is_err(), "short tombstone");
        assert!(DumpEntry::decode(2, &[7; 9]).is_err(), "unknown kind");
    }
}

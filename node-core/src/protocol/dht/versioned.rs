//! The versioned dht requests (docs/protocol.md §6.11): PutVersion, RemoveVersion and
//! GetWithVersion, whose records carry a `u64` version a node compares (keep the higher), and the
//! Mirror stream (a channel's changes with their versions, after an optional refresh of
//! everything the node holds), which a replica catches up with. Node and client share these.

use super::super::batch::{BatchBuilder, PushOutcome};
use super::super::wire::{put_u32, put_u64, put_u8, Reader, WireError};
use super::{ITEM_MIRROR_CHANGED, ITEM_MIRROR_OVERFLOW, ITEM_MIRROR_REMOVED};
use super::{ITEM_MIRROR_REFRESH_BATCH, ITEM_MIRROR_REFRESH_DONE, ITEM_MIRROR_REFRESH_STARTED};

/// Bytes of a version: a record's in a refresh batch comes before its value.
pub const VERSION_LEN: usize = 8;

/// PutVersion: `channel`, `u64 key`, `u64 version`, then the value as the rest of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutVersionRequest<'a> {
    pub channel: &'a str,
    pub key: u64,
    pub version: u64,
    pub value: &'a [u8],
}

impl<'a> PutVersionRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        super::put_str8(out, self.channel);
        put_u64(out, self.key);
        put_u64(out, self.version);
        out.extend_from_slice(self.value);
    }

    pub fn decode(body: &'a [u8]) -> Result<PutVersionRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let channel = reader.str8("channel")?;
        let key = reader.u64("key")?;
        let version = reader.u64("version")?;
        Ok(PutVersionRequest {
            channel,
            key,
            version,
            value: reader.rest(),
        })
    }
}

/// RemoveVersion: `channel`, `u64 key`, `u64 version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoveVersionRequest<'a> {
    pub channel: &'a str,
    pub key: u64,
    pub version: u64,
}

impl<'a> RemoveVersionRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        super::put_str8(out, self.channel);
        put_u64(out, self.key);
        put_u64(out, self.version);
    }

    pub fn decode(body: &'a [u8]) -> Result<RemoveVersionRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let request = RemoveVersionRequest {
            channel: reader.str8("channel")?,
            key: reader.u64("key")?,
            version: reader.u64("version")?,
        };
        reader.finish()?;
        Ok(request)
    }
}

/// The Ok of PutVersion and RemoveVersion: `u8 applied` (1: the write was newer than what the
/// node held and is applied; 0: the node kept what it had, which is as new or newer).
pub fn encode_applied(out: &mut Vec<u8>, applied: bool) {
    out.extend_from_slice(&applied_body(applied));
}

/// The body [`encode_applied`] writes, as an array: a node answers from its stack.
pub fn applied_body(applied: bool) -> [u8; 1] {
    [u8::from(applied)]
}

pub fn decode_applied(body: &[u8]) -> Result<bool, WireError> {
    let mut reader = Reader::new(body);
    let applied = reader.bool("applied")?;
    reader.finish()?;
    Ok(applied)
}

/// GetWithVersion's answer: Ok with `u64 version` and the value as the rest; NotFound with `u64
/// version` (the key is removed: a tombstone of that version) or an empty body (nothing held).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionedLookup<'a> {
    Found { version: u64, value: &'a [u8] },
    Tombstone { version: u64 },
    Absent,
}

/// The Ok body of GetWithVersion: `u64 version`, value.
pub fn encode_versioned_value(out: &mut Vec<u8>, version: u64, value: &[u8]) {
    put_u64(out, version);
    out.extend_from_slice(value);
}

/// Decodes GetWithVersion's Ok (`found` true) or NotFound (`found` false) body.
pub fn decode_versioned_lookup(found: bool, body: &[u8]) -> Result<VersionedLookup<'_>, WireError> {
    let mut reader = Reader::new(body);
    if found {
        let version = reader.u64("version")?;
        return Ok(VersionedLookup::Found {
            version,
            value: reader.rest(),
        });
    }
    if body.is_empty() {
        return Ok(VersionedLookup::Absent);
    }
    let version = reader.u64("tombstone version")?;
    reader.finish()?;
    Ok(VersionedLookup::Tombstone { version })
}

/// Mirror: `channel`, `u8 flags` (bit 0: start with a refresh of everything the node holds; the
/// other bits must be 0), `u32 periodic_refresh_s` (0: no refresh after the first; else a new
/// refresh starts this many seconds after the last one started, once it has finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorRequest<'a> {
    pub channel: &'a str,
    pub initial_refresh: bool,
    pub periodic_refresh_s: u32,
}

/// The longest period between a Mirror's refreshes: a week.
pub const MAX_PERIODIC_REFRESH_S: u32 = 7 * 24 * 3600;

impl<'a> MirrorRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        super::put_str8(out, self.channel);
        put_u8(out, u8::from(self.initial_refresh));
        put_u32(out, self.periodic_refresh_s);
    }

    pub fn decode(body: &'a [u8]) -> Result<MirrorRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let channel = reader.str8("channel")?;
        let flags = reader.u8("flags")?;
        if flags & !1 != 0 {
            return Err(WireError::Invalid {
                field: "flags",
                reason: "unknown flag bits set (only bit 0, initial refresh, is defined)",
            });
        }
        let periodic_refresh_s = reader.u32("periodic_refresh_s")?;
        if periodic_refresh_s > MAX_PERIODIC_REFRESH_S {
            return Err(WireError::Invalid {
                field: "periodic_refresh_s",
                reason: "more than a week (604800)",
            });
        }
        reader.finish()?;
        Ok(MirrorRequest {
            channel,
            initial_refresh: flags & 1 == 1,
            periodic_refresh_s,
        })
    }
}

/// A refresh's size: `u64 records`, `u64 tombstones` (RefreshStarted: what the channel holds as
/// the refresh begins; RefreshDone: what the refresh sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefreshCounts {
    pub records: u64,
    pub tombstones: u64,
}

/// One item of a Mirror stream (docs/protocol.md §6.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorItem<'a> {
    /// 1: `u64 key`, `u64 version`, the value as the rest: a write (or a refreshed record too
    /// large for a batch).
    Changed {
        key: u64,
        version: u64,
        value: &'a [u8],
    },
    /// 2: `u64 key`, `u64 version`: a removal; the version of its tombstone, 0 for a Remove
    /// without a version.
    Removed { key: u64, version: u64 },
    /// 3: `u64 lost`: changes this mirror lost because its queue was full.
    Overflow { lost: u64 },
    /// 4: a refresh begins.
    RefreshStarted(RefreshCounts),
    /// 5: an LZ4 batch (§4) of refreshed records: see [`RefreshRecord`].
    RefreshBatch { batch: &'a [u8] },
    /// 6: the refresh has sent everything.
    RefreshDone(RefreshCounts),
}

impl<'a> MirrorItem<'a> {
    pub fn code(&self) -> u8 {
        match self {
            MirrorItem::Changed { .. } => ITEM_MIRROR_CHANGED,
            MirrorItem::Removed { .. } => ITEM_MIRROR_REMOVED,
            MirrorItem::Overflow { .. } => ITEM_MIRROR_OVERFLOW,
            MirrorItem::RefreshStarted(_) => ITEM_MIRROR_REFRESH_STARTED,
            MirrorItem::RefreshBatch { .. } => ITEM_MIRROR_REFRESH_BATCH,
            MirrorItem::RefreshDone(_) => ITEM_MIRROR_REFRESH_DONE,
        }
    }

    pub fn encode_body(&self, out: &mut Vec<u8>) {
        match *self {
            MirrorItem::Changed {
                key,
                version,
                value,
            } => {
                put_u64(out, key);
                put_u64(out, version);
                out.extend_from_slice(value);
            }
            MirrorItem::Removed { key, version } => {
                put_u64(out, key);
                put_u64(out, version);
            }
            MirrorItem::Overflow { lost } => put_u64(out, lost),
            MirrorItem::RefreshStarted(counts) | MirrorItem::RefreshDone(counts) => {
                put_u64(out, counts.records);
                put_u64(out, counts.tombstones);
            }
            MirrorItem::RefreshBatch { batch } => out.extend_from_slice(batch),
        }
    }

    pub fn decode(code: u8, body: &'a [u8]) -> Result<MirrorItem<'a>, WireError> {
        let mut reader = Reader::new(body);
        let item = match code {
            ITEM_MIRROR_CHANGED => {
                let key = reader.u64("key")?;
                let version = reader.u64("version")?;
                MirrorItem::Changed {
                    key,
                    version,
                    value: reader.rest(),
                }
            }
            ITEM_MIRROR_REMOVED => MirrorItem::Removed {
                key: reader.u64("key")?,
                version: reader.u64("version")?,
            },
            ITEM_MIRROR_OVERFLOW => MirrorItem::Overflow {
                lost: reader.u64("lost")?,
            },
            ITEM_MIRROR_REFRESH_STARTED => MirrorItem::RefreshStarted(read_counts(&mut reader)?),
            ITEM_MIRROR_REFRESH_BATCH => MirrorItem::RefreshBatch {
                batch: reader.rest(),
            },
            ITEM_MIRROR_REFRESH_DONE => MirrorItem::RefreshDone(read_counts(&mut reader)?),
            _ => {
                return Err(WireError::Invalid {
                    field: "item code",
                    reason: "not a Mirror item code",
                })
            }
        };
        reader.finish()?;
        Ok(item)
    }
}

fn read_counts(reader: &mut Reader<'_>) -> Result<RefreshCounts, WireError> {
    Ok(RefreshCounts {
        records: reader.u64("records")?,
        tombstones: reader.u64("tombstones")?,
    })
}

/// One record of a refresh batch: the batch record's value is `u64 version` followed by the
/// record's value (at least one byte), or the version alone for a tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRecord<'a> {
    Record { version: u64, value: &'a [u8] },
    Tombstone { version: u64 },
}

impl<'a> RefreshRecord<'a> {
    /// Reads a batch record's value (`(key, value)` from `BatchRecords`).
    pub fn decode(batch_value: &'a [u8]) -> Result<RefreshRecord<'a>, WireError> {
        let mut reader = Reader::new(batch_value);
        let version = reader.u64("refresh record version")?;
        let value = reader.rest();
        Ok(if value.is_empty() {
            RefreshRecord::Tombstone { version }
        } else {
            RefreshRecord::Record { version, value }
        })
    }

    /// Adds this record under `key` to `batch`, as a refresh batch lays it out.
    pub fn push_to(&self, batch: &mut BatchBuilder, key: u64) -> PushOutcome {
        match *self {
            RefreshRecord::Record { version, value } => {
                batch.push_with_prefix(key, &version.to_le_bytes(), value)
            }
            RefreshRecord::Tombstone { version } => batch.push(key, &version.to_le_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::batch::decode_batch;
    use super::*;

    #[test]
    fn versioned_requests_round_trip() {
        let mut out = Vec::new();
        let put = PutVersionRequest {
            channel: "ch",
            key: 3,
            version: 9,
            value: b"v",
        };
        put.encode(&mut out);
        assert_eq!(PutVersionRequest::decode(&out), Ok(put));
        assert!(PutVersionRequest::decode(&out[..out.len() - 2]).is_err());
        out.clear();
        let remove = RemoveVersionRequest {
            channel: "ch",
            key: 3,
            version: u64::MAX,
        };
        remove.encode(&mut out);
        assert_eq!(RemoveVersionRequest::decode(&out), Ok(remove));
        out.push(0);
        assert!(RemoveVersionRequest::decode(&out).is_err());
        out.clear();
        encode_applied(&mut out, true);
        assert_eq!(decode_applied(&out), Ok(true));
        assert!(decode_applied(&[2]).is_err());
        assert!(decode_applied(&[1, 0]).is_err());
    }

    #[test]
    fn lookups_tell_records_tombstones_and_absence_apart() {
        let mut out = Vec::new();
        encode_versioned_value(&mut out, 7, b"abc");
        assert_eq!(
            decode_versioned_lookup(true, &out),
            Ok(VersionedLookup::Found {
                version: 7,
                value: b"abc"
            })
        );
        assert_eq!(
            decode_versioned_lookup(false, &8u64.to_le_bytes()),
            Ok(VersionedLookup::Tombstone { version: 8 })
        );
        assert_eq!(
            decode_versioned_lookup(false, &[]),
            Ok(VersionedLookup::Absent)
        );
        assert!(decode_versioned_lookup(false, &[1, 2, 3]).is_err());
    }

    #[test]
    fn mirror_requests_and_items_round_trip() {
        let mut out = Vec::new();
        let request = MirrorRequest {
            channel: "ch",
            initial_refresh: true,
            periodic_refresh_s: 60,
        };
        request.encode(&mut out);
        assert_eq!(MirrorRequest::decode(&out), Ok(request));
        out[3] = 2;
        assert!(MirrorRequest::decode(&out).is_err(), "unknown flag bit");
        let counts = RefreshCounts {
            records: 1,
            tombstones: 2,
        };
        for item in [
            MirrorItem::Changed {
                key: 1,
                version: 2,
                value: b"v",
            },
            MirrorItem::Removed { key: 1, version: 5 },
            MirrorItem::Overflow { lost: 4 },
            MirrorItem::RefreshStarted(counts),
            MirrorItem::RefreshBatch { batch: b"xyz" },
            MirrorItem::RefreshDone(counts),
        ] {
            out.clear();
            item.encode_body(&mut out);
            assert_eq!(MirrorItem::decode(item.code(), &out), Ok(item));
        }
        assert!(MirrorItem::decode(99, &[]).is_err());
        assert!(MirrorItem::decode(ITEM_MIRROR_REMOVED, &[0; 17]).is_err());
    }

    #[test]
    fn refresh_batches_carry_versions_and_tombstones() {
        let mut batch = BatchBuilder::new(1024);
        let record = RefreshRecord::Record {
            version: 5,
            value: b"value",
        };
        let tombstone = RefreshRecord::Tombstone { version: 6 };
        assert_eq!(record.push_to(&mut batch, 1), PushOutcome::Added);
        assert_eq!(tombstone.push_to(&mut batch, 2), PushOutcome::Added);
        let mut encoded = Vec::new();
        batch.finish_into(&mut encoded);
        let mut scratch = Vec::new();
        let records: Vec<(u64, RefreshRecord<'_>)> = decode_batch(&encoded, &mut scratch)
            .unwrap()
            .map(|(key, value)| (key, RefreshRecord::decode(value).unwrap()))
            .collect();
        assert_eq!(records, vec![(1, record), (2, tombstone)]);
        assert!(RefreshRecord::decode(&[1, 2]).is_err());
    }
}

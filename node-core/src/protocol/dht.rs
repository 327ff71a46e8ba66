//! The dht node's part of the protocol: its request codes, the layout of each request and reply
//! body (docs/protocol.md §6), the hash-range rule that decides which node owns a key, and the
//! value hash that Update compares. Node and client both use these, so they cannot disagree.

pub use super::channels::{
    decode_channel, decode_channel_names, encode_channel, encode_channel_names,
};
use super::wire::{put_bool, put_bytes, put_str8, put_u64, put_u8, Reader, WireError};
use super::RequestCode;

pub const PUT: RequestCode = RequestCode(16);
pub const GET: RequestCode = RequestCode(17);
pub const EXISTS: RequestCode = RequestCode(18);
pub const REMOVE: RequestCode = RequestCode(19);
pub const GET_ALL: RequestCode = RequestCode(20);
pub const GET_CHANNELS: RequestCode = RequestCode(21);
pub const GET_CHANNEL_SIZE: RequestCode = RequestCode(22);
pub const GET_SIZE: RequestCode = RequestCode(23);
pub const REMOVE_CHANNEL: RequestCode = RequestCode(24);
pub const GET_RESPONSIBLE_RANGE: RequestCode = RequestCode(25);
pub const PUT_BATCH: RequestCode = RequestCode(26);
pub const LISTEN: RequestCode = RequestCode(27);
pub const UPDATE: RequestCode = RequestCode(28);

/// The name of a dht request code, for logs and stats.
pub fn request_name(code: RequestCode) -> Option<&'static str> {
    Some(match code {
        PUT => "Put",
        GET => "Get",
        EXISTS => "Exists",
        REMOVE => "Remove",
        GET_ALL => "GetAll",
        GET_CHANNELS => "GetChannels",
        GET_CHANNEL_SIZE => "GetChannelSize",
        GET_SIZE => "GetSize",
        REMOVE_CHANNEL => "RemoveChannel",
        GET_RESPONSIBLE_RANGE => "GetResponsibleRange",
        PUT_BATCH => "PutBatch",
        LISTEN => "Listen",
        UPDATE => "Update",
        _ => return None,
    })
}

/// Item codes of a GetAll stream.
pub const ITEM_RECORD_BATCH: u8 = 1;
/// Item codes of a Listen stream.
pub const ITEM_CHANGED: u8 = 1;
pub const ITEM_REMOVED: u8 = 2;
pub const ITEM_OVERFLOW: u8 = 3;

/// The longest channel name. Names become file names, so they are short and plain.
pub const MAX_CHANNEL_NAME_LEN: usize = 100;
/// The longest value filter of a GetAll.
pub const MAX_FILTER_LEN: usize = 4096;

/// Whether `name` is a valid channel name: 1 to 100 characters of `[A-Za-z0-9_-]`.
pub fn valid_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

// ----- hash ranges ------------------------------------------------------------------------------

/// Where a key sits in the hash space: the key with its bits reversed (bit 0 ↔ bit 63), as the
/// reference system does, so that sequential keys (counters, timestamps) spread over all nodes
/// instead of piling onto the node that owns the low end.
pub fn hash_position(key: u64) -> u64 {
    key.reverse_bits()
}

/// A node's share of the hash space: the inclusive range `[min, max]` of hash positions.
/// `min > max` is the empty range (the reference's marker is `min = u64::MAX, max = 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashRange {
    pub min: u64,
    pub max: u64,
}

impl HashRange {
    pub const FULL: HashRange = HashRange {
        min: 0,
        max: u64::MAX,
    };
    pub const EMPTY: HashRange = HashRange {
        min: u64::MAX,
        max: 0,
    };

    pub fn new(min: u64, max: u64) -> HashRange {
        HashRange { min, max }
    }

    pub fn is_empty(&self) -> bool {
        self.min > self.max
    }

    /// Whether this range owns `key`: the one rule node and client share.
    pub fn is_responsible_for(&self, key: u64) -> bool {
        let position = hash_position(key);
        self.min <= position && position <= self.max
    }

    pub fn overlaps(&self, other: &HashRange) -> bool {
        !self.is_empty() && !other.is_empty() && self.min <= other.max && other.min <= self.max
    }

    /// Parses `MIN:MAX`, each as hex with an optional `0x` (the `--range` flag's form).
    pub fn parse(text: &str) -> Result<HashRange, String> {
        let (min, max) = text
            .split_once(':')
            .ok_or_else(|| format!("range {text:?} is not MIN:MAX"))?;
        let parse = |part: &str| {
            let digits = part
                .trim()
                .trim_start_matches("0x")
                .trim_start_matches("0X");
            if digits.is_empty() || digits.len() > 16 {
                return Err(format!("{part:?} is not a hex number of 1 to 16 digits"));
            }
            u64::from_str_radix(digits, 16).map_err(|_| format!("{part:?} is not a hex number"))
        };
        Ok(HashRange {
            min: parse(min)?,
            max: parse(max)?,
        })
    }
}

impl std::fmt::Display for HashRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:016x}:0x{:016x}", self.min, self.max)
    }
}

/// What is wrong with a set of node ranges that should tile the hash space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TilingProblem {
    /// Hash positions `[from, to]` belong to no node.
    Gap { from: u64, to: u64 },
    /// Nodes `first` and `second` (indexes) both own some positions.
    Overlap { first: usize, second: usize },
}

impl std::fmt::Display for TilingProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TilingProblem::Gap { from, to } => {
                write!(f, "no node owns hash positions 0x{from:016x}..0x{to:016x}")
            }
            TilingProblem::Overlap { first, second } => {
                write!(f, "nodes {first} and {second} own overlapping ranges")
            }
        }
    }
}

/// Lists the gaps and overlaps of `ranges` (empty ranges own nothing and are skipped).
pub fn tiling_problems(ranges: &[HashRange]) -> Vec<TilingProblem> {
    let mut problems = Vec::new();
    let mut sorted: Vec<(usize, HashRange)> = ranges
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, range)| !range.is_empty())
        .collect();
    sorted.sort_by_key(|(_, range)| (range.min, range.max));
    let mut next_unowned: Option<u64> = Some(0);
    let mut last_owner: Option<(usize, HashRange)> = None;
    for (index, range) in sorted {
        if let Some((owner, owner_range)) = last_owner {
            if owner_range.overlaps(&range) {
                problems.push(TilingProblem::Overlap {
                    first: owner,
                    second: index,
                });
            }
        }
        if let Some(unowned) = next_unowned {
            if range.min > unowned {
                problems.push(TilingProblem::Gap {
                    from: unowned,
                    to: range.min - 1,
                });
            }
        }
        let end = next_unowned.map_or(u64::MAX, |unowned| unowned.max(range.max.saturating_add(1)));
        next_unowned = if range.max == u64::MAX {
            None
        } else {
            Some(end)
        };
        if last_owner.is_none_or(|(_, owner_range)| range.max > owner_range.max) {
            last_owner = Some((index, range));
        }
    }
    if let Some(unowned) = next_unowned {
        problems.push(TilingProblem::Gap {
            from: unowned,
            to: u64::MAX,
        });
    }
    problems
}

/// Splits the whole hash space into `count` contiguous ranges of (almost) equal width.
pub fn split_evenly(count: usize) -> Vec<HashRange> {
    assert!(count > 0, "cannot split the hash space among no nodes");
    let count = count as u128;
    let space = 1u128 << 64;
    (0..count)
        .map(|index| {
            let min = (space * index / count) as u64;
            let max = (space * (index + 1) / count - 1) as u64;
            HashRange { min, max }
        })
        .collect()
}

// ----- Update's value hash ----------------------------------------------------------------------

/// 64-bit FNV-1a of a value: what Update compares to tell whether a record changed since it was
/// read (the reference system's choice, kept so the semantics match).
pub fn value_hash(value: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

// ----- request bodies ---------------------------------------------------------------------------

/// `channel` + `key`: Get, Exists, Remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRequest<'a> {
    pub channel: &'a str,
    pub key: u64,
}

impl<'a> KeyRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str8(out, self.channel);
        put_u64(out, self.key);
    }

    pub fn decode(body: &'a [u8]) -> Result<KeyRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let request = KeyRequest {
            channel: reader.str8("channel")?,
            key: reader.u64("key")?,
        };
        reader.finish()?;
        Ok(request)
    }
}

/// Put: `channel`, `key`, then the value as the rest of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutRequest<'a> {
    pub channel: &'a str,
    pub key: u64,
    pub value: &'a [u8],
}

impl<'a> PutRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str8(out, self.channel);
        put_u64(out, self.key);
        out.extend_from_slice(self.value);
    }

    pub fn decode(body: &'a [u8]) -> Result<PutRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let channel = reader.str8("channel")?;
        let key = reader.u64("key")?;
        Ok(PutRequest {
            channel,
            key,
            value: reader.rest(),
        })
    }
}

/// GetAll: `channel`, `u8 flags` (bit 0 keys only), `bool resume`, `u64 resume_after` (the last
/// key the client received before a reconnect), `bytes filter` (empty: no filter; else only
/// records whose value contains it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetAllRequest<'a> {
    pub channel: &'a str,
    pub keys_only: bool,
    pub resume_after: Option<u64>,
    pub filter: &'a [u8],
}

impl<'a> GetAllRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str8(out, self.channel);
        put_u8(out, u8::from(self.keys_only));
        put_bool(out, self.resume_after.is_some());
        put_u64(out, self.resume_after.unwrap_or(0));
        put_bytes(out, self.filter);
    }

    pub fn decode(body: &'a [u8]) -> Result<GetAllRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let channel = reader.str8("channel")?;
        let flags = reader.u8("flags")?;
        if flags & !1 != 0 {
            return Err(WireError::Invalid {
                field: "flags",
                reason: "unknown flag bits set",
            });
        }
        let resume = reader.bool("resume")?;
        let resume_after = reader.u64("resume_after")?;
        let filter = reader.bytes("filter", MAX_FILTER_LEN)?;
        reader.finish()?;
        Ok(GetAllRequest {
            channel,
            keys_only: flags & 1 == 1,
            resume_after: resume.then_some(resume_after),
            filter,
        })
    }
}

/// PutBatch: `channel`, then an LZ4 batch (docs/protocol.md §4) as the rest of the body.
pub fn encode_put_batch(out: &mut Vec<u8>, channel: &str, batch: &[u8]) {
    put_str8(out, channel);
    out.extend_from_slice(batch);
}

pub fn decode_put_batch(body: &[u8]) -> Result<(&str, &[u8]), WireError> {
    let mut reader = Reader::new(body);
    let channel = reader.str8("channel")?;
    Ok((channel, reader.rest()))
}

/// What an Update expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// The record must not exist.
    Absent,
    /// The record must exist with a value whose [`value_hash`] is this.
    Hash(u64),
}

/// What an Update does when its expectation holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateAction<'a> {
    Write(&'a [u8]),
    Remove,
}

/// Update: `channel`, `key`, `u8 expected` (0 absent, 1 present with hash), `u64 hash`,
/// `u8 action` (1 write, 2 remove), then the new value as the rest of the body (write only).
/// Replies Ok when applied, UpdateConflict when the record is not as expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateRequest<'a> {
    pub channel: &'a str,
    pub key: u64,
    pub expected: Expected,
    pub action: UpdateAction<'a>,
}

impl<'a> UpdateRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str8(out, self.channel);
        put_u64(out, self.key);
        match self.expected {
            Expected::Absent => {
                put_u8(out, 0);
                put_u64(out, 0);
            }
            Expected::Hash(hash) => {
                put_u8(out, 1);
                put_u64(out, hash);
            }
        }
        match self.action {
            UpdateAction::Write(value) => {
                put_u8(out, 1);
                out.extend_from_slice(value);
            }
            UpdateAction::Remove => put_u8(out, 2),
        }
    }

    pub fn decode(body: &'a [u8]) -> Result<UpdateRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let channel = reader.str8("channel")?;
        let key = reader.u64("key")?;
        let expected = match (reader.u8("expected")?, reader.u64("hash")?) {
            (0, _) => Expected::Absent,
            (1, hash) => Expected::Hash(hash),
            _ => {
                return Err(WireError::Invalid {
                    field: "expected",
                    reason: "must be 0 or 1",
                })
            }
        };
        let action = match reader.u8("action")? {
            1 => UpdateAction::Write(reader.rest()),
            2 => {
                reader.finish()?;
                UpdateAction::Remove
            }
            _ => {
                return Err(WireError::Invalid {
                    field: "action",
                    reason: "must be 1 or 2",
                })
            }
        };
        Ok(UpdateRequest {
            channel,
            key,
            expected,
            action,
        })
    }
}

// ----- stream items -----------------------------------------------------------------------------

/// One item of a Listen stream: code 1 Changed (`u64 key`, then the new value as the rest),
/// 2 Removed (`u64 key`), 3 Overflow (`u64` changes this listener lost, at this point).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenItem<'a> {
    Changed { key: u64, value: &'a [u8] },
    Removed { key: u64 },
    Overflow { lost: u64 },
}

impl<'a> ListenItem<'a> {
    pub fn code(&self) -> u8 {
        match self {
            ListenItem::Changed { .. } => ITEM_CHANGED,
            ListenItem::Removed { .. } => ITEM_REMOVED,
            ListenItem::Overflow { .. } => ITEM_OVERFLOW,
        }
    }

    pub fn encode_body(&self, out: &mut Vec<u8>) {
        match *self {
            ListenItem::Changed { key, value } => {
                put_u64(out, key);
                out.extend_from_slice(value);
            }
            ListenItem::Removed { key } => put_u64(out, key),
            ListenItem::Overflow { lost } => put_u64(out, lost),
        }
    }

    pub fn decode(code: u8, body: &'a [u8]) -> Result<ListenItem<'a>, WireError> {
        let mut reader = Reader::new(body);
        let item = match code {
            ITEM_CHANGED => {
                let key = reader.u64("key")?;
                ListenItem::Changed {
                    key,
                    value: reader.rest(),
                }
            }
            ITEM_REMOVED => ListenItem::Removed {
                key: reader.u64("key")?,
            },
            ITEM_OVERFLOW => ListenItem::Overflow {
                lost: reader.u64("lost")?,
            },
            _ => {
                return Err(WireError::Invalid {
                    field: "item code",
                    reason: "not a Listen item code",
                })
            }
        };
        reader.finish()?;
        Ok(item)
    }
}

// ----- reply bodies -----------------------------------------------------------------------------

/// GetSize / GetChannelSize reply: `u64 records`, `u64 bytes` (bytes = Σ key 8 + value length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SizeInfo {
    pub records: u64,
    pub bytes: u64,
}

impl SizeInfo {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.records);
        put_u64(out, self.bytes);
    }

    pub fn decode(body: &[u8]) -> Result<SizeInfo, WireError> {
        let mut reader = Reader::new(body);
        let size = SizeInfo {
            records: reader.u64("records")?,
            bytes: reader.u64("bytes")?,
        };
        reader.finish()?;
        Ok(size)
    }
}

/// GetResponsibleRange reply: `u64 min`, `u64 max`.
pub fn encode_range(out: &mut Vec<u8>, range: HashRange) {
    put_u64(out, range.min);
    put_u64(out, range.max);
}

pub fn decode_range(body: &[u8]) -> Result<HashRange, WireError> {
    let mut reader = Reader::new(body);
    let range = HashRange {
        min: reader.u64("min")?,
        max: reader.u64("max")?,
    };
    reader.finish()?;
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_keys_spread_over_the_hash_space() {
        assert_eq!(hash_position(1), 0x8000_0000_0000_0000);
        let halves = split_evenly(2);
        assert!(halves[1].is_responsible_for(1));
        assert!(halves[0].is_responsible_for(2));
        assert!(!HashRange::EMPTY.is_responsible_for(0));
        assert!(HashRange::FULL.is_responsible_for(u64::MAX));
    }

    #[test]
    fn even_splits_tile_the_space_for_any_count() {
        for count in [1, 2, 3, 7, 10, 1000] {
            let ranges = split_evenly(count);
            assert_eq!(ranges.len(), count);
            assert_eq!(tiling_problems(&ranges), vec![], "{count} nodes");
            assert_eq!(ranges[0].min, 0);
            assert_eq!(ranges[count - 1].max, u64::MAX);
        }
    }

    #[test]
    fn gaps_and_overlaps_are_reported() {
        let gap = [HashRange::new(0, 9), HashRange::new(20, u64::MAX)];
        assert_eq!(
            tiling_problems(&gap),
            vec![TilingProblem::Gap { from: 10, to: 19 }]
        );
        let overlap = [HashRange::new(0, 20), HashRange::new(10, u64::MAX)];
        assert_eq!(
            tiling_problems(&overlap),
            vec![TilingProblem::Overlap {
                first: 0,
                second: 1
            }]
        );
        let missing_end = [HashRange::new(0, 100)];
        assert_eq!(
            tiling_problems(&missing_end),
            vec![TilingProblem::Gap {
                from: 101,
                to: u64::MAX
            }]
        );
        assert_eq!(
            tiling_problems(&[HashRange::EMPTY, HashRange::FULL]),
            vec![]
        );
        assert_eq!(
            tiling_problems(&[]),
            vec![TilingProblem::Gap {
                from: 0,
                to: u64::MAX
            }]
        );
    }

    #[test]
    fn ranges_parse_from_the_command_line_form() {
        assert_eq!(HashRange::parse("0:ffffffffffffffff"), Ok(HashRange::FULL));
        assert_eq!(
            HashRange::parse("0xffffffffffffffff:0x0000000000000000"),
            Ok(HashRange::EMPTY)
        );
        assert!(HashRange::parse("12").is_err());
        assert!(HashRange::parse("0:1ffffffffffffffff").is_err());
        assert!(HashRange::parse("g:1").is_err());
    }

    #[test]
    fn channel_names_are_plain_and_bounded() {
        assert!(valid_channel_name("test_channel-1"));
        assert!(!valid_channel_name(""));
        assert!(!valid_channel_name("a/b"));
        assert!(!valid_channel_name("a b"));
        assert!(!valid_channel_name(&"x".repeat(MAX_CHANNEL_NAME_LEN + 1)));
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(value_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(value_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(value_hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn listen_items_round_trip_and_unknown_codes_are_refused() {
        for item in [
            ListenItem::Changed {
                key: 7,
                value: b"v",
            },
            ListenItem::Removed { key: 8 },
            ListenItem::Overflow { lost: 9 },
        ] {
            let mut body = Vec::new();
            item.encode_body(&mut body);
            assert_eq!(ListenItem::decode(item.code(), &body), Ok(item));
        }
        assert!(ListenItem::decode(9, &[0; 8]).is_err());
        assert!(ListenItem::decode(ITEM_REMOVED, &[0; 9]).is_err());
    }

    #[test]
    fn request_bodies_round_trip() {
        let mut out = Vec::new();
        let update = UpdateRequest {
            channel: "ch",
            key: 5,
            expected: Expected::Hash(9),
            action: UpdateAction::Write(b"new"),
        };
        update.encode(&mut out);
        assert_eq!(UpdateRequest::decode(&out), Ok(update));
        out.clear();
        let get_all = GetAllRequest {
            channel: "ch",
            keys_only: true,
            resume_after: Some(7),
            filter: b"0",
        };
        get_all.encode(&mut out);
        assert_eq!(GetAllRequest::decode(&out), Ok(get_all));
        out.clear();
        encode_channel_names(&mut out, ["a", "bb"].into_iter());
        assert_eq!(decode_channel_names(&out).unwrap(), vec!["a", "bb"]);
        assert!(decode_channel_names(&[255, 255, 255, 255]).is_err());
    }
}

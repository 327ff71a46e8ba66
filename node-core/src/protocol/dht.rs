//! The dht node's part of the protocol: its request codes, the layout of each request and reply
//! body (docs/protocol.md §6), the hash-range rule that decides which node owns a key, and the
//! value hash that Update compares. Node and client both use these, so they cannot disagree.

pub use super::channels::{
    check_channel_name, decode_channel, decode_channel_names, decode_put_batch, encode_channel,
    encode_channel_names, encode_put_batch, valid_channel_name, BadChannelName, PutRequest,
    MAX_CHANNEL_NAME_LEN,
};
use super::wire::{put_bool, put_bytes, put_str8, put_u16, put_u64, put_u8, Reader, WireError};
use super::RequestCode;

mod versioned;
pub use versioned::{
    applied_body, decode_applied, decode_versioned_lookup, encode_applied, encode_versioned_value,
    MirrorItem, MirrorRequest, PutVersionRequest, RefreshCounts, RefreshRecord,
    RemoveVersionRequest, VersionedLookup, MAX_PERIODIC_REFRESH_S, VERSION_LEN,
};

super::codes::request_enum! {
    /// The dht requests (docs/protocol.md §6), with their wire codes.
    pub enum DhtRequest {
        Put = 16,
        Get = 17,
        Exists = 18,
        Remove = 19,
        GetAll = 20,
        GetChannels = 21,
        GetChannelSize = 22,
        GetSize = 23,
        RemoveChannel = 24,
        GetResponsibleRange = 25,
        PutBatch = 26,
        Listen = 27,
        Update = 28,
        Redistribute = 29,
        RedistBatch = 30,
        RedistCommit = 31,
        GetRedistribution = 32,
        PutVersion = 33,
        RemoveVersion = 34,
        GetWithVersion = 35,
        Mirror = 36,
        SetReady = 37,
        RedistBatchVersion = 38,
        PutBatchVersion = 39,
    }
}

impl DhtRequest {
    /// Administrative requests: only admins may run them when authentication is on. A node
    /// checks this before it looks at the body (docs/protocol.md §1.4).
    pub const fn admin_only(self) -> bool {
        use DhtRequest::*;
        match self {
            RemoveChannel | Redistribute | RedistBatch | RedistCommit | SetReady
            | RedistBatchVersion => true,
            Put | Get | Exists | Remove | GetAll | GetChannels | GetChannelSize | GetSize
            | GetResponsibleRange | PutBatch | Listen | Update | GetRedistribution | PutVersion
            | RemoveVersion | GetWithVersion | Mirror | PutBatchVersion => false,
        }
    }

    /// Requests that open a stream of Items (docs/protocol.md §2.2): refused with
    /// TooManyRequests while the connection's or the node's streams hold their memory budget.
    pub const fn opens_stream(self) -> bool {
        use DhtRequest::*;
        match self {
            GetAll | Listen | Redistribute | Mirror => true,
            Put | Get | Exists | Remove | GetChannels | GetChannelSize | GetSize
            | RemoveChannel | GetResponsibleRange | PutBatch | Update | RedistBatch
            | RedistCommit | GetRedistribution | PutVersion | RemoveVersion | GetWithVersion
            | SetReady | RedistBatchVersion | PutBatchVersion => false,
        }
    }
}

// The codes as constants, for senders (the client, tests).
pub const PUT: RequestCode = DhtRequest::Put.code();
pub const GET: RequestCode = DhtRequest::Get.code();
pub const EXISTS: RequestCode = DhtRequest::Exists.code();
pub const REMOVE: RequestCode = DhtRequest::Remove.code();
pub const GET_ALL: RequestCode = DhtRequest::GetAll.code();
pub const GET_CHANNELS: RequestCode = DhtRequest::GetChannels.code();
pub const GET_CHANNEL_SIZE: RequestCode = DhtRequest::GetChannelSize.code();
pub const GET_SIZE: RequestCode = DhtRequest::GetSize.code();
pub const REMOVE_CHANNEL: RequestCode = DhtRequest::RemoveChannel.code();
pub const GET_RESPONSIBLE_RANGE: RequestCode = DhtRequest::GetResponsibleRange.code();
pub const PUT_BATCH: RequestCode = DhtRequest::PutBatch.code();
pub const LISTEN: RequestCode = DhtRequest::Listen.code();
pub const UPDATE: RequestCode = DhtRequest::Update.code();
pub const REDISTRIBUTE: RequestCode = DhtRequest::Redistribute.code();
pub const REDIST_BATCH: RequestCode = DhtRequest::RedistBatch.code();
pub const REDIST_COMMIT: RequestCode = DhtRequest::RedistCommit.code();
pub const GET_REDISTRIBUTION: RequestCode = DhtRequest::GetRedistribution.code();
pub const PUT_VERSION: RequestCode = DhtRequest::PutVersion.code();
pub const REMOVE_VERSION: RequestCode = DhtRequest::RemoveVersion.code();
pub const GET_WITH_VERSION: RequestCode = DhtRequest::GetWithVersion.code();
pub const MIRROR: RequestCode = DhtRequest::Mirror.code();
pub const SET_READY: RequestCode = DhtRequest::SetReady.code();
pub const REDIST_BATCH_VERSION: RequestCode = DhtRequest::RedistBatchVersion.code();
pub const PUT_BATCH_VERSION: RequestCode = DhtRequest::PutBatchVersion.code();

/// The name of a dht request code, for logs and stats.
pub fn request_name(code: RequestCode) -> Option<&'static str> {
    DhtRequest::from_code(code).map(DhtRequest::name)
}

/// Whether `code` is an administrative dht request ([`DhtRequest::admin_only`]).
pub fn is_admin_request(code: RequestCode) -> bool {
    DhtRequest::from_code(code).is_some_and(DhtRequest::admin_only)
}

/// Whether `code` is a dht request that opens a stream ([`DhtRequest::opens_stream`]).
pub fn opens_stream(code: RequestCode) -> bool {
    DhtRequest::from_code(code).is_some_and(DhtRequest::opens_stream)
}

/// Item codes of a GetAll stream.
pub const ITEM_RECORD_BATCH: u8 = 1;
/// Item codes of a Listen stream.
pub const ITEM_CHANGED: u8 = 1;
pub const ITEM_REMOVED: u8 = 2;
pub const ITEM_OVERFLOW: u8 = 3;
/// Item code of a Redistribute stream.
pub const ITEM_PROGRESS: u8 = 1;
/// Item codes of a Mirror stream ([`MirrorItem`]); 1-3 mean what they mean in a Listen, with a
/// version added.
pub const ITEM_MIRROR_CHANGED: u8 = 1;
pub const ITEM_MIRROR_REMOVED: u8 = 2;
pub const ITEM_MIRROR_OVERFLOW: u8 = 3;
pub const ITEM_MIRROR_REFRESH_STARTED: u8 = 4;
pub const ITEM_MIRROR_REFRESH_BATCH: u8 = 5;
pub const ITEM_MIRROR_REFRESH_DONE: u8 = 6;

/// The longest value filter of a GetAll.
pub const MAX_FILTER_LEN: usize = 4096;

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

    /// The canonical form: every empty range becomes [`HashRange::EMPTY`].
    pub fn normalized(self) -> HashRange {
        if self.is_empty() {
            HashRange::EMPTY
        } else {
            self
        }
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

/// The first stretch `[from, to]` of `range` that none of `covering` owns, if any: what a
/// redistribution would leave without an owner.
pub fn first_uncovered(range: HashRange, covering: &[HashRange]) -> Option<(u64, u64)> {
    if range.is_empty() {
        return None;
    }
    let mut sorted: Vec<HashRange> = covering.iter().copied().filter(|r| !r.is_empty()).collect();
    sorted.sort_by_key(|r| r.min);
    // The lowest position of `range` not yet known to be covered.
    let mut next = range.min;
    for r in sorted {
        if r.max < next {
            continue;
        }
        if r.min > next {
            break;
        }
        if r.max >= range.max {
            return None;
        }
        next = r.max + 1;
    }
    let gap_end = covering
        .iter()
        .filter(|r| !r.is_empty() && r.min > next)
        .map(|r| r.min - 1)
        .min()
        .unwrap_or(u64::MAX)
        .min(range.max);
    Some((next, gap_end))
}

/// Splits `range` into `count` contiguous ranges of (almost) equal width, in order (an empty
/// `range` gives `count` empty ranges; so does a range narrower than `count` for the parts that
/// get no position).
pub fn split_range(range: HashRange, count: usize) -> Vec<HashRange> {
    assert!(count > 0, "cannot split a range among no nodes");
    if range.is_empty() {
        return vec![HashRange::EMPTY; count];
    }
    let width = u128::from(range.max - range.min) + 1;
    let count = count as u128;
    (0..count)
        .map(|index| {
            let start = width * index / count;
            let end = width * (index + 1) / count;
            if end == start {
                HashRange::EMPTY
            } else {
                HashRange {
                    min: range.min + start as u64,
                    max: range.min + (end - 1) as u64,
                }
            }
        })
        .collect()
}

/// Splits the whole hash space into `count` contiguous ranges of (almost) equal width.
pub fn split_evenly(count: usize) -> Vec<HashRange> {
    split_range(HashRange::FULL, count)
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

/// The start every keyed request's body shares (Get, Exists, GetWithVersion: [`KeyRequest`];
/// Put: [`PutRequest`]; PutVersion: [`PutVersionRequest`]): `str8 channel`, `u64 key`. Returns
/// the channel name's bytes (not checked as UTF-8), the key and the bytes after them, or `None`
/// when the body is too short. A quick look for a node's look-ahead
/// (`Service::look_ahead`), which must not pay a full decode twice; requests run with the
/// decoders.
pub fn peek_channel_and_key(body: &[u8]) -> Option<(&[u8], u64, &[u8])> {
    let (&len, rest) = body.split_first()?;
    let (channel, rest) = rest.split_at_checked(usize::from(len))?;
    let (key, rest) = rest.split_first_chunk::<8>()?;
    Some((channel, u64::from_le_bytes(*key), rest))
}

/// Which records of a node a GetAll asks for (flag bits 1 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GetAllScope {
    /// Every record the node holds (bits 00).
    #[default]
    All,
    /// Only records whose key is inside the node's range (bit 1).
    InsideRange,
    /// Only records whose key is outside the node's range: records a redistribution has not
    /// moved away yet (bit 2).
    OutsideRange,
}

/// GetAll: `channel`, `u8 flags` (bit 0 keys only; bits 1-2 the [`GetAllScope`]), `bool
/// resume`, `u64 resume_after` (the last key the client received before a reconnect), `bytes
/// filter` (empty: no filter; else only records whose value contains it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetAllRequest<'a> {
    pub channel: &'a str,
    pub keys_only: bool,
    pub resume_after: Option<u64>,
    pub filter: &'a [u8],
    pub scope: GetAllScope,
}

impl<'a> GetAllRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str8(out, self.channel);
        let scope_bits = match self.scope {
            GetAllScope::All => 0,
            GetAllScope::InsideRange => 2,
            GetAllScope::OutsideRange => 4,
        };
        put_u8(out, u8::from(self.keys_only) | scope_bits);
        put_bool(out, self.resume_after.is_some());
        put_u64(out, self.resume_after.unwrap_or(0));
        put_bytes(out, self.filter);
    }

    pub fn decode(body: &'a [u8]) -> Result<GetAllRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let channel = reader.str8("channel")?;
        let flags = reader.u8("flags")?;
        if flags & !7 != 0 {
            return Err(WireError::Invalid {
                field: "flags",
                reason: "unknown flag bits set",
            });
        }
        let scope = match flags & 6 {
            0 => GetAllScope::All,
            2 => GetAllScope::InsideRange,
            4 => GetAllScope::OutsideRange,
            _ => {
                return Err(WireError::Invalid {
                    field: "flags",
                    reason: "bits 1 (inside the range) and 2 (outside it) exclude each other",
                })
            }
        };
        let resume = reader.bool("resume")?;
        let resume_after = reader.u64("resume_after")?;
        let filter = reader.bytes("filter", MAX_FILTER_LEN)?;
        reader.finish()?;
        Ok(GetAllRequest {
            channel,
            keys_only: flags & 1 == 1,
            resume_after: resume.then_some(resume_after),
            filter,
            scope,
        })
    }
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

// ----- redistribution ---------------------------------------------------------------------------

/// The most targets one Redistribute may name.
pub const MAX_REDISTRIBUTE_TARGETS: usize = 1024;
/// The longest error message a progress report carries.
pub const MAX_PROGRESS_ERROR_LEN: usize = 1024;

/// One node a redistributing node hands records to: its address and its (new) range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedistributeTarget {
    pub address: std::net::SocketAddr,
    pub range: HashRange,
}

/// Redistribute: `u64 min`, `u64 max` (the node's new range), `u16 n`, then `n` targets, each
/// `str8 address` (`ip:port`, as Rust's `SocketAddr` writes it), `u64 min`, `u64 max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedistributeRequest {
    pub range: HashRange,
    pub targets: Vec<RedistributeTarget>,
}

impl RedistributeRequest {
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_range(out, self.range);
        put_u16(out, self.targets.len().min(usize::from(u16::MAX)) as u16);
        for target in &self.targets {
            put_str8(out, &target.address.to_string());
            encode_range(out, target.range);
        }
    }

    pub fn decode(body: &[u8]) -> Result<RedistributeRequest, WireError> {
        let mut reader = Reader::new(body);
        let range = HashRange {
            min: reader.u64("min")?,
            max: reader.u64("max")?,
        };
        let count = Reader::check_count(
            "target count",
            usize::from(reader.u16("target count")?),
            MAX_REDISTRIBUTE_TARGETS,
            "targets",
        )?;
        let mut targets = Vec::with_capacity(count);
        for _ in 0..count {
            let address =
                reader
                    .str8("target address")?
                    .parse()
                    .map_err(|_| WireError::Invalid {
                        field: "target address",
                        reason: "not an ip:port socket address",
                    })?;
            let range = HashRange {
                min: reader.u64("target min")?,
                max: reader.u64("target max")?,
            };
            targets.push(RedistributeTarget { address, range });
        }
        reader.finish()?;
        Ok(RedistributeRequest { range, targets })
    }

    /// The rules a Redistribute must follow, checked against the node's current range: no
    /// target twice, no empty target range, no two of the new ranges (the node's and the
    /// targets') overlapping, and every position of the current range owned afterwards by the
    /// node or a target (so no record is left without an owner). Targets whose ranges are
    /// exactly equal are the members of one replica set: they do not overlap each other.
    pub fn check(&self, current: HashRange) -> Result<(), String> {
        let mut all = vec![self.range];
        // The target each range of `all` after the first came from.
        let mut owners = Vec::with_capacity(self.targets.len());
        for (index, target) in self.targets.iter().enumerate() {
            if target.range.is_empty() {
                return Err(format!("target {} has an empty range", target.address));
            }
            let earlier = &self.targets[..index];
            if earlier.iter().any(|other| other.address == target.address) {
                return Err(format!("target {} is listed twice", target.address));
            }
            if earlier.iter().any(|other| other.range == target.range) {
                // Another member of a replica set already checked.
                continue;
            }
            if let Some(overlapped) = all.iter().position(|range| range.overlaps(&target.range)) {
                let other = match overlapped {
                    0 => "this node's new range".to_string(),
                    n => format!("target {}", owners[n - 1]),
                };
                return Err(format!(
                    "target {} range {} overlaps {other}",
                    target.address, target.range
                ));
            }
            all.push(target.range);
            owners.push(target.address);
        }
        if let Some((from, to)) = first_uncovered(current, &all) {
            return Err(format!(
                "hash positions 0x{from:016x}..0x{to:016x} of this node's current range {current} \
                 would belong to no node: neither its new range nor any target's covers them"
            ));
        }
        Ok(())
    }
}

/// How far a redistribution got: a Redistribute stream's Progress item (code 1), and part of
/// the GetRedistribution reply. `u64 moved` (records handed over and deleted here), `u64 total`
/// (records outside the new range when it started: moved + still to move, about), `u64
/// failures` (failed attempts so far, each retried), `bytes last_error` (the last failure, for
/// people; empty when there was none).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedistributionProgress {
    pub moved: u64,
    pub total: u64,
    pub failures: u64,
    pub last_error: String,
}

impl RedistributionProgress {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.moved);
        put_u64(out, self.total);
        put_u64(out, self.failures);
        let mut end = self.last_error.len().min(MAX_PROGRESS_ERROR_LEN);
        while !self.last_error.is_char_boundary(end) {
            end -= 1;
        }
        put_bytes(out, &self.last_error.as_bytes()[..end]);
    }

    fn read(reader: &mut Reader<'_>) -> Result<RedistributionProgress, WireError> {
        let moved = reader.u64("moved")?;
        let total = reader.u64("total")?;
        let failures = reader.u64("failures")?;
        let last_error = std::str::from_utf8(reader.bytes("last_error", MAX_PROGRESS_ERROR_LEN)?)
            .map_err(|_| WireError::BadUtf8 {
                field: "last_error",
            })?
            .to_string();
        Ok(RedistributionProgress {
            moved,
            total,
            failures,
            last_error,
        })
    }

    pub fn decode(body: &[u8]) -> Result<RedistributionProgress, WireError> {
        let mut reader = Reader::new(body);
        let progress = RedistributionProgress::read(&mut reader)?;
        reader.finish()?;
        Ok(progress)
    }
}

/// The final Ok of a Redistribute: `u64 moved`, `u64 stranded` (records outside the new range
/// that no target's range covers either — left in place; only records a node held outside its
/// old range can be in this situation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RedistributeDone {
    pub moved: u64,
    pub stranded: u64,
}

impl RedistributeDone {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.moved);
        put_u64(out, self.stranded);
    }

    pub fn decode(body: &[u8]) -> Result<RedistributeDone, WireError> {
        let mut reader = Reader::new(body);
        let done = RedistributeDone {
            moved: reader.u64("moved")?,
            stranded: reader.u64("stranded")?,
        };
        reader.finish()?;
        Ok(done)
    }
}

/// RedistBatch's Ok: `u64 stored` (records that were absent and are now stored), `u64 present`
/// (records skipped because the key already had a value here), `u64 instance` (the receiving
/// node process's random instance id, see RedistCommit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RedistBatchReply {
    pub stored: u64,
    pub present: u64,
    pub instance: u64,
}

impl RedistBatchReply {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.stored);
        put_u64(out, self.present);
        put_u64(out, self.instance);
    }

    pub fn decode(body: &[u8]) -> Result<RedistBatchReply, WireError> {
        let mut reader = Reader::new(body);
        let reply = RedistBatchReply {
            stored: reader.u64("stored")?,
            present: reader.u64("present")?,
            instance: reader.u64("instance")?,
        };
        reader.finish()?;
        Ok(reply)
    }
}

/// PutBatchVersion's Ok (docs/protocol.md §6.14): `u64 applied` (items whose version was
/// newer than what the node held, now stored or removed), `u64 skipped` (the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VersionBatchReply {
    pub applied: u64,
    pub skipped: u64,
}

impl VersionBatchReply {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.applied);
        put_u64(out, self.skipped);
    }

    pub fn decode(body: &[u8]) -> Result<VersionBatchReply, WireError> {
        let mut reader = Reader::new(body);
        let reply = VersionBatchReply {
            applied: reader.u64("applied")?,
            skipped: reader.u64("skipped")?,
        };
        reader.finish()?;
        Ok(reply)
    }
}

/// RedistCommit's Ok: `u64 instance`.
pub fn decode_instance(body: &[u8]) -> Result<u64, WireError> {
    let mut reader = Reader::new(body);
    let instance = reader.u64("instance")?;
    reader.finish()?;
    Ok(instance)
}

/// GetRedistribution's Ok: `u64 min`, `u64 max` (the node's range now), `u8 running` (1 while
/// a redistribution runs on the node), `u64 instance`, then the progress of the running (or
/// last) redistribution as in [`RedistributionProgress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedistributionState {
    pub range: HashRange,
    pub running: bool,
    pub instance: u64,
    pub progress: RedistributionProgress,
}

impl RedistributionState {
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_range(out, self.range);
        put_bool(out, self.running);
        put_u64(out, self.instance);
        self.progress.encode(out);
    }

    pub fn decode(body: &[u8]) -> Result<RedistributionState, WireError> {
        let mut reader = Reader::new(body);
        let range = HashRange {
            min: reader.u64("min")?,
            max: reader.u64("max")?,
        };
        let running = reader.bool("running")?;
        let instance = reader.u64("instance")?;
        let progress = RedistributionProgress::read(&mut reader)?;
        reader.finish()?;
        Ok(RedistributionState {
            range,
            running,
            instance,
            progress,
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

impl super::channels::SizeReply for SizeInfo {
    fn encode(&self, out: &mut Vec<u8>) {
        SizeInfo::encode(self, out);
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

    /// A list longer than its limit is named by what it counts: targets, not bytes.
    #[test]
    fn too_many_redistribute_targets_are_counted_as_targets() {
        let mut body = Vec::new();
        encode_range(&mut body, HashRange::FULL);
        put_u16(&mut body, 1025);
        let err = RedistributeRequest::decode(&body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `target count`: 1025 targets, more than the limit of 1024"
        );
    }

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
        for scope in [
            GetAllScope::All,
            GetAllScope::InsideRange,
            GetAllScope::OutsideRange,
        ] {
            out.clear();
            let get_all = GetAllRequest {
                channel: "ch",
                keys_only: true,
                resume_after: Some(7),
                filter: b"0",
                scope,
            };
            get_all.encode(&mut out);
            assert_eq!(GetAllRequest::decode(&out), Ok(get_all));
        }
        // Both scope bits at once mean nothing.
        out[3] |= 6;
        assert!(GetAllRequest::decode(&out).is_err());
        out.clear();
        encode_channel_names(&mut out, ["a", "bb"].into_iter());
        assert_eq!(decode_channel_names(&out).unwrap(), vec!["a", "bb"]);
        assert!(decode_channel_names(&[255, 255, 255, 255]).is_err());
    }

    #[test]
    fn redistribution_bodies_round_trip() {
        let request = RedistributeRequest {
            range: HashRange::new(0, 99),
            targets: vec![
                RedistributeTarget {
                    address: "127.0.0.1:10001".parse().unwrap(),
                    range: HashRange::new(100, 199),
                },
                RedistributeTarget {
                    address: "[::1]:10002".parse().unwrap(),
                    range: HashRange::new(200, u64::MAX),
                },
            ],
        };
        let mut out = Vec::new();
        request.encode(&mut out);
        assert_eq!(RedistributeRequest::decode(&out), Ok(request.clone()));
        assert!(RedistributeRequest::decode(&out[..out.len() - 1]).is_err());
        // A name instead of an address is refused: the node does not resolve names.
        let mut named = Vec::new();
        encode_range(&mut named, HashRange::FULL);
        put_u16(&mut named, 1);
        put_str8(&mut named, "localhost:1");
        encode_range(&mut named, HashRange::FULL);
        assert!(RedistributeRequest::decode(&named).is_err());

        let progress = RedistributionProgress {
            moved: 1,
            total: 2,
            failures: 3,
            last_error: "node x: out of memory".into(),
        };
        out.clear();
        progress.encode(&mut out);
        assert_eq!(RedistributionProgress::decode(&out), Ok(progress.clone()));
        let state = RedistributionState {
            range: HashRange::EMPTY,
            running: true,
            instance: 77,
            progress,
        };
        out.clear();
        state.encode(&mut out);
        assert_eq!(RedistributionState::decode(&out), Ok(state));
        let reply = RedistBatchReply {
            stored: 5,
            present: 6,
            instance: 7,
        };
        out.clear();
        reply.encode(&mut out);
        assert_eq!(RedistBatchReply::decode(&out), Ok(reply));
        let versioned = VersionBatchReply {
            applied: 3,
            skipped: 4,
        };
        out.clear();
        versioned.encode(&mut out);
        assert_eq!(VersionBatchReply::decode(&out), Ok(versioned));
        assert!(VersionBatchReply::decode(&out[..15]).is_err());
        let done = RedistributeDone {
            moved: 8,
            stranded: 9,
        };
        out.clear();
        done.encode(&mut out);
        assert_eq!(RedistributeDone::decode(&out), Ok(done));
    }

    #[test]
    fn a_redistribution_must_leave_every_position_of_the_old_range_an_owner() {
        let thirds = split_evenly(3);
        let halves = split_evenly(2);
        let target = |port: u16, range| RedistributeTarget {
            address: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            range,
        };
        // Node 0 of two shrinks to the first third; node 1 takes the second third.
        let good = RedistributeRequest {
            range: thirds[0],
            targets: vec![target(1, thirds[1]), target(2, thirds[2])],
        };
        assert_eq!(good.check(halves[0]), Ok(()));
        let gap = RedistributeRequest {
            range: thirds[0],
            targets: vec![target(2, thirds[2])],
        };
        let error = gap
            .check(halves[0])
            .expect_err("the second third is nobody's");
        assert!(error.contains("would belong to no node"), "{error}");
        assert!(error.contains("0x5555555555555555"), "{error}");
        let overlap = RedistributeRequest {
            range: halves[0],
            targets: vec![target(1, thirds[1])],
        };
        assert!(overlap.check(halves[0]).unwrap_err().contains("overlaps"));
        let twice = RedistributeRequest {
            range: HashRange::EMPTY,
            targets: vec![target(1, halves[0]), target(1, halves[1])],
        };
        assert!(twice.check(HashRange::FULL).unwrap_err().contains("twice"));
        // An empty node may take a range and give nothing.
        let grow = RedistributeRequest {
            range: thirds[2],
            targets: vec![],
        };
        assert_eq!(grow.check(HashRange::EMPTY), Ok(()));
    }

    #[test]
    fn the_members_of_a_target_replica_set_share_its_range_but_nothing_else_may() {
        let thirds = split_evenly(3);
        let halves = split_evenly(2);
        let target = |port: u16, range| RedistributeTarget {
            address: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            range,
        };
        // A member of the first half's set keeps the first third; the second third goes to
        // both members of another set.
        let set = RedistributeRequest {
            range: thirds[0],
            targets: vec![target(1, thirds[1]), target(2, thirds[1])],
        };
        assert_eq!(set.check(halves[0]), Ok(()));
        // A range overlapping a set's without being equal is still an overlap, named.
        let partial = RedistributeRequest {
            range: thirds[0],
            targets: vec![
                target(1, thirds[1]),
                target(2, thirds[1]),
                target(3, HashRange::new(thirds[1].max, thirds[2].max)),
            ],
        };
        let error = partial.check(halves[0]).unwrap_err();
        assert!(error.contains("overlaps target 127.0.0.1:1"), "{error}");
        // A target may not share the node's own new range (its own set is no target).
        let own = RedistributeRequest {
            range: thirds[0],
            targets: vec![target(1, thirds[0]), target(2, thirds[1])],
        };
        assert!(own
            .check(halves[0])
            .unwrap_err()
            .contains("this node's new range"));
    }

    #[test]
    fn uncovered_positions_and_range_splits() {
        assert_eq!(first_uncovered(HashRange::FULL, &[HashRange::FULL]), None);
        assert_eq!(
            first_uncovered(HashRange::new(10, 20), &[HashRange::new(0, 12)]),
            Some((13, 20))
        );
        assert_eq!(
            first_uncovered(
                HashRange::new(10, 20),
                &[HashRange::new(15, 16), HashRange::new(0, 12)]
            ),
            Some((13, 14))
        );
        assert_eq!(
            first_uncovered(
                HashRange::new(10, 20),
                &[HashRange::new(13, 30), HashRange::new(0, 12)]
            ),
            None
        );
        assert_eq!(first_uncovered(HashRange::EMPTY, &[]), None);
        let halves = split_range(HashRange::new(0, 9), 2);
        assert_eq!(halves, vec![HashRange::new(0, 4), HashRange::new(5, 9)]);
        assert_eq!(split_range(HashRange::FULL, 3), split_evenly(3));
        assert_eq!(
            split_range(HashRange::new(7, 7), 2),
            vec![HashRange::EMPTY, HashRange::new(7, 7)]
        );
    }
}

//! The logfiles node's part of the protocol: its request codes and the layout of each request and
//! reply body (docs/protocol.md §7). Node and client both use these, so they cannot disagree.
//!
//! Codes 48–79 belong to logfiles; the node answers the unlisted ones UnsupportedRequest.

use super::batch::BatchEncoding;
pub use super::channels::{
    check_channel_name, decode_channel, decode_channel_names, decode_put_batch, encode_channel,
    encode_channel_names, encode_put_batch, valid_channel_name, BadChannelName, PutRequest,
    MAX_CHANNEL_NAME_LEN,
};
use super::wire::{put_bytes, put_str8, put_u64, put_u8, Reader, WireError};
use super::RequestCode;

super::codes::request_enum! {
    /// The logfiles requests (docs/protocol.md §7), with their wire codes.
    pub enum LogfilesRequest {
        Put = 48,
        PutBatch = 49,
        GetRange = 50,
        GetAll = 51,
        GetChannels = 52,
        GetChannelSize = 53,
        GetSize = 54,
        RemoveChannel = 55,
    }
}

impl LogfilesRequest {
    /// Administrative requests: only admins may run them when authentication is on. A node
    /// checks this before it looks at the body (docs/protocol.md §1.4).
    pub const fn admin_only(self) -> bool {
        use LogfilesRequest::*;
        match self {
            RemoveChannel => true,
            Put | PutBatch | GetRange | GetAll | GetChannels | GetChannelSize | GetSize => false,
        }
    }

    /// Requests that open a stream of Items (docs/protocol.md §2.2): refused with
    /// TooManyRequests while the connection's or the node's streams hold their memory budget.
    pub const fn opens_stream(self) -> bool {
        use LogfilesRequest::*;
        match self {
            GetRange | GetAll => true,
            Put | PutBatch | GetChannels | GetChannelSize | GetSize | RemoveChannel => false,
        }
    }
}

// The codes as constants, for senders (the client, tests).
pub const PUT: RequestCode = LogfilesRequest::Put.code();
pub const PUT_BATCH: RequestCode = LogfilesRequest::PutBatch.code();
pub const GET_RANGE: RequestCode = LogfilesRequest::GetRange.code();
pub const GET_ALL: RequestCode = LogfilesRequest::GetAll.code();
pub const GET_CHANNELS: RequestCode = LogfilesRequest::GetChannels.code();
pub const GET_CHANNEL_SIZE: RequestCode = LogfilesRequest::GetChannelSize.code();
pub const GET_SIZE: RequestCode = LogfilesRequest::GetSize.code();
pub const REMOVE_CHANNEL: RequestCode = LogfilesRequest::RemoveChannel.code();

/// Item code of GetRange and GetAll: one LZ4 batch (§4) of records.
pub const ITEM_RECORD_BATCH: u8 = 1;
/// Item code of GetRange and GetAll asked with [`ReadFlags::uncompressed`]: one uncompressed
/// batch (§4.1) of records.
pub const ITEM_RECORD_BATCH_UNCOMPRESSED: u8 = 2;

/// The longest filter (substring or regular expression), in bytes.
pub const MAX_FILTER_LEN: usize = 4096;

/// The name of a logfiles request code, for logs and stats.
pub fn request_name(code: RequestCode) -> Option<&'static str> {
    LogfilesRequest::from_code(code).map(LogfilesRequest::name)
}

/// Whether `code` is an administrative logfiles request ([`LogfilesRequest::admin_only`]).
pub fn is_admin_request(code: RequestCode) -> bool {
    LogfilesRequest::from_code(code).is_some_and(LogfilesRequest::admin_only)
}

/// Whether `code` is a logfiles request that opens a stream ([`LogfilesRequest::opens_stream`]).
pub fn opens_stream(code: RequestCode) -> bool {
    LogfilesRequest::from_code(code).is_some_and(LogfilesRequest::opens_stream)
}

/// How a read selects records by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterMode {
    /// Every record (the filter must be empty).
    None = 0,
    /// Records whose value contains the filter bytes.
    Substring = 1,
    /// Records whose value matches the regular expression (Rust `regex` syntax, unanchored).
    Regex = 2,
    /// As `Regex`, ignoring case.
    RegexCaseInsensitive = 3,
}

impl FilterMode {
    pub fn from_u8(code: u8) -> Option<FilterMode> {
        Some(match code {
            0 => FilterMode::None,
            1 => FilterMode::Substring,
            2 => FilterMode::Regex,
            3 => FilterMode::RegexCaseInsensitive,
            _ => return None,
        })
    }
}

/// A value filter as sent: its mode and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter<'a> {
    pub mode: FilterMode,
    pub pattern: &'a [u8],
}

impl Filter<'_> {
    pub const NONE: Filter<'static> = Filter {
        mode: FilterMode::None,
        pattern: &[],
    };

    fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, self.mode as u8);
        put_bytes(out, self.pattern);
    }

    fn decode<'a>(reader: &mut Reader<'a>) -> Result<Filter<'a>, WireError> {
        let code = reader.u8("filter_mode")?;
        let mode = FilterMode::from_u8(code).ok_or(WireError::Invalid {
            field: "filter_mode",
            reason: "not 0, 1, 2 or 3",
        })?;
        let pattern = reader.bytes("filter", MAX_FILTER_LEN)?;
        if (mode == FilterMode::None) != pattern.is_empty() {
            return Err(WireError::Invalid {
                field: "filter",
                reason: "must be empty exactly when filter_mode is 0",
            });
        }
        Ok(Filter { mode, pattern })
    }
}

/// The options of a GetRange or GetAll: one optional `u8` after the request's fields. Absent,
/// or `0`: the defaults (LZ4 batches), as before the byte existed; a node refuses unknown bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadFlags {
    /// Bit 0: send uncompressed batches (item code [`ITEM_RECORD_BATCH_UNCOMPRESSED`]) instead of
    /// LZ4 ones. For links faster than the node can compress (loopback, 10 Gbit/s and up).
    pub uncompressed: bool,
}

impl ReadFlags {
    const UNCOMPRESSED: u8 = 1;

    /// The item code and encoding of the batches of a read with these flags.
    pub fn batch_item(&self) -> (u8, BatchEncoding) {
        if self.uncompressed {
            (ITEM_RECORD_BATCH_UNCOMPRESSED, BatchEncoding::Uncompressed)
        } else {
            (ITEM_RECORD_BATCH, BatchEncoding::Lz4)
        }
    }

    /// Appends the byte, unless every option is at its default (the request is then exactly
    /// what a client that knows no options sends).
    fn encode(&self, out: &mut Vec<u8>) {
        if self.uncompressed {
            put_u8(out, Self::UNCOMPRESSED);
        }
    }

    /// Reads the byte if it is there; then the body must end.
    fn decode(mut reader: Reader<'_>) -> Result<ReadFlags, WireError> {
        if reader.remaining() == 0 {
            return Ok(ReadFlags::default());
        }
        let bits = reader.u8("flags")?;
        if bits & !Self::UNCOMPRESSED != 0 {
            return Err(WireError::Invalid {
                field: "flags",
                reason: "unknown bits set (only bit 0, uncompressed batches, is defined)",
            });
        }
        reader.finish()?;
        Ok(ReadFlags {
            uncompressed: bits & Self::UNCOMPRESSED != 0,
        })
    }
}

/// GetRange: `channel`, `u64 from`, `u64 to` (inclusive), `u8 filter_mode`, `bytes filter`, and
/// optionally `u8 flags` ([`ReadFlags`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetRangeRequest<'a> {
    pub channel: &'a str,
    pub from: u64,
    pub to: u64,
    pub filter: Filter<'a>,
}

impl<'a> GetRangeRequest<'a> {
    /// The request with the default options (no flags byte).
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_with(ReadFlags::default(), out);
    }

    pub fn encode_with(&self, flags: ReadFlags, out: &mut Vec<u8>) {
        put_str8(out, self.channel);
        put_u64(out, self.from);
        put_u64(out, self.to);
        self.filter.encode(out);
        flags.encode(out);
    }

    /// The request, its options checked and left out (see [`decode_with`](Self::decode_with)).
    pub fn decode(body: &'a [u8]) -> Result<GetRangeRequest<'a>, WireError> {
        Self::decode_with(body).map(|(request, _)| request)
    }

    pub fn decode_with(body: &'a [u8]) -> Result<(GetRangeRequest<'a>, ReadFlags), WireError> {
        let mut reader = Reader::new(body);
        let channel = reader.str8("channel")?;
        let from = reader.u64("from")?;
        let to = reader.u64("to")?;
        let filter = Filter::decode(&mut reader)?;
        let flags = ReadFlags::decode(reader)?;
        let request = GetRangeRequest {
            channel,
            from,
            to,
            filter,
        };
        Ok((request, flags))
    }
}

/// GetAll: `channel`, `u8 filter_mode`, `bytes filter`, and optionally `u8 flags`
/// ([`ReadFlags`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetAllRequest<'a> {
    pub channel: &'a str,
    pub filter: Filter<'a>,
}

impl<'a> GetAllRequest<'a> {
    /// The request with the default options (no flags byte).
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_with(ReadFlags::default(), out);
    }

    pub fn encode_with(&self, flags: ReadFlags, out: &mut Vec<u8>) {
        put_str8(out, self.channel);
        self.filter.encode(out);
        flags.encode(out);
    }

    /// The request, its options checked and left out (see [`decode_with`](Self::decode_with)).
    pub fn decode(body: &'a [u8]) -> Result<GetAllRequest<'a>, WireError> {
        Self::decode_with(body).map(|(request, _)| request)
    }

    pub fn decode_with(body: &'a [u8]) -> Result<(GetAllRequest<'a>, ReadFlags), WireError> {
        let mut reader = Reader::new(body);
        let channel = reader.str8("channel")?;
        let filter = Filter::decode(&mut reader)?;
        let flags = ReadFlags::decode(reader)?;
        Ok((GetAllRequest { channel, filter }, flags))
    }
}

/// GetChannelSize / GetSize reply: `u64 buckets` (bucket files), `u64 bytes` (their total
/// length on disk, headers included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskSize {
    pub buckets: u64,
    pub bytes: u64,
}

impl DiskSize {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.buckets);
        put_u64(out, self.bytes);
    }

    pub fn decode(body: &[u8]) -> Result<DiskSize, WireError> {
        let mut reader = Reader::new(body);
        let buckets = reader.u64("buckets")?;
        let bytes = reader.u64("bytes")?;
        reader.finish()?;
        Ok(DiskSize { buckets, bytes })
    }
}

impl super::channels::SizeReply for DiskSize {
    fn encode(&self, out: &mut Vec<u8>) {
        DiskSize::encode(self, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_range_round_trips_and_refuses_inconsistent_filters() {
        let request = GetRangeRequest {
            channel: "logs",
            from: 5,
            to: u64::MAX,
            filter: Filter {
                mode: FilterMode::Regex,
                pattern: b"a.c",
            },
        };
        let mut body = Vec::new();
        request.encode(&mut body);
        assert_eq!(GetRangeRequest::decode(&body), Ok(request));

        for (mode, pattern) in [(FilterMode::None, &b"x"[..]), (FilterMode::Substring, b"")] {
            let mut body = Vec::new();
            GetRangeRequest {
                filter: Filter { mode, pattern },
                ..request
            }
            .encode(&mut body);
            assert!(GetRangeRequest::decode(&body).is_err(), "{mode:?}");
        }
        let mut body = Vec::new();
        request.encode(&mut body);
        body[4 + 1 + 16] = 9; // the filter mode byte, after str8 "logs" and two u64
        assert!(GetRangeRequest::decode(&body).is_err());
    }

    #[test]
    fn read_flags_are_one_optional_byte_and_unknown_bits_are_refused() {
        let request = GetRangeRequest {
            channel: "logs",
            from: 1,
            to: 2,
            filter: Filter::NONE,
        };
        let mut plain = Vec::new();
        request.encode(&mut plain);
        let mut flagged = Vec::new();
        let uncompressed = ReadFlags { uncompressed: true };
        request.encode_with(uncompressed, &mut flagged);
        assert_eq!(flagged.len(), plain.len() + 1, "one byte more");
        assert_eq!(flagged[..plain.len()], plain[..]);
        assert_eq!(
            GetRangeRequest::decode_with(&plain),
            Ok((request, ReadFlags::default()))
        );
        assert_eq!(
            GetRangeRequest::decode_with(&flagged),
            Ok((request, uncompressed))
        );
        // A zero byte is the defaults, written out.
        let mut zero = plain.clone();
        zero.push(0);
        assert_eq!(
            GetRangeRequest::decode_with(&zero),
            Ok((request, ReadFlags::default()))
        );
        for bad in [vec![2u8], vec![0x81], vec![1, 0]] {
            let mut body = plain.clone();
            body.extend_from_slice(&bad);
            assert!(GetRangeRequest::decode_with(&body).is_err(), "{bad:?}");
        }

        let all = GetAllRequest {
            channel: "logs",
            filter: Filter::NONE,
        };
        let mut body = Vec::new();
        all.encode_with(uncompressed, &mut body);
        assert_eq!(GetAllRequest::decode_with(&body), Ok((all, uncompressed)));
        body.push(0);
        assert!(GetAllRequest::decode_with(&body).is_err());
    }

    #[test]
    fn get_all_and_put_round_trip() {
        let request = GetAllRequest {
            channel: "c",
            filter: Filter::NONE,
        };
        let mut body = Vec::new();
        request.encode(&mut body);
        assert_eq!(GetAllRequest::decode(&body), Ok(request));

        let put = PutRequest {
            channel: "c",
            key: 0x5727_5813,
            value: b"v",
        };
        let mut body = Vec::new();
        put.encode(&mut body);
        assert_eq!(PutRequest::decode(&body), Ok(put));
    }
}

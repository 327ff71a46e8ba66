//! The logfiles node's part of the protocol: its request codes and the layout of each request and
//! reply body (docs/protocol.md §7). Node and client both use these, so they cannot disagree.
//!
//! Codes 48–79 belong to logfiles; the node answers the unlisted ones UnsupportedRequest.

pub use super::channels::{
    decode_channel, decode_channel_names, decode_put_batch, encode_channel, encode_channel_names,
    encode_put_batch, valid_channel_name, PutRequest, MAX_CHANNEL_NAME_LEN,
};
use super::wire::{put_bytes, put_str8, put_u64, put_u8, Reader, WireError};
use super::RequestCode;

pub const PUT: RequestCode = RequestCode(48);
pub const PUT_BATCH: RequestCode = RequestCode(49);
pub const GET_RANGE: RequestCode = RequestCode(50);
pub const GET_ALL: RequestCode = RequestCode(51);
pub const GET_CHANNELS: RequestCode = RequestCode(52);
pub const GET_CHANNEL_SIZE: RequestCode = RequestCode(53);
pub const GET_SIZE: RequestCode = RequestCode(54);
pub const REMOVE_CHANNEL: RequestCode = RequestCode(55);

/// Item code of GetRange and GetAll: one LZ4 batch (§4) of records.
pub const ITEM_RECORD_BATCH: u8 = 1;

/// The longest filter (substring or regular expression), in bytes.
pub const MAX_FILTER_LEN: usize = 4096;

/// The name of a logfiles request code, for logs and stats.
pub fn request_name(code: RequestCode) -> Option<&'static str> {
    Some(match code {
        PUT => "Put",
        PUT_BATCH => "PutBatch",
        GET_RANGE => "GetRange",
        GET_ALL => "GetAll",
        GET_CHANNELS => "GetChannels",
        GET_CHANNEL_SIZE => "GetChannelSize",
        GET_SIZE => "GetSize",
        REMOVE_CHANNEL => "RemoveChannel",
        _ => return None,
    })
}

/// Administrative requests: only admins may run them when authentication is on. A node checks
/// this before it looks at the body (docs/protocol.md §1.4).
pub fn is_admin_request(code: RequestCode) -> bool {
    code == REMOVE_CHANNEL
}

/// Requests that open a stream of Items (docs/protocol.md §2.2): refused with TooManyRequests
/// while the connection's or the node's streams hold their memory budget.
pub fn opens_stream(code: RequestCode) -> bool {
    matches!(code, GET_RANGE | GET_ALL)
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

/// GetRange: `channel`, `u64 from`, `u64 to` (inclusive), `u8 filter_mode`, `bytes filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetRangeRequest<'a> {
    pub channel: &'a str,
    pub from: u64,
    pub to: u64,
    pub filter: Filter<'a>,
}

impl<'a> GetRangeRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str8(out, self.channel);
        put_u64(out, self.from);
        put_u64(out, self.to);
        self.filter.encode(out);
    }

    pub fn decode(body: &'a [u8]) -> Result<GetRangeRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let channel = reader.str8("channel")?;
        let from = reader.u64("from")?;
        let to = reader.u64("to")?;
        let filter = Filter::decode(&mut reader)?;
        reader.finish()?;
        Ok(GetRangeRequest {
            channel,
            from,
            to,
            filter,
        })
    }
}

/// GetAll: `channel`, `u8 filter_mode`, `bytes filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetAllRequest<'a> {
    pub channel: &'a str,
    pub filter: Filter<'a>,
}

impl<'a> GetAllRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str8(out, self.channel);
        self.filter.encode(out);
    }

    pub fn decode(body: &'a [u8]) -> Result<GetAllRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let channel = reader.str8("channel")?;
        let filter = Filter::decode(&mut reader)?;
        reader.finish()?;
        Ok(GetAllRequest { channel, filter })
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

//! The queue node's part of the protocol: its request codes and the layout of each request and
//! reply body (docs/protocol.md §8). Node and client both use these, so they cannot disagree.
//!
//! Codes 80–111 belong to queue. Those not listed here (PushMulti, Produce, Consume, Subscribe)
//! are reserved for requests still to be built; a node answers them UnsupportedRequest.

pub use super::channels::{
    decode_channel, decode_channel_names, encode_channel, encode_channel_names,
};
use super::wire::{put_str8, put_u64, Reader, WireError};
use super::RequestCode;

pub const PUSH: RequestCode = RequestCode(80);
pub const POP: RequestCode = RequestCode(81);
pub const GET_CHANNELS: RequestCode = RequestCode(82);
pub const GET_CHANNEL_SIZE: RequestCode = RequestCode(83);
pub const GET_SIZE: RequestCode = RequestCode(84);
pub const REMOVE_CHANNEL: RequestCode = RequestCode(85);

/// The name of a queue request code, for logs and stats.
pub fn request_name(code: RequestCode) -> Option<&'static str> {
    Some(match code {
        PUSH => "Push",
        POP => "Pop",
        GET_CHANNELS => "GetChannels",
        GET_CHANNEL_SIZE => "GetChannelSize",
        GET_SIZE => "GetSize",
        REMOVE_CHANNEL => "RemoveChannel",
        _ => return None,
    })
}

/// The longest channel (or subscriber) name.
pub const MAX_CHANNEL_NAME_LEN: usize = 100;

/// Whether `name` is a valid channel name: 1 to 100 characters of `[A-Za-z0-9_-]`.
pub fn valid_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Push: `channel`, then the value as the rest of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushRequest<'a> {
    pub channel: &'a str,
    pub value: &'a [u8],
}

impl<'a> PushRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str8(out, self.channel);
        out.extend_from_slice(self.value);
    }

    pub fn decode(body: &'a [u8]) -> Result<PushRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let channel = reader.str8("channel")?;
        Ok(PushRequest {
            channel,
            value: reader.rest(),
        })
    }
}

/// GetChannelSize / GetSize reply: `u64 records`, `u64 value_bytes` (Σ value lengths),
/// `u64 used_bytes` (ring bytes in use: headers, alignment and padding included),
/// `u64 capacity_bytes` (Σ ring capacities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueSize {
    pub records: u64,
    pub value_bytes: u64,
    pub used_bytes: u64,
    pub capacity_bytes: u64,
}

impl QueueSize {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.records);
        put_u64(out, self.value_bytes);
        put_u64(out, self.used_bytes);
        put_u64(out, self.capacity_bytes);
    }

    pub fn decode(body: &[u8]) -> Result<QueueSize, WireError> {
        let mut reader = Reader::new(body);
        let size = QueueSize {
            records: reader.u64("records")?,
            value_bytes: reader.u64("value_bytes")?,
            used_bytes: reader.u64("used_bytes")?,
            capacity_bytes: reader.u64("capacity_bytes")?,
        };
        reader.finish()?;
        Ok(size)
    }

    /// `used_bytes` as a percentage of `capacity_bytes`, 0 to 100 (0 for no capacity).
    pub fn fill_percent(&self) -> u8 {
        if self.capacity_bytes == 0 {
            return 0;
        }
        (self.used_bytes.saturating_mul(100) / self.capacity_bytes).min(100) as u8
    }

    /// Adds `other` into `self` (GetSize sums channels; a client sums nodes).
    pub fn add(&mut self, other: &QueueSize) {
        self.records += other.records;
        self.value_bytes += other.value_bytes;
        self.used_bytes += other.used_bytes;
        self.capacity_bytes += other.capacity_bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_round_trips_with_empty_and_binary_values() {
        for value in [&b""[..], b"x", &[0u8, 255, 10, 13]] {
            let push = PushRequest {
                channel: "ch-1",
                value,
            };
            let mut out = Vec::new();
            push.encode(&mut out);
            assert_eq!(PushRequest::decode(&out).unwrap(), push);
        }
    }

    #[test]
    fn channel_names_and_sizes_round_trip() {
        let mut out = Vec::new();
        encode_channel_names(&mut out, ["a", "b_c"].into_iter());
        assert_eq!(decode_channel_names(&out).unwrap(), vec!["a", "b_c"]);
        let size = QueueSize {
            records: 3,
            value_bytes: 30,
            used_bytes: 96,
            capacity_bytes: 4096,
        };
        let mut out = Vec::new();
        size.encode(&mut out);
        assert_eq!(QueueSize::decode(&out).unwrap(), size);
        assert_eq!(size.fill_percent(), 2);
        assert!(QueueSize::decode(&out[..31]).is_err());
        let mut out = Vec::new();
        encode_channel(&mut out, "ch");
        assert_eq!(decode_channel(&out).unwrap(), "ch");
        out.push(0);
        assert!(decode_channel(&out).is_err());
    }

    #[test]
    fn codes_are_in_the_queue_block_and_named() {
        for code in [
            PUSH,
            POP,
            GET_CHANNELS,
            GET_CHANNEL_SIZE,
            GET_SIZE,
            REMOVE_CHANNEL,
        ] {
            assert!((80..=111).contains(&code.0));
            assert!(request_name(code).is_some());
        }
        assert!(request_name(RequestCode(86)).is_none());
        assert!(valid_channel_name("a-Z_9"));
        assert!(!valid_channel_name("a@b"));
        assert!(!valid_channel_name(""));
    }
}

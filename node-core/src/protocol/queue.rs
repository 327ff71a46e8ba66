//! The queue node's part of the protocol: its request codes and the layout of each request and
//! reply body (docs/protocol.md §8). Node and client both use these, so they cannot disagree.
//!
//! Codes 80–111 belong to queue; those not listed here (91–111) are reserved, and a node answers
//! them UnsupportedRequest.

pub use super::channels::{
    check_channel_name, decode_channel, decode_channel_names, encode_channel, encode_channel_names,
    valid_channel_name, BadChannelName, MAX_CHANNEL_NAME_LEN,
};
use super::wire::{put_str8, put_u32, put_u64, put_u8, Reader, WireError};
use super::RequestCode;

super::codes::request_enum! {
    /// The queue requests (docs/protocol.md §8), with their wire codes.
    pub enum QueueRequest {
        Push = 80,
        Pop = 81,
        GetChannels = 82,
        GetChannelSize = 83,
        GetSize = 84,
        RemoveChannel = 85,
        PushMulti = 86,
        Produce = 87,
        Consume = 88,
        ConsumeAck = 89,
        Subscribe = 90,
    }
}

impl QueueRequest {
    /// Administrative requests: only admins may run them when authentication is on. A node
    /// checks this before it looks at the body (docs/protocol.md §1.4).
    pub const fn admin_only(self) -> bool {
        use QueueRequest::*;
        match self {
            RemoveChannel => true,
            Push | Pop | GetChannels | GetChannelSize | GetSize | PushMulti | Produce | Consume
            | ConsumeAck | Subscribe => false,
        }
    }

    /// Requests that open a stream of Items (docs/protocol.md §2.2): refused with
    /// TooManyRequests while the connection's or the node's streams hold their memory budget.
    pub const fn opens_stream(self) -> bool {
        use QueueRequest::*;
        match self {
            Consume => true,
            Push | Pop | GetChannels | GetChannelSize | GetSize | RemoveChannel | PushMulti
            | Produce | ConsumeAck | Subscribe => false,
        }
    }

    /// Requests that only act on a running stream (ConsumeAck): never refused for the
    /// connection's limits (`max_in_flight`, stream memory), which the streams they serve may
    /// be holding.
    pub const fn acts_on_running_stream(self) -> bool {
        use QueueRequest::*;
        match self {
            ConsumeAck => true,
            Push | Pop | GetChannels | GetChannelSize | GetSize | RemoveChannel | PushMulti
            | Produce | Consume | Subscribe => false,
        }
    }
}

// The codes as constants, for senders (the client, tests).
pub const PUSH: RequestCode = QueueRequest::Push.code();
pub const POP: RequestCode = QueueRequest::Pop.code();
pub const GET_CHANNELS: RequestCode = QueueRequest::GetChannels.code();
pub const GET_CHANNEL_SIZE: RequestCode = QueueRequest::GetChannelSize.code();
pub const GET_SIZE: RequestCode = QueueRequest::GetSize.code();
pub const REMOVE_CHANNEL: RequestCode = QueueRequest::RemoveChannel.code();
pub const PUSH_MULTI: RequestCode = QueueRequest::PushMulti.code();
pub const PRODUCE: RequestCode = QueueRequest::Produce.code();
pub const CONSUME: RequestCode = QueueRequest::Consume.code();
pub const CONSUME_ACK: RequestCode = QueueRequest::ConsumeAck.code();
pub const SUBSCRIBE: RequestCode = QueueRequest::Subscribe.code();

/// Item code of a Consume stream: one LZ4 batch of records (docs/protocol.md §4), each with the
/// record's sequence number in its storage as the key.
pub const ITEM_RECORD_BATCH: u8 = 1;

/// The most channels one PushMulti or Produce names.
pub const MAX_PUSH_CHANNELS: usize = 64;

/// The name of a queue request code, for logs and stats.
pub fn request_name(code: RequestCode) -> Option<&'static str> {
    QueueRequest::from_code(code).map(QueueRequest::name)
}

/// Whether `code` is an administrative queue request ([`QueueRequest::admin_only`]).
pub fn is_admin_request(code: RequestCode) -> bool {
    QueueRequest::from_code(code).is_some_and(QueueRequest::admin_only)
}

/// Whether `code` is a queue request that opens a stream ([`QueueRequest::opens_stream`]).
pub fn opens_stream(code: RequestCode) -> bool {
    QueueRequest::from_code(code).is_some_and(QueueRequest::opens_stream)
}

/// Whether `code` is a queue request that only acts on a running stream
/// ([`QueueRequest::acts_on_running_stream`]).
pub fn acts_on_running_stream(code: RequestCode) -> bool {
    QueueRequest::from_code(code).is_some_and(QueueRequest::acts_on_running_stream)
}

/// Whether `name` is a valid subscriber name: 0 to 100 characters of `[A-Za-z0-9_-]` (empty is
/// the default subscriber).
pub fn valid_subscriber_name(name: &str) -> bool {
    name.is_empty() || valid_channel_name(name)
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

/// Writes a channel list: `u8 n`, then `n` × `str8` channel.
fn put_channels(out: &mut Vec<u8>, channels: &[&str]) {
    put_u8(out, channels.len().min(usize::from(u8::MAX)) as u8);
    for channel in channels.iter().take(usize::from(u8::MAX)) {
        put_str8(out, channel);
    }
}

/// Reads a channel list of 1 to [`MAX_PUSH_CHANNELS`] names (not yet checked as names).
fn read_channels<'a>(reader: &mut Reader<'a>) -> Result<Vec<&'a str>, WireError> {
    let count = usize::from(reader.u8("channel_count")?);
    if count == 0 {
        return Err(WireError::Invalid {
            field: "channel_count",
            reason: "at least one channel is needed",
        });
    }
    let count = Reader::check_count("channel_count", count, MAX_PUSH_CHANNELS, "channels")?;
    (0..count).map(|_| reader.str8("channel")).collect()
}

/// PushMulti: `u8 n` (1 to 64), `n` × `str8` channel, then the value as the rest of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMultiRequest<'a> {
    pub channels: Vec<&'a str>,
    pub value: &'a [u8],
}

impl<'a> PushMultiRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_channels(out, &self.channels);
        out.extend_from_slice(self.value);
    }

    pub fn decode(body: &'a [u8]) -> Result<PushMultiRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let channels = read_channels(&mut reader)?;
        Ok(PushMultiRequest {
            channels,
            value: reader.rest(),
        })
    }
}

/// Produce: `u8 n` (1 to 64), `n` × `str8` channel, then one LZ4 batch (§4) of values as the
/// rest of the body (the records' keys are ignored; send 0). The Ok reply is a
/// [`ProduceReply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest<'a> {
    pub channels: Vec<&'a str>,
    pub batch: &'a [u8],
}

impl<'a> ProduceRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_channels(out, &self.channels);
        out.extend_from_slice(self.batch);
    }

    pub fn decode(body: &'a [u8]) -> Result<ProduceRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let channels = read_channels(&mut reader)?;
        Ok(ProduceRequest {
            channels,
            batch: reader.rest(),
        })
    }
}

/// Produce's Ok reply: `u32 stored`, the number of leading values of the batch that were stored
/// (in every channel); the values after them were not stored because a ring was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceReply {
    pub stored: u32,
}

impl ProduceReply {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, self.stored);
    }

    pub fn decode(body: &[u8]) -> Result<ProduceReply, WireError> {
        let mut reader = Reader::new(body);
        let stored = reader.u32("stored")?;
        reader.finish()?;
        Ok(ProduceReply { stored })
    }
}

/// Consume: `str8 channel`, `str8 subscriber` (empty: the default subscriber),
/// `u32 max_batch_records` (0: no limit but the batch size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumeRequest<'a> {
    pub channel: &'a str,
    pub subscriber: &'a str,
    pub max_batch_records: u32,
}

impl<'a> ConsumeRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str8(out, self.channel);
        put_str8(out, self.subscriber);
        put_u32(out, self.max_batch_records);
    }

    pub fn decode(body: &'a [u8]) -> Result<ConsumeRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let request = ConsumeRequest {
            channel: reader.str8("channel")?,
            subscriber: reader.str8("subscriber")?,
            max_batch_records: reader.u32("max_batch_records")?,
        };
        reader.finish()?;
        Ok(request)
    }
}

/// ConsumeAck: `u64 consume_id` (the request id of a Consume running on the same connection),
/// `u64 records`: how many records of that stream, counted from its first, the client has
/// processed (cumulative, so a later ack covers every earlier one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumeAckRequest {
    pub consume_id: u64,
    pub records: u64,
}

impl ConsumeAckRequest {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.consume_id);
        put_u64(out, self.records);
    }

    pub fn decode(body: &[u8]) -> Result<ConsumeAckRequest, WireError> {
        let mut reader = Reader::new(body);
        let request = ConsumeAckRequest {
            consume_id: reader.u64("consume_id")?,
            records: reader.u64("records")?,
        };
        reader.finish()?;
        Ok(request)
    }
}

/// Subscribe: `str8 channel`, `str8 subscriber` (empty: the default subscriber).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeRequest<'a> {
    pub channel: &'a str,
    pub subscriber: &'a str,
}

impl<'a> SubscribeRequest<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str8(out, self.channel);
        put_str8(out, self.subscriber);
    }

    pub fn decode(body: &'a [u8]) -> Result<SubscribeRequest<'a>, WireError> {
        let mut reader = Reader::new(body);
        let request = SubscribeRequest {
            channel: reader.str8("channel")?,
            subscriber: reader.str8("subscriber")?,
        };
        reader.finish()?;
        Ok(request)
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

impl super::channels::SizeReply for QueueSize {
    fn encode(&self, out: &mut Vec<u8>) {
        QueueSize::encode(self, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_push_channels_are_counted_as_channels() {
        let mut body = vec![65u8];
        for i in 0..65 {
            put_str8(&mut body, &format!("c{i}"));
        }
        body.push(b'v');
        let err = PushMultiRequest::decode(&body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `channel_count`: 65 channels, more than the limit of 64"
        );
    }

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
    fn multi_channel_bodies_round_trip_and_bad_counts_are_refused() {
        let push = PushMultiRequest {
            channels: vec!["a", "b-2"],
            value: b"v\x00",
        };
        let mut out = Vec::new();
        push.encode(&mut out);
        assert_eq!(PushMultiRequest::decode(&out).unwrap(), push);
        let produce = ProduceRequest {
            channels: vec!["a"],
            batch: &[1, 2, 3],
        };
        let mut out = Vec::new();
        produce.encode(&mut out);
        assert_eq!(ProduceRequest::decode(&out).unwrap(), produce);
        assert!(PushMultiRequest::decode(&[0, b'x']).is_err(), "no channel");
        assert!(
            PushMultiRequest::decode(&[65]).is_err(),
            "too many channels"
        );
        assert!(
            PushMultiRequest::decode(&[2, 1, b'a']).is_err(),
            "truncated"
        );
        let mut out = Vec::new();
        ProduceReply { stored: 7 }.encode(&mut out);
        assert_eq!(ProduceReply::decode(&out).unwrap().stored, 7);
        assert!(ProduceReply::decode(&out[..3]).is_err());
    }

    #[test]
    fn consume_subscribe_and_ack_bodies_round_trip() {
        let consume = ConsumeRequest {
            channel: "ch",
            subscriber: "",
            max_batch_records: 5,
        };
        let mut out = Vec::new();
        consume.encode(&mut out);
        assert_eq!(ConsumeRequest::decode(&out).unwrap(), consume);
        out.push(0);
        assert!(ConsumeRequest::decode(&out).is_err(), "trailing byte");
        let ack = ConsumeAckRequest {
            consume_id: 9,
            records: 1 << 40,
        };
        let mut out = Vec::new();
        ack.encode(&mut out);
        assert_eq!(ConsumeAckRequest::decode(&out).unwrap(), ack);
        assert!(ConsumeAckRequest::decode(&out[..15]).is_err());
        let subscribe = SubscribeRequest {
            channel: "ch",
            subscriber: "sub",
        };
        let mut out = Vec::new();
        subscribe.encode(&mut out);
        assert_eq!(SubscribeRequest::decode(&out).unwrap(), subscribe);
        assert!(valid_subscriber_name(""));
        assert!(valid_subscriber_name("a_1"));
        assert!(!valid_subscriber_name("a@b"));
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
            PUSH_MULTI,
            PRODUCE,
            CONSUME,
            CONSUME_ACK,
            SUBSCRIBE,
        ] {
            assert!((80..=111).contains(&code.0));
            assert!(request_name(code).is_some());
        }
        assert!(request_name(RequestCode(91)).is_none());
        assert!(valid_channel_name("a-Z_9"));
        assert!(!valid_channel_name("a@b"));
        assert!(!valid_channel_name(""));
    }
}

//! What every node kind does the same way: the channel-name rule, a request that names only a
//! channel (Listen, Pop, GetChannelSize, RemoveChannel, ...), a channel followed by an LZ4 batch
//! (PutBatch), and the GetChannels reply. One definition, re-exported by each kind's module, so
//! the kinds cannot drift apart.

use super::wire::{put_str8, put_u32, put_u64, Reader, WireError};

/// The longest channel name. Names become file names, so they are short and plain.
pub const MAX_CHANNEL_NAME_LEN: usize = 100;

/// Whether `name` is a valid channel name: 1 to 100 characters of `[A-Za-z0-9_-]`.
pub fn valid_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME_LEN
        && name.bytes().all(|b| CHANNEL_NAME_BYTES[b as usize])
}

/// Whether a byte may be part of a channel name: `[A-Za-z0-9_-]`. A table, because every change
/// checks its channel name (the request, then the change log's entry): one load per byte
/// instead of four range compares (~45 instructions less for a 5-byte name).
const CHANNEL_NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        byte += 1;
    }
    table
};

/// A channel name that breaks the rule of [`valid_channel_name`]: the one error, status and
/// message every kind and every request gives for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channel name {0:?} is not 1 to 100 characters of A-Z a-z 0-9 _ -")]
pub struct BadChannelName(pub String);

/// The channel-name check, in the one shape every node and request uses.
pub fn check_channel_name(name: &str) -> Result<(), BadChannelName> {
    if valid_channel_name(name) {
        Ok(())
    } else {
        Err(BadChannelName(name.to_string()))
    }
}

/// The body of a GetChannelSize or GetSize reply, whose fields differ by kind (records and
/// bytes, bucket files, ring bytes): what the requests shared by every kind send.
pub trait SizeReply {
    fn encode(&self, out: &mut Vec<u8>);
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

/// Put (dht and logfiles): `channel`, `u64 key`, then the value as the rest of the body.
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

/// A request naming only a channel: `str8 channel`.
pub fn encode_channel(out: &mut Vec<u8>, channel: &str) {
    put_str8(out, channel);
}

pub fn decode_channel(body: &[u8]) -> Result<&str, WireError> {
    let mut reader = Reader::new(body);
    let channel = reader.str8("channel")?;
    reader.finish()?;
    Ok(channel)
}

/// GetChannels reply: `u32 n`, then `n` × `str8` name.
pub fn encode_channel_names<'a>(out: &mut Vec<u8>, names: impl ExactSizeIterator<Item = &'a str>) {
    put_u32(out, names.len() as u32);
    for name in names {
        put_str8(out, name);
    }
}

pub fn decode_channel_names(body: &[u8]) -> Result<Vec<String>, WireError> {
    let mut reader = Reader::new(body);
    let count = reader.u32("count")?;
    // Each name takes at least 2 bytes (length and one character), so a count beyond that is a
    // lie, not an allocation.
    if count as usize > reader.remaining() / 2 {
        return Err(WireError::Invalid {
            field: "count",
            reason: "more names than the body can hold",
        });
    }
    let mut names = Vec::with_capacity(count as usize);
    for _ in 0..count {
        names.push(reader.str8("name")?.to_string());
    }
    reader.finish()?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_bodies_round_trip_and_lying_counts_are_refused() {
        let mut out = Vec::new();
        encode_channel_names(&mut out, ["a", "bb"].into_iter());
        assert_eq!(decode_channel_names(&out).unwrap(), vec!["a", "bb"]);
        assert!(decode_channel_names(&[255, 255, 255, 255]).is_err());
        out.clear();
        encode_channel(&mut out, "ch");
        assert_eq!(decode_channel(&out), Ok("ch"));
        out.push(0);
        assert!(decode_channel(&out).is_err(), "trailing bytes are refused");
    }

    /// The table holds exactly the documented characters: every byte, alone and in a name.
    #[test]
    fn channel_names_take_exactly_a_z_digits_underscore_and_dash() {
        for byte in 0..=255u8 {
            let documented = byte.is_ascii_uppercase()
                || byte.is_ascii_lowercase()
                || byte.is_ascii_digit()
                || byte == b'_'
                || byte == b'-';
            let name = [b'a', byte, b'z'];
            // Non-UTF-8 bytes cannot reach the check (names are `str`): the table must still
            // refuse them, as the byte-level rule does.
            assert_eq!(
                CHANNEL_NAME_BYTES[byte as usize], documented,
                "byte {byte:#04x}"
            );
            if let Ok(name) = std::str::from_utf8(&name) {
                assert_eq!(valid_channel_name(name), documented, "{name:?}");
            }
        }
        assert!(!valid_channel_name("caf\u{e9}"));
        assert!(valid_channel_name(&"x".repeat(MAX_CHANNEL_NAME_LEN)));
        assert!(!valid_channel_name(&"x".repeat(MAX_CHANNEL_NAME_LEN + 1)));
    }
}

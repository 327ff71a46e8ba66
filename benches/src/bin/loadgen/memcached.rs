//! memcached's text protocol for `loadgen --kind memcached`: `set key:%012d 0 0 <bytes>` with
//! the value, and `get key:%012d`, the keys and values the Redis codec writes, so the peers hold
//! the same data. Replies come in request order. Pipelining (`-P`) sends single-key gets back to
//! back, as it sends Redis GETs and our Gets; with `--multiget` a batch of P gets is one
//! multi-get (`get k1 … kP`), answered by a VALUE block per key found and one END.

use crate::text::{bench_value, find_crlf, KeyTemplates};
use crate::{Codec, Decoded, Op, Outcome};

/// memcached's own largest item (`-I` at most 1 GiB): a VALUE header announcing more is not a
/// memcached reply, and waiting for it would grow the input buffer without bound.
const MAX_VALUE_BYTES: usize = 1 << 30;
const END_LINE: &[u8] = b"END\r\n";

pub(crate) struct MemcachedCodec {
    requests: KeyTemplates,
    /// With multi-gets: ` key:…`, a further key on an open `get` line.
    more_keys: Option<KeyTemplates>,
    value_size: usize,
}

impl MemcachedCodec {
    pub(crate) fn new(value_size: usize, multiget: bool) -> MemcachedCodec {
        let value = bench_value(value_size);
        let set_tail = format!(" 0 0 {value_size}\r\n{value}\r\n");
        let set = ("set ", set_tail.as_str());
        // A multi-get's line stays open for the batch's further keys; end_batch closes it.
        let get_tail = if multiget { "" } else { "\r\n" };
        MemcachedCodec {
            requests: KeyTemplates::new(set, ("get ", get_tail)),
            more_keys: multiget.then(|| KeyTemplates::new(set, (" ", ""))),
            value_size,
        }
    }

    /// Whether `out` ends inside a multi-get's line.
    fn line_open(out: &[u8]) -> bool {
        !out.is_empty() && !out.ends_with(b"\r\n")
    }
}

/// The byte count of a `VALUE <key> <flags> <bytes> [<cas>]` line.
fn value_bytes(line: &[u8]) -> Result<usize, String> {
    let text = std::str::from_utf8(line).map_err(|_| "a VALUE line that is not text")?;
    let bytes = text
        .split(' ')
        .nth(3)
        .and_then(|field| field.parse::<usize>().ok())
        .ok_or_else(|| format!("a malformed VALUE line {text:?}"))?;
    if bytes > MAX_VALUE_BYTES {
        return Err(format!(
            "a VALUE of {bytes} bytes (more than memcached stores)"
        ));
    }
    Ok(bytes)
}

impl Codec for MemcachedCodec {
    #[inline]
    fn encode(&self, op: Op, key: u64, _id: u64, out: &mut Vec<u8>) {
        match &self.more_keys {
            Some(more) if op == Op::Get && Self::line_open(out) => more.encode(op, key, out),
            _ => self.requests.encode(op, key, out),
        }
    }

    fn end_batch(&self, out: &mut Vec<u8>) {
        if self.more_keys.is_some() && Self::line_open(out) {
            out.extend_from_slice(b"\r\n");
        }
    }

    fn decode(&self, buf: &[u8]) -> Result<Option<Decoded>, String> {
        let Some(line_end) = find_crlf(buf, 0) else {
            return Ok(None);
        };
        let line = &buf[..line_end];
        let reply = |len, outcome, body| {
            Ok(Some(Decoded {
                len,
                id: None,
                outcome,
                body,
            }))
        };
        if line == b"STORED" {
            return reply(line_end + 2, Outcome::Hit, 0..line_end);
        }
        let multiget = self.more_keys.is_some();
        if line == b"END" {
            let outcome = if multiget {
                Outcome::EndOfBatch
            } else {
                Outcome::Miss
            };
            return reply(line_end + 2, outcome, 0..line_end);
        }
        if line.starts_with(b"VALUE ") {
            // A single-key get's VALUE block closes with END; a multi-get's END comes once,
            // after the last block, and is a reply of its own.
            let data = line_end + 2;
            let data_end = data + value_bytes(line)?;
            let end_len = if multiget { 0 } else { END_LINE.len() };
            let total = data_end + 2 + end_len;
            if buf.len() < total {
                return Ok(None);
            }
            if &buf[data_end..data_end + 2] != b"\r\n"
                || buf[data_end + 2..total] != END_LINE[..end_len]
            {
                return Err("a VALUE block not closed by \\r\\n (and END)".into());
            }
            return reply(total, Outcome::Hit, data..data_end);
        }
        let known_error = [
            &b"ERROR"[..],
            b"CLIENT_ERROR",
            b"SERVER_ERROR",
            b"NOT_STORED",
            b"EXISTS",
            b"NOT_FOUND",
        ]
        .iter()
        .any(|word| line.starts_with(word));
        if known_error {
            return reply(line_end + 2, Outcome::Error(0), 0..line_end);
        }
        Err(format!(
            "unexpected memcached reply {:?}",
            String::from_utf8_lossy(&line[..line.len().min(80)])
        ))
    }

    fn max_reply_len(&self) -> usize {
        // "VALUE key:<12 digits> <flags> <bytes>\r\n" + value + "\r\nEND\r\n"
        self.value_size + 64
    }

    fn replies_carry_id(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_redis_keys_and_values() {
        let codec = MemcachedCodec::new(3, false);
        let mut out = Vec::new();
        codec.encode(Op::Put, 5, 0, &mut out);
        codec.encode(Op::Get, 123, 1, &mut out);
        assert_eq!(
            out,
            b"set key:000000000005 0 0 3\r\nabc\r\nget key:000000000123\r\n"
        );
    }

    #[test]
    fn decodes_hits_misses_stores_and_errors() {
        let codec = MemcachedCodec::new(3, false);
        let hit = b"VALUE key:000000000123 0 3\r\nabc\r\nEND\r\nSTORED\r\n";
        let reply = codec.decode(hit).unwrap().unwrap();
        assert_eq!((reply.len, reply.outcome), (38, Outcome::Hit));
        assert_eq!(&hit[reply.body], b"abc");
        let stored = codec.decode(&hit[38..]).unwrap().unwrap();
        assert_eq!((stored.len, stored.outcome), (8, Outcome::Hit));
        let miss = codec.decode(b"END\r\n").unwrap().unwrap();
        assert_eq!((miss.len, miss.outcome), (5, Outcome::Miss));
        let error = codec
            .decode(b"SERVER_ERROR out of memory\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(error.outcome, Outcome::Error(0));
        // With a CAS field (gets) the byte count is still the fourth field.
        let cas = codec
            .decode(b"VALUE k 0 2 99\r\nab\r\nEND\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(cas.outcome, Outcome::Hit);
    }

    #[test]
    fn waits_for_incomplete_replies() {
        let codec = MemcachedCodec::new(3, false);
        let whole = b"VALUE key:000000000123 0 3\r\nabc\r\nEND\r\n";
        for cut in 0..whole.len() {
            assert!(
                codec.decode(&whole[..cut]).unwrap().is_none(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn multigets_put_a_batch_on_one_line_and_end_it_once() {
        let codec = MemcachedCodec::new(3, true);
        let mut out = Vec::new();
        for key in [1, 2, 3] {
            codec.encode(Op::Get, key, 0, &mut out);
        }
        codec.end_batch(&mut out);
        codec.end_batch(&mut out);
        codec.encode(Op::Get, 4, 0, &mut out);
        codec.end_batch(&mut out);
        assert_eq!(
            out,
            &b"get key:000000000001 key:000000000002 key:000000000003\r\nget key:000000000004\r\n"
                [..]
        );
        // Sets (the prefill) are whole requests in either mode.
        out.clear();
        codec.encode(Op::Put, 5, 0, &mut out);
        codec.end_batch(&mut out);
        assert_eq!(out, b"set key:000000000005 0 0 3\r\nabc\r\n");
        let replies =
            b"VALUE key:000000000001 0 3\r\nabc\r\nVALUE key:000000000003 0 3\r\nabc\r\nEND\r\n";
        let first = codec.decode(replies).unwrap().unwrap();
        assert_eq!((first.len, first.outcome), (33, Outcome::Hit));
        let second = codec.decode(&replies[33..]).unwrap().unwrap();
        assert_eq!((second.len, second.outcome), (33, Outcome::Hit));
        let end = codec.decode(&replies[66..]).unwrap().unwrap();
        assert_eq!((end.len, end.outcome), (5, Outcome::EndOfBatch));
    }

    #[test]
    fn refuses_what_memcached_would_not_send() {
        let codec = MemcachedCodec::new(3, false);
        for bad in [
            &b"VALUE key 0 3\r\nabcd\r\nEND\r\n"[..],
            b"VALUE key 0\r\n",
            b"VALUE key 0 99999999999\r\n",
            b"HELLO\r\n",
        ] {
            assert!(
                codec.decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

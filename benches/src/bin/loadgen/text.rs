//! What the text protocols of the peers (RESP for Redis, memcached's text protocol) share in
//! `loadgen`: requests built from templates that carry the key as `key:%012d` (the keys of
//! `redis-benchmark -r`, so every peer holds the same keys), the value bytes, and line splitting.

use crate::Op;

/// Digits of the key in every template: `key:` then 12 decimal digits.
const KEY_DIGITS: usize = 12;
const KEY_MODULUS: u64 = 1_000_000_000_000;

/// A write and a read request, each a template whose 12 key digits `encode` patches.
pub(crate) struct KeyTemplates {
    put: Vec<u8>,
    get: Vec<u8>,
    /// Offset of the 12 key digits in each template.
    put_key_at: usize,
    get_key_at: usize,
}

impl KeyTemplates {
    /// Each template is `head`, `key:` and 12 digits, then `tail`.
    pub(crate) fn new(put: (&str, &str), get: (&str, &str)) -> KeyTemplates {
        let build = |(head, tail): (&str, &str)| {
            let text = format!("{head}key:{}{tail}", "0".repeat(KEY_DIGITS));
            (text.into_bytes(), head.len() + "key:".len())
        };
        let (put, put_key_at) = build(put);
        let (get, get_key_at) = build(get);
        KeyTemplates {
            put,
            get,
            put_key_at,
            get_key_at,
        }
    }

    /// Appends the request of `op` on `key` to `out`.
    #[inline]
    pub(crate) fn encode(&self, op: Op, key: u64, out: &mut Vec<u8>) {
        let (template, key_at) = match op {
            Op::Put => (&self.put, self.put_key_at),
            Op::Get => (&self.get, self.get_key_at),
        };
        let start = out.len();
        out.extend_from_slice(template);
        let digits = &mut out[start + key_at..start + key_at + KEY_DIGITS];
        let mut k = key % KEY_MODULUS;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (k % 10) as u8;
            k /= 10;
        }
    }
}

/// The value every text protocol writes: `value_size` bytes of `abc…z` repeated (the dht codec
/// writes the same bytes).
pub(crate) fn bench_value(value_size: usize) -> String {
    (0..value_size)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect()
}

/// Position of the first `\r\n` at or after `from`.
pub(crate) fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

//! Deterministic test data for the criterion benches (no RNG crate): pseudo-random bytes, log-like
//! text values and a key mixer.

/// Deterministic pseudo-random bytes (xorshift64*): LZ4 finds nothing in them.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// A text-like value of exactly `len` bytes (JSON-ish log line, space padded): repetitive, so it
/// compresses well, like real log lines.
pub fn text_value(i: usize, len: usize) -> Vec<u8> {
    format!(
        "{{\"id\":{i:08},\"kind\":\"event\",\"host\":\"node-{:02}\",\"status\":\"ok\",\"msg\":\"request served\"}}",
        i % 16
    )
    .into_bytes()
    .into_iter()
    .chain(std::iter::repeat(b' '))
    .take(len)
    .collect()
}

/// `count` values of `len` bytes, `"random"` or text-like (any other kind).
pub fn values(kind: &str, count: usize, len: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| match kind {
            "random" => random_bytes(i as u64, len),
            _ => text_value(i, len),
        })
        .collect()
}

/// splitmix64's finaliser: a bijection on u64, so `mix(0..N)` are N distinct, uniform keys
/// (spread over the dht's hash range and its shards).
pub fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

//! The text form of a dump that `dumptool export` writes and `dumptool import` reads: one record
//! per line, `<key>:<value>\n`, where `<key>` is the key as exactly 16 lowercase hex digits and
//! `<value>` the value in standard base64 (RFC 4648 alphabet, with `=` padding). The reference
//! `tcmcli` used the same shape.
//!
//! Import also accepts uppercase hex digits and a `\r` before the newline; anything else that
//! does not fit is an error naming the line.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use node_core::protocol::batch::{MAX_BATCH_UNCOMPRESSED_BYTES, RECORD_OVERHEAD};

/// The largest value a dump file can hold: one record must fit in one block.
pub const MAX_VALUE_BYTES: usize = MAX_BATCH_UNCOMPRESSED_BYTES - RECORD_OVERHEAD;

/// The longest line import reads: a key, a colon, the base64 of [`MAX_VALUE_BYTES`], `\r\n`.
pub const MAX_LINE_BYTES: usize = 16 + 1 + MAX_VALUE_BYTES.div_ceil(3) * 4 + 2;

/// Appends the line of one record (with its newline) to `out`.
pub fn format_line(key: u64, value: &[u8], out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{key:016x}:");
    let start = out.len();
    let encoded_len = base64::encoded_len(value.len(), true).expect("value length fits usize");
    out.resize(start + encoded_len, 0);
    let written = STANDARD
        .encode_slice(value, &mut out[start..])
        .expect("buffer sized by encoded_len");
    debug_assert_eq!(written, encoded_len);
    out.push(b'\n');
}

/// A parsed line: the key, and the value decoded into the caller's buffer.
pub fn parse_line(line: &[u8], value: &mut Vec<u8>) -> Result<u64, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err("empty line (expected <16 hex digits>:<base64 value>)".into());
    }
    let Some(colon) = line.iter().position(|&byte| byte == b':') else {
        return Err("no ':' between key and value".into());
    };
    let (key, encoded) = (&line[..colon], &line[colon + 1..]);
    if key.len() != 16 || !key.iter().all(u8::is_ascii_hexdigit) {
        return Err(format!(
            "key {:?} is not 16 hex digits",
            String::from_utf8_lossy(&key[..key.len().min(40)])
        ));
    }
    let key = key
        .iter()
        .fold(0u64, |acc, &digit| acc << 4 | hex_value(digit));
    value.clear();
    STANDARD
        .decode_vec(encoded, value)
        .map_err(|err| format!("value is not valid base64: {err}"))?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "value of {} bytes is larger than a dump can hold ({MAX_VALUE_BYTES})",
            value.len()
        ));
    }
    Ok(key)
}

fn hex_value(digit: u8) -> u64 {
    u64::from(match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: u64, value: &[u8]) -> String {
        let mut out = Vec::new();
        format_line(key, value, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_look_like_the_reference() {
        assert_eq!(line(0xa, b"value a"), "000000000000000a:dmFsdWUgYQ==\n");
        assert_eq!(line(u64::MAX, b""), "ffffffffffffffff:\n");
        assert_eq!(line(0xdead_beef, &[0, 255, 1]), "00000000deadbeef:AP8B\n");
    }

    #[test]
    fn lines_round_trip() {
        let mut value = Vec::new();
        for (key, original) in [
            (0u64, b"".to_vec()),
            (1, b"x".to_vec()),
            (0x0123_4567_89ab_cdef, (0..=255u8).collect()),
            (u64::MAX, vec![0; 1000]),
        ] {
            let text = line(key, &original);
            let bytes = text.trim_end_matches('\n').as_bytes();
            assert_eq!(parse_line(bytes, &mut value), Ok(key));
            assert_eq!(value, original);
        }
        assert_eq!(
            parse_line(b"00000000DEADBEEF:AP8B\r", &mut value),
            Ok(0xdead_beef)
        );
        assert_eq!(value, [0, 255, 1]);
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let mut value = Vec::new();
        for (bad, expected) in [
            (&b""[..], "empty line"),
            (b"000000000000000a", "no ':'"),
            (b"00000000000000a:dmFsdWUgYQ==", "16 hex digits"),
            (b"000000000000000g:dmFsdWUgYQ==", "16 hex digits"),
            (b"0x0000000000000a:dmFsdWUgYQ==", "16 hex digits"),
            (b"000000000000000a:dmFsdWUgYQ", "base64"),
            (b"000000000000000a:dm Fs", "base64"),
            (b"000000000000000a:dmFsdWUgYQ==:x", "base64"),
        ] {
            let error = parse_line(bad, &mut value).expect_err(expected);
            assert!(error.contains(expected), "{error}");
        }
    }
}

//! The field codec used inside frame bodies: fixed-width little-endian integers, `bytes`
//! (`u32` length + bytes) and `str8` (`u8` length + UTF-8). Decoding is a cursor whose errors
//! name the field that was wrong, so a BadRequest reply can say exactly what.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("field `{field}`: body ends early")]
    Truncated { field: &'static str },
    #[error("field `{field}`: {len} bytes exceeds the limit of {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    /// A count of items (not bytes) past its limit; `items` names what is counted.
    #[error("field `{field}`: {count} {items}, more than the limit of {max}")]
    TooMany {
        field: &'static str,
        count: usize,
        max: usize,
        items: &'static str,
    },
    #[error("field `{field}`: not valid UTF-8")]
    BadUtf8 { field: &'static str },
    #[error("field `{field}`: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error("{count} unexpected bytes after the last field")]
    Trailing { count: usize },
    #[error("the request takes no body; {count} bytes came")]
    NotEmpty { count: usize },
}

/// A cursor over a frame body.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(body: &'a [u8]) -> Reader<'a> {
        Reader { rest: body }
    }

    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    fn take(&mut self, field: &'static str, len: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < len {
            return Err(WireError::Truncated { field });
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(field, N)?);
        Ok(array)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn bool(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Invalid {
                field,
                reason: "a bool must be 0 or 1",
            }),
        }
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A `bytes` field of at most `max_len` bytes.
    pub fn bytes(&mut self, field: &'static str, max_len: usize) -> Result<&'a [u8], WireError> {
        let len = self.u32(field)? as usize;
        if len > max_len {
            return Err(WireError::TooLong {
                field,
                len,
                max: max_len,
            });
        }
        self.take(field, len)
    }

    /// A count field (`u8`, `u16` or `u32`, already read as `count`) of at most `max` `items`:
    /// the check every list of a request body shares, so its error names items, not bytes.
    pub fn check_count(
        field: &'static str,
        count: usize,
        max: usize,
        items: &'static str,
    ) -> Result<usize, WireError> {
        if count > max {
            return Err(WireError::TooMany {
                field,
                count,
                max,
                items,
            });
        }
        Ok(count)
    }

    /// A `str8` field.
    pub fn str8(&mut self, field: &'static str) -> Result<&'a str, WireError> {
        let len = self.u8(field)? as usize;
        let raw = self.take(field, len)?;
        if raw.is_ascii() {
            // Channel names, the str8 of nearly every request, are ASCII: a plain byte test is
            // a fraction of `from_utf8`'s cost on a short string (~15 instructions against ~80).
            // SAFETY: every ASCII byte sequence is valid UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(raw) });
        }
        std::str::from_utf8(raw).map_err(|_| WireError::BadUtf8 { field })
    }

    /// Everything left, for a body whose last field runs to its end.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Succeeds only if every byte was consumed: trailing bytes mean the sender and receiver
    /// disagree on the layout, which must not pass silently.
    pub fn finish(self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing {
                count: self.rest.len(),
            })
        }
    }
}

/// Checks the body of a request that takes none (GetChannels, GetSize, ...): a byte in it
/// means the sender and the node disagree on the request, which must not pass silently.
pub fn decode_empty(body: &[u8]) -> Result<(), WireError> {
    match body.len() {
        0 => Ok(()),
        count => Err(WireError::NotEmpty { count }),
    }
}

pub fn put_u8(out: &mut Vec<u8>, value: u8) {
    out.push(value);
}

pub fn put_bool(out: &mut Vec<u8>, value: bool) {
    out.push(u8::from(value));
}

pub fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Appends a `bytes` field. Bodies are bounded by the frame limit, far below 4 GiB.
pub fn put_bytes(out: &mut Vec<u8>, value: &[u8]) {
    debug_assert!(value.len() <= u32::MAX as usize);
    put_u32(out, value.len() as u32);
    out.extend_from_slice(value);
}

/// Appends a `str8` field. Names on the wire are at most 255 bytes; a longer string is cut at a
/// character boundary (callers validate names long before this point).
pub fn put_str8(out: &mut Vec<u8>, value: &str) {
    let mut end = value.len().min(u8::MAX as usize);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    debug_assert_eq!(end, value.len(), "str8 field longer than 255 bytes");
    out.push(end as u8);
    out.extend_from_slice(&value.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let mut out = Vec::new();
        put_u8(&mut out, 7);
        put_bool(&mut out, true);
        put_u16(&mut out, 0xBEEF);
        put_u32(&mut out, 0xDEAD_BEEF);
        put_u64(&mut out, u64::MAX - 1);
        put_bytes(&mut out, b"value");
        put_str8(&mut out, "channel");
        let mut reader = Reader::new(&out);
        assert_eq!(reader.u8("a").unwrap(), 7);
        assert!(reader.bool("b").unwrap());
        assert_eq!(reader.u16("c").unwrap(), 0xBEEF);
        assert_eq!(reader.u32("d").unwrap(), 0xDEAD_BEEF);
        assert_eq!(reader.u64("e").unwrap(), u64::MAX - 1);
        assert_eq!(reader.bytes("f", 5).unwrap(), b"value");
        assert_eq!(reader.str8("g").unwrap(), "channel");
        reader.finish().unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        let mut out = Vec::new();
        put_bytes(&mut out, b"toolong");
        let err = Reader::new(&out).bytes("value", 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `value`: 7 bytes exceeds the limit of 3"
        );
        let err = Reader::new(&out[..6]).bytes("value", 100).unwrap_err();
        assert_eq!(err, WireError::Truncated { field: "value" });
        let mut reader = Reader::new(&out);
        reader.u8("x").unwrap();
        assert_eq!(reader.finish(), Err(WireError::Trailing { count: 10 }));
        assert!(Reader::new(&[2]).bool("flag").is_err());
    }

    /// str8 takes ASCII on a fast path: UTF-8 beyond ASCII still decodes, and what is not
    /// UTF-8 is still BadUtf8.
    #[test]
    fn str8_takes_any_utf8_and_refuses_the_rest() {
        let decode = |raw: &[u8]| {
            let mut out = vec![raw.len() as u8];
            out.extend_from_slice(raw);
            Reader::new(&out).str8("channel").map(str::to_owned)
        };
        assert_eq!(decode(b""), Ok(String::new()));
        assert_eq!(decode(b"bench-1_X"), Ok("bench-1_X".to_owned()));
        assert_eq!(decode("caf\u{e9}".as_bytes()), Ok("caf\u{e9}".to_owned()));
        for bad in [&b"\xff"[..], b"ab\x80", b"caf\xc3", b"\xed\xa0\x80"] {
            assert_eq!(
                decode(bad),
                Err(WireError::BadUtf8 { field: "channel" }),
                "{bad:?}"
            );
        }
    }
}

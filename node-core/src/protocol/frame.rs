//! The frame header: 16 bytes in front of every message after the handshake
//! (docs/protocol.md §2), and the incremental parser that finds whole frames in a byte buffer.

use thiserror::Error;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 16;

/// The default limit on a frame body; nodes may configure another.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// Client → node: opens a request; the code is the request code.
    Request = 1,
    /// Node → client: the final frame of a request; the code is a status.
    Reply = 2,
    /// Node → client: one element of a stream; the code is a per-request item code.
    Item = 3,
    /// Client → node: flow control of a running stream; the code is a control code.
    Control = 4,
}

impl FrameType {
    pub fn from_u8(value: u8) -> Option<FrameType> {
        match value {
            1 => Some(FrameType::Request),
            2 => Some(FrameType::Reply),
            3 => Some(FrameType::Item),
            4 => Some(FrameType::Control),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub body_len: u32,
    pub frame_type: FrameType,
    pub code: u8,
    pub request_id: u64,
}

/// A header that breaks the rules. Each variant keeps the request id it carried, so the node can
/// answer with a Reply the client can match before it closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("frame body of {body_len} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge {
        request_id: u64,
        body_len: u32,
        max_bytes: u32,
    },
    #[error("unknown frame type {frame_type}")]
    UnknownType { request_id: u64, frame_type: u8 },
    #[error("frame flags {flags:#06x} set; version 1 requires 0")]
    FlagsSet { request_id: u64, flags: u16 },
}

impl FrameError {
    pub fn request_id(&self) -> u64 {
        match *self {
            FrameError::TooLarge { request_id, .. }
            | FrameError::UnknownType { request_id, .. }
            | FrameError::FlagsSet { request_id, .. } => request_id,
        }
    }
}

impl FrameHeader {
    pub fn new(frame_type: FrameType, code: u8, request_id: u64, body_len: u32) -> FrameHeader {
        FrameHeader {
            body_len,
            frame_type,
            code,
            request_id,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[0..4].copy_from_slice(&self.body_len.to_le_bytes());
        bytes[4] = self.frame_type as u8;
        bytes[5] = self.code;
        // bytes[6..8]: flags, zero in version 1.
        bytes[8..16].copy_from_slice(&self.request_id.to_le_bytes());
        bytes
    }

    /// Decodes and checks a header against the body limit `max_body_bytes`.
    pub fn decode(
        bytes: &[u8; HEADER_LEN],
        max_body_bytes: u32,
    ) -> Result<FrameHeader, FrameError> {
        let body_len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
        let mut id_bytes = [0u8; 8];
        id_bytes.copy_from_slice(&bytes[8..16]);
        let request_id = u64::from_le_bytes(id_bytes);
        let Some(frame_type) = FrameType::from_u8(bytes[4]) else {
            return Err(FrameError::UnknownType {
                request_id,
                frame_type: bytes[4],
            });
        };
        if flags != 0 {
            return Err(FrameError::FlagsSet { request_id, flags });
        }
        if body_len > max_body_bytes {
            return Err(FrameError::TooLarge {
                request_id,
                body_len,
                max_bytes: max_body_bytes,
            });
        }
        Ok(FrameHeader {
            body_len,
            frame_type,
            code: bytes[5],
            request_id,
        })
    }

    /// Bytes of the whole frame, header included.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }
}

/// Looks for one whole frame at the start of `buf`. `Ok(None)` means "not all there yet", which is
/// the normal state of a partial read, not an error.
pub fn parse_frame(buf: &[u8], max_body_bytes: u32) -> Result<Option<FrameHeader>, FrameError> {
    let Some(header_bytes) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let header = FrameHeader::decode(header_bytes, max_body_bytes)?;
    if buf.len() < header.frame_len() {
        return Ok(None);
    }
    Ok(Some(header))
}

/// Appends a whole frame with the given body.
pub fn write_frame(
    out: &mut Vec<u8>,
    frame_type: FrameType,
    code: u8,
    request_id: u64,
    body: &[u8],
) {
    let body_len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    debug_assert_eq!(
        body_len as usize,
        body.len(),
        "frame bodies are bounded far below 4 GiB"
    );
    out.extend_from_slice(&FrameHeader::new(frame_type, code, request_id, body_len).encode());
    out.extend_from_slice(body);
}

/// Starts a frame whose body the caller appends in place (no intermediate buffer); returns the
/// offset that [`end_frame`] needs to fill in the body length.
pub fn begin_frame(out: &mut Vec<u8>, frame_type: FrameType, code: u8, request_id: u64) -> usize {
    let start = out.len();
    out.extend_from_slice(&FrameHeader::new(frame_type, code, request_id, 0).encode());
    start
}

/// Completes a frame begun at `start` by writing its body length.
pub fn end_frame(out: &mut [u8], start: usize) {
    debug_assert!(out.len() >= start + HEADER_LEN);
    let body_len = out.len() - start - HEADER_LEN;
    let body_len = u32::try_from(body_len).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
}

/// Rewrites the code byte of a frame begun at `start` (a handler may decide its status after
/// writing the body).
pub fn set_frame_code(out: &mut [u8], start: usize, code: u8) {
    out[start + 5] = code;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = FrameHeader::new(FrameType::Item, 7, 0x0102_0304_0506_0708, 99);
        let decoded = FrameHeader::decode(&header.encode(), 1000).unwrap();
        assert_eq!(decoded, header);
    }

    #[test]
    fn partial_frames_are_incomplete_not_errors() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FrameType::Request, 1, 5, b"hello");
        for cut in 0..buf.len() {
            assert_eq!(parse_frame(&buf[..cut], 1000), Ok(None), "cut at {cut}");
        }
        let header = parse_frame(&buf, 1000).unwrap().unwrap();
        assert_eq!(header.frame_len(), buf.len());
        assert_eq!(&buf[HEADER_LEN..], b"hello");
    }

    #[test]
    fn oversized_unknown_and_flagged_headers_are_refused_with_their_id() {
        let mut bytes = FrameHeader::new(FrameType::Request, 1, 42, 1001).encode();
        assert_eq!(
            FrameHeader::decode(&bytes, 1000),
            Err(FrameError::TooLarge {
                request_id: 42,
                body_len: 1001,
                max_bytes: 1000
            })
        );
        bytes[0..4].copy_from_slice(&10u32.to_le_bytes());
        bytes[4] = 9;
        assert_eq!(
            FrameHeader::decode(&bytes, 1000).unwrap_err(),
            FrameError::UnknownType {
                request_id: 42,
                frame_type: 9
            }
        );
        bytes[4] = 1;
        bytes[6] = 1;
        assert_eq!(
            FrameHeader::decode(&bytes, 1000).unwrap_err().request_id(),
            42
        );
    }

    #[test]
    fn in_place_frames_get_their_length() {
        let mut out = vec![0xAA; 3];
        let start = begin_frame(&mut out, FrameType::Reply, 0, 9);
        out.extend_from_slice(b"abcd");
        end_frame(&mut out, start);
        set_frame_code(&mut out, start, 20);
        let header = parse_frame(&out[3..], 100).unwrap().unwrap();
        assert_eq!(header.body_len, 4);
        assert_eq!(header.code, 20);
        assert_eq!(header.request_id, 9);
    }
}

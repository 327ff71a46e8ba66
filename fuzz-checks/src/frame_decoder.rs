//! Feeds bytes to `parse_frame` the way a node's connection loop does: bytes arrive in chunks and
//! are appended to an input buffer; after each read the node parses a frame, consumes it, and
//! repeats until the parser says "not all there yet"; a header error ends the connection.
//!
//! Input: the first byte picks the read size (1..=256 bytes per "read"), the second the body
//! limit; the rest is the byte stream.
//!
//! Invariants checked:
//! - a parsed frame fits in the buffer (`frame_len <= buf.len()`) and its body in the limit;
//! - the parsed header re-encodes to exactly the 16 bytes it was parsed from;
//! - "not yet" (`Ok(None)`) only when the header or body is really incomplete;
//! - an error only with a whole header in hand, carrying that header's request id;
//! - the frames found do not depend on how the stream was chunked.

use node_core::protocol::frame::{parse_frame, FrameError, DEFAULT_MAX_FRAME_BYTES};
use node_core::protocol::{FrameHeader, HEADER_LEN};

const LIMITS: [u32; 4] = [0, 64, 4096, DEFAULT_MAX_FRAME_BYTES];

/// What a connection saw: the frames (header and body) and how it ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<(FrameHeader, Vec<u8>)>,
    error: Option<FrameError>,
    leftover: usize,
}

fn run(stream: &[u8], read_size: usize, max: u32) -> Outcome {
    let mut buf: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    for chunk in stream.chunks(read_size) {
        buf.extend_from_slice(chunk);
        loop {
            match parse_frame(&buf, max) {
                Ok(Some(header)) => {
                    let frame_len = header.frame_len();
                    assert!(
                        frame_len <= buf.len(),
                        "frame of {frame_len} in {} bytes",
                        buf.len()
                    );
                    assert!(
                        header.body_len <= max,
                        "body {} over limit {max}",
                        header.body_len
                    );
                    assert_eq!(frame_len, HEADER_LEN + header.body_len as usize);
                    assert_eq!(
                        &header.encode()[..],
                        &buf[..HEADER_LEN],
                        "header does not re-encode"
                    );
                    frames.push((header, buf[HEADER_LEN..frame_len].to_vec()));
                    buf.drain(..frame_len);
                }
                Ok(None) => {
                    if let Some(bytes) = buf.first_chunk::<HEADER_LEN>() {
                        let header = FrameHeader::decode(bytes, max)
                            .expect("Ok(None) for a header that does not decode");
                        assert!(
                            header.frame_len() > buf.len(),
                            "complete frame reported incomplete"
                        );
                    }
                    break;
                }
                Err(error) => {
                    assert!(
                        buf.len() >= HEADER_LEN,
                        "error before a whole header arrived"
                    );
                    let id = u64::from_le_bytes(buf[8..16].try_into().unwrap());
                    assert_eq!(error.request_id(), id, "error lost the request id");
                    // The node answers and closes the connection: nothing more is read.
                    return Outcome {
                        frames,
                        error: Some(error),
                        leftover: buf.len(),
                    };
                }
            }
        }
    }
    Outcome {
        frames,
        error: None,
        leftover: buf.len(),
    }
}

/// The target's entry point: one input. Panics when an invariant above does not hold.
pub fn check(data: &[u8]) {
    let [read_seed, limit_seed, stream @ ..] = data else {
        return;
    };
    let read_size = *read_seed as usize + 1;
    let max = LIMITS[*limit_seed as usize % LIMITS.len()];
    let chunked = run(stream, read_size, max);
    // Everything at once must give the same frames and the same verdict. (The leftover may
    // differ on error: the chunked reader stops reading at the error.)
    let whole = run(stream, stream.len().max(1), max);
    assert_eq!(chunked.frames, whole.frames);
    assert_eq!(chunked.error, whole.error);
    if chunked.error.is_none() {
        assert_eq!(chunked.leftover, whole.leftover);
    }
}

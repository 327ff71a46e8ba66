//! A Listen does not create its channel (issue #15, defect 8), against the real `dhtnode`: a
//! channel listened to but never written is in no GetChannels answer and gets no dump file (not
//! even at a shutdown while it is listened to); its first write creates it and reaches the
//! listener.

mod common;

use common::{put_body, Conn, TempNode};
use node_core::protocol::batch::{append_record, encode_batch};
use node_core::protocol::dht;
use node_core::protocol::frame::{parse_frame, write_frame, FrameType, HEADER_LEN};
use node_core::protocol::Status;
use std::io::{Read, Write};

fn channels(conn: &mut Conn) -> Vec<String> {
    let (status, body) = conn.request(dht::GET_CHANNELS, Vec::new());
    assert_eq!(status, Status::Ok);
    dht::decode_channel_names(&body).expect("channel names")
}

/// The next frame on `conn`: (type, request id, code, body).
fn read_frame(conn: &mut Conn, buffer: &mut Vec<u8>) -> (FrameType, u64, u8, Vec<u8>) {
    loop {
        if let Some(header) = parse_frame(buffer, u32::MAX).expect("valid frame") {
            let body = buffer[HEADER_LEN..header.frame_len()].to_vec();
            buffer.drain(..header.frame_len());
            return (header.frame_type, header.request_id, header.code, body);
        }
        let mut chunk = [0u8; 4096];
        let read = conn.stream.read(&mut chunk).expect("read");
        assert!(read > 0, "connection closed");
        buffer.extend_from_slice(&chunk[..read]);
    }
}

#[test]
fn a_listen_never_creates_its_channel() {
    let mut node = TempNode::start(common::BIN, "", &[]);
    let mut listener = Conn::open(node.addr);
    // Two Listens, then a GetSize on the same connection: its Reply comes once the node has
    // dispatched the Listens before it (no Item can come first: nothing was written).
    let mut out = Vec::new();
    for (id, channel) in [(1u64, "ghost"), (2, "never")] {
        let mut body = Vec::new();
        dht::encode_channel(&mut body, channel);
        write_frame(&mut out, FrameType::Request, dht::LISTEN.0, id, &body);
    }
    write_frame(&mut out, FrameType::Request, dht::GET_SIZE.0, 3, &[]);
    listener.stream.write_all(&out).expect("send Listens");
    let mut buffer = Vec::new();
    let (frame_type, id, _, _) = read_frame(&mut listener, &mut buffer);
    assert_eq!((frame_type, id), (FrameType::Reply, 3));

    let mut conn = Conn::open(node.addr);
    let (status, _) = conn.request(dht::PUT, put_body("written", 1, b"x"));
    assert_eq!(status, Status::Ok);
    assert_eq!(channels(&mut conn), vec!["written".to_string()]);

    let (status, _) = conn.request(dht::PUT, put_body("never", 7, b"first"));
    assert_eq!(status, Status::Ok);
    let (frame_type, id, code, body) = read_frame(&mut listener, &mut buffer);
    assert_eq!(
        (frame_type, id, code),
        (FrameType::Item, 2, dht::ITEM_CHANGED)
    );
    assert_eq!(body, [&7u64.to_le_bytes()[..], b"first"].concat());
    assert_eq!(
        channels(&mut conn),
        vec!["never".to_string(), "written".to_string()]
    );

    // The shutdown dump, with "ghost" still listened to.
    drop(conn);
    node.node.signal("TERM");
    assert_eq!(node.node.wait_exit().code(), Some(0));
    drop(listener);
    let data = node.dir.path().join("data");
    assert!(data.join("never.dump").exists() && data.join("written.dump").exists());
    assert!(
        !data.join("ghost.dump").exists(),
        "a dump of a channel never written"
    );
}

/// docs/protocol.md §4: an empty batch stores nothing, replies Ok with 0 and creates no channel,
/// so a node at `max_channels` does not refuse one for a new channel (every batch request did:
/// OutOfMemory), while a batch with a record still is refused.
#[test]
fn an_empty_batch_for_a_new_channel_is_ok_at_the_channel_limit() {
    let node = TempNode::start(common::BIN, "[dht]\nmax_channels = 1\n", &[]);
    let mut conn = Conn::open(node.addr);
    let (status, _) = conn.request(dht::PUT, put_body("a", 1, b"x"));
    assert_eq!(status, Status::Ok);
    let batch_body = |record: Option<&[u8]>| {
        let mut raw = Vec::new();
        if let Some(value) = record {
            append_record(&mut raw, 1, value);
        }
        let mut body = Vec::new();
        dht::encode_channel(&mut body, "b");
        encode_batch(&raw, u32::from(record.is_some()), &mut body);
        body
    };
    let version_record = [&7u64.to_le_bytes()[..], b"v"].concat();
    for (code, zeros) in [
        (dht::PUT_BATCH, 1),
        (dht::PUT_BATCH_VERSION, 2),
        (dht::REDIST_BATCH, 2),
        (dht::REDIST_BATCH_VERSION, 2),
    ] {
        let (status, body) = conn.request(code, batch_body(None));
        assert_eq!(status, Status::Ok, "empty batch, request {}", code.0);
        assert_eq!(
            body[..8 * zeros],
            vec![0u8; 8 * zeros],
            "request {}",
            code.0
        );
        let (status, _) = conn.request(code, batch_body(Some(&version_record)));
        assert_eq!(status, Status::OutOfMemory, "a record, request {}", code.0);
    }
    assert_eq!(channels(&mut conn), vec!["a".to_string()]);
}

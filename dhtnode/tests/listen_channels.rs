//! A Listen does not create its channel (issue #15, defect 8), against the real `dhtnode`: a
//! channel listened to but never written is in no GetChannels answer and gets no dump file (not
//! even at a shutdown while it is listened to); its first write creates it and reaches the
//! listener.

mod common;

use common::{put_body, Conn, TempNode};
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

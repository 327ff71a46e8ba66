//! The rules of docs/protocol.md §2 that every request of every node kind follows, on the real
//! nodes:
//!
//! - a non-admin gets NotPermitted for an administrative request whatever its body (the
//!   permission is checked before the body is decoded);
//! - a request that takes no body refuses one, and a request with fixed fields refuses bytes
//!   after them (BadRequest);
//! - ConsumeAck, which only acts on a running Consume, is never refused for the connection's
//!   `max_in_flight`;
//! - a request that reuses the id of a running stream is a protocol error: one Reply with that
//!   id, then the connection closes, so no id ever gets two Replies;
//! - an empty batch (§4) is valid, stores nothing and creates no channel.

use node_core::protocol::batch::{append_record, encode_batch};
use node_core::protocol::frame::{parse_frame, write_frame, FrameType, HEADER_LEN};
use node_core::protocol::{dht, logfiles, queue, ControlCode, RequestCode, Status};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use testkit::{open_authenticated, Conn, Kind, TempNode, TestCredentials};

/// What these tests ask of each kind.
trait Requests {
    fn bodiless(self) -> Vec<RequestCode>;
    fn fixed_field_requests(self) -> Vec<(RequestCode, Vec<u8>)>;
    fn batch_request(self, junk: &[u8]) -> (RequestCode, Vec<u8>);
}

impl Requests for Kind {
    /// Every request of the kind whose body is empty.
    fn bodiless(self) -> Vec<RequestCode> {
        let mut codes = vec![
            RequestCode::GET_VERSION,
            RequestCode::GET_NUM_CONNECTIONS,
            RequestCode::GET_STATS,
        ];
        codes.extend(match self {
            Kind::Dht => vec![
                dht::GET_CHANNELS,
                dht::GET_SIZE,
                dht::GET_RESPONSIBLE_RANGE,
                dht::GET_REDISTRIBUTION,
            ],
            Kind::Logfiles => vec![logfiles::GET_CHANNELS, logfiles::GET_SIZE],
            Kind::Queue => vec![queue::GET_CHANNELS, queue::GET_SIZE],
        });
        codes
    }

    /// Every request of the kind whose body ends with its last fixed field, with a good body.
    /// (The others end with a value or a batch, which takes the rest of the body.)
    fn fixed_field_requests(self) -> Vec<(RequestCode, Vec<u8>)> {
        match self {
            Kind::Dht => dht_fixed_field_requests(),
            Kind::Logfiles => logfiles_fixed_field_requests(),
            Kind::Queue => queue_fixed_field_requests(),
        }
    }

    /// A batch-carrying request: one record, then `junk` after the batch.
    fn batch_request(self, junk: &[u8]) -> (RequestCode, Vec<u8>) {
        let mut raw = Vec::new();
        append_record(&mut raw, 7, b"a value");
        let mut batch = Vec::new();
        encode_batch(&raw, 1, &mut batch);
        batch.extend_from_slice(junk);
        let mut body = Vec::new();
        match self {
            Kind::Dht => {
                dht::encode_put_batch(&mut body, "rules", &batch);
                (dht::PUT_BATCH, body)
            }
            Kind::Logfiles => {
                dht::encode_put_batch(&mut body, "rules", &batch);
                (logfiles::PUT_BATCH, body)
            }
            Kind::Queue => {
                queue::ProduceRequest {
                    channels: vec!["rules"],
                    batch: &batch,
                }
                .encode(&mut body);
                (queue::PRODUCE, body)
            }
        }
    }
}

/// A request whose body is the channel name "rules" alone (the same encoding for every kind).
fn channel_request(code: RequestCode) -> (RequestCode, Vec<u8>) {
    let mut body = Vec::new();
    dht::encode_channel(&mut body, "rules");
    (code, body)
}

/// The dht's requests that end with a fixed field ([`Requests::fixed_field_requests`]).
fn dht_fixed_field_requests() -> Vec<(RequestCode, Vec<u8>)> {
    let key = |code| {
        let mut body = Vec::new();
        dht::KeyRequest {
            channel: "rules",
            key: 7,
        }
        .encode(&mut body);
        (code, body)
    };
    let mut get_all = Vec::new();
    dht::GetAllRequest {
        channel: "rules",
        keys_only: false,
        resume_after: None,
        filter: b"",
        scope: dht::GetAllScope::All,
    }
    .encode(&mut get_all);
    let mut update = Vec::new();
    dht::UpdateRequest {
        channel: "rules",
        key: 7,
        expected: dht::Expected::Absent,
        action: dht::UpdateAction::Remove,
    }
    .encode(&mut update);
    vec![
        key(dht::GET),
        key(dht::EXISTS),
        key(dht::REMOVE),
        (dht::GET_ALL, get_all),
        channel_request(dht::GET_CHANNEL_SIZE),
        channel_request(dht::REMOVE_CHANNEL),
        channel_request(dht::LISTEN),
        (dht::UPDATE, update),
        channel_request(dht::REDIST_COMMIT),
    ]
}

/// The logfiles node's requests that end with a fixed field.
fn logfiles_fixed_field_requests() -> Vec<(RequestCode, Vec<u8>)> {
    // The optional flags byte of GetRange and GetAll is their last field: a body
    // without it takes one more byte (§7.3), a body with it none.
    let flags = logfiles::ReadFlags { uncompressed: true };
    let mut get_range = Vec::new();
    logfiles::GetRangeRequest {
        channel: "rules",
        from: 0,
        to: 100,
        filter: logfiles::Filter::NONE,
    }
    .encode_with(flags, &mut get_range);
    let mut get_all = Vec::new();
    logfiles::GetAllRequest {
        channel: "rules",
        filter: logfiles::Filter::NONE,
    }
    .encode_with(flags, &mut get_all);
    vec![
        (logfiles::GET_RANGE, get_range),
        (logfiles::GET_ALL, get_all),
        channel_request(logfiles::GET_CHANNEL_SIZE),
        channel_request(logfiles::REMOVE_CHANNEL),
    ]
}

/// The queue's requests that end with a fixed field.
fn queue_fixed_field_requests() -> Vec<(RequestCode, Vec<u8>)> {
    let mut consume = Vec::new();
    queue::ConsumeRequest {
        channel: "rules",
        subscriber: "",
        max_batch_records: 0,
    }
    .encode(&mut consume);
    let mut ack = Vec::new();
    queue::ConsumeAckRequest {
        consume_id: 99,
        records: 0,
    }
    .encode(&mut ack);
    let mut subscribe = Vec::new();
    queue::SubscribeRequest {
        channel: "rules",
        subscriber: "s",
    }
    .encode(&mut subscribe);
    vec![
        channel_request(queue::POP),
        channel_request(queue::GET_CHANNEL_SIZE),
        channel_request(queue::REMOVE_CHANNEL),
        (queue::CONSUME, consume),
        (queue::CONSUME_ACK, ack),
        (queue::SUBSCRIBE, subscribe),
    ]
}

fn message(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// Raw frames over one connection: several requests and streams interleaved.
struct Wire {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// One frame as it arrived.
#[derive(Debug)]
struct Frame {
    frame_type: FrameType,
    id: u64,
    code: u8,
    body: Vec<u8>,
}

impl Wire {
    fn open(addr: SocketAddr) -> Wire {
        Wire {
            stream: Conn::open(addr).stream,
            buffer: Vec::new(),
        }
    }

    fn send(&mut self, frame_type: FrameType, code: u8, id: u64, body: &[u8]) {
        let mut out = Vec::new();
        write_frame(&mut out, frame_type, code, id, body);
        self.stream.write_all(&out).expect("send a frame");
    }

    fn request(&mut self, code: RequestCode, id: u64, body: &[u8]) {
        self.send(FrameType::Request, code.0, id, body);
    }

    fn credit(&mut self, id: u64, items: u32) {
        self.send(
            FrameType::Control,
            ControlCode::Credit as u8,
            id,
            &items.to_le_bytes(),
        );
    }

    /// The next frame; `None` when the node closed the connection. Fails on a 20 s silence.
    fn next(&mut self) -> Option<Frame> {
        self.next_within(Duration::from_secs(20))
            .expect("a frame or the close within 20 s")
    }

    /// The next frame, `Ok(None)` at the close, `Err(())` if nothing came within `wait`.
    fn next_within(&mut self, wait: Duration) -> Result<Option<Frame>, ()> {
        self.stream.set_read_timeout(Some(wait)).expect("timeout");
        loop {
            if let Some(header) = parse_frame(&self.buffer, u32::MAX).expect("a valid frame") {
                let frame = Frame {
                    frame_type: header.frame_type,
                    id: header.request_id,
                    code: header.code,
                    body: self.buffer[HEADER_LEN..header.frame_len()].to_vec(),
                };
                self.buffer.drain(..header.frame_len());
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(())
                }
                Err(err) if err.kind() == ErrorKind::ConnectionReset => return Ok(None),
                Err(err) => panic!("read: {err}"),
            }
        }
    }

    /// The Reply of request `id`, skipping the frames of other requests.
    fn reply(&mut self, id: u64) -> (Status, Vec<u8>) {
        loop {
            let frame = self.next().expect("the connection stays open");
            if frame.frame_type == FrameType::Reply && frame.id == id {
                return (
                    Status::from_u8(frame.code).expect("a known status"),
                    frame.body,
                );
            }
        }
    }
}

// ----- defect: permission after decoding -------------------------------------------------------

/// Bodies no request decodes: empty, one byte, a channel name length past the body, and a
/// channel name with a byte that is not allowed.
fn malformed_bodies() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        vec![0xff],
        vec![200, b'a'],
        vec![3, b'a', b' ', b'b'],
    ]
}

#[test]
fn non_admins_get_not_permitted_for_every_admin_request_whatever_its_body() {
    let credentials = TestCredentials::new();
    for kind in Kind::ALL {
        let node = kind.start(&credentials.config);
        let (mut client, _) =
            open_authenticated(node.addr, "app", &credentials.app).expect("app gets in");
        let (mut admin, _) =
            open_authenticated(node.addr, "ops", &credentials.ops).expect("ops gets in");
        let admin_codes: Vec<RequestCode> = (16..=111u8)
            .map(RequestCode)
            .filter(|code| kind.is_admin_request(*code))
            .collect();
        let expected = match kind {
            // RemoveChannel, Redistribute, RedistBatch, RedistBatchVersion, RedistCommit, SetReady.
            Kind::Dht => 6,
            Kind::Logfiles | Kind::Queue => 1,
        };
        assert_eq!(admin_codes.len(), expected, "{kind:?} admin requests");
        for code in admin_codes {
            let name = kind.request_name(code).expect("a named request");
            for body in malformed_bodies() {
                let (status, reply) = client.request(code, body.clone());
                assert_eq!(
                    status,
                    Status::NotPermitted,
                    "{kind:?} {name} from a non-admin with body {body:?}: {}",
                    message(&reply)
                );
                // An admin's body is judged: none of these decodes, except the empty body of
                // SetReady, which takes no body (on a node without peers it changes nothing).
                let (status, reply) = admin.request(code, body.clone());
                if code == node_core::protocol::dht::SET_READY && body.is_empty() {
                    assert_eq!(status, Status::Ok, "SetReady: {}", message(&reply));
                    continue;
                }
                assert!(
                    matches!(status, Status::BadRequest | Status::BadChannelName),
                    "{kind:?} {name} from an admin with body {body:?}: {status:?} {}",
                    message(&reply)
                );
            }
        }
        node.node.stop();
    }
}

// ----- defect: junk bodies accepted ------------------------------------------------------------

#[test]
fn every_request_refuses_bytes_it_does_not_expect_on_every_kind() {
    for kind in Kind::ALL {
        let node = kind.start("");
        let mut conn = Conn::open(node.addr);
        for code in kind.bodiless() {
            let name = kind
                .request_name(code)
                .or(code.common_name())
                .expect("named");
            let (status, reply) = conn.request(code, b"extra".to_vec());
            assert_eq!(
                status,
                Status::BadRequest,
                "{kind:?} {name} with a body: {}",
                message(&reply)
            );
            let (status, reply) = conn.request(code, Vec::new());
            assert_eq!(status, Status::Ok, "{kind:?} {name}: {}", message(&reply));
        }
        for (code, mut body) in kind.fixed_field_requests() {
            let name = kind.request_name(code).expect("named");
            body.push(0);
            let (status, reply) = conn.request(code, body);
            assert_eq!(
                status,
                Status::BadRequest,
                "{kind:?} {name} with a byte after its fields: {}",
                message(&reply)
            );
        }
        let (code, body) = kind.batch_request(b"junk");
        let (status, reply) = conn.request(code, body);
        assert_eq!(
            status,
            Status::BadRequest,
            "{kind:?} a batch followed by junk: {}",
            message(&reply)
        );
        let (code, body) = kind.batch_request(b"");
        let (status, reply) = conn.request(code, body);
        assert_eq!(
            status,
            Status::Ok,
            "{kind:?} the same batch: {}",
            message(&reply)
        );
        node.node.stop();
    }
}

// ----- defect: ConsumeAck refused at the stream limit ------------------------------------------

/// Pushes `count` records ("record 0", "record 1", ...) to the queue `channel`.
fn push_records(conn: &mut Conn, channel: &str, count: u64) {
    for n in 0..count {
        let mut body = Vec::new();
        queue::PushRequest {
            channel,
            value: format!("record {n}").as_bytes(),
        }
        .encode(&mut body);
        assert_eq!(conn.request(queue::PUSH, body).0, Status::Ok);
    }
}

#[test]
fn consume_acks_are_served_while_the_streams_hold_max_in_flight() {
    const RECORDS: u64 = 40;
    let node = Kind::Queue.start("[server]\nmax_in_flight = 2\n");
    push_records(&mut Conn::open(node.addr), "work", RECORDS);
    // Two consumers of one record per batch: more batches than the 8 a stream may have
    // unacknowledged, so both stall unless their acks get through.
    let mut wire = Wire::open(node.addr);
    let mut consume = Vec::new();
    queue::ConsumeRequest {
        channel: "work",
        subscriber: "",
        max_batch_records: 1,
    }
    .encode(&mut consume);
    wire.request(queue::CONSUME, 1, &consume);
    wire.request(queue::CONSUME, 2, &consume);
    let mut received = std::collections::BTreeMap::<u64, u64>::new();
    let mut next_ack_id = 100;
    let mut acks_open = 0;
    let mut total = 0u64;
    while total < RECORDS || acks_open > 0 {
        let frame = wire.next().expect("the connection stays open");
        match frame.frame_type {
            FrameType::Item => {
                assert!(frame.id == 1 || frame.id == 2, "an item of a Consume");
                let count = u64::from(u32::from_le_bytes(
                    frame.body[4..8].try_into().expect("a batch header"),
                ));
                let acked = received.entry(frame.id).or_default();
                *acked += count;
                total += count;
                let mut ack = Vec::new();
                queue::ConsumeAckRequest {
                    consume_id: frame.id,
                    records: *acked,
                }
                .encode(&mut ack);
                wire.request(queue::CONSUME_ACK, next_ack_id, &ack);
                wire.credit(frame.id, 1);
                next_ack_id += 1;
                acks_open += 1;
            }
            FrameType::Reply => {
                assert!(
                    frame.id >= 100,
                    "a ConsumeAck's reply, not the end of a stream"
                );
                assert_eq!(
                    Status::from_u8(frame.code),
                    Some(Status::Ok),
                    "ConsumeAck {}: {}",
                    frame.id,
                    message(&frame.body)
                );
                acks_open -= 1;
            }
            other => panic!("unexpected {other:?} frame"),
        }
    }
    assert_eq!(total, RECORDS, "every record delivered, each once");
    assert!(
        received.values().all(|n| *n > 0),
        "both streams delivered: {received:?}"
    );
    // Other requests are still refused while the two streams run.
    wire.request(queue::GET_SIZE, 500, &[]);
    assert_eq!(wire.reply(500).0, Status::TooManyRequests);
    drop(wire);
    node.node.stop();
}

// ----- defect: two replies for one request id --------------------------------------------------

/// A stream that stays open, on each kind: dht Listen, logfiles GetAll over more records than
/// its first credit, queue Consume of an empty channel.
fn open_stream(kind: Kind, node: &TempNode, wire: &mut Wire, id: u64) {
    let mut body = Vec::new();
    let code = match kind {
        Kind::Dht => {
            dht::encode_channel(&mut body, "rules");
            dht::LISTEN
        }
        Kind::Logfiles => {
            let mut conn = Conn::open(node.addr);
            for batch in 0..8u64 {
                let mut raw = Vec::new();
                for n in 0..600u64 {
                    append_record(&mut raw, batch * 600 + n, &[b'v'; 200]);
                }
                let mut encoded = Vec::new();
                encode_batch(&raw, 600, &mut encoded);
                let mut put = Vec::new();
                dht::encode_put_batch(&mut put, "rules", &encoded);
                assert_eq!(conn.request(logfiles::PUT_BATCH, put).0, Status::Ok);
            }
            logfiles::GetAllRequest {
                channel: "rules",
                filter: logfiles::Filter::NONE,
            }
            .encode(&mut body);
            logfiles::GET_ALL
        }
        Kind::Queue => {
            queue::ConsumeRequest {
                channel: "rules",
                subscriber: "",
                max_batch_records: 0,
            }
            .encode(&mut body);
            queue::CONSUME
        }
    };
    wire.request(code, id, &body);
}

#[test]
fn a_request_reusing_a_running_streams_id_closes_the_connection_with_one_reply() {
    for kind in Kind::ALL {
        let node = kind.start("");
        let mut wire = Wire::open(node.addr);
        open_stream(kind, &node, &mut wire, 5);
        // The stream is running once a later request is answered.
        wire.request(RequestCode::GET_VERSION, 6, &[]);
        assert_eq!(wire.reply(6).0, Status::Ok, "{kind:?}");
        let get_channels = kind.get_channels();
        wire.request(get_channels, 5, &[]);
        let (status, reply) = wire.reply(5);
        assert_eq!(status, Status::BadRequest, "{kind:?}: {}", message(&reply));
        // Whatever the client sends now, no second Reply for id 5 comes: the connection closes
        // (the client may not even be able to send).
        let mut stop = Vec::new();
        write_frame(
            &mut stop,
            FrameType::Control,
            ControlCode::Stop as u8,
            5,
            &[],
        );
        let _ = wire.stream.write_all(&stop);
        loop {
            match wire.next_within(Duration::from_secs(10)) {
                Ok(None) => break,
                Ok(Some(frame)) => assert!(
                    !(frame.frame_type == FrameType::Reply && frame.id == 5),
                    "{kind:?}: a second Reply for id 5: {frame:?}"
                ),
                Err(()) => panic!("{kind:?}: the connection stays open after the reused id"),
            }
        }
        // Other connections are served.
        let mut conn = Conn::open(node.addr);
        assert_eq!(conn.request(get_channels, Vec::new()).0, Status::Ok);
        node.node.stop();
    }
}

// ----- docs/protocol.md §4: the empty batch ----------------------------------------------------

#[test]
fn an_empty_batch_stores_nothing_and_creates_no_channel_on_every_kind() {
    for kind in Kind::ALL {
        let node = kind.start("");
        let mut conn = Conn::open(node.addr);
        let mut empty = Vec::new();
        encode_batch(&[], 0, &mut empty);
        assert_eq!(empty.len(), 12, "the header alone");
        assert_eq!(empty, [0u8; 12], "length 0, count 0, CRC 0");
        let mut body = Vec::new();
        let code = match kind {
            Kind::Dht => {
                dht::encode_put_batch(&mut body, "empty", &empty);
                dht::PUT_BATCH
            }
            Kind::Logfiles => {
                dht::encode_put_batch(&mut body, "empty", &empty);
                logfiles::PUT_BATCH
            }
            Kind::Queue => {
                queue::ProduceRequest {
                    channels: vec!["empty"],
                    batch: &empty,
                }
                .encode(&mut body);
                queue::PRODUCE
            }
        };
        let (status, reply) = conn.request(code, body);
        assert_eq!(status, Status::Ok, "{kind:?}: {}", message(&reply));
        let stored = match kind {
            Kind::Queue => u64::from(u32::from_le_bytes(reply[..4].try_into().expect("u32"))),
            _ => u64::from_le_bytes(reply[..8].try_into().expect("u64")),
        };
        assert_eq!(stored, 0, "{kind:?}: nothing stored");
        let (status, names) = conn.request(kind.get_channels(), Vec::new());
        assert_eq!(status, Status::Ok);
        assert_eq!(
            dht::decode_channel_names(&names).expect("names"),
            Vec::<String>::new(),
            "{kind:?}: no channel created"
        );
        node.node.stop();
    }
}

//! Integration tests of the server core (node-core/src/server/) against the wire contract in
//! docs/protocol.md, through a raw client over real sockets. Each test starts its own server on
//! 127.0.0.1:0; every socket read has a timeout (common::IO_TIMEOUT), so a bug fails a test
//! rather than hanging it.

mod common;

use common::*;
use node_core::auth::Credentials;
use node_core::protocol::frame::FrameType;
use node_core::protocol::Status;
use node_core::server::ServerOptions;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const OK: u8 = Status::Ok as u8;

/// Tests that measure this process's memory take this lock, so that no two of them run at once
/// (the servers of all tests share the process).
static MEMORY_TESTS: Mutex<()> = Mutex::new(());

fn memory_lock() -> MutexGuard<'static, ()> {
    MEMORY_TESTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// 1 ----------------------------------------------------------------------------------------------

#[test]
fn handshake_and_get_version() {
    let server = start(test_options());
    let mut conn = RawConn::connect(server.addr);
    let hello = conn.read_server_hello().expect("hello");
    assert_eq!(hello.magic, *b"SWRM");
    assert_eq!(hello.version, 1);
    assert_eq!(hello.kind, 1, "dht");
    assert_eq!(hello.verdict, 0, "Ready");
    assert_eq!(hello.nonce, [0; 32], "nonce is zero unless AuthRequired");

    conn.send_raw(&client_hello(1, 1, b"", &[0; 64]));
    let result = conn.read_handshake_result().expect("result");
    assert_eq!(result.magic, *b"SWOK");
    assert_eq!(result.result, 0, "Accepted");
    assert_eq!(result.flags, 1, "with auth off every client is an admin");
    assert_eq!(result.reserved, 0);

    let reply = conn.call(GET_VERSION, 42, &[]);
    reply.assert_reply(42, OK);
    assert_eq!(reply.flags, 0);
    let mut body = Body(&reply.body);
    assert_eq!(body.u16(), 1, "protocol version");
    assert_eq!(body.u8(), 1, "node kind dht");
    let version = body.str8();
    assert!(body.is_empty(), "trailing bytes");
    let parts: Vec<&str> = version.split('.').collect();
    assert!(
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())),
        "software version {version:?} is not x.y.z"
    );

    // Wanting "any" kind (0) is accepted too.
    let mut any = RawConn::connect(server.addr);
    any.read_server_hello().expect("hello");
    any.send_raw(&client_hello(1, 0, b"", &[0; 64]));
    assert_eq!(any.read_handshake_result().expect("result").result, 0);
    any.assert_echo(1);

    drop((conn, any));
    server.stop().expect("clean stop");
}

// 2 ----------------------------------------------------------------------------------------------

#[test]
fn pipelined_requests_each_get_their_own_reply() {
    let server = start(test_options());
    let mut conn = connect(server.addr);
    let mut expected: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut batch = Vec::new();
    for i in 0..1000u64 {
        let id = 1_000_000 + i * 7919;
        let body = if i % 100 == 0 {
            Vec::new()
        } else {
            format!("body-{i}-")
                .repeat((i % 13) as usize + 1)
                .into_bytes()
        };
        push_frame(&mut batch, FrameType::Request, ECHO, id, &body);
        expected.insert(id, body);
    }
    conn.send_raw(&batch);
    for _ in 0..1000 {
        let frame = conn.frame();
        assert_eq!(
            (frame.frame_type, frame.code),
            (T_REPLY, OK),
            "{}",
            frame.describe()
        );
        let body = expected.remove(&frame.id).unwrap_or_else(|| {
            panic!(
                "reply for id {} that is unknown or already answered",
                frame.id
            )
        });
        assert_eq!(frame.body, body, "body of id {}", frame.id);
    }
    assert!(expected.is_empty());
    conn.expect_silence(Duration::from_millis(100));
}

/// A node answers ordinary requests in the order they arrive on each connection
/// (docs/protocol.md §2), whether a read brought one request or a pipelined batch: the loop sends
/// the replies of single reads at once and holds those of pipelined reads for the end of the pass
/// (issue 22), and neither may reorder or lose a reply while many connections mix both.
#[test]
fn replies_keep_request_order_on_every_connection() {
    let server = start(test_options());
    let clients: Vec<_> = (0..8u64)
        .map(|client| {
            let mut conn = connect(server.addr);
            std::thread::spawn(move || {
                let mut next_id = client << 32;
                for round in 0..60u64 {
                    // Alternately one request alone and a pipelined batch of 2..=24.
                    let count = if round % 2 == 0 {
                        1
                    } else {
                        2 + (round * 7 + client) % 23
                    };
                    let mut batch = Vec::new();
                    let first = next_id;
                    for id in first..first + count {
                        let body = format!("{id}:").repeat((id % 5) as usize);
                        push_frame(&mut batch, FrameType::Request, ECHO, id, body.as_bytes());
                    }
                    next_id += count;
                    conn.send_raw(&batch);
                    for id in first..first + count {
                        let frame = conn.frame();
                        frame.assert_reply(id, OK);
                        let body = format!("{id}:").repeat((id % 5) as usize);
                        assert_eq!(frame.body, body.as_bytes(), "body of id {id}");
                    }
                }
                conn.expect_silence(Duration::from_millis(50));
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client thread failed");
    }
}

/// `Service::before_output` (a dht node writes its change log's group there) runs for output
/// about to leave, not for every flush: a writable event with nothing queued must not call it,
/// or a node writes its log once per request instead of once per pass.
#[test]
fn before_output_runs_only_for_output_about_to_leave() {
    let server = start(test_options());
    let mut conn = connect(server.addr);
    let requests = 200u64;
    for id in 1..=requests {
        let reply = conn.call(ECHO, id, b"x");
        reply.assert_reply(id, OK);
    }
    let calls = stat(
        &get_stats(&mut conn, requests + 1),
        "test/before_output_calls",
    )
    .expect("the test service counts its before_output calls");
    // One per reply sent, and a few for the handshake's messages.
    assert!(
        (requests..=requests + 4).contains(&calls),
        "{calls} calls of before_output for {requests} replies"
    );
}

/// `Service::look_ahead` (a dht node prefetches the records of a read's requests there) is
/// shown the whole request frames of a pipelined read before they run, at most 16 at a time,
/// the node's own codes only (not GetVersion, not a Control frame), each with its own body; and
/// the requests are answered as without it, in order.
#[test]
fn look_ahead_sees_a_reads_frames_before_they_run() {
    let server = start(test_options());
    let mut conn = connect(server.addr);
    // Requests one at a time: a lone frame has nothing to overlap with, so no call.
    for id in 1..=3u64 {
        conn.call(ECHO, id, &id.to_le_bytes()).assert_reply(id, OK);
    }
    let stats = get_stats(&mut conn, 4);
    assert_eq!(
        stat(&stats, "test/look_ahead_calls"),
        Some(0),
        "lone frames"
    );
    let echoes = 40u64;
    let mut batch = Vec::new();
    for id in 1..=echoes {
        push_frame(&mut batch, FrameType::Request, ECHO, id, &id.to_le_bytes());
        if id == 20 {
            push_frame(&mut batch, FrameType::Request, GET_VERSION, 1_000, &[]);
            push_frame(
                &mut batch,
                FrameType::Control,
                CONTROL_CREDIT,
                2_000,
                &1u32.to_le_bytes(),
            );
        }
    }
    conn.send_raw(&batch);
    for id in 1..=echoes {
        let reply = conn.frame();
        reply.assert_reply(id, OK);
        assert_eq!(reply.body, id.to_le_bytes());
        if id == 20 {
            conn.frame().assert_reply(1_000, OK);
        }
    }
    let stats = get_stats(&mut conn, echoes + 1);
    let seen = |name: &str| stat(&stats, name).expect("the test service reports what it saw");
    assert_eq!(
        seen("test/look_ahead_unexpected"),
        0,
        "only the node's own requests"
    );
    let (calls, frames) = (
        seen("test/look_ahead_calls"),
        seen("test/look_ahead_frames"),
    );
    assert!(
        seen("test/look_ahead_most") <= 16,
        "16 frames a call at most"
    );
    // One 1 KiB write: one segment on loopback, read at once. (Were it split, a frame not
    // whole yet when the loop looks would not be shown; none is shown twice.)
    // Each call shows at most 16 frames, so 42 frames read at once take at least 3 calls.
    assert!(
        calls >= 3 && frames >= 2 && frames <= echoes,
        "{calls} calls, {frames} frames"
    );
}

/// The lone frames (P=1: one request, nothing after it) of connections read in the same pass
/// are shown to `look_ahead` together before the first runs, at most 16 in a call (a lone
/// frame has nothing to overlap with on its own connection, but the connections' do); every
/// request is answered as without it.
#[test]
fn look_ahead_sees_the_lone_frames_of_a_pass_together() {
    let server = start(test_options());
    let mut holder = connect(server.addr);
    let mut clients: Vec<_> = (0..20).map(|_| connect(server.addr)).collect();
    // Slow holds the loop while one Echo arrives on each of the 20 connections: the next
    // pass reads them all.
    holder.request(SLOW, 1, &500u32.to_le_bytes());
    std::thread::sleep(Duration::from_millis(150)); // Slow is running now.
    for (id, client) in (100u64..).zip(clients.iter_mut()) {
        client.request(ECHO, id, &id.to_le_bytes());
    }
    holder.frame().assert_reply(1, OK);
    for (id, client) in (100u64..).zip(clients.iter_mut()) {
        let reply = client.frame();
        reply.assert_reply(id, OK);
        assert_eq!(reply.body, id.to_le_bytes());
    }
    let stats = get_stats(&mut holder, 2);
    let seen = |name: &str| stat(&stats, name).expect("the test service reports what it saw");
    assert_eq!(seen("test/look_ahead_unexpected"), 0, "only Echoes");
    assert_eq!(
        seen("test/look_ahead_most"),
        16,
        "16 connections' lone frames in one call"
    );
    // 20 read in one pass: 16 and 4 (Slow's lone frame was read alone: no call).
    assert_eq!(
        (
            seen("test/look_ahead_calls"),
            seen("test/look_ahead_frames")
        ),
        (2, 20),
        "two calls: 16 frames, then 4"
    );
}

// 3 ----------------------------------------------------------------------------------------------

#[test]
fn stream_and_requests_share_a_connection() {
    let server = start(test_options());
    let mut conn = connect(server.addr);
    conn.request(COUNT_STREAM, 1, &1000u32.to_le_bytes());
    conn.expect_count_items(1, 0..4);
    // The stream has used its initial credit; ordinary requests still get through.
    for id in 2..=11u64 {
        let reply = conn.call(ECHO, id, &id.to_le_bytes());
        reply.assert_reply(id, OK);
        assert_eq!(reply.body, id.to_le_bytes());
    }

    // Grant enough for the rest (and the final reply), and slip an Echo in among the items.
    conn.credit(1, 1000);
    conn.request(ECHO, 12, b"among the items");
    let mut next_index = 4u32;
    let mut echo_seen = false;
    let mut stream_done = false;
    while !(echo_seen && stream_done) {
        let frame = conn.frame();
        match (frame.frame_type, frame.id) {
            (T_ITEM, 1) => {
                assert!(!stream_done, "item after the final reply");
                assert_eq!(frame.body, next_index.to_le_bytes(), "items in order");
                next_index += 1;
            }
            (T_REPLY, 1) => {
                frame.assert_reply(1, OK);
                assert_eq!(next_index, 1000, "final reply after all 1000 items");
                stream_done = true;
            }
            (T_REPLY, 12) => {
                assert!(!echo_seen);
                frame.assert_reply(12, OK);
                assert_eq!(frame.body, b"among the items");
                echo_seen = true;
            }
            _ => panic!("unexpected {}", frame.describe()),
        }
    }
    conn.expect_silence(Duration::from_millis(100));
}

// 4 ----------------------------------------------------------------------------------------------

#[test]
fn stream_without_credit_pauses_and_stop_ends_it() {
    let server = start(test_options());
    let mut conn = connect(server.addr);
    conn.request(COUNT_STREAM, 5, &1000u32.to_le_bytes());
    conn.expect_count_items(5, 0..4);
    conn.expect_silence(Duration::from_millis(300));

    // Three more credits: exactly three more items.
    conn.credit(5, 3);
    conn.expect_count_items(5, 4..7);
    conn.expect_silence(Duration::from_millis(300));

    conn.stop(5);
    conn.frame().assert_reply(5, OK);
    conn.expect_silence(Duration::from_millis(100));
    // The id is free again, the connection usable, and the service was told to cancel.
    conn.assert_echo(5);
    let stats = get_stats(&mut conn, 6);
    assert_eq!(stat(&stats, "test/streams_cancelled"), Some(1));
    assert_eq!(stat(&stats, "streams_open"), Some(0));
    // How long the process has run, which a dashboard tells restarts by.
    assert!(stat(&stats, "uptime_s").is_some(), "{stats:?}");
}

// 5 ----------------------------------------------------------------------------------------------

#[test]
fn connection_limit_refuses_with_a_hello_then_closes() {
    let server = start(ServerOptions {
        max_connections: 2,
        ..test_options()
    });
    let mut first = connect(server.addr);
    let mut second = connect(server.addr);

    let mut third = RawConn::connect(server.addr);
    let hello = third
        .read_server_hello()
        .expect("a refused connection still gets a hello");
    assert_eq!(hello.magic, *b"SWRM");
    assert_eq!(hello.verdict, 4, "ConnectionLimit");
    assert_eq!(
        third.expect_closed(),
        b"",
        "nothing after the refusal hello"
    );

    first.assert_echo(1);
    second.assert_echo(2);

    // Once one leaves, a new connection is let in.
    drop(first);
    let admitted = eventually(Duration::from_secs(5), || {
        let mut conn = RawConn::connect(server.addr);
        let hello = conn.read_server_hello().expect("hello");
        if hello.verdict != 0 {
            return false;
        }
        conn.send_raw(&client_hello(1, 1, b"", &[0; 64]));
        assert_eq!(conn.read_handshake_result().expect("result").result, 0);
        conn.assert_echo(3);
        true
    });
    assert!(admitted, "a slot freed by a closed connection is reused");
    second.assert_echo(4);
}

// 6 ----------------------------------------------------------------------------------------------

/// Parses the frames in `data` (what came before the close).
fn frames_in(mut data: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while data.len() >= 16 {
        let len = u32::from_le_bytes(data[0..4].try_into().expect("4")) as usize;
        assert!(data.len() >= 16 + len, "a partial frame before the close");
        frames.push(Frame {
            frame_type: data[4],
            code: data[5],
            flags: u16::from_le_bytes([data[6], data[7]]),
            id: u64::from_le_bytes(data[8..16].try_into().expect("8")),
            body: data[16..16 + len].to_vec(),
        });
        data = &data[16 + len..];
    }
    assert!(data.is_empty(), "a partial frame header before the close");
    frames
}

/// Sends `bytes` on a fresh connection and expects exactly one Reply with `status` and `id`
/// (a non-empty UTF-8 message), then the close.
#[track_caller]
fn expect_protocol_error(addr: std::net::SocketAddr, bytes: &[u8], status: Status, id: u64) {
    let mut conn = connect(addr);
    conn.assert_echo(100);
    conn.send_raw(bytes);
    let reply = conn.frame();
    reply.assert_reply(id, status as u8);
    let message = String::from_utf8(reply.body.clone()).expect("message is UTF-8");
    assert!(
        !message.is_empty() && message.len() <= 1024,
        "message {message:?}"
    );
    assert_eq!(conn.expect_closed(), b"", "nothing after the error reply");
}

/// Sends 4 KiB of pseudo-random bytes (xorshift from `seed`) on a fresh connection after the
/// handshake and expects the close, with at most error replies (BadRequest or FrameTooLarge)
/// before it.
#[track_caller]
fn expect_garbage_closes(addr: std::net::SocketAddr, seed: u64) {
    let mut state = seed;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut conn = connect(addr);
    conn.send_raw(&garbage);
    let before_close = conn.expect_closed();
    for frame in frames_in(&before_close) {
        assert_eq!(frame.frame_type, T_REPLY, "{}", frame.describe());
        assert!(
            [Status::BadRequest as u8, Status::FrameTooLarge as u8].contains(&frame.code),
            "{}",
            frame.describe()
        );
    }
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let max_frame_bytes = 64 * 1024;
    let server = start(ServerOptions {
        max_frame_bytes,
        ..test_options()
    });
    let mut bystander = connect(server.addr);
    bystander.assert_echo(1);

    // (a) A header declaring a body above max_frame_bytes.
    expect_protocol_error(
        server.addr,
        &raw_header(max_frame_bytes + 1, T_REQUEST, ECHO, 0, 77),
        Status::FrameTooLarge,
        77,
    );
    bystander.assert_echo(2);

    // (b) An unknown frame type.
    expect_protocol_error(
        server.addr,
        &raw_header(0, 9, ECHO, 0, 78),
        Status::BadRequest,
        78,
    );
    bystander.assert_echo(3);

    // Non-zero flags, and the frame types only a node sends.
    expect_protocol_error(
        server.addr,
        &raw_header(0, T_REQUEST, ECHO, 1, 79),
        Status::BadRequest,
        79,
    );
    expect_protocol_error(
        server.addr,
        &raw_header(0, T_REPLY, 0, 0, 80),
        Status::BadRequest,
        80,
    );
    expect_protocol_error(
        server.addr,
        &raw_header(0, T_ITEM, 0, 0, 81),
        Status::BadRequest,
        81,
    );
    // An unknown control code.
    expect_protocol_error(
        server.addr,
        &raw_header(0, T_CONTROL, 9, 0, 82),
        Status::BadRequest,
        82,
    );
    bystander.assert_echo(4);

    // (c) Garbage after the handshake: closed, possibly after one error reply.
    for seed in [1u64, 0xdead_beef, 42] {
        expect_garbage_closes(server.addr, seed);
        bystander.assert_echo(5 + seed);
    }

    let stats = get_stats(&mut bystander, 200);
    assert!(
        stat(&stats, "protocol_errors").unwrap_or(0) >= 9,
        "{stats:?}"
    );
}

#[test]
fn oversized_frame_sent_in_full_still_gets_its_error_reply() {
    // A real client that sends a too-big value writes the whole frame, not just its header; the
    // node must still get its FrameTooLarge reply through, although it never reads that body.
    let max_frame_bytes = 64 * 1024;
    let server = start(ServerOptions {
        max_frame_bytes,
        ..test_options()
    });
    let mut conn = connect(server.addr);
    let mut frame = raw_header(4 * 1024 * 1024, T_REQUEST, ECHO, 0, 90).to_vec();
    frame.resize(16 + 4 * 1024 * 1024, 0x5a);
    let mut writer = conn.writer_clone();
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        // Fails with EPIPE/ECONNRESET once the node closes; that is expected.
        let _ = writer.write_all(&frame);
    });
    let reply = conn.frame();
    reply.assert_reply(90, Status::FrameTooLarge as u8);
    conn.expect_closed();
    sender.join().expect("sender thread");
}

// 7 ----------------------------------------------------------------------------------------------

/// Opens a connection, reads the hello, sends `hello_bytes`, and returns the handshake result
/// byte after checking the node then closes.
#[track_caller]
fn refused_hello(addr: std::net::SocketAddr, hello_bytes: &[u8]) -> HandshakeResultMsg {
    let mut conn = RawConn::connect(addr);
    conn.read_server_hello().expect("hello");
    conn.send_raw(hello_bytes);
    let result = conn.read_handshake_result().expect("handshake result");
    assert_eq!(result.magic, *b"SWOK");
    assert_eq!(
        conn.expect_closed(),
        b"",
        "nothing after a refused handshake"
    );
    result
}

#[test]
fn bad_client_hellos_are_refused() {
    let server = start(test_options());
    let garbage = b"GET / HTTP/1.1\r\nHost: swarm\r\n\r\n";
    assert_eq!(refused_hello(server.addr, garbage).result, 7, "BadHello");
    assert_eq!(
        refused_hello(server.addr, &client_hello(2, 1, b"", &[0; 64])).result,
        2,
        "UnsupportedVersion"
    );
    assert_eq!(
        refused_hello(server.addr, &client_hello(1, 3, b"", &[0; 64])).result,
        3,
        "WrongKind (queue)"
    );
    assert_eq!(
        refused_hello(server.addr, &client_hello(1, 2, b"", &[0; 64])).result,
        3,
        "WrongKind (logfiles)"
    );
    assert_eq!(
        refused_hello(server.addr, &client_hello(1, 9, b"", &[0; 64])).result,
        7,
        "unknown kind"
    );
    // Names: longer than 100 bytes, or not ASCII graphic characters.
    let mut long_name = client_hello(1, 1, &[b'a'; 101], &[0; 64]);
    long_name.truncate(8 + 101 + 64);
    assert_eq!(
        refused_hello(server.addr, &long_name).result,
        7,
        "101-byte name"
    );
    assert_eq!(
        refused_hello(server.addr, &client_hello(1, 1, b"a b", &[0; 64])).result,
        7,
        "name with a space"
    );

    let mut conn = connect(server.addr);
    let stats = get_stats(&mut conn, 1);
    assert!(
        stat(&stats, "handshakes_failed").unwrap_or(0) >= 7,
        "{stats:?}"
    );
}

#[test]
fn silent_client_is_closed_after_the_hello_timeout() {
    let server = start(ServerOptions {
        hello_timeout_ms: 200,
        ..test_options()
    });
    let mut conn = RawConn::connect(server.addr);
    conn.read_server_hello().expect("hello");
    let started = Instant::now();
    assert_eq!(conn.expect_closed(), b"");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
}

// 8 ----------------------------------------------------------------------------------------------

const ADMIN_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const READER_KEY: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f";

#[test]
fn authentication() {
    let credentials = Arc::new(
        Credentials::parse(&format!("admin:{ADMIN_KEY}\nreader:{READER_KEY}\n"))
            .expect("credentials"),
    );
    let admin_key = credentials.get("admin").expect("admin key").clone();
    let reader_key = credentials.get("reader").expect("reader key").clone();
    let server = start(ServerOptions {
        credentials: Some(credentials),
        admins: vec!["admin".to_string()],
        ..test_options()
    });

    // The admin.
    let (mut admin, hello, result) = connect_as(server.addr, "admin", Some(&admin_key));
    assert_eq!(hello.verdict, 1, "AuthRequired");
    assert_ne!(hello.nonce, [0; 32], "a real nonce");
    let result = result.expect("result");
    assert_eq!(
        (result.magic, result.result, result.flags & 1),
        (*b"SWOK", 0, 1),
        "admin accepted as admin"
    );
    let reply = admin.call(ADMIN, 1, &[]);
    reply.assert_reply(1, OK);

    // A reader: accepted, not an admin, refused administrative requests but otherwise served.
    let (mut reader, reader_hello, result) = connect_as(server.addr, "reader", Some(&reader_key));
    assert_ne!(
        reader_hello.nonce, hello.nonce,
        "fresh nonce per connection"
    );
    let result = result.expect("result");
    assert_eq!(
        (result.result, result.flags & 1),
        (0, 0),
        "reader accepted, not admin"
    );
    reader
        .call(ADMIN, 2, &[])
        .assert_reply(2, Status::NotPermitted as u8);
    reader.assert_echo(3);

    // Failures: wrong key, unknown name, anonymous. Each is AuthFailed, then the close, and the
    // admin flag is never set on a refusal (it would tell a prober which names are admins).
    for (name, key) in [
        ("reader", Some(&admin_key)),
        ("admin", Some(&reader_key)),
        ("mallory", Some(&admin_key)),
        ("", None),
        ("admin", None),
    ] {
        let (mut conn, _, result) = connect_as(server.addr, name, key);
        let result = result.expect("result");
        assert_eq!(result.result, 6, "AuthFailed for {name:?}");
        assert_eq!(
            result.flags, 0,
            "no admin flag on a refused handshake ({name:?})"
        );
        assert_eq!(conn.expect_closed(), b"");
    }

    // Replay: a proof made for one connection's nonce fails on another.
    let mut first = RawConn::connect(server.addr);
    let first_hello = first.read_server_hello().expect("hello");
    let recorded = node_core::auth::proof(&admin_key, &first_hello.nonce, b"admin");
    let mut second = RawConn::connect(server.addr);
    let second_hello = second.read_server_hello().expect("hello");
    assert_ne!(first_hello.nonce, second_hello.nonce);
    second.send_raw(&client_hello(1, 1, b"admin", &recorded));
    assert_eq!(
        second.read_handshake_result().expect("result").result,
        6,
        "replayed proof"
    );
    assert_eq!(second.expect_closed(), b"");
    // The proof is good on the connection it was made for.
    first.send_raw(&client_hello(1, 1, b"admin", &recorded));
    assert_eq!(first.read_handshake_result().expect("result").result, 0);
    first.call(ADMIN, 4, &[]).assert_reply(4, OK);

    admin.assert_echo(5);
}

// 9 ----------------------------------------------------------------------------------------------

#[test]
fn slow_reader_costs_bounded_memory() {
    let _memory = memory_lock();
    const REPLIES: u64 = 200;
    const REPLY_BYTES: u32 = 1024 * 1024;
    let server = start(ServerOptions {
        output_buffer_bytes: 1024 * 1024,
        ..test_options()
    });
    let mut slow = connect(server.addr);
    let mut other = connect(server.addr);
    let before = rss_kib();

    let mut batch = Vec::new();
    for id in 1..=REPLIES {
        push_frame(
            &mut batch,
            FrameType::Request,
            BIG_REPLY,
            id,
            &REPLY_BYTES.to_le_bytes(),
        );
    }
    slow.send_raw(&batch);

    // While the slow reader reads nothing, the node keeps serving others and stops producing.
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut id = 1_000;
    while Instant::now() < deadline {
        other.assert_echo(id);
        id += 1;
        peak = peak.max(rss_kib());
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "memory grew by {grown_mib} MiB while a reader stalled on 200 MiB of replies"
    );

    for id in 1..=REPLIES {
        let reply = slow.frame();
        reply.assert_reply(id, OK);
        assert_eq!(reply.body.len(), REPLY_BYTES as usize, "reply {id} length");
        assert!(check_pattern(&reply.body, id), "reply {id} content");
    }
    slow.expect_silence(Duration::from_millis(100));
    other.assert_echo(id);
}

// 10 ---------------------------------------------------------------------------------------------

#[test]
fn graceful_shutdown_answers_what_arrived() {
    let server = start(test_options());
    let addr = server.addr;
    let mut conn = connect(addr);
    let mut batch = Vec::new();
    push_frame(
        &mut batch,
        FrameType::Request,
        SLOW,
        1,
        &300u32.to_le_bytes(),
    );
    for id in 2..=51u64 {
        push_frame(&mut batch, FrameType::Request, ECHO, id, &id.to_le_bytes());
    }
    conn.send_raw(&batch);
    std::thread::sleep(Duration::from_millis(100)); // Slow is running now.
    server.shutdown_handle().shutdown();

    conn.frame().assert_reply(1, OK);
    for id in 2..=51u64 {
        let reply = conn.frame();
        reply.assert_reply(id, OK);
        assert_eq!(reply.body, id.to_le_bytes());
    }
    assert_eq!(conn.expect_closed(), b"", "closed after the last reply");
    let started = Instant::now();
    server.stop().expect("the server thread returns Ok");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        started.elapsed()
    );

    // Refused now: connect fails, or the hello says ShuttingDown, or the node closes at once.
    if let Ok(mut late) = RawConn::try_connect(addr) {
        match late.read_server_hello() {
            Ok(hello) => assert_eq!(hello.verdict, 5, "a late connection must not be served"),
            Err(err) => assert_ne!(
                err.kind(),
                std::io::ErrorKind::WouldBlock,
                "no answer: {err}"
            ),
        }
    }
}

#[test]
fn connection_during_shutdown_drain_hears_shutting_down() {
    // A stalled reader keeps the node draining (up to shutdown_timeout_s). A client that connects
    // meanwhile must learn at once that the node is stopping (hello verdict ShuttingDown, §1.1),
    // not sit unanswered in the listen backlog.
    let _memory = memory_lock();
    let server = start(ServerOptions {
        output_buffer_bytes: 1024 * 1024,
        shutdown_timeout_s: 3,
        ..test_options()
    });
    let mut stalled = connect(server.addr);
    let mut batch = Vec::new();
    for id in 1..=16u64 {
        push_frame(
            &mut batch,
            FrameType::Request,
            BIG_REPLY,
            id,
            &(1024u32 * 1024).to_le_bytes(),
        );
    }
    stalled.send_raw(&batch);
    std::thread::sleep(Duration::from_millis(200));
    server.shutdown_handle().shutdown();
    std::thread::sleep(Duration::from_millis(200));

    let mut late = RawConn::try_connect(server.addr).expect("the node is still running, draining");
    let started = Instant::now();
    match late.read_server_hello() {
        Ok(hello) => assert_eq!(hello.verdict, 5, "ShuttingDown"),
        Err(err) => panic!(
            "no hello for a connection made during the drain ({err}, after {:?})",
            started.elapsed()
        ),
    }
    drop(stalled);
    server.stop().expect("clean stop");
}

// KNOWN BUG: THIS TEST FAILS until the server is fixed (deliberately left failing, not ignored).
//
// node-core/src/server/event_loop.rs, `begin_shutdown`: it answers every request already read
// with `while self.connections.contains(slot) && self.process_frame(slot) {}`, which bypasses the
// `output_buffer_bytes` high-water check that `process_input` applies. So a client that
// pipelined requests with big replies and reads slowly makes the node execute all of them into
// one output buffer at shutdown: here 200 x 1 MiB gives ~200 MiB (measured +211 MiB), and in
// general up to (max_frame_bytes of buffered requests) x (reply size), i.e. unbounded.
// A fix: once `pending_output() >= output_buffer_bytes`, answer each remaining Request frame with
// status ShuttingDown (24, "request not executed") instead of running it, or keep executing
// input paced by the output drain until shutdown_timeout_s. This test accepts either.
#[test]
fn shutdown_keeps_a_slow_readers_memory_bounded() {
    // At shutdown the node answers the requests it already buffered. It must not do so by
    // executing them all into an unbounded output buffer (§2.2: a slow reader costs bounded
    // memory); requests beyond what fits may be answered ShuttingDown ("not executed").
    let _memory = memory_lock();
    const REQUESTS: u64 = 200;
    let server = start(ServerOptions {
        output_buffer_bytes: 1024 * 1024,
        shutdown_timeout_s: 30,
        ..test_options()
    });
    let mut slow = connect(server.addr);
    let mut batch = Vec::new();
    for id in 1..=REQUESTS {
        push_frame(
            &mut batch,
            FrameType::Request,
            BIG_REPLY,
            id,
            &(1024u32 * 1024).to_le_bytes(),
        );
    }
    slow.send_raw(&batch);
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib();
    let handle = server.shutdown_handle();
    handle.shutdown();
    std::thread::sleep(Duration::from_millis(500));
    let grown_mib = rss_kib().saturating_sub(before) / 1024;

    // Every request still gets exactly one reply: executed (Ok, intact) or ShuttingDown.
    for id in 1..=REQUESTS {
        let reply = slow.frame();
        assert_eq!(
            (reply.frame_type, reply.id),
            (T_REPLY, id),
            "{}",
            reply.describe()
        );
        match reply.code {
            0 => assert!(check_pattern(&reply.body, id), "reply {id} content"),
            24 => {}
            other => panic!("reply {id}: status {other}"),
        }
    }
    slow.expect_closed();
    server.stop().expect("clean stop");
    assert!(
        grown_mib < 64,
        "memory grew by {grown_mib} MiB when shutdown began with a stalled reader"
    );
}

// 11 ---------------------------------------------------------------------------------------------

#[test]
fn unknown_codes_and_stray_controls_keep_the_connection() {
    let server = start(test_options());
    let mut conn = connect(server.addr);

    // Unknown request codes: one of this node kind's range, one outside every range, one of the
    // codes every node answers.
    for (id, code) in [(1u64, 200u8), (2, 47), (3, 9)] {
        let reply = conn.call(code, id, b"whatever");
        reply.assert_reply(id, Status::UnsupportedRequest as u8);
        assert!(std::str::from_utf8(&reply.body).is_ok_and(|m| !m.is_empty()));
    }
    conn.assert_echo(4);

    // A running stream (a request that reuses its id closes the connection: see
    // node-core/tests/request_ids.rs).
    conn.request(WAIT_STREAM, 7, &[]);
    conn.assert_echo(8); // the stream is registered now
    conn.assert_echo(9);
    // A Poke from another connection reaches it.
    let mut poker = connect(server.addr);
    let poked = poker.call(POKE, 1, b"hello");
    poked.assert_reply(1, OK);
    assert_eq!(poked.body, 1u32.to_le_bytes());
    let item = conn.frame();
    assert_eq!(
        (item.frame_type, item.id, item.code, item.body.as_slice()),
        (T_ITEM, 7, WAIT_ITEM, &b"hello"[..])
    );

    // Control frames for ids without a stream are ignored.
    conn.credit(999, 10);
    conn.stop(998);
    conn.stop(4); // an id that was used and answered
    conn.assert_echo(10);
    conn.expect_silence(Duration::from_millis(100));

    conn.stop(7);
    conn.frame().assert_reply(7, OK);
    conn.assert_echo(11);
}

#[test]
fn waiting_streams_are_woken_from_other_connections() {
    let server = start(test_options());
    let mut a = connect(server.addr);
    let mut b = connect(server.addr);
    let mut poker = connect(server.addr);
    a.request(WAIT_STREAM, 1, &[]);
    b.request(WAIT_STREAM, 2, &[]);
    a.assert_echo(10);
    b.assert_echo(20);
    a.expect_silence(Duration::from_millis(100));

    // More pokes than the initial credit: the fifth item waits for credit.
    for (id, poke) in [b"p0", b"p1", b"p2", b"p3", b"p4"].iter().enumerate() {
        let reply = poker.call(POKE, id as u64, *poke);
        reply.assert_reply(id as u64, OK);
        assert_eq!(reply.body, 2u32.to_le_bytes(), "both streams poked");
    }
    for (conn, id) in [(&mut a, 1u64), (&mut b, 2)] {
        for poke in [b"p0", b"p1", b"p2", b"p3"] {
            let item = conn.frame();
            assert_eq!(
                (item.frame_type, item.id, item.body.as_slice()),
                (T_ITEM, id, &poke[..])
            );
        }
        conn.expect_silence(Duration::from_millis(200));
        conn.credit(id, 100);
        let item = conn.frame();
        assert_eq!(
            (item.frame_type, item.id, item.body.as_slice()),
            (T_ITEM, id, &b"p4"[..])
        );
    }

    poker.call(POKE, 9, b"end").assert_reply(9, OK);
    a.frame().assert_reply(1, OK);
    b.frame().assert_reply(2, OK);
    // A dropped connection cancels its waiting stream.
    let mut c = connect(server.addr);
    c.request(WAIT_STREAM, 3, &[]);
    c.assert_echo(30);
    drop(c);
    assert!(eventually(Duration::from_secs(5), || {
        stat(&get_stats(&mut poker, 100), "test/streams_cancelled") == Some(1)
    }));
}

#[test]
fn max_in_flight_answers_too_many_requests() {
    let server = start(ServerOptions {
        max_in_flight: 2,
        ..test_options()
    });
    let mut conn = connect(server.addr);
    conn.request(WAIT_STREAM, 1, &[]);
    conn.request(WAIT_STREAM, 2, &[]);
    conn.call(WAIT_STREAM, 3, &[])
        .assert_reply(3, Status::TooManyRequests as u8);
    conn.call(ECHO, 4, &[])
        .assert_reply(4, Status::TooManyRequests as u8);
    conn.stop(1);
    conn.frame().assert_reply(1, OK);
    conn.assert_echo(5);
}

#[test]
fn half_closed_client_still_gets_every_reply() {
    // A client may pipeline its requests and then close its sending side (TCP half-close);
    // every request that arrived must still be answered (§2: every Request gets one Reply).
    let server = start(test_options());
    let mut conn = connect(server.addr);
    let mut batch = Vec::new();
    for id in 0..2000u64 {
        push_frame(&mut batch, FrameType::Request, ECHO, id, &id.to_le_bytes());
    }
    conn.send_raw(&batch);
    conn.shutdown_write();
    for id in 0..2000u64 {
        match conn.read_frame() {
            Ok(reply) => {
                reply.assert_reply(id, OK);
                assert_eq!(reply.body, id.to_le_bytes());
            }
            Err(err) => panic!("after {id} of 2000 replies: {err}"),
        }
    }
    assert_eq!(conn.expect_closed(), b"");
}

// 12 ---------------------------------------------------------------------------------------------

#[test]
fn get_stats_and_get_num_connections() {
    let server = start(test_options());
    let mut conn = connect(server.addr);
    for id in 0..25u64 {
        conn.assert_echo(id);
    }
    conn.call(ADMIN, 30, &[]).assert_reply(30, OK);
    let stats = get_stats(&mut conn, 31);
    assert!(
        stat(&stats, "request/Echo/handled").is_some_and(|n| n >= 25),
        "{stats:?}"
    );
    assert_eq!(stat(&stats, "request/Echo/failed"), Some(0));
    assert_eq!(stat(&stats, "request/Admin/handled"), Some(1));
    assert!(
        stat(&stats, "connections_open").is_some_and(|n| n >= 1),
        "{stats:?}"
    );
    assert!(stat(&stats, "bytes_in").is_some_and(|n| n > 0));
    assert!(stats.iter().all(|(name, _)| !name.is_empty()));

    assert_eq!(num_connections(&mut conn, 32), 1);
    let others: Vec<RawConn> = (0..3).map(|_| connect(server.addr)).collect();
    assert_eq!(num_connections(&mut conn, 33), 4);
    drop(others);
    assert!(
        eventually(Duration::from_secs(5), || num_connections(&mut conn, 34)
            == 1),
        "closed connections stop being counted"
    );
    let stats = get_stats(&mut conn, 35);
    assert_eq!(stat(&stats, "connections_open"), Some(1));
    assert!(stat(&stats, "request/GetNumConnections/handled").is_some_and(|n| n >= 3));
}

// 13 ---------------------------------------------------------------------------------------------

/// How long the new connection takes among the idle ones is a measurement, not a test:
/// `benches/src/bin/connect_idle.rs` (docs/benchmarks.md).
#[test]
fn a_new_connection_is_served_among_many_idle_ones() {
    let server = start(test_options());
    let idle: Vec<RawConn> = (0..500).map(|_| connect(server.addr)).collect();
    let mut fresh = connect(server.addr);
    fresh.assert_echo(1);
    assert_eq!(num_connections(&mut fresh, 2), 501);
    drop(idle);
}

//! The server core's rules for requests and streams (docs/protocol.md §2, docs/security.md
//! "Limits"), with the test service of `common`:
//!
//! - a request that reuses the id of a running stream is a protocol error: one Reply with that
//!   id, then the connection closes, and the stream ends without a second Reply;
//! - requests that only act on a running stream are never refused for `max_in_flight`;
//! - stream memory: a request that opens a stream is refused with TooManyRequests while its
//!   connection's streams hold `stream_memory_bytes`, or the node's `max_stream_memory_bytes`;
//!   other requests are served; `StreamOut::try_reserve` grants only what both budgets leave;
//! - the requests every node answers take no body.

mod common;

use common::*;
use node_core::protocol::Status;
use node_core::server::ServerOptions;
use std::time::Duration;

const KIB: u32 = 1024;
const OK: u8 = Status::Ok as u8;

fn hold_body(held: u32, reserve: u32) -> Vec<u8> {
    [held.to_le_bytes(), reserve.to_le_bytes()].concat()
}

#[test]
fn a_reused_id_of_a_running_stream_closes_the_connection_with_one_reply() {
    let server = start(test_options());
    let mut conn = connect(server.addr);
    conn.request(WAIT_STREAM, 7, &[]);
    conn.assert_echo(8); // the stream is registered now
    conn.request(ECHO, 7, b"same id");
    conn.frame().assert_reply(7, Status::BadRequest as u8);
    // No second Reply for 7, whatever follows: the connection is closed.
    let mut stop = Vec::new();
    push_frame(
        &mut stop,
        node_core::protocol::FrameType::Control,
        CONTROL_STOP,
        7,
        &[],
    );
    let _ = conn.try_send_raw(&stop);
    assert!(
        conn.expect_closed().is_empty(),
        "nothing after the protocol error's Reply"
    );
    // The stream was cancelled with its connection; others are served.
    let mut other = connect(server.addr);
    other.assert_echo(1);
    let stats = get_stats(&mut other, 2);
    assert_eq!(stat(&stats, "streams_open"), Some(0));
    assert_eq!(stat(&stats, "protocol_errors"), Some(1));
}

#[test]
fn requests_acting_on_running_streams_pass_the_in_flight_limit() {
    let server = start(ServerOptions {
        max_in_flight: 1,
        ..test_options()
    });
    let mut conn = connect(server.addr);
    conn.request(WAIT_STREAM, 1, &[]);
    conn.call(ACK, 2, &[]).assert_reply(2, OK);
    conn.call(ECHO, 3, &[])
        .assert_reply(3, Status::TooManyRequests as u8);
    conn.call(WAIT_STREAM, 4, &[])
        .assert_reply(4, Status::TooManyRequests as u8);
    conn.stop(1);
    conn.frame().assert_reply(1, OK);
    conn.assert_echo(5);
}

#[test]
fn streams_are_refused_while_their_connection_holds_its_stream_memory() {
    let server = start(ServerOptions {
        stream_memory_bytes: 1024 * 1024,
        ..test_options()
    });
    let mut conn = connect(server.addr);
    // 600 KiB, then 600 KiB more (the first left room): the connection is over its budget.
    conn.request(HOLD_STREAM, 1, &hold_body(600 * KIB, 0));
    conn.request(HOLD_STREAM, 2, &hold_body(600 * KIB, 0));
    let refused = conn.call(HOLD_STREAM, 3, &hold_body(1, 0));
    refused.assert_reply(3, Status::TooManyRequests as u8);
    let message = String::from_utf8_lossy(&refused.body).into_owned();
    assert!(
        message.contains("server.stream_memory_bytes"),
        "the refusal names the setting: {message}"
    );
    // Requests that open no stream are served; other connections open streams.
    conn.assert_echo(4);
    let mut other = connect(server.addr);
    other.request(HOLD_STREAM, 1, &hold_body(600 * KIB, 0));
    other.assert_echo(2);
    let stats = get_stats(&mut other, 3);
    let held = stat(&stats, "stream_memory_bytes").expect("stream_memory_bytes");
    assert!(
        (3 * 600 * 1024..3 * 601 * 1024).contains(&held),
        "three streams of 600 KiB counted: {held}"
    );
    // Stopping a stream gives its memory back.
    conn.stop(2);
    conn.frame().assert_reply(2, OK);
    conn.request(HOLD_STREAM, 5, &hold_body(1, 0));
    conn.assert_echo(6);
    let stats = get_stats(&mut other, 4);
    let held = stat(&stats, "stream_memory_bytes").expect("stream_memory_bytes");
    assert!(held < 2 * 601 * 1024, "the stopped stream released: {held}");
}

#[test]
fn streams_are_refused_while_the_node_holds_its_stream_memory() {
    let server = start(ServerOptions {
        stream_memory_bytes: 1024 * 1024,
        max_stream_memory_bytes: 2 * 1024 * 1024,
        ..test_options()
    });
    let mut connections: Vec<RawConn> = (0..3).map(|_| connect(server.addr)).collect();
    connections[0].request(HOLD_STREAM, 1, &hold_body(900 * KIB, 0));
    connections[1].request(HOLD_STREAM, 1, &hold_body(900 * KIB, 0));
    connections[2].request(HOLD_STREAM, 1, &hold_body(400 * KIB, 0));
    connections[2].assert_echo(2);
    // 2.2 MiB held: the third connection is under its own budget, the node is not.
    let refused = connections[2].call(HOLD_STREAM, 3, &hold_body(1, 0));
    refused.assert_reply(3, Status::TooManyRequests as u8);
    let message = String::from_utf8_lossy(&refused.body).into_owned();
    assert!(
        message.contains("server.max_stream_memory_bytes"),
        "the refusal names the setting: {message}"
    );
    // A connection that goes away gives its streams' memory back.
    drop(connections.remove(0));
    let mut id = 100;
    assert!(
        eventually(Duration::from_secs(10), || {
            id += 1;
            let stats = get_stats(&mut connections[0], id);
            stat(&stats, "stream_memory_bytes").is_some_and(|held| held < 2 * 1024 * 1024)
        }),
        "the closed connection's streams released their memory"
    );
    connections[1].request(HOLD_STREAM, 10, &hold_body(1, 0));
    connections[1].assert_echo(11); // the first frame: the stream was accepted
}

#[test]
fn try_reserve_grants_what_both_budgets_leave() {
    let server = start(ServerOptions {
        stream_memory_bytes: 1024 * 1024,
        ..test_options()
    });
    let mut conn = connect(server.addr);
    conn.request(HOLD_STREAM, 1, &hold_body(500 * KIB, 0));
    conn.assert_echo(2);
    // 300 KiB fits beside the 500 KiB held; then 300 KiB more does not.
    conn.request(HOLD_STREAM, 3, &hold_body(0, 300 * KIB));
    let item = conn.frame();
    assert_eq!(
        (item.frame_type, item.id, item.code),
        (T_ITEM, 3, HOLD_ITEM)
    );
    assert_eq!(item.body, [1], "granted");
    conn.request(HOLD_STREAM, 4, &hold_body(0, 300 * KIB));
    let item = conn.frame();
    assert_eq!(
        (item.frame_type, item.id, item.code),
        (T_ITEM, 4, HOLD_ITEM)
    );
    assert_eq!(item.body, [0], "refused: 800 KiB held of 1 MiB");
    // A stream reserving on another connection is not limited by this one's.
    let mut other = connect(server.addr);
    other.request(HOLD_STREAM, 1, &hold_body(0, 900 * KIB));
    let item = other.frame();
    assert_eq!(item.body, [1], "granted on a connection of its own");
}

#[test]
fn the_requests_every_node_answers_take_no_body() {
    let server = start(test_options());
    let mut conn = connect(server.addr);
    for (id, code) in [
        (1u64, GET_VERSION),
        (2, GET_NUM_CONNECTIONS),
        (3, GET_STATS),
    ] {
        let reply = conn.call(code, id, b"extra");
        reply.assert_reply(id, Status::BadRequest as u8);
        conn.call(code, id + 10, &[]).assert_reply(id + 10, OK);
    }
}

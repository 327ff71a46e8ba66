//! The client's transport against real nodes (node_core::server, in-process) and, for
//! misbehaviour a real node never shows, against scripted fake nodes.

mod common;

use client::{Client, ClientError, ClientOptions, Key, NodeKind, NodeState, Status, StreamEvent};
use common::*;
use node_core::protocol::frame::FrameType;
use node_core::protocol::{RequestCode, PROTOCOL_VERSION};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout_ms: 2000,
        request_timeout_ms: 5000,
        ..ClientOptions::default()
    }
}

fn connect(addr: SocketAddr, kind: Option<NodeKind>) -> Client {
    Client::connect(&[addr], kind, options()).expect("connects")
}

fn alice(key_hex: &str) -> ClientOptions {
    let key = Key::from_hex(key_hex).expect("valid key");
    ClientOptions {
        credentials: Some(("alice".to_string(), key)),
        ..options()
    }
}

fn item_index(event: &StreamEvent) -> u32 {
    match event {
        StreamEvent::Item { code, body } => {
            assert_eq!(*code, COUNT_ITEM);
            u32::from_le_bytes(body[..4].try_into().expect("u32 body"))
        }
        StreamEvent::End(reply) => panic!("unexpected end {reply:?}"),
    }
}

/// Polls `condition` for up to 5 s.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn ping_round_trip_and_common_requests() {
    let node = start(NodeKind::Dht, |_| {});
    let client = connect(node.addr(), Some(NodeKind::Dht));
    assert_eq!(client.node_count(), 1);
    assert_eq!(client.node_addr(0), Some(node.addr()));
    let version = client.get_version(0).expect("version");
    assert_eq!(version.protocol_version, PROTOCOL_VERSION);
    assert_eq!(version.kind, NodeKind::Dht);
    assert_eq!(version.software_version, "0.1.0");
    assert_eq!(client.get_num_connections(0).expect("connections"), 1);
    let stats = client.get_stats(0).expect("stats");
    assert!(!stats.is_empty(), "the core reports counters");

    let reply = client.request(0, ECHO, b"hello").expect("echo");
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.ok_body().expect("ok"), b"hello");
}

#[test]
fn error_statuses_carry_the_node_message() {
    let node = start(NodeKind::Dht, |_| {});
    let client = connect(node.addr(), None);
    let error = client
        .request(0, FAIL, &[])
        .expect("reply")
        .ok_body()
        .expect_err("error status");
    match &error {
        ClientError::Status {
            status, message, ..
        } => {
            assert_eq!(*status, Status::BadChannelName);
            assert_eq!(message, FAIL_MESSAGE);
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    let expected = format!("node {}: bad channel name: {FAIL_MESSAGE}", node.addr());
    assert_eq!(error.to_string(), expected);
    let unknown = client
        .request(0, RequestCode(99), &[])
        .expect("reply")
        .into_result();
    assert!(matches!(
        unknown,
        Err(ClientError::Status {
            status: Status::UnsupportedRequest,
            ..
        })
    ));
}

#[test]
fn a_thousand_pipelined_requests_on_one_connection_match_their_replies() {
    let node = start(NodeKind::Dht, |_| {});
    let client = connect(node.addr(), None);
    let pending: Vec<_> = (0u32..1000)
        .map(|i| client.submit(0, ECHO, &i.to_le_bytes()).expect("submit"))
        .collect();
    // Wait in reverse order: each reply must still reach its own request.
    for (i, pending) in pending.into_iter().enumerate().rev() {
        let body = pending.wait().expect("reply").ok_body().expect("ok");
        assert_eq!(body, (i as u32).to_le_bytes());
    }
    assert_eq!(client.get_num_connections(0).expect("connections"), 1);
}

#[test]
fn large_bodies_survive_partial_reads_and_writes() {
    let node = start(NodeKind::Dht, |_| {});
    let client = connect(node.addr(), None);
    let bodies: Vec<Vec<u8>> = (0u8..4)
        .map(|seed| (0..3_000_000u32).map(|i| (i as u8) ^ seed).collect())
        .collect();
    let pending: Vec<_> = bodies
        .iter()
        .map(|body| client.submit(0, ECHO, body).expect("submit"))
        .collect();
    let small = client
        .request(0, ECHO, b"small")
        .expect("echo between big ones");
    assert_eq!(small.body, b"small");
    for (pending, body) in pending.into_iter().zip(&bodies) {
        assert!(
            pending.wait().expect("reply").body == *body,
            "big echo intact"
        );
    }
}

#[test]
fn many_threads_share_one_client() {
    let node = start(NodeKind::Dht, |_| {});
    let client = Arc::new(connect(node.addr(), None));
    let threads: Vec<_> = (0u32..8)
        .map(|t| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || {
                for i in 0u32..200 {
                    let body = [t.to_le_bytes(), i.to_le_bytes()].concat();
                    let reply = client.request(0, ECHO, &body).expect("echo");
                    assert_eq!(reply.body, body);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no panic");
    }
    assert_eq!(client.get_num_connections(0).expect("connections"), 1);
}

#[test]
fn a_stream_interleaves_with_ordinary_requests() {
    let node = start(NodeKind::Dht, |_| {});
    let client = connect(node.addr(), None);
    let mut stream = client
        .stream(0, COUNT, &100u32.to_le_bytes())
        .expect("stream");
    let mut seen = 0;
    for event in stream.by_ref() {
        match event.expect("event") {
            StreamEvent::Item { .. } if seen % 10 == 0 => {
                // An ordinary request on the same connection while the stream runs.
                let echo = client.request(0, ECHO, &[seen as u8]).expect("echo");
                assert_eq!(echo.body, [seen as u8]);
                seen += 1;
            }
            StreamEvent::Item { code, body } => {
                assert_eq!(code, COUNT_ITEM);
                assert_eq!(body, (seen as u32).to_le_bytes());
                seen += 1;
            }
            StreamEvent::End(reply) => {
                assert_eq!(reply.status, Status::Ok);
                assert_eq!(reply.body, 100u32.to_le_bytes());
            }
        }
    }
    assert_eq!(seen, 100);
    assert!(stream.next().is_none(), "nothing after End");
}

#[test]
fn an_unread_stream_pauses_the_node_at_its_credit_and_resumes() {
    let node = start(NodeKind::Dht, |_| {});
    let window = 8;
    let client = Client::connect(
        &[node.addr()],
        None,
        ClientOptions {
            stream_window: window,
            ..options()
        },
    )
    .expect("connects");
    let mut stream = client
        .stream(0, COUNT, &1000u32.to_le_bytes())
        .expect("stream");
    eventually("the first window", || node.produced() == u64::from(window));
    // The node must stop at the window while nobody reads (a round trip on the same
    // connection proves the node has handled everything sent before it).
    client.request(0, ECHO, b"sync").expect("echo");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(node.produced(), u64::from(window));

    // Reading resumes it: credit goes back in batches of window/4 = 2.
    for expected in 0..3 {
        let event = stream.next().expect("event").expect("item");
        assert_eq!(item_index(&event), expected);
    }
    eventually("the refill", || node.produced() == u64::from(window) + 2);
    client.request(0, ECHO, b"sync").expect("echo");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        node.produced(),
        u64::from(window) + 2,
        "only consumed items are re-granted"
    );

    let mut next = 3;
    for event in stream.by_ref() {
        match event.expect("event") {
            StreamEvent::End(reply) => assert_eq!(reply.status, Status::Ok),
            item => {
                assert_eq!(item_index(&item), next);
                next += 1;
            }
        }
    }
    assert_eq!(next, 1000);
}

#[test]
fn stop_ends_a_stream_and_dropping_one_stops_it() {
    let node = start(NodeKind::Dht, |_| {});
    let client = connect(node.addr(), None);
    let mut stream = client
        .stream(0, COUNT, &1_000_000u32.to_le_bytes())
        .expect("stream");
    let first = stream.next().expect("event").expect("item");
    assert_eq!(item_index(&first), 0);
    stream.stop();
    let mut end = None;
    for event in stream.by_ref() {
        if let StreamEvent::End(reply) = event.expect("event") {
            end = Some(reply);
        }
    }
    assert_eq!(end.expect("end").status, Status::Ok);
    let produced = node.produced();
    assert!(produced < 100, "stopped early, produced {produced}");

    let dropped = client
        .stream(0, COUNT, &1_000_000u32.to_le_bytes())
        .expect("stream");
    drop(dropped);
    let before = node.produced();
    client.request(0, ECHO, b"sync").expect("echo");
    std::thread::sleep(Duration::from_millis(50));
    assert!(node.produced() - before < 100, "dropped stream stopped");
    // The connection is healthy and the stop freed the stream's slot on the node.
    assert_eq!(client.request(0, ECHO, b"x").expect("echo").body, b"x");
}

#[test]
fn a_request_times_out_and_the_client_goes_on() {
    let node = start(NodeKind::Dht, |_| {});
    let client = Client::connect(
        &[node.addr()],
        None,
        ClientOptions {
            request_timeout_ms: 100,
            ..options()
        },
    )
    .expect("connects");
    let started = Instant::now();
    let error = client.request(0, NEVER, &[]).expect_err("no reply");
    assert!(
        matches!(error, ClientError::Timeout { ms: 100, .. }),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        error.to_string(),
        format!("node {}: request timed out after 100 ms", node.addr())
    );
    assert_eq!(
        client.request(0, ECHO, b"after").expect("echo").body,
        b"after"
    );
}

/// A node that completes the handshake of its first connection and then answers nothing, and
/// never completes another handshake: a process stopped (or a host gone) without closing its
/// connections.
fn frozen_node() -> SocketAddr {
    common::fake_node(|index, mut stream| {
        if index == 0 {
            common::accept_handshake(&mut stream);
            while common::read_frame(&mut stream).is_some() {}
        } else {
            std::thread::sleep(Duration::from_secs(2));
        }
    })
}

fn is_down(client: &Client) -> bool {
    matches!(
        client.node_status(0).map(|status| status.state),
        Some(NodeState::Down { .. })
    )
}

#[test]
fn a_node_that_stops_answering_is_counted_down_after_one_timeout_and_its_probe() {
    let quick = ClientOptions {
        request_timeout_ms: 200,
        connect_timeout_ms: 300,
        ..options()
    };
    let client = Client::connect(&[frozen_node()], Some(NodeKind::Dht), quick).expect("connects");
    let error = client.request(0, ECHO, b"x").expect_err("no answer");
    assert!(
        matches!(error, ClientError::Timeout { ms: 200, .. }),
        "{error:?}"
    );
    // The probe (GetVersion) gets no answer within connect_timeout_ms either.
    eventually("the client counts the node down", || is_down(&client));
    // From then on requests fail at once, without a wait, while reconnects (which the node
    // does not complete) go on in the background.
    let error = client.request(0, ECHO, b"y").expect_err("down");
    assert!(matches!(error, ClientError::NodeDown { .. }), "{error:?}");
    assert!(error.is_node_down());
}

#[test]
fn a_slow_request_to_a_node_that_still_answers_leaves_it_up() {
    let node = start(NodeKind::Dht, |_| {});
    let quick = ClientOptions {
        request_timeout_ms: 100,
        ..options()
    };
    let client = Client::connect(&[node.addr()], None, quick).expect("connects");
    // A stream on the connection: it would fail if the connection were closed.
    let mut count = client
        .stream(0, COUNT, &1000u32.to_le_bytes())
        .expect("stream");
    for expected in 0..3 {
        let event = count.next().expect("an event").expect("an item");
        assert_eq!(item_index(&event), expected);
    }
    for _ in 0..3 {
        let error = client.request(0, NEVER, &[]).expect_err("no reply");
        assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
    }
    // The probes that followed were answered: the node is up, on the same connection.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!is_down(&client));
    assert_eq!(client.request(0, ECHO, b"z").expect("echo").body, b"z");
    let event = count.next().expect("an event").expect("the stream goes on");
    assert_eq!(item_index(&event), 3);
}

#[test]
fn wrong_node_kind_is_refused() {
    let node = start(NodeKind::Queue, |_| {});
    let error = Client::connect(&[node.addr()], Some(NodeKind::Dht), options()).expect_err("queue");
    match &error {
        ClientError::WrongKind {
            actual, expected, ..
        } => {
            assert_eq!((*actual, *expected), (NodeKind::Queue, NodeKind::Dht));
        }
        other => panic!("expected WrongKind, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        format!("node {}: is a queue node, expected dht", node.addr())
    );
}

#[test]
fn authentication_accepts_the_right_key_only() {
    let node = start(NodeKind::Dht, require_alice);
    let client = Client::connect(&[node.addr()], None, alice(KEY_A)).expect("right key");
    assert_eq!(client.request(0, ECHO, b"in").expect("echo").body, b"in");

    let error = Client::connect(&[node.addr()], None, alice(KEY_B)).expect_err("wrong key");
    assert!(matches!(error, ClientError::AuthFailed { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("node {}: authentication failed", node.addr())
    );

    let error = Client::connect(&[node.addr()], None, options()).expect_err("no key");
    assert!(
        matches!(error, ClientError::AuthRequired { .. }),
        "{error:?}"
    );
    assert!(error
        .to_string()
        .ends_with("requires authentication but no credentials were given"));
}

#[test]
fn connection_limit_is_reported() {
    let node = start(NodeKind::Dht, |options| options.max_connections = 1);
    let _first = connect(node.addr(), None);
    let error = Client::connect(&[node.addr()], None, options()).expect_err("over the limit");
    assert!(
        matches!(error, ClientError::ConnectionLimit { .. }),
        "{error:?}"
    );
}

#[test]
fn connect_fails_with_the_first_nodes_error() {
    let node = start(NodeKind::Dht, |_| {});
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let error = Client::connect(&[node.addr(), dead], None, options()).expect_err("dead node");
    assert_eq!(
        error.to_string(),
        format!("node {dead}: connection refused")
    );
}

#[test]
fn a_stopped_node_fails_requests_then_the_client_reconnects_when_it_is_back() {
    let node = start(NodeKind::Dht, |_| {});
    let addr = node.addr();
    let client = connect(addr, Some(NodeKind::Dht));
    let mut stream = client.stream(0, NEVER, &[]).expect("stream");
    // The node handles frames in order: once this echo is back, the stream runs on the node.
    client.request(0, ECHO, b"sync").expect("echo");
    node.server.stop().expect("graceful stop");

    // A graceful stop ends running streams with ShuttingDown, then closes the connection.
    match stream.next() {
        Some(Ok(StreamEvent::End(reply))) => assert_eq!(reply.status, Status::ShuttingDown),
        Some(Err(ClientError::Disconnected { .. })) => {}
        other => panic!("expected the stream to end, got {other:?}"),
    }
    // With the node gone: the reconnect right after the close is refused, and from then on
    // the node is known to be down (or, if the close is seen only now, disconnected).
    let error = client.request(0, ECHO, b"x").expect_err("node down");
    assert!(
        matches!(
            error,
            ClientError::NodeDown { .. } | ClientError::Disconnected { .. }
        ),
        "{error:?}"
    );
    eventually("the client to know the node is down", || {
        matches!(
            client.node_status(0).map(|status| status.state),
            Some(client::NodeState::Down { .. })
        )
    });
    let started = Instant::now();
    let error = client.request(0, ECHO, b"x").expect_err("node down");
    assert!(
        matches!(&error, ClientError::NodeDown { node, reason, .. } if *node == addr && reason == "connection refused"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("node {addr}: down: connection refused")
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "fails fast, not a connect timeout"
    );

    let _back = start_at(addr, NodeKind::Dht, |_| {});
    let mut last_error = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match client.request(0, ECHO, b"again") {
            Ok(reply) => {
                assert_eq!(reply.body, b"again");
                return;
            }
            Err(error) => last_error = Some(error),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no reconnect; last error {last_error:?}");
}

#[test]
fn dropping_the_client_closes_its_connection() {
    let node = start(NodeKind::Dht, |_| {});
    let observer = connect(node.addr(), None);
    let client = connect(node.addr(), None);
    assert_eq!(observer.get_num_connections(0).expect("count"), 2);
    let pending = client.submit(0, NEVER, &[]).expect("submit");
    drop(client);
    assert!(matches!(pending.wait(), Err(ClientError::Closed { .. })));
    eventually("the node to see the close", || {
        observer.get_num_connections(0).expect("count") == 1
    });
}

#[test]
fn oversized_requests_and_bad_indexes_are_refused_before_sending() {
    let node = start(NodeKind::Dht, |_| {});
    let client = Client::connect(
        &[node.addr()],
        None,
        ClientOptions {
            max_request_bytes: 10,
            ..options()
        },
    )
    .expect("connects");
    let error = client.request(0, ECHO, &[0; 11]).expect_err("too big");
    assert!(
        matches!(
            error,
            ClientError::RequestTooLarge {
                len: 11,
                max: 10,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(matches!(
        client.request(1, ECHO, &[]),
        Err(ClientError::NoSuchNode { index: 1, count: 1 })
    ));
    assert_eq!(
        client.request(0, ECHO, b"fine").expect("echo").body,
        b"fine"
    );
}

// ----- against fake nodes ------------------------------------------------------------------------

#[test]
fn a_peer_with_another_magic_is_not_a_swarm_node() {
    let addr = fake_node(|_, mut stream| {
        use std::io::Write;
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let error = Client::connect(&[addr], None, options()).expect_err("http");
    assert!(
        matches!(error, ClientError::NotSwarmNode { magic, .. } if &magic == b"HTTP"),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("not a swarm node (bad magic 48 54 54 50"),
        "{error}"
    );
}

#[test]
fn another_protocol_version_is_named() {
    let addr = fake_node(|_, mut stream| send_hello(&mut stream, 2, NodeKind::Dht));
    let error = Client::connect(&[addr], None, options()).expect_err("v2");
    assert!(
        matches!(error, ClientError::UnsupportedVersion { version: 2, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("node {addr}: unsupported protocol version 2 (client speaks 1)")
    );
}

#[test]
fn a_dropped_connection_fails_in_flight_requests_and_the_next_request_reconnects() {
    // First connection: take both requests (the echo and the stream, so that both are in
    // flight on it) and hang up. Later ones: echo.
    let addr = fake_node(|index, mut stream| {
        accept_handshake(&mut stream);
        let mut taken = 0;
        while let Some((header, body)) = read_frame(&mut stream) {
            taken += 1;
            if index == 0 {
                if taken == 2 {
                    return;
                }
                continue;
            }
            send_frame(&mut stream, FrameType::Reply, 0, header.request_id, &body);
        }
    });
    let client = connect(addr, None);
    let first = client.submit(0, ECHO, b"1").expect("submit");
    let stream = client.stream(0, COUNT, &[]).expect("stream");
    assert!(matches!(
        first.wait(),
        Err(ClientError::Disconnected { .. })
    ));
    let mut stream = stream;
    assert!(matches!(
        stream.next(),
        Some(Err(ClientError::Disconnected { .. }))
    ));
    assert!(stream.next().is_none());
    assert_eq!(
        client.request(0, ECHO, b"2").expect("reconnected").body,
        b"2"
    );
}

#[test]
fn items_beyond_credit_close_the_connection_instead_of_filling_memory() {
    let addr = fake_node(|_, mut stream| {
        accept_handshake(&mut stream);
        if let Some((header, _)) = read_frame(&mut stream) {
            for _ in 0..100 {
                send_frame(&mut stream, FrameType::Item, 1, header.request_id, b"flood");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let client = Client::connect(
        &[addr],
        None,
        ClientOptions {
            stream_window: 4,
            ..options()
        },
    )
    .expect("connects");
    let mut stream = client.stream(0, COUNT, &[]).expect("stream");
    let mut items = 0;
    let error = loop {
        match stream.next() {
            Some(Ok(StreamEvent::Item { .. })) => items += 1,
            Some(Err(error)) => break error,
            other => panic!("unexpected {other:?}"),
        }
    };
    // Credit comes back as the caller consumes, so a few more than the window may pass; the
    // flood of 100 must not.
    assert!(items < 100, "{items} items delivered");
    assert!(
        error.to_string().contains("beyond the credit granted"),
        "{error}"
    );
}

#[test]
fn from_topology_connects_to_one_kind_with_the_topology_credentials() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let node = start(NodeKind::Logfiles, require_alice);
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("client.key");
    let mut key_file = std::fs::File::create(&key_path).expect("create");
    writeln!(key_file, "alice:{KEY_A}").expect("write");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = format!(
        "[logfiles]\nnodes = [\"{}\"]\n[credentials]\nkey_file = \"client.key\"\n",
        node.addr()
    );
    let topology =
        client::Topology::parse(&text, &dir.path().join("topology.toml")).expect("valid");
    let client = Client::from_topology(&topology, NodeKind::Logfiles, options()).expect("connects");
    assert_eq!(
        client.get_version(0).expect("version").kind,
        NodeKind::Logfiles
    );
    let error = Client::from_topology(&topology, NodeKind::Dht, options()).expect_err("no dht");
    assert_eq!(error.to_string(), "the topology lists no dht nodes");
}

#[test]
fn a_stream_set_merges_streams_of_several_nodes_with_flow_control_each() {
    let first = start(NodeKind::Dht, |_| {});
    let second = start(NodeKind::Dht, |_| {});
    let window = 8;
    let client = Client::connect(
        &[first.addr(), second.addr()],
        None,
        ClientOptions {
            stream_window: window,
            ..options()
        },
    )
    .expect("connects");
    let mut set = client.stream_set();
    let a = set.open(0, COUNT, &300u32.to_le_bytes()).expect("open a");
    let b = set.open(1, COUNT, &200u32.to_le_bytes()).expect("open b");
    assert_ne!(a, b);
    assert_eq!(set.node_of(b), Some(1));
    // Nobody reads: each node stops at its own window.
    eventually("both windows", || {
        first.produced() == u64::from(window) && second.produced() == u64::from(window)
    });

    let mut next = std::collections::HashMap::from([(a, 0u32), (b, 0u32)]);
    let mut ends = Vec::new();
    while let Some((tag, event)) = set.next_timeout(Duration::from_secs(5)) {
        match event.expect("event") {
            StreamEvent::End(reply) => {
                assert_eq!(reply.status, Status::Ok);
                ends.push(tag);
            }
            item => {
                let expected = next.get_mut(&tag).expect("a member's tag");
                assert_eq!(item_index(&item), *expected, "in order per stream");
                *expected += 1;
            }
        }
    }
    assert_eq!(next[&a], 300);
    assert_eq!(next[&b], 200);
    ends.sort();
    assert_eq!(ends, [a, b]);
    assert!(set.is_empty());
    assert!(
        set.next_timeout(Duration::from_secs(5)).is_none(),
        "an empty set answers at once"
    );
}

#[test]
fn a_closed_member_delivers_nothing_more_and_the_others_go_on() {
    let node = start(NodeKind::Dht, |_| {});
    let client = connect(node.addr(), None);
    let mut set = client.stream_set();
    let endless = set
        .open(0, COUNT, &1_000_000u32.to_le_bytes())
        .expect("open");
    let (tag, first) = set.next_timeout(Duration::from_secs(5)).expect("event");
    assert_eq!(tag, endless);
    assert_eq!(item_index(&first.expect("item")), 0);
    set.close(endless);
    assert!(!set.contains(endless));
    let short = set.open(0, COUNT, &3u32.to_le_bytes()).expect("open");
    let mut items = 0;
    while let Some((tag, event)) = set.next_timeout(Duration::from_secs(5)) {
        assert_eq!(tag, short, "nothing from the closed member");
        if let StreamEvent::Item { .. } = event.expect("event") {
            items += 1;
        }
    }
    assert_eq!(items, 3);
    assert_eq!(client.request(0, ECHO, b"x").expect("echo").body, b"x");
}

#[test]
fn disconnect_fails_what_is_in_flight_and_the_next_request_reconnects() {
    let node = start(NodeKind::Dht, |_| {});
    let client = connect(node.addr(), None);
    let mut stream = client.stream(0, NEVER, &[]).expect("stream");
    client.disconnect(0).expect("node 0 exists");
    let error = stream
        .next()
        .expect("an event")
        .expect_err("the stream fails");
    assert!(
        matches!(error, ClientError::Disconnected { .. }),
        "{error:?}"
    );
    assert_eq!(
        client.request(0, ECHO, b"again").expect("echo").body,
        b"again"
    );
    assert!(matches!(
        client.disconnect(5),
        Err(ClientError::NoSuchNode { .. })
    ));
}

/// A node known to be down costs a request nothing: it fails at once with NodeDown, even while
/// the background reconnect waits a whole connect timeout on a peer that never answers (a
/// request used to start that connect itself and wait for it).
#[test]
fn a_node_known_down_fails_at_once_while_the_reconnect_waits() {
    // The kernel completes connections to a listening socket that never accepts, but nothing
    // is ever said on them: every handshake runs into the connect timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let client = Client::connect(
        &[addr],
        None,
        ClientOptions {
            connect_timeout_ms: 1000,
            allow_down_nodes: true,
            ..options()
        },
    )
    .expect("starts with the node down");
    match client.node_status(0).map(|status| status.state) {
        Some(client::NodeState::Down { error, .. }) => {
            assert!(error.is_node_down(), "{error:?}");
            assert!(
                error.to_string().contains("no handshake within 1000 ms"),
                "{error}"
            );
        }
        other => panic!("expected the node down, got {other:?}"),
    }
    // Several background retries happen meanwhile (50, 100, 200, 400, 800 ms apart), each
    // waiting the full second; the requests never wait for one.
    let until = Instant::now() + Duration::from_millis(3000);
    let mut requests = 0;
    while Instant::now() < until {
        let started = Instant::now();
        let error = client.request(0, ECHO, b"x").expect_err("node down");
        let took = started.elapsed();
        assert!(
            matches!(&error, ClientError::NodeDown { node, .. } if *node == addr),
            "{error:?}"
        );
        assert!(
            took < Duration::from_millis(300),
            "waited {took:?} for a down node"
        );
        requests += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(requests > 50);
    drop(silent);
}

//! PushMulti, Produce, Consume (with ConsumeAck), Subscribe and subscribers through a real socket
//! against the real `queuenode` binary: the reference's case list (`reference/queue.md` §10.2)
//! plus what this node adds (acknowledgements, give-back on disconnect, all-or-nothing writes).

mod common;

use common::{batch_records, make_batch, Frame, Raw, TempNode};
use node_core::protocol::frame::FrameType;
use node_core::protocol::queue::{
    self, ConsumeAckRequest, ConsumeRequest, ProduceReply, ProduceRequest, PushMultiRequest,
    PushRequest, QueueSize, SubscribeRequest,
};
use node_core::protocol::{RequestCode, Status};
use std::collections::BTreeSet;
use std::time::Duration;

/// Small rings: 4 KiB; 64 KiB for channels starting with "big".
const SMALL: &str =
    "[queue]\nchannel_size_bytes = 4096\n[queue.channel_size_by_prefix]\nbig = 65536\n";

fn start(config: &str) -> TempNode {
    TempNode::start(common::BIN, config, &[])
}

/// SIGTERM, and a clean exit, then the directory goes.
fn stop(node: TempNode) {
    let TempNode { node, dir } = node;
    node.stop();
    drop(dir);
}

/// The dmq test suite's records: `000000000` … (9 bytes each).
fn record(n: usize) -> Vec<u8> {
    format!("{n:09}").into_bytes()
}

fn push(raw: &mut Raw, channel: &str, value: &[u8]) -> Status {
    let mut body = Vec::new();
    PushRequest { channel, value }.encode(&mut body);
    raw.call(queue::PUSH, &body).0
}

fn push_multi(raw: &mut Raw, channels: &[&str], value: &[u8]) -> (Status, String) {
    let mut body = Vec::new();
    PushMultiRequest {
        channels: channels.to_vec(),
        value,
    }
    .encode(&mut body);
    let (status, body) = raw.call(queue::PUSH_MULTI, &body);
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn channel_body(channel: &str) -> Vec<u8> {
    let mut body = Vec::new();
    queue::encode_channel(&mut body, channel);
    body
}

/// Pop: Ok(Some(value)), Ok(None) when empty, Err(status, message) when refused.
fn pop(raw: &mut Raw, channel: &str) -> Result<Option<Vec<u8>>, (Status, String)> {
    match raw.call(queue::POP, &channel_body(channel)) {
        (Status::Ok, value) => Ok(Some(value)),
        (Status::NotFound, _) => Ok(None),
        (status, message) => Err((status, String::from_utf8_lossy(&message).into_owned())),
    }
}

fn pop_all(raw: &mut Raw, channel: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(value) = pop(raw, channel).expect("pop") {
        out.push(value);
    }
    out
}

fn size(raw: &mut Raw, channel: &str) -> QueueSize {
    let (status, body) = raw.call(queue::GET_CHANNEL_SIZE, &channel_body(channel));
    assert_eq!(status, Status::Ok);
    QueueSize::decode(&body).expect("size")
}

fn subscribe(raw: &mut Raw, channel: &str, subscriber: &str) -> Status {
    let mut body = Vec::new();
    SubscribeRequest {
        channel,
        subscriber,
    }
    .encode(&mut body);
    raw.call(queue::SUBSCRIBE, &body).0
}

/// Starts a Consume; returns its request id once the node has started it (a request sent after
/// it on the same connection was answered, so its subscription is in place).
fn consume(raw: &mut Raw, channel: &str, subscriber: &str, max_batch_records: u32) -> u64 {
    let mut body = Vec::new();
    ConsumeRequest {
        channel,
        subscriber,
        max_batch_records,
    }
    .encode(&mut body);
    let id = raw.send(queue::CONSUME, &body);
    raw.credit(id, 1000);
    assert_eq!(raw.call(queue::GET_SIZE, &[]).0, Status::Ok);
    id
}

fn ack(raw: &mut Raw, consume_id: u64, records: u64) -> Status {
    let mut body = Vec::new();
    ConsumeAckRequest {
        consume_id,
        records,
    }
    .encode(&mut body);
    raw.call(queue::CONSUME_ACK, &body).0
}

/// The next batch of a Consume (panics on its end).
fn next_batch(raw: &mut Raw, id: u64) -> Vec<Vec<u8>> {
    let frame = raw.next_for(id);
    assert_eq!(frame.frame_type, FrameType::Item, "{frame:?}");
    assert_eq!(frame.code, queue::ITEM_RECORD_BATCH);
    batch_records(&frame.body)
        .into_iter()
        .map(|(_, value)| value)
        .collect()
}

/// Reads a Consume's batches until `count` records came, or until nothing comes for `quiet`,
/// acknowledging each batch (acks count from the stream's start: `done` carries the count).
fn consume_records(
    raw: &mut Raw,
    id: u64,
    done: &mut u64,
    count: usize,
    quiet: Duration,
) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < count {
        let Some(frame) = raw.next_for_timeout(id, quiet) else {
            break;
        };
        assert_eq!(frame.frame_type, FrameType::Item, "{frame:?}");
        let records = batch_records(&frame.body);
        *done += records.len() as u64;
        got.extend(records.into_iter().map(|(_, v)| v));
        assert_eq!(ack(raw, id, *done), Status::Ok);
    }
    got
}

/// Values as text, for readable assertion messages.
fn text(values: &[Vec<u8>]) -> Vec<String> {
    values
        .iter()
        .map(|value| String::from_utf8_lossy(value).into_owned())
        .collect()
}

fn expect_end(frame: Frame, status: Status) {
    assert_eq!(frame.frame_type, FrameType::Reply, "{frame:?}");
    assert_eq!(frame.status(), status);
}

#[test]
fn consume_after_and_before_writing_delivers_fifo_and_acks_free_the_records() {
    let node = start("");
    let mut raw = Raw::open(node.addr);
    // PostConsume: 10 000 records written first.
    let requests: Vec<(RequestCode, Vec<u8>)> = (0..10_000)
        .map(|n| {
            let mut body = Vec::new();
            PushRequest {
                channel: "test_channel",
                value: &record(n),
            }
            .encode(&mut body);
            (queue::PUSH, body)
        })
        .collect();
    for chunk in requests.chunks(1000) {
        for (status, _) in raw.pipeline(chunk) {
            assert_eq!(status, Status::Ok);
        }
    }
    let id = consume(&mut raw, "test_channel", "", 0);
    let got = consume_records(&mut raw, id, &mut 0, 10_000, Duration::from_secs(5));
    assert!(
        got == (0..10_000).map(record).collect::<Vec<_>>(),
        "not FIFO"
    );
    assert_eq!(
        size(&mut raw, "test_channel").records,
        0,
        "all acknowledged"
    );
    // PreConsume: the consumer waits, a push wakes it.
    assert!(raw
        .next_for_timeout(id, Duration::from_millis(100))
        .is_none());
    assert_eq!(push(&mut raw, "test_channel", b"something"), Status::Ok);
    assert_eq!(next_batch(&mut raw, id), vec![b"something".to_vec()]);
    // Unacknowledged, it still counts; an over-ack is refused, a repeated one is harmless.
    assert_eq!(size(&mut raw, "test_channel").records, 1);
    assert_eq!(ack(&mut raw, id, 10_002), Status::BadRequest);
    assert_eq!(ack(&mut raw, id, 10_001), Status::Ok);
    assert_eq!(ack(&mut raw, id, 10_001), Status::Ok);
    assert_eq!(
        ack(&mut raw, 999_999, 1),
        Status::NotFound,
        "no such consume"
    );
    assert_eq!(size(&mut raw, "test_channel").records, 0);
    raw.stop(id);
    expect_end(raw.next_for(id), Status::Ok);
    stop(node);
}

#[test]
fn records_a_consumer_did_not_acknowledge_go_back_to_the_front_when_it_disconnects() {
    let node = start("");
    let mut raw = Raw::open(node.addr);
    for n in 0..10 {
        assert_eq!(push(&mut raw, "jobs", &record(n)), Status::Ok);
    }
    let mut consumer = Raw::open(node.addr);
    let id = consume(&mut consumer, "jobs", "", 4);
    assert_eq!(
        next_batch(&mut consumer, id),
        (0..4).map(record).collect::<Vec<_>>()
    );
    assert_eq!(
        next_batch(&mut consumer, id),
        (4..8).map(record).collect::<Vec<_>>()
    );
    // Half of the first batch done; then the consumer goes away without a word.
    assert_eq!(ack(&mut consumer, id, 2), Status::Ok);
    assert_eq!(
        size(&mut raw, "jobs").records,
        8,
        "handed out, not acknowledged"
    );
    drop(consumer);
    // Pop shares the default subscriber's queue: the unacknowledged records come first, in
    // order, then the rest; the acknowledged ones never again.
    testkit::wait_until("the give-back", || size(&mut raw, "jobs").records == 8);
    assert_eq!(
        pop_all(&mut raw, "jobs"),
        (2..10).map(record).collect::<Vec<_>>()
    );

    // Stop returns them the same way.
    for n in 10..15 {
        assert_eq!(push(&mut raw, "jobs", &record(n)), Status::Ok);
    }
    let id = consume(&mut raw, "jobs", "", 3);
    assert_eq!(
        next_batch(&mut raw, id),
        (10..13).map(record).collect::<Vec<_>>()
    );
    assert_eq!(ack(&mut raw, id, 1), Status::Ok);
    raw.stop(id);
    // Items already sent may precede the end.
    loop {
        let frame = raw.next_for(id);
        if frame.frame_type == FrameType::Reply {
            expect_end(frame, Status::Ok);
            break;
        }
    }
    assert_eq!(
        pop_all(&mut raw, "jobs"),
        (11..15).map(record).collect::<Vec<_>>()
    );
    stop(node);
}

/// The reference's WriterSubscriber case (`queue.md` §10.2 item 7), with Push and PushMulti.
#[test]
fn subscribers_inherit_share_and_copy() {
    let node = start("");
    let mut raw = Raw::open(node.addr);
    for multi in [false, true] {
        let channels: &[&str] = if multi {
            &["sub_a", "sub_b"]
        } else {
            &["sub_a"]
        };
        for n in 0..1000 {
            let status = if multi {
                push_multi(&mut raw, channels, &record(n)).0
            } else {
                push(&mut raw, channels[0], &record(n))
            };
            assert_eq!(status, Status::Ok);
        }
        for &channel in channels {
            check_subscribers_of(node.addr, &mut raw, channel);
        }
    }
    stop(node);
}

/// On `channel`, holding records 0..1000: it pops in order; consumers sub1, sub1, sub2 then
/// split it as the reference does (sub1 takes the queue over, later pushes reach both names,
/// sub1's consumers share theirs); subscriptions outlive their consumers. Removes the channel.
fn check_subscribers_of(addr: std::net::SocketAddr, raw: &mut Raw, channel: &str) {
    // A plain channel pops in order.
    assert_eq!(pop(raw, channel), Ok(Some(record(0))));
    // Consumers sub1, sub1, sub2: the first subscriber takes the queue over.
    let mut conns: Vec<Raw> = (0..3).map(|_| Raw::open(addr)).collect();
    let mut done = [0u64; 3];
    let ids: Vec<u64> = ["sub1", "sub1", "sub2"]
        .iter()
        .zip(conns.iter_mut())
        .map(|(subscriber, conn)| consume(conn, channel, subscriber, 100))
        .collect();
    let (status, message) = pop(raw, channel).expect_err("pop refused");
    assert_eq!(status, Status::BadRequest);
    assert!(message.contains("sub1, sub2"), "{message}");
    let quiet = Duration::from_millis(300);
    let mut sub1 = take_sub1_backlog(&mut conns, &ids, &mut done);
    sub1.sort();
    assert!(
        sub1 == (1..1000).map(record).collect::<Vec<_>>(),
        "sub1 got the rest"
    );
    let sub2 = consume_records(&mut conns[2], ids[2], &mut done[2], 1, quiet);
    assert!(sub2.is_empty(), "sub2 got {:?}", text(&sub2));
    // Every later push reaches both names; sub1's two consumers share theirs.
    for n in 1000..1500 {
        assert_eq!(push(raw, channel, &record(n)), Status::Ok);
    }
    let sub2 = consume_records(&mut conns[2], ids[2], &mut done[2], 500, quiet);
    assert!(
        sub2 == (1000..1500).map(record).collect::<Vec<_>>(),
        "sub2 in order"
    );
    let (sub1, per_consumer) = take_sub1_shared(&mut conns, &ids, &mut done);
    assert!(
        sub1 == (1000..1500).map(record).collect::<BTreeSet<_>>(),
        "sub1 shared"
    );
    assert!(
        per_consumer.iter().all(|&n| n > 0),
        "both sub1 consumers: {per_consumer:?}"
    );
    // A subscriber storage per name, so sizes count each copy.
    assert_eq!(size(raw, channel).records, 0);
    for (conn, id) in conns.iter_mut().zip(&ids) {
        conn.stop(*id);
    }
    // Subscriptions outlive their consumers.
    assert_eq!(push(raw, channel, b"later"), Status::Ok);
    assert_eq!(size(raw, channel).records, 2, "one copy per subscriber");
    assert_eq!(subscribe(raw, channel, ""), Status::Ok);
    assert_eq!(
        pop(raw, channel),
        Ok(None),
        "a new default subscriber starts empty"
    );
    let (status, _) = raw.call(queue::REMOVE_CHANNEL, &channel_body(channel));
    assert_eq!(status, Status::Ok);
}

/// The 999 records left when sub1 took the queue over, from sub1's two consumers (the first
/// two of `conns`) in whatever order they come; each round must bring more.
fn take_sub1_backlog(conns: &mut [Raw], ids: &[u64], done: &mut [u64; 3]) -> Vec<Vec<u8>> {
    let mut sub1: Vec<Vec<u8>> = Vec::new();
    while sub1.len() < 999 {
        let before = sub1.len();
        for (i, (conn, id)) in conns.iter_mut().zip(ids).take(2).enumerate() {
            let quick = Duration::from_millis(50);
            sub1.extend(consume_records(conn, *id, &mut done[i], 100, quick));
        }
        assert!(sub1.len() > before, "sub1 stalled at {}", sub1.len());
    }
    sub1
}

/// Up to 500 records from sub1's two consumers (the first two of `conns`), none delivered
/// twice, and how many each consumer got.
fn take_sub1_shared(
    conns: &mut [Raw],
    ids: &[u64],
    done: &mut [u64; 3],
) -> (BTreeSet<Vec<u8>>, [usize; 2]) {
    let mut sub1: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut per_consumer = [0usize; 2];
    for _ in 0..50 {
        for (i, (conn, id)) in conns.iter_mut().zip(ids).take(2).enumerate() {
            let quick = Duration::from_millis(20);
            let got = consume_records(conn, *id, &mut done[i], 500, quick);
            per_consumer[i] += got.len();
            for value in got {
                assert!(sub1.insert(value), "delivered twice");
            }
        }
        if sub1.len() == 500 {
            break;
        }
    }
    (sub1, per_consumer)
}

#[test]
fn the_first_subscriber_takes_over_and_names_are_checked() {
    let node = start(SMALL);
    let mut raw = Raw::open(node.addr);
    for n in 0..3 {
        assert_eq!(push(&mut raw, "ch", &record(n)), Status::Ok);
    }
    assert_eq!(subscribe(&mut raw, "ch", "first"), Status::Ok);
    assert_eq!(
        subscribe(&mut raw, "ch", "first"),
        Status::Ok,
        "again: no change"
    );
    assert_eq!(subscribe(&mut raw, "ch", "second"), Status::Ok);
    assert!(node.path("data/first@ch.ring").exists());
    assert!(node.path("data/second@ch.ring").exists());
    assert!(!node.path("data/ch.ring").exists(), "renamed, not copied");
    assert_eq!(push(&mut raw, "ch", b"new"), Status::Ok);
    let id = consume(&mut raw, "ch", "first", 0);
    assert_eq!(
        text(&consume_records(
            &mut raw,
            id,
            &mut 0,
            4,
            Duration::from_secs(2)
        )),
        ["000000000", "000000001", "000000002", "new"]
    );
    raw.stop(id);
    let id = consume(&mut raw, "ch", "second", 0);
    assert_eq!(
        text(&consume_records(
            &mut raw,
            id,
            &mut 0,
            1,
            Duration::from_secs(2)
        )),
        ["new"]
    );
    raw.stop(id);
    assert_eq!(
        subscribe(&mut raw, "ch", "bad@name"),
        Status::BadChannelName
    );
    assert_eq!(subscribe(&mut raw, "bad@ch", "x"), Status::BadChannelName);
    let mut body = Vec::new();
    ConsumeRequest {
        channel: "ch",
        subscriber: "a.b",
        max_batch_records: 0,
    }
    .encode(&mut body);
    assert_eq!(raw.call(queue::CONSUME, &body).0, Status::BadChannelName);
    assert_eq!(raw.call(queue::CONSUME, b"\x02ch").0, Status::BadRequest);
    // Subscriptions survive a restart, empty or not.
    drop(raw);
    let dir = node.dir.path().to_path_buf();
    let TempNode { node, dir: temp } = node;
    node.stop();
    let node = testkit::Node::start_in(common::BIN, &dir, &["-c", "node.toml"]);
    let mut raw = Raw::open(node.addr);
    assert_eq!(push(&mut raw, "ch", b"after"), Status::Ok);
    assert_eq!(
        size(&mut raw, "ch").records,
        2,
        "both subscribers still there"
    );
    node.stop();
    drop(temp);
}

#[test]
fn remove_channel_ends_its_consumers_with_ok() {
    let node = start("");
    let mut raw = Raw::open(node.addr);
    let mut consumer = Raw::open(node.addr);
    let waiting = consume(&mut consumer, "test_channel", "", 0);
    let named = consume(&mut consumer, "test_channel", "other", 0);
    assert_eq!(push(&mut raw, "test_channel", b"something"), Status::Ok);
    assert_eq!(
        next_batch(&mut consumer, waiting),
        vec![b"something".to_vec()]
    );
    assert_eq!(
        next_batch(&mut consumer, named),
        vec![b"something".to_vec()]
    );
    let (status, _) = raw.call(queue::REMOVE_CHANNEL, &channel_body("test_channel"));
    assert_eq!(status, Status::Ok);
    expect_end(consumer.next_for(waiting), Status::Ok);
    expect_end(consumer.next_for(named), Status::Ok);
    assert_eq!(ack(&mut consumer, waiting, 1), Status::NotFound, "ended");
    // The channel comes back empty, and a new consumer works on it.
    let again = consume(&mut consumer, "test_channel", "", 0);
    assert_eq!(push(&mut raw, "test_channel", b"fresh"), Status::Ok);
    assert_eq!(next_batch(&mut consumer, again), vec![b"fresh".to_vec()]);
    stop(node);
}

#[test]
fn push_multi_is_all_or_nothing() {
    let node = start(SMALL);
    let mut raw = Raw::open(node.addr);
    assert_eq!(push_multi(&mut raw, &["a", "b"], b"x").0, Status::Ok);
    assert_eq!(pop(&mut raw, "a"), Ok(Some(b"x".to_vec())));
    assert_eq!(pop(&mut raw, "b"), Ok(Some(b"x".to_vec())));
    // A channel named twice gets the value once.
    assert_eq!(push_multi(&mut raw, &["a", "a"], b"y").0, Status::Ok);
    assert_eq!(pop_all(&mut raw, "a"), vec![b"y".to_vec()]);
    // Fill "small"; a PushMulti to "big_x" and "small" then stores nothing anywhere.
    while push(&mut raw, "small", &[1u8; 200]) == Status::Ok {}
    let (status, message) = push_multi(&mut raw, &["big_x", "small"], &[2u8; 200]);
    assert_eq!(status, Status::ChannelFull, "{message}");
    assert_eq!(size(&mut raw, "big_x").records, 0);
    // Limits: a bad name anywhere, a value too big for any ring, too many or no channels.
    assert_eq!(
        push_multi(&mut raw, &["big_x", "b@d"], b"v").0,
        Status::BadChannelName
    );
    assert_eq!(
        push_multi(&mut raw, &["big_x", "a"], &[3u8; 2000]).0,
        Status::ValueTooBig
    );
    assert_eq!(
        push_multi(&mut raw, &["big_x", "a"], b"").0,
        Status::EmptyValue
    );
    assert_eq!(size(&mut raw, "big_x").records, 0);
    let names: Vec<String> = (0..65).map(|n| format!("c{n}")).collect();
    let many: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(push_multi(&mut raw, &many, b"v").0, Status::BadRequest);
    assert_eq!(
        push_multi(&mut raw, &many[..64], b"v").0,
        Status::Ok,
        "64 is the limit"
    );
    assert_eq!(
        raw.call(queue::PUSH_MULTI, &[0, b'v']).0,
        Status::BadRequest
    );
    stop(node);
}

#[test]
fn the_memory_limit_refuses_a_push_multi_that_needs_too_many_new_rings() {
    let node = start("[queue]\nchannel_size_bytes = 4096\nmemory_limit_bytes = 10000\n");
    let mut raw = Raw::open(node.addr);
    assert_eq!(push(&mut raw, "one", b"x"), Status::Ok);
    assert_eq!(
        push_multi(&mut raw, &["one", "two", "three"], b"y").0,
        Status::OutOfMemory,
        "two new rings would exceed the limit together"
    );
    assert_eq!(pop_all(&mut raw, "one"), vec![b"x".to_vec()]);
    assert_eq!(push_multi(&mut raw, &["one", "two"], b"z").0, Status::Ok);
    assert_eq!(
        subscribe(&mut raw, "two", "s"),
        Status::Ok,
        "renames, no new ring"
    );
    assert_eq!(subscribe(&mut raw, "two", "t"), Status::OutOfMemory);
    stop(node);
}

#[test]
fn produce_stores_a_batch_up_to_the_first_value_that_does_not_fit() {
    let node = start(SMALL);
    let mut raw = Raw::open(node.addr);
    let produce = |raw: &mut Raw, channels: &[&str], values: &[Vec<u8>]| {
        let batch = make_batch(values);
        let mut body = Vec::new();
        ProduceRequest {
            channels: channels.to_vec(),
            batch: &batch,
        }
        .encode(&mut body);
        raw.call(queue::PRODUCE, &body)
    };
    let values: Vec<Vec<u8>> = (0..100).map(record).collect();
    let (status, body) = produce(&mut raw, &["big_p", "big_q"], &values);
    assert_eq!(status, Status::Ok);
    assert_eq!(ProduceReply::decode(&body).expect("reply").stored, 100);
    assert_eq!(pop_all(&mut raw, "big_p"), values);
    assert_eq!(pop_all(&mut raw, "big_q"), values);
    // A 4 KiB ring takes 128 records of 9 bytes (32 bytes each with header and alignment).
    let values: Vec<Vec<u8>> = (0..200).map(record).collect();
    let (status, body) = produce(&mut raw, &["p"], &values);
    assert_eq!(status, Status::Ok);
    assert_eq!(ProduceReply::decode(&body).expect("reply").stored, 128);
    assert_eq!(pop_all(&mut raw, "p"), values[..128].to_vec());
    // One bad value refuses the whole batch before anything is stored.
    let mut bad = values[..5].to_vec();
    bad.push(Vec::new());
    assert_eq!(produce(&mut raw, &["p"], &bad).0, Status::EmptyValue);
    bad.pop();
    bad.push(vec![0u8; 1100]);
    assert_eq!(produce(&mut raw, &["p"], &bad).0, Status::ValueTooBig);
    assert_eq!(size(&mut raw, "p").records, 0);
    let mut body = Vec::new();
    ProduceRequest {
        channels: vec!["p"],
        batch: &[1, 2, 3],
    }
    .encode(&mut body);
    assert_eq!(
        raw.call(queue::PRODUCE, &body).0,
        Status::BadRequest,
        "not a batch"
    );
    stop(node);
}

/// The reference's start-up loading test (`queue.md` §10.3) on its own files.
#[test]
fn reference_files_are_loaded_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dmq-loadfiles");
    let mut copied = 0;
    for entry in std::fs::read_dir(&source).expect("testdata") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name != "README.md" {
            std::fs::copy(&path, data.join(&name)).expect("copy");
            copied += 1;
        }
    }
    assert_eq!(copied, 7, "five dumps and the overflow pair");
    std::fs::write(
        dir.path().join("node.toml"),
        "[queue]\nchannel_size_bytes = 100000\n",
    )
    .expect("config");
    let node = testkit::Node::start_in(common::BIN, dir.path(), &["-c", "node.toml"]);
    let mut raw = Raw::open(node.addr);
    let quiet = Duration::from_millis(200);
    for (channel, subscriber, expected) in [
        ("ch1", "", 2),
        ("ch1", "sub1", 2),
        ("ch1", "sub2", 2),
        ("ch3", "", 1),
        ("ch3", "sub1", 1),
        ("ch5", "", 1),
    ] {
        let id = consume(&mut raw, channel, subscriber, 0);
        let got = consume_records(&mut raw, id, &mut 0, expected + 1, quiet);
        let want = format!("Hello {channel}!");
        assert_eq!(text(&got), vec![want; expected], "{subscriber}@{channel}");
        raw.stop(id);
    }
    assert_eq!(pop_all(&mut raw, "ch2"), vec![b"Hello ch2!".to_vec(); 2]);
    assert_eq!(pop_all(&mut raw, "ch4"), vec![b"Hello ch4!".to_vec()]);
    let (status, body) = raw.call(queue::GET_CHANNELS, &[]);
    assert_eq!(status, Status::Ok);
    assert_eq!(
        queue::decode_channel_names(&body).expect("names"),
        ["ch1", "ch2", "ch3", "ch4", "ch5"]
    );
    // The files moved aside: a restart does not import them again.
    assert!(!data.join("ch2.rq").exists());
    assert!(!data.join("overflow.dat").exists());
    assert!(node
        .root_log()
        .contains("imported 12 records from 7 reference queue files"));
    drop(raw);
    node.stop();
    let node = testkit::Node::start_in(common::BIN, dir.path(), &["-c", "node.toml"]);
    let mut raw = Raw::open(node.addr);
    assert_eq!(pop(&mut raw, "ch2"), Ok(None));
    node.stop();
}

#[test]
fn a_reference_file_that_conflicts_or_does_not_fit_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let rq = queuenode::engine::rq::encode(&[b"one", b"two"]);
    std::fs::write(data.join("ch.rq"), &rq).expect("write");
    std::fs::write(data.join("sub@ch.rq"), &rq).expect("write");
    let output = std::process::Command::new(common::BIN)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .expect("run queuenode");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"ch\" would have both"), "{stderr}");
    assert!(data.join("ch.rq").exists(), "nothing moved");
    std::fs::remove_file(data.join("sub@ch.rq")).expect("rm");
    std::fs::write(
        data.join("ch.rq"),
        queuenode::engine::rq::encode(&[&[7u8; 3000]]),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("node.toml"),
        "[queue]\nchannel_size_bytes = 4096\n",
    )
    .expect("config");
    let output = std::process::Command::new(common::BIN)
        .args(["--listen", "127.0.0.1:0", "-c", "node.toml"])
        .current_dir(dir.path())
        .output()
        .expect("run queuenode");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("storage ch:") && stderr.contains("exceeds"),
        "{stderr}"
    );
}

//! Feeds arbitrary bytes to the body decoders of every request (and every reply, stream item and
//! handshake message) of every node kind, as a node does with a Request frame's body.
//!
//! Input: the first byte picks the request code (dht 16..=32, logfiles 48..=55, queue 80..=90,
//! each decoded as its node decodes it); any other first byte picks one of the reply, stream-item
//! and handshake decoders (the client's side). The rest is the body.
//!
//! Invariants checked:
//! - no decoder panics;
//! - whatever decodes re-encodes, and that encoding decodes to the same value (for the bodies
//!   whose last field is "the rest", the re-encoding is byte-for-byte the input);
//! - an LZ4 batch carried by PutBatch or Produce goes through `decode_batch` as the node does.

use node_core::protocol::batch::decode_batch;
use node_core::protocol::channels::{
    decode_channel, decode_channel_names, encode_channel, encode_channel_names,
};
use node_core::protocol::handshake::{
    ClientHello, HandshakeResult, ServerHello, HANDSHAKE_RESULT_LEN, SERVER_HELLO_LEN,
};
use node_core::protocol::{dht, logfiles, queue, ControlCode, NodeKind, RequestCode, Status};

/// Decodes, re-encodes, decodes again and compares: `decode(encode(decode(body))) ==
/// decode(body)`. Evaluates to the decoded value (or returns from the fuzz target on error).
macro_rules! round_trip {
    ($body:expr, $decode:expr, $encode:expr) => {{
        let body: &[u8] = $body;
        match $decode(body) {
            Ok(decoded) => {
                let mut encoded = Vec::new();
                $encode(&decoded, &mut encoded);
                let again = $decode(&encoded[..]).unwrap_or_else(|error| {
                    panic!("re-encoding of {decoded:?} does not decode: {error}")
                });
                assert_eq!(again, decoded, "round trip changed the value");
                Some((decoded, encoded))
            }
            Err(_) => None,
        }
    }};
}

/// As `round_trip!`, for a body with exactly one encoding: the re-encoding must also be the input
/// itself, byte for byte.
macro_rules! exact_round_trip {
    ($body:expr, $decode:expr, $encode:expr) => {{
        let body: &[u8] = $body;
        if let Some((_, encoded)) = round_trip!(body, $decode, $encode) {
            assert_same_bytes(&encoded, body);
        }
    }};
}

fn assert_same_bytes(encoded: &[u8], body: &[u8]) {
    assert_eq!(encoded, body, "re-encoding differs from the accepted body");
}

/// What the node does with the batch of a PutBatch or Produce.
fn decode_carried_batch(batch: &[u8]) {
    let mut scratch = Vec::new();
    if let Ok(records) = decode_batch(batch, &mut scratch) {
        let declared = records.len();
        assert_eq!(records.count(), declared as usize);
    }
}

/// PutBatch, RedistBatch, RedistBatchVersion, PutBatchVersion: a channel and a batch (whose
/// record values the versioned two lay out with versions).
fn batch_request(code: RequestCode, body: &[u8]) {
    if let Some(((name, batch), encoded)) = round_trip!(
        body,
        dht::decode_put_batch,
        |(name, batch): &(&str, &[u8]), out: &mut Vec<u8>| {
            dht::encode_put_batch(out, name, batch)
        }
    ) {
        assert_same_bytes(&encoded, body);
        let _ = name;
        decode_carried_batch(batch);
        if code == dht::REDIST_BATCH_VERSION || code == dht::PUT_BATCH_VERSION {
            decode_versioned_records(batch);
        }
    }
}

/// The record values of a RedistBatchVersion's or PutBatchVersion's batch: each a version and a value, or a
/// tombstone's version alone.
fn decode_versioned_records(batch: &[u8]) {
    let mut scratch = Vec::new();
    if let Ok(records) = decode_batch(batch, &mut scratch) {
        for (_, value) in records {
            if let Ok(record) = dht::RefreshRecord::decode(value) {
                let mut builder = node_core::protocol::batch::BatchBuilder::new(1 << 16);
                let _ = record.push_to(&mut builder, 0);
            }
        }
    }
}

fn channel(body: &[u8]) {
    exact_round_trip!(body, decode_channel, |c: &&str, out: &mut Vec<u8>| {
        encode_channel(out, c)
    });
}

fn channel_names(body: &[u8]) {
    exact_round_trip!(
        body,
        decode_channel_names,
        |names: &Vec<String>, out: &mut Vec<u8>| {
            encode_channel_names(out, names.iter().map(String::as_str))
        }
    );
}

fn dht_request(code: RequestCode, body: &[u8]) {
    match code {
        dht::PUT => {
            exact_round_trip!(body, dht::PutRequest::decode, dht::PutRequest::encode);
        }
        dht::GET | dht::EXISTS | dht::REMOVE | dht::GET_WITH_VERSION => {
            exact_round_trip!(body, dht::KeyRequest::decode, dht::KeyRequest::encode);
        }
        dht::GET_ALL => {
            round_trip!(body, dht::GetAllRequest::decode, dht::GetAllRequest::encode);
        }
        dht::GET_CHANNELS
        | dht::GET_SIZE
        | dht::GET_RESPONSIBLE_RANGE
        | dht::GET_REDISTRIBUTION => {
            // Empty bodies; the node ignores what is there.
        }
        dht::GET_CHANNEL_SIZE | dht::REMOVE_CHANNEL | dht::LISTEN => channel(body),
        dht::PUT_BATCH | dht::REDIST_BATCH | dht::REDIST_BATCH_VERSION | dht::PUT_BATCH_VERSION => {
            batch_request(code, body)
        }
        dht::PUT_VERSION => {
            exact_round_trip!(
                body,
                dht::PutVersionRequest::decode,
                dht::PutVersionRequest::encode
            );
        }
        dht::REMOVE_VERSION => {
            exact_round_trip!(
                body,
                dht::RemoveVersionRequest::decode,
                dht::RemoveVersionRequest::encode
            );
        }
        dht::MIRROR => {
            exact_round_trip!(body, dht::MirrorRequest::decode, dht::MirrorRequest::encode);
        }
        dht::UPDATE => {
            round_trip!(body, dht::UpdateRequest::decode, dht::UpdateRequest::encode);
        }
        dht::REDISTRIBUTE => {
            if let Some((request, _)) = round_trip!(
                body,
                dht::RedistributeRequest::decode,
                dht::RedistributeRequest::encode
            ) {
                // The node checks the request against its range next.
                let _ = request.check(dht::HashRange::FULL);
                let _ = request.check(dht::HashRange::EMPTY);
                let _ = request.check(request.range);
            }
        }
        dht::REDIST_COMMIT => {
            exact_round_trip!(
                body,
                dht::decode_instance,
                |instance: &u64, out: &mut Vec<u8>| out.extend_from_slice(&instance.to_le_bytes())
            );
        }
        _ => {}
    }
}

fn logfiles_request(code: RequestCode, body: &[u8]) {
    match code {
        logfiles::PUT => {
            exact_round_trip!(
                body,
                logfiles::PutRequest::decode,
                logfiles::PutRequest::encode
            );
        }
        logfiles::PUT_BATCH => {
            if let Some(((_, batch), encoded)) = round_trip!(
                body,
                logfiles::decode_put_batch,
                |(name, batch): &(&str, &[u8]), out: &mut Vec<u8>| {
                    logfiles::encode_put_batch(out, name, batch)
                }
            ) {
                assert_same_bytes(&encoded, body);
                decode_carried_batch(batch);
            }
        }
        // Not byte for byte: a flags byte of 0 (the defaults, written out) is left out again.
        logfiles::GET_RANGE => {
            round_trip!(
                body,
                logfiles::GetRangeRequest::decode_with,
                |(request, flags): &(logfiles::GetRangeRequest, logfiles::ReadFlags),
                 out: &mut Vec<u8>| request.encode_with(*flags, out)
            );
        }
        logfiles::GET_ALL => {
            round_trip!(
                body,
                logfiles::GetAllRequest::decode_with,
                |(request, flags): &(logfiles::GetAllRequest, logfiles::ReadFlags),
                 out: &mut Vec<u8>| request.encode_with(*flags, out)
            );
        }
        logfiles::GET_CHANNEL_SIZE | logfiles::REMOVE_CHANNEL => channel(body),
        _ => {}
    }
}

fn queue_request(code: RequestCode, body: &[u8]) {
    match code {
        queue::PUSH => {
            exact_round_trip!(body, queue::PushRequest::decode, queue::PushRequest::encode);
        }
        queue::POP | queue::GET_CHANNEL_SIZE | queue::REMOVE_CHANNEL => channel(body),
        queue::PUSH_MULTI => {
            exact_round_trip!(
                body,
                queue::PushMultiRequest::decode,
                queue::PushMultiRequest::encode
            );
        }
        queue::PRODUCE => {
            if let Some((request, encoded)) = round_trip!(
                body,
                queue::ProduceRequest::decode,
                queue::ProduceRequest::encode
            ) {
                assert_same_bytes(&encoded, body);
                decode_carried_batch(request.batch);
            }
        }
        queue::CONSUME => {
            exact_round_trip!(
                body,
                queue::ConsumeRequest::decode,
                queue::ConsumeRequest::encode
            );
        }
        queue::CONSUME_ACK => {
            exact_round_trip!(
                body,
                queue::ConsumeAckRequest::decode,
                queue::ConsumeAckRequest::encode
            );
        }
        queue::SUBSCRIBE => {
            exact_round_trip!(
                body,
                queue::SubscribeRequest::decode,
                queue::SubscribeRequest::encode
            );
        }
        _ => {}
    }
}

/// The client's side: replies, stream items and handshake messages. `selector` picks one.
fn reply(selector: u8, body: &[u8]) {
    match selector % 16 {
        0 => channel_names(body),
        1 => {
            exact_round_trip!(body, dht::SizeInfo::decode, dht::SizeInfo::encode);
        }
        2 => {
            exact_round_trip!(
                body,
                dht::decode_range,
                |range: &dht::HashRange, out: &mut Vec<u8>| { dht::encode_range(out, *range) }
            );
        }
        3 => listen_item(body),
        4 => {
            exact_round_trip!(
                body,
                dht::RedistributionProgress::decode,
                dht::RedistributionProgress::encode
            );
        }
        5 => {
            exact_round_trip!(
                body,
                dht::RedistributionState::decode,
                dht::RedistributionState::encode
            );
        }
        6 => {
            round_trip!(
                body,
                dht::RedistributeDone::decode,
                dht::RedistributeDone::encode
            );
        }
        7 => {
            exact_round_trip!(
                body,
                dht::RedistBatchReply::decode,
                dht::RedistBatchReply::encode
            );
        }
        8 => {
            exact_round_trip!(body, logfiles::DiskSize::decode, logfiles::DiskSize::encode);
        }
        9 => {
            exact_round_trip!(body, queue::QueueSize::decode, queue::QueueSize::encode);
            if let Ok(size) = queue::QueueSize::decode(body) {
                assert!(size.fill_percent() <= 100);
            }
        }
        10 => {
            exact_round_trip!(
                body,
                queue::ProduceReply::decode,
                queue::ProduceReply::encode
            );
        }
        11 => server_hello(body),
        12 => handshake_result(body),
        13 => client_hello(body),
        14 => one_byte_codes(body),
        _ => {
            // A GetAll/Listen request body arriving at any node kind: every kind's decoders.
            for code in (16..=36).chain(48..=55).chain(80..=90) {
                request(RequestCode(code), body);
            }
        }
    }
}

/// A Listen item: the first body byte is the item code; what decodes re-encodes to the same
/// bytes and decodes again to the same item.
fn listen_item(body: &[u8]) {
    let Some((&item_code, item)) = body.split_first() else {
        return;
    };
    if let Ok(decoded) = dht::ListenItem::decode(item_code, item) {
        assert_eq!(decoded.code(), item_code);
        let mut encoded = Vec::new();
        decoded.encode_body(&mut encoded);
        assert_same_bytes(&encoded, item);
        assert_eq!(
            dht::ListenItem::decode(decoded.code(), &encoded),
            Ok(decoded)
        );
    }
    mirror_item(item_code, item);
}

/// A Mirror item (same layout of code and body as a Listen item): what decodes re-encodes to
/// the same bytes; a refresh batch's records decode as versioned records or tombstones.
fn mirror_item(item_code: u8, item: &[u8]) {
    let Ok(decoded) = dht::MirrorItem::decode(item_code, item) else {
        return;
    };
    assert_eq!(decoded.code(), item_code);
    let mut encoded = Vec::new();
    decoded.encode_body(&mut encoded);
    assert_same_bytes(&encoded, item);
    if let dht::MirrorItem::RefreshBatch { batch } = decoded {
        let mut scratch = Vec::new();
        if let Ok(records) = decode_batch(batch, &mut scratch) {
            for (_, value) in records {
                let _ = dht::RefreshRecord::decode(value);
            }
        }
    }
}

/// The server's hello: what decodes re-encodes to the same bytes.
fn server_hello(body: &[u8]) {
    let Some(bytes) = body.first_chunk::<SERVER_HELLO_LEN>() else {
        return;
    };
    if let Ok(hello) = ServerHello::decode(bytes) {
        assert_eq!(&hello.encode(), bytes, "ServerHello does not re-encode");
    }
}

/// The handshake's result: what decodes re-encodes and decodes to the same result.
fn handshake_result(body: &[u8]) {
    let Some(bytes) = body.first_chunk::<HANDSHAKE_RESULT_LEN>() else {
        return;
    };
    if let Ok(result) = HandshakeResult::decode(bytes) {
        assert_eq!(HandshakeResult::decode(&result.encode()), Ok(result));
    }
}

/// The client's hello: what parses re-encodes to the bytes it was parsed from.
fn client_hello(body: &[u8]) {
    if let Ok(Some((hello, used))) = ClientHello::parse(body) {
        let mut encoded = Vec::new();
        hello.encode(&mut encoded).expect("a parsed hello encodes");
        assert_same_bytes(&encoded, &body[..used]);
    }
}

/// The one-byte codes a peer sends: a status, a control code or a node kind each maps back to
/// the byte it came from.
fn one_byte_codes(body: &[u8]) {
    for &byte in body.iter().take(8) {
        if let Some(status) = Status::from_u8(byte) {
            assert_eq!(status as u8, byte);
            let _ = status.name();
            let _ = status.is_success();
        }
        if let Some(control) = ControlCode::from_u8(byte) {
            assert_eq!(control as u8, byte);
        }
        if let Some(kind) = NodeKind::from_u8(byte) {
            assert_eq!(kind as u8, byte);
        }
    }
}

fn request(code: RequestCode, body: &[u8]) {
    match code.0 {
        16..=47 => dht_request(code, body),
        48..=79 => logfiles_request(code, body),
        80..=111 => queue_request(code, body),
        _ => {}
    }
}

/// The target's entry point: one input. Panics when an invariant above does not hold.
pub fn check(data: &[u8]) {
    let Some((&code, body)) = data.split_first() else {
        return;
    };
    let code = RequestCode(code);
    let known = dht::request_name(code)
        .or_else(|| logfiles::request_name(code))
        .or_else(|| queue::request_name(code))
        .is_some();
    if known {
        request(code, body);
    } else {
        reply(code.0, body);
    }
}

//! Property tests for the wire protocol (docs/protocol.md): every encoder/decoder pair round-trips
//! whatever it is given, incremental parsers say "not yet" (never "error", never a wrong answer)
//! on every prefix, and every decoder returns `Ok`/`Err` on arbitrary bytes without panicking.

use node_core::protocol::batch::{
    append_record, decode_batch, encode_batch, BatchBuilder, BatchError, PushOutcome,
    BATCH_HEADER_LEN, MAX_BATCH_UNCOMPRESSED_BYTES, RECORD_OVERHEAD,
};
use node_core::protocol::frame::{parse_frame, write_frame, FrameError, DEFAULT_MAX_FRAME_BYTES};
use node_core::protocol::handshake::{
    check_client_name, ClientHello, HandshakeError, HandshakeOutcome, HandshakeResult,
    HelloVerdict, ServerHello, HANDSHAKE_RESULT_LEN, HELLO_MAGIC, MAX_CLIENT_NAME_LEN, NONCE_LEN,
    PROOF_LEN, SERVER_HELLO_LEN,
};
use node_core::protocol::wire::{self, Reader, WireError};
use node_core::protocol::{FrameHeader, FrameType, NodeKind, HEADER_LEN};
use proptest::collection::vec;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn frame_type() -> impl Strategy<Value = FrameType> {
    prop_oneof![
        Just(FrameType::Request),
        Just(FrameType::Reply),
        Just(FrameType::Item),
        Just(FrameType::Control),
    ]
}

fn node_kind() -> impl Strategy<Value = NodeKind> {
    prop_oneof![
        Just(NodeKind::Dht),
        Just(NodeKind::Logfiles),
        Just(NodeKind::Queue),
    ]
}

fn hello_verdict() -> impl Strategy<Value = HelloVerdict> {
    prop_oneof![
        Just(HelloVerdict::Ready),
        Just(HelloVerdict::AuthRequired),
        Just(HelloVerdict::ConnectionLimit),
        Just(HelloVerdict::ShuttingDown),
    ]
}

fn handshake_outcome() -> impl Strategy<Value = HandshakeOutcome> {
    prop_oneof![
        Just(HandshakeOutcome::Accepted),
        Just(HandshakeOutcome::UnsupportedVersion),
        Just(HandshakeOutcome::WrongKind),
        Just(HandshakeOutcome::AuthFailed),
        Just(HandshakeOutcome::BadHello),
    ]
}

/// A header limit and a body length within it; the edges (0, the limit itself, `u32::MAX`) are
/// weighted in because that is where off-by-ones live.
fn max_and_len() -> impl Strategy<Value = (u32, u32)> {
    prop_oneof![
        any::<u32>(),
        Just(0u32),
        Just(DEFAULT_MAX_FRAME_BYTES),
        Just(u32::MAX)
    ]
    .prop_flat_map(|max| (Just(max), prop_oneof![0..=max, Just(max), Just(0u32)]))
}

/// A frame body: mostly small, sometimes a few KiB.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..64),
        1 => vec(any::<u8>(), 0..4096),
    ]
}

/// A record value of up to a few KiB: random bytes (incompressible) or runs (very compressible),
/// so that LZ4 emits both literal-heavy and match-heavy blocks.
fn value(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..=max_len),
        (any::<u8>(), 0..=max_len).prop_map(|(byte, len)| vec![byte; len]),
        (vec(any::<u8>(), 1..8), 0..=max_len).prop_map(|(pattern, len)| {
            pattern
                .iter()
                .copied()
                .cycle()
                .take(len)
                .collect::<Vec<u8>>()
        }),
    ]
}

fn records(max_count: usize, max_value: usize) -> impl Strategy<Value = Vec<(u64, Vec<u8>)>> {
    vec((any::<u64>(), value(max_value)), 0..=max_count)
}

/// One field of a frame body, as written by the `wire::put_*` helpers.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    U8(u8),
    Bool(bool),
    U16(u16),
    U32(u32),
    U64(u64),
    Bytes(Vec<u8>),
    Str8(String),
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        any::<u8>().prop_map(Field::U8),
        any::<bool>().prop_map(Field::Bool),
        any::<u16>().prop_map(Field::U16),
        any::<u32>().prop_map(Field::U32),
        any::<u64>().prop_map(Field::U64),
        vec(any::<u8>(), 0..300).prop_map(Field::Bytes),
        // At most 63 chars of at most 4 bytes: always within str8's 255-byte limit.
        "\\PC{0,63}".prop_map(Field::Str8),
    ]
}

impl Field {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Field::U8(v) => wire::put_u8(out, *v),
            Field::Bool(v) => wire::put_bool(out, *v),
            Field::U16(v) => wire::put_u16(out, *v),
            Field::U32(v) => wire::put_u32(out, *v),
            Field::U64(v) => wire::put_u64(out, *v),
            Field::Bytes(v) => wire::put_bytes(out, v),
            Field::Str8(v) => wire::put_str8(out, v),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Field::U8(_) | Field::Bool(_) => 1,
            Field::U16(_) => 2,
            Field::U32(_) => 4,
            Field::U64(_) => 8,
            Field::Bytes(v) => 4 + v.len(),
            Field::Str8(v) => 1 + v.len(),
        }
    }

    /// Reads a field of the same kind as `self` and returns what was read.
    fn read(&self, reader: &mut Reader<'_>) -> Result<Field, WireError> {
        Ok(match self {
            Field::U8(_) => Field::U8(reader.u8("u8")?),
            Field::Bool(_) => Field::Bool(reader.bool("bool")?),
            Field::U16(_) => Field::U16(reader.u16("u16")?),
            Field::U32(_) => Field::U32(reader.u32("u32")?),
            Field::U64(_) => Field::U64(reader.u64("u64")?),
            Field::Bytes(_) => Field::Bytes(reader.bytes("bytes", usize::MAX)?.to_vec()),
            Field::Str8(_) => Field::Str8(reader.str8("str8")?.to_owned()),
        })
    }
}

/// A read operation for the "arbitrary bytes" property.
#[derive(Debug, Clone)]
enum ReadOp {
    U8,
    Bool,
    U16,
    U32,
    U64,
    Bytes(usize),
    Str8,
    Rest,
}

fn read_op() -> impl Strategy<Value = ReadOp> {
    prop_oneof![
        Just(ReadOp::U8),
        Just(ReadOp::Bool),
        Just(ReadOp::U16),
        Just(ReadOp::U32),
        Just(ReadOp::U64),
        prop_oneof![Just(usize::MAX), 0usize..64].prop_map(ReadOp::Bytes),
        Just(ReadOp::Str8),
        Just(ReadOp::Rest),
    ]
}

fn encode_client_hello(hello: &ClientHello) -> Vec<u8> {
    let mut buf = Vec::new();
    hello.encode(&mut buf).expect("valid hello encodes");
    buf
}

fn client_hello() -> impl Strategy<Value = ClientHello> {
    (
        any::<u16>(),
        proptest::option::of(node_kind()),
        // ASCII graphic characters except `:` (the credentials-file separator).
        "[!-9;-~]{0,100}",
        prop::array::uniform::<_, PROOF_LEN>(any::<u8>()),
    )
        .prop_map(|(version, wanted_kind, name, proof)| ClientHello {
            version,
            wanted_kind,
            name: name.into_bytes(),
            proof,
        })
}

fn build_batch(records: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut builder = BatchBuilder::new(MAX_BATCH_UNCOMPRESSED_BYTES);
    for (key, value) in records {
        assert_eq!(builder.push(*key, value), PushOutcome::Added);
    }
    let mut out = Vec::new();
    builder.finish_into(&mut out);
    out
}

fn decode_all(batch: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, BatchError> {
    let mut scratch = Vec::new();
    let records = decode_batch(batch, &mut scratch)?;
    let declared = records.len();
    let decoded: Vec<(u64, Vec<u8>)> = records.map(|(k, v)| (k, v.to_vec())).collect();
    assert_eq!(
        decoded.len(),
        declared as usize,
        "walk disagrees with count"
    );
    Ok(decoded)
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn frame_header_round_trips(
        frame_type in frame_type(),
        code in any::<u8>(),
        request_id in any::<u64>(),
        (max, body_len) in max_and_len(),
    ) {
        let header = FrameHeader::new(frame_type, code, request_id, body_len);
        let bytes = header.encode();
        prop_assert_eq!(&bytes[6..8], &[0, 0], "flags must be zero");
        prop_assert_eq!(FrameHeader::decode(&bytes, max), Ok(header));
        prop_assert_eq!(header.frame_len(), HEADER_LEN + body_len as usize);
    }

    #[test]
    fn frame_header_over_limit_is_refused_with_its_id(
        frame_type in frame_type(),
        code in any::<u8>(),
        request_id in any::<u64>(),
        (max, excess) in (0..u32::MAX).prop_flat_map(|max| (Just(max), 1..=u32::MAX - max)),
    ) {
        let body_len = max + excess;
        let header = FrameHeader::new(frame_type, code, request_id, body_len);
        prop_assert_eq!(
            FrameHeader::decode(&header.encode(), max),
            Err(FrameError::TooLarge { request_id, body_len, max_bytes: max })
        );
    }

    #[test]
    fn frame_round_trips_and_every_prefix_is_incomplete(
        frame_type in frame_type(),
        code in any::<u8>(),
        request_id in any::<u64>(),
        body in body(),
        trailer in vec(any::<u8>(), 0..32),
    ) {
        let max = DEFAULT_MAX_FRAME_BYTES;
        let mut buf = vec![0xA5; 3];
        write_frame(&mut buf, frame_type, code, request_id, &body);
        let frame = &buf[3..];
        prop_assert_eq!(frame.len(), HEADER_LEN + body.len());
        for cut in 0..frame.len() {
            prop_assert_eq!(parse_frame(&frame[..cut], max), Ok(None), "cut at {}", cut);
        }
        let expected = FrameHeader::new(frame_type, code, request_id, body.len() as u32);
        prop_assert_eq!(parse_frame(frame, max), Ok(Some(expected)));
        prop_assert_eq!(&frame[HEADER_LEN..], &body[..]);
        // Bytes of the next frame behind it change nothing.
        let mut longer = frame.to_vec();
        longer.extend_from_slice(&trailer);
        prop_assert_eq!(parse_frame(&longer, max), Ok(Some(expected)));
        // The body limit is inclusive.
        let exact = body.len() as u32;
        prop_assert_eq!(parse_frame(frame, exact), Ok(Some(expected)));
        if exact > 0 {
            prop_assert_eq!(
                parse_frame(frame, exact - 1),
                Err(FrameError::TooLarge { request_id, body_len: exact, max_bytes: exact - 1 })
            );
        }
    }

    /// A pipelined stream of frames, delivered in arbitrary chunks and parsed as a server does
    /// (append what arrived; parse, consume, repeat until "not yet"), yields every frame in order.
    #[test]
    fn pipelined_frames_survive_any_chunking(
        frames in vec((frame_type(), any::<u8>(), any::<u64>(), body()), 1..16),
        chunk_sizes in vec(1usize..200, 1..64),
    ) {
        let mut stream = Vec::new();
        for (frame_type, code, id, body) in &frames {
            write_frame(&mut stream, *frame_type, *code, *id, body);
        }
        let mut parsed = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut sent = 0;
        let mut chunks = chunk_sizes.iter().cycle();
        while sent < stream.len() {
            let n = (*chunks.next().unwrap()).min(stream.len() - sent);
            buf.extend_from_slice(&stream[sent..sent + n]);
            sent += n;
            while let Some(header) = parse_frame(&buf, DEFAULT_MAX_FRAME_BYTES).unwrap() {
                prop_assert!(header.frame_len() <= buf.len());
                parsed.push((
                    header.frame_type,
                    header.code,
                    header.request_id,
                    buf[HEADER_LEN..header.frame_len()].to_vec(),
                ));
                buf.drain(..header.frame_len());
            }
        }
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
        prop_assert_eq!(parsed, frames);
    }

    #[test]
    fn parse_frame_never_panics(buf in vec(any::<u8>(), 0..64), max in any::<u32>()) {
        match parse_frame(&buf, max) {
            Ok(Some(header)) => {
                prop_assert!(header.frame_len() <= buf.len());
                prop_assert!(header.body_len <= max);
            }
            Ok(None) => {
                // Either the header is not all there, or it is fine and the body is not.
                if let Some(bytes) = buf.first_chunk::<HEADER_LEN>() {
                    let header = FrameHeader::decode(bytes, max).unwrap();
                    prop_assert!(header.frame_len() > buf.len());
                }
            }
            Err(err) => {
                prop_assert!(buf.len() >= HEADER_LEN, "error before a whole header: {err}");
                let id = u64::from_le_bytes(buf[8..16].try_into().unwrap());
                prop_assert_eq!(err.request_id(), id);
            }
        }
    }

    /// Arbitrary headers whose type byte and flags are valid more often than chance would allow.
    #[test]
    fn parse_frame_never_panics_on_plausible_headers(
        body_len in prop_oneof![0u32..64, any::<u32>()],
        type_byte in prop_oneof![1u8..=4, any::<u8>()],
        code in any::<u8>(),
        flags in prop_oneof![Just(0u16), any::<u16>()],
        request_id in any::<u64>(),
        tail in vec(any::<u8>(), 0..80),
        max in prop_oneof![0u32..64, any::<u32>()],
    ) {
        let mut buf = Vec::new();
        buf.extend_from_slice(&body_len.to_le_bytes());
        buf.push(type_byte);
        buf.push(code);
        buf.extend_from_slice(&flags.to_le_bytes());
        buf.extend_from_slice(&request_id.to_le_bytes());
        buf.extend_from_slice(&tail);
        let valid_type = (1..=4).contains(&type_byte);
        match parse_frame(&buf, max) {
            Ok(Some(header)) => {
                prop_assert!(valid_type && flags == 0 && body_len <= max);
                prop_assert_eq!(header.body_len, body_len);
                prop_assert_eq!(header.frame_type as u8, type_byte);
                prop_assert_eq!(header.code, code);
                prop_assert_eq!(header.request_id, request_id);
                prop_assert!(header.frame_len() <= buf.len());
            }
            Ok(None) => {
                prop_assert!(valid_type && flags == 0 && body_len <= max);
                prop_assert!(tail.len() < body_len as usize);
            }
            Err(err) => {
                prop_assert!(!valid_type || flags != 0 || body_len > max);
                prop_assert_eq!(err.request_id(), request_id);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire fields
// ---------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn wire_fields_round_trip(fields in vec(field(), 0..24)) {
        let mut out = Vec::new();
        for field in &fields {
            field.put(&mut out);
        }
        prop_assert_eq!(out.len(), fields.iter().map(Field::encoded_len).sum::<usize>());
        let mut reader = Reader::new(&out);
        for field in &fields {
            prop_assert_eq!(&field.read(&mut reader).unwrap(), field);
        }
        prop_assert_eq!(reader.remaining(), 0);
        prop_assert_eq!(reader.finish(), Ok(()));
    }

    /// Cut anywhere short of the end: the fields wholly before the cut still read back, the one
    /// the cut goes through is `Truncated` (never a panic, never a wrong value).
    #[test]
    fn wire_truncation_is_an_error(fields in vec(field(), 1..16), cut_seed in any::<usize>()) {
        let mut out = Vec::new();
        for field in &fields {
            field.put(&mut out);
        }
        prop_assume!(!out.is_empty());
        let cut = cut_seed % out.len();
        let mut reader = Reader::new(&out[..cut]);
        let mut offset = 0;
        let mut failed = false;
        for field in &fields {
            let end = offset + field.encoded_len();
            let result = field.read(&mut reader);
            if end <= cut {
                prop_assert_eq!(&result.unwrap(), field);
            } else {
                prop_assert!(
                    matches!(result, Err(WireError::Truncated { .. })),
                    "field {:?} across cut {} read as {:?}", field, cut, result
                );
                failed = true;
                break;
            }
            offset = end;
        }
        prop_assert!(failed, "every field read from a truncated body");
    }

    #[test]
    fn wire_truncation_at_every_point(fields in vec(field(), 1..6)) {
        let mut out = Vec::new();
        for field in &fields {
            field.put(&mut out);
        }
        for cut in 0..out.len() {
            let mut reader = Reader::new(&out[..cut]);
            let results: Vec<_> = fields.iter().map(|f| f.read(&mut reader)).collect();
            prop_assert!(
                results.iter().any(|r| matches!(r, Err(WireError::Truncated { .. }))),
                "cut at {} of {}", cut, out.len()
            );
        }
    }

    #[test]
    fn wire_bytes_limit_is_enforced(value in vec(any::<u8>(), 0..64), max in 0usize..64) {
        let mut out = Vec::new();
        wire::put_bytes(&mut out, &value);
        let result = Reader::new(&out).bytes("v", max);
        if value.len() <= max {
            prop_assert_eq!(result, Ok(&value[..]));
        } else {
            prop_assert_eq!(result, Err(WireError::TooLong { field: "v", len: value.len(), max }));
        }
    }

    #[test]
    fn wire_reader_never_panics(buf in vec(any::<u8>(), 0..64), ops in vec(read_op(), 0..16)) {
        let mut reader = Reader::new(&buf);
        for op in &ops {
            let before = reader.remaining();
            let ok = match op {
                ReadOp::U8 => reader.u8("f").is_ok(),
                ReadOp::Bool => reader.bool("f").is_ok(),
                ReadOp::U16 => reader.u16("f").is_ok(),
                ReadOp::U32 => reader.u32("f").is_ok(),
                ReadOp::U64 => reader.u64("f").is_ok(),
                ReadOp::Bytes(max) => reader.bytes("f", *max).is_ok(),
                ReadOp::Str8 => reader.str8("f").is_ok(),
                ReadOp::Rest => {
                    reader.rest();
                    prop_assert_eq!(reader.remaining(), 0);
                    true
                }
            };
            prop_assert!(reader.remaining() <= before);
            if !ok {
                break;
            }
        }
        let remaining = reader.remaining();
        match reader.finish() {
            Ok(()) => prop_assert_eq!(remaining, 0),
            Err(err) => prop_assert_eq!(err, WireError::Trailing { count: remaining }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn server_hello_round_trips(
        version in any::<u16>(),
        kind in node_kind(),
        verdict in hello_verdict(),
        nonce in prop::array::uniform::<_, NONCE_LEN>(any::<u8>()),
    ) {
        let hello = ServerHello { version, kind, verdict, nonce };
        let bytes = hello.encode();
        prop_assert_eq!(&bytes[0..4], &HELLO_MAGIC);
        prop_assert_eq!(ServerHello::decode(&bytes), Ok(hello));
    }

    #[test]
    fn client_hello_round_trips_on_every_split(
        hello in client_hello(),
        next in vec(any::<u8>(), 0..16),
    ) {
        let mut buf = encode_client_hello(&hello);
        let len = buf.len();
        prop_assert_eq!(len, 8 + hello.name.len() + PROOF_LEN);
        for cut in 0..len {
            prop_assert_eq!(ClientHello::parse(&buf[..cut]), Ok(None), "cut at {}", cut);
        }
        buf.extend_from_slice(&next);
        prop_assert_eq!(ClientHello::parse(&buf), Ok(Some((hello, len))));
    }

    #[test]
    fn client_hello_refuses_bad_names(
        name in prop_oneof![
            vec(any::<u8>(), 1..=MAX_CLIENT_NAME_LEN)
                .prop_filter("needs a non-graphic byte", |n| !n.iter().all(u8::is_ascii_graphic)),
            vec(b'!'..=b'~', MAX_CLIENT_NAME_LEN + 1..=255),
            ("[!-9;-~]{0,99}", any::<prop::sample::Index>()).prop_map(|(name, at)| {
                let mut name = name.into_bytes();
                name.insert(at.index(name.len() + 1), b':');
                name
            }),
        ],
    ) {
        let hello = ClientHello { version: 1, wanted_kind: None, name: name.clone(), proof: [0; PROOF_LEN] };
        let mut out = Vec::new();
        prop_assert!(hello.encode(&mut out).is_err());
        prop_assert!(out.is_empty(), "a refused hello must write nothing");
        // Hand-built with the bad name: the parser refuses it too.
        let mut raw = HELLO_MAGIC.to_vec();
        raw.extend_from_slice(&[1, 0, 0, name.len() as u8]);
        raw.extend_from_slice(&name);
        raw.extend_from_slice(&[0; PROOF_LEN]);
        let parsed = ClientHello::parse(&raw);
        prop_assert!(
            matches!(parsed, Err(HandshakeError::BadName) | Err(HandshakeError::NameTooLong(_))),
            "{:?}", parsed
        );
    }

    #[test]
    fn handshake_result_round_trips(outcome in handshake_outcome(), admin in any::<bool>()) {
        let result = HandshakeResult { outcome, admin };
        let bytes = result.encode();
        prop_assert_eq!(&bytes[6..8], &[0, 0], "reserved must be zero");
        prop_assert_eq!(HandshakeResult::decode(&bytes), Ok(result));
    }

    #[test]
    fn client_hello_parse_never_panics(buf in vec(any::<u8>(), 0..200)) {
        check_client_hello_parse(&buf)?;
    }

    /// With the magic in front (so the parser gets past the first check) and a small name length.
    #[test]
    fn client_hello_parse_never_panics_on_plausible_input(
        version in any::<u16>(),
        kind in prop_oneof![0u8..=3, any::<u8>()],
        name_len in prop_oneof![0u8..=110, any::<u8>()],
        rest in vec(prop_oneof![b'!'..=b'~', any::<u8>()], 0..200),
    ) {
        let mut buf = HELLO_MAGIC.to_vec();
        buf.extend_from_slice(&version.to_le_bytes());
        buf.push(kind);
        buf.push(name_len);
        buf.extend_from_slice(&rest);
        check_client_hello_parse(&buf)?;
    }

    #[test]
    fn server_hello_decode_never_panics(
        bytes in prop::array::uniform::<_, SERVER_HELLO_LEN>(any::<u8>()),
        magic in any::<bool>(),
        kind in prop_oneof![1u8..=3, any::<u8>()],
        verdict in prop_oneof![0u8..=5, any::<u8>()],
    ) {
        let mut bytes = bytes;
        if magic {
            bytes[0..4].copy_from_slice(&HELLO_MAGIC);
            bytes[6] = kind;
            bytes[7] = verdict;
        }
        if let Ok(hello) = ServerHello::decode(&bytes) {
            // Every field is significant: decoding is the exact inverse of encoding.
            prop_assert_eq!(hello.encode(), bytes);
        }
    }

    #[test]
    fn handshake_result_decode_never_panics(
        bytes in prop::array::uniform::<_, HANDSHAKE_RESULT_LEN>(any::<u8>()),
    ) {
        if let Ok(result) = HandshakeResult::decode(&bytes) {
            prop_assert_eq!(&bytes[0..5], &result.encode()[0..5]);
        }
    }
}

fn check_client_hello_parse(buf: &[u8]) -> Result<(), TestCaseError> {
    match ClientHello::parse(buf) {
        Ok(Some((hello, used))) => {
            prop_assert!(used <= buf.len());
            prop_assert_eq!(used, 8 + hello.name.len() + PROOF_LEN);
            prop_assert!(hello.name.len() <= MAX_CLIENT_NAME_LEN);
            prop_assert!(hello
                .name
                .iter()
                .all(|b| b.is_ascii_graphic() && *b != b':'));
            prop_assert_eq!(check_client_name(&hello.name), Ok(()));
            // What was parsed re-encodes to exactly the bytes it came from.
            prop_assert_eq!(encode_client_hello(&hello), &buf[..used]);
        }
        Ok(None) => prop_assert!(buf.len() < 8 + PROOF_LEN + MAX_CLIENT_NAME_LEN),
        Err(_) => prop_assert!(buf.len() >= 8, "error before the fixed part arrived"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// LZ4 batches
// ---------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn batch_round_trips(records in records(24, 4096), prefix in vec(any::<u8>(), 0..8)) {
        let mut builder = BatchBuilder::new(MAX_BATCH_UNCOMPRESSED_BYTES);
        for (key, value) in &records {
            prop_assert_eq!(builder.push(*key, value), PushOutcome::Added);
        }
        prop_assert_eq!(builder.record_count() as usize, records.len());
        let raw_len: usize = records.iter().map(|(_, v)| RECORD_OVERHEAD + v.len()).sum();
        prop_assert_eq!(builder.raw_len(), raw_len);
        // finish_into appends: whatever is already in `out` stays put.
        let mut out = prefix.clone();
        builder.finish_into(&mut out);
        prop_assert!(builder.is_empty());
        prop_assert_eq!(builder.raw_len(), 0);
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        let batch = &out[prefix.len()..];
        prop_assert_eq!(&batch[0..4], &(raw_len as u32).to_le_bytes());
        prop_assert_eq!(&batch[4..8], &(records.len() as u32).to_le_bytes());
        prop_assert_eq!(decode_all(batch), Ok(records.clone()));
        // A reused builder produces the same batch again.
        for (key, value) in &records {
            builder.push(*key, value);
        }
        let mut again = Vec::new();
        builder.finish_into(&mut again);
        prop_assert_eq!(&again[..], batch);
        // The two-step path (append_record on one thread, encode_batch on another) is the same.
        let mut raw = Vec::new();
        for (key, value) in &records {
            append_record(&mut raw, *key, value);
        }
        let mut two_step = Vec::new();
        encode_batch(&raw, records.len() as u32, &mut two_step);
        prop_assert_eq!(&two_step[..], batch);
    }

    #[test]
    fn batch_builder_splits_at_target(records in records(64, 512), target in 0usize..2048) {
        let mut builder = BatchBuilder::new(target);
        let effective_target = target.max(RECORD_OVERHEAD);
        let mut batches: Vec<Vec<u8>> = Vec::new();
        for (key, value) in &records {
            match builder.push(*key, value) {
                PushOutcome::Added => {}
                PushOutcome::Full => {
                    prop_assert!(!builder.is_empty(), "an empty builder is never full");
                    let mut batch = Vec::new();
                    builder.finish_into(&mut batch);
                    batches.push(batch);
                    prop_assert_eq!(builder.push(*key, value), PushOutcome::Added);
                }
                PushOutcome::TooBig => {
                    return Err(TestCaseError::fail("a small record was refused as TooBig"));
                }
            }
        }
        if !builder.is_empty() {
            let mut batch = Vec::new();
            builder.finish_into(&mut batch);
            batches.push(batch);
        }
        let raw_total: usize = records.iter().map(|(_, v)| RECORD_OVERHEAD + v.len()).sum();
        if records.len() > 1 && raw_total > effective_target {
            prop_assert!(batches.len() > 1, "{} bytes in one batch of target {}", raw_total, effective_target);
        }
        let mut all = Vec::new();
        let mut next = 0;
        for batch in &batches {
            let decoded = decode_all(batch).unwrap();
            prop_assert!(!decoded.is_empty());
            let raw_len = u32::from_le_bytes(batch[0..4].try_into().unwrap()) as usize;
            // Over the target only when a single record is itself over it.
            prop_assert!(raw_len <= effective_target || decoded.len() == 1);
            // Greedy: the next record would not have fitted.
            next += decoded.len();
            if let Some((_, value)) = records.get(next) {
                prop_assert!(raw_len + RECORD_OVERHEAD + value.len() > effective_target);
            }
            all.extend(decoded);
        }
        prop_assert_eq!(all, records);
    }

    #[test]
    fn decode_batch_never_panics(buf in vec(any::<u8>(), 0..256)) {
        let mut scratch = Vec::new();
        if let Ok(records) = decode_batch(&buf, &mut scratch) {
            let declared = records.len();
            prop_assert_eq!(records.count(), declared as usize);
        }
    }

    /// A well-formed header (small length, matching count) in front of an arbitrary block.
    #[test]
    fn decode_batch_never_panics_on_plausible_headers(
        declared_len in 0u32..512,
        count in 0u32..8,
        crc in any::<u32>(),
        block in vec(any::<u8>(), 0..256),
    ) {
        let mut buf = Vec::new();
        buf.extend_from_slice(&declared_len.to_le_bytes());
        buf.extend_from_slice(&count.to_le_bytes());
        buf.extend_from_slice(&crc.to_le_bytes());
        buf.extend_from_slice(&block);
        let mut scratch = Vec::new();
        if let Ok(records) = decode_batch(&buf, &mut scratch) {
            prop_assert_eq!(records.len(), count);
            prop_assert_eq!(records.count(), count as usize);
        }
    }

    /// Damage anywhere in a batch is caught: one byte XORed with a non-zero mask, at a sample of
    /// positions across the whole batch (header bytes are covered exhaustively by
    /// `decode_batch_detects_every_header_flip`). The decoder may only succeed if what it returns
    /// is exactly what was encoded (a flip LZ4 tolerates, e.g. in a match offset that happens to
    /// copy identical bytes, still passes the CRC); it must never return different records and
    /// call that success.
    #[test]
    fn decode_batch_detects_any_flipped_byte(
        records in records(12, 200),
        flips in vec((any::<prop::sample::Index>(), 1u8..=255), 1..24),
    ) {
        let batch = build_batch(&records);
        prop_assert_eq!(decode_all(&batch), Ok(records.clone()));
        let mut damaged = batch.clone();
        let mut scratch = Vec::new();
        for (index, mask) in &flips {
            let index = index.index(batch.len());
            damaged[index] ^= mask;
            check_damaged(&damaged, &mut scratch, &records, index, *mask)?;
            damaged[index] ^= mask;
        }
    }

    #[test]
    fn decode_batch_refuses_truncation(records in records(12, 200)) {
        let batch = build_batch(&records);
        let mut scratch = Vec::new();
        for cut in 0..batch.len() {
            prop_assert!(decode_batch(&batch[..cut], &mut scratch).is_err(), "cut at {}", cut);
        }
    }
}

fn check_damaged(
    damaged: &[u8],
    scratch: &mut Vec<u8>,
    records: &[(u64, Vec<u8>)],
    index: usize,
    mask: u8,
) -> Result<(), TestCaseError> {
    if let Ok(decoded) = decode_batch(damaged, scratch) {
        let decoded: Vec<(u64, Vec<u8>)> = decoded.map(|(k, v)| (k, v.to_vec())).collect();
        prop_assert!(
            index >= BATCH_HEADER_LEN,
            "header byte {} ^ {:#04x} accepted",
            index,
            mask
        );
        prop_assert_eq!(&decoded, records, "byte {} ^ {:#04x}", index, mask);
    }
    Ok(())
}

/// Every header byte with every mask, on a few batches (empty, one record, compressible and
/// incompressible values). Byte 2 gets three masks only: each of its flips makes the decoder zero
/// a scratch buffer of up to 16 MiB, which is slow in a debug build.
#[test]
fn decode_batch_detects_every_header_flip() {
    let batches: Vec<Vec<(u64, Vec<u8>)>> = vec![
        vec![],
        vec![(7, vec![])],
        vec![(1, b"hello world hello world".to_vec()), (2, b"x".to_vec())],
        (0..40u64).map(|i| (i, vec![i as u8; 50])).collect(),
        (0..10u64)
            .map(|i| {
                (
                    i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    (0..=255u8).map(|b| b.wrapping_mul(i as u8 | 1)).collect(),
                )
            })
            .collect(),
    ];
    let mut scratch = Vec::new();
    for records in &batches {
        let batch = build_batch(records);
        let mut damaged = batch.clone();
        for index in 0..BATCH_HEADER_LEN {
            let masks: Vec<u8> = if index == 2 {
                vec![0x01, 0x80, 0xFF]
            } else {
                (1..=255).collect()
            };
            for mask in masks {
                damaged[index] ^= mask;
                assert!(
                    decode_batch(&damaged, &mut scratch).is_err(),
                    "header byte {index} ^ {mask:#04x} of {} records accepted",
                    records.len()
                );
                damaged[index] ^= mask;
            }
        }
    }
}

//! LogClient reads with every batch choice (`ReadBatches`: the default, LZ4, uncompressed)
//! against a cluster of real `logfilesnode` processes: the same records, in the same order,
//! whichever the nodes send; GetAll too; and the read stream window it picks. (Which item code a node sends for which flag is tested
//! at the node: logfilesnode/tests/read_path.rs.)

use client::logfiles::{LogClient, ReadBatches, ValueFilter, READ_STREAM_WINDOW};
use client::ClientOptions;
use std::net::SocketAddr;

fn start() -> testkit::TempNode {
    let binary = testkit::workspace_binary("logfilesnode", "logfilesnode");
    testkit::TempNode::start(&binary.to_string_lossy(), "", &[])
}

#[test]
fn every_batch_choice_reads_the_same_records() {
    let nodes: Vec<testkit::TempNode> = (0..2).map(|_| start()).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let options = ClientOptions {
        request_timeout_ms: 10_000,
        ..ClientOptions::default()
    };
    let writer = LogClient::connect(&addrs, options.clone()).expect("connect");
    assert_eq!(writer.read_batches(), ReadBatches::Auto);
    // Reads keep a node busy with a wider window than the client's general default, unless the
    // options choose one.
    assert_eq!(writer.client().options().stream_window, READ_STREAM_WINDOW);
    let chosen = ClientOptions {
        stream_window: 8,
        ..options.clone()
    };
    let narrow = LogClient::connect(&addrs, chosen).expect("connect");
    assert_eq!(narrow.client().options().stream_window, 8);
    // Several batches' worth per node, over two buckets, two records per key.
    let records: Vec<(u64, Vec<u8>)> = (0..20_000u64)
        .map(|i| {
            let key = 1_763_800_000 + i / 2;
            (
                key,
                format!("record {i} of key {key} {}", "x".repeat(40)).into_bytes(),
            )
        })
        .collect();
    let stored = writer
        .put_batch("reads", records.iter().map(|(k, v)| (*k, v.as_slice())))
        .expect("put_batch");
    assert_eq!(stored, records.len() as u64);

    let (from, to) = (1_763_802_000, 1_763_806_999);
    let mut expected: Vec<(u64, Vec<u8>)> = records
        .iter()
        .filter(|(k, _)| (from..=to).contains(k))
        .cloned()
        .collect();
    // Equal keys come node by node; compare as multisets per key by sorting.
    expected.sort();
    for batches in [
        ReadBatches::Auto,
        ReadBatches::Lz4,
        ReadBatches::Uncompressed,
    ] {
        let logs = LogClient::connect(&addrs, options.clone())
            .expect("connect")
            .with_read_batches(batches);
        let got: Vec<(u64, Vec<u8>)> = logs
            .get_range("reads", from, to, &ValueFilter::All)
            .expect("get_range")
            .collect::<Result<_, _>>()
            .expect("records");
        assert!(
            got.windows(2).all(|w| w[0].0 <= w[1].0),
            "{batches:?}: key order"
        );
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, expected, "{batches:?}");

        let all: Vec<(u64, Vec<u8>)> = logs
            .get_all(
                "reads",
                &ValueFilter::Substring(b"key 1763800001 ".to_vec()),
            )
            .expect("get_all")
            .collect::<Result<_, _>>()
            .expect("records");
        assert_eq!(all.len(), 2, "{batches:?}");
    }
}

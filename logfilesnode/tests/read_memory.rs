//! A read sorts a bucket whose records are out of key order only when the stream memory budgets
//! have room for the index (16 bytes a record, docs/protocol.md §7.3): with room, the records
//! come in key order; without, in file order, and the node logs why. Either way every record
//! comes, once.

use node_core::protocol::batch::{append_record, encode_batch};
use node_core::protocol::logfiles;
use node_core::protocol::Status;
use testkit::{logfiles_get_all, Conn, Kind};

/// Records written into one bucket (keys 0..4096), in descending key order: the index of their
/// keys takes 16 × 20 000 = 320 000 bytes.
const RECORDS: u64 = 20_000;

type Records = Vec<(u64, Vec<u8>)>;

fn write_out_of_order(conn: &mut Conn) -> Records {
    let written: Records = (0..RECORDS)
        .map(|i| (4095 - i % 4096, format!("record {i}").into_bytes()))
        .collect();
    for chunk in written.chunks(2000) {
        let mut raw = Vec::new();
        for (key, value) in chunk {
            append_record(&mut raw, *key, value);
        }
        let mut batch = Vec::new();
        encode_batch(&raw, chunk.len() as u32, &mut batch);
        let mut body = Vec::new();
        logfiles::encode_put_batch(&mut body, "log", &batch);
        let (status, reply) = conn.request(logfiles::PUT_BATCH, body);
        assert_eq!(status, Status::Ok, "{}", String::from_utf8_lossy(&reply));
    }
    written
}

/// What was written, what GetAll read, and the node's root.log.
fn read_back(config: &str) -> (Records, Records, String) {
    let node = Kind::Logfiles.start(config);
    let mut conn = Conn::open(node.addr);
    let written = write_out_of_order(&mut conn);
    let read = logfiles_get_all(&mut conn, "log");
    let log = node.root_log();
    node.node.stop();
    (written, read, log)
}

#[test]
fn an_out_of_order_bucket_is_sorted_when_the_budget_has_room() {
    let (written, read, log) = read_back("");
    let mut sorted = written;
    // Stable: records with equal keys stay in the order they were written.
    sorted.sort_by_key(|(key, _)| *key);
    assert_eq!(read, sorted, "every record, in key order");
    assert!(!log.contains("sent in file order"), "{log}");
}

#[test]
fn an_out_of_order_bucket_too_big_for_the_budget_is_sent_in_file_order() {
    let (written, read, log) = read_back("[server]\nstream_memory_bytes = 262144\n");
    assert_eq!(read, written, "every record, in the order written");
    assert!(
        log.contains("records out of key order") && log.contains("sent in file order"),
        "the node says why the order is the file's: {log}"
    );
}

//! Helpers shared by the node tests of this crate that read through the real node: a GetRange
//! run to its end over a raw connection (both batch kinds decoded), checking the bucket indexes
//! a node left (and `logfiles_check` on its directory), and copying a sample data directory.
//! Each test file uses what it needs.
#![allow(dead_code)]

use logfilesnode::storage::index::{load_index, verify_index};
use logfilesnode::storage::{index_path, list_buckets};
use node_core::protocol::batch::{decode_batch, decode_uncompressed_batch};
use node_core::protocol::logfiles::{
    self, Filter, GetRangeRequest, ReadFlags, ITEM_RECORD_BATCH, ITEM_RECORD_BATCH_UNCOMPRESSED,
};
use node_core::protocol::Status;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use testkit::Conn;

pub type Rec = (u64, Vec<u8>);

/// The records of a stream's items (LZ4 or uncompressed batches), and the item codes seen.
pub fn records_of(items: &[(u8, Vec<u8>)]) -> (Vec<Rec>, Vec<u8>) {
    let mut scratch = Vec::new();
    let mut records = Vec::new();
    let mut codes = Vec::new();
    for (code, body) in items {
        let batch = match *code {
            ITEM_RECORD_BATCH => decode_batch(body, &mut scratch),
            ITEM_RECORD_BATCH_UNCOMPRESSED => decode_uncompressed_batch(body),
            other => panic!("item code {other}"),
        };
        records.extend(batch.expect("batch").map(|(k, v)| (k, v.to_vec())));
        if !codes.contains(code) {
            codes.push(*code);
        }
    }
    (records, codes)
}

/// A GetRange of `[from, to]` with `flags`, run to its Ok end; checks that every item is of the
/// kind the flags ask for.
pub fn get_range(conn: &mut Conn, channel: &str, from: u64, to: u64, flags: ReadFlags) -> Vec<Rec> {
    let mut body = Vec::new();
    GetRangeRequest {
        channel,
        from,
        to,
        filter: Filter::NONE,
    }
    .encode_with(flags, &mut body);
    let (items, status, _) = conn.stream(logfiles::GET_RANGE, body);
    assert_eq!(status, Status::Ok);
    let (records, codes) = records_of(&items);
    let expected_code = if flags.uncompressed {
        ITEM_RECORD_BATCH_UNCOMPRESSED
    } else {
        ITEM_RECORD_BATCH
    };
    assert!(
        codes.iter().all(|c| *c == expected_code),
        "{flags:?}: item codes {codes:?}"
    );
    records
}

/// Every non-empty bucket of the channel directory `channel_dir` has an index file that matches
/// it exactly (`verify_index`: every entry, the record count, the last record, the order flag);
/// returns the indexes' inode numbers (to tell whether a later read rewrote them). An empty
/// bucket (a kill left it created, its header not yet written) holds nothing to index: readers
/// skip it.
pub fn indexes_match(channel_dir: &Path) -> Vec<u64> {
    let buckets = list_buckets(channel_dir, 0, u64::MAX).expect("list");
    assert!(!buckets.is_empty(), "{}: no buckets", channel_dir.display());
    buckets
        .iter()
        .filter(|bucket| fs::metadata(&bucket.path).is_ok_and(|m| m.len() > 0))
        .map(|bucket| {
            let path = &bucket.path;
            let index = load_index(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            verify_index(&index, &fs::read(path).expect("bucket"))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            fs::metadata(index_path(path)).expect("index").ino()
        })
        .collect()
}

/// Copies the directory tree `from` to `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Runs `logfiles_check` (crate `logfiles-check`, built if needed) on the data directory `data`
/// with `args`, asserts that it finds the directory clean, and returns its report (stdout).
pub fn check_finds_clean(data: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(testkit::workspace_binary(
        "logfiles-check",
        "logfiles_check",
    ))
    .arg(data)
    .args(args)
    .output()
    .expect("run logfiles_check");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "logfiles_check finds problems:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

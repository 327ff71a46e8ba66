//! `logfiles_check` and the bucket indexes (`<bucket>.idx`), run as a user runs it: every index
//! verified against its bucket (ok, missing, stale, damaged — by a flipped byte, or by an entry
//! that lies behind a valid checksum), only damaged ones failing the check, `--repair`
//! rebuilding every index that is not usable and the index of every bucket it cut, an index
//! without its bucket listed as not checked, and `--index-interval-bytes` checked.

use logfilesnode::storage::index::{encode_index, load_index};
use logfilesnode::storage::{bucket_path, index_path, BucketWriter};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
}

fn check(dir: &Path, extra: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_logfiles_check"))
        .arg(dir)
        .args(extra)
        .output()
        .expect("run logfiles_check");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("utf-8"),
    }
}

fn check_json(dir: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let r = check(dir, &args);
    let json: Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert_eq!(json["exit_code"], r.code);
    (r.code, json)
}

fn index_of<'a>(json: &'a Value, bucket: &Path) -> &'a Value {
    let path = bucket.display().to_string();
    let file = json["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["path"] == path.as_str())
        .unwrap_or_else(|| panic!("no {path} in {json}"));
    &file["index"]
}

/// Four buckets of one channel, 300 records each, written and closed (indexes saved).
fn four_buckets(channel_dir: &Path) -> Vec<PathBuf> {
    (0..4u64)
        .map(|b| {
            let first = 0x6b00_0000 + (b << 12);
            let path = bucket_path(channel_dir, first);
            let mut writer = BucketWriter::open(&path, 0).expect("open");
            for i in 0..300u64 {
                writer
                    .append(
                        first + i,
                        format!("value {i} {}", "z".repeat(300)).as_bytes(),
                    )
                    .expect("append");
            }
            drop(writer);
            path
        })
        .collect()
}

/// Removes the saved index of `bucket`.
fn remove_index(bucket: &Path) {
    fs::remove_file(index_path(bucket)).unwrap();
}

/// Appends a record to `bucket` and puts its old index back: the index is stale.
fn grow_behind_its_index(bucket: &Path) {
    let old = fs::read(index_path(bucket)).unwrap();
    let mut writer = BucketWriter::open(bucket, 0).unwrap();
    writer.append(0x6b00_1000 + 400, b"one more").unwrap();
    drop(writer);
    fs::write(index_path(bucket), &old).unwrap();
}

/// Flips a byte of `bucket`'s saved index (its checksum no longer matches).
fn flip_an_index_byte(bucket: &Path) {
    let mut flipped = fs::read(index_path(bucket)).unwrap();
    flipped[20] ^= 0x01;
    fs::write(index_path(bucket), &flipped).unwrap();
}

/// Saves an index of `bucket` whose second entry lies about its smallest key, behind a valid
/// checksum.
fn index_an_entry_wrongly(bucket: &Path) {
    let mut lie = load_index(bucket).unwrap();
    lie.entries[1].min_key += 1;
    fs::write(index_path(bucket), encode_index(&lie)).unwrap();
}

/// The check of `root` finds the indexes of `damaged` (a flipped byte, then a lying entry)
/// damaged, as problems (exit 1), with their reasons, while the buckets themselves are fine.
fn expect_damaged_indexes_reported(root: &Path, damaged: &[PathBuf]) {
    let (code, json) = check_json(root, &[]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["summary"]["damaged_indexes"], 2);
    assert_eq!(json["summary"]["damaged_files"], 0, "the buckets are fine");
    for bucket in damaged {
        let index = index_of(&json, bucket);
        assert_eq!(index["status"], "damaged");
        assert!(index["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
    let text = check(root, &[]);
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains("INDEX damaged: checksum mismatch"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("smallest key"), "{}", text.stdout);
    assert!(text.stdout.contains("2 damaged indexes"), "{}", text.stdout);
    assert!(text.stdout.contains("result: PROBLEMS FOUND (exit 1)"));
}

#[test]
fn indexes_are_verified_and_only_damaged_ones_are_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = tmp.path().join("ch");
    let buckets = four_buckets(&ch);
    let (code, json) = check_json(tmp.path(), &[]);
    assert_eq!(code, 0, "{json}");
    for bucket in &buckets {
        let index = index_of(&json, bucket);
        assert_eq!(index["status"], "ok");
        assert_eq!(index["in_order"], true);
        assert_eq!(index["interval_bytes"], 65536);
        assert_eq!(index["entries"], 2, "300 records of 325 bytes: 2 stretches");
    }
    let text = check(tmp.path(), &[]);
    assert_eq!(text.stdout.matches("; index ok (2 entries)").count(), 4);

    // Missing, and stale (the bucket grew since its index was saved): reported, not problems.
    remove_index(&buckets[0]);
    grow_behind_its_index(&buckets[1]);
    let (code, json) = check_json(tmp.path(), &[]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(index_of(&json, &buckets[0])["status"], "missing");
    assert_eq!(index_of(&json, &buckets[1])["status"], "stale");
    assert_eq!(json["summary"]["indexes_missing_or_stale"], 2);
    assert_eq!(json["summary"]["damaged_indexes"], 0);
    let text = check(tmp.path(), &[]);
    assert_eq!(text.code, 0);
    assert!(
        text.stdout.contains("; no index (built by the first read)"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("indexes: 2 missing or stale"),
        "{}",
        text.stdout
    );

    // Damaged: a flipped byte; and an entry that lies behind a valid checksum.
    flip_an_index_byte(&buckets[2]);
    index_an_entry_wrongly(&buckets[3]);
    expect_damaged_indexes_reported(tmp.path(), &buckets[2..]);

    // --repair rebuilds all four: the same bytes the writer saved for the untouched ones.
    let (code, json) = check_json(tmp.path(), &["--repair"]);
    assert_eq!(code, 3, "{json}");
    assert_eq!(json["summary"]["indexes_rebuilt"], 4);
    for bucket in &buckets {
        assert_eq!(index_of(&json, bucket)["rebuilt"]["entries"], 2);
    }
    let (code, json) = check_json(tmp.path(), &[]);
    assert_eq!(code, 0, "{json}");
    for bucket in &buckets {
        assert_eq!(index_of(&json, bucket)["status"], "ok");
    }
    // Nothing left to do.
    let text = check(tmp.path(), &["--repair"]);
    assert_eq!(text.code, 0);
    assert!(!text.stdout.contains("rebuilt"), "{}", text.stdout);
}

#[test]
fn repair_rebuilds_the_index_of_a_bucket_it_cuts() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = tmp.path().join("ch");
    let buckets = four_buckets(&ch);
    let mut data = fs::read(&buckets[0]).unwrap();
    data[16 + 100 * 325 + 40] ^= 0x08; // a value byte of record 100: a CRC failure
    fs::write(&buckets[0], &data).unwrap();
    let (code, json) = check_json(tmp.path(), &[]);
    assert_eq!(code, 1);
    // The index names records after the damage that a repair cuts: it no longer matches.
    assert_eq!(index_of(&json, &buckets[0])["status"], "damaged");
    let (code, json) = check_json(tmp.path(), &["--repair"]);
    assert_eq!(code, 3, "{json}");
    assert_eq!(json["summary"]["repaired_files"], 1);
    assert_eq!(json["summary"]["indexes_rebuilt"], 1);
    let (code, json) = check_json(tmp.path(), &[]);
    assert_eq!(code, 0, "{json}");
    let index = load_index(&buckets[0]).unwrap();
    assert_eq!(index.records, 100);
    assert_eq!(
        index.bucket_len_bytes,
        fs::metadata(&buckets[0]).unwrap().len()
    );
}

#[test]
fn an_index_without_its_bucket_is_listed_and_the_interval_option_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = tmp.path().join("ch");
    let buckets = four_buckets(&ch);
    fs::remove_file(&buckets[3]).unwrap();
    let (code, json) = check_json(tmp.path(), &[]);
    assert_eq!(code, 0, "{json}");
    let skipped = json["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 1, "{json}");
    assert_eq!(skipped[0]["reason"], "index_without_bucket");
    assert_eq!(
        skipped[0]["path"],
        index_path(&buckets[3]).display().to_string().as_str()
    );

    for bad in ["4095", "67108865", "x"] {
        let r = check(tmp.path(), &["--repair", "--index-interval-bytes", bad]);
        assert_eq!(r.code, 2, "{bad}");
    }
    fs::remove_file(index_path(&buckets[0])).unwrap();
    let (code, json) = check_json(tmp.path(), &["--repair", "--index-interval-bytes", "4096"]);
    assert_eq!(code, 0, "a missing index is not a problem: {json}");
    let rebuilt = load_index(&buckets[0]).unwrap();
    assert_eq!(rebuilt.interval_bytes, 4096);
    assert_eq!(
        rebuilt.entries.len(),
        24,
        "300 records of 325 bytes: 13 per 4 KiB stretch"
    );
}

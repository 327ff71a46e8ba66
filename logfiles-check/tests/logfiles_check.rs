//! The `logfiles_check` binary, run as a user runs it, on temporary copies of data directories:
//! the reference samples (`testdata/dls-buckets`, read exactly as its README says), clean
//! directories written by `BucketWriter`, flipped bytes, torn tails, keys in the wrong bucket,
//! stray entries, unreadable files, `--repair` (cut at the first bad record, cut bytes saved
//! aside, idempotent, ignored by the node's bucket listing), `--channel`, `--json`, `--quiet`
//! and the exit codes.

use logfilesnode::storage::format::FILE_HEADER_BYTES;
use logfilesnode::storage::{bucket_path, list_buckets, BucketWriter, RangeScan};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const CLEAN: i32 = 0;
const PROBLEMS: i32 = 1;
const USAGE: i32 = 2;
const REPAIRED: i32 = 3;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_logfiles_check"))
        .args(args)
        .output()
        .expect("run logfiles_check");
    Run {
        code: out.status.code().expect("exit code (not a signal)"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

fn check(dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec![dir.to_str().expect("utf-8 temp path")];
    args.extend_from_slice(extra);
    run(&args)
}

/// `--json` run: the exit code and the parsed report (whose `exit_code` must agree).
fn check_json(dir: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let r = check(dir, &args);
    let json: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("--json output does not parse: {e}\n{}", r.stdout));
    assert_eq!(json["exit_code"], r.code, "{}", r.stdout);
    (r.code, json)
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dls-buckets")
}

fn copy_tree(from: &Path, to: &Path) {
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

/// The file object of `--json` output whose path ends with `suffix`.
fn file<'a>(json: &'a Value, suffix: &str) -> &'a Value {
    json["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["path"].as_str().is_some_and(|p| p.ends_with(suffix)))
        .unwrap_or_else(|| panic!("no file {suffix} in {json}"))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Writes `records` with `BucketWriter`, each to the bucket its key belongs in.
fn write_records(channel_dir: &Path, records: &[(u64, Vec<u8>)]) {
    for (key, value) in records {
        let mut writer = BucketWriter::open(&bucket_path(channel_dir, *key), 0).expect("open");
        writer.append(*key, value).expect("append");
        writer.sync().expect("sync");
    }
}

/// Records over several buckets and two slots: `(key, value)`.
fn spread_records(n: u64) -> Vec<(u64, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let key = 0x5727_0000 + i * 0x0931 + if i % 5 == 0 { 0x0100_0000 } else { 0 };
            (
                key,
                format!("value {i} {}", "x".repeat(i as usize % 13)).into_bytes(),
            )
        })
        .collect()
}

/// The bytes of every file under `dir` but the buckets' indexes (`*.idx`), which the check's
/// `file_bytes` does not count.
fn total_file_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).expect("list") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            total += total_file_bytes(&entry.path());
        } else if !entry.file_name().to_string_lossy().ends_with(".idx") {
            total += entry.metadata().expect("meta").len();
        }
    }
    total
}

// ----- the reference samples -------------------------------------------------------------------

/// A copy of the reference samples (testdata), to check in place.
fn sample_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_tree(&samples(), tmp.path());
    tmp
}

/// The reference samples read exactly as their README says: the clean sets.
#[test]
fn clean_reference_samples_read_in_full() {
    let tmp = sample_copy();
    // legacy/, putlegacy/: 4 records each; parity-fine/: 8; all clean.
    for (set, format, records) in [
        ("legacy", "legacy", 4),
        ("putlegacy", "legacy", 4),
        ("parity-fine", "v1", 8),
    ] {
        let (code, json) = check_json(tmp.path(), &["--channel", set]);
        assert_eq!(code, CLEAN, "{set}: {json}");
        assert_eq!(json["summary"]["records"], records, "{set}");
        assert_eq!(json["summary"]["bucket_files"], 1, "{set}");
        let f = file(&json, &format!("{set}/0000000057/275"));
        assert_eq!(f["status"], "ok");
        assert_eq!(f["format"], format);
        assert_eq!(f["records"], records);
        assert!(f["first_bad"].is_null());
    }
}

/// The reference samples read exactly as their README says: parity-broken/.
#[test]
fn the_parity_broken_sample_reads_up_to_its_damage() {
    let tmp = sample_copy();
    // parity-broken/: the first 4 records, and the damage reported (parity at offset 150).
    let (code, json) = check_json(tmp.path(), &["--channel", "parity-broken"]);
    assert_eq!(code, PROBLEMS);
    let f = file(&json, "parity-broken/0000000057/275");
    assert_eq!(f["status"], "damaged");
    assert_eq!(f["format"], "v1");
    assert_eq!(f["records"], 4);
    assert_eq!(f["first_bad"]["offset"], 150);
    assert_eq!(f["first_bad"]["kind"], "parity");
    assert_eq!(f["damage"][0]["len_bytes"], 285 - 150);
    let text = check(tmp.path(), &["--channel", "parity-broken"]);
    assert_eq!(text.code, PROBLEMS);
    assert!(
        text.stdout.contains(
            "parity-broken/0000000057/275: DAMAGED, v1 format, 4 records, 66 value bytes, 285 bytes; \
             first bad offset 150: record header parity mismatch"
        ),
        "{}",
        text.stdout
    );
}

/// The reference samples read exactly as their README says: empty-bucket/.
#[test]
fn the_empty_bucket_sample_skips_empty_files_and_reports_its_damage() {
    let tmp = sample_copy();
    // empty-bucket/: 8 records in all (1 + 1 + 6), the four 0-byte files skipped by readers
    // (not problems), the stray trailing newlines and the damaged v1 header reported.
    let (code, json) = check_json(tmp.path(), &["--channel", "empty-bucket"]);
    assert_eq!(code, PROBLEMS);
    assert_eq!(json["summary"]["records"], 8);
    assert_eq!(json["summary"]["bucket_files"], 7);
    assert_eq!(json["summary"]["empty_files"], 4);
    assert_eq!(json["summary"]["damaged_files"], 3);
    for name in ["21b", "220", "25b", "6bc"] {
        let f = file(&json, &format!("0000000057/{name}"));
        assert_eq!(f["status"], "ok", "{name}");
        assert_eq!(f["records"], 0);
        assert_eq!(f["len_bytes"], 0);
    }
    for (name, format, records, offset, kind) in [
        ("21c", "legacy", 1, 495, "torn_record_header"),
        ("236", "legacy", 1, 761, "torn_record_header"),
        ("6bb", "v1", 6, 2714, "parity"),
    ] {
        let f = file(&json, &format!("0000000057/{name}"));
        assert_eq!(f["status"], "damaged", "{name}");
        assert_eq!(f["format"], format, "{name}");
        assert_eq!(f["records"], records, "{name}");
        assert_eq!(f["first_bad"]["offset"], offset, "{name}");
        assert_eq!(f["first_bad"]["kind"], kind, "{name}");
    }
    assert_eq!(file(&json, "0000000057/21c")["value_bytes"], 479);
    assert_eq!(file(&json, "0000000057/236")["value_bytes"], 745);
}

/// The reference samples read exactly as their README says: all of them at once.
#[test]
fn the_whole_samples_directory_reports_every_damaged_file() {
    let tmp = sample_copy();
    // The whole directory: 28 records, exactly those 4 files bad, README.md listed, exit 1.
    let (code, json) = check_json(tmp.path(), &[]);
    assert_eq!(code, PROBLEMS);
    assert_eq!(json["summary"]["channels"], 5);
    assert_eq!(json["summary"]["bucket_files"], 11);
    assert_eq!(json["summary"]["records"], 4 + 4 + 8 + 4 + 8);
    assert_eq!(json["summary"]["damaged_files"], 4);
    assert_eq!(json["summary"]["unreadable"], 0);
    let skipped = json["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 1, "{json}");
    assert!(skipped[0]["path"]
        .as_str()
        .expect("path")
        .ends_with("README.md"));
    assert_eq!(skipped[0]["reason"], "not_a_channel_directory");
    let text = check(tmp.path(), &[]);
    assert_eq!(text.code, PROBLEMS);
    assert!(
        text.stdout.contains("README.md: not checked"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("result: PROBLEMS FOUND (exit 1)"));
    let summary_lines: Vec<&str> = text
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("problems:"))
        .filter(|l| l.starts_with("  "))
        .collect();
    assert_eq!(summary_lines.len(), 4, "{}", text.stdout);
    assert!(summary_lines[2].contains("6bb: first bad offset 2714: record header parity mismatch"));
}

// ----- clean and damaged directories ------------------------------------------------------------

#[test]
fn clean_directory_written_by_the_node_checks_clean_with_the_right_counts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = spread_records(40);
    let b = spread_records(7);
    write_records(&tmp.path().join("alpha"), &a);
    write_records(&tmp.path().join("beta_2"), &b);
    let buckets_a = list_buckets(&tmp.path().join("alpha"), 0, u64::MAX).expect("list");
    let buckets_b = list_buckets(&tmp.path().join("beta_2"), 0, u64::MAX).expect("list");
    assert!(buckets_a.len() > 3, "spread over several buckets");

    let (code, json) = check_json(tmp.path(), &[]);
    assert_eq!(code, CLEAN, "{json}");
    let s = &json["summary"];
    assert_eq!(s["channels"], 2);
    assert_eq!(
        s["bucket_files"],
        (buckets_a.len() + buckets_b.len()) as u64
    );
    assert_eq!(s["records"], (a.len() + b.len()) as u64);
    let value_bytes: usize = a.iter().chain(&b).map(|r| r.1.len()).sum();
    assert_eq!(s["value_bytes"], value_bytes as u64);
    assert_eq!(s["file_bytes"], total_file_bytes(tmp.path()));
    assert_eq!(s["damaged_files"], 0);
    assert_eq!(s["skipped"], 0);
    assert_eq!(json["channels"], serde_json::json!(["alpha", "beta_2"]));
    for f in json["files"].as_array().expect("files") {
        assert_eq!(f["status"], "ok");
        assert_eq!(f["format"], "crc");
    }

    let text = check(tmp.path(), &[]);
    assert_eq!(text.code, CLEAN);
    assert_eq!(
        text.stdout
            .lines()
            .filter(|l| l.contains(": ok, crc format"))
            .count(),
        buckets_a.len() + buckets_b.len()
    );
    assert!(text.stdout.contains(&format!(
        "summary: 2 channels, {} bucket files (0 empty), {} records, {value_bytes} value bytes",
        buckets_a.len() + buckets_b.len(),
        a.len() + b.len()
    )));
    assert!(
        text.stdout.ends_with("result: clean (exit 0)\n"),
        "{}",
        text.stdout
    );
    // --quiet: only the summary.
    let quiet = check(tmp.path(), &["--quiet"]);
    assert_eq!(quiet.code, CLEAN);
    assert!(quiet.stdout.starts_with("summary:"), "{}", quiet.stdout);
    assert!(text.stderr.is_empty(), "{}", text.stderr);
}

/// A channel with one bucket of three records; returns the bucket path and the records' offsets.
fn three_record_bucket(channel_dir: &Path, base: u64) -> (PathBuf, Vec<u64>) {
    let path = bucket_path(channel_dir, base);
    let mut writer = BucketWriter::open(&path, 0).expect("open");
    let mut offsets = Vec::new();
    for (i, value) in [&b"first value"[..], b"second value", b"third value"]
        .into_iter()
        .enumerate()
    {
        offsets.push(writer.len_bytes());
        writer.append(base + i as u64, value).expect("append");
    }
    writer.sync().expect("sync");
    (path, offsets)
}

#[test]
fn flipped_byte_is_reported_with_file_offset_and_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (path, offsets) = three_record_bucket(&tmp.path().join("ch"), 0x5727_5000);
    let mut data = fs::read(&path).expect("read");
    data[offsets[1] as usize + 16 + 2] ^= 0x20; // a value byte of the second record
    fs::write(&path, &data).expect("write");

    let r = check(tmp.path(), &[]);
    assert_eq!(r.code, PROBLEMS, "{}", r.stdout);
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("ch/0000000057/275:"))
        .expect("a line for the file");
    assert!(line.contains("DAMAGED, crc format, 2 records"), "{line}");
    assert!(
        line.contains(&format!(
            "first bad offset {}: record CRC32 mismatch",
            offsets[1]
        )),
        "{line}"
    );
    assert!(
        line.contains("1 good record after the first bad one"),
        "{line}"
    );
    let (code, json) = check_json(tmp.path(), &[]);
    assert_eq!(code, PROBLEMS);
    let f = file(&json, "ch/0000000057/275");
    assert_eq!(f["first_bad"]["offset"], offsets[1]);
    assert_eq!(f["first_bad"]["kind"], "crc");
    assert_eq!(f["records"], 2);
    assert_eq!(f["damage_count"], 1);
    // A flipped header byte (our file header CRC) makes the header unusable.
    data[9] ^= 1;
    fs::write(&path, &data).expect("write");
    let (code, json) = check_json(tmp.path(), &[]);
    assert_eq!(code, PROBLEMS);
    let f = file(&json, "ch/0000000057/275");
    assert_eq!(f["format"], Value::Null);
    assert_eq!(f["first_bad"]["kind"], "file_header_crc");
    assert_eq!(f["first_bad"]["offset"], 0);
}

#[test]
fn torn_tail_is_reported_with_file_offset_and_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (path, offsets) = three_record_bucket(&tmp.path().join("ch"), 0x5727_5000);
    let len = fs::metadata(&path).expect("meta").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len - 3))
        .expect("tear");
    let (code, json) = check_json(tmp.path(), &[]);
    assert_eq!(code, PROBLEMS);
    let f = file(&json, "ch/0000000057/275");
    assert_eq!(f["records"], 2);
    assert_eq!(f["first_bad"]["offset"], offsets[2]);
    assert_eq!(f["first_bad"]["kind"], "torn_value");
    let r = check(tmp.path(), &[]);
    assert!(
        r.stdout.contains(&format!(
            "ch/0000000057/275: DAMAGED, crc format, 2 records, 23 value bytes, {} bytes; \
             first bad offset {}: value of 11 bytes runs past the end of the file",
            len - 3,
            offsets[2]
        )),
        "{}",
        r.stdout
    );
}

#[test]
fn key_in_the_wrong_bucket_is_reported_with_file_offset_and_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (path, offsets) = three_record_bucket(&tmp.path().join("ch"), 0x5727_5000);
    // The writer does not check keys: put a record of bucket 276 into file 275.
    let mut writer = BucketWriter::open(&path, 0).expect("open");
    let misplaced_at = writer.len_bytes();
    writer.append(0x5727_6abc, b"lost").expect("append");
    writer.append(0x5727_5fff, b"fine").expect("append");
    drop(writer);
    assert!(misplaced_at > offsets[2]);
    let r = check(tmp.path(), &[]);
    assert_eq!(r.code, PROBLEMS);
    assert!(
        r.stdout.contains(&format!(
            "ch/0000000057/275: DAMAGED, crc format, 5 records, 42 value bytes, {} bytes; \
             first bad offset {misplaced_at}: key 0x57276abc belongs in bucket 0000000057/276, not in this one",
            fs::metadata(&path).expect("meta").len()
        )),
        "{}",
        r.stdout
    );
    let (_, json) = check_json(tmp.path(), &[]);
    let f = file(&json, "ch/0000000057/275");
    assert_eq!(f["misplaced_records"], 1);
    assert_eq!(f["first_misplaced_key"], 0x5727_6abc_u64);
    assert_eq!(f["first_bad"]["kind"], "misplaced_key");
    assert_eq!(f["records_past_first_bad"], 2);
    assert_eq!(json["summary"]["files_with_misplaced_keys"], 1);
}

// ----- repair ---------------------------------------------------------------------------------

/// Damaged buckets under `root`, and how each is to be cut.
struct Damaged {
    /// The channel "ch": a bucket with a flipped key byte, a torn one, one with a misplaced key,
    /// and a clean one, in that order (their listing order).
    ch: PathBuf,
    clean: PathBuf,
    /// The bucket directory of channel "ref", holding the sample v1 file with a damaged header.
    ref_dir: PathBuf,
    /// The four damaged files (ch's flipped, torn and misplaced buckets, then ref's): path,
    /// bytes before the repair, offset to cut from.
    originals: Vec<(PathBuf, Vec<u8>, u64)>,
}

/// Writes the buckets of [`Damaged`] under `root`.
fn damaged_buckets(root: &Path) -> Damaged {
    let ch = root.join("ch");
    let (flipped, f_off) = three_record_bucket(&ch, 0x5727_1000);
    let (torn, t_off) = three_record_bucket(&ch, 0x5727_2000);
    let (misplaced, _) = three_record_bucket(&ch, 0x5727_3000);
    let (clean, _) = three_record_bucket(&ch, 0x5727_4000);
    let mut data = fs::read(&flipped).expect("read");
    data[f_off[1] as usize + 5] ^= 0x01; // a key byte of the second record
    fs::write(&flipped, &data).expect("write");
    let len = fs::metadata(&torn).expect("meta").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&torn)
        .and_then(|f| f.set_len(len - 1))
        .expect("tear");
    let mut writer = BucketWriter::open(&misplaced, 0).expect("open");
    let m_off = writer.len_bytes();
    writer.append(0x5727_9000, b"elsewhere").expect("append");
    drop(writer);
    // The sample v1 file with a damaged header after 6 records, in another channel.
    let ref_dir = root.join("ref").join("0000000057");
    fs::create_dir_all(&ref_dir).expect("mkdir");
    fs::copy(
        samples().join("empty-bucket/0000000057/6bb"),
        ref_dir.join("6bb"),
    )
    .expect("copy");

    let originals: Vec<(PathBuf, Vec<u8>, u64)> = [
        (flipped.clone(), f_off[1]),
        (torn.clone(), t_off[2]),
        (misplaced.clone(), m_off),
        (ref_dir.join("6bb"), 2714),
    ]
    .into_iter()
    .map(|(p, cut)| {
        let bytes = fs::read(&p).expect("read");
        (p, bytes, cut)
    })
    .collect();

    Damaged {
        ch,
        clean,
        ref_dir,
        originals,
    }
}

/// The repair of `path` in the report `json`: cut from `cut`, the file truncated there, and the
/// cut bytes (from `before`) saved beside it as `<bucket>.cut.<unix_s>`. Returns the bytes cut.
fn expect_cut_and_saved(root: &Path, json: &Value, path: &Path, before: &[u8], cut: u64) -> u64 {
    let name = path.strip_prefix(root).expect("under tmp");
    let f = file(json, &name.display().to_string());
    let repair = &f["repair"];
    assert_eq!(repair["cut_from_offset"], cut, "{name:?}");
    assert_eq!(repair["cut_bytes"], before.len() as u64 - cut, "{name:?}");
    // Truncated at the first bad record; the cut bytes saved aside, exactly.
    let after = fs::read(path).expect("read");
    assert_eq!(after, before[..cut as usize].to_vec(), "{name:?}");
    let saved = PathBuf::from(repair["saved_to"].as_str().expect("saved_to"));
    assert_eq!(saved.parent(), path.parent());
    let saved_name = saved
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let bucket = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let stamp = saved_name
        .strip_prefix(&format!("{bucket}.cut."))
        .expect("named <bucket>.cut.<unix_s>");
    assert!(stamp.bytes().all(|b| b.is_ascii_digit()), "{saved_name}");
    assert_eq!(
        fs::read(&saved).expect("saved"),
        before[cut as usize..].to_vec()
    );
    before.len() as u64 - cut
}

/// A second `--repair` of `root` changes nothing: the names in `dirs` and the sizes of `files`.
fn expect_second_repair_changes_nothing(root: &Path, dirs: [&Path; 2], files: &[PathBuf]) {
    let names_before = (names_in(dirs[0]), names_in(dirs[1]));
    let sizes_before: Vec<u64> = files
        .iter()
        .map(|p| fs::metadata(p).expect("m").len())
        .collect();
    let r = check(root, &["--repair"]);
    assert_eq!(r.code, CLEAN, "{}", r.stdout);
    assert!(!r.stdout.contains("REPAIRED"));
    assert_eq!((names_in(dirs[0]), names_in(dirs[1])), names_before);
    let sizes_after: Vec<u64> = files
        .iter()
        .map(|p| fs::metadata(p).expect("m").len())
        .collect();
    assert_eq!(sizes_after, sizes_before);
}

#[test]
fn repair_cuts_at_the_first_bad_record_saves_the_bytes_and_is_idempotent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Damaged {
        ch,
        clean,
        ref_dir,
        originals,
    } = damaged_buckets(tmp.path());
    let clean_before = fs::read(&clean).expect("read");

    let (code, json) = check_json(tmp.path(), &["--repair"]);
    assert_eq!(code, REPAIRED, "{json}");
    assert_eq!(json["summary"]["repaired_files"], 4);
    assert_eq!(json["summary"]["repair_failures"], 0);
    let mut cut_total = 0;
    for (path, before, cut) in &originals {
        cut_total += expect_cut_and_saved(tmp.path(), &json, path, before, *cut);
    }
    assert_eq!(json["summary"]["cut_bytes"], cut_total);
    // The good third record of the flipped file went with the cut, and is counted.
    assert_eq!(file(&json, "ch/0000000057/271")["repair"]["records_cut"], 1);
    assert_eq!(fs::read(&clean).expect("read"), clean_before);

    // The node's bucket listing and scans ignore the saved files; the check is clean now.
    let listed: Vec<PathBuf> = list_buckets(&ch, 0, u64::MAX)
        .expect("list")
        .into_iter()
        .map(|b| b.path)
        .collect();
    let damaged_in_ch = originals[..3].iter().map(|(path, _, _)| path.clone());
    let expected: Vec<PathBuf> = damaged_in_ch.chain([clean.clone()]).collect();
    assert_eq!(listed, expected);
    let mut keys = Vec::new();
    let (damage, errors) = RangeScan::new(&ch, 0, u64::MAX)
        .expect("scan")
        .for_each(|r| keys.push(r.key));
    assert!(damage.is_empty() && errors.is_empty());
    assert_eq!(keys.len(), 1 + 2 + 3 + 3);
    let r = check(tmp.path(), &[]);
    assert_eq!(r.code, CLEAN, "{}", r.stdout);
    assert_eq!(
        r.stdout
            .matches("not checked: bytes cut off by an earlier repair")
            .count(),
        4
    );
    let (code, json) = check_json(tmp.path(), &[]);
    assert_eq!(code, CLEAN);
    assert_eq!(json["summary"]["records"], 1 + 2 + 3 + 3 + 6);
    assert_eq!(json["summary"]["skipped"], 4);
    assert!(json["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .all(|s| s["reason"] == "repair_cut"));

    // A second --repair changes nothing.
    expect_second_repair_changes_nothing(tmp.path(), [&ch.join("0000000057"), &ref_dir], &listed);
}

#[test]
fn repair_reports_in_text_and_leaves_unusable_headers_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ch = tmp.path().join("ch");
    let (torn, offsets) = three_record_bucket(&ch, 0x5727_1000);
    let len = fs::metadata(&torn).expect("meta").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&torn)
        .and_then(|f| f.set_len(len - 2))
        .expect("tear");
    let (bad_header, _) = three_record_bucket(&ch, 0x5727_2000);
    let mut data = fs::read(&bad_header).expect("read");
    data[FILE_HEADER_BYTES - 1] ^= 0xff; // our header's CRC
    fs::write(&bad_header, &data).expect("write");

    let r = check(tmp.path(), &["--repair"]);
    assert_eq!(r.code, PROBLEMS, "{}", r.stdout);
    let torn_line = r
        .stdout
        .lines()
        .find(|l| l.contains("0000000057/271:"))
        .expect("line");
    assert!(
        torn_line.contains(&format!(
            "REPAIRED: cut {} bytes from offset {} (0 good records among them), saved to {}",
            len - 2 - offsets[2],
            offsets[2],
            torn.display()
        )),
        "{torn_line}"
    );
    let bad_line = r
        .stdout
        .lines()
        .find(|l| l.contains("0000000057/272:"))
        .expect("line");
    assert!(bad_line.contains("NOT REPAIRED"), "{bad_line}");
    assert!(bad_line.contains("file header CRC mismatch"), "{bad_line}");
    assert_eq!(fs::read(&bad_header).expect("read"), data, "left as it was");
    assert!(r.stdout.contains("repaired: 1 files"), "{}", r.stdout);
    assert!(r.stdout.contains("1 could not be repaired"));
    assert!(r.stdout.contains("result: PROBLEMS LEFT (exit 1)"));
    assert_eq!(fs::metadata(&torn).expect("meta").len(), offsets[2]);
}

// ----- selection, strays, errors ---------------------------------------------------------------

#[test]
fn channel_option_restricts_the_check_to_that_channel() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_records(&tmp.path().join("good"), &spread_records(10));
    let (bad, _) = three_record_bucket(&tmp.path().join("bad"), 0x5727_5000);
    let len = fs::metadata(&bad).expect("meta").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&bad)
        .and_then(|f| f.set_len(len - 1))
        .expect("tear");

    let (code, json) = check_json(tmp.path(), &["--channel", "good"]);
    assert_eq!(code, CLEAN);
    assert_eq!(json["channels"], serde_json::json!(["good"]));
    assert_eq!(json["summary"]["records"], 10);
    assert!(json["files"]
        .as_array()
        .expect("files")
        .iter()
        .all(|f| f["channel"] == "good"));
    let r = check(tmp.path(), &["-c", "good"]);
    assert_eq!(r.code, CLEAN);
    assert!(!r.stdout.contains("/bad/"), "{}", r.stdout);

    let r = check(tmp.path(), &["--channel", "bad"]);
    assert_eq!(r.code, PROBLEMS);
    assert!(!r.stdout.contains("/good/"), "{}", r.stdout);
    let r = check(tmp.path(), &[]);
    assert_eq!(r.code, PROBLEMS);
}

#[test]
fn entries_that_are_not_buckets_are_listed_but_do_not_fail_the_check() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ch = tmp.path().join("ch");
    write_records(&ch, &[(0x5727_5000, b"v".to_vec())]);
    let slot = ch.join("0000000057");
    fs::write(slot.join("274.gz"), b"compressed").expect("write");
    fs::write(slot.join("273.tmp"), b"tmp").expect("write");
    fs::write(slot.join("ABC"), b"upper case").expect("write");
    fs::create_dir(slot.join("276")).expect("mkdir");
    fs::create_dir(ch.join("not-a-slot")).expect("mkdir");
    fs::write(ch.join("0000000058"), b"a file where a slot belongs").expect("write");
    fs::write(tmp.path().join("checkpoint.dat"), b"ch 1 2\n").expect("write");
    fs::create_dir(tmp.path().join("bad name")).expect("mkdir");

    let (code, json) = check_json(tmp.path(), &[]);
    assert_eq!(code, CLEAN, "{json}");
    assert_eq!(json["summary"]["bucket_files"], 1);
    let mut found: Vec<(String, String)> = json["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| {
            let path = PathBuf::from(s["path"].as_str().expect("path"));
            let rel = path.strip_prefix(tmp.path()).expect("under tmp");
            (
                rel.display().to_string(),
                s["reason"].as_str().expect("r").to_string(),
            )
        })
        .collect();
    found.sort();
    let expected: Vec<(String, String)> = [
        ("bad name", "not_a_channel_name"),
        ("ch/0000000057/273.tmp", "not_a_bucket_name"),
        ("ch/0000000057/274.gz", "compressed"),
        ("ch/0000000057/276", "bucket_name_is_a_directory"),
        ("ch/0000000057/ABC", "not_a_bucket_name"),
        ("ch/0000000058", "slot_name_not_a_directory"),
        ("ch/not-a-slot", "not_a_slot_name"),
        ("checkpoint.dat", "not_a_channel_directory"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(found, expected);
    let r = check(tmp.path(), &[]);
    assert_eq!(r.code, CLEAN);
    assert_eq!(
        r.stdout.matches(": not checked: ").count(),
        8,
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .contains("not checked: 8 entries that are not bucket files"));
    // The node's listing agrees: one bucket.
    assert_eq!(list_buckets(&ch, 0, u64::MAX).expect("list").len(), 1);
}

#[test]
fn unreadable_bucket_is_a_problem_and_the_check_goes_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ch = tmp.path().join("ch");
    write_records(
        &ch,
        &[(0x5727_5000, b"v".to_vec()), (0x5727_7000, b"w".to_vec())],
    );
    // A socket where a bucket file belongs: the node would try to read it.
    let _socket =
        std::os::unix::net::UnixListener::bind(ch.join("0000000057/276")).expect("bind socket");
    let (code, json) = check_json(tmp.path(), &[]);
    assert_eq!(code, PROBLEMS, "{json}");
    assert_eq!(json["summary"]["unreadable"], 1);
    assert_eq!(json["summary"]["records"], 2);
    let unreadable = &json["unreadable"][0];
    assert!(unreadable["path"]
        .as_str()
        .expect("p")
        .ends_with("ch/0000000057/276"));
    assert_eq!(unreadable["error"], "not a regular file");
    let r = check(tmp.path(), &["--quiet"]);
    assert_eq!(r.code, PROBLEMS);
    assert!(
        r.stdout
            .contains("ch/0000000057/276: UNREADABLE: not a regular file"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("1 unreadable"));
    // --repair cannot fix that: still exit 1.
    assert_eq!(check(tmp.path(), &["--repair"]).code, PROBLEMS);
}

#[test]
fn a_missing_or_unusable_data_dir_is_a_usage_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("no-such-dir");
    let r = check(&missing, &[]);
    assert_eq!(r.code, USAGE);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!(
            "logfiles_check: cannot read DATA_DIR {}",
            missing.display()
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("No such file or directory"),
        "{}",
        r.stderr
    );
    assert_eq!(check(&missing, &["--json"]).code, USAGE);

    let a_file = tmp.path().join("file");
    fs::write(&a_file, b"x").expect("write");
    let r = check(&a_file, &[]);
    assert_eq!(r.code, USAGE);
    assert!(r.stderr.contains("is not a directory"), "{}", r.stderr);

    let r = check(tmp.path(), &["--channel", "nope"]);
    assert_eq!(r.code, USAGE);
    assert!(r.stderr.contains("no channel nope in"), "{}", r.stderr);
    let r = check(tmp.path(), &["--channel", "../etc"]);
    assert_eq!(r.code, USAGE);
    assert!(r.stderr.contains("not a channel name"), "{}", r.stderr);

    assert_eq!(run(&[]).code, USAGE);
    assert_eq!(run(&["a", "b"]).code, USAGE);
    // An empty data directory is clean.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    let (code, json) = check_json(&empty, &[]);
    assert_eq!(code, CLEAN);
    assert_eq!(json["summary"]["bucket_files"], 0);
}

#[test]
fn help_documents_the_exit_codes_and_where_cut_bytes_go() {
    let r = run(&["--help"]);
    assert_eq!(r.code, 0);
    for needle in [
        "DATA_DIR",
        "--channel",
        "--repair",
        "--json",
        "Exit status",
        "  0  every bucket file is clean",
        "  1  something is wrong",
        "  2  usage error",
        "  3  --repair found problems and repaired all of them",
        "<bucket>.cut.<unix seconds>",
    ] {
        assert!(
            r.stdout.contains(needle),
            "{needle:?} not in:\n{}",
            r.stdout
        );
    }
}

/// A repair truncates files, so it is refused while a node holds the data directory's lock; a
/// plain check still runs.
#[test]
fn repair_is_refused_while_a_node_holds_the_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (path, _) = three_record_bucket(&tmp.path().join("ch"), 0x5727_5000);
    let len = fs::metadata(&path).expect("meta").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len - 3))
        .expect("tear");
    let node_lock = node_core::data_lock::DataDirLock::acquire(tmp.path()).expect("lock");
    let r = check(tmp.path(), &["--repair"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("in use by another process"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fs::metadata(&path).expect("meta").len(),
        len - 3,
        "nothing cut"
    );
    assert_eq!(
        check(tmp.path(), &[]).code,
        PROBLEMS,
        "a check without repair runs"
    );
    drop(node_lock);
    assert_eq!(
        check(tmp.path(), &["--repair"]).code,
        3,
        "repaired once the node is gone"
    );
}

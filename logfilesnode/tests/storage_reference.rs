//! The reference node's own bucket files (`testdata/dls-buckets/`, see its README) read exactly
//! as that README requires, through the decoder, range scans and the check helpers; and
//! appending to them keeps them readable in their own format (the reference's TestLegacyWrite
//! and TestVersionOneWrite).

use logfilesnode::storage::{
    check_data_dir, recover_tail, BucketDecoder, BucketFormat, BucketWriter, Damage, DamageKind,
    RangeScan,
};
use std::fs;
use std::path::{Path, PathBuf};

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dls-buckets")
}

/// `(key, value)`.
type Rec = (u64, Vec<u8>);
/// `(offset, key, value)`.
type FileRec = (u64, u64, Vec<u8>);

/// Every record of a channel directory, in scan order, with all damage.
fn read_all(channel_dir: &Path) -> (Vec<Rec>, Vec<(PathBuf, Damage)>) {
    let mut records = Vec::new();
    let scan = RangeScan::new(channel_dir, 0, u64::MAX).expect("scan");
    let (damage, errors) = scan.for_each(|r| records.push((r.key, r.value.to_vec())));
    assert!(errors.is_empty(), "{errors:?}");
    (records, damage)
}

fn decode_file(path: &Path) -> (Option<BucketFormat>, Vec<FileRec>, Vec<Damage>) {
    let data = fs::read(path).expect("read sample");
    let mut records = Vec::new();
    let mut damage = Vec::new();
    let decoder = BucketDecoder::new(&data);
    let format = decoder.format();
    for item in decoder {
        match item {
            Ok(r) => records.push((r.offset, r.key, r.value.to_vec())),
            Err(d) => damage.push(d),
        }
    }
    (format, records, damage)
}

fn legacy_expected() -> Vec<FileRec> {
    vec![
        (0, 0x5727_5806, b"Hello there".to_vec()),
        (27, 0x5727_5809, b"I'm a legacy channel".to_vec()),
        (63, 0x5727_580c, b"Nice to meet you finaly".to_vec()),
        (102, 0x5727_5810, b"Oh, yes indeed.".to_vec()),
    ]
}

fn parity_fine_expected() -> Vec<FileRec> {
    vec![
        (16, 0x5727_545c, b"Hello there".to_vec()),
        (44, 0x5727_5461, b"how are you are you fine".to_vec()),
        (85, 0x5727_5464, b"I'm very good! Thanks!".to_vec()),
        (124, 0x5727_546a, b"Let's see".to_vec()),
        (150, 0x5727_546d, b"This one will get broken".to_vec()),
        (191, 0x5727_5471, b"we'll never receive this one".to_vec()),
        (236, 0x5727_5474, b"nor this one".to_vec()),
        (265, 0x5727_5475, b"bye".to_vec()),
    ]
}

#[test]
fn legacy_and_putlegacy_give_their_four_records() {
    for set in ["legacy", "putlegacy"] {
        let (format, records, damage) = decode_file(&samples().join(set).join("0000000057/275"));
        assert_eq!(format, Some(BucketFormat::Legacy), "{set}");
        assert_eq!(records, legacy_expected(), "{set}");
        assert!(damage.is_empty(), "{set}: {damage:?}");
        let (all, damage) = read_all(&samples().join(set));
        assert_eq!(all.len(), 4);
        assert!(damage.is_empty());
    }
}

#[test]
fn parity_fine_gives_eight_records() {
    let (format, records, damage) = decode_file(&samples().join("parity-fine/0000000057/275"));
    assert_eq!(format, Some(BucketFormat::V1));
    assert_eq!(records, parity_fine_expected());
    assert!(damage.is_empty(), "{damage:?}");
}

#[test]
fn parity_broken_gives_first_four_and_reports_the_damage() {
    let (format, records, damage) = decode_file(&samples().join("parity-broken/0000000057/275"));
    assert_eq!(format, Some(BucketFormat::V1));
    assert_eq!(records, parity_fine_expected()[..4].to_vec());
    assert_eq!(
        damage,
        vec![Damage {
            offset: 150,
            len_bytes: 285 - 150,
            kind: DamageKind::Parity
        }]
    );
    let (all, damage) = read_all(&samples().join("parity-broken"));
    assert_eq!(all.len(), 4);
    assert_eq!(damage.len(), 1);
}

#[test]
fn empty_bucket_gives_eight_records_in_all() {
    let dir = samples().join("empty-bucket");
    let (all, damage) = read_all(&dir);
    assert_eq!(all.len(), 8);
    let keys: Vec<u64> = all.iter().map(|r| r.0).collect();
    assert_eq!(keys[0], 0x5721_c2f2);
    assert_eq!(keys[1], 0x5723_64dd);
    assert_eq!(keys[2], 0x576b_b002);
    assert_eq!(keys[7], 0x576b_b082);
    assert_eq!(all[0].1.len(), 479);
    assert_eq!(all[1].1.len(), 745);
    assert!(keys.windows(2).all(|w| w[0] <= w[1]));
    // The stray trailing newlines of the two legacy files and the damaged header in 6bb.
    let found: Vec<(String, u64, DamageKind)> = damage
        .iter()
        .map(|(p, d)| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            (name, d.offset, d.kind)
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("21c".to_string(), 495, DamageKind::TornRecordHeader),
            ("236".to_string(), 761, DamageKind::TornRecordHeader),
            ("6bb".to_string(), 2714, DamageKind::Parity),
        ]
    );
    for name in ["21b", "220", "25b", "6bc"] {
        let (format, records, damage) = decode_file(&dir.join("0000000057").join(name));
        assert_eq!(format, None);
        assert!(records.is_empty() && damage.is_empty());
    }
}

#[test]
fn check_reports_exactly_the_damaged_files() {
    let report = check_data_dir(&samples(), None).expect("check");
    assert_eq!(report.files.len(), 11);
    assert_eq!(report.records(), 4 + 4 + 8 + 4 + 8);
    let bad: Vec<(String, Option<u64>)> = report
        .files
        .iter()
        .filter(|f| !f.is_clean())
        .map(|f| {
            let rel = f.path.strip_prefix(samples()).expect("under samples");
            (rel.display().to_string(), f.first_bad_offset())
        })
        .collect();
    assert_eq!(
        bad,
        vec![
            ("empty-bucket/0000000057/21c".to_string(), Some(495)),
            ("empty-bucket/0000000057/236".to_string(), Some(761)),
            ("empty-bucket/0000000057/6bb".to_string(), Some(2714)),
            ("parity-broken/0000000057/275".to_string(), Some(150)),
        ]
    );
    assert!(report.files.iter().all(|f| f.misplaced_records == 0));
}

fn copy_set(set: &str, into: &Path) -> PathBuf {
    let from = samples().join(set).join("0000000057");
    let to = into.join(set).join("0000000057");
    fs::create_dir_all(&to).expect("mkdir");
    for entry in fs::read_dir(&from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        fs::write(&target, fs::read(entry.path()).expect("read")).expect("write");
    }
    into.join(set)
}

#[test]
fn appending_to_a_legacy_bucket_keeps_the_legacy_format() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let channel = copy_set("putlegacy", tmp.path());
    let path = channel.join("0000000057/275");
    let mut writer = BucketWriter::open(&path, 4096).expect("open");
    assert_eq!(writer.format(), BucketFormat::Legacy);
    assert_eq!(writer.recovery().cut_bytes, 0);
    for (i, key) in [0x5727_5813u64, 0x5727_5814, 0x5727_5815, 0x5727_5817]
        .into_iter()
        .enumerate()
    {
        writer
            .append(key, format!("test{}", i + 1).as_bytes())
            .expect("append");
    }
    writer.sync().expect("sync");
    let (format, records, damage) = decode_file(&path);
    assert_eq!(format, Some(BucketFormat::Legacy));
    assert_eq!(records.len(), 8);
    assert_eq!(records[..4].to_vec(), legacy_expected());
    assert_eq!(records[7].1, 0x5727_5817);
    assert_eq!(records[7].2, b"test4");
    assert!(damage.is_empty());
}

#[test]
fn appending_to_a_v1_bucket_keeps_the_v1_format() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let channel = copy_set("parity-fine", tmp.path());
    let path = channel.join("0000000057/275");
    let mut writer = BucketWriter::open(&path, 0).expect("open");
    assert_eq!(writer.format(), BucketFormat::V1);
    for key in 0x5727_5476u64..=0x5727_5479 {
        writer
            .append(key, format!("v{key:x}").as_bytes())
            .expect("append");
    }
    drop(writer);
    let (format, records, damage) = decode_file(&path);
    assert_eq!(format, Some(BucketFormat::V1));
    assert_eq!(records.len(), 12);
    assert!(damage.is_empty());
    let (all, _) = read_all(&channel);
    assert_eq!(all.len(), 12);
}

#[test]
fn appending_to_a_legacy_bucket_with_a_stray_byte_cuts_it_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let channel = copy_set("empty-bucket", tmp.path());
    let path = channel.join("0000000057/21c");
    let mut writer = BucketWriter::open(&path, 4096).expect("open");
    assert_eq!(writer.recovery().cut_bytes, 1);
    assert_eq!(writer.recovery().reason, Some(DamageKind::TornRecordHeader));
    writer.append(0x5721_c2f3, b"after").expect("append");
    drop(writer);
    let (_, records, damage) = decode_file(&path);
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].2, b"after");
    assert!(damage.is_empty());
    // A zero-length reference file becomes a file of ours.
    let mut writer = BucketWriter::open(&channel.join("0000000057/21b"), 4096).expect("open");
    assert_eq!(writer.format(), BucketFormat::Crc);
    writer.append(0x5721_b000, b"new").expect("append");
    drop(writer);
    let (format, records, _) = decode_file(&channel.join("0000000057/21b"));
    assert_eq!(format, Some(BucketFormat::Crc));
    assert_eq!(records.len(), 1);
    // recover_tail on the damaged v1 file cuts the unreadable rest, keeping the 6 records.
    let cut = recover_tail(&channel.join("0000000057/6bb")).expect("recover");
    assert_eq!(cut.cut_bytes, 3214 - 2714);
    assert_eq!(cut.reason, Some(DamageKind::Parity));
    let (_, records, damage) = decode_file(&channel.join("0000000057/6bb"));
    assert_eq!(records.len(), 6);
    assert!(damage.is_empty());
}

//! The time index of a bucket (`<bucket>.idx`) and the reads that use it: written by the writer
//! when it closes, used by reads (they seek to the stretch of their first key and stop past their
//! last, decoding a fraction of the bucket), and rebuilt (and saved) by the read that finds it
//! missing, stale or damaged; a bucket out of key order reads as before. Reads through any index
//! return exactly what the whole-bucket reader (`ScannedBucket`) returns, for random contents and
//! ranges (property test), and for the reference node's own buckets.

use logfilesnode::storage::index::{
    decode_index, load_index, save_index, verify_index, IndexProblem, INDEX_HEADER_BYTES,
};
use logfilesnode::storage::scan::{Step, StepBudget};
use logfilesnode::storage::{
    index_path, BucketFile, BucketId, BucketWriter, CursorOptions, IndexBuilder, IndexSource,
    RangeScan, WriterOptions,
};
use proptest::prelude::*;
use std::fs;
use std::path::{Path, PathBuf};

type Rec = (u64, Vec<u8>);

/// The node's options with a small index interval, and the pages a read has gone past released
/// every 8 KiB (the node: every 32 MiB) so that small buckets exercise the release.
const SAVE: CursorOptions = CursorOptions {
    index_interval_bytes: 4096,
    save_index: true,
    release_behind_bytes: 8192,
};

/// Opens the bucket holding `keys[0]` (bucket 0 unless said) with a 4 KiB index interval.
fn writer(dir: &Path) -> BucketWriter {
    BucketWriter::open_with(
        &dir.join("0000000000/000"),
        WriterOptions {
            buffer_limit_bytes: 0,
            index_interval_bytes: 4096,
            allow_cut: true,
        },
    )
    .expect("open")
}

fn value(n: usize, key: u64, len: usize) -> Vec<u8> {
    let mut v = format!("v{n}-{key}-").into_bytes();
    v.resize(len.max(v.len()), b'x');
    v
}

/// Writes `keys` (values of `value_len` bytes) to bucket 0 and closes the writer (saving the
/// index). Returns the bucket's path.
fn write_bucket(dir: &Path, keys: &[u64], value_len: usize) -> PathBuf {
    let mut w = writer(dir);
    for (n, key) in keys.iter().enumerate() {
        w.append(*key, &value(n, *key, value_len)).expect("append");
    }
    w.sync().expect("sync");
    let path = w.path().to_path_buf();
    drop(w);
    path
}

/// What the whole-bucket reader returns.
fn whole(dir: &Path, from: u64, to: u64) -> Vec<Rec> {
    let mut scan = RangeScan::new(dir, from, to).expect("scan");
    let mut out = Vec::new();
    while let Some(bucket) = scan.next_bucket() {
        out.extend(
            bucket
                .expect("bucket")
                .records()
                .map(|r| (r.key, r.value.to_vec())),
        );
    }
    out
}

/// What one read through cursors returns, with the source of the index of each bucket, whether
/// it sought, and the records it decoded.
struct Read {
    records: Vec<Rec>,
    sources: Vec<Option<IndexSource>>,
    seeks: Vec<bool>,
    decoded: u64,
}

fn read(
    dir: &Path,
    from: u64,
    to: u64,
    options: CursorOptions,
    live: Option<&IndexBuilder>,
    budget: StepBudget,
) -> Read {
    let mut scan = RangeScan::new(dir, from, to)
        .expect("scan")
        .with_options(options);
    let mut out = Read {
        records: Vec::new(),
        sources: Vec::new(),
        seeks: Vec::new(),
        decoded: 0,
    };
    let mut offers = 0u64;
    while let Some(cursor) = scan.next_cursor_with(|_: &BucketFile| live) {
        let mut cursor = cursor.expect("cursor");
        for _ in 0..1_000_000 {
            let step = cursor.step(budget, |r| {
                offers += 1;
                // A full batch now and then: the record is offered again.
                if offers.is_multiple_of(7) {
                    return false;
                }
                out.records.push((r.key, r.value.to_vec()));
                true
            });
            if step == Step::Finished {
                break;
            }
        }
        out.sources.push(cursor.index_source.clone());
        out.seeks.push(cursor.seeks);
        out.decoded += cursor.records_decoded;
    }
    out
}

const BIG: StepBudget = StepBudget {
    records: usize::MAX,
    bytes: usize::MAX,
};

#[test]
fn the_writer_saves_the_index_at_close_and_narrow_reads_decode_only_their_stretch() {
    let dir = tempfile::tempdir().unwrap();
    // 4000 records of 116 bytes in key order (two per key): 464 KB, about 113 stretches.
    let keys: Vec<u64> = (0..4000u64).map(|i| i / 2).collect();
    let path = write_bucket(dir.path(), &keys, 100);
    let index = load_index(&path).expect("the writer saved the index");
    assert!(index.in_order);
    assert_eq!(index.records, 4000);
    assert_eq!(index.interval_bytes, 4096);
    assert!(index.entries.len() > 100, "{} entries", index.entries.len());
    verify_index(&index, &fs::read(&path).unwrap()).expect("matches the bucket");

    let got = read(dir.path(), 1000, 1029, SAVE, None, BIG);
    assert_eq!(got.records, whole(dir.path(), 1000, 1029));
    assert_eq!(got.records.len(), 60);
    assert_eq!(got.sources, vec![Some(IndexSource::File)]);
    assert_eq!(got.seeks, vec![true]);
    // At most one stretch (35 records of 116 bytes) before the range and one record after it.
    assert!(got.decoded <= 60 + 36 + 1, "decoded {}", got.decoded);

    // Keys before, after and between records; the first and the last key.
    for (from, to) in [
        (0, 0),
        (1999, 1999),
        (1999, u64::MAX),
        (0, u64::MAX),
        (5000, 6000),
    ] {
        let got = read(dir.path(), from, to, SAVE, None, BIG);
        assert_eq!(got.records, whole(dir.path(), from, to), "{from}..={to}");
    }
}

/// Every key has 50 records (5.8 KB, more than a 4 KiB stretch), so every run of a key starts in
/// one stretch and ends in another: a read of one key must start in the stretch before the
/// first that begins with it, and end after its last record.
#[test]
fn a_key_whose_records_span_stretches_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<u64> = (0..2000u64).map(|i| 10 + i / 50).collect();
    write_bucket(dir.path(), &keys, 100);
    for key in 9..=51 {
        let got = read(dir.path(), key, key, SAVE, None, BIG);
        assert_eq!(got.records, whole(dir.path(), key, key), "key {key}");
        let expected = if (10..50).contains(&key) { 50 } else { 0 };
        assert_eq!(got.records.len(), expected, "key {key}");
        assert_eq!(got.seeks, vec![true]);
    }
}

/// Resident pages of the map of `path` in this process (`/proc/self/smaps`), in KiB.
fn mapped_rss_kib(path: &Path) -> u64 {
    let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
    let mut lines = smaps.lines();
    let name = path.to_string_lossy();
    while let Some(line) = lines.next() {
        if line.ends_with(&*name) {
            for field in lines.by_ref() {
                if let Some(rss) = field.strip_prefix("Rss:") {
                    return rss.trim().trim_end_matches("kB").trim().parse().unwrap();
                }
            }
        }
    }
    panic!("{} is not mapped", path.display());
}

/// A read going through a bucket keeps only the last stretch of its map resident: the pages it
/// has gone past are released as it goes (the node: every 32 MiB; unmapping a map read whole
/// costs tens of milliseconds on the event loop).
#[test]
fn a_read_releases_the_pages_it_has_gone_past() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<u64> = (0..20_000u64).map(|i| i / 8).collect();
    let path = write_bucket(dir.path(), &keys, 200);
    assert!(fs::metadata(&path).unwrap().len() > 4 << 20);
    for (release_behind_bytes, max_rss_kib, min_rss_kib) in
        [(64 * 1024, 64 + 64, 0), (usize::MAX, u64::MAX, 4 * 1024)]
    {
        let options = CursorOptions {
            release_behind_bytes,
            ..SAVE
        };
        let mut scan = RangeScan::new(dir.path(), 0, u64::MAX)
            .unwrap()
            .with_options(options);
        let mut cursor = scan.next_cursor().unwrap().unwrap();
        let mut read = 0;
        while cursor.step(
            StepBudget {
                records: 100,
                bytes: usize::MAX,
            },
            |_| {
                read += 1;
                true
            },
        ) != Step::Finished
        {}
        assert_eq!(read, 20_000);
        let rss = mapped_rss_kib(&path);
        assert!(
            (min_rss_kib..=max_rss_kib).contains(&rss),
            "release every {release_behind_bytes} bytes: {rss} KiB resident"
        );
    }
}

#[test]
fn a_missing_index_is_rebuilt_and_saved_by_the_read_that_finds_it_missing() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<u64> = (0..2000u64).collect();
    let path = write_bucket(dir.path(), &keys, 60);
    let saved = fs::read(index_path(&path)).unwrap();
    fs::remove_file(index_path(&path)).unwrap();

    // A reader that must not change the directory builds it in memory only.
    let got = read(dir.path(), 500, 600, CursorOptions::default(), None, BIG);
    assert_eq!(got.records, whole(dir.path(), 500, 600));
    assert_eq!(
        got.sources,
        vec![Some(IndexSource::Built(IndexProblem::Missing))]
    );
    assert!(!index_path(&path).exists());

    // The node's reads save it: the same bytes the writer wrote.
    let got = read(dir.path(), 500, 600, SAVE, None, BIG);
    assert_eq!(got.records, whole(dir.path(), 500, 600));
    assert_eq!(
        got.sources,
        vec![Some(IndexSource::Built(IndexProblem::Missing))]
    );
    assert_eq!(got.seeks, vec![true]);
    assert_eq!(fs::read(index_path(&path)).unwrap(), saved);
    let got = read(dir.path(), 500, 600, SAVE, None, BIG);
    assert_eq!(got.sources, vec![Some(IndexSource::File)]);
}

/// Reads bucket 0 of `dir` whole with `step_within`, small steps, asking `may_hold` before it
/// holds an index; returns the records, the cursor's largest `held_bytes` between steps, and
/// what it said about its index.
fn read_within(
    dir: &Path,
    may_hold: &mut dyn FnMut(usize) -> bool,
) -> (Vec<Rec>, usize, Option<IndexSource>, bool) {
    let mut scan = RangeScan::new(dir, 0, u64::MAX)
        .expect("scan")
        .with_options(SAVE);
    let mut cursor = scan.next_cursor().expect("a bucket").expect("cursor");
    let mut records = Vec::new();
    let mut held_max = cursor.held_bytes();
    let small = StepBudget {
        records: 500,
        bytes: 64 * 1024,
    };
    while cursor.step_within(small, may_hold, |r| {
        records.push((r.key, r.value.to_vec()));
        true
    }) != Step::Finished
    {
        held_max = held_max.max(cursor.held_bytes());
    }
    (records, held_max, cursor.index_source.clone(), cursor.seeks)
}

/// The index a read rebuilds is memory its stream holds between steps: the read asks the stream
/// memory budgets (`may_hold`) for every entry the bucket can need before it starts, never
/// holds more than it was granted, and counts it in `held_bytes`. Refused, it reads the whole
/// bucket without building one (no seek, nothing saved) and returns the same records.
#[test]
fn rebuilding_an_index_stays_within_what_the_budgets_grant() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<u64> = (0..20_000u64).map(|i| i / 4).collect();
    let path = write_bucket(dir.path(), &keys, 200);
    let bucket_len = fs::metadata(&path).unwrap().len();
    let entries = load_index(&path).unwrap().entries.len();
    assert!(entries > 1000, "{entries} entries");
    fs::remove_file(index_path(&path)).unwrap();
    let expected = whole(dir.path(), 0, u64::MAX);
    assert_eq!(expected.len(), 20_000);

    let mut asked = Vec::new();
    let (records, held_max, source, seeks) = read_within(dir.path(), &mut |bytes| {
        asked.push(bytes);
        false
    });
    assert_eq!(records, expected);
    assert_eq!(
        source,
        Some(IndexSource::NotBuilt(IndexProblem::Missing)),
        "refused, it builds no index"
    );
    assert!(!seeks);
    assert!(!index_path(&path).exists(), "and saves none");
    let bound = IndexBuilder::bound_bytes(bucket_len, 4096);
    assert!(bound >= entries * 16, "{bound} bytes for {entries} entries");
    assert!(
        asked.len() == 1 && asked[0] >= bound,
        "asked once, for all it could need: {asked:?} (bound {bound})"
    );
    // What it holds without an index: its path and its damage list.
    let unindexed = held_max;
    assert!(unindexed < 8 * 1024, "{unindexed} bytes");

    let mut granted = 0;
    let (records, held_max, source, seeks) = read_within(dir.path(), &mut |bytes| {
        granted += bytes;
        true
    });
    assert_eq!(records, expected);
    assert_eq!(source, Some(IndexSource::Built(IndexProblem::Missing)));
    assert!(seeks);
    assert!(index_path(&path).exists());
    assert_eq!(granted, asked[0], "asked for the same index, once");
    assert!(
        held_max >= unindexed + entries * 16,
        "the index being built is counted: {held_max} bytes held, {entries} entries"
    );
    assert!(
        held_max <= unindexed + granted,
        "never more than granted: {held_max} bytes held, {granted} granted"
    );
}

#[test]
fn a_damaged_index_is_rebuilt_whatever_byte_is_flipped() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<u64> = (0..600u64).collect();
    let path = write_bucket(dir.path(), &keys, 60);
    let good = fs::read(index_path(&path)).unwrap();
    let expected = whole(dir.path(), 100, 400);
    for at in (0..good.len()).step_by(5) {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        fs::write(index_path(&path), &bad).unwrap();
        let got = read(dir.path(), 100, 400, SAVE, None, BIG);
        assert_eq!(got.records, expected, "byte {at} flipped");
        assert!(
            matches!(
                &got.sources[0],
                Some(IndexSource::Built(IndexProblem::Damaged(_)))
            ),
            "byte {at} flipped: {:?}",
            got.sources
        );
        assert_eq!(
            fs::read(index_path(&path)).unwrap(),
            good,
            "rebuilt, byte {at}"
        );
    }
    // Cut short, or not an index at all.
    for bad in [
        &good[..good.len() - 3],
        &good[..INDEX_HEADER_BYTES],
        b"junk",
    ] {
        fs::write(index_path(&path), bad).unwrap();
        let got = read(dir.path(), 100, 400, SAVE, None, BIG);
        assert_eq!(got.records, expected);
        assert!(matches!(
            &got.sources[0],
            Some(IndexSource::Built(IndexProblem::Damaged(_)))
        ));
    }
}

/// An index with a valid checksum and length that lies about the bucket (an entry moved, the
/// order flag set on an unordered bucket) is caught before it can mislead a read.
#[test]
fn an_index_that_lies_about_its_bucket_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<u64> = (0..800u64).collect();
    let path = write_bucket(dir.path(), &keys, 60);
    let honest = load_index(&path).unwrap();
    let expected = whole(dir.path(), 300, 310);

    let mut moved = honest.clone();
    moved.entries[5].offset += 1;
    let mut wrong_key = honest.clone();
    wrong_key.entries[5].min_key += 1;
    for lie in [moved, wrong_key] {
        save_index(&path, &lie).unwrap();
        let got = read(dir.path(), 300, 310, SAVE, None, BIG);
        assert_eq!(got.records, expected);
        assert!(
            matches!(
                &got.sources[0],
                Some(IndexSource::Built(IndexProblem::Damaged(_)))
            ),
            "{:?}",
            got.sources
        );
        assert_eq!(load_index(&path).unwrap(), honest);
    }

    // Another bucket of the same length, out of key order, under the first one's index.
    let shuffled: Vec<u64> = (0..800u64).rev().collect();
    fs::remove_file(&path).unwrap();
    let reversed_dir = tempfile::tempdir().unwrap();
    let other = write_bucket(reversed_dir.path(), &shuffled, 60);
    fs::copy(&other, &path).unwrap();
    for (from, to) in [(300, 310), (0, 10)] {
        save_index(&path, &honest).unwrap();
        let got = read(dir.path(), from, to, SAVE, None, BIG);
        assert_eq!(got.records, whole(dir.path(), from, to));
        assert_eq!(got.records.len(), 11);
        assert!(
            matches!(&got.sources[0], Some(IndexSource::Built(_))),
            "{from}..={to}: {:?}",
            got.sources
        );
    }
}

/// A read that builds the index of a bucket a writer appends to meanwhile does not save its
/// index (stale at once) over the one the writer saved when it closed.
#[test]
fn a_read_does_not_save_the_index_of_a_bucket_that_grew_while_it_was_built() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_bucket(dir.path(), &(0..500u64).collect::<Vec<_>>(), 60);
    fs::remove_file(index_path(&path)).unwrap();
    let mut scan = RangeScan::new(dir.path(), 0, u64::MAX)
        .unwrap()
        .with_options(SAVE);
    let mut cursor = scan.next_cursor().unwrap().unwrap();
    let small = StepBudget {
        records: 10,
        bytes: usize::MAX,
    };
    assert_eq!(cursor.step(small, |_| true), Step::Budget);
    let mut w = writer(dir.path());
    w.append(600, b"appended while the read builds").unwrap();
    drop(w);
    let mut read = 0;
    while cursor.step(small, |_| {
        read += 1;
        true
    }) != Step::Finished
    {}
    assert_eq!(read, 500, "the records of the bucket as mapped");
    assert_eq!(
        cursor.index_source,
        Some(IndexSource::Built(IndexProblem::Missing))
    );
    let saved = load_index(&path).unwrap();
    assert_eq!(saved.records, 501, "the writer's index stays");
    saved.validate(&fs::read(&path).unwrap()).unwrap();
}

#[test]
fn a_stale_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_bucket(dir.path(), &(0..300u64).collect::<Vec<_>>(), 60);
    let old = fs::read(index_path(&path)).unwrap();
    // Appends after the index was written, and the writer's own save lost (a crash).
    let mut w = writer(dir.path());
    for key in 300..400u64 {
        w.append(key, &value(0, key, 60)).unwrap();
    }
    w.sync().unwrap();
    drop(w);
    fs::write(index_path(&path), &old).unwrap();
    let got = read(dir.path(), 250, 350, SAVE, None, BIG);
    assert_eq!(got.records, whole(dir.path(), 250, 350));
    assert_eq!(got.records.len(), 101);
    assert!(matches!(
        &got.sources[0],
        Some(IndexSource::Built(IndexProblem::Stale { .. }))
    ));
    let rebuilt = load_index(&path).unwrap();
    assert_eq!(rebuilt.records, 400);
    assert_eq!(rebuilt.bucket_len_bytes, fs::metadata(&path).unwrap().len());
}

#[test]
fn a_bucket_out_of_key_order_says_so_and_reads_without_seeking() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<u64> = (0..1000u64).map(|i| (i * 7919) % 1000).collect();
    let path = write_bucket(dir.path(), &keys, 40);
    let index = load_index(&path).unwrap();
    assert!(!index.in_order);
    let got = read(dir.path(), 100, 200, SAVE, None, BIG);
    assert_eq!(got.records, whole(dir.path(), 100, 200));
    assert_eq!(got.records.len(), 101);
    assert_eq!(got.sources, vec![Some(IndexSource::File)]);
    assert_eq!(got.seeks, vec![false]);
}

#[test]
fn reads_of_a_bucket_open_for_writing_use_the_writers_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(dir.path());
    for key in 0..3000u64 {
        w.append(key / 3, &value(0, key, 50)).unwrap();
    }
    w.flush().unwrap();
    assert!(!index_path(w.path()).exists(), "saved only at close");
    let got = read(dir.path(), 400, 420, SAVE, Some(w.index()), BIG);
    assert_eq!(got.records, whole(dir.path(), 400, 420));
    assert_eq!(got.records.len(), 63);
    assert_eq!(got.sources, vec![Some(IndexSource::Live)]);
    assert!(got.decoded < 200, "decoded {}", got.decoded);
    // Records still in the buffer are in the writer's index but not in the file the read maps.
    let mut buffered = BucketWriter::open_with(
        &dir.path().join("0000000000/001"),
        WriterOptions {
            buffer_limit_bytes: 1 << 20,
            index_interval_bytes: 4096,
            allow_cut: true,
        },
    )
    .unwrap();
    let first = BucketId::from_key(1 << 12).first_key();
    for key in first..first + 500 {
        buffered.append(key, &value(0, key, 50)).unwrap();
    }
    let got = read(
        dir.path(),
        first,
        u64::MAX,
        SAVE,
        Some(buffered.index()),
        BIG,
    );
    assert!(got.records.is_empty(), "nothing written yet");
    drop(w);
    drop(buffered);
}

/// Damage done after the index was written (bit rot): a read that starts past a span that
/// makes the rest of the bucket unreadable from its start still returns the intact records
/// after it; `logfiles_check` then reports the damage and the index that no longer matches.
#[test]
fn a_read_seeking_past_damage_done_after_the_index_sees_the_intact_records_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<u64> = (0..400u64).collect();
    let path = write_bucket(dir.path(), &keys, 100);
    let mut data = fs::read(&path).unwrap();
    // The length field of record 10: its value now runs past the end of the file.
    let at = 16 + 10 * 116 + 8 + 3;
    data[at] = 0x7f;
    fs::write(&path, &data).unwrap();
    assert_eq!(
        whole(dir.path(), 0, u64::MAX).len(),
        10,
        "a whole read stops there"
    );
    let got = read(dir.path(), 300, 310, SAVE, None, BIG);
    assert_eq!(got.sources, vec![Some(IndexSource::File)]);
    assert_eq!(got.records.len(), 11);
    let index = load_index(&path).unwrap();
    assert!(matches!(
        verify_index(&index, &data),
        Err(IndexProblem::Damaged(_))
    ));
}

fn arb_keys() -> impl Strategy<Value = Vec<u64>> {
    prop_oneof![
        // In order, few keys with many records each: runs of a key span stretches.
        proptest::collection::vec(0u64..24, 0..600).prop_map(|mut k| {
            k.sort_unstable();
            k
        }),
        // In order, with runs of equal keys.
        proptest::collection::vec(0u64..4096, 0..600).prop_map(|mut k| {
            k.sort_unstable();
            k
        }),
        // In order but for a few records.
        (proptest::collection::vec(0u64..4096, 1..600), any::<u64>()).prop_map(|(mut k, seed)| {
            k.sort_unstable();
            let n = k.len();
            for i in 0..(1 + seed as usize % 3) {
                k.swap(
                    (seed as usize >> (8 * i)) % n,
                    (seed as usize >> (8 * i + 4)) % n,
                );
            }
            k
        }),
        // Any order.
        proptest::collection::vec(0u64..4096, 0..600),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Reads through the index — saved by the writer, rebuilt by the read, or the writer's live
    /// one — return exactly what the whole-bucket reader returns, whatever the keys, the range
    /// and the budget per step.
    #[test]
    fn reads_through_the_index_return_what_a_full_scan_returns(
        keys in arb_keys(),
        value_len in 1usize..300,
        ranges in proptest::collection::vec(
            prop_oneof![(0u64..4200, 0u64..4200), (0u64..30, 0u64..30)],
            1..6,
        ),
        records in 1usize..50,
        bytes in 1usize..5000,
        damage_at in proptest::option::of(any::<usize>()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path());
        for (n, key) in keys.iter().enumerate() {
            w.append(*key, &value(n, *key, value_len)).unwrap();
        }
        w.flush().unwrap();
        let budget = StepBudget { records, bytes };
        let path = w.path().to_path_buf();
        for &(a, b) in &ranges {
            let (from, to) = (a.min(b), a.max(b));
            let live = read(dir.path(), from, to, SAVE, Some(w.index()), budget);
            prop_assert_eq!(&live.records, &whole(dir.path(), from, to));
        }
        drop(w);
        if let Some(at) = damage_at {
            // Damage before the index is built: a flipped byte, then no index.
            let mut data = fs::read(&path).unwrap();
            if data.len() > 16 {
                let i = 16 + at % (data.len() - 16);
                data[i] ^= 0x41;
                fs::write(&path, data).unwrap();
            }
            fs::remove_file(index_path(&path)).unwrap();
        }
        // The first read that visits the bucket after the damage rebuilds its index; the others
        // use it. A range from 4096 on is past the bucket's keys: no bucket to visit.
        let mut to_rebuild = damage_at.is_some();
        for &(a, b) in &ranges {
            let (from, to) = (a.min(b), a.max(b));
            let got = read(dir.path(), from, to, SAVE, None, budget);
            prop_assert_eq!(&got.records, &whole(dir.path(), from, to));
            if from >= 4096 {
                prop_assert!(got.sources.is_empty());
                continue;
            }
            let expected = if std::mem::take(&mut to_rebuild) {
                "built"
            } else {
                "file"
            };
            let source = match &got.sources[..] {
                [Some(IndexSource::File)] => "file",
                [Some(IndexSource::Built(_))] => "built",
                other => panic!("{other:?}"),
            };
            prop_assert_eq!(source, expected);
        }
        if to_rebuild {
            // No read visited the bucket since its index was removed.
            prop_assert!(!index_path(&path).exists());
        } else {
            let data = fs::read(&path).unwrap();
            let index = decode_index(&fs::read(index_path(&path)).unwrap()).unwrap();
            prop_assert_eq!(verify_index(&index, &data), Ok(()));
        }
    }
}

//! Reading a bucket in slices ([`BucketCursor`]) gives exactly what reading it whole gives: the
//! in-range records in key order (equal keys in file order), whatever the budget per step and
//! however often the consumer refuses a record (its batch full), for buckets in key order and
//! out of it, with damaged records among them (the cursor builds the index of the damaged
//! bucket; tests/bucket_index.rs covers reads through indexes).

use logfilesnode::storage::scan::{Step, StepBudget};
use logfilesnode::storage::{BucketWriter, RangeScan};
use proptest::prelude::*;

fn write_bucket(dir: &std::path::Path, keys: &[u64]) -> std::path::PathBuf {
    let path = dir.join("0000000000/000");
    let mut writer = BucketWriter::open(&path, 0).unwrap();
    for (n, key) in keys.iter().enumerate() {
        writer
            .append(*key, format!("v{n}-{key}").as_bytes())
            .unwrap();
    }
    writer.sync().unwrap();
    path
}

fn whole(dir: &std::path::Path, from: u64, to: u64) -> Vec<(u64, Vec<u8>)> {
    let mut scan = RangeScan::new(dir, from, to).unwrap();
    let mut out = Vec::new();
    while let Some(bucket) = scan.next_bucket() {
        out.extend(bucket.unwrap().records().map(|r| (r.key, r.value.to_vec())));
    }
    out
}

fn sliced(
    dir: &std::path::Path,
    from: u64,
    to: u64,
    budget: StepBudget,
    refuse_every: usize,
) -> Vec<(u64, Vec<u8>)> {
    let mut scan = RangeScan::new(dir, from, to).unwrap();
    let mut out = Vec::new();
    let mut offers = 0usize;
    while let Some(cursor) = scan.next_cursor() {
        let mut cursor = cursor.unwrap();
        for _ in 0..100_000 {
            let step = cursor.step(budget, |r| {
                offers += 1;
                if offers.is_multiple_of(refuse_every) {
                    return false;
                }
                out.push((r.key, r.value.to_vec()));
                true
            });
            if step == Step::Finished {
                break;
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn slices_read_what_the_whole_read_gives(
        keys in proptest::collection::vec(0u64..4096, 0..300),
        sorted in any::<bool>(),
        from in 0u64..4096,
        width in 0u64..4096,
        records in 1usize..20,
        bytes in 1usize..400,
        refuse_every in 2usize..7,
        damage_at in proptest::option::of(0usize..300),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = keys;
        if sorted {
            keys.sort_unstable();
        }
        let path = write_bucket(dir.path(), &keys);
        if let Some(at) = damage_at {
            // Flip a byte somewhere in the records: a CRC failure (skipped) or a torn rest.
            let mut data = std::fs::read(&path).unwrap();
            if data.len() > 16 {
                let index = 16 + at * 7 % (data.len() - 16);
                data[index] ^= 0x5a;
                std::fs::write(&path, data).unwrap();
            }
            // The read builds the index of the damaged bucket (an index written before the
            // damage may let a read that seeks past a damaged span see the records after it:
            // tests/bucket_index.rs).
            std::fs::remove_file(logfilesnode::storage::index_path(&path)).unwrap();
        }
        let to = from.saturating_add(width);
        let expected = whole(dir.path(), from, to);
        let got = sliced(dir.path(), from, to, StepBudget { records, bytes }, refuse_every);
        prop_assert_eq!(got, expected);
    }
}

/// A torn tail read with a budget that runs out exactly at the damage: the read must finish
/// (it used to resume at the damage and report it again, forever).
#[test]
fn a_torn_tail_at_the_end_of_a_step_budget_ends_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_bucket(dir.path(), &[1, 2, 3]);
    let mut data = std::fs::read(&path).unwrap();
    data.extend_from_slice(&[9, 0, 0, 0, 0, 0, 0, 0, 200]); // a record header cut short
    std::fs::write(&path, data).unwrap();
    let expected = whole(dir.path(), 0, u64::MAX);
    assert_eq!(expected.len(), 3);
    for records in 1..=4 {
        let got = sliced(
            dir.path(),
            0,
            u64::MAX,
            StepBudget {
                records,
                bytes: usize::MAX,
            },
            usize::MAX,
        );
        assert_eq!(got, expected, "budget of {records} records per step");
    }
}

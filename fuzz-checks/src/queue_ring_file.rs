//! Opens arbitrary bytes as the files a queue node reads at start: its own ring files
//! (`Ring::open`), the reference node's `.rq` dumps (`rq::decode`) and the reference's data
//! directory as a whole (`reference::scan`: `.rq` files plus `overflow.dat` / `ofchannels.csv`).
//!
//! Input: the first byte is the mode; the rest is the file (or files).
//! - mode & 3 == 0, a ring file: the rest, padded with zeros to at least one header region and
//!   the smallest ring (8 KiB) and to a multiple of 8. With mode bit 0x04 the harness stamps the
//!   file's ring length into both header slots and recomputes their CRCs (so the fuzzer reaches
//!   the record walk without having to forge two checksums). If the ring opens: its size is
//!   consistent; it reopens without cutting anything more and with the same records; a batch
//!   taken and given back comes out again first; a record pushed then (if it fits) comes out
//!   after every stored record, which all pop (non-empty, within the ring's value limit) as many
//!   as `len()` said; then, the ring empty, a push and a pop round trip.
//! - mode & 3 == 1, a `.rq` dump: decoded directly; what decodes re-encodes to the same bytes.
//! - mode & 3 == 2 or 3, a reference data directory: `u16 rq_len`, `u16 index_len`, then
//!   `ch.rq`, `ofchannels.csv`, and the rest as `overflow.dat`; the index and overflow files are
//!   written only with mode bit 0x04. `scan` must return without panicking; values are never
//!   empty.
//!
//! Nothing may panic, and nothing may allocate beyond what the file holds.

use queuenode::engine::reference;
use queuenode::engine::ring::{
    Ring, SyncMode, HEADER_REGION_BYTES, MIN_CAPACITY_BYTES, RECORD_ALIGN_BYTES, SLOT_BYTES,
};
use queuenode::engine::rq;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The name of this target's work directory ([`crate::work_dir`]).
pub const WORK_DIR: &str = "queue-ring";

fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| crate::work_dir(WORK_DIR, &[]))
}

/// The ring file the input stands for: padded to the smallest ring and the record alignment,
/// with the ring length stamped into both header slots when mode bit 0x04 asks for it.
fn ring_file_image(mode: u8, data: &[u8]) -> Vec<u8> {
    let min_len = (HEADER_REGION_BYTES + MIN_CAPACITY_BYTES) as usize;
    let mut file = data.to_vec();
    let len = file
        .len()
        .max(min_len)
        .next_multiple_of(RECORD_ALIGN_BYTES as usize);
    file.resize(len, 0);
    if mode & 0x04 != 0 {
        let ring_bytes = (len as u64 - HEADER_REGION_BYTES).to_le_bytes();
        for at in [0usize, 128] {
            let slot = &mut file[at..at + SLOT_BYTES];
            slot[16..24].copy_from_slice(&ring_bytes);
            let crc = crc32fast::hash(&slot[..64]);
            slot[64..68].copy_from_slice(&crc.to_le_bytes());
        }
    }
    file
}

fn ring_file(mode: u8, data: &[u8]) {
    let file = ring_file_image(mode, data);
    let len = file.len();
    let path = work_dir().join("ch.ring");
    std::fs::write(&path, &file).expect("write the ring file");

    let Ok((ring, _cut)) = Ring::open(&path, SyncMode::OnClose) else {
        return;
    };
    let records = ring.len();
    let size = ring.size();
    assert_eq!(size.records, records);
    assert!(size.used_bytes <= size.capacity_bytes);
    assert!(size.value_bytes <= size.used_bytes);
    assert_eq!(size.capacity_bytes, len as u64 - HEADER_REGION_BYTES);
    assert!(size.fill_percent() <= 100);
    drop(ring);

    let (mut ring, cut) = Ring::open(&path, SyncMode::OnClose).expect("an opened ring reopens");
    assert_eq!(cut, 0, "a reopened ring cut more records");
    assert_eq!(ring.len(), records, "a reopened ring has other records");
    assert_eq!(ring.size(), size);

    pop_every_record(&mut ring, mode, records);

    let value = b"fuzz";
    ring.push(value).expect("push into an empty ring");
    assert_eq!(ring.pop().expect("pop").as_deref(), Some(&value[..]));
    drop(ring);
    let (ring, cut) = Ring::open(&path, SyncMode::OnClose).expect("reopen after use");
    assert_eq!(cut, 0);
    assert!(ring.is_empty());
}

/// Takes a batch and gives it back, pushes one record, then pops the ring empty: the batch
/// comes out first, the pushed record last, and as many records as `records` (plus the push)
/// said, each non-empty and within the ring's value limit.
fn pop_every_record(ring: &mut Ring, mode: u8, records: u64) {
    let given_back = match ring.take(2 + usize::from(mode >> 4), 64) {
        Some((span, values)) => {
            assert_eq!(span.end_seq - span.first_seq, values.len() as u64);
            ring.give_back(span).expect("give back a batch just taken");
            values
        }
        None => {
            assert_eq!(records, 0, "no batch from a ring with records");
            Vec::new()
        }
    };
    // A producer may push before any consumer pops: the new record goes after the old ones and
    // must not disturb them.
    let pushed = vec![b'p'; 1 + usize::from(mode >> 3) * 31];
    let expected = records + u64::from(ring.push(&pushed).is_ok());
    let max_value = ring.max_value_bytes();
    let mut popped = Vec::new();
    while let Some(value) = ring.pop().expect("pop") {
        assert!(!value.is_empty() && value.len() as u64 <= max_value);
        popped.push(value);
        assert!(popped.len() as u64 <= expected, "more records than len()");
    }
    assert_eq!(popped.len() as u64, expected, "fewer records than len()");
    if expected > records {
        assert_eq!(
            popped.last(),
            Some(&pushed),
            "the pushed record is not last"
        );
    }
    assert_eq!(
        &popped[..given_back.len()],
        &given_back[..],
        "returned batch not first"
    );
    assert!(ring.is_empty());
}

fn rq_dump(data: &[u8]) {
    let Ok(values) = rq::decode(data) else {
        return;
    };
    assert!(values.iter().all(|value| !value.is_empty()));
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    assert_eq!(rq::encode(&refs), data, "decoded dump does not re-encode");
}

fn reference_dir(mode: u8, data: &[u8]) {
    let Some((lens, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let rq_len = usize::from(u16::from_le_bytes([lens[0], lens[1]])).min(rest.len());
    let (rq_bytes, rest) = rest.split_at(rq_len);
    let index_len = usize::from(u16::from_le_bytes([lens[2], lens[3]])).min(rest.len());
    let (index, overflow) = rest.split_at(index_len);

    let dir = work_dir().join("reference");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the reference directory");
    std::fs::write(dir.join("ch.rq"), rq_bytes).expect("write ch.rq");
    if mode & 0x04 != 0 {
        std::fs::write(dir.join(reference::OVERFLOW_INDEX), index).expect("write the index");
        std::fs::write(dir.join(reference::OVERFLOW_DATA), overflow).expect("write the overflow");
    }
    if let Ok(found) = reference::scan(&dir) {
        let mut total = 0u64;
        for values in found.storages.values() {
            assert!(
                values.iter().all(|value| !value.is_empty()),
                "empty value read"
            );
            total += values.len() as u64;
        }
        assert_eq!(found.records(), total);
        assert!(!found.is_empty(), "ch.rq was read, so files are listed");
    }
}

/// The target's entry point: one input. Panics when an invariant above does not hold.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode & 3 {
        0 => ring_file(mode, rest),
        1 => rq_dump(rest),
        _ => reference_dir(mode, rest),
    }
}

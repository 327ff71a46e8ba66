//! Reads arbitrary bytes as a dht dump file (the node loads these at start). `read_dump` must
//! return `Ok` or `Err` without panicking or allocating beyond its bounds; when it accepts a
//! file, the summary must count exactly the records it delivered, and writing those records again
//! with `DumpFileWriter`, compressed or not, must give a file that reads back to the same records.

use dht_persist::dump::format::{read_dump, DumpCompression, DumpFileWriter, FORMAT_VERSION};
use node_core::protocol::batch::append_record;

/// The target's entry point: one input. Panics when an invariant above does not hold.
pub fn check(data: &[u8]) {
    let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
    let Ok(summary) = read_dump(data, |key, value| records.push((key, value.to_vec()))) else {
        return;
    };
    assert_eq!(summary.records, records.len() as u64);
    assert_eq!(
        summary.value_bytes,
        records.iter().map(|(_, v)| v.len() as u64).sum::<u64>()
    );
    let mut raw = Vec::new();
    for (key, value) in &records {
        append_record(&mut raw, *key, value);
    }
    for compression in [DumpCompression::Lz4, DumpCompression::None] {
        let mut writer = DumpFileWriter::with_compression(
            Vec::new(),
            FORMAT_VERSION,
            "fuzz",
            0,
            None,
            compression,
        )
        .expect("write to memory");
        if !records.is_empty() {
            writer
                .write_chunk(&raw, records.len() as u32)
                .expect("write to memory");
        }
        let (file, _) = writer.finish().expect("finish in memory");
        let mut again = Vec::new();
        read_dump(&file[..], |key, value| again.push((key, value.to_vec())))
            .expect("our own file reads");
        assert_eq!(again, records);
    }
}

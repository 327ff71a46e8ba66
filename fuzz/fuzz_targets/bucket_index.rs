//! cargo-fuzz target `bucket_index`: the checks live in `fuzz_checks::bucket_index` (fuzz-checks/), shared
//! with the suite's replay of the seeds (fuzz-checks/tests/replay.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::bucket_index::check(data));

//! cargo-fuzz target `queue_ring_file`: the checks live in `fuzz_checks::queue_ring_file` (fuzz-checks/), shared
//! with the suite's replay of the seeds (fuzz-checks/tests/replay.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::queue_ring_file::check(data));

//! cargo-fuzz target `dht_log_reader`: the checks live in `fuzz_checks::dht_log_reader` (fuzz-checks/), shared
//! with the suite's replay of the seeds (fuzz-checks/tests/replay.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::dht_log_reader::check(data));

//! cargo-fuzz target `credentials_file`: the checks live in `fuzz_checks::credentials_file` (fuzz-checks/), shared
//! with the suite's replay of the seeds (fuzz-checks/tests/replay.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::credentials_file::check(data));

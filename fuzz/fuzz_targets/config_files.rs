//! cargo-fuzz target `config_files`: the checks live in `fuzz_checks::config_files` (fuzz-checks/), shared
//! with the suite's replay of the seeds (fuzz-checks/tests/replay.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::config_files::check(data));

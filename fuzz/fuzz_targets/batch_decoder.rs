//! cargo-fuzz target `batch_decoder`: the checks live in `fuzz_checks::batch_decoder` (fuzz-checks/), shared
//! with the suite's replay of the seeds (fuzz-checks/tests/replay.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::batch_decoder::check(data));

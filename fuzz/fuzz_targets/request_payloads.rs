//! cargo-fuzz target `request_payloads`: the checks live in `fuzz_checks::request_payloads` (fuzz-checks/), shared
//! with the suite's replay of the seeds (fuzz-checks/tests/replay.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::request_payloads::check(data));

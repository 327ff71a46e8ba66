//! cargo-fuzz target `client_hello`: the checks live in `fuzz_checks::client_hello` (fuzz-checks/), shared
//! with the suite's replay of the seeds (fuzz-checks/tests/replay.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::client_hello::check(data));

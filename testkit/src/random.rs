//! Randomness for the crash tests, replayable: each test takes its seed from [`SEED_VAR`] when
//! set, else from the clock, and prints it (shown with the output of a failing test) with the
//! command line that replays it. Round counts come from each test's own variable
//! ([`rounds_from_env`]), so `scripts/crash-matrix.sh` reaches every one.

use std::time::{SystemTime, UNIX_EPOCH};

/// The variable that replays a randomized test's failure: `SWARM_TEST_SEED=<seed it printed>`.
pub const SEED_VAR: &str = "SWARM_TEST_SEED";

/// xorshift64: small, fast and reproducible from its seed. Never zero.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "an empty range");
        self.next_u64() % bound
    }
}

/// The seed of this run of a randomized test: [`SEED_VAR`] when set (a bad value fails the
/// test), else the clock. Printed with the way to replay it.
pub fn test_seed() -> u64 {
    let seed = match std::env::var(SEED_VAR) {
        Ok(text) => parse_u64(text.trim())
            .unwrap_or_else(|| panic!("{SEED_VAR}={text:?} is not a number (decimal or 0x hex)")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_nanos() as u64),
    };
    let test = super::skip::current_test();
    let binary = super::skip::current_test_binary();
    // Cargo names the package to the test process it runs.
    let package =
        std::env::var("CARGO_PKG_NAME").map_or(String::new(), |name| format!("-p {name} "));
    eprintln!(
        "{test}: seed {seed} (replay: {SEED_VAR}={seed} cargo test {package}--test {binary} \
         {test} -- --exact)"
    );
    seed
}

/// The round count of a crash test: `var` when set (it must be a positive number: a typo must
/// not quietly run the default), else `default`.
pub fn rounds_from_env(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(rounds) if rounds > 0 => rounds,
            _ => panic!("{var}={text:?}: the round count must be a positive number"),
        },
        Err(_) => default,
    }
}

fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

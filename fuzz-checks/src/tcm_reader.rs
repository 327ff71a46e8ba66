//! Reads arbitrary bytes as a reference `.tcm` dump (imported at start and by dumptool).
//! `read_tcm` must return `Ok` or `Err` without panicking or allocating beyond its bounds; every
//! record it delivers has a non-empty value within the limit, and the report counts them.

use dht_persist::tcm::read_tcm;

const MAX_VALUE_BYTES: usize = 4096;

/// The target's entry point: one input. Panics when an invariant above does not hold.
pub fn check(data: &[u8]) {
    let mut delivered = 0u64;
    let Ok(report) = read_tcm(data, MAX_VALUE_BYTES, |_key, value| {
        assert!(!value.is_empty() && value.len() <= MAX_VALUE_BYTES);
        delivered += 1;
    }) else {
        return;
    };
    assert_eq!(report.loaded, delivered);
}

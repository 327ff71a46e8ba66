//! benches support.

//! benches support: criterion micro-benchmarks live in `benches/`, the load generator
//! (`loadgen`) and the dht memory probe (`dht_memory`) in `src/bin/`; [`sys`] holds the process
//! measurements (CPU time, RSS) they share.

pub mod sys;

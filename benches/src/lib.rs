//! benches support: criterion micro-benchmarks live in `benches/`, the load generator
//! (`loadgen`) and the dht memory probe (`dht_memory`) in `src/bin/`; [`sys`] holds the process
//! measurements (CPU time, RSS) they share; [`handshake`] the swarm handshake of the load
//! generators; [`data`] the deterministic test data of the criterion benches.

pub mod data;
pub mod handshake;
pub mod sys;

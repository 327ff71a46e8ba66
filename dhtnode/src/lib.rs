//! dhtnode: The dht node: an in-memory, hash-ranged key/value store. (So far the node answers only the requests every node shares; its engine comes next.)

pub mod config;

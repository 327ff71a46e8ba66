//! logfilesnode: The logfiles node: a time-bucketed on-disk append store. (So far the node answers only the requests every node shares; its engine comes next.)

pub mod config;
pub mod storage;

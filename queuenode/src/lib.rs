//! queuenode: The queue node: fixed-size ring-buffer queues with subscribers. (So far the node answers only the requests every node shares; its engine comes next.)

pub mod config;
pub mod engine;

//! dhtdump sidecar entry point.
fn main() {}

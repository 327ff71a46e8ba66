//! dhtnode daemon entry point.
fn main() {}

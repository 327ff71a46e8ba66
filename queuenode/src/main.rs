//! queuenode daemon entry point.
fn main() {}

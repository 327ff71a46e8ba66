//! swarmctl.
fn main() {}

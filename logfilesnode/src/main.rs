//! logfilesnode daemon entry point.
fn main() {}

//! logfiles_check.
fn main() {}

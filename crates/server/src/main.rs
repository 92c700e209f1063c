//! Entry point of the `concord` binary.
fn main() {}

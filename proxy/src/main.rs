//! floodgate binary
fn main() {}

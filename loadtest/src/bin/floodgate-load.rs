//! floodgate-load
fn main() {}

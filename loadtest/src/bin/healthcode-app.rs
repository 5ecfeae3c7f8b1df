//! healthcode-app
fn main() {}

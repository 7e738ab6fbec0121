//! The `zkaudit` command-line tool.
fn main() {}

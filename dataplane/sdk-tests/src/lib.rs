//! End-to-end tests of Riffle's Kinesis API driven by the official AWS SDK for Rust.
//!
//! The library is empty on purpose: every test lives under `tests/` and talks to a real `riffle`
//! server process (env `RIFFLE_BIN`, default `<workspace>/target/debug/riffle`), which must be
//! built first with `cargo build -p riffle`.

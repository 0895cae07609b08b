//! The `index_decode` target; its logic lives in `tests/harness`, which the
//! stable test `tests/fuzz_regression.rs` also runs.
#![no_main]

#[path = "../../tests/harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::index_decode(data));

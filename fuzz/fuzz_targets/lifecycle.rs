//! The `lifecycle` target; its logic lives in `tests/harness/lifecycle.rs`,
//! which the stable test `tests/fuzz_regression.rs` also runs.
#![no_main]

#[path = "../../tests/harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::lifecycle::lifecycle(data));

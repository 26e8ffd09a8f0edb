//! Arbitrary operation sequences against the in-memory model: the model
//! test's driver (`tests/it/model/driver.rs`), fed raw bytes.
#![no_main]

#[path = "../../tests/it/model/driver.rs"]
mod driver;

libfuzzer_sys::fuzz_target!(|data: &[u8]| driver::run(data));

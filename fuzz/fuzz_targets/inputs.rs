//! Arbitrary ids, components, keys and values through every public method:
//! `Ok` or the documented error.
#![no_main]

#[path = "../targets/inputs.rs"]
mod inputs;

libfuzzer_sys::fuzz_target!(|data: &[u8]| inputs::run(data));

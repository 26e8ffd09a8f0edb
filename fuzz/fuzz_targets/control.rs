//! Arbitrary bytes through the control socket's request and reply parsers.
#![no_main]

#[path = "../targets/control.rs"]
mod control;

libfuzzer_sys::fuzz_target!(|data: &[u8]| control::run(data));

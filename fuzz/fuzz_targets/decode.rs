//! Arbitrary bytes stored as values, metadata, index entries and keys: reads
//! give errors, never panics, and `verify` reports the damage.
#![no_main]

#[path = "../targets/decode.rs"]
mod decode;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decode::run(data));

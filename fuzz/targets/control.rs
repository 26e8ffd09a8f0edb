//! The `control` target: arbitrary bytes through the control socket's
//! protocol (docs/control.md), split into lines. Every line is parsed as a
//! request, as the server parses what any local client of the store's uid
//! sends, and as a reply line, as the client parses what a server sends.
//! Neither may panic, and whatever parses renders back to one line that
//! parses to the same request or reply (the checks are in the library's
//! `__fuzz_control_protocol`, under the feature `corruption-testing`).
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/control.rs`) and by
//! `tests/it/fuzz_regressions.rs`.

pub fn run(bytes: &[u8]) {
    sessionstore::__fuzz_control_protocol(bytes);
}

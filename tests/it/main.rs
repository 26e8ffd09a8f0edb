//! The integration tests, in one binary: one module per behaviour, all
//! through the `engine_test!` harness in `common/`.
//!
//! Kept out of it, each in a binary of its own because it needs the process
//! to itself: `tests/embedded/crash.rs` (re-runs its binary and kills it at random
//! moments, many rounds, one at a time) and `tests/embedded/reaper_thread.rs` (reads
//! the process's thread list, which other tests' threads would confuse);
//! and the CLI's tests, in `sessionctl/tests/`.
//!
//! `cargo test --test it NAME` runs the tests whose path contains NAME, for
//! example `cargo test --test it expiry::` or `cargo test --test it ::redb`.

#[macro_use]
mod common;

mod admin;
mod conflicts;
#[cfg(unix)]
mod control;
mod corruption;
mod create;
mod destroy;
mod drop_flush;
mod engines;
mod events;
mod expiry;
mod fuzz_regressions;
mod get;
mod hardening;
mod input;
mod model;
mod open;
mod principals;
mod reaper;
#[cfg(feature = "redis")]
mod redis;
mod regenerate;
mod save;
mod stress;
mod webapp;

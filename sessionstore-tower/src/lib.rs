//! sessionstore as a [tower-sessions] store, for axum and any tower service.
//!
//! [`TowerStore`] wraps any [`sessionstore::SessionStore`] (the embedded
//! `Store` on disk, or `RedisStore`) and implements tower-sessions'
//! `SessionStore` and `ExpiredDeletion`. The store's calls block, so each
//! one runs on tokio's blocking pool. How a tower-sessions record maps to a
//! session (ids, data, expiry, saves of what changed) is in the README.
//!
//! ```
//! use sessionstore::Config;
//! use sessionstore_tower::TowerStore;
//! use tower_sessions::SessionManagerLayer;
//!
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Config::new(dir.path().join("sessions")).open()?;
//! let layer = SessionManagerLayer::new(TowerStore::new(store));
//! # drop(layer);
//! # Ok::<(), sessionstore::Error>(())
//! ```
//!
//! [tower-sessions]: https://docs.rs/tower-sessions
#![deny(unsafe_code, missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod bases;
mod data;
mod error;
mod expiry;
mod reap;
mod store;
mod tower_impl;

pub use reap::Reap;
/// The store crate, so that one dependency is enough: `sessionstore_tower::sessionstore::Config`.
pub use sessionstore;
pub use store::{TowerStore, UPDATE_ROUNDS};
/// The tower-sessions traits this crate implements (the same ones
/// `tower_sessions` re-exports).
pub use tower_sessions_core;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

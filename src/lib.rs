//! An embedded, persistent, synchronous session store.
//!
//! `sessionstore` keeps users' sessions on local disk for desktop and edge
//! programs: no server to run, a blocking API, `Send + Sync` handles that are
//! cheap to clone. It follows the contract of RAIN's `BaseSessionStore`
//! ([`SessionStore`]): create a session for an id, get its global scope or one
//! component's scope, save only the keys that changed, destroy it. It adds
//! atomic saves, crash safety, and idle expiry with a background reaper.
//!
//! ```
//! use sessionstore::Store;
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("sessions");
//! let store = Store::open(&path)?;
//!
//! // A new visitor: a fresh random id, and its global scope.
//! let mut session = store.create()?;
//! session.set("user", "ada")?;
//! store.save(&mut session)?;
//!
//! // One component's scope of the same session.
//! let mut cart = store.get(session.id(), Some("cart"))?.expect("live");
//! cart.set("items", &vec!["book", "pen"])?;
//! store.save(&mut cart)?;
//!
//! let global = store.get(session.id(), None)?.expect("live");
//! assert_eq!(global.get::<String>("user")?.as_deref(), Some("ada"));
//! assert!(store.destroy(session.id())?);
//! assert!(store.get(session.id(), None)?.is_none());
//! # Ok::<(), sessionstore::Error>(())
//! ```
//!
//! See ARCHITECTURE.md for the storage layout and the life of a save.
#![doc = include_str!("contract.md")]
#![deny(unsafe_code, missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod admin;
mod backend;
mod clock;
mod codec;
mod commit;
mod config;
mod core;
mod error;
mod events;
mod expiry;
mod export;
mod id;
mod join;
mod keys;
mod locks;
mod meta;
mod metacache;
mod open;
mod principal;
#[cfg(any(test, feature = "corruption-testing"))]
mod raw;
mod reaper;
#[cfg(feature = "redis")]
mod redis;
mod save;
mod session;
mod snapshot;
mod store;
mod update;
mod validate;
mod verify;
mod write;

#[cfg(test)]
mod fault_tests;
#[cfg(all(test, feature = "redb"))]
mod power_loss_tests;

pub use admin::{ExportedScope, ExportedSession, ImportMode, SessionIds};
pub use backend::Engine;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, Durability, MAX_EVENT_CAPACITY};
pub use error::{BoxError, Error, Result};
pub use events::Event;
pub use expiry::{SessionInfo, Stats};
#[cfg(any(test, feature = "corruption-testing"))]
pub use raw::RawTarget;
#[cfg(feature = "redis")]
pub use redis::{RedisConfig, RedisStore};
pub use session::Session;
pub use store::{SessionStore, Store};
pub use validate::{MAX_COMPONENT_LEN, MAX_ID_LEN, MAX_KEY_LEN};
pub use verify::Report;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

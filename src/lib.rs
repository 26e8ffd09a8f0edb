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

mod clock;
mod codec;
mod embedded;
mod engine;
mod error;
mod events;
mod export;
mod id;
mod info;
mod keys;
mod limits;
mod locks;
mod meta;
#[cfg(feature = "redis")]
mod redis;
mod session;
mod session_store;
mod snapshot;
mod update;
mod validate;

pub use clock::{Clock, ManualClock, SystemClock};
#[cfg(any(test, feature = "corruption-testing"))]
pub use embedded::RawTarget;
#[cfg(all(unix, any(test, feature = "corruption-testing")))]
pub use embedded::fuzz_protocol as __fuzz_control_protocol;
pub use embedded::{Config, Durability, Report, SessionIds, Store};
#[cfg(unix)]
pub use embedded::{ControlClient, ControlIds, ControlSessions};
pub use engine::Engine;
pub use error::{BoxError, Error, Result};
pub use events::Event;
pub use export::{ExportedScope, ExportedSession, ImportMode};
pub use info::{SessionInfo, Stats};
pub use limits::MAX_EVENT_CAPACITY;
#[cfg(feature = "redis")]
pub use redis::{RedisConfig, RedisStore};
pub use session::Session;
pub use session_store::SessionStore;
pub use validate::{MAX_COMPONENT_LEN, MAX_ID_LEN, MAX_KEY_LEN};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

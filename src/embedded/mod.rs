//! The embedded store: [`Store`] on one ordered key space in a local
//! directory (sled or redb), its [`Config`], the write path, the reaper and
//! the engines.

mod admin;
pub(crate) mod backend;
mod checkpoint;
mod commit;
mod config;
#[cfg(unix)]
mod control;
mod core;
mod durability;
mod expiry;
mod join;
mod journal;
mod launch;
mod metacache;
mod open;
mod overlay;
mod principal;
#[cfg(any(test, feature = "corruption-testing"))]
mod raw;
mod reaper;
mod reserve;
mod save;
mod store;
mod verify;
mod write;

#[cfg(test)]
mod fault_tests;
#[cfg(all(test, feature = "redb"))]
mod power_loss_tests;

pub use admin::SessionIds;
pub use config::Config;
#[cfg(all(unix, any(test, feature = "corruption-testing")))]
pub use control::fuzz_protocol;
#[cfg(unix)]
pub use control::{ControlClient, ControlIds, ControlSessions};
pub use durability::Durability;
#[cfg(any(test, feature = "corruption-testing"))]
pub use raw::RawTarget;
pub use store::Store;
pub use verify::Report;

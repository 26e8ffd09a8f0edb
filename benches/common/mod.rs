//! What the criterion benches and `examples/perf_report.rs` share: the
//! contenders and the workloads, so that both measure exactly the same work.
//!
//! A contender is one way to keep sessions: the store itself (on each engine),
//! raw sled and raw redb doing the same writes without the store's checks,
//! locks and commit thread, and SQLite through rusqlite with the schema of a typical
//! SQL session backend.

pub mod contender;
pub mod raw_keys;
pub mod raw_redb;
pub mod raw_sled;
pub mod sqlite;
pub mod store;
pub mod workload;

pub use contender::Contender;
pub use raw_redb::RawRedb;
pub use raw_sled::RawSled;
pub use sqlite::Sqlite;
pub use store::StoreContender;

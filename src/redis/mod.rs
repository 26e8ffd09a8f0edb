//! The Redis store (cargo feature `redis`): the same sessions, shared by
//! every app server that opens the same Redis server or cluster.

mod admin;
mod config;
mod conn;
mod principal;
mod scripts;
mod stats;
mod store;

pub use config::RedisConfig;
pub use store::RedisStore;

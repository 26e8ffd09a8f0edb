//! What a store reports about itself and about one session's life.

use std::time::{Duration, SystemTime};

use crate::clock;
use crate::engine::Engine;
use crate::meta::Meta;

/// A snapshot of the store's state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Sessions live now.
    pub live_sessions: u64,
    /// Sessions the reaper (or `reap_expired`) deleted since this store was opened.
    pub reaped_since_open: u64,
    /// Flushes made since open: with group commit, fewer than the durable writes.
    pub flushes_since_open: u64,
    /// Reaper thread passes that failed (and were retried at the next interval) since open.
    pub failed_reap_passes: u64,
    /// Bytes the engine's files take on disk.
    pub bytes_on_disk: u64,
    /// Atomic batches written since this store was opened (saves, creates, touches, deletions).
    pub writes_since_open: u64,
    /// The storage engine of an embedded store; `None` for a store on Redis.
    pub engine: Option<Engine>,
}

/// What the store knows about one session's life, from its metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// When the session was first created (kept across `regenerate`).
    pub created: SystemTime,
    /// The last create, save, touch or regenerate that was written.
    pub last_access: SystemTime,
    /// The session's idle timeout; `None` if it has none.
    pub idle_timeout: Option<Duration>,
    /// When it expires; `None` if never.
    pub deadline: Option<SystemTime>,
}

impl SessionInfo {
    pub(crate) fn from_meta(m: &Meta) -> Self {
        SessionInfo {
            created: clock::from_micros(m.created),
            last_access: clock::from_micros(m.last_access),
            idle_timeout: m.idle.map(Duration::from_micros),
            deadline: m.deadline().map(clock::from_micros),
        }
    }
}

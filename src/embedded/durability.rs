//! When an acknowledged write becomes durable.

use std::time::Duration;

/// When an acknowledged write becomes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Every create, save, touch, regenerate and destroy returns only after its
    /// write's journal record is flushed (`fdatasync`), so an acknowledged
    /// call survives `kill -9` and power loss. Concurrent writers share
    /// flushes (group commit). The default.
    Immediate,
    /// Writes are journaled at once and the journal is flushed at most the
    /// given interval after them. Faster; a crash of the process loses
    /// nothing written to the journal, but a power loss may lose the writes
    /// of the last interval.
    /// Each batch stays atomic either way. The interval must be more than
    /// zero; any larger one, up to `Duration::MAX` (never, but on
    /// [`Store::flush`](crate::Store::flush) and close), is valid. An idle store does not wake up.
    Periodic(Duration),
}

//! What the store counts for `Store::stats`.

use std::sync::atomic::Ordering;

use super::Core;
use crate::error::Result;

impl Core {
    /// Counts sessions a reap pass deleted.
    pub fn count_reaped(&self, n: usize) {
        self.reaped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts a failed reaper thread pass.
    pub fn count_failed_reap(&self) {
        self.failed_reaps.fetch_add(1, Ordering::Relaxed);
    }

    /// Sessions reaped since open.
    pub fn reaped(&self) -> u64 {
        self.reaped.load(Ordering::Relaxed)
    }

    /// Failed reaper thread passes since open.
    pub fn failed_reaps(&self) -> u64 {
        self.failed_reaps.load(Ordering::Relaxed)
    }

    /// Batches applied since open.
    pub fn writes(&self) -> u64 {
        self.committer.writes()
    }

    /// Flushes made since open.
    pub fn flushes(&self) -> u64 {
        self.committer.flushes()
    }

    /// Bytes the engine's files take on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.backend.size_on_disk()? + self.committer.journal_size()?)
    }

    /// Requests queued for the commit thread and not answered yet.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.committer.queued()
    }
}

//! Whether the store may write: a read-only store has no committer, and a
//! stalled one refuses writes (see `Committer::is_stalled`).

use std::time::Duration;

use super::Core;
use crate::embedded::commit::Committer;
use crate::error::{Error, Result};

impl Core {
    /// The configured `write_timeout`: also how long a drop waits for a
    /// thread. A read-only store has no thread and answers zero.
    pub fn write_timeout(&self) -> Duration {
        self.committer
            .as_ref()
            .map_or(Duration::ZERO, Committer::timeout)
    }

    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.committer.is_none()
    }

    /// Refuses `op`, a write, on a read-only store with `Error::ReadOnly`.
    pub fn check_writable(&self, op: &'static str) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly {
                op,
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// The committer, or `Error::ReadOnly` naming `op`.
    pub(super) fn committer(&self, op: &'static str) -> Result<&Committer> {
        self.committer.as_ref().ok_or_else(|| Error::ReadOnly {
            op,
            path: self.path.clone(),
        })
    }

    /// Whether a write timed out (see `Committer::is_stalled`).
    pub(super) fn is_stalled(&self) -> bool {
        self.committer.as_ref().is_some_and(Committer::is_stalled)
    }
}

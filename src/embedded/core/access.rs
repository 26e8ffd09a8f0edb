//! Whether the store may write: a stalled one refuses writes (see
//! `Committer::is_stalled`).

use std::time::Duration;

use super::Core;
use crate::embedded::commit::Committer;

impl Core {
    /// The configured `write_timeout`: also how long a drop waits for a thread.
    pub fn write_timeout(&self) -> Duration {
        self.committer.timeout()
    }

    /// The committer: every write goes through it.
    pub(super) fn committer(&self) -> &Committer {
        &self.committer
    }

    /// Whether a write timed out (see `Committer::is_stalled`).
    pub(super) fn is_stalled(&self) -> bool {
        self.committer.is_stalled()
    }
}

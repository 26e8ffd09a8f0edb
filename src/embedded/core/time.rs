//! The store's time: the clock, never earlier than what the store has read (see `Clock`).

use std::sync::atomic::Ordering;

use super::Core;
use crate::clock;

impl Core {
    /// Now, in microseconds since the epoch: the clock, but never earlier
    /// than any time this store has read before (see `Clock`).
    pub fn now(&self) -> u64 {
        let clock = clock::micros(self.clock.now());
        self.floor.fetch_max(clock, Ordering::AcqRel).max(clock)
    }
}

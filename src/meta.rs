//! A session's metadata record, the deadline it implies, and the policy that
//! makes new records and decides when a deadline moved enough to write.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The store's expiry settings in microseconds, resolved from its configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// The idle timeout of new sessions.
    pub idle: u64,
    /// The absolute timeout of new sessions; `None` for none.
    pub absolute: Option<u64>,
    /// A deadline move smaller than this is not worth a write.
    pub touch_granularity: u64,
}

impl Policy {
    /// A new metadata record for a session created at `now`.
    pub fn new_meta(&self, now: u64) -> Result<Meta> {
        Ok(Meta {
            created: now,
            last_access: now,
            idle: Some(self.idle),
            absolute_deadline: self.absolute.map(|a| now.saturating_add(a)),
            incarnation: fresh_incarnation()?,
        })
    }

    /// Whether moving the deadline from `old` to `new` is worth a write: a
    /// move of at least the touch granularity, capped at half the session's
    /// idle timeout so that touches always keep a session in use alive.
    pub fn moves_enough(&self, old: &Meta, new: &Meta) -> bool {
        let half_idle = old.idle.map_or(u64::MAX, |i| i / 2);
        let granularity = self.touch_granularity.min(half_idle).max(1);
        match (old.deadline(), new.deadline()) {
            (Some(a), Some(b)) => b.abs_diff(a) >= granularity,
            (a, b) => a != b,
        }
    }
}

/// A random incarnation number for a new session record.
pub(crate) fn fresh_incarnation() -> Result<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::storage("drawing a random incarnation number", e.to_string()))?;
    Ok(u64::from_le_bytes(bytes))
}

/// What the store keeps about each session besides its data.
/// Times are microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// When the session was created. Kept across `regenerate`.
    pub created: u64,
    /// The last create, save or touch that was written.
    pub last_access: u64,
    /// The idle timeout in microseconds; `None` means none.
    pub idle: Option<u64>,
    /// `created + absolute_timeout`, fixed at creation; `None` means none.
    pub absolute_deadline: Option<u64>,
    /// A random number drawn at creation, so that a `Session` of an earlier
    /// session under the same id cannot save into a later one.
    pub incarnation: u64,
}

impl Meta {
    /// `min(last_access + idle, absolute_deadline)`, or `None` if neither applies.
    pub fn deadline(&self) -> Option<u64> {
        let idle = self.idle.map(|i| self.last_access.saturating_add(i));
        match (idle, self.absolute_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The deadline as it is written in the expiry index: `u64::MAX` for never.
    pub fn index_deadline(&self) -> u64 {
        self.deadline().unwrap_or(u64::MAX)
    }

    /// The record of a use at `now`: the last access moves to `now`, never back.
    pub fn accessed(&self, now: u64) -> Meta {
        Meta {
            last_access: self.last_access.max(now),
            ..*self
        }
    }

    /// The record of a use at `now` that must differ from this one (a change
    /// of principal): the last access moves to `now`, and at least 1 µs
    /// forward. Times stop at the year 9999 (`clock::micros`), far below
    /// `u64::MAX`, so the step always happens.
    pub fn used(&self, now: u64) -> Meta {
        Meta {
            last_access: now.max(self.last_access.saturating_add(1)),
            ..*self
        }
    }

    /// Whether the session is live at `now`: `now < deadline`.
    pub fn is_live(&self, now: u64) -> bool {
        self.deadline().is_none_or(|d| now < d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_use_always_moves_the_last_access_forward() {
        let m = meta(Some(10), None);
        assert_eq!(m.used(500).last_access, 500, "to now");
        assert_eq!(m.used(100).last_access, 101, "at the same time: 1 µs on");
        assert_eq!(
            m.used(7).last_access,
            101,
            "with the clock behind: never back"
        );
        assert_ne!(m.used(100), m);
    }

    fn meta(idle: Option<u64>, abs: Option<u64>) -> Meta {
        Meta {
            created: 0,
            last_access: 100,
            idle,
            absolute_deadline: abs,
            incarnation: 0,
        }
    }

    #[test]
    fn deadline_is_the_earlier_of_idle_and_absolute() {
        assert_eq!(meta(Some(50), None).deadline(), Some(150));
        assert_eq!(meta(Some(50), Some(120)).deadline(), Some(120));
        assert_eq!(meta(Some(50), Some(500)).deadline(), Some(150));
        assert_eq!(meta(None, Some(120)).deadline(), Some(120));
        assert_eq!(meta(None, None).deadline(), None);
        assert_eq!(meta(Some(u64::MAX), None).deadline(), Some(u64::MAX));
    }

    #[test]
    fn live_strictly_before_deadline() {
        let m = meta(Some(50), None);
        assert!(m.is_live(149));
        assert!(!m.is_live(150));
        assert!(meta(None, None).is_live(u64::MAX));
    }
}

//! A session's metadata record and the deadline it implies.

use serde::{Deserialize, Serialize};

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

    /// Whether the session is live at `now`: `now < deadline`.
    pub fn is_live(&self, now: u64) -> bool {
        self.deadline().is_none_or(|d| now < d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

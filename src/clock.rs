//! Time, injectable so that expiry can be tested without sleeping.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// A source of the current time. The store asks it whenever it needs "now".
///
/// # How the store sees time
///
/// The store never lets time go backwards. It keeps the latest time it has
/// acted on, and reads "now" as the later of that and the clock. So when a
/// clock steps back (NTP, a dead RTC battery, a user changing the date), time
/// stands still for the store until the clock catches up: an expired session
/// stays expired, a late save of it stays `NotFound`, and a touch never moves
/// a deadline earlier. The latest time is written with every write, so it
/// survives a reopen and a crash: after a reopen, time is never earlier than
/// the store's last acknowledged write. A clock before 1970 reads as that
/// same floor, and a clock after the year 9999 as 9999-12-31.
///
/// A clock that jumps *forward* by mistake is kept too: sessions whose
/// deadline it passed are expired, the safe side for a session store.
///
/// # Examples
///
/// ```
/// use sessionstore::{Clock, ManualClock};
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000));
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1_005));
/// ```
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's wall clock, the default.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to: for tests, yours included.
///
/// Clones share one time, so a test can keep a handle while the store holds another.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
}

impl ManualClock {
    /// A clock that reads `start` until it is set or advanced.
    pub fn new(start: SystemTime) -> Self {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Sets the time, forwards or backwards.
    pub fn set(&self, t: SystemTime) {
        *self.now.lock() = t;
    }

    /// Moves the time forward by `d`, stopping at the latest time the
    /// platform can represent instead of overflowing.
    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock();
        *now = now.checked_add(d).unwrap_or_else(|| from_micros(u64::MAX));
    }
}

impl Default for ManualClock {
    /// A clock at 2020-01-01T00:00:00Z.
    fn default() -> Self {
        ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_577_836_800))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock()
    }
}

/// The latest time the store reads: 9999-12-31T23:59:59Z, in microseconds.
/// Far below `u64::MAX`, so deadlines after it still have room.
pub(crate) const MAX_MICROS: u64 = 253_402_300_799_000_000;

/// Microseconds since the Unix epoch, clamped to `0..=MAX_MICROS`.
pub(crate) fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, duration_micros)
        .min(MAX_MICROS)
}

/// A duration in microseconds, saturating at `u64::MAX`.
pub(crate) fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The time `micros` microseconds after the Unix epoch, or the latest time
/// the store reads (9999-12-31) if the platform cannot represent it: the
/// bytes may come from a damaged record, and adding must not panic.
pub(crate) fn from_micros(micros: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_micros(micros))
        .unwrap_or(UNIX_EPOCH + Duration::from_micros(MAX_MICROS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::default();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_millis(3));
        assert_eq!(micros(c.now()) - micros(t0), 3_000);
        let shared = c.clone();
        shared.set(t0);
        assert_eq!(c.now(), t0);
    }

    #[test]
    fn micros_saturate() {
        assert_eq!(micros(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(
            micros(UNIX_EPOCH + Duration::from_secs(1 << 40)),
            MAX_MICROS
        );
        assert_eq!(duration_micros(Duration::MAX), u64::MAX);
        assert_eq!(
            from_micros(micros(UNIX_EPOCH + Duration::from_micros(42))),
            UNIX_EPOCH + Duration::from_micros(42)
        );
    }
}

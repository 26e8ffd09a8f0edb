//! tower-sessions' `expiry_date` as the session's deadline in the store.
//!
//! tower-sessions computes `expiry_date` from the wall clock
//! (`OffsetDateTime::now_utc`); the store keeps time by its own [`Clock`](sessionstore::Clock).
//! A save carries over the time left, `expiry_date - wall now`, and sets the
//! deadline to `store now + time left`; a load turns the stored deadline back
//! into `wall now + (deadline - store now)`. With the system clock on both
//! sides (the default) the deadline is the `expiry_date` itself; with a
//! `ManualClock` in the store, the session expires when that clock has moved
//! by the time that was left.

use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

/// The store's shortest idle timeout; an `expiry_date` already past gets it,
/// so the session expires at once and the reaper deletes it as expired.
pub(crate) const SHORTEST: Duration = Duration::from_millis(1);

/// A deadline that differs from the wanted one by less than this is left as
/// it is, so that a save under `Expiry::OnInactivity` writes no second
/// batch to move it. A cookie's `Max-Age` counts whole seconds.
pub(crate) const TOLERANCE: Duration = Duration::from_secs(1);

/// The time left until `expiry_date` by the wall clock; zero if it passed.
pub(crate) fn time_left(expiry_date: OffsetDateTime) -> Duration {
    let left = expiry_date - OffsetDateTime::now_utc();
    Duration::try_from(left).unwrap_or(Duration::ZERO)
}

/// The idle timeout that puts the deadline of a session last used at
/// `last_access` at `target`: at least [`SHORTEST`].
pub(crate) fn idle_for(target: SystemTime, last_access: SystemTime) -> Duration {
    target
        .duration_since(last_access)
        .unwrap_or(Duration::ZERO)
        .max(SHORTEST)
}

/// Whether `deadline` is more than [`TOLERANCE`] away from `target`.
pub(crate) fn is_off(deadline: Option<SystemTime>, target: SystemTime) -> bool {
    match deadline {
        None => true,
        Some(d) => {
            let gap = d
                .duration_since(target)
                .or_else(|_| target.duration_since(d))
                .unwrap_or(Duration::MAX);
            gap > TOLERANCE
        }
    }
}

/// A stored deadline as tower-sessions' `expiry_date`; a session without
/// one gets the latest date `time` can hold.
pub(crate) fn expiry_date(deadline: Option<SystemTime>, store_now: SystemTime) -> OffsetDateTime {
    let Some(deadline) = deadline else {
        return time::PrimitiveDateTime::MAX.assume_utc();
    };
    let left = deadline.duration_since(store_now).unwrap_or(Duration::ZERO);
    OffsetDateTime::now_utc()
        .saturating_add(time::Duration::try_from(left).unwrap_or(time::Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_past_expiry_leaves_no_time() {
        let past = OffsetDateTime::now_utc() - time::Duration::hours(1);
        assert_eq!(time_left(past), Duration::ZERO);
        let far = time::PrimitiveDateTime::MAX.assume_utc();
        assert!(time_left(far) > Duration::from_secs(3600 * 24 * 365 * 7000));
    }

    #[test]
    fn idle_for_is_at_least_the_shortest() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(idle_for(t, t), SHORTEST);
        assert_eq!(idle_for(t, t + Duration::from_secs(5)), SHORTEST);
        assert_eq!(
            idle_for(t + Duration::from_secs(7), t),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn is_off_past_the_tolerance_either_way() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert!(!is_off(Some(t + TOLERANCE), t));
        assert!(!is_off(Some(t - TOLERANCE), t));
        assert!(is_off(Some(t + TOLERANCE + Duration::from_micros(1)), t));
        assert!(is_off(Some(t - TOLERANCE - Duration::from_micros(1)), t));
        assert!(is_off(None, t));
    }

    #[test]
    fn expiry_date_carries_the_time_left() {
        let store_now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let d = expiry_date(Some(store_now + Duration::from_secs(3600)), store_now);
        let left = d - OffsetDateTime::now_utc();
        assert!(left <= time::Duration::hours(1) && left > time::Duration::minutes(59));
        let gone = expiry_date(Some(store_now - Duration::from_secs(1)), store_now);
        assert!(gone <= OffsetDateTime::now_utc());
        assert_eq!(
            expiry_date(None, store_now),
            time::PrimitiveDateTime::MAX.assume_utc()
        );
    }
}

//! The knob checks and bounds that every store's configuration shares.

use std::time::Duration;

use crate::error::{Error, Result};

/// The shortest idle or absolute timeout and reap interval.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// The most events one subscriber's channel may hold (its slots are allocated up front).
pub const MAX_EVENT_CAPACITY: usize = 1 << 16;
/// The default capacity of a subscriber's channel.
pub(crate) const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// A subscriber channel's capacity: 1 up to [`MAX_EVENT_CAPACITY`].
pub(crate) fn check_event_capacity(capacity: usize) -> Result<()> {
    if capacity == 0 {
        return Err(Error::InvalidConfig(
            "event_capacity 0: a subscriber's channel must hold at least one event".into(),
        ));
    }
    if capacity > MAX_EVENT_CAPACITY {
        return Err(Error::InvalidConfig(format!(
            "event_capacity {capacity} is over the maximum of {MAX_EVENT_CAPACITY}"
        )));
    }
    Ok(())
}

/// An idle or absolute timeout: at least [`MIN_INTERVAL`], so that a new
/// session is live when it is returned. `what` names the setting.
pub(crate) fn check_timeout(what: &str, d: Duration) -> Result<()> {
    if d < MIN_INTERVAL {
        return Err(Error::InvalidConfig(format!(
            "{what} {d:?} is under the minimum of {MIN_INTERVAL:?}"
        )));
    }
    Ok(())
}

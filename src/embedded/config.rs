//! Configuration: a builder that ends in [`Config::open`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::embedded::durability::Durability;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::limits::{DEFAULT_EVENT_CAPACITY, MIN_INTERVAL, check_event_capacity, check_timeout};

/// The shortest `write_timeout`: a flush that takes longer stalls the store
/// for good, and one disk flush can take this long on a loaded machine.
pub(crate) const MIN_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// The smallest page cache sled 0.34 opens with.
pub(crate) const MIN_CACHE_CAPACITY: u64 = 4096;
/// The most metadata records the cache may be asked to hold.
pub(crate) const MAX_META_CACHE_ENTRIES: usize = 1 << 20;

/// How to open a [`Store`](crate::Store). Setters take and return `self`; the chain ends in [`open`](Config::open).
///
/// # Examples
///
/// ```
/// use sessionstore::{Config, Durability};
/// use std::time::Duration;
///
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Config::new(dir.path().join("sessions"))
///     .durability(Durability::Periodic(Duration::from_millis(200)))
///     .idle_timeout(Duration::from_secs(15 * 60))
///     .absolute_timeout(Some(Duration::from_secs(8 * 3600)))
///     .open()?;
/// # Ok::<(), sessionstore::Error>(())
/// ```
#[derive(Clone)]
pub struct Config {
    pub(crate) path: PathBuf,
    pub(crate) temporary: bool,
    pub(crate) engine: Option<Engine>,
    pub(crate) durability: Durability,
    pub(crate) max_value_size: usize,
    pub(crate) cache_capacity: u64,
    pub(crate) meta_cache_entries: usize,
    pub(crate) write_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_timeout: Option<Duration>,
    pub(crate) reap_interval: Option<Duration>,
    pub(crate) touch_granularity: Option<Duration>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) update_attempts: u32,
    pub(crate) event_capacity: usize,
    pub(crate) control_socket: Option<bool>,
    pub(crate) verify_on_open: bool,
}

impl Config {
    /// A configuration for the store in directory `path`, with every default.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Config {
            path: path.as_ref().to_path_buf(),
            temporary: false,
            engine: None,
            durability: Durability::Immediate,
            max_value_size: 1 << 20,
            cache_capacity: 64 << 20,
            meta_cache_entries: 16_384,
            write_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: None,
            reap_interval: Some(Duration::from_secs(60)),
            touch_granularity: None,
            clock: Arc::new(SystemClock),
            update_attempts: 8,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            control_socket: None,
            verify_on_open: false,
        }
    }

    /// A configuration for a throwaway store in a new temporary directory,
    /// deleted when the last handle drops.
    pub fn temporary() -> Self {
        let mut c = Config::new("");
        c.temporary = true;
        c
    }

    /// The storage engine. Default: the engine of the store already in the
    /// directory, if there is one, else [`Engine::default()`] (redb). Set it
    /// to insist on one: opening the other engine's store then fails with
    /// [`Error::NotAStore`](crate::Error::NotAStore).
    #[must_use]
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// When writes become durable. Default: [`Durability::Immediate`].
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The largest encoded value `Session::set` accepts, in bytes, and the
    /// largest value [`Store::save`](crate::Store::save) writes, whatever store made the session.
    /// Default: 1 MiB. Valid: 0 to 64 MiB (0 admits only values that encode
    /// to nothing, such as `()`).
    #[must_use]
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// The engine's page cache size in bytes. Default: 64 MiB. Valid: 4,096
    /// and up (sled 0.34 cannot open with less). See `docs/performance.md` on memory.
    #[must_use]
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// Whether every open runs the engine's full check of its files first.
    /// Default: `false`.
    ///
    /// Without it, an open costs the same whatever the store's size, and
    /// checks what the engine checks on its own (src/contract.md, "What each
    /// open checks"): on redb, the header's checksums after a clean close,
    /// and every page checksum after an unclean shutdown (redb's repair); on
    /// sled, the CRC of every log message its recovery reads. Pages damaged
    /// outside the engine after a clean close are then found only when read.
    ///
    /// With it, the open first runs the full check, in time and reads in
    /// proportion to the store's size, its memory bounded by
    /// [`cache_capacity`](Config::cache_capacity): on redb, redb's integrity
    /// check (the checksum of every page of the committed trees), which
    /// refuses a damaged file with [`Error::Storage`](crate::Error::Storage);
    /// on sled, a read of every key and value, which fails on a page whose
    /// CRC sled finds wrong. Turn it on for an open after a restore from a
    /// backup, a move between disks, or a suspicion of damage. A read-only
    /// open runs no check (redb's check repairs, and so writes).
    ///
    /// # Examples
    ///
    /// ```
    /// use sessionstore::Config;
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("sessions");
    /// let sid = {
    ///     let store = Config::new(&path).open()?;
    ///     store.create()?.id().to_owned()
    /// };
    /// // After a restore from a backup: check every page before trusting them.
    /// let store = Config::new(&path).verify_on_open(true).open()?;
    /// assert!(store.get(&sid, None)?.is_some());
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    #[must_use]
    pub fn verify_on_open(mut self, on: bool) -> Self {
        self.verify_on_open = on;
        self
    }

    /// How many sessions' metadata records the store keeps in memory, so that
    /// checking whether a session is live does not read the engine. Default:
    /// 16,384 (about 4 MiB when full: some 250 bytes per entry); 0 turns the
    /// cache off; at most 1,048,576. The cache is exact: the store is the only
    /// writer of its directory. See `docs/performance.md` on memory.
    #[must_use]
    pub fn meta_cache_entries(mut self, entries: usize) -> Self {
        self.meta_cache_entries = entries;
        self
    }

    /// How long a writer handed to the commit thread waits before it fails
    /// with `Error::Stalled`; also how long dropping the last handle waits for
    /// a background thread. Default: 30 s. Valid: 1 s (a slower flush would
    /// stall the store for good) up to `Duration::MAX`. A writer that applies on its own
    /// thread (the engine was free) cannot be timed out if the engine hangs
    /// under it; it hangs with the engine.
    #[must_use]
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How long a session lives without a save or touch. Default: 30 minutes.
    /// Valid: 1 ms up to `Duration::MAX` (which never expires in practice).
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a session lives after its creation, however active. Default:
    /// `None` (no limit). Valid: `None`, or 1 ms up to `Duration::MAX`.
    #[must_use]
    pub fn absolute_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.absolute_timeout = timeout;
        self
    }

    /// How often the reaper thread deletes expired sessions. Default: `Some(60 s)`;
    /// `None` starts no reaper thread (call `Store::reap_expired` yourself).
    /// Valid: `None`, or 1 ms up to `Duration::MAX`.
    #[must_use]
    pub fn reap_interval(mut self, interval: Option<Duration>) -> Self {
        self.reap_interval = interval;
        self
    }

    /// A touch, or a save with nothing dirty, that would move the deadline by
    /// less than this writes nothing. Default: `idle_timeout / 100`. Any
    /// value is valid; for each session it is capped at half that session's
    /// idle timeout, so that a session in use is always kept alive by its touches.
    #[must_use]
    pub fn touch_granularity(mut self, granularity: Duration) -> Self {
        self.touch_granularity = Some(granularity);
        self
    }

    /// The clock expiry reads. Default: the system clock. Tests use [`ManualClock`](crate::ManualClock).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How many events each subscriber's channel ([`Store::subscribe`](crate::Store::subscribe)) holds
    /// before it misses some: the events it misses are counted and reported
    /// by an [`Event::Lagged`](crate::Event::Lagged). Default: 1024. Valid:
    /// 1 up to [`MAX_EVENT_CAPACITY`](crate::MAX_EVENT_CAPACITY) (65,536); the channel's slots are
    /// allocated when a subscriber subscribes.
    #[must_use]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// How many times [`Store::update`](crate::Store::update) reads, changes and tries to save a
    /// scope before it gives up with [`Error::Conflict`](crate::Error::Conflict).
    /// Default: 8. Valid: 1 and up.
    #[must_use]
    pub fn update_attempts(mut self, attempts: u32) -> Self {
        self.update_attempts = attempts;
        self
    }

    /// Whether the store serves its control socket, `sessionstore.sock` in its
    /// directory, from a thread of its own (`sessionstore-control`): the way
    /// `sessionctl` operates a store while the application runs (stats,
    /// list, show, sessions-of, export, verify, destroy, destroy-all-of,
    /// reap), through this store's own API, so with its locks, durability
    /// and events. Only this process's user and root are served. See
    /// docs/control.md for the protocol, the limits and the threat model.
    ///
    /// Default: on for a store opened at a path on Unix, where a socket that
    /// cannot be served (its path is too long for a Unix socket, the
    /// directory is read-only, another process serves a live socket there)
    /// is logged (`log::warn!`) and the store opens without it; off for
    /// [`Config::temporary`] stores, which have no operator (their directory
    /// is random and goes with the last handle), so that throwaway stores
    /// start no thread. `true` makes a socket that cannot be served an
    /// [`Error::Control`] or [`Error::Io`] at open. Not on Unix this does
    /// nothing.
    ///
    /// An idle socket costs the store's writes nothing: its thread sleeps
    /// in `poll` until a client connects (docs/control.md has the
    /// measurement).
    #[must_use]
    pub fn control_socket(mut self, on: bool) -> Self {
        self.control_socket = Some(on);
        self
    }

    /// Whether this store serves its control socket, and whether failing
    /// to is an error: `(serve, required)`.
    pub(crate) fn effective_control_socket(&self) -> (bool, bool) {
        let serve = cfg!(unix) && self.control_socket.unwrap_or(!self.temporary);
        (serve, self.control_socket == Some(true))
    }

    /// Checks every setting before anything is created or written.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidConfig(msg));
        if !self.temporary && self.path.as_os_str().is_empty() {
            return bad("the path is empty; name the store's directory (Config::new(path))".into());
        }
        if self.max_value_size > crate::codec::MAX_VALUE_SIZE {
            return bad(format!(
                "max_value_size {} is over the ceiling of {} bytes",
                self.max_value_size,
                crate::codec::MAX_VALUE_SIZE
            ));
        }
        if self.write_timeout < MIN_WRITE_TIMEOUT {
            return bad(format!(
                "write_timeout {:?} is under the minimum of {MIN_WRITE_TIMEOUT:?}",
                self.write_timeout
            ));
        }
        if let Durability::Periodic(d) = self.durability
            && d.is_zero()
        {
            return bad("durability Periodic(0): the interval must be more than zero".into());
        }
        if let Some(d) = self.reap_interval
            && d < MIN_INTERVAL
        {
            return bad(format!(
                "reap_interval {d:?} is under the minimum of {MIN_INTERVAL:?}; None turns the reaper off"
            ));
        }
        check_timeout("idle_timeout", self.idle_timeout)?;
        if let Some(d) = self.absolute_timeout {
            check_timeout("absolute_timeout", d)?;
        }
        if self.cache_capacity < MIN_CACHE_CAPACITY {
            return bad(format!(
                "cache_capacity {} is under the minimum of {MIN_CACHE_CAPACITY} bytes",
                self.cache_capacity
            ));
        }
        if self.update_attempts == 0 {
            return bad("update_attempts 0: update must try at least once".into());
        }
        check_event_capacity(self.event_capacity)?;
        if self.meta_cache_entries > MAX_META_CACHE_ENTRIES {
            return bad(format!(
                "meta_cache_entries {} is over the maximum of {MAX_META_CACHE_ENTRIES}",
                self.meta_cache_entries
            ));
        }
        Ok(())
    }

    pub(crate) fn effective_touch_granularity(&self) -> Duration {
        self.touch_granularity.unwrap_or(self.idle_timeout / 100)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("temporary", &self.temporary)
            .field("engine", &self.engine)
            .field("durability", &self.durability)
            .field("max_value_size", &self.max_value_size)
            .field("cache_capacity", &self.cache_capacity)
            .field("meta_cache_entries", &self.meta_cache_entries)
            .field("write_timeout", &self.write_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("absolute_timeout", &self.absolute_timeout)
            .field("reap_interval", &self.reap_interval)
            .field("touch_granularity", &self.effective_touch_granularity())
            .field("update_attempts", &self.update_attempts)
            .field("event_capacity", &self.event_capacity)
            .field("control_socket", &self.effective_control_socket().0)
            .field("verify_on_open", &self.verify_on_open)
            .finish_non_exhaustive()
    }
}

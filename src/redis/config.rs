//! `RedisConfig`: a builder that ends in [`RedisConfig::open`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::codec;
use crate::error::{Error, Result};

/// The most [`RedisConfig::attempts`] accepts.
pub(crate) const MAX_ATTEMPTS: u32 = 10;
/// The wait before each attempt after the first (on a cluster, where the
/// client waits between attempts).
pub(crate) const RETRY_WAIT: Duration = Duration::from_millis(10);

/// The longest namespace [`RedisConfig::namespace`] accepts, in bytes.
const MAX_NAMESPACE_LEN: usize = 64;

/// Where the sessions live: one server, or the seed nodes of a cluster.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// One server (or a proxy that speaks for one), by URL.
    Single(String),
    /// A Redis Cluster, by the URLs of some of its nodes.
    Cluster(Vec<String>),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Single(url) => write!(f, "redis server {url}"),
            Target::Cluster(nodes) => write!(f, "redis cluster {}", nodes.join(",")),
        }
    }
}

/// How to open a [`RedisStore`](crate::RedisStore). Setters take and return `self`; the chain
/// ends in [`open`](RedisConfig::open).
///
/// The expiry settings and `max_value_size` have the same meaning, defaults
/// and checks as [`Config`](crate::Config)'s (the checks are mirrored here,
/// not shared: keep the two in step).
///
/// # Examples
///
/// ```no_run
/// use sessionstore::RedisConfig;
/// use std::time::Duration;
///
/// let store = RedisConfig::new("redis://127.0.0.1:6379/")
///     .namespace("myapp")
///     .idle_timeout(Duration::from_secs(15 * 60))
///     .open()?;
/// # Ok::<(), sessionstore::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) target: Target,
    pub(crate) namespace: String,
    pub(crate) max_value_size: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_timeout: Option<Duration>,
    pub(crate) touch_granularity: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) io_timeout: Duration,
    pub(crate) pool_size: u32,
    pub(crate) attempts: u32,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) update_attempts: u32,
    pub(crate) event_capacity: usize,
}

impl RedisConfig {
    fn with_target(target: Target) -> Self {
        RedisConfig {
            target,
            namespace: "sessionstore".into(),
            max_value_size: 1 << 20,
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: None,
            touch_granularity: None,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            pool_size: 16,
            attempts: 2,
            clock: Arc::new(SystemClock),
            update_attempts: 8,
            event_capacity: crate::limits::DEFAULT_EVENT_CAPACITY,
        }
    }

    /// Sessions on one Redis server, by URL: `redis://[user:password@]host:port/[db]`
    /// (`rediss://` with a TLS feature of the `redis` crate turned on).
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_target(Target::Single(url.into()))
    }

    /// Sessions on a Redis Cluster, by the URLs of some of its nodes (the
    /// rest are found from them).
    pub fn cluster<I>(nodes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Self::with_target(Target::Cluster(nodes.into_iter().map(Into::into).collect()))
    }

    /// The prefix of every key the store writes, so that several stores
    /// (or other data) can share one Redis. 1–64 bytes of `[A-Za-z0-9_.-]`.
    /// Default: `"sessionstore"`.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The largest encoded value `Session::set` accepts, in bytes. Default: 1 MiB; at most 64 MiB.
    #[must_use]
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// How long a session lives without a save or touch. Default: 30 minutes.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a session lives after its creation, however active. Default: `None` (no limit).
    #[must_use]
    pub fn absolute_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.absolute_timeout = timeout;
        self
    }

    /// A touch, or a save with nothing dirty, that would move the deadline by
    /// less than this writes nothing. Default: `idle_timeout / 100`.
    #[must_use]
    pub fn touch_granularity(mut self, granularity: Duration) -> Self {
        self.touch_granularity = Some(granularity);
        self
    }

    /// How many events each subscriber's channel holds, as
    /// [`Config::event_capacity`](crate::Config::event_capacity). Default:
    /// 1024. Valid: 1 up to [`MAX_EVENT_CAPACITY`](crate::MAX_EVENT_CAPACITY).
    #[must_use]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// How many times [`RedisStore::update`](crate::RedisStore::update)
    /// tries, as [`Config::update_attempts`](crate::Config::update_attempts).
    /// Default: 8. Valid: 1 and up.
    #[must_use]
    pub fn update_attempts(mut self, attempts: u32) -> Self {
        self.update_attempts = attempts;
        self
    }

    /// The clock that decides whether a session is live, and from which
    /// every key's TTL is computed. Default: the system clock. Tests use
    /// [`ManualClock`](crate::ManualClock).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long opening a connection may take, and how long a call waits for
    /// a free pooled connection. Default: 5 s.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one attempt of one command may wait to be sent or answered.
    /// Default: 5 s. See [`attempts`](RedisConfig::attempts) for the bound
    /// on a whole command.
    #[must_use]
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// How many times one command is sent at most, the first time included,
    /// when its connection drops or its reply does not come. Default: 2.
    /// Valid: 1 to 10.
    ///
    /// # The bound on a call
    ///
    /// One command (one step of a call) takes at most
    /// `attempts × (connect_timeout + io_timeout + 10 ms)`: each attempt may
    /// open a connection (`connect_timeout`), waits at most `io_timeout` for
    /// the reply, and on a cluster waits 10 ms before the next attempt. The
    /// cluster client's own retries and backoff are set to exactly this (its
    /// defaults retry 16 times with a backoff of seconds). A call of the store is
    /// a few commands (a read, then a check-and-write; `regenerate` and the
    /// principal calls a few more; `session_ids` one per session), each so bounded.
    /// When every attempt fails the call returns [`Error::Timeout`] naming the step
    /// and the server, or, for a write whose reply never came,
    /// [`Error::Unknown`](crate::Error::Unknown): it may have been applied.
    ///
    /// Resending is safe: every write carries an operation token that the
    /// script records in the session's hash, and a resend of a write
    /// already applied answers with the first result instead of applying
    /// it again (see [`RedisStore`](crate::RedisStore#exactly-once)).
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// The most connections the store keeps open (per process, shared by
    /// every clone of the store). Default: 16.
    #[must_use]
    pub fn pool_size(mut self, connections: u32) -> Self {
        self.pool_size = connections;
        self
    }

    /// The rules of [`Config`](crate::Config), mirrored, and this builder's own.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.max_value_size > codec::MAX_VALUE_SIZE {
            return bad(format!(
                "max_value_size {} is over the ceiling of {} bytes",
                self.max_value_size,
                codec::MAX_VALUE_SIZE
            ));
        }
        crate::limits::check_timeout("idle_timeout", self.idle_timeout)?;
        if let Some(d) = self.absolute_timeout {
            crate::limits::check_timeout("absolute_timeout", d)?;
        }
        for (name, t) in [
            ("connect_timeout", self.connect_timeout),
            ("io_timeout", self.io_timeout),
        ] {
            if t.is_zero() {
                return bad(format!("{name} must be more than zero"));
            }
        }
        crate::limits::check_event_capacity(self.event_capacity)?;
        if self.update_attempts == 0 {
            return bad("update_attempts 0: update must try at least once".into());
        }
        if self.attempts == 0 || self.attempts > MAX_ATTEMPTS {
            return bad(format!(
                "attempts {} is out of range: 1 to {MAX_ATTEMPTS}",
                self.attempts
            ));
        }
        if self.pool_size == 0 {
            return bad("pool_size must be at least 1".into());
        }
        let ns = &self.namespace;
        if ns.is_empty() || ns.len() > MAX_NAMESPACE_LEN {
            return bad(format!(
                "namespace {ns:?} must be 1 to {MAX_NAMESPACE_LEN} bytes long"
            ));
        }
        if !ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return bad(format!(
                "namespace {ns:?} may hold only ASCII letters, digits, '_', '.' and '-'"
            ));
        }
        if let Target::Cluster(nodes) = &self.target
            && nodes.is_empty()
        {
            return bad("a cluster needs at least one node URL".into());
        }
        Ok(())
    }

    pub(crate) fn effective_touch_granularity(&self) -> Duration {
        self.touch_granularity.unwrap_or(self.idle_timeout / 100)
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("target", &self.target.to_string())
            .field("namespace", &self.namespace)
            .field("max_value_size", &self.max_value_size)
            .field("idle_timeout", &self.idle_timeout)
            .field("absolute_timeout", &self.absolute_timeout)
            .field("touch_granularity", &self.effective_touch_granularity())
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("pool_size", &self.pool_size)
            .field("attempts", &self.attempts)
            .field("event_capacity", &self.event_capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(c: RedisConfig) -> String {
        match c.validate() {
            Err(Error::InvalidConfig(m)) => m,
            other => panic!("want InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn out_of_range_settings_are_refused_naming_them() {
        let c = || RedisConfig::new("redis://127.0.0.1:1/");
        assert!(c().validate().is_ok());
        assert!(invalid(c().namespace("")).contains("namespace"));
        assert!(invalid(c().namespace("a:b")).contains("\"a:b\""));
        assert!(invalid(c().namespace("{x}")).contains("namespace"));
        assert!(invalid(c().namespace("x".repeat(65))).contains("64"));
        assert!(invalid(c().idle_timeout(Duration::ZERO)).contains("idle_timeout"));
        assert!(invalid(c().absolute_timeout(Some(Duration::ZERO))).contains("absolute_timeout"));
        assert!(invalid(c().io_timeout(Duration::ZERO)).contains("io_timeout"));
        assert!(invalid(c().connect_timeout(Duration::ZERO)).contains("connect_timeout"));
        assert!(invalid(c().pool_size(0)).contains("pool_size"));
        assert!(invalid(c().attempts(0)).contains("attempts"));
        assert!(invalid(c().attempts(11)).contains("attempts"));
        assert!(c().attempts(1).validate().is_ok());
        assert!(c().attempts(10).validate().is_ok());
        assert!(invalid(c().max_value_size(65 << 20)).contains("max_value_size"));
        assert!(invalid(RedisConfig::cluster(Vec::<String>::new())).contains("node"));
    }
}

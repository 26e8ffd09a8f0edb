//! The harness every behaviour test runs through, once per engine.
//!
//! `engine_test!` turns one test body into a module with one `#[test]` per
//! embedded engine; the body gets a [`Db`] and opens a [`Store`]. It is for
//! behaviour that is about files and engines.
//!
//! `store_test!` does the same for behaviour every [`SessionStore`] shares:
//! one `#[test]` per engine and, with the cargo feature `redis`, one on a real
//! redis-server and one on a real 3-master Redis Cluster (`servers.rs`). The
//! body gets a [`StoreDb`] and opens an [`AnyStore`].
#![allow(dead_code)]

#[cfg(feature = "redis")]
pub mod proxy;
pub mod servers;

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sessionstore::{Config, Engine, ManualClock, Result, SessionStore, Stats, Store};
#[cfg(feature = "redis")]
use sessionstore::{RedisConfig, RedisStore};

/// A fresh directory, a manual clock, and the engine under test.
pub struct Db {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub clock: ManualClock,
    pub engine: Engine,
}

impl Db {
    pub fn new(engine: Engine) -> Db {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("store");
        Db {
            dir,
            path,
            clock: ManualClock::default(),
            engine,
        }
    }

    /// The test configuration: this engine, this directory, this clock, no
    /// reaper thread, a 10 minute idle timeout and a touch granularity of 1 minute.
    pub fn config(&self) -> Config {
        Config::new(&self.path)
            .engine(self.engine)
            .clock(Arc::new(self.clock.clone()))
            .reap_interval(None)
            .idle_timeout(Duration::from_secs(600))
            .touch_granularity(Duration::from_secs(60))
    }

    pub fn open(&self) -> Result<Store> {
        self.config().open()
    }
}

/// `engine_test!(name, |db| { body })`: one test per engine compiled in
/// (`name::sled`, `name::redb`); the body returns `Result<()>`.
#[macro_export]
macro_rules! engine_test {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($db: $crate::common::Db) -> sessionstore::Result<()> {
                $body
            }

            #[cfg(feature = "sled")]
            #[test]
            fn sled() -> sessionstore::Result<()> {
                run($crate::common::Db::new(sessionstore::Engine::Sled))
            }

            #[cfg(feature = "redb")]
            #[test]
            fn redb() -> sessionstore::Result<()> {
                run($crate::common::Db::new(sessionstore::Engine::Redb))
            }
        }
    };
}

/// Where a `store_test!` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An embedded store on this engine.
    Embedded(Engine),
    /// One real redis-server, shared by the tests (each in its own namespace).
    #[cfg(feature = "redis")]
    Redis,
    /// A real 3-master Redis Cluster, shared the same way.
    #[cfg(feature = "redis")]
    RedisCluster,
}

/// A fresh store of one kind, with a manual clock: a new directory, or a new
/// namespace on the shared Redis servers.
pub struct StoreDb {
    db: Db,
    pub clock: ManualClock,
    pub kind: Kind,
    namespace: String,
}

impl StoreDb {
    pub fn new(kind: Kind) -> StoreDb {
        // Only infallible in a build without the feature redis.
        #[allow(clippy::infallible_destructuring_match)]
        let engine = match kind {
            Kind::Embedded(e) => e,
            #[cfg(feature = "redis")]
            _ => Engine::default(),
        };
        let db = Db::new(engine);
        StoreDb {
            clock: db.clock.clone(),
            kind,
            namespace: fresh_namespace(),
            db,
        }
    }

    /// The test configuration of `Db::config`, for this kind of store.
    pub fn config(&self) -> AnyConfig {
        match self.kind {
            Kind::Embedded(_) => AnyConfig::Embedded(self.db.config()),
            #[cfg(feature = "redis")]
            Kind::Redis => AnyConfig::Redis(self.redis(RedisConfig::new(servers::standalone()))),
            #[cfg(feature = "redis")]
            Kind::RedisCluster => {
                AnyConfig::Redis(self.redis(RedisConfig::cluster(servers::cluster())))
            }
        }
    }

    #[cfg(feature = "redis")]
    fn redis(&self, config: RedisConfig) -> RedisConfig {
        config
            .namespace(&self.namespace)
            .clock(Arc::new(self.clock.clone()))
            .idle_timeout(Duration::from_secs(600))
            .touch_granularity(Duration::from_secs(60))
    }

    pub fn open(&self) -> Result<AnyStore> {
        self.config().open()
    }
}

/// A namespace no other test in any process uses.
pub fn fresh_namespace() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "t{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `Config` or `RedisConfig`, with the setters the tests use.
pub enum AnyConfig {
    Embedded(Config),
    #[cfg(feature = "redis")]
    Redis(RedisConfig),
}

macro_rules! setter {
    ($name:ident, $ty:ty) => {
        #[must_use]
        pub fn $name(self, v: $ty) -> Self {
            match self {
                AnyConfig::Embedded(c) => AnyConfig::Embedded(c.$name(v)),
                #[cfg(feature = "redis")]
                AnyConfig::Redis(c) => AnyConfig::Redis(c.$name(v)),
            }
        }
    };
}

impl AnyConfig {
    setter!(idle_timeout, Duration);
    setter!(absolute_timeout, Option<Duration>);
    setter!(touch_granularity, Duration);
    setter!(max_value_size, usize);
    setter!(update_attempts, u32);
    setter!(event_capacity, usize);

    pub fn open(self) -> Result<AnyStore> {
        match self {
            AnyConfig::Embedded(c) => c.open().map(AnyStore::Embedded),
            #[cfg(feature = "redis")]
            AnyConfig::Redis(c) => c.open().map(AnyStore::Redis),
        }
    }
}

/// `Store` or `RedisStore`: the `SessionStore` API through `Deref`, plus `stats`.
#[derive(Clone, Debug)]
pub enum AnyStore {
    Embedded(Store),
    #[cfg(feature = "redis")]
    Redis(RedisStore),
}

impl Deref for AnyStore {
    type Target = dyn SessionStore;

    fn deref(&self) -> &Self::Target {
        match self {
            AnyStore::Embedded(s) => s,
            #[cfg(feature = "redis")]
            AnyStore::Redis(s) => s,
        }
    }
}

impl AnyStore {
    /// `destroy_all_of`'s events and the reaper's need the concrete store's
    /// `reap_expired`; everything else goes through the trait.
    pub fn reap_expired(&self) -> Option<Result<usize>> {
        match self {
            AnyStore::Embedded(s) => Some(s.reap_expired()),
            #[cfg(feature = "redis")]
            AnyStore::Redis(_) => None,
        }
    }

    pub fn stats(&self) -> Result<Stats> {
        match self {
            AnyStore::Embedded(s) => s.stats(),
            #[cfg(feature = "redis")]
            AnyStore::Redis(s) => s.stats(),
        }
    }
}

/// `store_test!(name, |db| { body })`: one test per embedded engine compiled
/// in (`name::sled`, `name::redb`) and, with the feature `redis`, on Redis
/// (`name::redis`, `name::redis_cluster`); the body returns `Result<()>`.
#[macro_export]
macro_rules! store_test {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($db: $crate::common::StoreDb) -> sessionstore::Result<()> {
                $body
            }

            #[cfg(feature = "sled")]
            #[test]
            fn sled() -> sessionstore::Result<()> {
                run($crate::common::StoreDb::new(
                    $crate::common::Kind::Embedded(sessionstore::Engine::Sled),
                ))
            }

            #[cfg(feature = "redb")]
            #[test]
            fn redb() -> sessionstore::Result<()> {
                run($crate::common::StoreDb::new(
                    $crate::common::Kind::Embedded(sessionstore::Engine::Redb),
                ))
            }

            #[cfg(feature = "redis")]
            #[test]
            fn redis() -> sessionstore::Result<()> {
                run($crate::common::StoreDb::new($crate::common::Kind::Redis))
            }

            #[cfg(feature = "redis")]
            #[test]
            fn redis_cluster() -> sessionstore::Result<()> {
                run($crate::common::StoreDb::new(
                    $crate::common::Kind::RedisCluster,
                ))
            }
        }
    };
}

/// Every event `store` sent to `rx` before this call, in order: events are
/// handed out by a dispatcher thread, so a `try_recv` right after a call may
/// not find its event yet. A marker session is created and destroyed, and
/// everything before its `Destroyed` is returned (a store's events come out
/// in one order), but for the events of markers. `rx`'s channel must
/// have room for the marker.
pub fn events_before_now(
    store: &dyn SessionStore,
    rx: &crossbeam_channel::Receiver<sessionstore::Event>,
) -> Vec<sessionstore::Event> {
    use sessionstore::Event;
    use std::sync::atomic::{AtomicU64, Ordering};
    static MARKERS: AtomicU64 = AtomicU64::new(0);
    let marker = format!("zz-marker-{}", MARKERS.fetch_add(1, Ordering::Relaxed));
    store
        .create_new_session(&marker)
        .expect("the marker session");
    store.destroy(&marker).expect("the marker session");
    let mut got = Vec::new();
    loop {
        // A bound, not a timing: the marker comes right after the events sent before it.
        let e = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the marker event arrives");
        match &e {
            Event::Destroyed { sid } if *sid == marker => return got,
            Event::Created { sid } | Event::Destroyed { sid } if sid.starts_with("zz-marker-") => {}
            _ => got.push(e),
        }
    }
}

/// The next `n` events `rx` receives (each waited for at most a minute: a
/// bound, not a timing).
pub fn next_events(
    rx: &crossbeam_channel::Receiver<sessionstore::Event>,
    n: usize,
) -> Vec<sessionstore::Event> {
    (0..n)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(60))
                .expect("the event arrives")
        })
        .collect()
}

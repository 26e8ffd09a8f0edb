//! What every test file shares: a `TowerStore` over each store (sled, redb,
//! and with the feature `redis` a real redis-server), each on a
//! `ManualClock`, and the macro that runs a suite over all of them.

#![allow(dead_code)] // each test file uses a part of it

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sessionstore::{Config, Engine, ManualClock, SessionStore, Store};
use sessionstore_tower::TowerStore;

/// The root crate's real redis-server helper: started on a free port on
/// first use, stopped when the test process ends; a missing redis-server
/// fails the test, naming the package.
#[cfg(feature = "redis")]
#[path = "../../../tests/it/common/servers.rs"]
pub mod servers;

/// The idle timeout the test stores give new sessions.
pub const IDLE: Duration = Duration::from_secs(30 * 60);

/// One store under test, its clock, and what keeps it alive.
pub struct Kit<S> {
    pub tower: TowerStore<S>,
    pub clock: Arc<ManualClock>,
    _dir: Option<tempfile::TempDir>,
}

impl<S: SessionStore + Send + Sync + 'static> Kit<S> {
    pub fn store(&self) -> &S {
        self.tower.store()
    }

    /// Moves the store's clock forward.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemTime::now()))
}

/// An embedded store on `engine` in a new temporary directory, with no
/// reaper thread (tests reap when they mean to).
pub fn embedded(engine: Engine) -> Kit<Store> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = clock();
    let store = Config::new(dir.path().join("sessions"))
        .engine(engine)
        .idle_timeout(IDLE)
        .reap_interval(None)
        .clock(clock.clone())
        .open()
        .expect("opening the store");
    Kit {
        tower: TowerStore::with_clock(store, clock.clone()),
        clock,
        _dir: Some(dir),
    }
}

pub fn sled() -> Kit<Store> {
    embedded(Engine::Sled)
}

pub fn redb() -> Kit<Store> {
    embedded(Engine::Redb)
}

/// A `RedisStore` on the shared real redis-server, in a namespace of its own.
#[cfg(feature = "redis")]
pub fn redis() -> Kit<sessionstore::RedisStore> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let clock = clock();
    let namespace = format!(
        "tower-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let store = sessionstore::RedisConfig::new(servers::standalone())
        .namespace(namespace)
        .idle_timeout(IDLE)
        .clock(clock.clone())
        .open()
        .expect("connecting to the test redis-server");
    Kit {
        tower: TowerStore::with_clock(store, clock.clone()),
        clock,
        _dir: None,
    }
}

/// Runs the suite `$suite` (a macro taking a kit constructor) over every
/// store: `mod sled`, `mod redb`, and `mod redis` with the feature `redis`.
#[macro_export]
macro_rules! over_every_store {
    ($suite:ident) => {
        mod sled {
            $suite!($crate::common::sled);
        }
        mod redb {
            $suite!($crate::common::redb);
        }
        #[cfg(feature = "redis")]
        mod redis {
            $suite!($crate::common::redis);
        }
    };
}

//! The contender under test: `sessionstore::Store`, on one engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sessionstore::{Clock, Config, Durability, Engine, Session, Store};

use super::contender::{Contender, IDLE, Mode};

/// The store, configured like the competitors: the same idle timeout, no
/// reaper thread (the reap workload calls `reap_expired`), and a touch
/// granularity of 1 µs so that every touch writes, as it does for them.
pub struct StoreContender {
    store: Store,
    label: String,
    path: PathBuf,
    /// The temporary directory the store lives in, when this contender made it.
    _dir: Option<tempfile::TempDir>,
}

impl StoreContender {
    /// A new, empty store on `engine` with the default 64 MiB cache.
    pub fn new(engine: Engine, mode: Mode, clock: Arc<dyn Clock>) -> Self {
        Self::with_cache(engine, mode, clock, 64 << 20)
    }

    /// A new, empty store on `engine` with `cache_capacity` bytes of cache.
    pub fn with_cache(engine: Engine, mode: Mode, clock: Arc<dyn Clock>, cache: u64) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("store");
        let durability = match mode {
            Mode::Background => Durability::Periodic(Duration::from_secs(1)),
            Mode::Durable => Durability::Immediate,
        };
        let store = Config::new(&path)
            .engine(engine)
            .durability(durability)
            .cache_capacity(cache)
            .idle_timeout(IDLE)
            .reap_interval(None)
            .touch_granularity(Duration::from_micros(1))
            .clock(clock)
            .open()
            .expect("opening the store");
        let label = format!("store ({})", engine.name());
        StoreContender {
            store,
            label,
            path,
            _dir: Some(dir),
        }
    }

    /// `config`'s store, whose directory is `path` (made and removed by the
    /// caller), labelled `label`.
    pub fn at(config: Config, path: &Path, label: &str) -> Self {
        StoreContender {
            store: config.open().expect("opening the store"),
            label: label.to_owned(),
            path: path.to_path_buf(),
            _dir: None,
        }
    }

    /// The store itself.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Contender for StoreContender {
    type Scope = Session;

    fn label(&self) -> String {
        self.label.clone()
    }

    fn create(&self) -> Session {
        self.store.create().expect("create")
    }

    fn open(&self, sid: &str, component: Option<&str>) -> Session {
        self.store
            .get(sid, component)
            .expect("get")
            .expect("a live session")
    }

    fn sid<'a>(&self, scope: &'a Session) -> &'a str {
        scope.id()
    }

    fn save(&self, scope: &mut Session, values: &[(&str, Vec<u8>)]) {
        for (key, value) in values {
            scope.set_raw(key, value.clone()).expect("set_raw");
        }
        self.store.save(scope).expect("save");
    }

    fn get(&self, sid: &str, component: Option<&str>) -> usize {
        self.store
            .get(sid, component)
            .expect("get")
            .map_or(0, |s| s.len())
    }

    fn destroy(&self, sid: &str) -> bool {
        self.store.destroy(sid).expect("destroy")
    }

    fn touch(&self, sid: &str) -> bool {
        self.store.touch(sid).expect("touch")
    }

    fn regenerate(&self, sid: &str) -> String {
        self.store.regenerate(sid).expect("regenerate")
    }

    fn reap(&self) -> usize {
        self.store.reap_expired().expect("reap_expired")
    }

    fn flush(&self) {
        self.store.flush().expect("flush");
    }

    fn dir(&self) -> &Path {
        &self.path
    }
}

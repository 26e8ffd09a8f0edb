//! The state every handle of one store shares, and the operations' building
//! blocks: locks and settings here; time (`time`), metadata and engine reads
//! (`read`), the one write path (`writes`) and the statistics (`counters`)
//! in their own files.

mod access;
mod counters;
mod principals;
mod read;
mod time;
mod writes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{RwLockReadGuard, RwLockWriteGuard};

use crate::clock::{self, Clock};
use crate::embedded::backend::Backend;
use crate::embedded::commit::Committer;
use crate::embedded::config::Config;
use crate::embedded::journal::Segments;
use crate::embedded::metacache::MetaCache;
use crate::embedded::open;
use crate::embedded::write::WriteSet;
use crate::engine::Engine;
use crate::error::Result;
use crate::events::Events;
use crate::id::{IdSource, OsRandom};
use crate::locks::{Locks, ManyGuard, PairGuard};
use crate::meta::Policy;

/// Substitutes for the engine and the id source: tests inside the crate pass
/// them to [`Core::open`]; every other caller passes the default.
#[derive(Default)]
pub(crate) struct Parts {
    pub backend: Option<Arc<dyn Backend>>,
    pub ids: Option<Arc<dyn IdSource>>,
    /// The journal's segments (a simulated disk); default: files in the store's directory.
    pub journal: Option<Arc<dyn Segments>>,
    /// Batches go straight to the engine, with no overlay in front of it:
    /// for tests of what the commit path does when the engine itself fails
    /// or hangs under a write.
    pub write_through: bool,
}

/// Shared by every `Store` handle and by the reaper thread.
/// `Drop` stops the commit thread first; then field order is drop order: the
/// engine closes before the lock file and the temporary directory go.
pub(crate) struct Core {
    /// The commit thread and write path.
    committer: Committer,
    engine: Engine,
    backend: Arc<dyn Backend>,
    locks: Locks,
    /// Per principal name: held exclusively by `sessions_of` and
    /// `destroy_all_of`, shared by the writes that add or move its entries.
    principals: Locks,
    metas: MetaCache,
    clock: Arc<dyn Clock>,
    /// The latest time the store has read, in microseconds: "now" never
    /// goes below it (see `Clock`). Written with every batch.
    /// Shared with the committer, which stamps it on every batch it applies.
    floor: Arc<AtomicU64>,
    policy: Policy,
    max_value_size: usize,
    update_attempts: u32,
    ids: Arc<dyn IdSource>,
    reaped: AtomicU64,
    failed_reaps: AtomicU64,
    /// The next scope version to write: random at open, then counting up, so
    /// that no two writes of a scope, in this process or another, share one.
    versions: AtomicU64,
    /// The subscribers, and the reaper's `Expired` events waiting for its flush.
    events: Events,
    path: PathBuf,
    lock: Option<std::fs::File>,
    temp: Option<tempfile::TempDir>,
}

impl Drop for Core {
    /// Writes the time floor if reads moved it since the last write, then
    /// stops the commit thread. If that thread may still be inside the engine
    /// (see `Committer::shut_down`), the engine stays open under it, so the
    /// lock file stays held and a temporary directory is kept: no other store
    /// may open those files while a write can still land in them.
    fn drop(&mut self) {
        // Keep a floor that reads moved, so that a clock that is behind after
        // the reopen cannot bring back what this store already saw expire.
        if !self.committer.is_stalled()
            && self.floor.load(Ordering::Acquire) > self.committer.stamped_floor()
            && let Err(e) = self.write(WriteSet::default())
        {
            log::warn!("sessionstore: could not write the time floor at close: {e}");
        }
        let stopped = self.committer.shut_down();
        if !stopped {
            if let Some(lock) = self.lock.take() {
                std::mem::forget(lock);
            }
            if let Some(temp) = self.temp.take() {
                let kept = temp.keep();
                log::error!(
                    "sessionstore: keeping {} while a write may still land in it",
                    kept.display()
                );
            }
        }
    }
}

impl Core {
    /// Validates `config`, opens its directory and engine (see `open`), and
    /// starts the commit thread.
    pub fn open(config: &Config, parts: Parts) -> Result<Core> {
        config.validate()?;
        let opened = open::open(config, parts.backend, parts.journal, parts.write_through)?;
        let floor = Arc::new(AtomicU64::new(opened.floor));
        let committer = Committer::start(
            opened.backend.clone(),
            opened.journal,
            opened.reserve,
            floor.clone(),
            config.durability,
            config.write_timeout,
        )?;
        let micros = clock::duration_micros;
        Ok(Core {
            committer,
            engine: opened.engine,
            backend: opened.backend,
            locks: Locks::new(),
            principals: Locks::new(),
            metas: MetaCache::new(config.meta_cache_entries),
            clock: config.clock.clone(),
            floor,
            policy: Policy {
                idle: micros(config.idle_timeout),
                absolute: config.absolute_timeout.map(micros),
                touch_granularity: micros(config.effective_touch_granularity()),
            },
            max_value_size: config.max_value_size,
            update_attempts: config.update_attempts,
            ids: parts.ids.unwrap_or_else(|| Arc::new(OsRandom)),
            reaped: AtomicU64::new(0),
            failed_reaps: AtomicU64::new(0),
            versions: AtomicU64::new(crate::meta::fresh_incarnation()?),
            events: Events::new(config.event_capacity),
            path: opened.path,
            lock: opened.lock,
            temp: opened.temp,
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The storage engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The largest value this store writes, in bytes.
    pub fn max_value_size(&self) -> usize {
        self.max_value_size
    }

    /// How many times `update` tries.
    pub fn update_attempts(&self) -> u32 {
        self.update_attempts
    }

    /// How new records are made and when a deadline moved enough to write.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A scope version no write has used: never 0, which means "never written".
    pub fn next_version(&self) -> u64 {
        loop {
            let v = self.versions.fetch_add(1, Ordering::Relaxed);
            if v != 0 {
                return v;
            }
        }
    }

    /// The store's event subscribers.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// A fresh session id.
    pub fn next_id(&self) -> Result<String> {
        self.ids.next_id()
    }

    /// Locks session `sid` for reading: no writer of it runs meanwhile.
    pub fn lock_shared(&self, sid: &str) -> RwLockReadGuard<'_, ()> {
        self.locks.read(sid)
    }

    /// Locks session `sid` for writing: check-then-write is atomic under it.
    pub fn lock(&self, sid: &str) -> RwLockWriteGuard<'_, ()> {
        self.locks.write(sid)
    }

    /// Locks two sessions for writing, without deadlock.
    pub fn lock_pair(&self, a: &str, b: &str) -> PairGuard<'_> {
        self.locks.write_pair(a, b)
    }

    /// Locks principal `name`'s index: while held, no other call adds or
    /// moves an entry of it (`sessions_of`, `destroy_all_of`). Taken before
    /// any session's lock.
    pub fn lock_principal(&self, name: &str) -> RwLockWriteGuard<'_, ()> {
        self.principals.write(name)
    }

    /// Shared holds of the indexes of `names`, for a write that adds or moves
    /// their entries while it holds session locks; `None` if one is held
    /// exclusively. Then the caller must release its session locks, call
    /// [`wait_principals`](Self::wait_principals) and start again: blocking
    /// here, under session locks, could deadlock with the holder.
    pub fn try_share_principals(&self, names: &[&str]) -> Option<Vec<RwLockReadGuard<'_, ()>>> {
        names.iter().map(|n| self.principals.try_read(n)).collect()
    }

    /// Waits until no call holds the index of any of `names` exclusively.
    /// The caller holds no session lock.
    pub fn wait_principals(&self, names: &[&str]) {
        for name in names {
            drop(self.principals.read(name));
        }
    }

    /// Locks many sessions for writing, in stripe order, without deadlock.
    pub fn lock_many<'s>(&self, sids: impl Iterator<Item = &'s str>) -> ManyGuard<'_> {
        self.locks.write_many(sids)
    }
}

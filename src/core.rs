//! The state every handle of one store shares, and the operations' building
//! blocks: locks, time, metadata reads through the cache, engine reads, and
//! the one write path.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{RwLockReadGuard, RwLockWriteGuard};

use crate::backend::{Backend, Engine, Entry};
use crate::clock::{self, Clock};
use crate::codec;
use crate::commit::{Applier, Committer};
use crate::config::Config;
use crate::error::Result;
use crate::id::{IdSource, OsRandom};
use crate::keys;
use crate::locks::{Locks, PairGuard};
use crate::meta::{Meta, Policy};
use crate::metacache::MetaCache;
use crate::open;
use crate::write::WriteSet;

/// Substitutes for the engine and the id source: tests inside the crate pass
/// them to [`Core::open`]; every other caller passes the default.
#[derive(Default)]
pub(crate) struct Parts {
    pub backend: Option<Arc<dyn Backend>>,
    pub ids: Option<Arc<dyn IdSource>>,
}

/// Shared by every `Store` handle and by the reaper thread.
/// `Drop` stops the commit thread first; then field order is drop order: the
/// engine closes before the lock file and the temporary directory go.
pub(crate) struct Core {
    committer: Committer,
    engine: Engine,
    backend: Arc<dyn Backend>,
    locks: Locks,
    metas: MetaCache,
    clock: Arc<dyn Clock>,
    /// The latest time the store has read, in microseconds: "now" never
    /// goes below it (see `Clock`). Written with every batch.
    floor: AtomicU64,
    /// The floor the latest acknowledged write carried.
    written_floor: AtomicU64,
    policy: Policy,
    max_value_size: usize,
    ids: Arc<dyn IdSource>,
    reaped: AtomicU64,
    failed_reaps: AtomicU64,
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
            && self.floor.load(Ordering::Acquire) > self.written_floor.load(Ordering::Acquire)
            && let Err(e) = self.write(WriteSet::default())
        {
            log::warn!("sessionstore: could not write the time floor at close: {e}");
        }
        if !self.committer.shut_down() {
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
        let opened = open::open(config, parts.backend)?;
        let committer = Committer::start(
            opened.backend.clone(),
            config.durability,
            config.write_timeout,
        )?;
        let micros = clock::duration_micros;
        Ok(Core {
            committer,
            engine: opened.engine,
            backend: opened.backend,
            locks: Locks::new(),
            metas: MetaCache::new(config.meta_cache_entries),
            clock: config.clock.clone(),
            floor: AtomicU64::new(opened.floor),
            written_floor: AtomicU64::new(opened.floor),
            policy: Policy {
                idle: micros(config.idle_timeout),
                absolute: config.absolute_timeout.map(micros),
                touch_granularity: micros(config.effective_touch_granularity()),
            },
            max_value_size: config.max_value_size,
            ids: parts.ids.unwrap_or_else(|| Arc::new(OsRandom)),
            reaped: AtomicU64::new(0),
            failed_reaps: AtomicU64::new(0),
            path: opened.path,
            lock: Some(opened.lock),
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

    /// How new records are made and when a deadline moved enough to write.
    pub fn policy(&self) -> &Policy {
        &self.policy
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

    /// Now, in microseconds since the epoch: the clock, but never earlier
    /// than any time this store has read before (see `Clock`).
    pub fn now(&self) -> u64 {
        let clock = clock::micros(self.clock.now());
        self.floor.fetch_max(clock, Ordering::AcqRel).max(clock)
    }

    /// The metadata record of `sid`, whether or not it has expired.
    /// The caller holds the session's lock (shared or not), which makes it
    /// safe to fill the cache from the engine.
    ///
    /// Once a write has timed out the cache is bypassed: the timed-out batch
    /// may still land, and only the engine knows when.
    pub fn read_meta(&self, sid: &str) -> Result<Option<Meta>> {
        let use_cache = !self.committer.is_stalled();
        if use_cache && let Some(meta) = self.metas.get(sid) {
            return Ok(Some(meta));
        }
        match self.backend.get(&keys::meta(sid))? {
            Some(bytes) => {
                let meta = codec::decode_meta(sid, &bytes)?;
                if use_cache {
                    self.metas.insert(sid, meta);
                }
                Ok(Some(meta))
            }
            None => Ok(None),
        }
    }

    /// The metadata record of `sid` if the session is live at `now`.
    pub fn live_meta(&self, sid: &str, now: u64) -> Result<Option<Meta>> {
        Ok(self.read_meta(sid)?.filter(|m| m.is_live(now)))
    }

    /// Calls `visit` with every entry under `prefix`, in place (see `Backend::visit_prefix`).
    pub fn visit_prefix(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        self.backend.visit_prefix(prefix, visit)
    }

    /// Every entry under `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        self.backend.scan_prefix(prefix)
    }

    /// Up to `limit` entries of a key range (see `Backend::scan_range`).
    pub fn scan_range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        self.backend.scan_range(start, end, limit)
    }

    /// Walks a key range a chunk at a time (see `Backend::walk`).
    pub fn walk(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        chunk: usize,
        more: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<()> {
        self.backend.walk(start, end, chunk, more, visit)
    }

    /// Writes `set` atomically at the store's durability. The caller holds
    /// the lock of every session it touches.
    pub fn write(&self, set: WriteSet) -> Result<()> {
        self.commit(set, |c, batch| c.write(batch))
    }

    /// Writes `set` atomically without waiting for a flush, on the thread
    /// `applier` allows: for the reaper, which flushes once per pass.
    pub fn write_unflushed(&self, set: WriteSet, applier: Applier) -> Result<()> {
        self.commit(set, |c, batch| c.write_unflushed(batch, applier))
    }

    /// The one write path: adds the time floor to the batch, hands it to the
    /// committer, and brings the metadata cache in step (see `metacache`).
    fn commit(
        &self,
        set: WriteSet,
        submit: impl FnOnce(&Committer, crate::backend::Batch) -> Result<()>,
    ) -> Result<()> {
        let floor = self.floor.load(Ordering::Acquire);
        let mut set = set;
        set.put(keys::CLOCK_KEY.to_vec(), codec::encode_time(floor));
        let (batch, metas) = set.into_parts();
        let result = submit(&self.committer, batch);
        if result.is_ok() {
            self.written_floor.fetch_max(floor, Ordering::AcqRel);
        }
        for (sid, meta) in metas {
            match (&result, meta) {
                (Ok(()), Some(meta)) => self.metas.insert(&sid, meta),
                _ => self.metas.remove(&sid),
            }
        }
        result
    }

    /// Makes every acknowledged write durable now.
    pub fn flush(&self) -> Result<()> {
        self.committer.flush()
    }

    /// Adds to `set` the deletion of every key of `sid`, its metadata record
    /// and, if its record `meta` is known, its index entry.
    pub fn delete_session(&self, set: &mut WriteSet, sid: &str, meta: Option<&Meta>) -> Result<()> {
        let record = keys::meta(sid);
        let mut has_record = false;
        for (key, _) in self.backend.scan_prefix(&keys::session_prefix(sid))? {
            if key == record {
                has_record = true;
            } else {
                set.delete(key);
            }
        }
        // A session that is not there writes nothing.
        if has_record || meta.is_some() {
            set.delete_meta(sid, meta);
        }
        Ok(())
    }

    /// Adds to `set` the deletion of every expiry index entry of `sid`,
    /// found by walking the whole index: for a session whose metadata is
    /// unreadable, so its deadline unknown. Only corruption takes this path.
    pub fn delete_index_entries_of(&self, set: &mut WriteSet, sid: &str) -> Result<()> {
        self.walk(
            &keys::index_start(),
            Some(&keys::index_end()),
            1024,
            &|| true,
            &mut |key, _| {
                if matches!(keys::parse(key), keys::Parsed::Index { sid: s, .. } if s == sid) {
                    set.delete(key.to_vec());
                }
            },
        )
    }

    /// Counts sessions a reap pass deleted.
    pub fn count_reaped(&self, n: usize) {
        self.reaped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts a failed reaper thread pass.
    pub fn count_failed_reap(&self) {
        self.failed_reaps.fetch_add(1, Ordering::Relaxed);
    }

    /// Sessions reaped since open.
    pub fn reaped(&self) -> u64 {
        self.reaped.load(Ordering::Relaxed)
    }

    /// Failed reaper thread passes since open.
    pub fn failed_reaps(&self) -> u64 {
        self.failed_reaps.load(Ordering::Relaxed)
    }

    /// Batches applied since open.
    pub fn writes(&self) -> u64 {
        self.committer.writes()
    }

    /// Flushes made since open.
    pub fn flushes(&self) -> u64 {
        self.committer.flushes()
    }

    /// Bytes the engine's files take on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.backend.size_on_disk()
    }

    /// The configured `write_timeout`: also how long a drop waits for a thread.
    pub fn write_timeout(&self) -> Duration {
        self.committer.timeout()
    }

    /// Requests queued for the commit thread and not answered yet.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.committer.queued()
    }
}

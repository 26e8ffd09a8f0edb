//! The state every handle of one store shares, how it is opened, and the
//! helpers the operations are built from.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::{self, Backend, Batch};
use crate::clock::{self, Clock};
use crate::codec;
use crate::commit::{Applier, Committer};
use crate::config::{Config, Engine};
use crate::error::{Error, Result};
use crate::id::{IdSource, OsRandom};
use crate::keys;
use crate::locks::Locks;
use crate::meta::Meta;
use crate::metacache::MetaCache;

/// The name of the lock file in the store's directory.
const LOCK_FILE: &str = "sessionstore.lock";
/// The format version written in the format marker.
const FORMAT_VERSION: u8 = 1;

/// Expiry settings in microseconds, resolved from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub idle: Option<u64>,
    pub absolute: Option<u64>,
    pub touch_granularity: u64,
}

/// Shared by every `Store` handle and by the reaper thread.
/// `Drop` stops the commit thread first; then field order is drop order: the
/// engine closes before the lock file and the temporary directory go.
pub(crate) struct Core {
    pub committer: Committer,
    pub backend: Arc<dyn Backend>,
    pub locks: Locks,
    pub metas: MetaCache,
    pub clock: Arc<dyn Clock>,
    pub timeouts: Timeouts,
    pub max_value_size: usize,
    pub ids: Arc<dyn IdSource>,
    pub reaped: AtomicU64,
    /// The latest time the store has read, in microseconds: "now" never
    /// goes below it (see `Clock`). Written with every batch.
    floor: AtomicU64,
    /// The floor the latest acknowledged write carried.
    written_floor: AtomicU64,
    pub failed_reaps: AtomicU64,
    pub path: PathBuf,
    _lock: Option<File>,
    _temp: Option<tempfile::TempDir>,
}

impl Drop for Core {
    /// Stops the commit thread first. If it may still be inside the engine
    /// (see `Committer::shut_down`), the engine stays open under it, so the
    /// lock file stays held and a temporary directory is kept: no other store
    /// may open those files while a write can still land in them.
    fn drop(&mut self) {
        // Reads may have moved the time floor past the last write: keep it,
        // so that a clock that is behind after the reopen cannot bring back
        // what this store already saw expire.
        if !self.committer.is_stalled()
            && self.floor.load(Ordering::Acquire) > self.written_floor.load(Ordering::Acquire)
            && let Err(e) = self.write(Batch::default())
        {
            log::warn!("sessionstore: could not write the time floor at close: {e}");
        }
        if !self.committer.shut_down() {
            if let Some(lock) = self._lock.take() {
                std::mem::forget(lock);
            }
            if let Some(temp) = self._temp.take() {
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
    /// Opens the directory of `config`, locks it, opens the engine and starts the commit thread.
    pub fn open(config: &Config) -> Result<Core> {
        config.validate()?;
        let temp = if config.temporary {
            Some(tempfile::tempdir().map_err(|e| Error::Io {
                path: std::env::temp_dir(),
                source: e,
            })?)
        } else {
            None
        };
        let path = temp
            .as_ref()
            .map_or_else(|| config.path.clone(), |t| t.path().to_path_buf());
        let engine = prepare_dir(&path, config.engine)?;
        let lock = lock_dir(&path)?;
        let backend = open_backend(&path, engine, config)?;
        check_format(&*backend, &path)?;
        let floor = read_floor(&*backend)?;
        let committer = Committer::start(backend.clone(), config.durability, config.write_timeout)?;
        let micros = |d: Duration| clock::duration_micros(d);
        Ok(Core {
            committer,
            backend,
            locks: Locks::new(),
            metas: MetaCache::new(config.meta_cache_entries),
            clock: config.clock.clone(),
            timeouts: Timeouts {
                idle: Some(micros(config.idle_timeout)),
                absolute: config.absolute_timeout.map(micros),
                touch_granularity: micros(config.effective_touch_granularity()),
            },
            max_value_size: config.max_value_size,
            ids: {
                #[cfg(test)]
                let ids = config
                    .test_ids
                    .clone()
                    .unwrap_or_else(|| Arc::new(OsRandom));
                #[cfg(not(test))]
                let ids = Arc::new(OsRandom);
                ids
            },
            reaped: AtomicU64::new(0),
            floor: AtomicU64::new(floor),
            written_floor: AtomicU64::new(floor),
            failed_reaps: AtomicU64::new(0),
            path,
            _lock: Some(lock),
            _temp: temp,
        })
    }

    /// Now, in microseconds since the epoch: the clock, but never earlier
    /// than any time this store has read before (see `Clock`).
    pub fn now(&self) -> u64 {
        let clock = clock::micros(self.clock.now());
        self.floor.fetch_max(clock, Ordering::AcqRel).max(clock)
    }

    /// The metadata record of `sid`, whether or not it has expired.
    /// The caller holds the session's lock (read or write), which makes it
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

    /// Applies `batch` atomically; with `Durability::Immediate`, returns once
    /// it is flushed. The caller holds the lock of every session it touches.
    pub fn write(&self, batch: Batch) -> Result<()> {
        let durable = self.committer.is_durable();
        self.write_with(batch, durable, Applier::CallerIfFree)
    }

    /// Applies `batch` atomically, flushed before returning if `durable`, on
    /// the thread `applier` allows, and brings the metadata cache in step
    /// with it (see `metacache`).
    pub fn write_with(&self, batch: Batch, durable: bool, applier: Applier) -> Result<()> {
        // The batch moves to the committer: note first which records it
        // puts (decoded) or deletes. A put that does not decode (only
        // `__write_raw` writes such) is treated as a deletion: not cached.
        let touched: Vec<(String, Option<Meta>)> = batch
            .ops()
            .iter()
            .filter_map(|(key, value)| {
                let sid = keys::meta_sid(key)?;
                let meta = value
                    .as_deref()
                    .and_then(|bytes| codec::decode_meta(sid, bytes).ok());
                Some((sid.to_owned(), meta))
            })
            .collect();
        let mut batch = batch;
        let floor = self.floor.load(Ordering::Acquire);
        batch.put(keys::CLOCK_KEY.to_vec(), codec::encode_time(floor));
        let result = self.committer.write_with(batch, durable, applier);
        if result.is_ok() {
            self.written_floor.fetch_max(floor, Ordering::AcqRel);
        }
        for (sid, meta) in touched {
            match (&result, meta) {
                (Ok(()), Some(meta)) => self.metas.insert(&sid, meta),
                _ => self.metas.remove(&sid),
            }
        }
        result
    }

    /// The metadata record of `sid` if the session is live at `now`.
    pub fn live_meta(&self, sid: &str, now: u64) -> Result<Option<Meta>> {
        Ok(self.read_meta(sid)?.filter(|m| m.is_live(now)))
    }

    /// Adds to `batch` what writing `new` as the metadata of `sid` takes:
    /// the record, and its expiry index entry moved from where `old` had it.
    pub fn put_meta(batch: &mut Batch, sid: &str, old: Option<&Meta>, new: &Meta) {
        batch.put(keys::meta(sid), codec::encode_meta(new));
        match old {
            Some(old) if old.index_deadline() == new.index_deadline() => {}
            Some(old) => {
                batch.delete(keys::index(old.index_deadline(), sid));
                batch.put(keys::index(new.index_deadline(), sid), Vec::new());
            }
            None => batch.put(keys::index(new.index_deadline(), sid), Vec::new()),
        }
    }

    /// Adds to `batch` the deletion of every key of `sid` and of its index entry.
    pub fn delete_session(&self, batch: &mut Batch, sid: &str, meta: Option<&Meta>) -> Result<()> {
        for (key, _) in self.backend.scan_prefix(&keys::session_prefix(sid))? {
            batch.delete(key);
        }
        if let Some(m) = meta {
            batch.delete(keys::index(m.index_deadline(), sid));
        }
        Ok(())
    }

    /// Calls `visit` with every entry with `start <= key < end` (no upper
    /// bound if `end` is `None`), in key order, reading `chunk` entries at a
    /// time. `more` is asked between chunks; the walk ends when it says no.
    pub fn walk(
        &self,
        mut start: Vec<u8>,
        end: Option<&[u8]>,
        chunk: usize,
        more: &dyn Fn() -> bool,
        mut visit: impl FnMut(&[u8], &[u8]),
    ) -> Result<()> {
        loop {
            let entries = self.backend.scan_range(&start, end, chunk)?;
            for (key, value) in &entries {
                visit(key, value);
            }
            match entries.last() {
                Some((last, _)) if entries.len() == chunk && more() => {
                    start = last.clone();
                    start.push(0);
                }
                _ => return Ok(()),
            }
        }
    }

    /// Adds to `batch` the deletion of every expiry index entry of `sid`,
    /// found by walking the whole index: for a session whose metadata is
    /// unreadable, so its deadline unknown. Only corruption takes this path.
    pub fn delete_index_entries_of(&self, batch: &mut Batch, sid: &str) -> Result<()> {
        self.walk(
            keys::index_start(),
            Some(&keys::index_end()),
            1024,
            &|| true,
            |key, _| {
                if matches!(keys::parse(key), keys::Parsed::Index { sid: s, .. } if s == sid) {
                    batch.delete(key.to_vec());
                }
            },
        )
    }

    /// A random incarnation number for a new session record.
    pub fn fresh_incarnation() -> Result<u64> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::storage("drawing a random incarnation number", e.to_string()))?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// A new metadata record for a session created at `now`.
    pub fn new_meta(&self, now: u64) -> Result<Meta> {
        Ok(Meta {
            created: now,
            last_access: now,
            idle: self.timeouts.idle,
            absolute_deadline: self.timeouts.absolute.map(|a| now.saturating_add(a)),
            incarnation: Self::fresh_incarnation()?,
        })
    }

    /// Whether moving the deadline from `old` to `new` is worth a write: a
    /// move of at least the touch granularity, capped at half the session's
    /// idle timeout so that touches always keep a session in use alive.
    pub fn moves_enough(&self, old: &Meta, new: &Meta) -> bool {
        let half_idle = old.idle.map_or(u64::MAX, |i| i / 2);
        let granularity = self.timeouts.touch_granularity.min(half_idle).max(1);
        match (old.deadline(), new.deadline()) {
            (Some(a), Some(b)) => b.abs_diff(a) >= granularity,
            (a, b) => a != b,
        }
    }
}

/// Creates the directory, or checks that it holds nothing or one store.
/// Returns the engine to open: the one asked for, else the one whose store is
/// there, else the default.
fn prepare_dir(path: &Path, wanted: Option<Engine>) -> Result<Engine> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_a_store = |reason: String| Error::NotAStore {
        path: path.to_path_buf(),
        reason,
    };
    let fresh = wanted.unwrap_or_default();
    match fs::metadata(path) {
        Ok(m) if !m.is_dir() => return Err(not_a_store("it is a file, not a directory".into())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(path).map_err(io)?;
            return Ok(fresh);
        }
        Err(e) => return Err(io(e)),
    }
    let names: Vec<String> = fs::read_dir(path)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let holds = |e: Engine| {
        let markers = backend::marker_files(e);
        !markers.is_empty() && markers.iter().all(|m| names.iter().any(|n| n == m))
    };
    match (wanted, Engine::ALL.iter().copied().find(|e| holds(*e))) {
        (None, Some(found)) => return Ok(found),
        (Some(w), Some(found)) if w == found => return Ok(found),
        (Some(w), Some(found)) => {
            return Err(not_a_store(format!(
                "it holds a {} store, and this one was configured for {}; open it with Config::engine(Engine::{:?})",
                found.name(),
                w.name(),
                found
            )));
        }
        (_, None) => {}
    }
    match names.iter().find(|n| n.as_str() != LOCK_FILE) {
        None => Ok(fresh),
        Some(other) => Err(not_a_store(format!(
            "the directory holds other files, such as {other:?}, and no store"
        ))),
    }
}

/// Takes the store's lock file. A lock that is busy is tried again for a
/// short while: a process that forks a child while another of its threads
/// closes a store lends the child the lock for the moment before `exec`.
fn lock_dir(path: &Path) -> Result<File> {
    const ATTEMPTS: u32 = 10;
    let lock_path = path.join(LOCK_FILE);
    let file = File::create(&lock_path).map_err(|source| Error::Io {
        path: lock_path.clone(),
        source,
    })?;
    for attempt in 1..=ATTEMPTS {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if attempt < ATTEMPTS => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => break,
            Err(TryLockError::Error(source)) => {
                return Err(Error::Io {
                    path: lock_path,
                    source,
                });
            }
        }
    }
    Err(Error::InUse {
        path: path.to_path_buf(),
    })
}

fn open_backend(path: &Path, engine: Engine, config: &Config) -> Result<Arc<dyn Backend>> {
    #[cfg(test)]
    if let Some(b) = &config.test_backend {
        return Ok(b.clone());
    }
    backend::open(engine, path, config.cache_capacity)
}

/// The time floor the store last wrote; 0 for a new store. An unreadable
/// record is logged and read as 0: the clock then decides alone.
fn read_floor(backend: &dyn Backend) -> Result<u64> {
    Ok(match backend.get(keys::CLOCK_KEY)? {
        Some(bytes) => codec::decode_time(&bytes).unwrap_or_else(|| {
            log::warn!("sessionstore: ignoring an unreadable time floor record {bytes:?}");
            0
        }),
        None => 0,
    })
}

/// Reads the format marker; writes it into a new, empty database.
fn check_format(backend: &dyn Backend, path: &Path) -> Result<()> {
    let not_a_store = |reason: String| Error::NotAStore {
        path: path.to_path_buf(),
        reason,
    };
    match backend.get(keys::FORMAT_KEY)? {
        Some(v) if v.first() == Some(&FORMAT_VERSION) => Ok(()),
        Some(v) => Err(not_a_store(format!(
            "its format version {:?} is not one this version reads ({FORMAT_VERSION})",
            v.first()
        ))),
        None if backend.scan_range(&[], None, 1)?.is_empty() => {
            let mut batch = Batch::default();
            let mut marker = vec![FORMAT_VERSION];
            marker.extend_from_slice(backend.name().as_bytes());
            batch.put(keys::FORMAT_KEY.to_vec(), marker);
            backend.apply(&batch)?;
            backend.flush()
        }
        None => Err(not_a_store(format!(
            "it is a {} database without the sessionstore format marker",
            backend.name()
        ))),
    }
}

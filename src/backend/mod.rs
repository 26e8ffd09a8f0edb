//! The engine seam: everything the store needs from a storage engine.
//!
//! The rest of the crate sees one ordered key space through [`Backend`]. Each
//! engine lives in a module of its own, and only that module names its crate.

mod engine;
#[cfg(test)]
pub(crate) mod memory;
#[cfg(feature = "redb")]
pub(crate) mod redb;
#[cfg(feature = "sled")]
pub(crate) mod sled;

#[cfg(not(any(feature = "sled", feature = "redb")))]
compile_error!("sessionstore needs an engine: enable the cargo feature `sled`, `redb`, or both");

use std::path::Path;
use std::sync::Arc;

use crate::error::Result;
pub use engine::Engine;

/// Opens `engine`'s database in directory `dir` for writing. With
/// `live_readers`, an engine that can share its files with read-only handles
/// in other processes (redb) opens them so; sled cannot and ignores it.
pub(crate) fn open(
    engine: Engine,
    dir: &Path,
    cache_capacity: u64,
    live_readers: bool,
) -> Result<Arc<dyn Backend>> {
    match engine {
        #[cfg(feature = "sled")]
        Engine::Sled => {
            let _ = live_readers;
            Ok(Arc::new(sled::SledBackend::open(dir, cache_capacity)?))
        }
        #[cfg(feature = "redb")]
        Engine::Redb => {
            let sharing = if live_readers {
                redb::Sharing::LiveReaders
            } else {
                redb::Sharing::Exclusive
            };
            Ok(Arc::new(redb::RedbBackend::open(
                dir,
                cache_capacity,
                sharing,
            )?))
        }
    }
}

/// Opens `engine`'s existing database in directory `dir` read-only, beside
/// a writer in another process or none, creating and writing nothing.
///
/// # Errors
///
/// [`Error::ReadOnlyUnsupported`](crate::Error::ReadOnlyUnsupported) for
/// sled, which lets one process at a time open its files.
pub(crate) fn open_read_only(
    engine: Engine,
    dir: &Path,
    cache_capacity: u64,
) -> Result<Arc<dyn Backend>> {
    match engine {
        #[cfg(feature = "sled")]
        Engine::Sled => {
            let _ = cache_capacity;
            Err(crate::Error::ReadOnlyUnsupported {
                path: dir.to_path_buf(),
                engine: engine.name(),
            })
        }
        #[cfg(feature = "redb")]
        Engine::Redb => Ok(Arc::new(redb::RedbBackend::open_read_only(
            dir,
            cache_capacity,
        )?)),
    }
}

/// The files whose presence in a directory marks a database of `engine`.
pub(crate) fn marker_files(engine: Engine) -> &'static [&'static str] {
    match engine {
        #[cfg(feature = "sled")]
        Engine::Sled => sled::MARKER_FILES,
        #[cfg(feature = "redb")]
        Engine::Redb => redb::MARKER_FILES,
    }
}

/// Whether `name` is what an engine leaves behind when a crash interrupts
/// the creation of a new store (the engine replaces it on the next open), so
/// that a directory holding only it still counts as empty.
pub(crate) fn is_creation_leftover(name: &str) -> bool {
    #[cfg(feature = "redb")]
    if name == redb::NEW_FILE {
        return true;
    }
    let _ = name;
    false
}

/// The message of a panic payload caught by an engine's `catch_unwind`.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("no message")
}

/// One stored key and its value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// Puts and deletes that an engine applies atomically, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// Stores `value` under `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    /// Deletes `key`, if it is there.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends every operation of `other`, after those already here.
    pub fn append(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }

    /// The operations in order: a value to put, or `None` to delete.
    pub fn ops(&self) -> &[(Vec<u8>, Option<Vec<u8>>)] {
        &self.ops
    }
}

/// An ordered key space with atomic batches.
pub(crate) trait Backend: Send + Sync + 'static {
    /// The engine's name, as `Config::engine` spells it.
    fn name(&self) -> &'static str;
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Calls `visit` with every entry whose key starts with `prefix`, in key
    /// order, as the engine holds it: nothing is copied unless `visit` copies
    /// it. `visit` must not call back into the engine.
    fn visit_prefix(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        self.visit_prefix(prefix, &mut |k, v| entries.push((k.to_vec(), v.to_vec())))?;
        Ok(entries)
    }
    /// Up to `limit` entries with `start <= key < end` (no upper bound if
    /// `end` is `None`), in key order.
    fn scan_range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>>;
    /// Calls `visit` with every entry with `start <= key < end` (no upper
    /// bound if `end` is `None`), in key order, reading `chunk` entries at a
    /// time, so that `visit` may write between chunks. `more` is asked
    /// between chunks; the walk ends when it says no.
    fn walk(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        chunk: usize,
        more: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<()> {
        let mut start = start.to_vec();
        loop {
            let entries = self.scan_range(&start, end, chunk)?;
            for (key, value) in &entries {
                visit(key, value);
            }
            match entries.last() {
                Some((last, _)) if entries.len() == chunk && more() => {
                    start.clone_from(last);
                    start.push(0);
                }
                _ => return Ok(()),
            }
        }
    }
    /// Applies every operation of `batch`, all or nothing.
    fn apply(&self, batch: &Batch) -> Result<()>;
    /// Applies `batch` as [`apply`](Self::apply) does and makes it, and every
    /// batch applied before it, durable: what `apply` then
    /// [`flush`](Self::flush) do, which is the default. An engine that can
    /// commit a batch durably in one step (redb) overrides it. On an error
    /// the batch may or may not have been applied, and nothing is known to
    /// be durable.
    fn apply_durable(&self, batch: &Batch) -> Result<()> {
        self.apply(batch)?;
        self.flush()
    }
    /// Makes every applied batch durable.
    fn flush(&self) -> Result<()>;
    /// Bytes the engine's files take on disk.
    fn size_on_disk(&self) -> Result<u64>;
}

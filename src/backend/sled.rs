//! The sled 0.34 engine: one tree, the default one, in sled's files `conf`
//! and `db` (plus its `blobs/` and `snap.*`) in the store's directory.
//!
//! # Durability
//!
//! [`apply`](Backend::apply) is `apply_batch`: atomic and visible at once,
//! but may sit in sled's in-memory log buffers until [`flush`](Backend::flush) writes
//! those buffers out and, on Linux, calls `sync_file_range`, which pushes the
//! data to the device but neither makes the file system's metadata durable
//! nor flushes the drive's volatile cache: it survives a crash of the
//! process, and is weaker than `fsync` against power loss. sled's own
//! background flusher is off; the commit thread decides when to flush.

use std::path::Path;

use super::{Backend, Batch, Entry};
use crate::error::{Error, Result};

/// The files sled keeps in its directory; their presence marks a sled store.
pub(crate) const MARKER_FILES: &[&str] = &["conf", "db"];

/// A sled database with its background flusher off: the commit thread flushes.
pub(crate) struct SledBackend {
    db: sled::Db,
}

impl SledBackend {
    /// Opens or creates the sled database in directory `dir`.
    pub fn open(dir: &Path, cache_capacity: u64) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity)
            .flush_every_ms(None)
            .open()
            .map_err(|e| {
                Error::storage(format!("opening the sled database in {}", dir.display()), e)
            })?;
        Ok(SledBackend { db })
    }
}

fn err(context: &'static str) -> impl FnOnce(sled::Error) -> Error {
    move |e| Error::storage(context, e)
}

fn collect(iter: sled::Iter, limit: usize, context: &'static str) -> Result<Vec<Entry>> {
    iter.take(limit)
        .map(|r| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(err(context))
        })
        .collect()
}

impl Backend for SledBackend {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .db
            .get(key)
            .map_err(err("reading a key"))?
            .map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        collect(self.db.scan_prefix(prefix), usize::MAX, "scanning a prefix")
    }

    fn scan_range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        let iter = match end {
            Some(end) if start >= end => return Ok(Vec::new()),
            Some(end) => self.db.range(start..end),
            None => self.db.range(start..),
        };
        collect(iter, limit, "scanning a range")
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        let mut b = sled::Batch::default();
        for (key, value) in batch.ops() {
            match value {
                Some(v) => b.insert(key.as_slice(), v.as_slice()),
                None => b.remove(key.as_slice()),
            }
        }
        self.db.apply_batch(b).map_err(err("applying a batch"))
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(drop).map_err(err("flushing"))
    }

    fn size_on_disk(&self) -> Result<u64> {
        self.db
            .size_on_disk()
            .map_err(err("measuring the size on disk"))
    }
}

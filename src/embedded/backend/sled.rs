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
//! process, and is weaker than `fsync` against power loss, so `flush` then
//! `fsync`s sled's files itself. sled's own background flusher is off. The
//! store's in-memory overlay sits in front of this engine
//! (`embedded::overlay`): sled sees batches only at checkpoints, in
//! `apply_batch`es of at most [`checkpoint_chunk`](Backend::checkpoint_chunk)
//! operations (sled blocks reads for the whole of one), then one `flush`.

use std::path::Path;

use super::{Backend, Batch, Entry, Op, panic_message};
use crate::error::{Error, Result};

/// The files sled keeps in its directory; their presence marks a sled store.
pub(crate) const MARKER_FILES: &[&str] = &["conf", "db"];

/// A sled database with its background flusher off: checkpoints flush.
pub(crate) struct SledBackend {
    db: sled::Db,
    dir: std::path::PathBuf,
}

impl SledBackend {
    /// Opens or creates the sled database in directory `dir`.
    ///
    /// The caller holds the store's lock file, so no other store has this
    /// directory; a busy sled lock can only be the file of a database this
    /// process just closed, still held by sled's I/O threads for a moment.
    /// Such a lock is waited for, up to about a second. A panic inside sled
    /// (it panics on some damaged files) becomes an error.
    pub fn open(dir: &Path, cache_capacity: u64) -> Result<Self> {
        const ATTEMPTS: u32 = 50;
        let context = || format!("opening the sled database in {}", dir.display());
        for attempt in 1..=ATTEMPTS {
            let opened = std::panic::catch_unwind(|| {
                sled::Config::new()
                    .path(dir)
                    .cache_capacity(cache_capacity)
                    .flush_every_ms(None)
                    .open()
            });
            match opened {
                Ok(Ok(db)) => {
                    return Ok(SledBackend {
                        db,
                        dir: dir.to_path_buf(),
                    });
                }
                Ok(Err(e)) if is_busy_lock(&e) && attempt < ATTEMPTS => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Ok(Err(e)) => return Err(storage_error(context(), e)),
                Err(panic) => {
                    return Err(Error::storage(
                        context(),
                        format!(
                            "sled panicked, the files are damaged: {}",
                            panic_message(&*panic)
                        ),
                    ));
                }
            }
        }
        Err(Error::storage(context(), "sled's lock stayed busy"))
    }
}

impl SledBackend {
    /// Opens the sled database in directory `dir`, if there is one, reads
    /// every key and value in it, and closes it again
    /// (`Config::verify_on_open`).
    ///
    /// sled checks the CRC of every log message it reads: at open, the
    /// messages its recovery replays; later, each page a read loads from
    /// disk. Reading everything loads every page of the tree, so a damaged
    /// page that sled detects fails here, as [`Error::Storage`], instead of
    /// failing a read later. Damage in the log's tail is not found this way:
    /// sled's recovery keeps the longest intact prefix of its log, silently.
    pub fn check(dir: &Path, cache_capacity: u64) -> Result<()> {
        const CONTEXT: &str = "reading every key of the sled database";
        if !MARKER_FILES.iter().all(|f| dir.join(f).exists()) {
            return Ok(());
        }
        let backend = Self::open(dir, cache_capacity)?;
        guard(CONTEXT, || {
            for entry in backend.db.iter() {
                entry.map_err(err(CONTEXT))?;
            }
            Ok(())
        })
    }

    /// `fsync` of sled's files (`db`, `conf`, every blob) and of the
    /// directories that name them.
    fn sync_files(&self) -> Result<()> {
        let sync = |path: &Path| {
            std::fs::File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(|source| Error::Io {
                    path: path.to_path_buf(),
                    source,
                })
        };
        for name in MARKER_FILES {
            sync(&self.dir.join(name))?;
        }
        let blobs = self.dir.join("blobs");
        if let Ok(entries) = std::fs::read_dir(&blobs) {
            for entry in entries.flatten() {
                sync(&entry.path())?;
            }
            sync(&blobs)?;
        }
        sync(&self.dir)
    }
}

/// Whether sled failed to take its own file lock (it reports that as an
/// `io::ErrorKind::Other` with this message).
fn is_busy_lock(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn err(context: &'static str) -> impl FnOnce(sled::Error) -> Error {
    move |e| storage_error(context, e)
}

/// A sled error as a storage error about `context`; a full disk says what
/// to do, since sled keeps failing every call (reads too) after it, and
/// needs free space even to open.
fn storage_error(context: impl Into<String>, e: sled::Error) -> Error {
    match &e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => Error::storage(
            context,
            format!(
                "{e}; the disk is full: sled refuses every further call on this database, \
                 and needs free space to reopen it: free space on the file system, then \
                 drop every handle of the store and open it again"
            ),
        ),
        _ => Error::storage(context, e),
    }
}

/// Runs a call into sled, turning its panic (it panics on some damaged
/// files) into a storage error about `context`: writes run on the callers'
/// own threads, which must not unwind from inside the store.
fn guard<T>(context: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(Error::storage(
            context,
            format!("sled panicked: {}", panic_message(&*panic)),
        ))
    })
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
        const CONTEXT: &str = "reading a key";
        guard(CONTEXT, || {
            Ok(self.db.get(key).map_err(err(CONTEXT))?.map(|v| v.to_vec()))
        })
    }

    fn visit_prefix(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        const CONTEXT: &str = "scanning a prefix";
        guard(CONTEXT, || {
            for entry in self.db.scan_prefix(prefix) {
                let (k, v) = entry.map_err(err(CONTEXT))?;
                visit(&k, &v);
            }
            Ok(())
        })
    }

    fn scan_range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        const CONTEXT: &str = "scanning a range";
        guard(CONTEXT, || {
            let iter = match end {
                Some(end) if start >= end => return Ok(Vec::new()),
                Some(end) => self.db.range(start..end),
                None => self.db.range(start..),
            };
            collect(iter, limit, CONTEXT)
        })
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        const CONTEXT: &str = "applying a batch";
        guard(CONTEXT, || {
            let mut b = sled::Batch::default();
            // The keys this batch put so far: a prefix deletion after them
            // must remove them too (sled's batch keeps the last word per key).
            // Kept only for a batch that has a prefix deletion.
            let mut put = std::collections::BTreeSet::new();
            let track = batch
                .ops()
                .iter()
                .any(|op| matches!(op, Op::DeletePrefix(_)));
            for op in batch.ops() {
                match op {
                    Op::Put(k, v) => {
                        b.insert(k.as_slice(), v.as_slice());
                        if track {
                            put.insert(k.as_slice());
                        }
                    }
                    Op::Delete(k) => b.remove(k.as_slice()),
                    // Scanned here, at apply time: every apply runs under
                    // the committer's engine lock, so no other batch lands
                    // between this scan and the batch.
                    Op::DeletePrefix(p) => {
                        for k in put.range::<&[u8], _>(p.as_slice()..) {
                            if !k.starts_with(p) {
                                break;
                            }
                            b.remove(*k);
                        }
                        for key in self.db.scan_prefix(p).keys() {
                            b.remove(key.map_err(err(CONTEXT))?);
                        }
                    }
                }
            }
            self.db.apply_batch(b).map_err(err(CONTEXT))
        })
    }

    /// sled's flush, then `fsync` of its files: sled's own flush ends in
    /// `sync_file_range`, which flushes neither the file system's metadata
    /// nor the drive's cache, and a checkpoint drops journal records on
    /// the strength of this flush.
    fn flush(&self) -> Result<()> {
        const CONTEXT: &str = "flushing";
        guard(CONTEXT, || self.db.flush().map(drop).map_err(err(CONTEXT)))?;
        self.sync_files()
    }

    /// sled holds its concurrency-control lock, and so every read, while
    /// it applies a batch: a checkpoint comes in batches of 1,024.
    fn checkpoint_chunk(&self) -> usize {
        1024
    }

    fn size_on_disk(&self) -> Result<u64> {
        self.db
            .size_on_disk()
            .map_err(err("measuring the size on disk"))
    }
}

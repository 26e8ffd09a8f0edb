//! The redb 4.6 engine: one table in one file, `data.redb`.
//!
//! The store's keys go, unchanged, into a single table (`sessionstore`) of
//! byte-string keys and values. redb keeps it as a copy-on-write B-tree, so
//! key order is plain byte order, as the store's scans need.
//!
//! # Durability
//!
//! redb 4.6 has two durability levels for a write transaction
//! (`redb::Durability`), and this engine uses both:
//!
//! - [`apply`](Backend::apply) commits one write transaction per batch with
//!   `Durability::None`. redb promises that such a commit is atomic and
//!   visible to every later transaction, but is "not persisted to disk unless
//!   followed by a commit with `Durability::Immediate`": the file's header
//!   still names the last durable commit, so a crash (of the process or of the
//!   machine) goes back to that state, never to half a batch. The store's
//!   journal holds every batch since (see `embedded::journal`).
//! - [`flush`](Backend::flush) commits an empty write transaction with
//!   `Durability::Immediate`, the checkpoint: redb writes every page of the
//!   earlier non-durable commits, flips the header to the new root and calls
//!   `fdatasync` (1-phase commit: the header's slots carry checksums, and a
//!   reopen after a crash picks the newest valid one).
//!
//! redb reuses the pages that non-durable commits replace only after the
//! next durable commit, so the file grows between checkpoints; the store's
//! checkpoints come every 128 engine batches at most, which bounds that
//! growth (`embedded::checkpoint`).
//!
//! `fdatasync` asks the kernel to write the data to the device and the device
//! to flush its volatile cache, where the file system supports it: unlike
//! sled's `sync_file_range`, this holds against power loss, as far as the
//! drive honours the flush.
//!
//! # Opening
//!
//! The file is opened with redb's integrity check: every page checksum of the
//! committed trees is verified, so a file altered outside redb fails to open
//! with an error instead of being trusted (a plain redb open may panic on such
//! a file). The check reads the whole file, so the open costs time in
//! proportion to the store's size.
//!
//! # Errors and panics
//!
//! Every redb error becomes [`Error::Storage`](crate::Error::Storage) naming
//! what the store was doing. Every call into redb also runs under
//! `catch_unwind`: redb is built to survive a caught panic (it poisons and
//! rolls back the transaction), so a panic inside it becomes an error of the
//! call rather than the end of the caller's thread or of the commit thread.
//! After a failed commit redb refuses further writes until the store is
//! reopened, which then repairs the file.

use std::fs::{self, File};
use std::ops::Bound;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use redb::{
    Database, Durability, MultimapTableHandle, ReadOnlyTable, ReadableDatabase, TableDefinition,
    TableHandle,
};

#[cfg(test)]
pub(crate) mod sim_disk;

use super::{Backend, Batch, Entry, Op, panic_message, prefix_end};
use crate::error::{Error, Result};

/// The database file in the store's directory.
pub(crate) const FILE: &str = "data.redb";
/// The name a new database is made under before it is renamed to [`FILE`].
pub(crate) const NEW_FILE: &str = "data.redb.new";
/// The files whose presence marks a redb store: the database file.
pub(crate) const MARKER_FILES: &[&str] = &[FILE];
/// The one table: every key of the store, unchanged.
const TABLE: TableDefinition<'static, &'static [u8], &'static [u8]> =
    TableDefinition::new("sessionstore");

/// The writer's table as a read transaction sees it, shared by reads until
/// the next commit: beginning a read transaction and opening the table cost
/// more than a point read.
/// The generation counts commits, so that a read transaction begun before a
/// commit is never kept after it.
#[derive(Default)]
struct ReadCache {
    state: Mutex<(u64, Option<Arc<ReadTable>>)>,
}

type ReadTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

impl ReadCache {
    /// The cached table, or a new one from `begin`, kept if no commit ended meanwhile.
    fn table(
        &self,
        begin: impl FnOnce() -> Result<ReadTable, redb::Error>,
    ) -> Result<Arc<ReadTable>, redb::Error> {
        let generation = {
            let state = self.state.lock();
            if let Some(table) = &state.1 {
                return Ok(table.clone());
            }
            state.0
        };
        let table = Arc::new(begin()?);
        let mut state = self.state.lock();
        if state.0 == generation && state.1.is_none() {
            state.1 = Some(table.clone());
        }
        Ok(table)
    }

    /// Forgets the cached table: a commit ended (or failed), so reads from
    /// now on must begin a new transaction.
    fn invalidate(&self) {
        let old = {
            let mut state = self.state.lock();
            state.0 = state.0.wrapping_add(1);
            state.1.take()
        };
        // Ends the read transaction, unless a read still holds it, outside the lock.
        drop(old);
    }
}

/// A redb database holding the store's one table.
pub(crate) struct RedbBackend {
    /// Declared before `db`, so that its read transaction ends before the database closes.
    reads: ReadCache,
    db: Database,
    file: PathBuf,
}

impl RedbBackend {
    /// Opens or creates the redb database `data.redb` in directory `dir`, with
    /// a page cache of `cache_capacity` bytes, locked against other processes.
    pub fn open(dir: &Path, cache_capacity: u64) -> Result<Self> {
        let file = dir.join(FILE);
        let context = || format!("opening the redb database {}", file.display());
        if file.exists() {
            let db = guard(context, || Ok(builder(cache_capacity).create(&file)?))?;
            return Self::writer_on(db, file);
        }
        // A new database is made under another name and renamed into place
        // once its header and table are committed: a crash while redb writes
        // its first pages would otherwise leave a `data.redb` that redb
        // cannot open ("magic number mismatch"), and the store could never
        // be opened again. A leftover of such a crash is simply replaced.
        let new = dir.join(NEW_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        match fs::remove_file(&new) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&new)(e)),
            _ => {}
        }
        let db = guard(context, || Ok(builder(cache_capacity).create(&new)?))?;
        let mut backend = Self::writer_on(db, new.clone())?;
        fs::rename(&new, &file).map_err(io(&file))?;
        backend.file = file;
        // The new file's directory entry must be durable too, or a crash
        // could lose the whole database along with its first commits.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok(backend)
    }

    /// Opens or creates the store's database on `storage` (a simulated disk
    /// in the crate's power-loss tests) instead of a file; `name` stands for
    /// the file in messages.
    #[cfg(test)]
    pub(crate) fn open_on(
        storage: impl redb::StorageBackend,
        name: &Path,
        cache_capacity: u64,
    ) -> Result<Self> {
        let context = || format!("opening the redb database {}", name.display());
        let db = guard(context, || {
            Ok(builder(cache_capacity).create_with_backend(storage)?)
        })?;
        Self::writer_on(db, name.to_path_buf())
    }

    /// The writer on an opened database, with the store's table created.
    fn writer_on(db: Database, file: PathBuf) -> Result<Self> {
        let backend = RedbBackend {
            reads: ReadCache::default(),
            db,
            file,
        };
        backend.create_table()?;
        Ok(backend)
    }

    /// Creates the table in a new database; refuses a database that holds
    /// tables of its own, which some other program wrote.
    fn create_table(&self) -> Result<()> {
        let foreign = guard(
            || "listing the tables of the redb database",
            || {
                let txn = self.db.begin_write()?;
                let mut names: Vec<String> = txn
                    .list_tables()?
                    .map(|t| t.name().to_string())
                    .chain(txn.list_multimap_tables()?.map(|t| t.name().to_string()))
                    .filter(|n| n != TABLE.name())
                    .collect();
                if !names.is_empty() {
                    names.sort();
                    txn.abort()?;
                    return Ok(names);
                }
                drop(txn.open_table(TABLE)?);
                txn.commit()?;
                Ok(names)
            },
        )?;
        if foreign.is_empty() {
            return Ok(());
        }
        Err(Error::NotAStore {
            path: self.file.clone(),
            reason: format!(
                "it is a redb database with tables of another program: {}",
                foreign.join(", ")
            ),
        })
    }

    /// Runs `f` on the table in a new read transaction.
    fn read<T>(
        &self,
        context: &'static str,
        f: impl FnOnce(&ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<T, redb::Error>,
    ) -> Result<T> {
        guard(
            || context,
            || {
                // This process is the only writer: a transaction begun
                // since its last commit sees everything.
                let table = self
                    .reads
                    .table(|| Ok(self.db.begin_read()?.open_table(TABLE)?))?;
                f(&table)
            },
        )
    }
}

impl RedbBackend {
    /// Commits `batch` as one write transaction with `Durability::None`.
    fn commit(&self, batch: &Batch) -> Result<()> {
        // Ended before, so that no read transaction of this handle keeps the
        // pages this commit replaces from being freed by it; and after, so
        // that none begun during it is kept.
        self.reads.invalidate();
        let committed = self.commit_inner(batch);
        self.reads.invalidate();
        committed
    }

    fn commit_inner(&self, batch: &Batch) -> Result<()> {
        guard(
            || "applying a batch",
            || {
                let mut txn = self.db.begin_write()?;
                {
                    let mut table = txn.open_table(TABLE)?;
                    for op in batch.ops() {
                        match op {
                            Op::Put(k, v) => drop(table.insert(k.as_slice(), v.as_slice())?),
                            Op::Delete(k) => drop(table.remove(k.as_slice())?),
                            Op::DeletePrefix(p) => delete_prefix(&mut table, p)?,
                        }
                    }
                }
                txn.set_durability(Durability::None)?;
                // Dropping the transaction on an error above aborts it: all or nothing.
                txn.commit()?;
                Ok(())
            },
        )
    }
}

/// Removes every key of `table` that starts with `prefix`, inside the
/// write transaction: one walk of the range from `prefix` to the first key
/// after it, removing as it goes.
fn delete_prefix(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    prefix: &[u8],
) -> Result<(), redb::Error> {
    let end = prefix_end(prefix);
    let upper = match &end {
        Some(end) => Bound::Excluded(end.as_slice()),
        None => Bound::Unbounded,
    };
    table.retain_in::<&[u8], _>((Bound::Included(prefix), upper), |_, _| false)?;
    Ok(())
}

/// The writer's settings: a page cache of `cache_capacity` bytes and the
/// integrity check on open; redb's default `ExclusiveWriter` mode locks the
/// file against every other process.
fn builder(cache_capacity: u64) -> redb::Builder {
    let mut builder = Database::builder();
    builder
        .set_cache_size(usize::try_from(cache_capacity).unwrap_or(usize::MAX))
        .set_check_integrity_on_open(true);
    builder
}

/// Runs a call into redb, turning its error, or its panic, into a storage error about `context`.
fn guard<T, C: Into<String>>(
    context: impl FnOnce() -> C,
    f: impl FnOnce() -> Result<T, redb::Error>,
) -> Result<T> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(match reopen_hint(&e) {
            Some(hint) => Error::storage(context(), format!("{e}; {hint}")),
            None => Error::storage(context(), e),
        }),
        Err(payload) => Err(Error::storage(
            context(),
            format!("redb panicked: {}", panic_message(&*payload)),
        )),
    }
}

/// What to add to an I/O error: after one, redb refuses every call on the
/// database (`PreviousIo`) until it is opened again.
fn reopen_hint(e: &redb::Error) -> Option<&'static str> {
    match e {
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => Some(
            "the disk is full; redb refuses every further call on this database until it is \
             reopened: free space, then drop every handle of the store and open it again",
        ),
        redb::Error::Io(_) | redb::Error::PreviousIo => Some(
            "redb refuses every further call on this database until it is reopened: \
             drop every handle of the store and open it again",
        ),
        _ => None,
    }
}

/// Collects up to `limit` entries of a range while `keep` holds for their keys.
fn collect(
    range: redb::Range<'_, &'static [u8], &'static [u8]>,
    limit: usize,
    keep: impl Fn(&[u8]) -> bool,
) -> Result<Vec<Entry>, redb::Error> {
    let mut entries = Vec::new();
    for item in range {
        if entries.len() >= limit {
            break;
        }
        let (k, v) = item?;
        let key = k.value();
        if !keep(key) {
            break;
        }
        entries.push((key.to_vec(), v.value().to_vec()));
    }
    Ok(entries)
}

impl Backend for RedbBackend {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read("reading a key", |t| {
            Ok(t.get(key)?.map(|v| v.value().to_vec()))
        })
    }

    fn visit_prefix(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        self.read("scanning a prefix", |t| {
            for item in t.range(prefix..)? {
                let (k, v) = item?;
                if !k.value().starts_with(prefix) {
                    break;
                }
                visit(k.value(), v.value());
            }
            Ok(())
        })
    }

    fn scan_range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        if end.is_some_and(|end| start >= end) || limit == 0 {
            return Ok(Vec::new());
        }
        self.read("scanning a range", |t| {
            collect(t.range(start..)?, limit, |k| end.is_none_or(|e| k < e))
        })
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        self.commit(batch)
    }

    fn flush(&self) -> Result<()> {
        // The empty commit changes no data, but a read transaction kept
        // across it would keep the pages it frees in use.
        self.reads.invalidate();
        guard(
            || "flushing",
            || {
                let mut txn = self.db.begin_write()?;
                txn.set_durability(Durability::Immediate)?;
                txn.commit()?;
                Ok(())
            },
        )
    }

    fn size_on_disk(&self) -> Result<u64> {
        fs::metadata(&self.file)
            .map(|m| m.len())
            .map_err(|source| Error::Io {
                path: self.file.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ops: &[(&str, Option<&str>)]) -> Batch {
        let mut b = Batch::default();
        for (k, v) in ops {
            match v {
                Some(v) => b.put(k.as_bytes().to_vec(), v.as_bytes().to_vec()),
                None => b.delete(k.as_bytes().to_vec()),
            }
        }
        b
    }

    fn keys(entries: &[Entry]) -> Vec<&[u8]> {
        entries.iter().map(|(k, _)| k.as_slice()).collect()
    }

    /// What a crash of the process would leave: the file's bytes as written so
    /// far (the kernel keeps what the process wrote), opened as a new database.
    fn crash_copy(b: &RedbBackend, to: &Path) -> Result<RedbBackend> {
        fs::create_dir_all(to).map_err(|e| Error::storage("test", e))?;
        fs::copy(&b.file, to.join(FILE)).map_err(|e| Error::storage("test", e))?;
        RedbBackend::open(to, 1 << 20)
    }

    #[test]
    fn scans_follow_byte_order_and_bounds() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        let b = RedbBackend::open(dir.path(), 1 << 20)?;
        b.apply(&batch(&[
            ("ab/", Some("1")),
            ("ab/x", Some("2")),
            ("abc/", Some("3")),
            ("b", Some("4")),
        ]))?;
        assert_eq!(keys(&b.scan_prefix(b"ab/")?), [&b"ab/"[..], b"ab/x"]);
        assert_eq!(
            keys(&b.scan_range(b"ab/x", Some(b"b"), 10)?),
            [&b"ab/x"[..], b"abc/"]
        );
        assert_eq!(keys(&b.scan_range(b"a", None, 2)?), [&b"ab/"[..], b"ab/x"]);
        assert!(b.scan_range(b"b", Some(b"a"), 10)?.is_empty());
        assert!(b.scan_range(b"a", None, 0)?.is_empty());
        assert_eq!(b.get(b"b")?.as_deref(), Some(&b"4"[..]));
        b.apply(&batch(&[("b", None), ("ab/x", Some("5"))]))?;
        assert_eq!(b.get(b"b")?, None);
        assert_eq!(b.get(b"ab/x")?.as_deref(), Some(&b"5"[..]));
        Ok(())
    }

    #[test]
    fn flush_makes_earlier_non_durable_batches_durable() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        let live = dir.path().join("live");
        fs::create_dir(&live).map_err(|e| Error::storage("test", e))?;
        let b = RedbBackend::open(&live, 1 << 20)?;
        b.apply(&batch(&[("k1", Some("v1"))]))?;
        b.apply(&batch(&[("k2", Some("v2"))]))?;
        // Not yet durable: a crash now goes back to the last durable commit.
        // This also shows the copy sees only durable state, so the check
        // after the flush below is not vacuous.
        let before = crash_copy(&b, &dir.path().join("before"))?;
        assert_eq!(before.get(b"k1")?, None);
        drop(before);
        b.flush()?;
        let after = crash_copy(&b, &dir.path().join("after"))?;
        assert_eq!(after.get(b"k1")?.as_deref(), Some(&b"v1"[..]));
        assert_eq!(after.get(b"k2")?.as_deref(), Some(&b"v2"[..]));
        Ok(())
    }

    #[test]
    fn a_read_after_a_commit_sees_it_though_reads_share_a_transaction() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        {
            let b = RedbBackend::open(dir.path(), 1 << 20)?;
            // These reads share one transaction...
            assert_eq!(b.get(b"k")?, None);
            assert!(b.scan_prefix(b"k")?.is_empty());
            // ...which every commit ends, durable or not.
            b.apply(&batch(&[("k", Some("1"))]))?;
            assert_eq!(b.get(b"k")?.as_deref(), Some(&b"1"[..]));
            b.apply(&batch(&[("k", Some("2"))]))?;
            b.flush()?;
            assert_eq!(b.get(b"k")?.as_deref(), Some(&b"2"[..]));
            b.apply(&batch(&[("k", None)]))?;
            assert_eq!(b.get(b"k")?, None);
        }
        Ok(())
    }

    #[test]
    fn a_panic_inside_redb_becomes_a_storage_error() {
        let r: Result<()> = guard(|| "reading a key", || panic!("page 7 is garbage"));
        let e = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            e,
            "storage error while reading a key: redb panicked: page 7 is garbage"
        );
    }

    #[test]
    fn a_creation_cut_short_leaves_nothing_that_blocks_the_next_open() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        // What a crash while redb writes a new file's first pages leaves:
        // bytes that are no redb database, under the creation name.
        fs::write(dir.path().join(NEW_FILE), b"half a header")
            .map_err(|e| Error::storage("test", e))?;
        let b = RedbBackend::open(dir.path(), 1 << 20)?;
        b.apply(&batch(&[("k", Some("v"))]))?;
        b.flush()?;
        assert!(dir.path().join(FILE).exists());
        assert!(!dir.path().join(NEW_FILE).exists(), "replaced and renamed");
        drop(b);
        let again = RedbBackend::open(dir.path(), 1 << 20)?;
        assert_eq!(again.get(b"k")?.as_deref(), Some(&b"v"[..]));
        Ok(())
    }

    #[test]
    fn a_file_that_is_not_redb_is_an_error_not_a_panic() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        fs::write(dir.path().join(FILE), vec![0xA5; 64 << 10])
            .map_err(|e| Error::storage("test", e))?;
        let err = RedbBackend::open(dir.path(), 1 << 20).err();
        assert!(matches!(err, Some(Error::Storage { .. })), "{err:?}");
        Ok(())
    }

    #[test]
    fn a_damaged_page_fails_the_open() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        let file = dir.path().join(FILE);
        {
            let b = RedbBackend::open(dir.path(), 1 << 20)?;
            for i in 0..200u32 {
                let k = format!("key{i:05}");
                b.apply(&batch(&[(&k, Some(&"x".repeat(500)))]))?;
            }
            b.flush()?;
        }
        let mut bytes = fs::read(&file).map_err(|e| Error::storage("test", e))?;
        // Past the header, flip bytes in the middle of the file's pages.
        let mid = bytes.len() / 2;
        for byte in &mut bytes[mid..mid + 4096] {
            *byte ^= 0xFF;
        }
        fs::write(&file, &bytes).map_err(|e| Error::storage("test", e))?;
        // A plain redb open would trust these pages and read the damaged
        // values back; the integrity check refuses the file instead.
        match RedbBackend::open(dir.path(), 1 << 20) {
            Err(e @ Error::Storage { .. }) => assert!(e.to_string().contains("corrupt"), "{e}"),
            Err(e) => panic!("expected a storage error, got {e}"),
            Ok(_) => panic!("a file with damaged pages was opened"),
        }
        Ok(())
    }

    #[test]
    fn a_foreign_redb_database_is_not_a_store() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        {
            let db =
                Database::create(dir.path().join(FILE)).map_err(|e| Error::storage("test", e))?;
            let txn = db.begin_write().map_err(|e| Error::storage("test", e))?;
            let other: TableDefinition<&str, u64> = TableDefinition::new("accounts");
            drop(
                txn.open_table(other)
                    .map_err(|e| Error::storage("test", e))?,
            );
            txn.commit().map_err(|e| Error::storage("test", e))?;
        }
        let err = RedbBackend::open(dir.path(), 1 << 20).err();
        assert!(
            matches!(&err, Some(Error::NotAStore { reason, .. }) if reason.contains("accounts")),
            "{err:?}"
        );
        Ok(())
    }
}

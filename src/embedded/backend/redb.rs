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
//! The store puts its in-memory overlay in front of this engine
//! (`embedded::overlay`), so a checkpoint reaches it as one `apply` of
//! everything written since the last one (one non-durable commit), then
//! `flush`. redb reuses the pages that a commit replaces only after the next
//! durable commit, so each checkpoint needs free room for the pages it
//! rewrites; the store's reserve counts that room (`embedded::reserve`).
//!
//! `fdatasync` asks the kernel to write the data to the device and the device
//! to flush its volatile cache, where the file system supports it: unlike
//! sled's `sync_file_range`, this holds against power loss, as far as the
//! drive honours the flush.
//!
//! # Opening
//!
//! An open costs what the file's header and allocator state cost to read,
//! not the store's size. What it checks depends on how the file was closed:
//!
//! - After a clean close (the last commit is redb's 2-phase close commit,
//!   which records the allocator state), redb verifies the checksums of the
//!   header's slots and loads the recorded allocator state. It reads no data
//!   page: pages damaged outside redb since the close are not detected at
//!   open, and a read of one may return its bytes or fail with
//!   [`Error::Storage`](crate::Error::Storage) (a panic inside redb becomes
//!   that error too).
//! - After an unclean shutdown (a crash, a kill, a power loss, a failed
//!   commit), redb repairs the file on its own: it verifies the checksum of
//!   every page of the newest commit's trees, falls back to the previous
//!   commit if the newest does not verify (a torn commit), and rebuilds the
//!   allocator state by walking the trees. A file whose both commits are
//!   damaged fails to open with [`Error::Storage`](crate::Error::Storage).
//!   That repair reads the whole file, as it must.
//! - With `Config::verify_on_open`, [`check`](RedbBackend::check) runs redb's
//!   integrity check before the open, whatever the last close: the same walk
//!   of every page checksum, on a file closed cleanly too, where a damaged
//!   page fails the open (redb falls back to an earlier commit only when
//!   the last one was not its 2-phase close).
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

    /// Runs redb's integrity check on the existing database `data.redb` in
    /// directory `dir`, and closes it again; does nothing if there is none.
    ///
    /// The check verifies the checksum of every page of the committed trees
    /// and rebuilds the allocator state, with a page cache of
    /// `cache_capacity` bytes. A file altered outside redb fails with
    /// [`Error::Storage`] whose message says it is corrupted. The caller
    /// holds the store's lock file, so no other writer opens the file
    /// meanwhile. The close records the allocator state again, so the open
    /// that follows is a clean one.
    pub fn check(dir: &Path, cache_capacity: u64) -> Result<()> {
        let file = dir.join(FILE);
        if !file.exists() {
            return Ok(());
        }
        let context = || {
            format!(
                "checking the integrity of the redb database {}",
                file.display()
            )
        };
        let db = guard(context, || {
            Ok(Database::builder()
                .set_cache_size(usize::try_from(cache_capacity).unwrap_or(usize::MAX))
                .set_check_integrity_on_open(true)
                .open(&file)?)
        })?;
        guard(context, || Ok(db.close()?))
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
    /// tables of its own, which some other program wrote. A database that
    /// holds the table and nothing else is left as it is: an open then
    /// commits (and flushes) nothing of its own.
    fn create_table(&self) -> Result<()> {
        let foreign = guard(
            || "listing the tables of the redb database",
            || {
                let db = &self.db;
                {
                    let read = db.begin_read()?;
                    let mut tables = read.list_tables()?;
                    let ours = tables.next().is_some_and(|t| t.name() == TABLE.name());
                    if ours
                        && tables.next().is_none()
                        && read.list_multimap_tables()?.next().is_none()
                    {
                        return Ok(Vec::new());
                    }
                }
                let txn = db.begin_write()?;
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
/// default `ExclusiveWriter` mode, which locks the file against every other
/// process. No integrity check on open: redb repairs (and so checks) a file
/// that was not closed cleanly by itself, and [`RedbBackend::check`] runs the
/// check on demand (see the module docs).
fn builder(cache_capacity: u64) -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(usize::try_from(cache_capacity).unwrap_or(usize::MAX));
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

    /// The value of the first key [`write_pages`] writes: written once, so
    /// its bytes are in one leaf page of the file, which stays in use.
    const MARKED: &[u8] = &[b'y'; 500];

    /// Writes 200 keys of 500 bytes, the first one [`MARKED`], and flushes.
    fn write_pages(b: &RedbBackend) -> Result<()> {
        for i in 0..200u32 {
            let k = format!("key{i:05}");
            let v = if i == 0 { "y" } else { "x" }.repeat(500);
            b.apply(&batch(&[(&k, Some(&v))]))?;
        }
        b.flush()
    }

    /// Flips bytes of the [`MARKED`] value wherever it is in `file`: a data
    /// page in use (a page merely free would fail no check).
    fn damage_marked(file: &Path) -> Result<()> {
        let mut bytes = fs::read(file).map_err(|e| Error::storage("test", e))?;
        let mut found = 0;
        let mut at = 0;
        while let Some(i) = bytes[at..]
            .windows(MARKED.len())
            .position(|w| w == MARKED)
            .map(|i| i + at)
        {
            for byte in &mut bytes[i..i + 64] {
                *byte ^= 0xFF;
            }
            found += 1;
            at = i + MARKED.len();
        }
        assert!(found > 0, "the marked value is in the file");
        fs::write(file, &bytes).map_err(|e| Error::storage("test", e))
    }

    fn assert_corrupt(what: &str, r: Result<impl Sized>) {
        match r {
            Err(e @ Error::Storage { .. }) => assert!(e.to_string().contains("corrupt"), "{e}"),
            Err(e) => panic!("{what}: expected a storage error, got {e}"),
            Ok(_) => panic!("{what}: a file with damaged pages passed"),
        }
    }

    /// After a clean close the open reads no data page (its cost does not
    /// grow with the file), so it does not see damage made since; the check
    /// (`Config::verify_on_open`) reads every page and refuses the file.
    #[test]
    fn a_damaged_page_fails_the_check_and_a_clean_open_does_not_read_it() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        let file = dir.path().join(FILE);
        {
            let b = RedbBackend::open(dir.path(), 1 << 20)?;
            write_pages(&b)?;
        }
        // Clean: the check passes, and leaves the file clean.
        RedbBackend::check(dir.path(), 1 << 20)?;
        damage_marked(&file)?;
        assert_corrupt("the check", RedbBackend::check(dir.path(), 1 << 20));
        // The failed check changed nothing: it fails again, and the plain
        // open, which trusts a cleanly closed file, still opens it.
        assert_corrupt("a second check", RedbBackend::check(dir.path(), 1 << 20));
        let b = RedbBackend::open(dir.path(), 1 << 20)?;
        assert_eq!(b.get(b"key00199")?.map(|v| v.len()), Some(500));
        Ok(())
    }

    /// A directory without the database has nothing to check.
    #[test]
    fn the_check_of_a_new_store_passes_and_creates_nothing() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        RedbBackend::check(dir.path(), 1 << 20)?;
        assert!(!dir.path().join(FILE).exists());
        Ok(())
    }

    /// After an unclean shutdown, redb's own repair verifies every page of
    /// the last two commits before it trusts either: damage in a page both
    /// use fails the plain open.
    #[test]
    fn after_an_unclean_shutdown_the_open_checks_every_page() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        let live = dir.path().join("live");
        fs::create_dir(&live).map_err(|e| Error::storage("test", e))?;
        let b = RedbBackend::open(&live, 1 << 20)?;
        write_pages(&b)?;
        // One more small durable commit: it shares every page but one path
        // with the commit before it, the one a repair would fall back to.
        b.apply(&batch(&[("zzz", Some("1"))]))?;
        b.flush()?;
        // A copy of the open file: what a crash now leaves.
        let crashed = dir.path().join("crashed");
        fs::create_dir(&crashed).map_err(|e| Error::storage("test", e))?;
        fs::copy(&b.file, crashed.join(FILE)).map_err(|e| Error::storage("test", e))?;
        // Undamaged, the crashed copy opens (repaired) with every commit.
        let sound = dir.path().join("sound");
        fs::create_dir(&sound).map_err(|e| Error::storage("test", e))?;
        fs::copy(crashed.join(FILE), sound.join(FILE)).map_err(|e| Error::storage("test", e))?;
        let repaired = RedbBackend::open(&sound, 1 << 20)?;
        assert_eq!(repaired.get(b"zzz")?.as_deref(), Some(&b"1"[..]));
        drop(repaired);
        damage_marked(&crashed.join(FILE))?;
        assert_corrupt(
            "the open after a crash",
            RedbBackend::open(&crashed, 1 << 20),
        );
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

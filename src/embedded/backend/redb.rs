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
//!   machine) goes back to that state, never to half a batch.
//! - [`apply_durable`](Backend::apply_durable) commits the batch's write
//!   transaction with `Durability::Immediate`. redb promises that such a
//!   commit is persistent as soon as `commit` returns; it writes every page of
//!   the earlier non-durable commits too, flips the header to the new root and
//!   calls `fdatasync` (1-phase commit: the header's slots carry checksums,
//!   and a reopen after a crash picks the newest valid one). So a durable
//!   write is one transaction and one `fdatasync`, and it makes every batch
//!   applied before it durable, which is what group commit needs.
//! - [`flush`](Backend::flush) commits an empty write transaction with
//!   `Durability::Immediate`: for a flush with no batch to carry it
//!   (`Store::flush`, the periodic flush).
//!
//! With the store's `Durability::Immediate`, every acknowledged write was
//! committed durably; with `Durability::Periodic(d)`, a crash loses at
//! most the batches of the last `d`. redb reuses the pages that non-durable
//! commits replace only after the next durable commit, so the file grows
//! between flushes: under `Periodic(200 ms)` the churn soak reached 10× the
//! live data. So [`apply`](Backend::apply) also commits durably once 128
//! commits or 1,024 written keys ([`DURABLE_EVERY`]) have gone by since the
//! last durable commit, which bounds that growth whatever the period
//! (docs/reliability.md, "Footprint"); the period stays the bound on what a
//! crash loses.
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
//! # Live readers
//!
//! By default ([`Sharing::LiveReaders`]) the writer opens the file in redb's
//! `ConcurrencyMode::SingleWriter`: one process writes, and any number of
//! processes may open the file read-only ([`RedbBackend::open_read_only`],
//! in the same mode) and follow its commits. Such a reader needs no call to
//! see them: every read transaction it begins reads the file's header and
//! starts from the latest commit the writer has made durable. redb refuses
//! `Durability::None` in this mode (a commit held in one process's memory
//! would be invisible to the others), so every [`apply`](Backend::apply) is
//! then a durable commit, and [`flush`](Backend::flush) has nothing left to
//! do. redb also makes every commit in this mode a 2-phase commit (the pages,
//! `fdatasync`, then the header, `fdatasync`), so that a reader never follows
//! a header to pages not yet on disk: two `fdatasync` per commit where
//! [`Sharing::Exclusive`] takes one (counted in docs/performance.md). The store's own lock file still keeps a second writer
//! out.
//!
//! If the writer dies, a reader that is open keeps reading the last commit
//! the writer made durable, and follows the next writer once one opens the
//! file. A new read-only open of a file whose writer died fails until a
//! writer has opened (and so repaired) it: redb refuses a read-only open of a
//! file that needs a repair (`RepairAborted`).
//!
//! With [`Sharing::Exclusive`] the file is opened in redb's default
//! `ExclusiveWriter` mode, which locks it against every other process, and
//! batches are committed with `Durability::None` as described above.
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
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use redb::{
    ConcurrencyMode, Database, DatabaseError, Durability, MultimapTableHandle, ReadOnlyDatabase,
    ReadOnlyTable, ReadableDatabase, TableDefinition, TableHandle,
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

/// Without live readers, a commit is made durable, even between flushes,
/// once this many commits or written keys have gone by since the last
/// durable one: redb reuses the pages that non-durable commits free only
/// after a durable commit, so this bounds how far the file grows between
/// flushes (docs/reliability.md, "Footprint").
///
/// The first number counts commits, the second the keys they put or deleted
/// (group commits under many writers carry many keys each).
const DURABLE_EVERY: (u64, u64) = (128, 1024);

/// How the writer shares its file with other processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sharing {
    /// `ConcurrencyMode::SingleWriter`: read-only handles in other processes follow the commits.
    LiveReaders,
    /// `ConcurrencyMode::ExclusiveWriter`: no other process may open the file.
    Exclusive,
}

/// The open database: a writer, or a read-only handle beside one.
enum Db {
    Writer(Database),
    Reader(ReadOnlyDatabase),
}

/// The writer's table as a read transaction sees it, shared by reads until
/// the next commit: in `SingleWriter` mode every new read transaction takes
/// and releases byte-range locks on the file's header (four `fcntl` calls),
/// and beginning one and opening the table cost more than a point read.
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
    db: Db,
    /// Whether every commit must be durable (the file is shared with readers).
    shared: bool,
    /// Non-durable commits since the last durable one (see [`DURABLE_EVERY`]).
    non_durable: AtomicU64,
    /// Keys those commits put or deleted.
    non_durable_keys: AtomicU64,
    file: PathBuf,
}

impl RedbBackend {
    /// Opens or creates the redb database `data.redb` in directory `dir`, with
    /// a page cache of `cache_capacity` bytes, shared with other processes as
    /// `sharing` says.
    pub fn open(dir: &Path, cache_capacity: u64, sharing: Sharing) -> Result<Self> {
        let file = dir.join(FILE);
        let context = || format!("opening the redb database {}", file.display());
        if file.exists() {
            let db = guard(context, || {
                Ok(builder(cache_capacity, sharing).create(&file)?)
            })?;
            return Self::writer_on(db, sharing, file);
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
        let db = guard(context, || {
            Ok(builder(cache_capacity, sharing).create(&new)?)
        })?;
        let mut backend = Self::writer_on(db, sharing, new.clone())?;
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
        sharing: Sharing,
    ) -> Result<Self> {
        let context = || format!("opening the redb database {}", name.display());
        let db = guard(context, || {
            Ok(builder(cache_capacity, sharing).create_with_backend(storage)?)
        })?;
        Self::writer_on(db, sharing, name.to_path_buf())
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
    fn writer_on(db: Database, sharing: Sharing, file: PathBuf) -> Result<Self> {
        let backend = RedbBackend {
            reads: ReadCache::default(),
            db: Db::Writer(db),
            shared: sharing == Sharing::LiveReaders,
            non_durable: AtomicU64::new(0),
            non_durable_keys: AtomicU64::new(0),
            file,
        };
        backend.create_table()?;
        Ok(backend)
    }

    /// Opens the existing database `data.redb` in directory `dir` read-only,
    /// beside a writer that opened it with [`Sharing::LiveReaders`], or with
    /// no writer at all. Creates and writes nothing. The integrity check does
    /// not apply: it would write.
    pub fn open_read_only(dir: &Path, cache_capacity: u64) -> Result<Self> {
        let file = dir.join(FILE);
        let cache = usize::try_from(cache_capacity).unwrap_or(usize::MAX);
        let opened = panic::catch_unwind(AssertUnwindSafe(|| {
            Database::builder()
                .set_cache_size(cache)
                .set_concurrency_mode(ConcurrencyMode::SingleWriter)
                .open_read_only(&file)
        }));
        let context = format!("opening the redb database {} read-only", file.display());
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(Error::storage(
                    context,
                    "the writer opened it without live readers (Config::live_readers(false), \
                     or Durability::Periodic, where it is off by default); stop the \
                     application, or reopen it with live readers on",
                ));
            }
            Ok(Err(DatabaseError::RepairAborted)) => {
                return Err(Error::storage(
                    context,
                    "the file was not closed cleanly (its writer crashed) and needs a repair, \
                     which a read-only open cannot make; open the store once for writing \
                     (start the application) to recover it",
                ));
            }
            Ok(Err(e)) => return Err(Error::storage(context, e)),
            Err(payload) => {
                return Err(Error::storage(
                    context,
                    format!("redb panicked: {}", panic_message(&*payload)),
                ));
            }
        };
        Ok(RedbBackend {
            reads: ReadCache::default(),
            db: Db::Reader(db),
            shared: true,
            non_durable: AtomicU64::new(0),
            non_durable_keys: AtomicU64::new(0),
            file,
        })
    }

    /// Counts a commit about to be made; true if it must be durable, being
    /// past either bound of [`DURABLE_EVERY`] since the last durable one.
    fn count_non_durable(&self, keys: usize) -> bool {
        // Commits are made one at a time, under the store's engine lock.
        let keys = u64::try_from(keys).unwrap_or(u64::MAX);
        let n = self.non_durable.fetch_add(1, Ordering::Relaxed) + 1;
        let k = self
            .non_durable_keys
            .fetch_add(keys, Ordering::Relaxed)
            .saturating_add(keys);
        if n >= DURABLE_EVERY.0 || k >= DURABLE_EVERY.1 {
            self.reset_non_durable();
            return true;
        }
        false
    }

    /// After a durable commit: nothing is pending.
    fn reset_non_durable(&self) {
        self.non_durable.store(0, Ordering::Relaxed);
        self.non_durable_keys.store(0, Ordering::Relaxed);
    }

    /// The writer, or an error naming `what` on a read-only handle.
    fn writer(&self, what: &str) -> Result<&Database, redb::Error> {
        match &self.db {
            Db::Writer(db) => Ok(db),
            Db::Reader(_) => Err(redb::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{what} on a read-only handle"),
            ))),
        }
    }

    /// Creates the table in a new database; refuses a database that holds
    /// tables of its own, which some other program wrote. A database that
    /// holds the table and nothing else is left as it is: an open then
    /// commits (and flushes) nothing of its own.
    fn create_table(&self) -> Result<()> {
        let foreign = guard(
            || "listing the tables of the redb database",
            || {
                let db = self.writer("creating the table")?;
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
                let table = match &self.db {
                    // This process is the only writer: a transaction begun
                    // since its last commit sees everything.
                    Db::Writer(db) => self
                        .reads
                        .table(|| Ok(db.begin_read()?.open_table(TABLE)?))?,
                    // Another process writes, unseen: each read begins anew.
                    Db::Reader(db) => Arc::new(db.begin_read()?.open_table(TABLE)?),
                };
                f(&table)
            },
        )
    }
}

impl RedbBackend {
    /// Commits `batch` as one write transaction: with `Durability::Immediate`
    /// if `durable`, if the file is shared with readers, or if it is the
    /// [`DURABLE_EVERY`]-th commit since the last durable one (see the module
    /// docs), else with `Durability::None`.
    fn commit(&self, batch: &Batch, durable: bool) -> Result<()> {
        // Ended before, so that no read transaction of this handle keeps the
        // pages this commit replaces from being freed by it; and after, so
        // that none begun during it is kept.
        self.reads.invalidate();
        let committed = self.commit_inner(batch, durable);
        self.reads.invalidate();
        committed
    }

    fn commit_inner(&self, batch: &Batch, durable: bool) -> Result<()> {
        guard(
            || "applying a batch",
            || {
                let mut txn = self.writer("applying a batch")?.begin_write()?;
                // Keys written: every put and delete, and every key a prefix
                // deletion removed (a destroyed session's, counted as before
                // prefix deletions, so the bound below means the same).
                let mut keys = 0usize;
                {
                    let mut table = txn.open_table(TABLE)?;
                    for op in batch.ops() {
                        keys = keys.saturating_add(match op {
                            Op::Put(k, v) => {
                                drop(table.insert(k.as_slice(), v.as_slice())?);
                                1
                            }
                            Op::Delete(k) => {
                                drop(table.remove(k.as_slice())?);
                                1
                            }
                            Op::DeletePrefix(p) => delete_prefix(&mut table, p)?,
                        });
                    }
                }
                // Chosen once the keys are counted; redb takes it any time
                // before the commit.
                let durable = durable || self.shared || self.count_non_durable(keys);
                txn.set_durability(if durable {
                    Durability::Immediate
                } else {
                    Durability::None
                })?;
                // Dropping the transaction on an error above aborts it: all or nothing.
                txn.commit()?;
                if durable {
                    self.reset_non_durable();
                }
                Ok(())
            },
        )
    }
}

/// Removes every key of `table` that starts with `prefix`, inside the
/// write transaction: one walk of the range from `prefix` to the first key
/// after it, removing as it goes. Returns how many it removed.
fn delete_prefix(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    prefix: &[u8],
) -> Result<usize, redb::Error> {
    let end = prefix_end(prefix);
    let upper = match &end {
        Some(end) => Bound::Excluded(end.as_slice()),
        None => Bound::Unbounded,
    };
    let mut removed = 0usize;
    table.retain_in::<&[u8], _>((Bound::Included(prefix), upper), |_, _| {
        removed += 1;
        false
    })?;
    Ok(removed)
}

/// The writer's settings: a page cache of `cache_capacity` bytes and the
/// concurrency mode of `sharing`. No integrity check on open: redb repairs
/// (and so checks) a file that was not closed cleanly by itself, and
/// [`RedbBackend::check`] runs the check on demand (see the module docs).
fn builder(cache_capacity: u64, sharing: Sharing) -> redb::Builder {
    let mut builder = Database::builder();
    builder
        .set_cache_size(usize::try_from(cache_capacity).unwrap_or(usize::MAX))
        .set_concurrency_mode(match sharing {
            Sharing::LiveReaders => ConcurrencyMode::SingleWriter,
            Sharing::Exclusive => ConcurrencyMode::ExclusiveWriter,
        });
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
        self.commit(batch, false)
    }

    fn apply_durable(&self, batch: &Batch) -> Result<()> {
        self.commit(batch, true)
    }

    fn flush(&self) -> Result<()> {
        if self.shared {
            // Every commit was durable already.
            return Ok(());
        }
        // The empty commit changes no data, but a read transaction kept
        // across it would keep the pages it frees in use.
        self.reads.invalidate();
        guard(
            || "flushing",
            || {
                let mut txn = self.writer("flushing")?.begin_write()?;
                txn.set_durability(Durability::Immediate)?;
                txn.commit()?;
                self.reset_non_durable();
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
        RedbBackend::open(to, 1 << 20, Sharing::Exclusive)
    }

    #[test]
    fn scans_follow_byte_order_and_bounds() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        let b = RedbBackend::open(dir.path(), 1 << 20, Sharing::LiveReaders)?;
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
        let b = RedbBackend::open(&live, 1 << 20, Sharing::Exclusive)?;
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

    /// The bound on non-durable commits counts the keys a prefix deletion
    /// removes, as it counted them when a deletion named each key.
    #[test]
    fn a_prefix_deletion_counts_every_key_it_removes_toward_the_bound() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        let live = dir.path().join("live");
        fs::create_dir(&live).map_err(|e| Error::storage("test", e))?;
        let b = RedbBackend::open(&live, 1 << 20, Sharing::Exclusive)?;
        let mut fill = Batch::default();
        for i in 0..DURABLE_EVERY.1 {
            fill.put(format!("s/{i:05}").into_bytes(), b"v".to_vec());
        }
        b.apply_durable(&fill)?;
        let mut gone = Batch::default();
        gone.delete_prefix(b"s/".to_vec());
        b.apply(&gone)?;
        // That one commit removed DURABLE_EVERY.1 keys: it was made durable.
        let copy = crash_copy(&b, &dir.path().join("copy"))?;
        assert_eq!(copy.scan_prefix(b"s/")?.len(), 0);
        Ok(())
    }

    #[test]
    fn a_durable_apply_is_durable_and_carries_earlier_batches() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        let live = dir.path().join("live");
        fs::create_dir(&live).map_err(|e| Error::storage("test", e))?;
        let b = RedbBackend::open(&live, 1 << 20, Sharing::Exclusive)?;
        b.apply(&batch(&[("k0", Some("v0")), ("k1", Some("v1"))]))?;
        b.apply_durable(&batch(&[
            ("k2", Some("v2")),
            ("k1", None),
            ("k3", Some("v3")),
        ]))?;
        // No flush: the durable apply alone made its batch and the one before it durable.
        let after = crash_copy(&b, &dir.path().join("after"))?;
        assert_eq!(after.get(b"k0")?.as_deref(), Some(&b"v0"[..]));
        assert_eq!(after.get(b"k1")?, None);
        assert_eq!(after.get(b"k2")?.as_deref(), Some(&b"v2"[..]));
        assert_eq!(after.get(b"k3")?.as_deref(), Some(&b"v3"[..]));
        drop(after);
        // A plain apply after it is not durable yet.
        b.apply(&batch(&[("k4", Some("v4"))]))?;
        let later = crash_copy(&b, &dir.path().join("later"))?;
        assert_eq!(later.get(b"k4")?, None);
        assert_eq!(later.get(b"k2")?.as_deref(), Some(&b"v2"[..]));
        Ok(())
    }

    #[test]
    fn without_flushes_the_file_grows_by_a_bounded_amount() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        let b = RedbBackend::open(dir.path(), 1 << 20, Sharing::Exclusive)?;
        let (keys, value) = (2000, "v".repeat(2000));
        for chunk in 0..keys / 100 {
            let mut batch = Batch::default();
            for i in chunk * 100..(chunk + 1) * 100 {
                batch.put(
                    format!("key{i:05}").into_bytes(),
                    value.clone().into_bytes(),
                );
            }
            b.apply(&batch)?;
        }
        b.flush()?;
        let allocated = || -> Result<u64> {
            use std::os::unix::fs::MetadataExt;
            Ok(fs::metadata(&b.file)
                .map_err(|e| Error::storage("test", e))?
                .blocks()
                * 512)
        };
        let before = allocated()?;
        // Rewrite every key, one commit each, never flushing: every page of
        // the durable tree is replaced once. redb reuses none of them before a
        // durable commit: without DURABLE_EVERY the file grew by 87 % here
        // (4.2 to 7.9 MB allocated), with it by 27 %.
        for i in 0..keys {
            b.apply(&batch(&[(&format!("key{i:05}"), Some("w"))]))?;
        }
        let after = allocated()?;
        assert!(
            after - before < before / 2,
            "the file grew from {before} to {after} bytes without a flush"
        );
        Ok(())
    }

    #[test]
    fn a_read_after_a_commit_sees_it_though_reads_share_a_transaction() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        for sharing in [Sharing::LiveReaders, Sharing::Exclusive] {
            let sub = dir.path().join(format!("{sharing:?}"));
            fs::create_dir(&sub).map_err(|e| Error::storage("test", e))?;
            let b = RedbBackend::open(&sub, 1 << 20, sharing)?;
            // These reads share one transaction...
            assert_eq!(b.get(b"k")?, None);
            assert!(b.scan_prefix(b"k")?.is_empty());
            // ...which every commit ends, durable or not.
            b.apply(&batch(&[("k", Some("1"))]))?;
            assert_eq!(b.get(b"k")?.as_deref(), Some(&b"1"[..]));
            b.apply_durable(&batch(&[("k", Some("2"))]))?;
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
        let b = RedbBackend::open(dir.path(), 1 << 20, Sharing::Exclusive)?;
        b.apply_durable(&batch(&[("k", Some("v"))]))?;
        assert!(dir.path().join(FILE).exists());
        assert!(!dir.path().join(NEW_FILE).exists(), "replaced and renamed");
        drop(b);
        let again = RedbBackend::open(dir.path(), 1 << 20, Sharing::Exclusive)?;
        assert_eq!(again.get(b"k")?.as_deref(), Some(&b"v"[..]));
        Ok(())
    }

    #[test]
    fn a_file_that_is_not_redb_is_an_error_not_a_panic() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
        fs::write(dir.path().join(FILE), vec![0xA5; 64 << 10])
            .map_err(|e| Error::storage("test", e))?;
        let err = RedbBackend::open(dir.path(), 1 << 20, Sharing::LiveReaders).err();
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
            let b = RedbBackend::open(dir.path(), 1 << 20, Sharing::Exclusive)?;
            write_pages(&b)?;
        }
        // Clean: the check passes, and leaves the file clean.
        RedbBackend::check(dir.path(), 1 << 20)?;
        damage_marked(&file)?;
        assert_corrupt("the check", RedbBackend::check(dir.path(), 1 << 20));
        // The failed check changed nothing: it fails again, and the plain
        // open, which trusts a cleanly closed file, still opens it.
        assert_corrupt("a second check", RedbBackend::check(dir.path(), 1 << 20));
        let b = RedbBackend::open(dir.path(), 1 << 20, Sharing::Exclusive)?;
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
        let b = RedbBackend::open(&live, 1 << 20, Sharing::Exclusive)?;
        write_pages(&b)?;
        // One more small durable commit: it shares every page but one path
        // with the commit before it, the one a repair would fall back to.
        b.apply_durable(&batch(&[("zzz", Some("1"))]))?;
        // A copy of the open file: what a crash now leaves.
        let crashed = dir.path().join("crashed");
        fs::create_dir(&crashed).map_err(|e| Error::storage("test", e))?;
        fs::copy(&b.file, crashed.join(FILE)).map_err(|e| Error::storage("test", e))?;
        // Undamaged, the crashed copy opens (repaired) with every commit.
        let sound = dir.path().join("sound");
        fs::create_dir(&sound).map_err(|e| Error::storage("test", e))?;
        fs::copy(crashed.join(FILE), sound.join(FILE)).map_err(|e| Error::storage("test", e))?;
        let repaired = RedbBackend::open(&sound, 1 << 20, Sharing::Exclusive)?;
        assert_eq!(repaired.get(b"zzz")?.as_deref(), Some(&b"1"[..]));
        drop(repaired);
        damage_marked(&crashed.join(FILE))?;
        assert_corrupt(
            "the open after a crash",
            RedbBackend::open(&crashed, 1 << 20, Sharing::Exclusive),
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
        let err = RedbBackend::open(dir.path(), 1 << 20, Sharing::LiveReaders).err();
        assert!(
            matches!(&err, Some(Error::NotAStore { reason, .. }) if reason.contains("accounts")),
            "{err:?}"
        );
        Ok(())
    }
}

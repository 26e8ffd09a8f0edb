//! Every write goes through here: a writer applies its own batch when the
//! engine is free, and otherwise hands it to the commit thread, which does
//! group commit.
//!
//! - **Direct path.** When nothing is queued for the commit thread and the
//!   engine lock is free, the writer applies its batch (durably, if the
//!   store's durability asks for it) on its own thread, under the engine lock. A lone writer thus
//!   pays no thread handoff: two wake-ups per write cost about as much as the
//!   rest of the store's work on a save (see docs/performance.md).
//! - **Group commit.** Otherwise the writer queues its batch and waits for
//!   the answer, at most `write_timeout`. The commit thread takes the engine
//!   lock, concatenates whatever batches have queued up, in order, applies
//!   them as one atomic engine batch, durably if any asked for durability
//!   or a flush, and answers them all.
//! - **Journal first.** Every batch (a lone writer's, or a whole group's)
//!   is appended to the write-ahead journal as one record, then applied to
//!   the engine without an engine flush, stamped with the record's number
//!   (`journal::stamp`). A durable batch syncs the journal (one
//!   `fdatasync`) between the two: it is acknowledged once its record is
//!   durable. A flush with no batch (`Store::flush`, the periodic flush)
//!   syncs the journal. The engine is made durable only by checkpoints
//!   (`checkpoint`), in the background, and once more at close.
//! - **A refused batch leaves no trace.** If the engine refuses a batch
//!   whose record is in the journal, a record cancelling it is appended and
//!   synced, so no replay applies it. If the append itself fails, the
//!   engine never sees the batch. One engine batch per group matters on
//!   sled 0.34: every `apply_batch` rolls its log buffer, whatever the
//!   batch holds.
//! - **Stalls.** While anything is queued, every writer queues (so direct
//!   writers cannot starve the queue). If the engine hangs, the writer inside
//!   it hangs with it; every other writer gets [`Error::Stalled`] after
//!   `write_timeout`, and the store refuses writes from then on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, bounded, unbounded};
use parking_lot::Mutex;

use crate::embedded::backend::{Backend, Batch};
use crate::embedded::checkpoint::{self, Checkpointer, Target};
use crate::embedded::durability::Durability;
use crate::embedded::join::Worker;
use crate::embedded::journal::{self, Writer};
use crate::embedded::reserve::Reserve;
use crate::error::{Error, Result};
use crate::{codec, keys};

/// Which thread may apply a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applier {
    /// The caller's own thread if the engine is free and nothing is queued,
    /// else the commit thread.
    CallerIfFree,
    /// Always the commit thread, so that a hung engine cannot hold the
    /// caller: for the reaper thread, which dropping the last handle joins.
    CommitThread,
}

/// The most requests answered by one flush.
const MAX_GROUP: usize = 512;

enum Request {
    Write {
        batch: Batch,
        durable: bool,
        reply: Sender<Result<()>>,
    },
    Flush {
        reply: Sender<Result<()>>,
    },
    /// A direct writer applied the first unflushed batch: the periodic
    /// flush, asleep while nothing was unflushed, must be armed.
    Wake,
}

pub(crate) struct Committer {
    tx: Option<Sender<Request>>,
    thread: Option<Worker>,
    checkpointer: Option<Checkpointer>,
    shared: Arc<Shared>,
    /// Set when a write timed out; only the writers' side reads it.
    stalled: AtomicBool,
    durability: Durability,
    timeout: Duration,
}

/// What the writers and the commit thread share.
struct Shared {
    backend: Arc<dyn Backend>,
    /// Held around every append and apply, by a direct writer or the thread,
    /// so that records are numbered in the order the engine applies them.
    engine: Mutex<()>,
    /// The journal, and what the checkpoints share with the writers.
    target: Target,
    /// Asks the checkpoint thread for a checkpoint; taken at shutdown.
    nudge: Mutex<Option<Sender<()>>>,
    /// The reserve of free space, checked before every batch; `None` for
    /// a temporary store or substitute parts.
    reserve: Option<Arc<Reserve>>,
    /// Engine batches since the last nudge.
    since_nudge: AtomicU64,
    /// Journal bytes appended at the last nudge.
    nudged_at: AtomicU64,
    /// Requests sent to the commit thread and not answered yet.
    pending: AtomicUsize,
    /// Whether a record was appended since the last journal sync.
    unflushed: AtomicBool,
    writes: AtomicU64,
    flushes: AtomicU64,
    /// The store's time floor (see `Clock`), shared with the core.
    floor: Arc<AtomicU64>,
    /// The floor the latest applied batch carried: what the engine holds.
    stamped: AtomicU64,
}

impl Shared {
    /// Adds the time floor to `batch`, unless it writes that record itself
    /// (a raw write of a corruption test). The caller holds the engine lock,
    /// so the values the engine receives only ever rise.
    fn stamp(&self, batch: &mut Batch) -> u64 {
        let floor = self.floor.load(Ordering::Acquire);
        if !batch.names(keys::CLOCK_KEY) {
            batch.put(keys::CLOCK_KEY.to_vec(), codec::encode_time(floor));
        }
        floor
    }

    /// Notes that a batch stamped with `floor` was applied.
    fn stamped(&self, floor: u64) {
        self.stamped.fetch_max(floor, Ordering::AcqRel);
    }

    /// Syncs the journal: every write so far is durable.
    fn flush(&self) -> Result<()> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.target.journal.lock().sync()?;
        self.unflushed.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Appends `batch`, the writes of `writers` requests, to the journal
    /// (synced if `durable`), then applies it to the engine. The caller
    /// holds the engine lock. Returns whether it is the first record left
    /// unsynced since the last sync.
    fn apply(&self, batch: &mut Batch, durable: bool, writers: u64) -> Result<bool> {
        if let Some(reserve) = &self.reserve {
            let journal = &self.target.journal;
            reserve.admit(
                batch.only_deletes(&[keys::CLOCK_KEY]),
                self.backend.pending_bytes(),
                &|| journal.lock().last() + 1,
            )?;
        }
        let (seq, appended) = {
            let mut journal = self.target.journal.lock();
            let seq = journal.append(batch)?;
            if durable {
                self.flushes.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = journal.sync() {
                    // The record may be durable: cancel it, if the journal
                    // still takes a write (it does not after a failed sync,
                    // and then refuses every write until a reopen).
                    let _ = journal.cancel(seq);
                    return Err(e);
                }
            }
            (seq, journal.appended())
        };
        journal::stamp(batch, seq);
        if let Err(e) = self.backend.apply_owned(std::mem::take(batch)) {
            // Nothing of the batch is in the engine: no replay may apply it.
            let cancelled = self.target.journal.lock().cancel(seq);
            self.unflushed.store(false, Ordering::Relaxed);
            return Err(match cancelled {
                Ok(()) => e,
                Err(c) => Error::storage("applying a batch", format!("{e}; then {c}")),
            });
        }
        self.target.applied.store(seq, Ordering::Release);
        self.writes.fetch_add(writers, Ordering::Relaxed);
        let commits = self.since_nudge.fetch_add(1, Ordering::Relaxed) + 1;
        if commits >= checkpoint::COMMITS
            || appended.saturating_sub(self.nudged_at.load(Ordering::Relaxed)) >= checkpoint::BYTES
        {
            self.since_nudge.store(0, Ordering::Relaxed);
            self.nudged_at.store(appended, Ordering::Relaxed);
            if let Some(tx) = &*self.nudge.lock() {
                let _ = tx.try_send(());
            }
        }
        if durable {
            self.unflushed.store(false, Ordering::Relaxed);
            Ok(false)
        } else {
            Ok(!self.unflushed.swap(true, Ordering::Relaxed))
        }
    }

    /// At close: syncs the journal, makes the engine durable, and removes
    /// the journal, whose records the engine then holds. The caller holds
    /// the engine lock, so nothing is appended meanwhile.
    fn close(&self) -> Result<()> {
        self.flush()?;
        self.backend.flush()?;
        self.target.journal.lock().remove_all()
    }
}

impl Committer {
    /// Starts the threads `sessionstore-commit` and `sessionstore-checkpoint`.
    pub fn start(
        backend: Arc<dyn Backend>,
        journal: Writer,
        reserve: Option<Reserve>,
        floor: Arc<AtomicU64>,
        durability: Durability,
        timeout: Duration,
    ) -> Result<Self> {
        let stamped = AtomicU64::new(floor.load(Ordering::Acquire));
        let last = journal.last();
        let reserve = reserve.map(Arc::new);
        let target = Target {
            backend: backend.clone(),
            journal: Arc::new(Mutex::new(journal)),
            applied: Arc::new(AtomicU64::new(last)),
            covered: Arc::new(AtomicU64::new(last)),
            reserve: reserve.clone(),
        };
        // A checkpoint makes the journal durable through what it writes
        // first: under `Periodic` the records may not be yet.
        let journal = target.journal.clone();
        backend.before_checkpoint(Arc::new(move |_through| journal.lock().sync()));
        let (checkpointer, nudge) = Checkpointer::start(target.clone(), timeout)?;
        let (tx, rx) = unbounded();
        let shared = Arc::new(Shared {
            backend,
            engine: Mutex::new(()),
            target,
            nudge: Mutex::new(Some(nudge)),
            reserve,
            since_nudge: AtomicU64::new(0),
            nudged_at: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            unflushed: AtomicBool::new(false),
            writes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            floor,
            stamped,
        });
        let thread = {
            let shared = shared.clone();
            Worker::spawn("sessionstore-commit", move || run(&shared, &rx, durability))
                .map_err(|e| Error::storage("starting the commit thread", e))?
        };
        Ok(Committer {
            tx: Some(tx),
            thread: Some(thread),
            checkpointer: Some(checkpointer),
            shared,
            stalled: AtomicBool::new(false),
            durability,
            timeout,
        })
    }

    /// Whether every write is flushed before it is acknowledged (`Durability::Immediate`).
    fn is_durable(&self) -> bool {
        matches!(self.durability, Durability::Immediate)
    }

    /// Applies `batch` atomically at the store's durability: with
    /// `Durability::Immediate`, returns once it is flushed.
    pub fn write(&self, batch: Batch) -> Result<()> {
        self.submit(batch, self.is_durable(), Applier::CallerIfFree)
    }

    /// Applies `batch` atomically and returns once it is flushed, whatever
    /// the store's durability, on the thread `applier` allows: for the
    /// reaper, whose every chunk is one such batch.
    pub fn write_durable(&self, batch: Batch, applier: Applier) -> Result<()> {
        self.submit(batch, true, applier)
    }

    /// Applies `batch` atomically, flushed before returning if `durable`,
    /// on the thread `applier` allows.
    fn submit(&self, batch: Batch, durable: bool, applier: Applier) -> Result<()> {
        if self.is_stalled() {
            return Err(self.stalled_error());
        }
        if applier == Applier::CallerIfFree
            && self.shared.pending.load(Ordering::Acquire) == 0
            && let Some(_engine) = self.shared.engine.try_lock()
        {
            return self.write_direct(batch, durable);
        }
        self.call(|reply| Request::Write {
            batch,
            durable,
            reply,
        })
    }

    /// The direct path; the caller holds the engine lock.
    fn write_direct(&self, mut batch: Batch, durable: bool) -> Result<()> {
        let floor = self.shared.stamp(&mut batch);
        let first = self.shared.apply(&mut batch, durable, 1)?;
        self.shared.stamped(floor);
        if first && !self.is_durable() {
            self.wake();
        }
        Ok(())
    }

    /// Tells the commit thread to arm its periodic flush. If it has stopped,
    /// the last handle is closing and its final flush covers the write.
    fn wake(&self) {
        if let Some(tx) = &self.tx {
            self.shared.pending.fetch_add(1, Ordering::AcqRel);
            if tx.send(Request::Wake).is_err() {
                self.shared.pending.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<()> {
        self.call(|reply| Request::Flush { reply })
    }

    /// The time floor the engine holds: the one the latest applied batch carried.
    pub fn stamped_floor(&self) -> u64 {
        self.shared.stamped.load(Ordering::Acquire)
    }

    /// Bytes the journal's segments take.
    pub fn journal_size(&self) -> Result<u64> {
        self.shared.target.journal.lock().size()
    }

    /// How many batches were applied since the store was opened.
    pub fn writes(&self) -> u64 {
        self.shared.writes.load(Ordering::Relaxed)
    }

    /// How many flushes were made since the store was opened.
    pub fn flushes(&self) -> u64 {
        self.shared.flushes.load(Ordering::Relaxed)
    }

    /// Requests sent to the commit thread and not answered yet.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.shared.pending.load(Ordering::Acquire)
    }

    /// Whether a write has timed out; if so every later write is refused.
    pub fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire)
    }

    fn stalled_error(&self) -> Error {
        Error::Stalled {
            after: self.timeout,
        }
    }

    fn call(&self, make: impl FnOnce(Sender<Result<()>>) -> Request) -> Result<()> {
        if self.is_stalled() {
            return Err(self.stalled_error());
        }
        let (reply, answer) = bounded(1);
        let gone = || {
            Error::storage(
                "sending a write to the commit thread",
                "the commit thread has stopped",
            )
        };
        let tx = self.tx.as_ref().ok_or_else(gone)?;
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        if tx.send(make(reply)).is_err() {
            self.shared.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(gone());
        }
        match answer.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => {
                self.stalled.store(true, Ordering::Release);
                log::error!(
                    "sessionstore: a write did not complete within {:?}; refusing further writes",
                    self.timeout
                );
                Err(self.stalled_error())
            }
            Err(RecvTimeoutError::Disconnected) => Err(gone()),
        }
    }

    /// The configured `write_timeout`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Stops the commit thread, which flushes a last time. Returns `false` if
    /// the thread may still be inside the engine: a write timed out, or the
    /// thread did not end within `write_timeout` (its last flush hangs). It
    /// is then left running, and the engine stays open under it.
    pub fn shut_down(&mut self) -> bool {
        drop(self.tx.take());
        let committed = match self.thread.take() {
            // Joining a thread stuck in the engine would hang the caller too.
            Some(_) if self.is_stalled() => false,
            Some(thread) => thread.join_within(self.timeout),
            None => true,
        };
        drop(self.shared.nudge.lock().take());
        let checkpointed = self.checkpointer.take().is_none_or(|mut c| c.stop());
        committed && checkpointed
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn run(shared: &Shared, rx: &Receiver<Request>, durability: Durability) {
    let period = match durability {
        Durability::Periodic(d) => Some(d),
        Durability::Immediate => None,
    };
    // The periodic flush is due `period` after the first write it covers; an
    // idle store sleeps until a request comes. An interval too long to add to
    // now (`Duration::MAX`) means no timed flush at all.
    let mut next_flush: Option<Instant> = None;
    loop {
        let first = match next_flush {
            Some(at) => match rx.recv_deadline(at) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(r) => Some(r),
                Err(_) => break,
            },
        };
        if let Some(first) = first {
            // Take the engine first, then the group: whatever queued up while
            // a direct writer held the engine joins this group.
            let _engine = shared.engine.lock();
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            commit_group(shared, group);
        }
        if next_flush.is_some_and(|at| Instant::now() >= at) {
            let _engine = shared.engine.lock();
            if shared.unflushed.load(Ordering::Relaxed)
                && let Err(e) = shared.flush()
            {
                log::error!("sessionstore: periodic flush failed: {e}");
            }
            next_flush = None;
        }
        if next_flush.is_none()
            && let Some(d) = period
            && shared.unflushed.load(Ordering::Relaxed)
        {
            next_flush = Instant::now().checked_add(d);
        }
    }
    let _engine = shared.engine.lock();
    if let Err(e) = shared.close() {
        log::error!(
            "sessionstore: the checkpoint at close failed, the journal keeps its records: {e}"
        );
    }
}

/// Applies a group as one engine batch, durably if any member needs it, and
/// answers every member: all succeed or all fail. The caller holds the
/// engine lock.
fn commit_group(shared: &Shared, group: Vec<Request>) {
    // Applying the batches one after the other or concatenated gives the same
    // state (a later operation on a key wins either way), so the group goes to
    // the engine as one batch. If it fails, nothing of it was applied.
    let answered = group.len();
    let mut merged = Batch::default();
    let mut replies = Vec::with_capacity(group.len());
    let mut writes = 0u64;
    let mut need_flush = false;
    for req in group {
        match req {
            Request::Write {
                batch,
                durable,
                reply,
            } => {
                merged.append(batch);
                writes += 1;
                need_flush |= durable;
                replies.push(reply);
            }
            Request::Flush { reply } => {
                need_flush = true;
                replies.push(reply);
            }
            Request::Wake => {}
        }
    }
    // One engine step applies the group and, if any member needs it, makes
    // it durable: on redb one transaction, not a batch and then a flush.
    let (done, what) = if writes == 0 {
        let done = if need_flush { shared.flush() } else { Ok(()) };
        (done, "flushing")
    } else {
        let floor = shared.stamp(&mut merged);
        let done = shared.apply(&mut merged, need_flush, writes).map(drop);
        if done.is_ok() {
            shared.stamped(floor);
        }
        let what = if need_flush {
            "committing a group of writes durably"
        } else {
            "applying a group of writes"
        };
        (done, what)
    };
    let done = done.map_err(|e| e.to_string());
    // The group is done: it no longer counts as queued, before anyone hears
    // so. Should this thread die instead (a panic in the engine), `pending`
    // stays above zero: every later write then queues and fails with "the
    // commit thread has stopped", rather than writing on with nobody to flush.
    shared.pending.fetch_sub(answered, Ordering::AcqRel);
    for reply in replies {
        let result = match &done {
            Ok(()) => Ok(()),
            Err(msg) => Err(Error::storage(what, msg.clone())),
        };
        // A caller that timed out has dropped its receiver; nobody is left to tell.
        let _ = reply.send(result);
    }
}

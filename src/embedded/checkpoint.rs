//! Checkpoints: a durable engine commit, after which the journal's records
//! up to that point are redundant and their segments can be reused.
//!
//! The thread `sessionstore-checkpoint` takes one when asked (the committer
//! asks after [`COMMITS`] engine batches or [`BYTES`] of journal since the
//! last one) and at the latest [`INTERVAL`] after a batch it has not
//! covered. A checkpoint:
//!
//! 1. reads the last journal record the engine has applied, `s`;
//! 2. makes the engine's state durable by a real flush (`Backend::flush`:
//!    redb's durable commit, `fdatasync`; sled's flush and then `fsync` of
//!    its files), which covers `s` and whatever came after it;
//! 3. lets the journal reuse the segments whose records are all at or
//!    below `s`.
//!
//! It takes no store lock: writers go on appending to the journal while it
//! runs, and wait only where the engine serialises its own commits (on
//! redb, one engine commit). A failed checkpoint is logged and tried again
//! at the next one; the records stay until one succeeds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use parking_lot::Mutex;

use crate::embedded::backend::Backend;
use crate::embedded::join::Worker;
use crate::embedded::journal::{SEGMENT_BYTES, Writer};
use crate::embedded::reserve::Reserve;
use crate::error::{Error, Result};

/// Batches after which a checkpoint is asked for: bounds the records a
/// replay at open goes through. Each checkpoint is one engine commit of
/// everything the overlay holds (see `overlay`), so fewer, larger ones cost
/// less per batch.
pub(crate) const COMMITS: u64 = 8192;
/// Journal bytes after which a checkpoint is asked for: bounds the journal
/// (two segments in use) and the replay at open.
pub(crate) const BYTES: u64 = 2 * SEGMENT_BYTES;
/// The longest a batch waits for a checkpoint.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// What a checkpoint needs: the engine, the journal, and the number of the
/// last record the engine applied.
#[derive(Clone)]
pub(crate) struct Target {
    pub backend: Arc<dyn Backend>,
    pub journal: Arc<Mutex<Writer>>,
    pub applied: Arc<AtomicU64>,
    /// The number the last checkpoint covered.
    pub covered: Arc<AtomicU64>,
    /// The reserve of free space, told of every checkpoint; `None` for a
    /// temporary store or substitute parts.
    pub reserve: Option<Arc<Reserve>>,
}

impl Target {
    /// Takes one checkpoint now, if anything was applied since the last.
    pub fn checkpoint(&self) -> Result<()> {
        let s = self.applied.load(Ordering::Acquire);
        if s <= self.covered.load(Ordering::Acquire) {
            return Ok(());
        }
        self.backend.flush()?;
        self.journal.lock().release_through(s);
        self.covered.fetch_max(s, Ordering::AcqRel);
        if let Some(reserve) = &self.reserve {
            reserve.checkpointed(s);
        }
        Ok(())
    }
}

/// The checkpoint thread. It stops when every sender of its nudges is
/// dropped; [`stop`](Self::stop) (and `Drop`) then joins it.
pub(crate) struct Checkpointer {
    thread: Option<Worker>,
    join_limit: Duration,
}

impl Checkpointer {
    /// Starts the thread `sessionstore-checkpoint`; returns it and the
    /// sender that asks it for a checkpoint (`try_send`, never blocking).
    /// The thread holds the target's parts, never a store handle.
    pub fn start(target: Target, join_limit: Duration) -> Result<(Self, Sender<()>)> {
        let (nudge, nudged) = bounded::<()>(1);
        let thread = Worker::spawn("sessionstore-checkpoint", move || run(&target, &nudged))
            .map_err(|e| Error::storage("starting the checkpoint thread", e))?;
        Ok((
            Checkpointer {
                thread: Some(thread),
                join_limit,
            },
            nudge,
        ))
    }

    /// Joins the thread, waiting at most the join limit, once its nudge
    /// sender is dropped. Returns `false` if it is still running (stuck in
    /// the engine).
    pub fn stop(&mut self) -> bool {
        self.thread
            .take()
            .is_none_or(|t| t.join_within(self.join_limit))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(target: &Target, nudged: &Receiver<()>) {
    loop {
        match nudged.recv_timeout(INTERVAL) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if let Err(e) = target.checkpoint() {
            log::error!("sessionstore: a checkpoint failed, the journal keeps its records: {e}");
        }
    }
}

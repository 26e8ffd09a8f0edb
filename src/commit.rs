//! The commit thread: every write goes through it, and it does group commit.
//!
//! Writers send a batch and wait for the answer with a timeout
//! (`write_timeout`). The thread concatenates whatever batches have queued
//! up, in order, applies them as one atomic engine batch, then flushes once
//! if any of them asked for durability, then answers them all. One engine
//! batch per group matters on sled 0.34: every `apply_batch` rolls and syncs
//! its log buffer twice (`PageCache::pin_log`), whatever the batch holds.
//! So one flush covers every batch applied before it started, and an engine
//! that hangs inside a write makes callers get [`Error::Stalled`] instead of
//! hanging with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, bounded, unbounded};

use crate::backend::{Backend, Batch};
use crate::config::Durability;
use crate::error::{Error, Result};

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
}

pub(crate) struct Committer {
    tx: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    stalled: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    flushes: Arc<AtomicU64>,
    durability: Durability,
    timeout: Duration,
}

impl Committer {
    /// Starts the thread `sessionstore-commit`.
    pub fn start(
        backend: Arc<dyn Backend>,
        durability: Durability,
        timeout: Duration,
    ) -> Result<Self> {
        let (tx, rx) = unbounded();
        let writes = Arc::new(AtomicU64::new(0));
        let flushes = Arc::new(AtomicU64::new(0));
        let counters = Counters {
            writes: writes.clone(),
            flushes: flushes.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("sessionstore-commit".into())
            .spawn(move || run(&*backend, &rx, durability, &counters))
            .map_err(|e| Error::storage("starting the commit thread", e))?;
        Ok(Committer {
            tx: Some(tx),
            thread: Some(thread),
            stalled: Arc::new(AtomicBool::new(false)),
            writes,
            flushes,
            durability,
            timeout,
        })
    }

    /// Whether every write is flushed before it is acknowledged (`Durability::Immediate`).
    pub fn is_durable(&self) -> bool {
        matches!(self.durability, Durability::Immediate)
    }

    /// Applies `batch` atomically, flushed before returning if `durable`.
    pub fn write_with(&self, batch: Batch, durable: bool) -> Result<()> {
        self.call(|reply| Request::Write {
            batch,
            durable,
            reply,
        })
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<()> {
        self.call(|reply| Request::Flush { reply })
    }

    /// How many batches were applied since the store was opened.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// How many flushes the commit thread made since the store was opened.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Requests waiting for the commit thread.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.tx.as_ref().map_or(0, Sender::len)
    }

    /// Whether a write has timed out; if so every later write is refused.
    pub fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire)
    }

    fn call(&self, make: impl FnOnce(Sender<Result<()>>) -> Request) -> Result<()> {
        if self.is_stalled() {
            return Err(Error::Stalled {
                after: self.timeout,
            });
        }
        let (reply, answer) = bounded(1);
        let gone = || {
            Error::storage(
                "sending a write to the commit thread",
                "the commit thread has stopped",
            )
        };
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send(make(reply))
            .map_err(|_| gone())?;
        match answer.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => {
                self.stalled.store(true, Ordering::Release);
                log::error!(
                    "sessionstore: a write did not complete within {:?}; refusing further writes",
                    self.timeout
                );
                Err(Error::Stalled {
                    after: self.timeout,
                })
            }
            Err(RecvTimeoutError::Disconnected) => Err(gone()),
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if self.is_stalled() {
                // The thread is stuck inside the engine; joining would hang the caller too.
                return;
            }
            if thread.join().is_err() {
                log::error!("sessionstore: the commit thread panicked");
            }
        }
    }
}

/// What the commit thread counts, for `Stats`.
struct Counters {
    writes: Arc<AtomicU64>,
    flushes: Arc<AtomicU64>,
}

impl Counters {
    fn flush(&self, backend: &dyn Backend) -> Result<()> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        backend.flush()
    }
}

fn run(backend: &dyn Backend, rx: &Receiver<Request>, durability: Durability, counters: &Counters) {
    let period = match durability {
        Durability::Periodic(d) => Some(d),
        Durability::Immediate => None,
    };
    let mut unflushed = false;
    let mut next_flush = period.map(|d| Instant::now() + d);
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
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            commit_group(backend, group, &mut unflushed, counters);
        }
        if let (Some(at), Some(d)) = (next_flush, period)
            && Instant::now() >= at
        {
            if unflushed {
                match counters.flush(backend) {
                    Ok(()) => unflushed = false,
                    Err(e) => log::error!("sessionstore: periodic flush failed: {e}"),
                }
            }
            next_flush = Some(Instant::now() + d);
        }
    }
    if let Err(e) = counters.flush(backend) {
        log::error!("sessionstore: final flush failed: {e}");
    }
}

fn commit_group(
    backend: &dyn Backend,
    group: Vec<Request>,
    unflushed: &mut bool,
    counters: &Counters,
) {
    // Applying the batches one after the other or concatenated gives the same
    // state (a later operation on a key wins either way), so the group goes to
    // the engine as one batch. If it fails, nothing of it was applied.
    let mut merged = Batch::default();
    let mut writers = Vec::with_capacity(group.len());
    let mut flushers = Vec::new();
    for req in group {
        match req {
            Request::Write {
                batch,
                durable,
                reply,
            } => {
                merged.append(batch);
                writers.push((reply, durable));
            }
            Request::Flush { reply } => flushers.push(reply),
        }
    }
    let applied = if merged.is_empty() {
        Ok(())
    } else {
        backend.apply(&merged).map_err(|e| e.to_string())
    };
    let mut need_flush = !flushers.is_empty();
    let mut answers = Vec::with_capacity(writers.len() + flushers.len());
    for (reply, durable) in writers {
        let result = match &applied {
            Ok(()) => {
                counters.writes.fetch_add(1, Ordering::Relaxed);
                *unflushed = true;
                need_flush |= durable;
                Ok(())
            }
            Err(msg) => Err(Error::storage("applying a group of writes", msg.clone())),
        };
        answers.push((reply, result, durable));
    }
    for reply in flushers {
        answers.push((reply, Ok(()), true));
    }
    let flushed = if need_flush {
        let r = counters.flush(backend);
        if r.is_ok() {
            *unflushed = false;
        }
        r.map_err(|e| e.to_string())
    } else {
        Ok(())
    };
    for (reply, result, durable) in answers {
        let result = match (&flushed, result) {
            (Err(msg), Ok(())) if durable => {
                Err(Error::storage("flushing a group of writes", msg.clone()))
            }
            (_, r) => r,
        };
        // A caller that timed out has dropped its receiver; nobody is left to tell.
        let _ = reply.send(result);
    }
}

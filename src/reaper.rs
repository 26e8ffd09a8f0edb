//! The reaper: deletes expired sessions, walking the expiry index from the
//! earliest deadline, so a pass costs what expired, not what lives.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, bounded};

use crate::commit::Applier;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::join::Worker;
use crate::keys::{self, Parsed};
use crate::write::WriteSet;

/// Index entries read per scan.
const CHUNK: usize = 256;

/// The reaper thread. Dropping it stops the thread and joins it, waiting at
/// most `write_timeout` (see `Drop`).
pub(crate) struct Reaper {
    stop: Option<Sender<()>>,
    thread: Option<Worker>,
    join_limit: Duration,
}

impl Reaper {
    /// Starts the thread `sessionstore-reaper`. It holds the core, never a
    /// `Store` handle, so the last handle's drop can stop it.
    pub fn spawn(core: Arc<Core>, interval: Duration) -> Result<Reaper> {
        let (stop, stopped) = bounded::<()>(0);
        let join_limit = core.write_timeout();
        let thread = Worker::spawn("sessionstore-reaper", move || {
            run(&core, &stopped, interval);
        })
        .map_err(|e| Error::storage("starting the reaper thread", e))?;
        Ok(Reaper {
            stop: Some(stop),
            thread: Some(thread),
            join_limit,
        })
    }
}

impl Drop for Reaper {
    /// Stops the thread. A pass ends at its next chunk, and a queued write of
    /// it fails within `write_timeout`; but a read blocked inside a hung
    /// engine (sled's reads wait for a hung write) cannot be interrupted, so
    /// after `write_timeout` the thread is left running. It holds the core,
    /// so the engine and the lock file then stay open until it ends.
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            t.join_within(self.join_limit);
        }
    }
}

fn run(core: &Core, stopped: &Receiver<()>, interval: Duration) {
    let should_stop = || matches!(stopped.try_recv(), Err(TryRecvError::Disconnected));
    loop {
        match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = reap_once(core, &should_stop, Applier::CommitThread) {
                    core.count_failed_reap();
                    log::warn!("sessionstore: reaper pass failed, retrying in {interval:?}: {e}");
                }
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// One pass: every index entry with a deadline at or before now is re-checked
/// under its session's lock, and the session deleted if it really expired.
/// `should_stop` is asked between chunks. `applier` says where the
/// deletions are applied: the reaper thread passes `Applier::CommitThread`,
/// so that a hung engine makes its writes time out rather than hold the
/// thread that `Store`'s drop waits for.
pub(crate) fn reap_once(
    core: &Core,
    should_stop: &dyn Fn() -> bool,
    applier: Applier,
) -> Result<usize> {
    let now = core.now();
    let end = keys::index_bound(now.saturating_add(1));
    let ticket = core.events().ticket();
    let mut reaped = 0;
    let mut wrote = false;
    core.walk(
        &keys::index_start(),
        Some(&end),
        CHUNK,
        &|| !should_stop(),
        &mut |key, _| match keys::parse(key) {
            Parsed::Index { deadline, sid } => {
                match reap_candidate(core, key, deadline, sid, now, applier, ticket) {
                    Ok(outcome) => {
                        wrote |= outcome != Outcome::Skipped;
                        reaped += usize::from(outcome == Outcome::Reaped);
                    }
                    Err(e) => log::warn!("sessionstore: reaper skipped session {sid:?}: {e}"),
                }
            }
            _ => log::warn!("sessionstore: reaper skipped an undecodable index key {key:?}"),
        },
    )?;
    if wrote {
        // The `Expired` events may go once the deletions are durable.
        if let Err(e) = core.flush() {
            core.events().abandon(ticket);
            return Err(e);
        }
        core.events().release(ticket);
    }
    core.count_reaped(reaped);
    Ok(reaped)
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Reaped,
    /// A stale or dangling index entry was removed.
    Tidied,
    Skipped,
}

fn reap_candidate(
    core: &Core,
    index_key: &[u8],
    deadline: u64,
    sid: &str,
    now: u64,
    applier: Applier,
    ticket: u64,
) -> Result<Outcome> {
    #[cfg(test)]
    hook::before_lock(sid);
    let _guard = core.lock(sid);
    let mut batch = WriteSet::default();
    let outcome = match core.read_meta(sid)? {
        Some(meta) if meta.index_deadline() == deadline => {
            if meta.is_live(now) {
                return Ok(Outcome::Skipped);
            }
            core.delete_session(&mut batch, sid, Some(&meta))?;
            Outcome::Reaped
        }
        // The session moved on (or is gone) and this entry was left behind.
        _ => {
            batch.delete(index_key.to_vec());
            Outcome::Tidied
        }
    };
    core.write_unflushed(batch, applier)?;
    if outcome == Outcome::Reaped {
        // Sent after the pass's flush (or before a later event of this id).
        let event = crate::events::Event::Expired {
            sid: sid.to_owned(),
        };
        core.events().defer(ticket, sid, event);
    }
    Ok(outcome)
}

/// A test hook that runs between the index scan and the lock of a candidate.
#[cfg(test)]
pub(crate) mod hook {
    use parking_lot::Mutex;

    type Hook = Box<dyn FnMut(&str) + Send>;
    static HOOK: Mutex<Option<Hook>> = Mutex::new(None);
    /// Held by each test that sets the hook, so that two such tests never
    /// run at once.
    pub static USERS: Mutex<()> = Mutex::new(());

    pub fn set(h: Option<Hook>) {
        *HOOK.lock() = h;
    }

    pub(super) fn before_lock(sid: &str) {
        if let Some(h) = HOOK.lock().as_mut() {
            h(sid);
        }
    }
}

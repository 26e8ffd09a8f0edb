//! The reaper: deletes expired sessions, walking the expiry index from the
//! earliest deadline, so a pass costs what expired, not what lives.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, bounded};

use crate::embedded::commit::Applier;
use crate::embedded::core::Core;
use crate::embedded::join::Worker;
use crate::embedded::write::WriteSet;
use crate::error::{Error, Result};
use crate::keys::{self, Parsed};

/// Index entries read per scan: the most sessions one batch deletes.
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
                if let Err(e) = reap_once(core, &should_stop, Applier::CommitThread, &mut |_| {}) {
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
///
/// The index is read `CHUNK` entries at a time. Each chunk is one write: the
/// stripe locks of all its sessions are taken at once, in stripe order (so
/// that no other multi-session lock can deadlock with it), every candidate is
/// re-checked under them, and the deletions go to the engine as one batch,
/// flushed before the locks are released. `should_stop` is asked between
/// chunks. `applier` says where the batches are applied: the reaper thread
/// passes `Applier::CommitThread`, so that they join group commit and a hung
/// engine makes them time out rather than hold the thread that `Store`'s
/// drop waits for.
///
/// `on_reaped` is called with the ids a chunk deleted once that chunk is
/// durable, chunk by chunk: those of chunks written before a later one fails
/// are reported too. Returns how many sessions the pass deleted.
pub(crate) fn reap_once(
    core: &Core,
    should_stop: &dyn Fn() -> bool,
    applier: Applier,
    on_reaped: &mut dyn FnMut(&[String]),
) -> Result<usize> {
    let now = core.now();
    let end = keys::index_bound(now.saturating_add(1));
    let mut start = keys::index_start();
    let mut reaped = 0;
    loop {
        let entries = core.scan_range(&start, Some(&end), CHUNK)?;
        let candidates: Vec<Candidate<'_>> = entries
            .iter()
            .filter_map(|(key, _)| match keys::parse(key) {
                Parsed::Index { deadline, sid } => Some(Candidate { key, deadline, sid }),
                _ => {
                    log::warn!("sessionstore: reaper skipped an undecodable index key {key:?}");
                    None
                }
            })
            .collect();
        let deleted = reap_chunk(core, &candidates, now, applier)?;
        if !deleted.is_empty() {
            core.count_reaped(deleted.len());
            reaped += deleted.len();
            on_reaped(&deleted);
        }
        match entries.last() {
            Some((last, _)) if entries.len() == CHUNK && !should_stop() => {
                start.clone_from(last);
                start.push(0);
            }
            _ => return Ok(reaped),
        }
    }
}

/// An expiry index entry read by a pass.
struct Candidate<'a> {
    key: &'a [u8],
    deadline: u64,
    sid: &'a str,
}

/// Re-checks one chunk's candidates under their locks and deletes, as one
/// durable batch, the sessions that expired and the index entries left
/// behind. Returns the ids of the sessions deleted.
fn reap_chunk(
    core: &Core,
    candidates: &[Candidate<'_>],
    now: u64,
    applier: Applier,
) -> Result<Vec<String>> {
    #[cfg(test)]
    for c in candidates {
        hook::before_lock(c.sid);
    }
    let _guards = core.lock_many(candidates.iter().map(|c| c.sid));
    let mut set = WriteSet::default();
    let mut deleted = Vec::new();
    for c in candidates {
        match recheck(core, &mut set, c, now) {
            Ok(true) => deleted.push(c.sid.to_owned()),
            Ok(false) => {}
            Err(e) => log::warn!("sessionstore: reaper skipped session {:?}: {e}", c.sid),
        }
    }
    if !set.is_empty() {
        // The `Expired` events go once the deletions are durable, before the
        // locks are released: so they keep each session's commit order.
        let events = core.events();
        let ticket = events.ticket();
        for sid in &deleted {
            let event = crate::events::Event::Expired { sid: sid.clone() };
            events.defer(ticket, sid, event);
        }
        if let Err(e) = core.write_durable(set, applier) {
            events.abandon(ticket);
            return Err(e);
        }
        events.release(ticket);
    }
    Ok(deleted)
}

/// Adds to `set` what deleting candidate `c` takes, its session's lock held:
/// the whole session if its record still has this deadline and expired
/// (returns `true`); only the entry if the session moved on or is gone; or
/// nothing if it is live.
fn recheck(core: &Core, set: &mut WriteSet, c: &Candidate<'_>, now: u64) -> Result<bool> {
    match core.read_meta(c.sid)? {
        Some(meta) if meta.index_deadline() == c.deadline => {
            if meta.is_live(now) {
                return Ok(false);
            }
            // On an error it adds nothing, so `set` never holds half of it.
            core.delete_session(set, c.sid, Some(&meta))?;
            Ok(true)
        }
        // The session moved on (or is gone) and this entry was left behind.
        _ => {
            set.delete(c.key.to_vec());
            Ok(false)
        }
    }
}

/// A test hook that runs between the index scan and the locking of a
/// chunk, once per candidate, on the thread running the pass (so that tests
/// running side by side do not see each other's hooks).
#[cfg(test)]
pub(crate) mod hook {
    use std::cell::RefCell;

    type Hook = Box<dyn FnMut(&str) + Send>;

    thread_local! {
        static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    pub fn set(h: Option<Hook>) {
        HOOK.with(|hook| *hook.borrow_mut() = h);
    }

    pub(super) fn before_lock(sid: &str) {
        HOOK.with(|hook| {
            if let Some(h) = hook.borrow_mut().as_mut() {
                h(sid);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::embedded::backend::memory::MemoryBackend;
    use crate::{Config, ManualClock, Store};

    fn open(backend: &Arc<MemoryBackend>, clock: &ManualClock, reap: Option<Duration>) -> Store {
        Store::from_parts(
            Config::temporary()
                .clock(Arc::new(clock.clone()))
                .reap_interval(reap)
                .idle_timeout(Duration::from_secs(600)),
            crate::embedded::core::Parts {
                backend: Some(backend.clone()),
                ids: None,
                journal: None,
                write_through: true,
            },
        )
        .unwrap()
    }

    /// Creates sessions `s0`.. with one key each.
    fn populate(store: &Store, n: usize) {
        for i in 0..n {
            let mut s = store.create_new_session(&format!("s{i}")).unwrap();
            s.set("k", &i).unwrap();
            store.save(&mut s).unwrap();
        }
    }

    #[test]
    fn a_chunk_is_one_apply_and_one_flush_and_reports_its_ids_once_durable() {
        let backend = Arc::new(MemoryBackend::default());
        let clock = ManualClock::default();
        let store = open(&backend, &clock, None);
        populate(&store, 40);
        clock.advance(Duration::from_secs(601));
        let applies = backend.applies_started.load(Ordering::SeqCst);
        let flushes = store.core().flushes();
        let mut reported = Vec::new();
        let reaped = reap_once(store.core(), &|| false, Applier::CallerIfFree, &mut |ids| {
            // Reported only after the chunk's journal sync.
            assert_eq!(store.core().flushes(), flushes + 1);
            reported.extend_from_slice(ids);
        })
        .unwrap();
        assert_eq!(reaped, 40);
        assert_eq!(backend.applies_started.load(Ordering::SeqCst), applies + 1);
        assert_eq!(store.core().flushes(), flushes + 1);
        reported.sort();
        let mut expected: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        expected.sort();
        assert_eq!(reported, expected);
        assert_eq!(store.core().reaped(), 40);
    }

    #[test]
    fn a_pass_writes_one_batch_per_chunk() {
        let backend = Arc::new(MemoryBackend::default());
        let clock = ManualClock::default();
        let store = open(&backend, &clock, None);
        populate(&store, 2 * CHUNK + 1);
        clock.advance(Duration::from_secs(601));
        let applies = backend.applies_started.load(Ordering::SeqCst);
        let flushes = store.core().flushes();
        let mut chunks = Vec::new();
        let reaped = reap_once(store.core(), &|| false, Applier::CallerIfFree, &mut |ids| {
            chunks.push(ids.len());
        })
        .unwrap();
        assert_eq!(reaped, 2 * CHUNK + 1);
        assert_eq!(chunks, [CHUNK, CHUNK, 1]);
        assert_eq!(backend.applies_started.load(Ordering::SeqCst), applies + 3);
        assert_eq!(store.core().flushes(), flushes + 3);
    }

    #[test]
    fn the_recheck_under_the_chunk_locks_spares_a_session_recreated_after_the_scan() {
        let backend = Arc::new(MemoryBackend::default());
        let clock = ManualClock::default();
        let store = open(&backend, &clock, None);
        populate(&store, 20);
        clock.advance(Duration::from_secs(601));
        let hook_store = store.clone();
        hook::set(Some(Box::new(move |sid| {
            // Between the scan and the chunk's locks, s7's id is taken again.
            if sid == "s7" {
                let mut s = hook_store.create_new_session("s7").unwrap();
                s.set("new", &1u8).unwrap();
                hook_store.save(&mut s).unwrap();
            }
        })));
        let mut reported = Vec::new();
        let reaped = reap_once(store.core(), &|| false, Applier::CallerIfFree, &mut |ids| {
            reported.extend_from_slice(ids)
        });
        hook::set(None);
        assert_eq!(reaped.unwrap(), 19);
        assert!(!reported.iter().any(|id| id == "s7"), "{reported:?}");
        assert_eq!(reported.len(), 19);
        let s7 = store.get("s7", None).unwrap().expect("the new s7 survives");
        assert_eq!(s7.get::<u8>("new").unwrap(), Some(1));
        assert_eq!(store.session_ids().count(), 1);
        // The old session's index entry went with the recreate: nothing is left to tidy.
        assert_eq!(store.reap_expired().unwrap(), 0);
    }

    #[test]
    fn a_session_deletion_takes_the_keys_the_engine_holds_when_it_lands() {
        use crate::embedded::backend::{Backend, Batch};
        let backend = Arc::new(MemoryBackend::default());
        let clock = ManualClock::default();
        let store = open(&backend, &clock, None);
        populate(&store, 1);
        store.set_principal("s0", Some("alice")).unwrap();
        let core = store.core();
        let meta = core.read_meta("s0").unwrap().unwrap();
        let mut set = WriteSet::default();
        core.delete_session(&mut set, "s0", Some(&meta)).unwrap();
        // A key of s0 lands after the deletion was built and before it is
        // applied: a deletion made of the keys read beforehand would miss it.
        let mut late = Batch::default();
        late.put(keys::data("s0", Some("c"), "late"), vec![1]);
        backend.apply(&late).unwrap();
        core.write_durable(set, Applier::CallerIfFree).unwrap();
        assert_eq!(
            backend.scan_prefix(&keys::session_prefix("s0")).unwrap(),
            []
        );
        assert_eq!(
            backend
                .scan_prefix(&keys::principal_prefix("alice"))
                .unwrap(),
            []
        );
        assert_eq!(backend.scan_prefix(&keys::index_start()).unwrap(), []);
    }

    #[test]
    fn a_corrupt_record_in_a_chunk_is_skipped_and_the_rest_reaped() {
        let backend = Arc::new(MemoryBackend::default());
        let clock = ManualClock::default();
        let store = open(&backend, &clock, None);
        populate(&store, 10);
        store
            .__write_raw(crate::embedded::raw::RawTarget::Meta("s4"), &[0xFF; 3])
            .unwrap();
        clock.advance(Duration::from_secs(601));
        assert_eq!(store.reap_expired().unwrap(), 9);
        let record = crate::embedded::backend::Backend::get(&*backend, &keys::meta("s4")).unwrap();
        assert!(record.is_some(), "the corrupt record is left for verify");
    }

    #[test]
    fn the_reaper_threads_chunk_goes_through_the_commit_thread() {
        let backend = Arc::new(MemoryBackend::default());
        let clock = ManualClock::default();
        let store = open(&backend, &clock, Some(Duration::from_millis(1)));
        populate(&store, 30);
        let applies = backend.applies_started.load(Ordering::SeqCst);
        clock.advance(Duration::from_secs(601));
        for _ in 0..30_000 {
            if store.core().reaped() == 30 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(store.core().reaped(), 30);
        assert_eq!(backend.applies_started.load(Ordering::SeqCst), applies + 1);
        assert_eq!(
            backend.last_apply_thread().as_deref(),
            Some("sessionstore-commit")
        );
    }
}

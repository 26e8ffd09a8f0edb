//! Tests that need to reach inside the store: an engine that fails or hangs,
//! a scripted id source, and the reaper's hook between scan and lock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;

use crate::embedded::backend::memory::MemoryBackend;
use crate::error::{Error, Result};
use crate::id::IdSource;
use crate::{Config, ManualClock, Store, keys};

struct Scripted(Mutex<Vec<String>>);

impl IdSource for Scripted {
    fn next_id(&self) -> Result<String> {
        Ok(self.0.lock().remove(0))
    }
}

/// The test configuration; the engine comes in at open (`OpenOn`).
fn config(_backend: &Arc<MemoryBackend>, clock: &ManualClock) -> Config {
    Config::temporary()
        .clock(Arc::new(clock.clone()))
        .reap_interval(None)
        .idle_timeout(Duration::from_secs(600))
        .touch_granularity(Duration::from_secs(60))
}

/// Opens a configuration on the memory engine, through the internal constructor.
trait OpenOn {
    fn open_on(self, backend: &Arc<MemoryBackend>) -> Result<Store>;
}

impl OpenOn for Config {
    fn open_on(self, backend: &Arc<MemoryBackend>) -> Result<Store> {
        Store::from_parts(
            self,
            crate::embedded::core::Parts {
                backend: Some(backend.clone()),
                ids: None,
                journal: None,
                write_through: true,
            },
        )
    }
}

#[test]
fn create_retries_a_colliding_id_and_never_overwrites() -> Result<()> {
    let backend = Arc::new(MemoryBackend::default());
    let clock = ManualClock::default();
    let store = Store::from_parts(
        config(&backend, &clock),
        crate::embedded::core::Parts {
            backend: Some(backend.clone()),
            ids: Some(Arc::new(Scripted(Mutex::new(vec![
                "taken".into(),
                "taken".into(),
                "free".into(),
            ])))),
            journal: None,
            write_through: true,
        },
    )?;
    let mut s = store.create_new_session("taken")?;
    s.set("k", &1u8)?;
    store.save(&mut s)?;
    let fresh = store.create()?;
    assert_eq!(fresh.id(), "free");
    assert_eq!(store.get("taken", None)?.unwrap().get::<u8>("k")?, Some(1));
    Ok(())
}

#[test]
fn a_failed_save_stays_dirty_and_can_be_retried() -> Result<()> {
    let backend = Arc::new(MemoryBackend::default());
    let store = config(&backend, &ManualClock::default()).open_on(&backend)?;
    let mut s = store.create_new_session("s")?;
    s.set("k", &1u8)?;
    backend.fail_writes.store(true, Ordering::SeqCst);
    assert!(matches!(store.save(&mut s), Err(Error::Storage { .. })));
    assert!(s.is_dirty());
    backend.fail_writes.store(false, Ordering::SeqCst);
    store.save(&mut s)?;
    assert!(!s.is_dirty());
    assert_eq!(store.get("s", None)?.unwrap().get::<u8>("k")?, Some(1));
    Ok(())
}

/// Starts a save of `sid` on another thread and returns once its batch is
/// inside the engine, where it hangs until `backend.set_hang(false)`.
fn hang_a_writer<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    store: &'s Store,
    backend: &'s MemoryBackend,
    sid: &'s str,
) -> std::thread::ScopedJoinHandle<'s, Result<()>> {
    let started = backend.applies_started.load(Ordering::SeqCst);
    backend.set_hang(true);
    let writer = scope.spawn(move || {
        let mut s = store.get(sid, None)?.expect("live");
        s.set("k", &1u8)?;
        store.save(&mut s)
    });
    wait_for(|| backend.applies_started.load(Ordering::SeqCst) > started);
    writer
}

#[test]
fn a_hung_engine_gives_stalled_and_the_store_refuses_writes() -> Result<()> {
    let backend = Arc::new(MemoryBackend::default());
    let store = config(&backend, &ManualClock::default())
        .write_timeout(crate::embedded::config::MIN_WRITE_TIMEOUT)
        .open_on(&backend)?;
    store.create_new_session("inside")?;
    let mut s = store.create_new_session("s")?;
    std::thread::scope(|scope| -> Result<()> {
        // One writer's batch is inside the engine, which hangs; the next
        // writer waits for the engine at most `write_timeout`.
        let inside = hang_a_writer(scope, &store, &backend, "inside");
        s.set("k", &1u8)?;
        assert!(matches!(store.save(&mut s), Err(Error::Stalled { .. })));
        assert!(s.is_dirty());
        backend.set_hang(false);
        // The writer that was inside the engine finishes when it moves again.
        inside.join().expect("no panic")
    })?;
    // Even once the engine moves again, the store stays refused: restart it.
    assert!(matches!(
        store.create_new_session("t"),
        Err(Error::Stalled { .. })
    ));
    assert!(matches!(store.destroy("s"), Err(Error::Stalled { .. })));
    // Reads still work.
    assert!(store.get("s", None)?.is_some());
    Ok(())
}

#[test]
fn a_lone_writer_applies_its_own_batch_and_a_busy_engine_sends_the_next_to_the_thread() -> Result<()>
{
    let backend = Arc::new(MemoryBackend::default());
    let store = config(&backend, &ManualClock::default()).open_on(&backend)?;
    let mut s = store.create_new_session("s")?;
    s.set("k", &1u8)?;
    store.save(&mut s)?;
    assert_eq!(
        backend.last_apply_thread(),
        std::thread::current().name().map(str::to_owned),
        "a lone writer applies on its own thread"
    );
    store.create_new_session("inside")?;
    std::thread::scope(|scope| -> Result<()> {
        let inside = hang_a_writer(scope, &store, &backend, "inside");
        let queued = scope.spawn(|| {
            s.set("k", &2u8)?;
            store.save(&mut s)
        });
        wait_for(|| store.core().queued() == 1);
        backend.set_hang(false);
        inside.join().expect("no panic")?;
        queued.join().expect("no panic")
    })?;
    assert_eq!(
        backend.last_apply_thread().as_deref(),
        Some("sessionstore-commit"),
        "a writer that found the engine busy went through the commit thread"
    );
    assert_eq!(store.core().queued(), 0);
    assert_eq!(store.get("s", None)?.unwrap().get::<u8>("k")?, Some(2));
    Ok(())
}

/// Drops `store` on another thread; whether that returned within `limit`.
fn drop_within(store: Store, limit: Duration) -> bool {
    let (dropped_tx, dropped_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        drop(store);
        let _ = dropped_tx.send(());
    });
    dropped_rx.recv_timeout(limit).is_ok()
}

#[test]
fn dropping_the_store_returns_while_the_engine_hangs_under_the_reaper() -> Result<()> {
    let backend = Arc::new(MemoryBackend::default());
    let clock = ManualClock::default();
    let store = config(&backend, &clock)
        .write_timeout(crate::embedded::config::MIN_WRITE_TIMEOUT)
        .reap_interval(Some(Duration::from_millis(1)))
        .open_on(&backend)?;
    store.create_new_session("old")?;
    let started = backend.applies_started.load(Ordering::SeqCst);
    backend.set_hang(true);
    clock.advance(Duration::from_secs(601));
    // The reaper's deletion is inside the engine, which hangs.
    wait_for(|| backend.applies_started.load(Ordering::SeqCst) > started);
    let dropped = drop_within(store, Duration::from_secs(10));
    backend.set_hang(false);
    assert!(dropped, "dropping the last handle hung behind the reaper");
    Ok(())
}

#[test]
fn dropping_the_store_returns_while_the_reaper_is_stuck_in_a_read() -> Result<()> {
    let backend = Arc::new(MemoryBackend::default());
    let store = config(&backend, &ManualClock::default())
        .write_timeout(crate::embedded::config::MIN_WRITE_TIMEOUT)
        .reap_interval(Some(Duration::from_millis(1)))
        .open_on(&backend)?;
    let started = backend.scans_started.load(Ordering::SeqCst);
    backend.set_hang_scans(true);
    // The reaper's scan of the expiry index is inside the engine, which hangs.
    wait_for(|| backend.scans_started.load(Ordering::SeqCst) > started);
    let dropped = drop_within(store, Duration::from_secs(10));
    backend.set_hang_scans(false);
    assert!(
        dropped,
        "dropping the last handle hung behind the reaper's read"
    );
    Ok(())
}

#[test]
fn a_last_flush_that_hangs_neither_hangs_the_drop_nor_frees_the_directory() -> Result<()> {
    let backend = Arc::new(MemoryBackend::default());
    let store = config(&backend, &ManualClock::default())
        .write_timeout(crate::embedded::config::MIN_WRITE_TIMEOUT)
        .durability(crate::Durability::Periodic(Duration::from_secs(3600)))
        .open_on(&backend)?;
    store.create_new_session("s")?;
    let path = store.path().to_owned();
    backend.set_hang_flush(true);
    let dropped = drop_within(store, Duration::from_secs(10));
    let kept = path.exists();
    let reopened = Config::new(&path).open().map(drop);
    backend.set_hang_flush(false);
    assert!(
        dropped,
        "dropping the last handle hung behind the last flush"
    );
    assert!(
        kept,
        "the directory is kept while the last flush may still write"
    );
    assert!(
        matches!(reopened, Err(Error::InUse { .. })),
        "the lock stays held: {reopened:?}"
    );
    let _ = std::fs::remove_dir_all(&path);
    Ok(())
}

#[test]
fn live_checks_of_cached_sessions_do_not_read_the_engine() -> Result<()> {
    for (entries, reads_per_check) in [(16, 0), (0, 1)] {
        let backend = Arc::new(MemoryBackend::default());
        let store = config(&backend, &ManualClock::default())
            .meta_cache_entries(entries)
            .open_on(&backend)?;
        let mut s = store.create_new_session("s")?;
        s.set("k", &1u8)?;
        store.save(&mut s)?;
        let before = backend.gets.load(Ordering::SeqCst);
        for _ in 0..3 {
            assert!(store.get("s", None)?.is_some());
            assert!(store.info("s")?.is_some());
        }
        assert_eq!(
            backend.gets.load(Ordering::SeqCst) - before,
            6 * reads_per_check,
            "with a cache of {entries} entries"
        );
    }
    Ok(())
}

#[test]
fn a_stalled_write_that_lands_later_is_not_hidden_by_the_cache() -> Result<()> {
    let backend = Arc::new(MemoryBackend::default());
    let store = config(&backend, &ManualClock::default())
        .write_timeout(crate::embedded::config::MIN_WRITE_TIMEOUT)
        .open_on(&backend)?;
    store.create_new_session("s")?;
    store.create_new_session("inside")?;
    assert!(store.get("s", None)?.is_some(), "cached now");
    std::thread::scope(|scope| -> Result<()> {
        let inside = hang_a_writer(scope, &store, &backend, "inside");
        assert!(matches!(store.destroy("s"), Err(Error::Stalled { .. })));
        // Read before the batch lands: this must not pin the old record in the cache.
        assert!(store.get("s", None)?.is_some());
        backend.set_hang(false);
        inside.join().expect("no panic")
    })?;
    // The timed-out batch is still applied once the engine moves again.
    wait_for(|| backend.get_raw(&keys::meta("s")).is_none());
    assert!(
        store.get("s", None)?.is_none(),
        "the destroyed session must not live on in the cache"
    );
    Ok(())
}

#[test]
fn the_reaper_thread_survives_failed_passes() -> Result<()> {
    let backend = Arc::new(MemoryBackend::default());
    let clock = ManualClock::default();
    let store = config(&backend, &clock)
        .reap_interval(Some(Duration::from_millis(1)))
        .open_on(&backend)?;
    store.create_new_session("s")?;
    clock.advance(Duration::from_secs(601));
    backend.fail_scans.store(true, Ordering::SeqCst);
    wait_for(|| store.core().failed_reaps() >= 3);
    backend.fail_scans.store(false, Ordering::SeqCst);
    // The thread lived on through the failures and reaps once the engine recovers.
    wait_for(|| store.stats().unwrap().reaped_since_open == 1);
    assert!(backend.get_raw(&keys::meta("s")).is_none());
    Ok(())
}

/// Polls a background thread's progress; gives up after 30 s.
/// Releases the memory engine's hung flushes when dropped: a test that
/// fails while a writer hangs in a flush then fails instead of hanging (a
/// scope waits for its threads before it passes a panic on).
struct Unhang<'a>(&'a MemoryBackend);

impl Drop for Unhang<'_> {
    fn drop(&mut self) {
        self.0.set_hang(false);
        self.0.set_hang_flush(false);
    }
}

fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..30_000 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the background thread made no progress in 30 s");
}

#[test]
fn a_session_recreated_between_scan_and_delete_survives() -> Result<()> {
    // Time never goes back for the store (see `Clock`), so an expired
    // session cannot be touched back to life; but its id can be taken again
    // by a new session after the scan chose the old one.
    let backend = Arc::new(MemoryBackend::default());
    let clock = ManualClock::default();
    let store = config(&backend, &clock).open_on(&backend)?;
    store.create_new_session("hooked")?;
    clock.advance(Duration::from_secs(601));
    let hook_store = store.clone();
    crate::embedded::reaper::hook::set(Some(Box::new(move |sid| {
        if sid == "hooked" {
            let mut s = hook_store.create_new_session("hooked").unwrap();
            s.set("new", &1u8).unwrap();
            hook_store.save(&mut s).unwrap();
        }
    })));
    let reaped = store.reap_expired();
    crate::embedded::reaper::hook::set(None);
    assert_eq!(reaped?, 0);
    let again = store
        .get("hooked", None)?
        .expect("the new session survives");
    assert_eq!(again.get::<u8>("new")?, Some(1));
    Ok(())
}

impl MemoryBackend {
    fn get_raw(&self, key: &[u8]) -> Option<Vec<u8>> {
        crate::embedded::backend::Backend::get(self, key)
            .ok()
            .flatten()
    }
}

#[test]
fn the_store_handle_is_not_held_by_its_threads() {
    let backend = Arc::new(MemoryBackend::default());
    let store: Store = config(&backend, &ManualClock::default())
        .reap_interval(Some(Duration::from_secs(3600)))
        .open_on(&backend)
        .unwrap();
    assert_eq!(Arc::strong_count(&store.shared), 1);
}

#[test]
fn concurrent_immediate_writers_share_flushes() -> Result<()> {
    let backend = Arc::new(MemoryBackend::default());
    let store = config(&backend, &ManualClock::default()).open_on(&backend)?;
    for i in 0..8 {
        store.create_new_session(&format!("s{i}"))?;
    }
    let before = store.stats()?;
    // The first writer's apply (after its journal sync) hangs; seven more
    // writers queue up behind it.
    backend.set_hang(true);
    let started = backend.applies_started.load(Ordering::SeqCst);
    let save = |i: usize| -> Result<()> {
        let mut s = store.get(&format!("s{i}"), None)?.expect("live");
        s.set("k", &i)?;
        store.save(&mut s)
    };
    std::thread::scope(|scope| -> Result<()> {
        let _unhang = Unhang(&backend);
        let first = scope.spawn(move || save(0));
        wait_for(|| backend.applies_started.load(Ordering::SeqCst) == started + 1);
        let rest: Vec<_> = (1..8).map(|i| scope.spawn(move || save(i))).collect();
        wait_for(|| store.core().queued() == 7);
        backend.set_hang(false);
        for w in std::iter::once(first).chain(rest) {
            w.join().expect("no panic")?;
        }
        Ok(())
    })?;
    let after = store.stats()?;
    assert_eq!(after.writes_since_open - before.writes_since_open, 8);
    // One journal sync for the first writer, one for the seven that queued
    // behind it.
    assert_eq!(after.flushes_since_open - before.flushes_since_open, 2);
    Ok(())
}

/// A write the engine refuses sends no event, whichever call made it.
#[test]
fn a_failed_write_sends_no_event() -> Result<()> {
    let backend = Arc::new(MemoryBackend::default());
    let store = config(&backend, &ManualClock::default()).open_on(&backend)?;
    store.create_new_session("s")?;
    store.set_principal("s", Some("ada"))?;
    let rx = store.subscribe();
    backend.fail_writes.store(true, Ordering::SeqCst);
    assert!(store.create_new_session("t").is_err());
    assert!(store.destroy("s").is_err());
    assert!(store.regenerate("s").is_err());
    assert!(store.destroy_all_of("ada").is_err());
    assert!(store.set_principal("s", Some("bob")).is_err());
    backend.fail_writes.store(false, Ordering::SeqCst);
    store.core().events().settle();
    assert_eq!(rx.try_iter().count(), 0);
    assert_eq!(store.sessions_of("ada")?, ["s"]);
    assert!(store.verify()?.is_ok());
    Ok(())
}

/// The reaper's `Expired` waits for its chunk's durable write; if that write
/// fails, the events are not sent: subscribers hear of them as missed, and
/// the next pass reaps the sessions and sends them.
#[test]
fn a_reap_pass_whose_flush_fails_reports_its_expired_events_as_missed() -> Result<()> {
    let backend = Arc::new(MemoryBackend::default());
    let clock = ManualClock::default();
    let store = config(&backend, &clock).open_on(&backend)?;
    store.create_new_session("a")?;
    clock.advance(Duration::from_secs(1));
    store.create_new_session("b")?;
    clock.advance(Duration::from_secs(600));
    let rx = store.subscribe();
    let failing = backend.clone();
    // Between the scan and the lock, writes start failing: the chunk of `a`
    // and `b` is one write, and it fails.
    crate::embedded::reaper::hook::set(Some(Box::new(move |sid| {
        if sid == "b" {
            failing.fail_writes.store(true, Ordering::SeqCst);
        }
    })));
    let reaped = store.reap_expired();
    crate::embedded::reaper::hook::set(None);
    backend.fail_writes.store(false, Ordering::SeqCst);
    assert!(reaped.is_err(), "the chunk's write failed");
    store.core().events().settle();
    assert_eq!(rx.try_iter().count(), 0, "nothing was sent as durable");
    store.create_new_session("c")?;
    store.core().events().settle();
    let got: Vec<crate::Event> = rx.try_iter().collect();
    assert_eq!(
        got,
        [
            crate::Event::Lagged { missed: 2 },
            crate::Event::Created { sid: "c".into() }
        ]
    );
    assert_eq!(store.reap_expired()?, 2, "the next pass reaps them");
    store.core().events().settle();
    let got: Vec<crate::Event> = rx.try_iter().collect();
    assert_eq!(
        got,
        [
            crate::Event::Expired { sid: "a".into() },
            crate::Event::Expired { sid: "b".into() }
        ]
    );
    Ok(())
}

/// sled on a full disk (issue 29, finding 2) made a failed destroy look done
/// and come back after a restart. With the journal first, a destroy the
/// engine refuses is cancelled in the journal: after a crash (the journal as
/// it was, replayed at the reopen) the session is still there, as the error
/// said. Without the cancel record the replay would destroy it.
#[test]
fn a_destroy_the_engine_refused_stays_undone_after_a_crash_and_replay() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
    let path = dir.path().join("store");
    let backend = Arc::new(MemoryBackend::default());
    let clock = ManualClock::default();
    let open = || {
        Config::new(&path)
            .clock(Arc::new(clock.clone()))
            .reap_interval(None)
            .open_on(&backend)
    };
    let store = open()?;
    store.create_new_session("s")?;
    backend.fail_writes.store(true, Ordering::SeqCst);
    assert!(store.destroy("s").is_err());
    assert!(store.regenerate("s").is_err());
    backend.fail_writes.store(false, Ordering::SeqCst);
    assert!(store.get("s", None)?.is_some(), "nothing of it is visible");
    // The journal as a crash would leave it, before the close removes it.
    let journal = path.join(crate::embedded::journal::DIR);
    let saved = tempfile::tempdir().map_err(|e| Error::storage("test", e))?;
    for entry in std::fs::read_dir(&journal).map_err(|e| Error::storage("test", e))? {
        let entry = entry.map_err(|e| Error::storage("test", e))?;
        std::fs::copy(entry.path(), saved.path().join(entry.file_name()))
            .map_err(|e| Error::storage("test", e))?;
    }
    drop(store);
    for entry in std::fs::read_dir(saved.path()).map_err(|e| Error::storage("test", e))? {
        let entry = entry.map_err(|e| Error::storage("test", e))?;
        std::fs::copy(entry.path(), journal.join(entry.file_name()))
            .map_err(|e| Error::storage("test", e))?;
    }
    let store = open()?;
    assert!(
        store.get("s", None)?.is_some(),
        "the refused destroy came back"
    );
    assert!(store.verify()?.is_ok());
    Ok(())
}

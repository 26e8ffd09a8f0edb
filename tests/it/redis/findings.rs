//! Issue 27, findings 1 (without a proxy), 7, 8 and 9: a `CLIENT KILL`
//! storm, a restart after the clock stepped back, foreign bytes, and errors
//! that say what went wrong.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sessionstore::{Clock, Error, ManualClock, SessionStore};

use crate::common::servers::Server;

/// Finding 1: 4 threads of `update(+1)` while another client kills every
/// normal connection in a loop: the counter is exactly the number of
/// updates that answered `Ok`, plus at most those that answered `Unknown`.
#[test]
fn a_client_kill_storm_keeps_update_counters_exact() -> sessionstore::Result<()> {
    const THREADS: usize = 4;
    const EACH: usize = 300;
    let server = Server::start(&[]);
    let store = super::config(&server.url(), &ManualClock::default(), "storm")
        .update_attempts(1_000)
        .open()?;
    let sid = store.create()?.id().to_owned();
    store.update(&sid, None, |s| s.set("n", &0u64))?;
    let (ok, unknown) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let done = AtomicBool::new(false);
    let kills = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let client = redis::Client::open(server.url()).expect("a client");
            let mut conn = client.get_connection().expect("a connection");
            while !done.load(Ordering::SeqCst) {
                let killed: u64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("normal")
                    .query(&mut conn)
                    .unwrap_or(0);
                kills.fetch_add(killed as usize, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..EACH {
                        match store.update(&sid, None, |s| {
                            let n: u64 = s.get("n")?.unwrap_or(0);
                            s.set("n", &(n + 1))
                        }) {
                            Ok(Some(())) => ok.fetch_add(1, Ordering::SeqCst),
                            Err(Error::Unknown { .. }) => unknown.fetch_add(1, Ordering::SeqCst),
                            other => panic!("update: {other:?}"),
                        };
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("no panic");
        }
        done.store(true, Ordering::SeqCst);
    });
    let n: u64 = store
        .get(&sid, None)?
        .expect("live")
        .get("n")?
        .expect("set");
    let (ok, unknown) = (ok.into_inner() as u64, unknown.into_inner() as u64);
    assert!(
        kills.load(Ordering::SeqCst) > 0,
        "the storm killed connections"
    );
    assert_eq!(ok + unknown, (THREADS * EACH) as u64);
    assert!(
        n >= ok && n <= ok + unknown,
        "counter {n}, {ok} Ok and {unknown} Unknown"
    );
    Ok(())
}

/// Finding 7: a session judged expired stays expired after a restart whose
/// clock stepped back: the time floor is kept in the server.
#[test]
fn an_expired_session_stays_expired_after_a_restart_with_the_clock_back() -> sessionstore::Result<()>
{
    let server = Server::start(&[]);
    let clock = ManualClock::default();
    let start = clock.now();
    let store = super::config(&server.url(), &clock, "floor").open()?;
    let sid = store.create()?.id().to_owned();
    clock.advance(Duration::from_secs(3_600));
    assert!(
        store.get(&sid, None)?.is_none(),
        "an hour past its idle timeout"
    );
    clock.set(start);
    assert!(store.get(&sid, None)?.is_none(), "the clock stepped back");
    drop(store);
    let reopened = super::config(&server.url(), &clock, "floor").open()?;
    assert!(reopened.get(&sid, None)?.is_none(), "after a reopen");
    assert!(reopened.info(&sid)?.is_none());
    // Another app server (a second store, opened now) sees the floor too.
    let other = super::config(&server.url(), &clock, "floor").open()?;
    assert!(other.get(&sid, None)?.is_none());
    Ok(())
}

/// Finding 8: a hostile coverage field never hides a session from its
/// principal, and a key of another type in the namespace fails only itself.
#[test]
fn foreign_bytes_fail_only_what_they_touch() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let clock = ManualClock::default();
    let store = super::config(&server.url(), &clock, "hostile").open()?;
    let sid = store.create()?.id().to_owned();
    store.set_principal(&sid, Some("dave"))?;
    let key = format!("{{hostile:{sid}}}");
    server.cli(&["HSET", &key, "c", "18446744073709551615"]);
    // The set is lost (as if it expired); the next touch must cover again.
    server.cli(&["DEL", "{hostile/p:dave}"]);
    clock.advance(Duration::from_secs(60));
    assert!(store.touch(&sid)?);
    assert_eq!(store.sessions_of("dave")?, vec![sid.clone()]);
    assert_eq!(store.destroy_all_of("dave")?, 1, "log out everywhere");
    assert!(store.get(&sid, None)?.is_none());

    // A list key in the namespace: listing skips it.
    let live = store.create()?.id().to_owned();
    server.cli(&["RPUSH", "{hostile:a-list-not-a-session}", "x"]);
    assert_eq!(store.session_ids()?, vec![live.clone()]);
    assert_eq!(store.stats()?.live_sessions, 1);
    let err = store.get("a-list-not-a-session", None).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(
        err.to_string().contains("{hostile:a-list-not-a-session}"),
        "{err}"
    );
    Ok(())
}

/// Finding 9: a scope version that is not one is `Decode` naming the key and
/// the field, never an eternal `Conflict`.
#[test]
fn a_garbage_scope_version_is_decode_not_conflict() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let store = super::config(&server.url(), &ManualClock::default(), "badver").open()?;
    let mut s = store.create()?;
    s.set("k", &1u8)?;
    store.save(&mut s)?;
    let sid = s.id().to_owned();
    let mut copy = store.get(&sid, None)?.expect("live");
    server.cli(&["HSET", &format!("{{badver:{sid}}}"), "/", "abc"]);
    copy.set("k", &2u8)?;
    let check = |r: sessionstore::Result<()>, what: &str| match r {
        Err(Error::Decode { what: w, .. }) => {
            assert!(w.contains(&sid) && w.contains("\"/\""), "{what}: {w}");
        }
        other => panic!("{what}: want Decode, got {other:?}"),
    };
    check(store.save_if_unchanged(&mut copy), "save_if_unchanged");
    check(
        store.update(&sid, None, |s| s.set("k", &3u8)).map(drop),
        "update",
    );
    check(store.get(&sid, None).map(drop), "get");
    // Another scope of the session is untouched.
    let mut c = store.get(&sid, Some("cart"))?.expect("live");
    c.set("x", &1u8)?;
    store.save_if_unchanged(&mut c)?;
    Ok(())
}

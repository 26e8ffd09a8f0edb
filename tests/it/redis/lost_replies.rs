//! Exactly once (issue 27, finding 1): a write whose reply is lost after the
//! server ran it (the proxy forwards it, then drops the connection before
//! the reply) is sent again by the store, and the resend answers with the
//! first result: applied once, answered honestly, its event sent. Every kind
//! of write step, on one server behind a proxy.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use sessionstore::{Error, Event, ManualClock, RedisStore, SessionStore};

use crate::common::proxy::{Fault, Proxy};

/// A store through a proxy to the shared server, in namespace `ns`.
fn through_proxy(ns: &str) -> (Proxy, RedisStore, ManualClock) {
    let url = crate::common::servers::standalone();
    let port: u16 = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in the URL");
    let proxy = Proxy::start(port);
    let clock = ManualClock::default();
    let store = super::config(
        &proxy.url(),
        &clock,
        &format!("{ns}-{}", std::process::id()),
    )
    .open()
    .expect("open through the proxy");
    (proxy, store, clock)
}

/// The events received so far.
/// Every event the store sent before now (the dispatcher delivers them
/// just after each call returns; a marker session shows when it is done).
fn drain(store: &RedisStore, rx: &Receiver<Event>) -> Vec<Event> {
    crate::common::events_before_now(store, rx)
}

/// Arms the proxy to drop the reply of the `nth` script call from now.
fn lose_reply_of_script(proxy: &Proxy, nth: usize) {
    proxy.arm("EVAL", nth, Fault::DropReply);
}

#[test]
fn update_with_a_lost_reply_applies_once() -> sessionstore::Result<()> {
    let (proxy, store, _) = through_proxy("lost-update");
    let sid = store.create()?.id().to_owned();
    store.update(&sid, None, |s| s.set("n", &0u32))?;
    for round in 1..=5u32 {
        let before = proxy.fired();
        lose_reply_of_script(&proxy, 1);
        let got = store.update(&sid, None, |s| {
            let n: u32 = s.get("n")?.unwrap_or(0);
            s.set("n", &(n + 1))
        })?;
        assert!(got.is_some());
        assert_eq!(proxy.fired(), before + 1, "the reply was lost");
        let n: Option<u32> = store.get(&sid, None)?.expect("live").get("n")?;
        assert_eq!(n, Some(round), "update applied exactly once per call");
    }
    Ok(())
}

#[test]
fn saves_with_a_lost_reply_are_stored_once_and_answered_ok() -> sessionstore::Result<()> {
    let (proxy, store, _) = through_proxy("lost-save");
    let sid = store.create()?.id().to_owned();
    // save_if_unchanged: Ok, and stored.
    let mut s = store.get(&sid, None)?.expect("live");
    s.set("k", &1u8)?;
    lose_reply_of_script(&proxy, 1);
    store.save_if_unchanged(&mut s)?;
    assert_eq!(
        store.get(&sid, None)?.expect("live").get::<u8>("k")?,
        Some(1)
    );
    // The same copy saves again with no other writer: no Conflict.
    s.set("k", &2u8)?;
    store.save_if_unchanged(&mut s)?;
    // A plain save with a lost reply, then save_if_unchanged of that copy.
    s.set("k", &3u8)?;
    lose_reply_of_script(&proxy, 1);
    store.save(&mut s)?;
    s.set("k", &4u8)?;
    store.save_if_unchanged(&mut s)?;
    assert_eq!(
        store.get(&sid, None)?.expect("live").get::<u8>("k")?,
        Some(4)
    );
    assert_eq!(proxy.fired(), 2);
    // touch and set_idle_timeout too.
    lose_reply_of_script(&proxy, 1);
    store.set_idle_timeout(&sid, Some(std::time::Duration::from_secs(60)))?;
    assert_eq!(proxy.fired(), 3);
    Ok(())
}

#[test]
fn create_and_destroy_with_a_lost_reply_answer_what_they_did() -> sessionstore::Result<()> {
    let (proxy, store, _) = through_proxy("lost-create");
    let rx = store.subscribe();
    let sid = "lost-create-sid";
    lose_reply_of_script(&proxy, 1);
    let s = store.create_new_session(sid)?;
    assert_eq!(s.id(), sid);
    assert_eq!(drain(&store, &rx), vec![Event::Created { sid: sid.into() }]);
    assert_eq!(proxy.fired(), 1);

    lose_reply_of_script(&proxy, 1);
    assert!(store.destroy(sid)?, "a live session was destroyed");
    assert_eq!(
        drain(&store, &rx),
        vec![Event::Destroyed { sid: sid.into() }]
    );
    assert!(store.get(sid, None)?.is_none());
    assert!(!store.destroy(sid)?, "a second destroy finds nothing");
    // The id is free again at once (the tombstone is no session).
    store.create_new_session(sid)?;
    assert_eq!(proxy.fired(), 2);
    Ok(())
}

#[test]
fn regenerate_with_a_lost_reply_at_either_step_moves_the_session() -> sessionstore::Result<()> {
    let (proxy, store, _) = through_proxy("lost-regen");
    let rx = store.subscribe();
    // Without a principal the steps are DELETE_IF (1), then PUT (2).
    for step in [1, 2] {
        let mut s = store.create()?;
        s.set("cart", &7u8)?;
        store.save(&mut s)?;
        let old = s.id().to_owned();
        drain(&store, &rx);
        lose_reply_of_script(&proxy, step);
        let new = store.regenerate(&old)?;
        assert!(store.get(&old, None)?.is_none(), "step {step}");
        let got = store.get(&new, None)?.expect("live under the new id");
        assert_eq!(got.get::<u8>("cart")?, Some(7), "step {step}");
        assert_eq!(
            drain(&store, &rx),
            vec![Event::Regenerated { old, new }],
            "step {step}"
        );
    }
    assert_eq!(proxy.fired(), 2);
    Ok(())
}

#[test]
fn principal_calls_with_a_lost_reply_answer_what_they_did() -> sessionstore::Result<()> {
    let (proxy, store, _) = through_proxy("lost-principal");
    let rx = store.subscribe();
    // Every script cached first: a NOSCRIPT reply lost is no write.
    let w = store.create()?.id().to_owned();
    store.set_principal(&w, Some("warm"))?;
    store.set_principal(&w, Some("warmer"))?;
    store.destroy_all_of("warmer")?;
    let a = store.create()?.id().to_owned();
    let b = store.create()?.id().to_owned();
    // set_principal: INDEX (1), then SET_PRINCIPAL (2).
    for (sid, step) in [(&a, 2), (&b, 1)] {
        lose_reply_of_script(&proxy, step);
        store.set_principal(sid, Some("dave"))?;
        assert_eq!(store.principal(sid)?.as_deref(), Some("dave"));
    }
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(store.sessions_of("dave")?, both);
    // Moving a to another principal: its reply lost, it leaves dave's set.
    lose_reply_of_script(&proxy, 2);
    store.set_principal(&a, Some("erin"))?;
    assert_eq!(store.sessions_of("dave")?, vec![b.clone()]);
    assert_eq!(store.sessions_of("erin")?, vec![a.clone()]);
    store.set_principal(&a, Some("dave"))?;
    drain(&store, &rx);
    // destroy_all_of: its first TAKE_IF_PRINCIPAL's reply lost.
    lose_reply_of_script(&proxy, 1);
    assert_eq!(store.destroy_all_of("dave")?, 2);
    let mut events = drain(&store, &rx);
    events.sort_by_key(|e| format!("{e:?}"));
    let mut want: Vec<Event> = both
        .iter()
        .map(|s| Event::Destroyed { sid: s.clone() })
        .collect();
    want.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(events, want);
    assert_eq!(proxy.fired(), 4);
    Ok(())
}

/// A write that never gets a reply on any attempt is `Unknown`, never a
/// guess: here every attempt's reply is held past the I/O timeout.
#[test]
fn a_write_with_no_reply_on_any_attempt_is_unknown() -> sessionstore::Result<()> {
    let (proxy, store, _) = through_proxy("lost-unknown");
    let sid = store.create()?.id().to_owned();
    let store = Arc::new(store);
    let mut s = store.get(&sid, None)?.expect("live");
    // The script cached first: a NOSCRIPT reply held back is no write.
    s.set("k", &0u8)?;
    store.save(&mut s)?;
    s.set("k", &1u8)?;
    // The I/O timeout is 2 s, 2 attempts: both replies held 2.5 s.
    proxy.arm(
        "EVAL",
        1,
        Fault::DelayReply(std::time::Duration::from_millis(2_500)),
    );
    let p2 = &proxy;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            // Re-arm for the second attempt once the first fired.
            while p2.fired() < 1 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            p2.arm(
                "EVAL",
                1,
                Fault::DelayReply(std::time::Duration::from_millis(2_500)),
            );
        });
        let got = store.save(&mut s);
        match got {
            Err(Error::Unknown { op, sid: id, .. }) => {
                assert_eq!(op, "save");
                assert_eq!(id, sid);
            }
            other => panic!("want Unknown, got {other:?}"),
        }
    });
    // It was applied (the server ran it): the next read shows it.
    assert_eq!(
        store.get(&sid, None)?.expect("live").get::<u8>("k")?,
        Some(1)
    );
    Ok(())
}

/// A resend finds its first send in the field `o` behind the writes other
/// calls made since, as long as there were fewer than 16 (the field keeps
/// at least the last 16), and answers that send's result without writing
/// again; behind more than `o` can hold it answers `Unknown`, never a
/// second write.
#[test]
fn a_resend_behind_other_writes_answers_from_the_token_history() -> sessionstore::Result<()> {
    resend_behind("lost-history-15", 15, true)?;
    resend_behind("lost-history-30", 30, true)
}

/// The same at one clock time: every write since the first send wrote the
/// very metadata bytes the resend expects, so only the token history can
/// tell that the first send was applied. (Before, the resend found its
/// token gone, matched the metadata and wrote a second time, undoing the
/// other store's writes.)
#[test]
fn a_resend_behind_more_writes_than_o_holds_at_one_clock_time_writes_nothing()
-> sessionstore::Result<()> {
    resend_behind("lost-history-same-time", 30, false)
}

/// Saves `a = 1` through the proxy, its first send's reply held past the I/O
/// timeout while another store saves the session `others` times (`a = 2`,
/// `i` = 0, 1, …), each a millisecond later if `ticks`, then checks what
/// the resend answered and that the save was applied once.
fn resend_behind(ns: &str, others: u8, ticks: bool) -> sessionstore::Result<()> {
    let (proxy, store, clock) = through_proxy(ns);
    let direct = super::config(
        &crate::common::servers::standalone(),
        &clock,
        &format!("{ns}-{}", std::process::id()),
    )
    .open()?;
    let sid = store.create()?.id().to_owned();
    let mut s = store.get(&sid, None)?.expect("live");
    // The scripts cached first (a NOSCRIPT reply held back is no write):
    // a first send, and a resend (its reply dropped).
    s.set("a", &0u8)?;
    store.save(&mut s)?;
    s.set("a", &0u8)?;
    lose_reply_of_script(&proxy, 1);
    store.save(&mut s)?;
    s.set("a", &1u8)?;
    // The I/O timeout is 2 s: the first send's reply comes after 3 s, the
    // resend's at once.
    proxy.arm(
        "EVAL",
        1,
        Fault::DelayReply(std::time::Duration::from_millis(3_000)),
    );
    let got = std::thread::scope(|scope| {
        let writer = scope.spawn(|| -> sessionstore::Result<()> {
            // Once the first send is applied, the other store writes.
            while proxy.fired() < 2
                || direct.get(&sid, None)?.expect("live").get::<u8>("a")? != Some(1)
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            for i in 0..others {
                if ticks {
                    clock.advance(std::time::Duration::from_millis(1));
                }
                let mut d = direct.get(&sid, None)?.expect("live");
                d.set("a", &2u8)?;
                d.set("i", &i)?;
                direct.save(&mut d)?;
            }
            Ok(())
        });
        let got = store.save(&mut s);
        writer.join().expect("the writer thread")?;
        Ok::<_, sessionstore::Error>(got)
    })?;
    match (others < 16, got) {
        (true, Ok(())) => {}
        (false, Err(Error::Unknown { op, sid: id, .. })) => {
            assert_eq!((op, id.as_str()), ("save", sid.as_str()));
        }
        (_, other) => panic!("{others} writes since the first send: got {other:?}"),
    }
    // Applied once: the other store's later value stands.
    let now = direct.get(&sid, None)?.expect("live");
    assert_eq!(now.get::<u8>("a")?, Some(2), "{others} writes since");
    assert_eq!(now.get::<u8>("i")?, Some(others - 1));
    assert_eq!(proxy.fired(), 2);
    Ok(())
}

/// A resend whose first send never reached the server (its connection
/// dropped first, as one left stale by a restart) writes, also on a session
/// whose field `o` is full: the newest entry there is still the one the
/// session saw, so nothing wrote since, its first send included. For a
/// save of a copy from its own last save, a save of a copy read by `get`,
/// and `set_idle_timeout` (which reads the record first).
#[test]
fn a_resend_of_a_write_that_never_reached_the_server_writes() -> sessionstore::Result<()> {
    let (proxy, store, clock) = through_proxy("lost-command");
    let mut s = store.create()?;
    let sid = s.id().to_owned();
    for i in 0..20u8 {
        clock.advance(std::time::Duration::from_millis(1));
        s.set("i", &i)?;
        store.save(&mut s)?;
    }
    s.set("a", &1u8)?;
    proxy.arm("EVAL", 1, Fault::DropCommand);
    store.save(&mut s)?;
    let mut read = store.get(&sid, None)?.expect("live");
    assert_eq!(read.get::<u8>("a")?, Some(1));
    read.set("b", &2u8)?;
    proxy.arm("EVAL", 1, Fault::DropCommand);
    store.save_if_unchanged(&mut read)?;
    assert_eq!(
        store.get(&sid, None)?.expect("live").get::<u8>("b")?,
        Some(2)
    );
    proxy.arm("EVAL", 1, Fault::DropCommand);
    store.set_idle_timeout(&sid, Some(std::time::Duration::from_secs(60)))?;
    let info = store.info(&sid)?.expect("live");
    assert_eq!(info.idle_timeout, Some(std::time::Duration::from_secs(60)));
    assert_eq!(proxy.fired(), 3);
    Ok(())
}

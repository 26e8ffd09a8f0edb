//! Interleavings that once lost a write, sent events out of order or left a
//! set without a TTL (issue 27, findings 3, 5 and 6), made exact with the
//! proxy: one store's step is held back while another store acts.

use std::time::Duration;

use sessionstore::{Error, Event, ManualClock, RedisStore, SessionStore};

use crate::common::proxy::{Fault, Proxy};
use crate::common::servers::Server;

/// Two stores on one server sharing one clock: `a` through a proxy, `b` direct.
fn pair(server: &Server, ns: &str, clock: &ManualClock) -> (Proxy, RedisStore, RedisStore) {
    let proxy = Proxy::start(server.port);
    let a = super::config(&proxy.url(), clock, ns).open().expect("a");
    let b = super::config(&server.url(), clock, ns).open().expect("b");
    (proxy, a, b)
}

/// Waits until the proxy has applied `n` faults in all.
fn until_fired(proxy: &Proxy, n: usize) {
    while proxy.fired() < n {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Finding 3: a save made between regenerate's read and its delete, with
/// the same clock (so the same metadata bytes), is not lost.
#[test]
fn regenerate_sees_a_save_made_between_its_read_and_its_delete() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let clock = ManualClock::default();
    let (proxy, a, b) = pair(&server, "regen-race", &clock);
    // Warm the script cache, so that the first script is the DELETE_IF.
    let mut w = a.create()?;
    w.set("cart", &0u8)?;
    a.save(&mut w)?;
    a.regenerate(w.id())?;
    let mut s = a.create()?;
    s.set("cart", &1u8)?;
    a.save(&mut s)?;
    let sid = s.id().to_owned();
    proxy.arm("EVAL", 1, Fault::DelayCommand(Duration::from_millis(300)));
    let new = std::thread::scope(|scope| {
        let regen = scope.spawn(|| a.regenerate(&sid));
        until_fired(&proxy, 1);
        let mut copy = b.get(&sid, None)?.expect("live until the delete");
        copy.set("cart", &2u8)?;
        b.save(&mut copy)?;
        regen.join().expect("no panic")
    })?;
    let got = a.get(&new, None)?.expect("live under the new id");
    assert_eq!(
        got.get::<u8>("cart")?,
        Some(2),
        "the acknowledged save moved with the session"
    );
    Ok(())
}

/// Finding 5: a destroy of the new id, found through `sessions_of` while
/// the reply of regenerate's PUT is late, sends its event after
/// `Regenerated`, and leaves no live member for the dead id.
#[test]
fn a_destroy_of_the_new_id_sends_its_event_after_regenerated() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let clock = ManualClock::default();
    let (proxy, a, _) = pair(&server, "regen-order", &clock);
    let rx = a.subscribe();
    // Warm the scripts.
    let w = a.create()?.id().to_owned();
    a.set_principal(&w, Some("warm"))?;
    a.regenerate(&w)?;
    let sid = a.create()?.id().to_owned();
    a.set_principal(&sid, Some("pat"))?;
    let _ = crate::common::events_before_now(&a, &rx);
    // With a principal: INDEX (1), DELETE_IF (2), PUT (3).
    proxy.arm("EVAL", 3, Fault::DelayReply(Duration::from_millis(500)));
    let new = std::thread::scope(|scope| {
        let regen = scope.spawn(|| a.regenerate(&sid));
        until_fired(&proxy, 1);
        let destroyer = scope.spawn(|| -> sessionstore::Result<String> {
            loop {
                if let Some(id) = a.sessions_of("pat")?.into_iter().find(|id| *id != sid) {
                    assert!(a.destroy(&id)?);
                    return Ok(id);
                }
            }
        });
        let new = regen.join().expect("no panic")?;
        let destroyed = destroyer.join().expect("no panic")?;
        assert_eq!(destroyed, new);
        Ok::<_, Error>(new)
    })?;
    let events: Vec<Event> = crate::common::events_before_now(&a, &rx);
    assert_eq!(
        events,
        vec![
            Event::Regenerated {
                old: sid.clone(),
                new: new.clone()
            },
            Event::Destroyed { sid: new.clone() },
        ]
    );
    assert!(a.sessions_of("pat")?.is_empty());
    Ok(())
}

/// Finding 6: `set_principal` of a session that never expires, while
/// another store destroys it, leaves no principal set without a TTL.
#[test]
fn set_principal_racing_destroy_leaves_no_set_without_a_ttl() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let clock = ManualClock::default();
    let (proxy, a, b) = pair(&server, "pttl-race", &clock);
    let w = a.create()?.id().to_owned();
    a.set_principal(&w, Some("warm"))?;
    let sid = a.create()?.id().to_owned();
    a.set_idle_timeout(&sid, None)?;
    // INDEX (1, the set made persistent for a session that never expires),
    // then SET_PRINCIPAL (2), held back while b destroys the session.
    proxy.arm("EVAL", 2, Fault::DelayCommand(Duration::from_millis(300)));
    let got = std::thread::scope(|scope| {
        let set = scope.spawn(|| a.set_principal(&sid, Some("mallory")));
        until_fired(&proxy, 1);
        assert!(b.destroy(&sid).expect("destroy"));
        set.join().expect("no panic")
    });
    assert!(matches!(got, Err(Error::NotFound { .. })), "{got:?}");
    let key = "{pttl-race/p:mallory}";
    let members = server.cli(&["ZCARD", key]);
    let pttl = server.cli(&["PTTL", key]);
    assert!(
        pttl.trim() == "-2" || members.trim() == "0",
        "the set keeps {members} members with PTTL {pttl}"
    );
    assert_ne!(pttl.trim(), "-1", "a set without a TTL");
    Ok(())
}

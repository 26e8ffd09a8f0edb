//! The reaper: one pass on demand, and the background thread.

use std::time::Duration;

engine_test!(a_pass_deletes_exactly_the_expired, |db| {
    let store = db.open()?;
    for i in 0..50 {
        let mut s = store.create_new_session(&format!("old{i}"))?;
        s.set("k", &i)?;
        store.save(&mut s)?;
        let mut c = store.get(&format!("old{i}"), Some("c"))?.unwrap();
        c.set("k", &i)?;
        store.save(&mut c)?;
    }
    db.clock.advance(Duration::from_secs(300));
    for i in 0..30 {
        store.create_new_session(&format!("new{i}"))?;
    }
    db.clock.advance(Duration::from_secs(301));
    assert_eq!(store.reap_expired()?, 50);
    assert_eq!(store.reap_expired()?, 0, "a second pass finds nothing");
    let stats = store.stats()?;
    assert_eq!(stats.live_sessions, 30);
    assert_eq!(stats.reaped_since_open, 50);
    // Reaped sessions left no key behind.
    store.create_new_session("old7")?;
    assert!(store.get("old7", Some("c"))?.unwrap().is_empty());
    Ok(())
});

engine_test!(a_pass_never_deletes_a_touched_session, |db| {
    let store = db.open()?;
    store.create_new_session("kept")?;
    store.create_new_session("lost")?;
    db.clock.advance(Duration::from_secs(590));
    assert!(store.touch("kept")?);
    db.clock.advance(Duration::from_secs(20));
    assert_eq!(store.reap_expired()?, 1);
    assert!(store.get("kept", None)?.is_some());
    Ok(())
});

engine_test!(the_reaper_thread_reaps_in_the_background, |db| {
    let store = db
        .config()
        .reap_interval(Some(Duration::from_millis(1)))
        .open()?;
    store.create_new_session("s")?;
    db.clock.advance(Duration::from_secs(601));
    for _ in 0..30_000 {
        if store.stats()?.reaped_since_open == 1 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the reaper thread did not reap within 30 s");
});

engine_test!(a_pass_deletes_a_chunk_in_one_write_and_one_flush, |db| {
    let store = db.open()?;
    for i in 0..200 {
        let mut s = store.create_new_session(&format!("old{i}"))?;
        s.set("k", &i)?;
        store.save(&mut s)?;
    }
    db.clock.advance(Duration::from_secs(601));
    store.create_new_session("live")?;
    let before = store.stats()?;
    assert_eq!(store.reap_expired()?, 200);
    let after = store.stats()?;
    assert_eq!(after.writes_since_open - before.writes_since_open, 1);
    assert_eq!(after.flushes_since_open - before.flushes_since_open, 1);
    assert_eq!(after.live_sessions, 1);
    Ok(())
});

engine_test!(
    a_reap_deletes_every_key_of_the_session_and_nothing_of_its_neighbours,
    |db| {
        let store = db.open()?;
        // `s1-x` sorts before `s1/`, `s10` and `s1_` after it: the deletion of
        // the prefix `s1/` must stop short of all three.
        let fill = |sid: &str| -> sessionstore::Result<()> {
            let mut s = store.create_new_session(sid)?;
            s.set("k", &sid.to_owned())?;
            store.save(&mut s)?;
            let mut c = store.get(sid, Some("c"))?.unwrap();
            c.set("k", &sid.to_owned())?;
            store.save(&mut c)?;
            store.set_principal(sid, Some("alice"))
        };
        fill("s1")?;
        db.clock.advance(Duration::from_secs(300));
        let neighbours = ["s1-x", "s10", "s1_"];
        for sid in neighbours {
            fill(sid)?;
        }
        db.clock.advance(Duration::from_secs(301));
        assert_eq!(store.reap_expired()?, 1);
        for sid in neighbours {
            let global = store.get(sid, None)?.unwrap();
            assert_eq!(global.get::<String>("k")?.as_deref(), Some(sid));
            let c = store.get(sid, Some("c"))?.unwrap();
            assert_eq!(c.get::<String>("k")?.as_deref(), Some(sid));
            assert_eq!(store.principal(sid)?.as_deref(), Some("alice"));
        }
        let mut of_alice = store.sessions_of("alice")?;
        of_alice.sort();
        assert_eq!(of_alice, ["s1-x", "s10", "s1_"]);
        assert_eq!(store.stats()?.live_sessions, 3);
        // `verify` finds no record, version or index entry left of s1.
        let report = store.verify()?;
        assert!(report.is_ok(), "{report:?}");
        // Nothing of s1 is left: its id starts empty in every scope.
        store.create_new_session("s1")?;
        assert!(store.get("s1", Some("c"))?.unwrap().is_empty());
        assert_eq!(store.principal("s1")?, None);
        Ok(())
    }
);

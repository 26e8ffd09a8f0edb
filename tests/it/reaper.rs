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

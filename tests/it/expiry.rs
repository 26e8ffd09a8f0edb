//! Idle and absolute deadlines, with a manual clock: no sleeps.

use std::time::Duration;

use sessionstore::Error;

const MIN: Duration = Duration::from_secs(60);

store_test!(a_session_lives_until_its_idle_deadline, |db| {
    let store = db.open()?;
    store.create_new_session("s")?;
    db.clock.advance(10 * MIN - Duration::from_micros(1));
    assert!(
        store.get("s", None)?.is_some(),
        "live just before the deadline"
    );
    db.clock.advance(Duration::from_micros(1));
    assert!(
        store.get("s", None)?.is_none(),
        "gone at the deadline, before any reaper ran"
    );
    assert_eq!(store.stats()?.live_sessions, 0);
    Ok(())
});

store_test!(an_expired_session_is_gone_for_every_operation, |db| {
    let store = db.open()?;
    let mut s = store.create_new_session("s")?;
    s.set("k", &1u8)?;
    store.save(&mut s)?;
    db.clock.advance(11 * MIN);
    s.set("k", &2u8)?;
    let writes = store.stats()?.writes_since_open;
    assert!(matches!(store.save(&mut s), Err(Error::NotFound { .. })));
    assert!(!store.touch("s")?);
    assert!(store.get("s", Some("c"))?.is_none());
    assert!(matches!(store.regenerate("s"), Err(Error::NotFound { .. })));
    assert!(matches!(
        store.set_idle_timeout("s", None),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(store.stats()?.writes_since_open, writes, "nothing written");
    // The id is free again, and the new session starts empty.
    let fresh = store.create_new_session("s")?;
    assert!(fresh.is_empty());
    assert_eq!(store.get("s", None)?.unwrap().get::<u8>("k")?, None);
    Ok(())
});

store_test!(
    save_touch_and_create_set_last_access_but_get_does_not,
    |db| {
        let store = db.open()?;
        let mut s = store.create_new_session("s")?;
        db.clock.advance(8 * MIN);
        store.get("s", None)?.unwrap();
        db.clock.advance(3 * MIN);
        assert!(
            store.get("s", None)?.is_none(),
            "a get does not extend the session"
        );

        let mut s2 = store.create_new_session("t")?;
        db.clock.advance(8 * MIN);
        store.save(&mut s2)?; // nothing dirty, but it is an access (RAIN's lastModified)
        db.clock.advance(8 * MIN);
        assert!(store.get("t", None)?.is_some());
        assert!(store.touch("t")?);
        db.clock.advance(8 * MIN);
        assert!(store.get("t", None)?.is_some());
        s.set("x", &1u8)?;
        assert!(store.save(&mut s).is_err());
        Ok(())
    }
);

store_test!(small_touches_write_nothing, |db| {
    let store = db.open()?;
    let mut s = store.create_new_session("s")?;
    let writes = store.stats()?.writes_since_open;
    db.clock.advance(MIN - Duration::from_secs(1));
    assert!(store.touch("s")?);
    store.save(&mut s)?;
    assert_eq!(
        store.stats()?.writes_since_open,
        writes,
        "under the granularity: no write"
    );
    db.clock.advance(Duration::from_secs(1));
    assert!(store.touch("s")?);
    assert_eq!(store.stats()?.writes_since_open, writes + 1);
    // A dirty save always writes.
    s.set("k", &1u8)?;
    store.save(&mut s)?;
    assert_eq!(store.stats()?.writes_since_open, writes + 2);
    Ok(())
});

store_test!(absolute_timeout_caps_an_active_session, |db| {
    let store = db.config().absolute_timeout(Some(30 * MIN)).open()?;
    let mut s = store.create_new_session("s")?;
    for _ in 0..5 {
        db.clock.advance(5 * MIN);
        s.set("k", &1u8)?;
        store.save(&mut s)?;
    }
    db.clock.advance(5 * MIN - Duration::from_micros(1));
    assert!(store.touch("s")?);
    db.clock.advance(Duration::from_micros(1));
    assert!(
        store.get("s", None)?.is_none(),
        "30 minutes after creation, however active"
    );
    Ok(())
});

engine_test!(per_session_idle_timeout_survives_a_reopen, |db| {
    {
        let store = db.open()?;
        store.create_new_session("short")?;
        store.create_new_session("forever")?;
        store.set_idle_timeout("short", Some(MIN))?;
        store.set_idle_timeout("forever", None)?;
    }
    let store = db.open()?;
    db.clock.advance(2 * MIN);
    assert!(store.get("short", None)?.is_none());
    db.clock.advance(Duration::from_secs(10 * 365 * 24 * 3600));
    assert!(
        store.get("forever", None)?.is_some(),
        "no idle timeout: lives until destroyed"
    );
    assert_eq!(store.reap_expired()?, 1);
    assert!(store.destroy("forever")?);
    Ok(())
});

engine_test!(
    expiry_state_survives_a_reopen_and_the_reaper_deletes_it,
    |db| {
        {
            let store = db.open()?;
            let mut s = store.create_new_session("s")?;
            s.set("k", &1u8)?;
            store.save(&mut s)?;
            store.create_new_session("later")?;
            db.clock.advance(5 * MIN);
            store.touch("later")?;
        }
        db.clock.advance(6 * MIN); // "s" expired while the store was closed
        let store = db.open()?;
        assert!(store.get("s", None)?.is_none());
        assert!(store.get("later", None)?.is_some());
        assert_eq!(store.reap_expired()?, 1);
        assert_eq!(store.stats()?.reaped_since_open, 1);
        assert_eq!(store.stats()?.live_sessions, 1);
        // Nothing of "s" is left: a new session under its id has no keys.
        store.create_new_session("s")?;
        assert!(store.get("s", None)?.unwrap().is_empty());
        Ok(())
    }
);

store_test!(info_reports_the_life_of_a_session, |db| {
    let store = db.open()?;
    let t0 = sessionstore::Clock::now(&db.clock);
    store.create_new_session("s")?;
    db.clock.advance(2 * MIN);
    store.touch("s")?;
    let info = store.info("s")?.expect("live");
    assert_eq!(info.created, t0);
    assert_eq!(info.last_access, t0 + 2 * MIN);
    assert_eq!(info.idle_timeout, Some(10 * MIN));
    assert_eq!(info.deadline, Some(t0 + 12 * MIN));
    assert_eq!(store.info("nobody")?, None);
    Ok(())
});

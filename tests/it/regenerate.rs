//! regenerate: atomic id rotation on login.

use std::time::Duration;

use sessionstore::Error;

store_test!(regenerate_moves_every_scope_to_a_new_id, |db| {
    let store = db.open()?;
    let mut g = store.create_new_session("old")?;
    g.set("user", "ada")?;
    store.save(&mut g)?;
    let mut c = store.get("old", Some("cart"))?.unwrap();
    c.set("items", &3u8)?;
    store.save(&mut c)?;

    let new = store.regenerate("old")?;
    assert_ne!(new, "old");
    assert!(new.len() >= 22);
    assert!(store.get("old", None)?.is_none());
    assert!(store.get("old", Some("cart"))?.is_none());
    assert_eq!(
        store
            .get(&new, None)?
            .unwrap()
            .get::<String>("user")?
            .as_deref(),
        Some("ada")
    );
    assert_eq!(
        store.get(&new, Some("cart"))?.unwrap().get::<u8>("items")?,
        Some(3)
    );
    assert_eq!(
        store.stats()?.live_sessions,
        1,
        "the expiry entry moved, not copied"
    );

    // Objects read under the old id cannot save any more.
    g.set("user", "mallory")?;
    assert!(matches!(store.save(&mut g), Err(Error::NotFound { .. })));
    assert!(store.get("old", None)?.is_none());
    Ok(())
});

store_test!(regenerate_keeps_the_creation_time, |db| {
    let store = db
        .config()
        .absolute_timeout(Some(Duration::from_secs(3600)))
        .open()?;
    store.create_new_session("old")?;
    // Touches every 550 s keep it within the 600 s idle timeout until 3300 s,
    // so its idle deadline (3900 s) falls after its absolute one (3600 s).
    for _ in 0..6 {
        db.clock.advance(Duration::from_secs(550));
        assert!(store.touch("old")?);
    }
    let new = store.regenerate("old")?;
    db.clock.advance(Duration::from_secs(299));
    assert!(store.get(&new, None)?.is_some());
    db.clock.advance(Duration::from_secs(1));
    assert!(
        store.get(&new, None)?.is_none(),
        "the absolute timeout counts from the first creation"
    );
    Ok(())
});

store_test!(of_two_concurrent_regenerates_one_wins, |db| {
    let store = db.open()?;
    for round in 0..20 {
        let sid = format!("r{round}");
        store.create_new_session(&sid)?;
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        store.regenerate(&sid)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(Error::NotFound { .. })))
        );
    }
    assert_eq!(store.stats()?.live_sessions, 20);
    Ok(())
});

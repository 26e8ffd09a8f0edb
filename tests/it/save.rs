//! save: detached copies, dirty keys only, atomic, never resurrecting.

use sessionstore::Error;

store_test!(a_session_is_a_detached_copy, |db| {
    let store = db.open()?;
    let mut s = store.create_new_session("s")?;
    s.set("k", &1u8)?;
    assert!(
        store.get("s", None)?.unwrap().is_empty(),
        "nothing stored before save"
    );
    store.save(&mut s)?;
    assert_eq!(store.get("s", None)?.unwrap().get::<u8>("k")?, Some(1));
    Ok(())
});

store_test!(
    two_handles_changing_different_keys_both_keep_their_change,
    |db| {
        let store = db.open()?;
        let mut s = store.create_new_session("s")?;
        s.set("a", &0u8)?;
        s.set("b", &0u8)?;
        store.save(&mut s)?;
        for order in [true, false] {
            let mut h1 = store.get("s", None)?.unwrap();
            let mut h2 = store.get("s", None)?.unwrap();
            h1.set("a", &(if order { 1u8 } else { 3 }))?;
            h2.set("b", &(if order { 2u8 } else { 4 }))?;
            if order {
                store.save(&mut h1)?;
                store.save(&mut h2)?;
            } else {
                store.save(&mut h2)?;
                store.save(&mut h1)?;
            }
            let now = store.get("s", None)?.unwrap();
            let want = if order { (1, 2) } else { (3, 4) };
            assert_eq!(
                (now.get::<u8>("a")?.unwrap(), now.get::<u8>("b")?.unwrap()),
                want
            );
        }
        Ok(())
    }
);

store_test!(a_saved_session_is_clean_and_resaving_writes_no_data, |db| {
    let store = db.open()?;
    let mut stale = store.create_new_session("s")?;
    stale.set("k", "first")?;
    store.save(&mut stale)?;
    assert!(!stale.is_dirty());

    let mut other = store.get("s", None)?.unwrap();
    other.set("k", "second")?;
    store.save(&mut other)?;

    // Re-saving the clean, stale copy must not write its old value back.
    store.save(&mut stale)?;
    assert_eq!(
        store
            .get("s", None)?
            .unwrap()
            .get::<String>("k")?
            .as_deref(),
        Some("second")
    );
    Ok(())
});

store_test!(removals_are_saved_and_last_operation_wins, |db| {
    let store = db.open()?;
    let mut s = store.create_new_session("s")?;
    s.set("gone", &1u8)?;
    s.set("back", &1u8)?;
    store.save(&mut s)?;
    let mut s = store.get("s", None)?.unwrap();
    s.set("gone", &2u8)?;
    assert!(s.remove("gone"));
    assert!(s.remove("back"));
    s.set("back", &3u8)?;
    store.save(&mut s)?;
    let got = store.get("s", None)?.unwrap();
    assert_eq!(got.get::<u8>("gone")?, None);
    assert_eq!(got.get::<u8>("back")?, Some(3));
    Ok(())
});

store_test!(clear_then_save_keeps_exactly_the_keys_set_after, |db| {
    let store = db.open()?;
    let mut s = store.create_new_session("s")?;
    s.set("a", &1u8)?;
    s.set("b", &1u8)?;
    store.save(&mut s)?;
    let mut cleared = store.get("s", None)?.unwrap();
    // Another handle adds a key the clearing copy never saw.
    let mut other = store.get("s", None)?.unwrap();
    other.set("c", &1u8)?;
    store.save(&mut other)?;

    cleared.clear();
    cleared.set("d", &4u8)?;
    store.save(&mut cleared)?;
    let got = store.get("s", None)?.unwrap();
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["d"]);
    // Other scopes are untouched by a clear.
    Ok(())
});

store_test!(clear_touches_only_its_own_scope, |db| {
    let store = db.open()?;
    let mut g = store.create_new_session("s")?;
    g.set("g", &1u8)?;
    store.save(&mut g)?;
    let mut c = store.get("s", Some("c"))?.unwrap();
    c.set("x", &1u8)?;
    store.save(&mut c)?;
    let mut g = store.get("s", None)?.unwrap();
    g.clear();
    store.save(&mut g)?;
    assert!(store.get("s", None)?.unwrap().is_empty());
    assert_eq!(store.get("s", Some("c"))?.unwrap().len(), 1);
    Ok(())
});

store_test!(save_after_destroy_is_not_found_and_writes_nothing, |db| {
    let store = db.open()?;
    let mut s = store.create_new_session("s")?;
    s.set("k", &1u8)?;
    store.save(&mut s)?;
    let mut late = store.get("s", Some("c"))?.unwrap();
    late.set("x", &1u8)?;
    assert!(store.destroy("s")?);
    let writes = store.stats()?.writes_since_open;
    let err = store.save(&mut late).unwrap_err();
    assert!(matches!(&err, Error::NotFound { id } if id == "s"), "{err}");
    assert!(late.is_dirty(), "a failed save leaves the session dirty");
    assert_eq!(store.stats()?.writes_since_open, writes);
    assert!(store.get("s", None)?.is_none());
    Ok(())
});

store_test!(a_stale_copy_cannot_save_into_a_recreated_session, |db| {
    let store = db.open()?;
    let mut old = store.create_new_session("s")?;
    store.destroy("s")?;
    store.create_new_session("s")?;
    old.set("k", &1u8)?;
    assert!(matches!(store.save(&mut old), Err(Error::NotFound { .. })));
    assert!(store.get("s", None)?.unwrap().is_empty());
    Ok(())
});

store_test!(a_wrong_type_is_a_decode_error_for_that_key_only, |db| {
    let store = db.open()?;
    let mut s = store.create_new_session("s")?;
    s.set("name", "ada")?;
    s.set("n", &7u64)?;
    store.save(&mut s)?;
    let got = store.get("s", None)?.unwrap();
    assert!(matches!(got.get::<u64>("name"), Err(Error::Decode { .. })));
    assert!(matches!(got.get::<String>("n"), Err(Error::Decode { .. })));
    assert_eq!(got.get::<u64>("n")?, Some(7));
    assert_eq!(got.get::<String>("name")?.as_deref(), Some("ada"));
    Ok(())
});

// A copy saved again and again keeps the session alive: each save moves the
// last access, and the next save starts from there, not from the read.
store_test!(repeated_saves_of_one_copy_keep_moving_the_deadline, |db| {
    let store = db.open()?;
    let mut s = store.create_new_session("s")?;
    for i in 0..4u8 {
        db.clock.advance(std::time::Duration::from_secs(7 * 60));
        s.set("k", &i)?;
        store.save(&mut s)?;
    }
    db.clock.advance(std::time::Duration::from_secs(7 * 60));
    assert_eq!(store.get("s", None)?.unwrap().get::<u8>("k")?, Some(3));
    Ok(())
});

// A copy whose session was written since its read (another copy's save, a
// touch) still saves, merging per key, and keeps the other write.
store_test!(
    a_copy_saves_after_the_session_was_written_since_its_read,
    |db| {
        let store = db.open()?;
        let mut first = store.create_new_session("s")?;
        first.set("a", &1u8)?;
        store.save(&mut first)?;
        let mut other = store.get("s", None)?.unwrap();
        other.set("b", &2u8)?;
        store.save(&mut other)?;
        first.set("c", &3u8)?;
        store.save(&mut first)?;
        db.clock.advance(std::time::Duration::from_secs(2 * 60));
        assert!(store.touch("s")?);
        first.set("a", &4u8)?;
        store.save(&mut first)?;
        let now = store.get("s", None)?.unwrap();
        assert_eq!(
            (
                now.get::<u8>("a")?,
                now.get::<u8>("b")?,
                now.get::<u8>("c")?
            ),
            (Some(4), Some(2), Some(3))
        );
        Ok(())
    }
);

// A copy read before its session expired by the store's clock cannot save;
// one read before a touch that kept the session alive can, though by its
// own read the session would have expired.
store_test!(
    a_copy_read_before_expiry_saves_only_if_a_touch_kept_it,
    |db| {
        let store = db.open()?;
        let mut gone = store.create_new_session("gone")?;
        let mut kept = store.create_new_session("kept")?;
        db.clock.advance(std::time::Duration::from_secs(6 * 60));
        assert!(store.touch("kept")?);
        db.clock.advance(std::time::Duration::from_secs(6 * 60));
        gone.set("k", &1u8)?;
        assert!(matches!(store.save(&mut gone), Err(Error::NotFound { .. })));
        assert!(gone.is_dirty());
        assert!(store.get("gone", None)?.is_none());
        kept.set("k", &1u8)?;
        store.save(&mut kept)?;
        assert_eq!(store.get("kept", None)?.unwrap().get::<u8>("k")?, Some(1));
        Ok(())
    }
);

// A copy saved once, then destroyed and recreated under the same id, or
// regenerated away, cannot save: no resurrection, nothing into the new one.
store_test!(
    a_saved_copy_cannot_save_after_destroy_recreate_or_regenerate,
    |db| {
        let store = db.open()?;
        let mut old = store.create_new_session("s")?;
        old.set("k", &1u8)?;
        store.save(&mut old)?;
        store.destroy("s")?;
        old.set("k", &2u8)?;
        assert!(matches!(store.save(&mut old), Err(Error::NotFound { .. })));
        assert!(store.get("s", None)?.is_none(), "no resurrection");
        store.create_new_session("s")?;
        assert!(matches!(store.save(&mut old), Err(Error::NotFound { .. })));
        assert!(store.get("s", None)?.unwrap().is_empty());

        let mut moved = store.get("s", None)?.unwrap();
        moved.set("m", &1u8)?;
        store.save(&mut moved)?;
        let new_id = store.regenerate("s")?;
        moved.set("m", &2u8)?;
        assert!(matches!(
            store.save(&mut moved),
            Err(Error::NotFound { .. })
        ));
        assert!(store.get("s", None)?.is_none());
        assert_eq!(store.get(&new_id, None)?.unwrap().get::<u8>("m")?, Some(1));
        Ok(())
    }
);

// `save_if_unchanged` of a copy saved before still sees another copy's
// write to its scope.
store_test!(save_if_unchanged_after_a_save_sees_a_later_write, |db| {
    let store = db.open()?;
    let mut a = store.create_new_session("s")?;
    a.set("k", &1u8)?;
    store.save_if_unchanged(&mut a)?;
    let mut b = store.get("s", None)?.unwrap();
    b.set("k", &2u8)?;
    store.save_if_unchanged(&mut b)?;
    a.set("k", &3u8)?;
    assert!(matches!(
        store.save_if_unchanged(&mut a),
        Err(Error::Conflict { .. })
    ));
    b.set("k", &4u8)?;
    store.save_if_unchanged(&mut b)?;
    assert_eq!(store.get("s", None)?.unwrap().get::<u8>("k")?, Some(4));
    Ok(())
});

// A save of thousands of keys set and removed at once, in the global scope
// and a component's, keeps each of them.
store_test!(a_save_of_thousands_of_keys_keeps_them_all, |db| {
    let store = db.open()?;
    let mut s = store.create_new_session("s")?;
    for i in 0..3000u32 {
        s.set(&format!("k{i}"), &i)?;
    }
    store.save(&mut s)?;
    for i in (0..3000u32).step_by(2) {
        s.remove(&format!("k{i}"));
    }
    for i in 3000..5000u32 {
        s.set(&format!("k{i}"), &i)?;
    }
    store.save(&mut s)?;
    let got = store.get("s", None)?.unwrap();
    assert_eq!(got.len(), 1500 + 2000);
    assert_eq!(got.get::<u32>("k0")?, None);
    assert_eq!(got.get::<u32>("k2999")?, Some(2999));
    assert_eq!(got.get::<u32>("k4999")?, Some(4999));
    Ok(())
});

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

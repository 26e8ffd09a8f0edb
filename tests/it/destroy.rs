//! destroy.

store_test!(destroy_removes_every_scope_and_reports_existence, |db| {
    let store = db.open()?;
    let mut g = store.create_new_session("s")?;
    g.set("a", &1u8)?;
    store.save(&mut g)?;
    let mut c = store.get("s", Some("c"))?.unwrap();
    c.set("b", &1u8)?;
    store.save(&mut c)?;
    assert!(store.destroy("s")?);
    assert!(store.get("s", None)?.is_none());
    assert!(store.get("s", Some("c"))?.is_none());
    assert!(!store.destroy("s")?, "a second destroy finds nothing");
    assert_eq!(store.stats()?.live_sessions, 0);
    // A new session under the id starts empty: no key survived.
    store.create_new_session("s")?;
    assert!(store.get("s", Some("c"))?.unwrap().is_empty());
    Ok(())
});

store_test!(destroy_never_touches_ids_sharing_a_prefix, |db| {
    let store = db.open()?;
    for sid in ["ab", "abc", "a", "ab-", "ab_c"] {
        let mut s = store.create_new_session(sid)?;
        s.set("k", sid)?;
        store.save(&mut s)?;
        let mut c = store.get(sid, Some("c"))?.unwrap();
        c.set("k", sid)?;
        store.save(&mut c)?;
    }
    assert!(store.destroy("ab")?);
    for sid in ["abc", "a", "ab-", "ab_c"] {
        let s = store.get(sid, None)?.expect("untouched");
        assert_eq!(s.get::<String>("k")?.as_deref(), Some(sid));
        assert_eq!(store.get(sid, Some("c"))?.unwrap().len(), 1);
    }
    assert_eq!(store.stats()?.live_sessions, 4);
    Ok(())
});

store_test!(destroy_of_unknown_writes_nothing, |db| {
    let store = db.open()?;
    assert!(!store.destroy("nobody")?);
    assert_eq!(store.stats()?.writes_since_open, 0);
    Ok(())
});

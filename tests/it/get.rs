//! get: scopes, unknown ids, and reads that never write.

store_test!(global_and_component_scopes_are_separate, |db| {
    let store = db.open()?;
    let mut global = store.create_new_session("s1")?;
    global.set("k", "global")?;
    store.save(&mut global)?;
    let mut cart = store
        .get("s1", Some("cart"))?
        .expect("a live session's component is an empty scope");
    assert!(cart.is_empty());
    assert_eq!(cart.component(), Some("cart"));
    cart.set("k", "cart")?;
    store.save(&mut cart)?;

    let g = store.get("s1", None)?.unwrap();
    let c = store.get("s1", Some("cart"))?.unwrap();
    let other = store.get("s1", Some("other"))?.unwrap();
    assert_eq!(g.get::<String>("k")?.as_deref(), Some("global"));
    assert_eq!(c.get::<String>("k")?.as_deref(), Some("cart"));
    assert!(other.is_empty());
    assert_eq!(g.keys().collect::<Vec<_>>(), vec!["k"]);
    Ok(())
});

store_test!(unknown_id_is_none_and_writes_nothing, |db| {
    let store = db.open()?;
    assert!(store.get("nobody", None)?.is_none());
    assert!(store.get("nobody", Some("cart"))?.is_none());
    let stats = store.stats()?;
    assert_eq!(stats.writes_since_open, 0);
    assert_eq!(stats.live_sessions, 0);
    // The read created nothing: the id is still free.
    store.create_new_session("nobody")?;
    Ok(())
});

store_test!(keys_with_slashes_stay_in_their_scope, |db| {
    let store = db.open()?;
    let mut g = store.create_new_session("s")?;
    g.set("a/b", &1u8)?;
    store.save(&mut g)?;
    // "a/b" in the global scope must not show up as key "b" of component "a".
    assert!(store.get("s", Some("a"))?.unwrap().is_empty());
    assert_eq!(store.get("s", None)?.unwrap().get::<u8>("a/b")?, Some(1));
    Ok(())
});

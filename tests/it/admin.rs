//! Listing ids, export and import, and the consistency check.

use std::time::Duration;

use sessionstore::{Error, ImportMode, RawTarget};

engine_test!(ids_list_live_and_expired_sessions, |db| {
    let store = db.open()?;
    for i in 0..600 {
        store.create_new_session(&format!("a{i}"))?;
    }
    db.clock.advance(Duration::from_secs(300));
    for i in 0..5 {
        store.create_new_session(&format!("b{i}"))?;
    }
    db.clock.advance(Duration::from_secs(301));
    let live: Vec<String> = store.session_ids().collect::<Result<_, _>>()?;
    let mut expired: Vec<String> = store.expired_session_ids().collect::<Result<_, _>>()?;
    assert_eq!(live, (0..5).map(|i| format!("b{i}")).collect::<Vec<_>>());
    expired.sort();
    let mut want: Vec<String> = (0..600).map(|i| format!("a{i}")).collect();
    want.sort();
    assert_eq!(expired, want);
    Ok(())
});

engine_test!(export_then_import_round_trips_exactly, |db| {
    let store = db.open()?;
    let mut g = store.create_new_session("s")?;
    g.set("user", "ada")?;
    store.save(&mut g)?;
    let mut c = store.get("s", Some("cart"))?.unwrap();
    c.set("n", &5u16)?;
    store.save(&mut c)?;
    store.set_idle_timeout("s", Some(Duration::from_secs(77)))?;
    let exported = store.export_session("s")?.expect("there");
    assert_eq!(exported.scopes.len(), 2);
    assert_eq!(exported.scopes[0].component, None);

    let err = store
        .import_session(&exported, ImportMode::Create)
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    store.destroy("s")?;
    store.import_session(&exported, ImportMode::Create)?;
    assert_eq!(store.export_session("s")?.as_ref(), Some(&exported));
    assert_eq!(
        store.get("s", Some("cart"))?.unwrap().get::<u16>("n")?,
        Some(5)
    );
    assert!(store.verify()?.is_ok());

    // --replace drops keys the import does not have.
    let mut extra = store.get("s", None)?.unwrap();
    extra.set("extra", &1u8)?;
    store.save(&mut extra)?;
    store.import_session(&exported, ImportMode::Replace)?;
    assert_eq!(store.get("s", None)?.unwrap().get::<u8>("extra")?, None);
    assert!(store.verify()?.is_ok());
    Ok(())
});

engine_test!(import_rejects_bad_contents_and_writes_nothing, |db| {
    let store = db.open()?;
    let mut s = store.create_new_session("s")?;
    s.set("k", &1u8)?;
    store.save(&mut s)?;
    let mut bad = store.export_session("s")?.unwrap();
    bad.id = "t".into();
    bad.scopes[0].values.insert("bad\nkey".into(), vec![1]);
    assert!(matches!(
        store.import_session(&bad, ImportMode::Create),
        Err(Error::InvalidKey { .. })
    ));
    assert!(store.get("t", None)?.is_none());
    Ok(())
});

engine_test!(verify_reports_orphans_dangling_and_garbage, |db| {
    let store = db.open()?;
    store.create_new_session("ok")?;
    assert!(store.verify()?.is_ok());
    store.__write_raw(
        RawTarget::Value {
            sid: "ghost",
            component: None,
            key: "k",
        },
        b"x",
    )?;
    store.__write_raw(
        RawTarget::Index {
            deadline_micros: 5,
            sid: "nobody",
        },
        b"",
    )?;
    store.__write_raw(RawTarget::Meta("junk"), b"\x07not a record")?;
    store.__write_raw(RawTarget::Key(b"zz"), b"?")?;
    let r = store.verify()?;
    assert!(!r.is_ok());
    assert_eq!(r.orphans, vec!["ghost//k".to_string()]);
    assert_eq!(r.dangling_index, vec!["nobody at 5".to_string()]);
    assert_eq!(r.undecodable.len(), 2, "{:?}", r.undecodable);
    assert_eq!(r.sessions, 2);
    Ok(())
});

//! Principals: set, list, destroy all, and an index that follows every way
//! a session ends or moves.

use std::time::Duration;

use sessionstore::{Error, Event, ImportMode, RawTarget};

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

store_test!(
    sessions_of_lists_a_principals_live_sessions_and_destroy_all_of_ends_them,
    |db| {
        let store = db.open()?;
        let laptop = store.create_new_session("laptop")?;
        store.create_new_session("phone")?;
        store.create_new_session("other")?;
        store.set_principal(laptop.id(), Some("ada"))?;
        store.set_principal("phone", Some("ada"))?;
        store.set_principal("other", Some("adam"))?;
        assert_eq!(sorted(store.sessions_of("ada")?), ["laptop", "phone"]);
        assert_eq!(store.sessions_of("adam")?, ["other"]);
        assert_eq!(store.sessions_of("nobody")?, Vec::<String>::new());
        assert_eq!(store.principal("phone")?.as_deref(), Some("ada"));
        assert_eq!(store.principal("nobody")?, None);
        let rx = store.subscribe();
        assert_eq!(store.destroy_all_of("ada")?, 2);
        let mut got: Vec<Event> = crate::common::next_events(&rx, 2);
        got.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(
            got,
            [
                Event::Destroyed {
                    sid: "laptop".into()
                },
                Event::Destroyed {
                    sid: "phone".into()
                }
            ]
        );
        assert!(store.get("laptop", None)?.is_none());
        assert!(store.get("phone", None)?.is_none());
        assert_eq!(store.sessions_of("ada")?, Vec::<String>::new());
        assert_eq!(store.destroy_all_of("ada")?, 0);
        assert!(
            store.get("other", None)?.is_some(),
            "another principal is untouched"
        );
        Ok(())
    }
);

store_test!(
    set_principal_refuses_bad_input_and_dead_sessions_writing_nothing,
    |db| {
        let store = db.open()?;
        store.create_new_session("s")?;
        store.create_new_session("old")?;
        db.clock.advance(Duration::from_secs(300));
        store.touch("s")?;
        db.clock.advance(Duration::from_secs(301));
        let writes = store.stats()?.writes_since_open;
        let long = "x".repeat(1025);
        for bad in ["", "a\u{0}b", "tab\there", long.as_str()] {
            assert!(
                matches!(
                    store.set_principal("s", Some(bad)),
                    Err(Error::InvalidKey { .. })
                ),
                "{bad:?}"
            );
            assert!(matches!(
                store.sessions_of(bad),
                Err(Error::InvalidKey { .. })
            ));
            assert!(matches!(
                store.destroy_all_of(bad),
                Err(Error::InvalidKey { .. })
            ));
        }
        assert!(matches!(
            store.set_principal("bad id", Some("ada")),
            Err(Error::InvalidId { .. })
        ));
        assert!(matches!(
            store.set_principal("nobody", Some("ada")),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            store.set_principal("old", Some("ada")),
            Err(Error::NotFound { .. }),
        ));
        assert_eq!(
            store.stats()?.writes_since_open,
            writes,
            "nothing was written"
        );
        assert_eq!(store.sessions_of("ada")?, Vec::<String>::new());
        // The longest valid name, and names with '/', '{', '}' and ':', work.
        for good in ["x".repeat(1024), "a/b{c}:d".into(), "é".into()] {
            store.set_principal("s", Some(&good))?;
            assert_eq!(store.sessions_of(&good)?, ["s"]);
        }
        Ok(())
    }
);

store_test!(
    the_index_follows_regenerate_a_change_a_clear_and_destroy,
    |db| {
        let store = db.open()?;
        store.create_new_session("s")?;
        store.set_principal("s", Some("ada"))?;
        store.set_principal("s", Some("ada"))?;
        let moved = store.regenerate("s")?;
        assert_eq!(store.sessions_of("ada")?, [moved.as_str()]);
        assert_eq!(store.principal(&moved)?.as_deref(), Some("ada"));
        store.set_principal(&moved, Some("bob"))?;
        assert_eq!(store.sessions_of("ada")?, Vec::<String>::new());
        assert_eq!(store.sessions_of("bob")?, [moved.as_str()]);
        store.set_principal(&moved, None)?;
        assert_eq!(store.sessions_of("bob")?, Vec::<String>::new());
        assert_eq!(store.principal(&moved)?, None);
        store.set_principal(&moved, Some("bob"))?;
        assert!(store.destroy(&moved)?);
        assert_eq!(store.sessions_of("bob")?, Vec::<String>::new());
        // A new session under a destroyed id does not inherit its principal.
        store.create_new_session(&moved)?;
        assert_eq!(store.principal(&moved)?, None);
        assert_eq!(store.sessions_of("bob")?, Vec::<String>::new());
        Ok(())
    }
);

store_test!(
    an_expired_session_leaves_sessions_of_and_destroy_all_of_counts_only_live,
    |db| {
        let store = db.open()?;
        store.create_new_session("early")?;
        store.set_principal("early", Some("ada"))?;
        db.clock.advance(Duration::from_secs(300));
        store.create_new_session("late")?;
        store.set_principal("late", Some("ada"))?;
        db.clock.advance(Duration::from_secs(301));
        assert_eq!(store.sessions_of("ada")?, ["late"]);
        let rx = store.subscribe();
        assert_eq!(store.destroy_all_of("ada")?, 1);
        assert!(
            crate::common::events_before_now(&*store, &rx)
                .contains(&Event::Destroyed { sid: "late".into() })
        );
        assert!(store.get("late", None)?.is_none());
        Ok(())
    }
);

engine_test!(the_reaper_removes_the_index_entry_with_the_session, |db| {
    let store = db.open()?;
    store.create_new_session("s")?;
    store.create_new_session("kept")?;
    store.set_principal("s", Some("ada"))?;
    store.set_principal("kept", Some("ada"))?;
    db.clock.advance(Duration::from_secs(300));
    store.touch("kept")?;
    db.clock.advance(Duration::from_secs(301));
    assert_eq!(store.reap_expired()?, 1);
    let report = store.verify()?;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.principal_entries, 1);
    assert_eq!(store.sessions_of("ada")?, ["kept"]);
    Ok(())
});

engine_test!(the_index_survives_a_reopen_and_export_import, |db| {
    let store = db.open()?;
    store.create_new_session("s")?;
    store.set_principal("s", Some("ada"))?;
    drop(store);
    let store = db.open()?;
    assert_eq!(store.sessions_of("ada")?, ["s"]);
    let export = store.export_session("s")?.expect("there");
    assert_eq!(export.principal.as_deref(), Some("ada"));
    assert!(store.destroy("s")?);
    assert_eq!(store.sessions_of("ada")?, Vec::<String>::new());
    store.import_session(&export, ImportMode::Create)?;
    assert_eq!(store.sessions_of("ada")?, ["s"]);
    // Replacing it with a copy of another principal moves the entry.
    let other = export.clone().with_principal(Some("bob".into()));
    store.import_session(&other, ImportMode::Replace)?;
    assert_eq!(store.sessions_of("ada")?, Vec::<String>::new());
    assert_eq!(store.sessions_of("bob")?, ["s"]);
    let bad = export.with_principal(Some(String::new()));
    assert!(matches!(
        store.import_session(&bad, ImportMode::Replace),
        Err(Error::InvalidKey { .. })
    ));
    let report = store.verify()?;
    assert!(report.is_ok(), "{report:?}");
    Ok(())
});

engine_test!(verify_checks_the_principal_index_both_ways, |db| {
    let store = db.open()?;
    store.create_new_session("s")?;
    store.create_new_session("t")?;
    store.set_principal("s", Some("ada"))?;
    assert!(store.verify()?.is_ok());
    // An entry with no session behind it, and a session without its entry.
    store.__write_raw(RawTarget::Key(b"@ghost\0s"), &[])?;
    store.__write_raw(RawTarget::Key(b"t/\0"), b"bob")?;
    let report = store.verify()?;
    assert_eq!(report.dangling_principal, ["ghost → s"]);
    assert_eq!(report.missing_principal, ["bob → t"]);
    assert!(!report.is_ok());
    Ok(())
});

#[test]
fn destroy_all_of_more_sessions_than_one_chunk_ends_exactly_them() -> sessionstore::Result<()> {
    // More than the 256 sessions one batch deletes, among others.
    let store = sessionstore::Config::temporary()
        .reap_interval(None)
        .durability(sessionstore::Durability::Periodic(Duration::from_secs(1)))
        .open()?;
    let mut mine = Vec::new();
    for i in 0..900 {
        let s = store.create()?;
        if i % 3 == 0 {
            store.set_principal(s.id(), Some("ada"))?;
            mine.push(s.id().to_owned());
        }
    }
    mine.sort();
    assert_eq!(store.sessions_of("ada")?, mine);
    let rx = store.subscribe();
    assert_eq!(store.destroy_all_of("ada")?, 300);
    assert_eq!(crate::common::events_before_now(&store, &rx).len(), 300);
    assert_eq!(store.stats()?.live_sessions, 600);
    assert!(store.verify()?.is_ok());
    Ok(())
}

engine_test!(
    destroy_all_of_races_set_principal_and_regenerate_and_leaves_an_exact_index,
    |db| {
        let store = db.open()?;
        std::thread::scope(|scope| {
            for t in 0..3 {
                let store = store.clone();
                scope.spawn(move || {
                    for i in 0..60 {
                        let s = store.create().expect("create");
                        let name = if (i + t) % 2 == 0 { "ada" } else { "bob" };
                        store.set_principal(s.id(), Some(name)).expect("set");
                        if i % 3 == 0 {
                            // Gone already if a destroy_all_of won the race.
                            match store.regenerate(s.id()) {
                                Ok(new) => match store.set_principal(&new, Some("ada")) {
                                    Ok(()) | Err(Error::NotFound { .. }) => {}
                                    Err(e) => panic!("{e}"),
                                },
                                Err(Error::NotFound { .. }) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                });
            }
            let store = store.clone();
            scope.spawn(move || {
                for _ in 0..20 {
                    store.destroy_all_of("ada").expect("destroy_all_of");
                }
            });
        });
        let report = store.verify()?;
        assert!(report.is_ok(), "{report:?}");
        for name in ["ada", "bob"] {
            for sid in store.sessions_of(name)? {
                assert_eq!(store.principal(&sid)?.as_deref(), Some(name));
            }
        }
        store.destroy_all_of("ada")?;
        assert!(store.sessions_of("ada")?.is_empty());
        assert!(store.verify()?.is_ok());
        Ok(())
    }
);

store_test!(
    under_races_every_live_session_of_a_principal_is_listed_and_only_those,
    |db| {
        let store = db.open()?;
        let ids = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for t in 0..3 {
                let (store, ids) = (store.clone(), &ids);
                scope.spawn(move || {
                    for i in 0..30 {
                        let s = store.create().expect("create");
                        let name = if (i + t) % 2 == 0 { "ada" } else { "bob" };
                        store.set_principal(s.id(), Some(name)).expect("set");
                        let mut sid = s.id().to_owned();
                        if i % 3 == 0 {
                            match store.regenerate(&sid) {
                                Ok(new) => sid = new,
                                Err(Error::NotFound { .. }) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                        if i % 4 == 0 {
                            match store.set_principal(&sid, Some("ada")) {
                                Ok(()) | Err(Error::NotFound { .. }) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                        ids.lock().unwrap().push(sid);
                    }
                });
            }
            let store = store.clone();
            scope.spawn(move || {
                for _ in 0..10 {
                    store.destroy_all_of("ada").expect("destroy_all_of");
                }
            });
        });
        for name in ["ada", "bob"] {
            let listed = store.sessions_of(name)?;
            for sid in &listed {
                assert_eq!(store.principal(sid)?.as_deref(), Some(name), "{sid}");
            }
            for sid in ids.lock().unwrap().iter() {
                if store.principal(sid)?.as_deref() == Some(name) {
                    assert!(listed.contains(sid), "{sid} of {name} is not listed");
                }
            }
        }
        store.destroy_all_of("ada")?;
        assert!(store.sessions_of("ada")?.is_empty());
        Ok(())
    }
);

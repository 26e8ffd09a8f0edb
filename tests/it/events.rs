//! Lifecycle events: what each call sends, in what order, and what a slow
//! subscriber costs the writers (nothing).

use std::collections::HashMap;
use std::time::Duration;

use crossbeam_channel::Receiver;
use sessionstore::{Config, Error, Event, SessionStore};

/// Every event sent to `rx` so far (see `events_before_now`).
fn drain(store: &dyn SessionStore, rx: &Receiver<Event>) -> Vec<Event> {
    crate::common::events_before_now(store, rx)
}

fn created(sid: &str) -> Event {
    Event::Created { sid: sid.into() }
}
fn destroyed(sid: &str) -> Event {
    Event::Destroyed { sid: sid.into() }
}
fn expired(sid: &str) -> Event {
    Event::Expired { sid: sid.into() }
}

store_test!(
    each_call_that_starts_or_ends_a_session_sends_its_event,
    |db| {
        let store = db.open()?;
        let rx = store.subscribe();
        let mut a = store.create_new_session("a")?;
        let fresh = store.create()?;
        assert_eq!(drain(&*store, &rx), [created("a"), created(fresh.id())]);
        // Saves, touches and timeouts change a session: no event.
        a.set("k", &1u8)?;
        store.save(&mut a)?;
        assert!(store.touch("a")?);
        store.set_idle_timeout("a", Some(Duration::from_secs(900)))?;
        assert_eq!(drain(&*store, &rx), []);
        let moved = store.regenerate("a")?;
        assert_eq!(
            drain(&*store, &rx),
            [Event::Regenerated {
                old: "a".into(),
                new: moved.clone()
            }]
        );
        assert!(store.destroy(&moved)?);
        assert_eq!(drain(&*store, &rx), [destroyed(&moved)]);
        Ok(())
    }
);

store_test!(
    an_expired_session_sends_expired_when_it_is_deleted_not_when_read,
    |db| {
        let store = db.open()?;
        let rx = store.subscribe();
        store.create_new_session("b")?;
        store.create_new_session("c")?;
        db.clock.advance(Duration::from_secs(601));
        // A read past the deadline writes nothing, so it is no event.
        assert!(store.get("b", None)?.is_none());
        assert!(store.info("c")?.is_none());
        assert_eq!(drain(&*store, &rx), [created("b"), created("c")]);
        // A create over it deletes it: Expired, then Created.
        store.create_new_session("b")?;
        assert_eq!(drain(&*store, &rx), [expired("b"), created("b")]);
        // A destroy of it deletes it too, and reports it was not live.
        assert!(!store.destroy("c")?);
        assert_eq!(drain(&*store, &rx), [expired("c")]);
        Ok(())
    }
);

store_test!(no_event_for_a_refused_or_failed_write, |db| {
    let store = db.open()?;
    let mut s = store.create_new_session("s")?;
    let rx = store.subscribe();
    assert!(matches!(
        store.create_new_session("s"),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.regenerate("nobody"),
        Err(Error::NotFound { .. })
    ));
    assert!(!store.destroy("nobody")?);
    assert!(matches!(
        store.destroy("bad id"),
        Err(Error::InvalidId { .. })
    ));
    assert!(store.destroy("s")?);
    assert_eq!(drain(&*store, &rx), [destroyed("s")]);
    s.set("k", &1u8)?;
    assert!(matches!(store.save(&mut s), Err(Error::NotFound { .. })));
    assert!(matches!(store.regenerate("s"), Err(Error::NotFound { .. })));
    assert!(!store.destroy("s")?);
    assert_eq!(drain(&*store, &rx), []);
    Ok(())
});

store_test!(
    a_subscriber_gets_only_what_happens_after_it_subscribed,
    |db| {
        let store = db.open()?;
        store.create_new_session("before")?;
        let rx = store.subscribe();
        let other = store.subscribe();
        store.create_new_session("after")?;
        assert_eq!(drain(&*store, &rx), [created("after")]);
        assert_eq!(drain(&*store, &other), [created("after")]);
        Ok(())
    }
);

store_test!(
    a_full_channel_never_blocks_writers_and_reports_lagged,
    |db| {
        let store = db.config().event_capacity(4).open()?;
        let unread = store.subscribe();
        let reader = store.subscribe();
        // Reads as fast as it can. With 4 slots it may still lag behind a
        // burst, but the gaps are reported exactly: when it receives
        // `late-{k}`, what it received and what its `Lagged`s counted is every
        // event before it. (The last events may be missed with no event
        // after them to report them: so `late-{k}` is sent until one arrives.)
        const ROUNDS: usize = 600;
        let reading = std::thread::spawn(move || {
            let mut counted = 0u64;
            loop {
                match reader.recv_timeout(Duration::from_secs(60)) {
                    Ok(Event::Created { sid }) if sid.starts_with("late-") => {
                        let k: u64 = sid["late-".len()..].parse().expect("k");
                        assert_eq!(counted, 2 * ROUNDS as u64 + k);
                        return reader;
                    }
                    Ok(Event::Lagged { missed }) => counted += missed,
                    Ok(_) => counted += 1,
                    Err(e) => panic!("{e} after {counted}"),
                }
            }
        });
        // 2 * ROUNDS events, far past the unread channel's 4: every call returns.
        for i in 0..ROUNDS {
            let sid = format!("s{i}");
            store.create_new_session(&sid)?;
            assert!(store.destroy(&sid)?);
        }
        let mut late = 0;
        while !reading.is_finished() {
            store.create_new_session(&format!("late-{late}"))?;
            late += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        let reader = reading.join().expect("the reader");
        // Once the reader has the marker's events, the unread subscriber was
        // offered every event before them (the dispatcher offers each batch
        // to the subscribers in the order they subscribed): it holds the
        // first four and counts the rest, the marker's two among them.
        crate::common::events_before_now(&*store, &reader);
        assert_eq!(
            crate::common::next_events(&unread, 4),
            [
                created("s0"),
                destroyed("s0"),
                created("s1"),
                destroyed("s1")
            ]
        );
        store.create_new_session("later")?;
        assert_eq!(
            crate::common::next_events(&unread, 2),
            [
                Event::Lagged {
                    missed: (2 * ROUNDS - 4 + late + 2) as u64
                },
                created("later")
            ]
        );
        // A dropped receiver is forgotten: writes go on as before.
        drop(unread);
        assert!(store.destroy("late-0")?);
        assert_eq!(
            crate::common::events_before_now(&*store, &reader),
            [created("later"), destroyed("late-0")]
        );
        Ok(())
    }
);

store_test!(
    events_of_one_session_come_in_commit_order_under_concurrency,
    |db| {
        let store = db.config().event_capacity(65_536).open()?;
        let rx = store.subscribe();
        const THREADS: usize = 4;
        const ROUNDS: usize = 100;
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let store = store.clone();
                scope.spawn(move || {
                    // Every thread races the others on the same few ids.
                    for i in 0..ROUNDS {
                        let sid = format!("shared{}", (i + t) % 3);
                        match store.create_new_session(&sid) {
                            Ok(_) | Err(Error::AlreadyExists { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                        store.destroy(&sid).expect("destroy");
                    }
                });
            }
        });
        // Per id, the events alternate Created, Destroyed, starting with Created.
        let mut live: HashMap<String, bool> = HashMap::new();
        for e in drain(&*store, &rx) {
            match e {
                Event::Created { sid } => {
                    assert!(
                        !live.insert(sid.clone(), true).unwrap_or(false),
                        "{sid} created twice"
                    )
                }
                Event::Destroyed { sid } => {
                    assert_eq!(live.insert(sid.clone(), false), Some(true), "{sid}")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            live.values().all(|l| !l),
            "every session was destroyed: {live:?}"
        );
        Ok(())
    }
);

engine_test!(the_reaper_sends_expired_after_its_pass, |db| {
    let store = db.open()?;
    let rx = store.subscribe();
    store.create_new_session("old1")?;
    store.create_new_session("old2")?;
    db.clock.advance(Duration::from_secs(300));
    store.create_new_session("young")?;
    db.clock.advance(Duration::from_secs(301));
    assert_eq!(drain(&store, &rx).len(), 3);
    assert_eq!(store.reap_expired()?, 2);
    assert_eq!(drain(&store, &rx), [expired("old1"), expired("old2")]);
    assert_eq!(store.reap_expired()?, 0);
    assert_eq!(drain(&store, &rx), []);
    Ok(())
});

engine_test!(the_reaper_thread_sends_expired_by_the_manual_clock, |db| {
    let store = db
        .config()
        .reap_interval(Some(Duration::from_millis(1)))
        .open()?;
    let rx = store.subscribe();
    store.create_new_session("s")?;
    assert_eq!(crate::common::next_events(&rx, 1), [created("s")]);
    db.clock.advance(Duration::from_secs(601));
    // A bound, not a timing: the thread runs every millisecond.
    let got = rx.recv_timeout(Duration::from_secs(30));
    assert_eq!(got.ok(), Some(expired("s")));
    Ok(())
});

engine_test!(import_sends_created_and_ends_what_it_replaces, |db| {
    let store = db.open()?;
    store.create_new_session("s")?;
    let export = store.export_session("s")?.expect("there");
    let rx = store.subscribe();
    store.import_session(&export, sessionstore::ImportMode::Replace)?;
    assert_eq!(drain(&store, &rx), [destroyed("s"), created("s")]);
    assert!(matches!(
        store.import_session(&export, sessionstore::ImportMode::Create),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(drain(&store, &rx), []);
    Ok(())
});

#[test]
fn event_capacity_is_checked() {
    for bad in [0, sessionstore::MAX_EVENT_CAPACITY + 1] {
        let err = Config::temporary().event_capacity(bad).open().unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("event_capacity")),
            "{err}"
        );
    }
    let store = Config::temporary()
        .event_capacity(sessionstore::MAX_EVENT_CAPACITY)
        .open()
        .expect("the maximum is valid");
    drop(store.subscribe());
}

#[test]
fn send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Event>();
    check::<Receiver<Event>>();
}

#[cfg(feature = "redis")]
#[test]
fn redis_event_capacity_is_checked_before_connecting() {
    // No server listens on port 1: a connection error would mean the knob
    // was not checked first.
    for bad in [0, sessionstore::MAX_EVENT_CAPACITY + 1] {
        let err = sessionstore::RedisConfig::new("redis://127.0.0.1:1/")
            .event_capacity(bad)
            .open()
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("event_capacity")),
            "{err}"
        );
    }
}

store_test!(
    receivers_get_every_event_then_disconnected_when_the_store_drops,
    |db| {
        let store = db.config().event_capacity(64).open()?;
        let rx = store.subscribe();
        for i in 0..20 {
            store.create_new_session(&format!("d{i}"))?;
        }
        drop(store);
        // The dispatcher hands out what was queued, then the channel ends.
        let got: Vec<Event> = rx.iter().collect();
        assert_eq!(
            got,
            (0..20)
                .map(|i| created(&format!("d{i}")))
                .collect::<Vec<_>>()
        );
        Ok(())
    }
);

engine_test!(
    lagged_totals_stay_exact_with_four_writers_and_the_reaper,
    |db| {
        let store = db
            .config()
            .event_capacity(8)
            .idle_timeout(Duration::from_secs(1))
            .open()?;
        let rx = store.subscribe();
        const EACH: usize = 300;
        const TOTAL: u64 = 2 * 4 * EACH as u64;
        // Reads as it can; when it gets `late-{k}`, what it received plus what
        // its `Lagged`s counted must be every event before it.
        let reader = std::thread::spawn(move || {
            let mut counted = 0u64;
            let mut lagged = false;
            loop {
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(Event::Created { sid }) if sid.starts_with("late-") => {
                        let k: u64 = sid["late-".len()..].parse().expect("k");
                        assert_eq!(counted, TOTAL + k);
                        return lagged;
                    }
                    Ok(Event::Lagged { missed }) => {
                        lagged = true;
                        counted += missed
                    }
                    Ok(Event::Created { .. } | Event::Expired { .. }) => counted += 1,
                    Ok(other) => panic!("{other:?}"),
                    Err(e) => panic!("{e} after {counted}"),
                }
            }
        });
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let (store, clock, done) = (&store, &db.clock, &done);
            let writers: Vec<_> = (0..4)
                .map(|t| {
                    scope.spawn(move || {
                        for i in 0..EACH {
                            store
                                .create_new_session(&format!("w{t}-{i}"))
                                .expect("create");
                            if i % 3 == 0 {
                                clock.advance(Duration::from_millis(400));
                            }
                        }
                    })
                })
                .collect();
            // The reaper, racing the writers.
            scope.spawn(move || {
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    store.reap_expired().expect("a reap pass");
                }
            });
            for w in writers {
                w.join().expect("a writer");
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        // Every session expires and is reaped: one Created and one Expired each.
        db.clock.advance(Duration::from_secs(3600));
        while store.reap_expired()? > 0 {}
        let mut late = 0;
        while !reader.is_finished() {
            store.create_new_session(&format!("late-{late}"))?;
            late += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        let lagged = reader.join().expect("the reader");
        assert!(lagged, "8 slots against 2,400 events lag");
        Ok(())
    }
);

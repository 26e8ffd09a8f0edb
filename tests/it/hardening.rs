//! The promises hostile testing broke (issue "Hardening"), one test per
//! finding, and the classes of input they stand for: time that steps back,
//! values at the size limits, every configuration knob at its edges.
use std::time::{Duration, UNIX_EPOCH};

use sessionstore::{Clock, Config, Durability, Engine, Error, ManualClock, Store};

const MIN: Duration = Duration::from_secs(60);

fn invalid_config_naming(result: sessionstore::Result<Store>, knob: &str) {
    match result {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains(knob), "{msg:?} names {knob}"),
        other => panic!("want InvalidConfig naming {knob}, got {other:?}"),
    }
}

// Finding 1: a value that `set` and `save` accept must read back.
engine_test!(a_large_vector_of_small_integers_reads_back, |db| {
    let store = db.config().max_value_size(16 << 20).open()?;
    let mut s = store.create()?;
    let ids = vec![0u64; 9_000_000];
    s.set("ids", &ids)?;
    store.save(&mut s)?;
    let got = store.get(s.id(), None)?.expect("live");
    assert_eq!(got.get::<Vec<u64>>("ids")?.as_deref(), Some(&ids[..]));
    Ok(())
});

engine_test!(a_string_at_the_64_mib_ceiling_reads_back, |db| {
    let store = db.config().max_value_size(64 << 20).open()?;
    let mut s = store.create()?;
    // Its length prefix takes 5 bytes: the encoding is exactly 64 MiB.
    let text = "x".repeat((64 << 20) - 5);
    s.set("t", &text)?;
    assert_eq!(s.get_raw("t").map(<[u8]>::len), Some(64 << 20));
    store.save(&mut s)?;
    let got = store.get(s.id(), None)?.expect("live");
    assert!(got.get::<String>("t")? == Some(text));
    Ok(())
});

// Finding 2: time that steps back must not bring an expired session back.
store_test!(
    a_clock_stepping_back_does_not_revive_an_expired_session,
    |db| {
        let store = db.open()?;
        let mut s = store.create()?;
        s.set("user", "ada")?;
        store.save(&mut s)?;
        db.clock.advance(11 * MIN);
        assert!(store.get(s.id(), None)?.is_none());
        s.set("late", &1u8)?;
        assert!(matches!(store.save(&mut s), Err(Error::NotFound { .. })));
        // NTP steps the clock back two minutes: still gone, still NotFound.
        db.clock.set(db.clock.now() - 2 * MIN);
        assert!(store.get(s.id(), None)?.is_none());
        assert!(!store.touch(s.id())?);
        assert!(matches!(store.save(&mut s), Err(Error::NotFound { .. })));
        Ok(())
    }
);

engine_test!(
    a_clock_stepping_back_across_a_reopen_does_not_revive_a_session,
    |db| {
        let store = db.open()?;
        let mut s = store.create()?;
        s.set("user", "ada")?;
        store.save(&mut s)?;
        db.clock.advance(11 * MIN);
        // Only a read saw it expire: the floor is written at close.
        assert!(store.get(s.id(), None)?.is_none());
        drop(store);
        db.clock.set(db.clock.now() - 5 * MIN);
        let store = db.open()?;
        assert!(store.get(s.id(), None)?.is_none());
        assert!(matches!(store.save(&mut s), Err(Error::NotFound { .. })));
        Ok(())
    }
);

store_test!(
    a_touch_with_the_clock_behind_never_moves_a_deadline_earlier,
    |db| {
        let store = db.open()?;
        let s = store.create()?;
        db.clock.advance(5 * MIN);
        assert!(store.touch(s.id())?);
        let deadline = store.info(s.id())?.expect("live").deadline;
        db.clock.set(db.clock.now() - 60 * MIN);
        assert!(store.touch(s.id())?);
        assert_eq!(store.info(s.id())?.expect("live").deadline, deadline);
        Ok(())
    }
);

engine_test!(a_deadline_survives_a_reopen_with_the_clock_behind, |db| {
    let store = db.open()?;
    let s = store.create()?;
    db.clock.advance(5 * MIN);
    assert!(store.touch(s.id())?);
    let deadline = store.info(s.id())?.expect("live").deadline;
    drop(store);
    db.clock.set(db.clock.now() - 60 * MIN);
    let store = db.open()?;
    assert!(store.touch(s.id())?);
    assert_eq!(store.info(s.id())?.expect("live").deadline, deadline);
    Ok(())
});

store_test!(a_clock_before_1970_reads_as_the_latest_time_seen, |db| {
    let store = db.open()?;
    let first = store.create()?;
    let t0 = db.clock.now();
    db.clock.set(UNIX_EPOCH - Duration::from_secs(86_400));
    let second = store.create()?;
    let info = store.info(second.id())?.expect("live");
    assert_eq!(info.created, t0, "time stands at the floor, not at 1970");
    assert!(store.get(first.id(), None)?.is_some());
    // Time moves again once the clock passes the floor.
    db.clock.set(t0 + 11 * MIN);
    assert!(store.get(first.id(), None)?.is_none());
    Ok(())
});

store_test!(
    a_clock_in_the_year_2500_and_back_keeps_sessions_expired,
    |db| {
        let store = db.open()?;
        let s = store.create()?;
        let t0 = db.clock.now();
        db.clock
            .set(UNIX_EPOCH + Duration::from_secs(16_725_225_600));
        assert!(store.get(s.id(), None)?.is_none());
        db.clock.set(t0);
        assert!(store.get(s.id(), None)?.is_none());
        // New sessions still live their full idle timeout from the floor.
        let fresh = store.create()?;
        db.clock
            .set(UNIX_EPOCH + Duration::from_secs(16_725_225_600) + 9 * MIN);
        assert!(store.get(fresh.id(), None)?.is_some());
        Ok(())
    }
);

#[test]
fn a_manual_clock_advanced_by_duration_max_saturates_instead_of_panicking() {
    let clock = ManualClock::default();
    clock.advance(Duration::MAX);
    clock.advance(Duration::MAX);
    assert!(clock.now() > UNIX_EPOCH + Duration::from_secs(1 << 40));
}

// Finding 3: Periodic(Duration::MAX) must not kill the commit thread.
engine_test!(periodic_duration_max_writes_flushes_and_reopens, |db| {
    let store = db
        .config()
        .durability(Durability::Periodic(Duration::MAX))
        .open()?;
    let mut s = store.create()?;
    s.set("k", &7u32)?;
    store.save(&mut s)?;
    store.flush()?;
    store.save(&mut s)?;
    drop(store);
    let store = db.open()?;
    assert_eq!(
        store.get(s.id(), None)?.expect("kept").get::<u32>("k")?,
        Some(7)
    );
    Ok(())
});

// A short period flushes by itself, also when writers apply on their own thread.
engine_test!(a_periodic_store_flushes_without_being_asked, |db| {
    let store = db
        .config()
        .durability(Durability::Periodic(Duration::from_millis(1)))
        .open()?;
    let before = store.stats()?.flushes_since_open;
    let mut s = store.create()?;
    s.set("k", &1u8)?;
    store.save(&mut s)?;
    // Waits for the background flush (no assertion on how long it takes).
    for _ in 0..30_000 {
        if store.stats()?.flushes_since_open > before {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("no periodic flush within 30 s");
});

// Finding 4: an empty path is bad configuration, not the current directory.
#[test]
fn an_empty_path_is_invalid_config_and_writes_nothing() {
    let cwd = std::env::current_dir().expect("cwd");
    let before: Vec<_> = std::fs::read_dir(&cwd).expect("ls").collect();
    for engine in Engine::ALL {
        invalid_config_naming(Config::new("").engine(*engine).open(), "path");
    }
    invalid_config_naming(Store::open(""), "path");
    let after: Vec<_> = std::fs::read_dir(&cwd).expect("ls").collect();
    assert_eq!(before.len(), after.len(), "nothing was created in {cwd:?}");
    assert!(!cwd.join("data.redb").exists());
    assert!(!cwd.join("sessionstore.lock").exists());
}

// Finding 5: a clean close must leave a store that reopens.
engine_test!(
    write_timeouts_too_short_to_mean_anything_are_refused,
    |db| {
        for t in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(5),
        ] {
            invalid_config_naming(db.config().write_timeout(t).open(), "write_timeout");
        }
        assert!(!db.path.exists(), "nothing was created");
        Ok(())
    }
);

engine_test!(a_store_closed_cleanly_reopens_every_time, |db| {
    for round in 0..20u8 {
        let store = db.config().write_timeout(Duration::from_secs(1)).open()?;
        let mut s = store.create_new_session(&format!("s{round}"))?;
        s.set("round", &round)?;
        store.save(&mut s)?;
        store.flush()?;
    }
    let store = db.open()?;
    assert_eq!(store.stats()?.live_sessions, 20);
    Ok(())
});

// Finding 6: a cache too small for sled is bad configuration, caught first.
engine_test!(
    a_tiny_cache_capacity_is_invalid_config_and_writes_nothing,
    |db| {
        for bytes in [0, 1, 255, 4095] {
            invalid_config_naming(db.config().cache_capacity(bytes).open(), "cache_capacity");
        }
        assert!(!db.path.exists(), "nothing was created");
        // The store opens afterwards with either engine.
        db.config().cache_capacity(4096).open()?;
        Ok(())
    }
);

// Finding 7: the store that writes enforces its own size limit.
store_test!(
    a_session_from_a_roomier_store_cannot_save_past_the_limit,
    |db| {
        let store = db.open()?;
        let mut s = store.create()?;
        s.set("small", &1u8)?;
        store.save(&mut s)?;
        s.set("big", &vec![7u8; 4096])?;
        drop(store);
        let strict = db.config().max_value_size(16).open()?;
        let writes = strict.stats()?.writes_since_open;
        let err = strict.save(&mut s).unwrap_err();
        assert!(
            matches!(err, Error::ValueTooLarge { ref key, max: 16, .. } if key == "big"),
            "{err}"
        );
        assert_eq!(strict.stats()?.writes_since_open, writes, "nothing written");
        assert!(s.is_dirty());
        let stored = strict.get(s.id(), None)?.expect("live");
        assert_eq!(stored.get_raw("big"), None);
        Ok(())
    }
);

// Settings that were accepted but broke things.
engine_test!(zero_intervals_and_timeouts_are_invalid_config, |db| {
    invalid_config_naming(
        db.config()
            .durability(Durability::Periodic(Duration::ZERO))
            .open(),
        "Periodic",
    );
    invalid_config_naming(
        db.config().reap_interval(Some(Duration::ZERO)).open(),
        "reap_interval",
    );
    invalid_config_naming(
        db.config().idle_timeout(Duration::ZERO).open(),
        "idle_timeout",
    );
    invalid_config_naming(
        db.config().absolute_timeout(Some(Duration::ZERO)).open(),
        "absolute_timeout",
    );
    assert!(!db.path.exists(), "nothing was created");
    let store = db.open()?;
    let s = store.create()?;
    let err = store
        .set_idle_timeout(s.id(), Some(Duration::ZERO))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(ref m) if m.contains("set_idle_timeout")));
    assert!(store.get(s.id(), None)?.is_some(), "the session lives on");
    Ok(())
});

store_test!(
    a_granularity_over_the_idle_timeout_still_keeps_a_used_session_alive,
    |db| {
        let store = db.config().touch_granularity(60 * MIN).open()?;
        let s = store.create()?;
        for _ in 0..5 {
            db.clock.advance(6 * MIN);
            assert!(store.touch(s.id())?, "live at each touch");
        }
        assert!(store.get(s.id(), None)?.is_some());
        // The same for a session whose own idle timeout is shorter.
        store.set_idle_timeout(s.id(), Some(2 * MIN))?;
        for _ in 0..5 {
            db.clock.advance(MIN + Duration::from_secs(30));
            assert!(store.touch(s.id())?, "live at each touch");
        }
        Ok(())
    }
);

/// Every knob at 0, 1, its maximum and `Duration::MAX`: `InvalidConfig`
/// naming it, or a store that passes a smoke test and closes cleanly.
#[test]
fn every_knob_at_its_edges_is_refused_by_name_or_works() -> sessionstore::Result<()> {
    type Knob = (&'static str, Box<dyn Fn(Config) -> Config>);
    let durations = [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(1),
        Duration::from_secs(1),
        Duration::MAX,
    ];
    let mut knobs: Vec<Knob> = Vec::new();
    for d in durations {
        knobs.push((
            "write_timeout",
            Box::new(move |c: Config| c.write_timeout(d)),
        ));
        knobs.push(("idle_timeout", Box::new(move |c: Config| c.idle_timeout(d))));
        knobs.push((
            "absolute_timeout",
            Box::new(move |c: Config| c.absolute_timeout(Some(d))),
        ));
        knobs.push((
            "reap_interval",
            Box::new(move |c: Config| c.reap_interval(Some(d))),
        ));
        knobs.push((
            "touch_granularity",
            Box::new(move |c: Config| c.touch_granularity(d)),
        ));
        knobs.push((
            "Periodic",
            Box::new(move |c: Config| c.durability(Durability::Periodic(d))),
        ));
    }
    for n in [0usize, 1, 64 << 20, (64 << 20) + 1, usize::MAX] {
        knobs.push((
            "max_value_size",
            Box::new(move |c: Config| c.max_value_size(n)),
        ));
    }
    for n in [0usize, 1, 1 << 20, (1 << 20) + 1, usize::MAX] {
        knobs.push((
            "meta_cache_entries",
            Box::new(move |c: Config| c.meta_cache_entries(n)),
        ));
    }
    for n in [0u32, 1, u32::MAX] {
        knobs.push((
            "update_attempts",
            Box::new(move |c: Config| c.update_attempts(n)),
        ));
    }
    for n in [0u64, 1, 4096, u64::MAX] {
        knobs.push((
            "cache_capacity",
            Box::new(move |c: Config| c.cache_capacity(n)),
        ));
    }
    for engine in Engine::ALL {
        for (name, set) in &knobs {
            let db = crate::common::Db::new(*engine);
            match set(db.config()).open() {
                Err(Error::InvalidConfig(msg)) => {
                    assert!(msg.contains(name), "{engine}: {msg:?} names {name}");
                    assert!(!db.path.exists(), "{engine} {name}: nothing created");
                }
                Err(e) => panic!("{engine} {name}: {e}"),
                Ok(store) => {
                    let mut s = store.create()?;
                    s.set("k", &())?;
                    store.save(&mut s)?;
                    assert!(store.get(s.id(), None)?.is_some(), "{engine} {name}");
                    assert!(store.touch(s.id())?);
                    assert!(store.destroy(s.id())?);
                    store.flush()?;
                    drop(store);
                    // Closed cleanly: it reopens.
                    db.open()?;
                }
            }
        }
    }
    Ok(())
}

/// Any value `set` accepts under a store's limit reads back from the store,
/// for values near the limit in bytes and in element count.
#[test]
fn values_near_the_limits_read_back_from_the_store() -> sessionstore::Result<()> {
    use proptest::prelude::*;
    let db = crate::common::Db::new(Engine::default());
    let limit = 4096usize;
    let store = db.config().max_value_size(limit).open()?;
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 64,
        ..Default::default()
    });
    let strategy = (
        proptest::collection::vec(any::<u64>(), 400..700),
        limit - 8..limit + 8,
        0usize..70_000,
    );
    let result = runner.run(&strategy, |(ints, text_len, units)| {
        let mut s = store.create().expect("create");
        let text = "é".repeat(text_len / 2);
        let accepted = [
            s.set("ints", &ints).is_ok(),
            s.set("text", &text).is_ok(),
            s.set("units", &vec![(); units]).is_ok(),
            s.set("pairs", &vec![(1u8, ()); units / 2]).is_ok(),
        ];
        store.save(&mut s).expect("save");
        let got = store.get(s.id(), None).expect("get").expect("live");
        if accepted[0] {
            prop_assert_eq!(got.get::<Vec<u64>>("ints").expect("reads"), Some(ints));
        }
        if accepted[1] {
            prop_assert_eq!(got.get::<String>("text").expect("reads"), Some(text));
        }
        if accepted[2] {
            prop_assert_eq!(
                got.get::<Vec<()>>("units").expect("reads").map(|v| v.len()),
                Some(units)
            );
        }
        if accepted[3] {
            prop_assert_eq!(
                got.get::<Vec<(u8, ())>>("pairs")
                    .expect("reads")
                    .map(|v| v.len()),
                Some(units / 2)
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    Ok(())
}

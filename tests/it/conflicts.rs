//! Conflict-aware saves: each scope carries a version that every write of it
//! changes; `save_if_unchanged` refuses to write over a newer scope, and
//! `update` retries until its change lands on the latest one.

use std::sync::Barrier;

use sessionstore::{Error, Session};

use crate::common::AnyStore;

const THREADS: usize = 8;
const ROUNDS: u32 = 500;

fn add_one(s: &mut Session) -> sessionstore::Result<u32> {
    let n = s.get::<u32>("n")?.unwrap_or(0) + 1;
    s.set("n", &n)?;
    Ok(n)
}

fn count(store: &AnyStore, sid: &str) -> sessionstore::Result<Option<u32>> {
    store.get(sid, None)?.expect("live").get::<u32>("n")
}

store_test!(update_from_eight_threads_counts_exactly, |db| {
    let store = db.config().update_attempts(u32::MAX).open()?;
    let sid = store.create()?.id().to_owned();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| -> sessionstore::Result<()> {
                for _ in 0..ROUNDS {
                    let n = match &store {
                        AnyStore::Embedded(s) => s.update(&sid, None, add_one)?,
                        #[cfg(feature = "redis")]
                        AnyStore::Redis(s) => s.update(&sid, None, add_one)?,
                    };
                    assert!(n.is_some(), "the session is live");
                }
                Ok(())
            });
        }
    });
    assert_eq!(count(&store, &sid)?, Some(THREADS as u32 * ROUNDS));
    Ok(())
});

store_test!(plain_save_loses_concurrent_increments, |db| {
    // Every round, all threads read the same count, then all save it plus
    // one: per-key merge keeps one of the equal writes, so each round adds
    // one instead of eight. `update` above does not lose any.
    let store = db.open()?;
    let sid = store.create()?.id().to_owned();
    let read = Barrier::new(THREADS);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| -> sessionstore::Result<()> {
                for _ in 0..ROUNDS {
                    let mut s = store.get(&sid, None)?.expect("live");
                    add_one(&mut s)?;
                    read.wait();
                    store.save(&mut s)?;
                    read.wait();
                }
                Ok(())
            });
        }
    });
    assert_eq!(
        count(&store, &sid)?,
        Some(ROUNDS),
        "7 of every 8 increments lost"
    );
    Ok(())
});

store_test!(
    a_stale_save_if_unchanged_conflicts_writes_nothing_and_stays_dirty,
    |db| {
        let store = db.open()?;
        let sid = store.create()?.id().to_owned();
        let mut first = store.get(&sid, None)?.expect("live");
        let mut second = store.get(&sid, None)?.expect("live");
        add_one(&mut first)?;
        store.save_if_unchanged(&mut first)?;
        add_one(&mut second)?;
        second.set("other", "x")?;
        let writes = store.stats()?.writes_since_open;
        let err = store.save_if_unchanged(&mut second).unwrap_err();
        assert!(
            matches!(err, Error::Conflict { sid: ref s, component: None } if *s == sid),
            "{err}"
        );
        assert_eq!(store.stats()?.writes_since_open, writes, "nothing written");
        assert!(second.is_dirty());
        let stored = store.get(&sid, None)?.expect("live");
        assert_eq!(stored.get::<u32>("n")?, Some(1));
        assert_eq!(stored.get::<String>("other")?, None);
        // Read again, redo, and it lands.
        let mut again = store.get(&sid, None)?.expect("live");
        add_one(&mut again)?;
        store.save_if_unchanged(&mut again)?;
        // A session keeps saving after its own saves: its version follows them.
        add_one(&mut again)?;
        store.save_if_unchanged(&mut again)?;
        assert_eq!(count(&store, &sid)?, Some(3));
        Ok(())
    }
);

store_test!(a_plain_save_also_changes_the_version, |db| {
    let store = db.open()?;
    let sid = store.create()?.id().to_owned();
    let mut a = store.get(&sid, None)?.expect("live");
    let mut b = store.get(&sid, None)?.expect("live");
    a.set("k", &1u8)?;
    store.save(&mut a)?;
    b.set("j", &2u8)?;
    assert!(matches!(
        store.save_if_unchanged(&mut b),
        Err(Error::Conflict { .. })
    ));
    // Plain save still merges per key.
    store.save(&mut b)?;
    let stored = store.get(&sid, None)?.expect("live");
    assert_eq!(stored.get::<u8>("k")?, Some(1));
    assert_eq!(stored.get::<u8>("j")?, Some(2));
    Ok(())
});

store_test!(
    a_plain_save_of_a_stale_copy_does_not_make_it_current,
    |db| {
        // A and B read; B increments; A saves another key with plain save (per-key
        // merge keeps B's increment), then increments its stale count with
        // save_if_unchanged: that must conflict, or B's increment is lost.
        let store = db.open()?;
        let sid = store.create()?.id().to_owned();
        let mut a = store.get(&sid, None)?.expect("live");
        let mut b = store.get(&sid, None)?.expect("live");
        add_one(&mut b)?;
        store.save_if_unchanged(&mut b)?;
        a.set("other", "x")?;
        store.save(&mut a)?;
        add_one(&mut a)?;
        assert!(matches!(
            store.save_if_unchanged(&mut a),
            Err(Error::Conflict { .. })
        ));
        assert_eq!(count(&store, &sid)?, Some(1));
        // A copy that was current stays current through its own plain saves.
        let mut c = store.get(&sid, None)?.expect("live");
        c.set("other", "y")?;
        store.save(&mut c)?;
        add_one(&mut c)?;
        store.save_if_unchanged(&mut c)?;
        assert_eq!(count(&store, &sid)?, Some(2));
        Ok(())
    }
);

store_test!(conflicts_are_per_scope, |db| {
    let store = db.open()?;
    let sid = store.create()?.id().to_owned();
    let mut cart = store.get(&sid, Some("cart"))?.expect("live");
    let mut prefs = store.get(&sid, Some("prefs"))?.expect("live");
    let mut global = store.get(&sid, None)?.expect("live");
    cart.set("items", &3u8)?;
    store.save_if_unchanged(&mut cart)?;
    prefs.set("theme", "dark")?;
    store.save_if_unchanged(&mut prefs)?;
    global.set("user", "ada")?;
    store.save_if_unchanged(&mut global)?;
    // A second read of the cart is now stale; the others are not.
    let mut stale = cart.clone();
    cart.set("items", &4u8)?;
    store.save_if_unchanged(&mut cart)?;
    stale.set("items", &5u8)?;
    let err = store.save_if_unchanged(&mut stale).unwrap_err();
    assert!(
        matches!(err, Error::Conflict { component: Some(ref c), .. } if c == "cart"),
        "{err}"
    );
    prefs.set("lang", "en")?;
    store.save_if_unchanged(&mut prefs)?;
    Ok(())
});

store_test!(
    update_of_a_missing_session_is_none_and_errors_write_nothing,
    |db| {
        let store = db.config().update_attempts(3).open()?;
        let run = |sid: &str, f: &mut dyn FnMut(&mut Session) -> sessionstore::Result<u32>| {
            match &store {
                AnyStore::Embedded(s) => s.update(sid, None, f),
                #[cfg(feature = "redis")]
                AnyStore::Redis(s) => s.update(sid, None, f),
            }
        };
        assert_eq!(run("nobody", &mut add_one)?, None);
        let sid = store.create()?.id().to_owned();
        let writes = store.stats()?.writes_since_open;
        let err = run(&sid, &mut |s| {
            s.set("n", &9u32)?;
            Err(Error::InvalidKey {
                key: "refused".into(),
                reason: "by the change",
            })
        })
        .unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{err}");
        assert_eq!(store.stats()?.writes_since_open, writes, "nothing written");
        assert_eq!(count(&store, &sid)?, None);
        assert_eq!(run(&sid, &mut add_one)?, Some(1));
        Ok(())
    }
);

engine_test!(versions_survive_a_reopen, |db| {
    let store = db.open()?;
    let sid = store.create()?.id().to_owned();
    let mut s = store.get(&sid, Some("cart"))?.expect("live");
    s.set("n", &1u32)?;
    store.save(&mut s)?;
    let mut read_before = store.get(&sid, Some("cart"))?.expect("live");
    let mut stale = store.get(&sid, Some("cart"))?.expect("live");
    drop(store);
    let store = db.open()?;
    // Nobody wrote since the read: it saves.
    read_before.set("n", &2u32)?;
    store.save_if_unchanged(&mut read_before)?;
    drop(store);
    let store = db.open()?;
    stale.set("n", &3u32)?;
    assert!(matches!(
        store.save_if_unchanged(&mut stale),
        Err(Error::Conflict { .. })
    ));
    let got = store.get(&sid, Some("cart"))?.expect("live");
    assert_eq!(got.get::<u32>("n")?, Some(2));
    assert!(store.verify()?.is_ok(), "version records verify clean");
    Ok(())
});

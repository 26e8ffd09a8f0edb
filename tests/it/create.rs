//! create_new_session and create.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use sessionstore::{Error, Store};

store_test!(create_new_session_makes_an_empty_live_session, |db| {
    let store = db.open()?;
    let s = store.create_new_session("abc")?;
    assert_eq!(s.id(), "abc");
    assert_eq!(s.component(), None);
    assert!(s.is_empty() && !s.is_dirty());
    let got = store.get("abc", None)?.expect("live after create");
    assert!(got.is_empty());
    assert_eq!(store.stats()?.live_sessions, 1);
    Ok(())
});

store_test!(create_new_session_never_overwrites, |db| {
    let store = db.open()?;
    let mut s = store.create_new_session("abc")?;
    s.set("k", &1u32)?;
    store.save(&mut s)?;
    let writes = store.stats()?.writes_since_open;
    let err = store.create_new_session("abc").unwrap_err();
    assert!(
        matches!(&err, Error::AlreadyExists { id } if id == "abc"),
        "{err}"
    );
    assert!(err.to_string().contains("\"abc\""));
    assert_eq!(store.stats()?.writes_since_open, writes, "nothing written");
    assert_eq!(store.get("abc", None)?.unwrap().get::<u32>("k")?, Some(1));
    Ok(())
});

store_test!(racing_creates_of_one_id_have_one_winner, |db| {
    let store = db.open()?;
    for round in 0..20 {
        let sid = format!("race{round}");
        let barrier = Arc::new(Barrier::new(8));
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (store, barrier, sid) = (store.clone(), barrier.clone(), sid.clone());
                    s.spawn(move || {
                        barrier.wait();
                        match store.create_new_session(&sid) {
                            Ok(_) => 1,
                            Err(Error::AlreadyExists { .. }) => 0,
                            Err(e) => panic!("unexpected error: {e}"),
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1, "round {round}");
    }
    Ok(())
});

store_test!(create_draws_distinct_url_safe_ids, |db| {
    let store = db.open()?;
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let s = store.create()?;
        let id = s.id().to_owned();
        assert!(
            id.len() >= 22,
            "128 bits need at least 22 base64 characters: {id}"
        );
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{id}"
        );
        assert!(store.get(&id, None)?.is_some());
        assert!(seen.insert(id));
    }
    Ok(())
});

#[test]
fn store_and_session_are_send_sync_and_clone() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_clone<T: Clone>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<sessionstore::Session>();
    assert_send_sync::<Error>();
    assert_clone::<Store>();
    assert_clone::<sessionstore::Session>();
}

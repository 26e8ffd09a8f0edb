//! Bytes under the store's keys that it did not write give errors for that
//! session only, naming what they are about; destroy still removes them.

use sessionstore::{Error, ManualClock, SessionStore};

use crate::common::servers::Server;

#[test]
fn bytes_that_are_not_ours_are_errors_for_that_session_only() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let store = super::config(&server.url(), &ManualClock::default(), "bad").open()?;
    for sid in ["victim", "other"] {
        let mut s = store.create_new_session(sid)?;
        s.set("k", &1u8)?;
        store.save(&mut s)?;
    }
    let keys = super::keys_of(&server, "victim");
    assert_eq!(keys.len(), 1, "one key per session: {keys:?}");
    let key = &keys[0];

    // Garbage where the metadata record is.
    server.cli(&["HSET", key, "m", "\u{1}garbage"]);
    let decode = |r: sessionstore::Result<()>, what: &str| match r {
        Err(Error::Decode { what: w, .. }) => assert!(w.contains("victim"), "{what}: {w}"),
        other => panic!("{what}: want Decode, got {other:?}"),
    };
    decode(store.get("victim", None).map(drop), "get");
    decode(store.info("victim").map(drop), "info");
    decode(store.touch("victim").map(drop), "touch");
    decode(store.regenerate("victim").map(drop), "regenerate");
    decode(
        store.create_new_session("victim").map(drop),
        "create_new_session",
    );
    assert_eq!(
        store
            .get("other", None)?
            .expect("untouched")
            .get::<u8>("k")?,
        Some(1)
    );
    assert!(
        store.destroy("victim")?,
        "a corrupt session can be destroyed"
    );
    assert!(store.get("victim", None)?.is_none());

    // A hash without a metadata record (the destroy left a tombstone,
    // which reads as no session: replaced whole).
    server.cli(&["DEL", key]);
    server.cli(&["HSET", key, "x", "y"]);
    decode(store.get("victim", None).map(drop), "get of a foreign hash");
    decode(
        store.create_new_session("victim").map(drop),
        "create over a foreign hash",
    );
    server.cli(&["DEL", key]);

    // A string where a hash should be: Redis's WRONGTYPE, as `Decode`
    // naming the key and the server.
    server.cli(&["SET", key, "not a hash"]);
    let err = store.get("victim", None).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains(&server.url()), "{err}");
    assert!(err.to_string().contains(key.as_str()), "{err}");
    assert!(
        !store.destroy("victim")?,
        "destroy removes it; no session was there"
    );
    store.create_new_session("victim")?;
    assert_eq!(
        store
            .get("other", None)?
            .expect("untouched")
            .get::<u8>("k")?,
        Some(1)
    );
    Ok(())
}

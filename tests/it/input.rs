//! Bad input is rejected before anything is written, naming the input.

use sessionstore::{Config, Error};

store_test!(bad_ids_are_rejected_everywhere, |db| {
    let store = db.open()?;
    let long = "a".repeat(129);
    for bad in ["", "a/b", "a b", "ü", "a.b", long.as_str()] {
        let is_invalid =
            |r: Result<(), Error>| matches!(r, Err(Error::InvalidId { ref id, .. }) if id == bad);
        assert!(
            is_invalid(store.create_new_session(bad).map(drop)),
            "{bad:?}"
        );
        assert!(is_invalid(store.get(bad, None).map(drop)));
        assert!(is_invalid(store.destroy(bad).map(drop)));
        assert!(is_invalid(store.touch(bad).map(drop)));
        assert!(is_invalid(store.regenerate(bad).map(drop)));
        assert!(is_invalid(store.set_idle_timeout(bad, None)));
    }
    let max = "a".repeat(128);
    store.create_new_session(&max)?;
    assert_eq!(
        store.stats()?.writes_since_open,
        1,
        "only the valid create wrote"
    );
    Ok(())
});

store_test!(bad_components_are_rejected, |db| {
    let store = db.open()?;
    store.create_new_session("s")?;
    let long = "c".repeat(129);
    for bad in ["", "a/b", "a\nb", long.as_str()] {
        let err = store.get("s", Some(bad)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidComponent { component, .. } if component == bad),
            "{err}"
        );
    }
    assert!(store.get("s", Some("v2.0 ünïcode"))?.is_some());
    Ok(())
});

engine_test!(bad_keys_and_large_values_are_rejected_at_set, |db| {
    let store = Config::new(&db.path)
        .reap_interval(None)
        .max_value_size(16)
        .open()?;
    let mut s = store.create_new_session("s")?;
    let long = "k".repeat(1025);
    for bad in ["", "a\u{7}b", long.as_str()] {
        let err = s.set(bad, &1u8).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidKey { key, .. } if key == bad),
            "{err}"
        );
    }
    let err = s.set("big", &[0u8; 32]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ValueTooLarge {
                size: 32,
                max: 16,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("\"big\""));
    assert!(!s.is_dirty(), "rejected input changes nothing");
    s.set("ok", &[0u8; 15])?;
    store.save(&mut s)?;
    Ok(())
});

#[test]
fn max_value_size_has_a_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let err = Config::new(dir.path())
        .max_value_size(1 << 30)
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
}

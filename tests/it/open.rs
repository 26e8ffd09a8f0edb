//! Opening, reopening, locking and closing.

use sessionstore::{Config, Error, Store};

engine_test!(data_survives_a_reopen, |db| {
    {
        let store = db.open()?;
        let mut s = store.create_new_session("s")?;
        s.set("k", &[1u8, 2, 3])?;
        store.save(&mut s)?;
        let mut c = store.get("s", Some("c"))?.unwrap();
        c.set("x", "y")?;
        store.save(&mut c)?;
    }
    let store = db.open()?;
    assert_eq!(
        store.get("s", None)?.unwrap().get::<[u8; 3]>("k")?,
        Some([1, 2, 3])
    );
    assert_eq!(
        store
            .get("s", Some("c"))?
            .unwrap()
            .get::<String>("x")?
            .as_deref(),
        Some("y")
    );
    Ok(())
});

engine_test!(a_second_open_says_in_use, |db| {
    let store = db.open()?;
    let err = db.open().unwrap_err();
    assert!(
        matches!(&err, Error::InUse { path } if *path == db.path),
        "{err}"
    );
    assert!(err.to_string().contains("in use"), "{err}");
    // A clone is the way to share it; the lock goes with the last handle.
    let clone = store.clone();
    drop(store);
    assert!(matches!(db.open(), Err(Error::InUse { .. })));
    drop(clone);
    db.open()?;
    Ok(())
});

engine_test!(a_path_holding_something_else_is_not_a_store, |db| {
    std::fs::create_dir_all(&db.path).unwrap();
    std::fs::write(db.path.join("notes.txt"), b"hello").unwrap();
    let err = db.open().unwrap_err();
    assert!(
        matches!(&err, Error::NotAStore { reason, .. } if reason.contains("notes.txt")),
        "{err}"
    );

    let file = db.dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = Config::new(&file).open().unwrap_err();
    assert!(
        matches!(&err, Error::NotAStore { reason, .. } if reason.contains("file")),
        "{err}"
    );
    Ok(())
});

#[test]
fn temporary_leaves_nothing_behind() -> sessionstore::Result<()> {
    let store = Store::temporary()?;
    let path = store.path().to_path_buf();
    let mut s = store.create()?;
    s.set("k", &1u8)?;
    store.save(&mut s)?;
    assert!(path.exists());
    drop(store);
    assert!(!path.exists());
    Ok(())
}

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

/// A crash while a new redb store was being created leaves `data.redb.new`
/// (redb writes a new file under that name and renames it when its first
/// commit is done): the directory still opens as a new store, and a store
/// written there reopens.
#[cfg(feature = "redb")]
#[test]
fn a_store_whose_creation_was_cut_short_opens_as_a_new_one() -> sessionstore::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("store");
    std::fs::create_dir(&path).expect("the store's directory");
    std::fs::write(path.join("data.redb.new"), b"half a header").expect("a leftover");
    let store = Config::new(&path)
        .engine(sessionstore::Engine::Redb)
        .open()?;
    store.create_new_session("s")?;
    drop(store);
    let store = Config::new(&path).open()?;
    assert!(store.get("s", None)?.is_some());
    assert!(!path.join("data.redb.new").exists());
    Ok(())
}

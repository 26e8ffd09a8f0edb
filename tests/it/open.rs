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

/// Writes 20 sessions with 8 keys in the global scope and a 3,000-byte
/// value of `marker` bytes in a component's; returns their ids.
fn write_sessions(store: &Store, marker: u8) -> sessionstore::Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in 0..20u64 {
        let mut s = store.create()?;
        for k in 0..8u64 {
            s.set(&format!("k{k}"), &(i * 100 + k))?;
        }
        store.save(&mut s)?;
        let mut c = store.get(s.id(), Some("c"))?.unwrap();
        c.set("big", &vec![marker; 3000])?;
        store.save(&mut c)?;
        ids.push(s.id().to_owned());
    }
    Ok(ids)
}

fn assert_whole(store: &Store, ids: &[String], marker: u8) -> sessionstore::Result<()> {
    for (i, id) in ids.iter().enumerate() {
        let s = store.get(id, None)?.expect("live");
        for k in 0..8u64 {
            assert_eq!(s.get::<u64>(&format!("k{k}"))?, Some(i as u64 * 100 + k));
        }
        let c = store.get(id, Some("c"))?.expect("live");
        assert_eq!(c.get::<Vec<u8>>("big")?, Some(vec![marker; 3000]));
    }
    assert!(store.verify()?.is_ok());
    Ok(())
}

engine_test!(
    verify_on_open_at_both_values_opens_a_sound_store_whole,
    |db| {
        // A new store: nothing to check yet.
        let ids = write_sessions(&db.config().verify_on_open(true).open()?, 0xAB)?;
        for on in [true, false, true] {
            let store = db.config().verify_on_open(on).open()?;
            assert_whole(&store, &ids, 0xAB)?;
            // It takes writes after the check, and they survive the next open.
            let mut s = store.get(&ids[0], None)?.expect("live");
            s.set("k0", &0u64)?;
            store.save(&mut s)?;
        }
        Ok(())
    }
);

/// Flips 64 bytes at every run of 500 `marker` bytes in `file`; how many.
fn damage_runs(file: &std::path::Path, marker: u8) -> usize {
    let mut bytes = std::fs::read(file).unwrap();
    let run = [marker; 500];
    let mut found = 0;
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(run.len()).position(|w| w == run) {
        let i = i + at;
        for b in &mut bytes[i..i + 64] {
            *b ^= 0xFF;
        }
        found += 1;
        at = i + run.len();
    }
    std::fs::write(file, &bytes).unwrap();
    found
}

/// A redb file damaged after a clean close: the default open trusts it (its
/// cost does not grow with the store), `verify_on_open(true)` refuses it,
/// and the refusal leaves the store as it was, openable again.
#[cfg(feature = "redb")]
#[test]
fn verify_on_open_refuses_a_damaged_redb_file_the_default_open_takes() -> sessionstore::Result<()> {
    let db = crate::common::Db::new(sessionstore::Engine::Redb);
    let ids = write_sessions(&db.open()?, 0xAB)?;
    assert!(damage_runs(&db.path.join("data.redb"), 0xAB) > 0);
    for _ in 0..2 {
        match db.config().verify_on_open(true).open() {
            Err(e @ Error::Storage { .. }) => assert!(e.to_string().contains("corrupt"), "{e}"),
            Err(e) => panic!("expected a storage error, got {e}"),
            Ok(_) => panic!("a damaged file passed the check"),
        }
    }
    let store = db.config().verify_on_open(false).open()?;
    // Pages the damage did not touch read back as written.
    let s = store.get(&ids[0], None)?.expect("live");
    assert_eq!(s.get::<u64>("k0")?, Some(0));
    Ok(())
}

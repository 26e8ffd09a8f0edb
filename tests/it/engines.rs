//! What differs between engines: which one a directory holds, and what each
//! reports about itself. Every other behaviour runs on both through `engine_test!`.

use crate::common;

use sessionstore::{Engine, Error};

engine_test!(stats_name_the_engine_and_the_data_survives_a_reopen, |db| {
    let sid = {
        let store = db.open()?;
        let mut s = store.create()?;
        s.set("user", "ada")?;
        store.save(&mut s)?;
        let stats = store.stats()?;
        assert_eq!(stats.engine, Some(db.engine));
        s.id().to_string()
    };
    let store = db.open()?;
    let s = store
        .get(&sid, None)?
        .expect("the session survives the reopen");
    assert_eq!(s.get::<String>("user")?.as_deref(), Some("ada"));
    assert_eq!(store.stats()?.engine, Some(db.engine));
    Ok(())
});

engine_test!(the_engine_parses_from_its_name, |db| {
    let name = db.engine.name();
    assert_eq!(name.parse::<Engine>()?, db.engine);
    assert_eq!(name.to_ascii_uppercase().parse::<Engine>()?, db.engine);
    assert_eq!(db.engine.to_string(), name);
    assert!(Engine::ALL.contains(&db.engine));
    Ok(())
});

#[test]
fn an_unknown_engine_name_is_an_error_naming_it() {
    let err = "lmdb".parse::<Engine>().expect_err("no such engine");
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("\"lmdb\""), "{msg}");
    for e in Engine::ALL {
        assert!(msg.contains(e.name()), "{msg} lists {}", e.name());
    }
}

#[test]
fn the_default_engine_is_compiled_in() {
    assert!(Engine::ALL.contains(&Engine::default()));
    assert_eq!(Engine::ALL[0], Engine::default());
    #[cfg(feature = "redb")]
    assert_eq!(Engine::default(), Engine::Redb);
}

/// Without `Config::engine`, a new store gets the default engine and an
/// existing one is opened with the engine that made it.
#[cfg(all(feature = "sled", feature = "redb"))]
#[test]
fn without_an_engine_the_store_in_the_directory_decides() -> sessionstore::Result<()> {
    use sessionstore::Config;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fresh = dir.path().join("fresh");
    assert_eq!(
        Config::new(&fresh)
            .reap_interval(None)
            .open()?
            .stats()?
            .engine,
        Some(Engine::Redb)
    );
    let old = dir.path().join("old");
    {
        let store = Config::new(&old)
            .engine(Engine::Sled)
            .reap_interval(None)
            .open()?;
        store.create_new_session("s")?;
    }
    let store = Config::new(&old).reap_interval(None).open()?;
    assert_eq!(store.stats()?.engine, Some(Engine::Sled));
    assert!(store.get("s", None)?.is_some());
    Ok(())
}

/// Both engines built in: each refuses the other's directory.
#[cfg(all(feature = "sled", feature = "redb"))]
mod cross {
    use super::*;
    use common::Db;

    /// Creates a store with `first`, then opens its directory with `second`.
    fn open_with_the_other_engine(first: Engine, second: Engine) -> sessionstore::Result<()> {
        let db = Db::new(first);
        {
            let store = db.open()?;
            let mut s = store.create()?;
            s.set("k", &1u32)?;
            store.save(&mut s)?;
        }
        let err = db.config().engine(second).open().err();
        match &err {
            Some(Error::NotAStore { path, reason }) => {
                assert_eq!(path, &db.path);
                assert!(
                    reason.contains(&format!("holds a {} store", first.name())),
                    "{reason}"
                );
                assert!(reason.contains(&format!("{first:?}")), "{reason}");
            }
            other => panic!("expected NotAStore, got {other:?}"),
        }
        // Nothing was written by the refused open: the first engine still opens it, intact.
        let store = db.open()?;
        assert_eq!(store.stats()?.engine, Some(first));
        assert_eq!(store.session_ids().count(), 1);
        Ok(())
    }

    #[test]
    fn a_sled_store_opened_as_redb_is_not_a_store_naming_sled() -> sessionstore::Result<()> {
        open_with_the_other_engine(Engine::Sled, Engine::Redb)
    }

    #[test]
    fn a_redb_store_opened_as_sled_is_not_a_store_naming_redb() -> sessionstore::Result<()> {
        open_with_the_other_engine(Engine::Redb, Engine::Sled)
    }
}

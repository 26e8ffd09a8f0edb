//! A read-only open (`Config::read_only`, `Store::open_read_only`) beside a
//! writer: it takes no lock, follows the writer's commits, refuses every
//! write naming the call, creates nothing and writes nothing, at close either.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sessionstore::{Config, Engine, Error, ImportMode, ManualClock, Result, SessionStore, Store};

use crate::common::Db;

fn redb() -> Db {
    Db::new(Engine::Redb)
}

/// A read-only store on `db`'s directory, with a clock of its own.
fn reader(db: &Db, clock: &ManualClock) -> Result<Store> {
    Config::new(&db.path)
        .read_only(true)
        .clock(Arc::new(clock.clone()))
        .idle_timeout(Duration::from_secs(600))
        .open()
}

/// Every entry in `dir` with its bytes (empty for a directory), sorted by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .expect("the store's directory")
        .map(|e| {
            let e = e.expect("a directory entry");
            let bytes = if e.path().is_dir() {
                Vec::new()
            } else {
                fs::read(e.path()).expect("a file's bytes")
            };
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    all.sort();
    all
}

fn refused(op: &str, r: Result<impl std::fmt::Debug>) {
    match r {
        Err(Error::ReadOnly { op: got, .. }) if got == op => {}
        other => panic!("{op}: expected Error::ReadOnly naming {op:?}, got {other:?}"),
    }
}

#[test]
fn every_write_on_a_read_only_store_is_refused_naming_the_call() -> Result<()> {
    let db = redb();
    let writer = db.open()?;
    let mut s = writer.create_new_session("s")?;
    s.set("k", "v")?;
    writer.save(&mut s)?;
    let exported = writer.export_session("s")?.expect("s is live");

    let ro = reader(&db, &db.clock)?;
    let mut seen = ro.get("s", None)?.expect("the reader sees s");
    seen.set("k", "w")?;
    refused("save", ro.save(&mut seen));
    refused("save_if_unchanged", ro.save_if_unchanged(&mut seen));
    refused(
        "save_if_unchanged",
        ro.update("s", None, |s| s.set("k", "u")).map(drop),
    );
    refused("create", ro.create());
    refused("create_new_session", ro.create_new_session("t"));
    refused("destroy", ro.destroy("s"));
    refused("touch", ro.touch("s"));
    refused("touch", ro.touch("unknown"));
    refused("regenerate", ro.regenerate("s"));
    refused("set_idle_timeout", ro.set_idle_timeout("s", None));
    refused("reap_expired", ro.reap_expired());
    refused(
        "import_session",
        ro.import_session(&exported, ImportMode::Replace),
    );
    refused("flush", ro.flush());
    // Through the trait too.
    let dyn_store: &dyn SessionStore = &ro;
    refused("destroy", dyn_store.destroy("s"));
    let err = ro.flush().unwrap_err().to_string();
    assert!(err.contains("flush") && err.contains("read-only"), "{err}");
    assert!(err.contains(&db.path.display().to_string()), "{err}");

    // Nothing reached the store; the writer goes on unharmed.
    assert_eq!(
        writer
            .get("s", None)?
            .expect("s")
            .get::<String>("k")?
            .as_deref(),
        Some("v")
    );
    writer.save(&mut s)?;
    Ok(())
}

#[test]
fn a_read_only_store_follows_a_writer_in_the_same_process() -> Result<()> {
    let db = redb();
    let writer = db.open()?;
    writer.create_new_session("a")?;
    // The writer holds the lock file; the reader takes none.
    let ro = reader(&db, &db.clock)?;
    let ids = |s: &Store| s.session_ids().collect::<Result<Vec<_>>>();
    assert_eq!(ids(&ro)?, ["a"]);
    assert!(ro.get("a", None)?.expect("a").is_empty());

    // New commits show up in the same long-lived handle: no metadata cache.
    let mut a = writer.get("a", None)?.expect("a");
    a.set("x", &1u32)?;
    a.set("y", &2u32)?;
    writer.save(&mut a)?;
    writer.create_new_session("b")?;
    let seen = ro.get("a", None)?.expect("a");
    assert_eq!(
        (seen.get::<u32>("x")?, seen.get::<u32>("y")?),
        (Some(1), Some(2))
    );
    assert_eq!(ro.stats()?.live_sessions, 2);

    let new_id = writer.regenerate("a")?;
    assert!(ro.get("a", None)?.is_none());
    assert_eq!(
        ro.get(&new_id, None)?.expect("moved").get::<u32>("x")?,
        Some(1)
    );
    assert!(writer.destroy("b")?);
    assert!(ro.get("b", None)?.is_none());
    assert!(ro.info("b")?.is_none());
    assert_eq!(ids(&ro)?, [new_id]);
    Ok(())
}

#[test]
fn liveness_on_a_read_only_store_uses_its_own_clock() -> Result<()> {
    let db = redb();
    let writer = db.open()?;
    writer.create_new_session("s")?;
    let late = ManualClock::default();
    late.advance(Duration::from_secs(3600));
    let ro = reader(&db, &late)?;
    assert!(
        ro.get("s", None)?.is_none(),
        "expired by the reader's clock"
    );
    assert_eq!(ro.stats()?.live_sessions, 0);
    assert_eq!(ro.expired_session_ids().count(), 1);
    assert!(
        writer.get("s", None)?.is_some(),
        "live by the writer's clock"
    );
    Ok(())
}

#[test]
fn verify_works_on_a_read_only_store() -> Result<()> {
    let db = redb();
    let writer = db.open()?;
    let mut s = writer.create_new_session("s")?;
    s.set("k", "v")?;
    writer.save(&mut s)?;
    let report = reader(&db, &db.clock)?.verify()?;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.sessions, report.keys), (1, 1));
    Ok(())
}

#[test]
fn a_read_only_open_of_a_missing_store_is_an_error_and_creates_nothing() -> Result<()> {
    let db = redb();
    let err = Store::open_read_only(&db.path).unwrap_err();
    assert!(
        matches!(&err, Error::NotAStore { path, .. } if *path == db.path),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&db.path.display().to_string()),
        "{err}"
    );
    assert!(
        !db.path.exists(),
        "a read-only open created {}",
        db.path.display()
    );

    fs::create_dir(&db.path).expect("an empty directory");
    let err = Store::open_read_only(&db.path).unwrap_err();
    assert!(matches!(&err, Error::NotAStore { .. }), "{err:?}");
    assert!(files(&db.path).is_empty(), "{:?}", files(&db.path));
    Ok(())
}

#[test]
fn a_read_only_store_writes_nothing_not_even_at_close() -> Result<()> {
    let db = redb();
    {
        let writer = db.open()?;
        let mut s = writer.create_new_session("s")?;
        s.set("k", "v")?;
        writer.save(&mut s)?;
    }
    let before = files(&db.path);
    {
        // A clock far ahead moves the reader's time floor: a writer would
        // store it at close.
        let late = ManualClock::default();
        late.advance(Duration::from_secs(86_400));
        let ro = reader(&db, &late)?;
        assert!(ro.get("s", None)?.is_none());
        ro.stats()?;
        ro.verify()?;
        assert_eq!(ro.expired_session_ids().count(), 1);
    }
    assert_eq!(
        files(&db.path),
        before,
        "the read-only store changed a file"
    );
    // Nor does a read-only open of a store no writer has open take the lock:
    // a writer opens beside it, and the floor it reads is the old one.
    let ro = reader(&db, &db.clock)?;
    let writer = db.open()?;
    assert!(writer.get("s", None)?.is_some());
    drop(ro);
    Ok(())
}

#[test]
fn a_writer_without_live_readers_refuses_a_reader_naming_the_knob() -> Result<()> {
    let db = redb();
    let _writer = db.config().live_readers(false).open()?;
    let err = reader(&db, &db.clock).unwrap_err().to_string();
    assert!(err.contains("live_readers(false)"), "{err}");
    Ok(())
}

#[cfg(feature = "sled")]
#[test]
fn a_read_only_open_of_a_sled_store_names_the_engine_and_the_way_out() -> Result<()> {
    let db = Db::new(Engine::Sled);
    drop(db.open()?);
    let before = files(&db.path);
    let err = Store::open_read_only(&db.path).unwrap_err();
    assert!(
        matches!(&err, Error::ReadOnlyUnsupported { engine: "sled", path } if *path == db.path),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("sled") && msg.contains("stop the application"),
        "{msg}"
    );
    assert_eq!(files(&db.path), before);
    Ok(())
}

#[test]
fn read_only_on_a_temporary_store_is_invalid() {
    let err = Config::temporary().read_only(true).open().unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
}

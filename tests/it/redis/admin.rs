//! Whole sessions in and out of Redis: export and import in the shape the
//! embedded store uses, so that sessions move between the two unchanged, and
//! the listing of expired sessions whose keys are still there.

use std::sync::Arc;
use std::time::Duration;

use sessionstore::{Error, ExportedSession, ImportMode, RedisStore, SessionStore, Store};

use crate::common::{self, AnyStore, Kind, StoreDb};

/// The Redis store of `db`, which must be of a Redis kind.
fn redis(db: &StoreDb) -> sessionstore::Result<RedisStore> {
    match db.open()? {
        AnyStore::Redis(s) => Ok(s),
        AnyStore::Embedded(_) => unreachable!("a Redis kind"),
    }
}

/// A session with keys in the global scope and in two components, and an idle timeout of its own.
fn fill(store: &dyn SessionStore) -> sessionstore::Result<String> {
    let mut global = store.create()?;
    global.set("user", &"ada")?;
    global.set("x/y", &7u32)?;
    store.save(&mut global)?;
    let sid = global.id().to_owned();
    for (component, n) in [("cart", 3u64), ("prefs", 4)] {
        let mut scope = store.get(&sid, Some(component))?.expect("live");
        scope.set("n", &n)?;
        store.save(&mut scope)?;
    }
    store.set_idle_timeout(&sid, Some(Duration::from_secs(900)))?;
    Ok(sid)
}

fn embedded_to_redis_and_back(kind: Kind) -> sessionstore::Result<()> {
    let db = StoreDb::new(kind);
    let dir = common::Db::new(sessionstore::Engine::default());
    let embedded: Store = dir.config().clock(Arc::new(db.clock.clone())).open()?;
    let sid = fill(&embedded)?;
    let exported = embedded.export_session(&sid)?.expect("live");

    let redis = redis(&db)?;
    redis.import_session(&exported, ImportMode::Create)?;
    assert_eq!(redis.export_session(&sid)?.as_ref(), Some(&exported));
    let cart = redis.get(&sid, Some("cart"))?.expect("imported and live");
    assert_eq!(cart.get::<u64>("n")?, Some(3));
    assert_eq!(
        redis.info(&sid)?.expect("live").idle_timeout,
        Some(Duration::from_secs(900))
    );

    // A live session under the id is refused, unless replaced.
    match redis.import_session(&exported, ImportMode::Create) {
        Err(Error::AlreadyExists { id }) => assert_eq!(id, sid),
        other => panic!("want AlreadyExists, got {other:?}"),
    }
    let smaller = ExportedSession::new(&sid, exported.created, exported.last_access);
    redis.import_session(&smaller, ImportMode::Replace)?;
    let back = redis.export_session(&sid)?.expect("replaced");
    assert!(back.scopes.is_empty(), "replaced whole: {back:?}");

    // Redis back to a fresh embedded store gives the same session.
    let again = redis_sessions_into_embedded(&redis, &sid)?;
    assert_eq!(
        again,
        smaller.with_idle_timeout(None).with_absolute_deadline(None)
    );
    Ok(())
}

fn redis_sessions_into_embedded(
    redis: &RedisStore,
    sid: &str,
) -> sessionstore::Result<ExportedSession> {
    let session = redis.export_session(sid)?.expect("there");
    let dir = common::Db::new(sessionstore::Engine::default());
    let store = dir.open()?;
    store.import_session(&session, ImportMode::Create)?;
    Ok(store.export_session(sid)?.expect("imported"))
}

#[test]
fn sessions_move_from_an_embedded_store_to_redis_and_back_unchanged() -> sessionstore::Result<()> {
    embedded_to_redis_and_back(Kind::Redis)
}

#[test]
fn sessions_move_from_an_embedded_store_to_a_redis_cluster_and_back_unchanged()
-> sessionstore::Result<()> {
    embedded_to_redis_and_back(Kind::RedisCluster)
}

#[test]
fn expired_sessions_are_listed_until_their_keys_go() -> sessionstore::Result<()> {
    let db = StoreDb::new(Kind::RedisCluster);
    let store = redis(&db)?;
    let old = store.create()?.id().to_owned();
    db.clock.advance(Duration::from_secs(300));
    let young = store.create()?.id().to_owned();
    db.clock.advance(Duration::from_secs(301));
    assert_eq!(store.session_ids()?, vec![young.clone()]);
    assert_eq!(store.expired_session_ids()?, vec![old.clone()]);
    // Export shows it, marked by its deadline; destroy deletes it.
    let exported = store.export_session(&old)?.expect("still stored");
    assert!(
        exported
            .deadline()
            .is_some_and(|d| d <= sessionstore::Clock::now(&db.clock))
    );
    assert!(!store.destroy(&old)?, "it was not live");
    assert!(store.expired_session_ids()?.is_empty());
    assert_eq!(store.export_session(&old)?, None);
    Ok(())
}

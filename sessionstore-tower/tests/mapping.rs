//! The mapping between tower-sessions records and sessions, called through
//! tower-sessions' `SessionStore` trait directly: ids, saves of what a
//! request changed, no resurrection, expiry, deletes, errors.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::Kit;
use serde_json::{Value, json};
use sessionstore::{Event, SessionStore};
use sessionstore_tower::{Reap, TowerStore};
use tokio::sync::Barrier;
use tower_sessions::ExpiredDeletion;
use tower_sessions::SessionStore as TowerSessionStore;
use tower_sessions::cookie::time::{self, OffsetDateTime};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::Error as TowerError;

fn record(pairs: &[(&str, Value)], expires_in: time::Duration) -> Record {
    Record {
        id: Id::default(),
        data: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        expiry_date: OffsetDateTime::now_utc() + expires_in,
    }
}

const HOUR: time::Duration = time::Duration::hours(1);

async fn created<S: SessionStore + Send + Sync + 'static>(
    kit: &Kit<S>,
    pairs: &[(&str, Value)],
) -> Record {
    let mut r = record(pairs, HOUR);
    kit.tower.create(&mut r).await.expect("create");
    r
}

fn stored<S: SessionStore + Send + Sync + 'static>(
    kit: &Kit<S>,
    id: Id,
) -> Option<HashMap<String, String>> {
    let scope = kit.store().get(&id.to_string(), None).expect("get")?;
    Some(
        scope
            .keys()
            .map(|k| {
                (
                    k.to_owned(),
                    scope.get::<String>(k).expect("a String").expect("set"),
                )
            })
            .collect(),
    )
}

pub async fn ids_map_one_to_one<S: SessionStore + Send + Sync + 'static>(kit: Kit<S>) {
    let r = created(&kit, &[("a", json!(1))]).await;
    let sid = r.id.to_string();
    assert_eq!(sid.len(), 22);
    assert_eq!(sid.parse::<Id>().expect("parses"), r.id);
    assert!(
        kit.store().info(&sid).expect("info").is_some(),
        "the store's id is the cookie's"
    );
    let loaded = kit.tower.load(&r.id).await.expect("load").expect("live");
    assert_eq!(loaded.id, r.id);
    assert_eq!(loaded.data, r.data);
}

pub async fn create_never_overwrites_a_live_session<S: SessionStore + Send + Sync + 'static>(
    kit: Kit<S>,
) {
    let first = created(&kit, &[("owner", json!("first"))]).await;
    let mut second = record(&[("owner", json!("second"))], HOUR);
    second.id = first.id; // a collision
    kit.tower.create(&mut second).await.expect("create");
    assert_ne!(second.id, first.id, "a new id was drawn");
    assert_eq!(stored(&kit, first.id).expect("live")["owner"], "\"first\"");
    assert_eq!(
        stored(&kit, second.id).expect("live")["owner"],
        "\"second\""
    );
}

/// Two requests load the same session, then each saves a change to a
/// different key: both changes are kept, and a key one of them removed
/// stays removed. Comparing each record with the stored scope instead
/// would have the second save undo the first.
pub async fn concurrent_requests_keep_each_others_changes<
    S: SessionStore + Send + Sync + 'static,
>(
    kit: Kit<S>,
) {
    let r = created(&kit, &[("shared", json!(0)), ("gone", json!(1))]).await;
    let loaded = Arc::new(Barrier::new(2));
    let first_saved = Arc::new(Barrier::new(2));
    let request = |change: fn(&mut Record), saves_second: bool| {
        let (tower, id) = (kit.tower.clone(), r.id);
        let (loaded, first_saved) = (loaded.clone(), first_saved.clone());
        tokio::spawn(async move {
            let mut rec = tower.load(&id).await.expect("load").expect("live");
            loaded.wait().await;
            if saves_second {
                first_saved.wait().await;
            }
            change(&mut rec);
            tower.save(&rec).await.expect("save");
            if !saves_second {
                first_saved.wait().await;
            }
        })
    };
    let a = request(
        |rec| drop(rec.data.insert("x".into(), json!("from a"))),
        false,
    );
    let b = request(
        |rec| {
            rec.data.remove("gone");
            rec.data.insert("y".into(), json!("from b"));
        },
        true,
    );
    a.await.expect("request a");
    b.await.expect("request b");
    let expected: HashMap<String, String> =
        [("shared", "0"), ("x", "\"from a\""), ("y", "\"from b\"")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    assert_eq!(stored(&kit, r.id).expect("live"), expected);
}

/// A save with no load on its task (here: outside any task) compares the
/// record with the stored scope: what the record lacks is removed.
pub async fn a_save_without_a_load_matches_the_stored_scope<
    S: SessionStore + Send + Sync + 'static,
>(
    kit: Kit<S>,
) {
    let r = created(&kit, &[("a", json!(1)), ("b", json!(2))]).await;
    let mut rec = r.clone();
    rec.data.remove("a");
    rec.data.insert("c".into(), json!(3));
    kit.tower.save(&rec).await.expect("save");
    let got = stored(&kit, r.id).expect("live");
    assert_eq!(got.len(), 2);
    assert_eq!((got["b"].as_str(), got["c"].as_str()), ("2", "3"));
}

pub async fn a_save_never_brings_a_session_back<S: SessionStore + Send + Sync + 'static>(
    kit: Kit<S>,
) {
    // Loaded by a request, destroyed by another, then saved by the first.
    let r = created(&kit, &[("a", json!(1))]).await;
    let (tower, id) = (kit.tower.clone(), r.id);
    let store_destroys = {
        let tower = kit.tower.clone();
        move || tower.store().destroy(&id.to_string()).expect("destroy")
    };
    tokio::spawn(async move {
        let mut rec = tower.load(&id).await.expect("load").expect("live");
        assert!(store_destroys());
        rec.data.insert("late".into(), json!(true));
        tower.save(&rec).await.expect("a late save is no error");
    })
    .await
    .expect("the request");
    assert!(kit.tower.load(&r.id).await.expect("load").is_none());
    assert!(stored(&kit, r.id).is_none(), "nothing was written");

    // A save of an id that was never created (no load, no base) creates nothing.
    let never = record(&[("a", json!(1))], HOUR);
    kit.tower.save(&never).await.expect("save");
    assert!(stored(&kit, never.id).is_none());
}

pub async fn an_expired_session_loads_as_none_before_any_reaper<S>(kit: Kit<S>)
where
    S: SessionStore + Reap + Send + Sync + 'static,
{
    let r = created(&kit, &[("a", json!(1))]).await;
    kit.advance(Duration::from_secs(30 * 60));
    let loaded = kit
        .tower
        .load(&r.id)
        .await
        .expect("load")
        .expect("live at half time");
    // The expiry date it reports is the store's deadline, half an hour on.
    let left = loaded.expiry_date - OffsetDateTime::now_utc();
    assert!(
        left <= time::Duration::minutes(30) && left > time::Duration::minutes(29),
        "{left}"
    );
    kit.advance(Duration::from_secs(30 * 60));
    assert!(kit.tower.load(&r.id).await.expect("load").is_none());
    kit.tower.delete_expired().await.expect("delete_expired");
    assert!(kit.tower.load(&r.id).await.expect("load").is_none());
}

pub async fn an_expiry_date_in_the_past_ends_the_session_at_once<
    S: SessionStore + Send + Sync + 'static,
>(
    kit: Kit<S>,
) {
    let mut r = record(&[("a", json!(1))], -HOUR);
    kit.tower.create(&mut r).await.expect("create");
    // The store's shortest idle timeout: gone once its clock moves 1 ms.
    kit.advance(Duration::from_millis(1));
    assert!(kit.tower.load(&r.id).await.expect("load").is_none());
}

pub async fn the_latest_expiry_date_is_kept_far_away<S: SessionStore + Send + Sync + 'static>(
    kit: Kit<S>,
) {
    let mut r = record(&[("a", json!(1))], HOUR);
    r.expiry_date = time::PrimitiveDateTime::MAX.assume_utc();
    kit.tower.create(&mut r).await.expect("create");
    kit.advance(Duration::from_secs(100 * 365 * 24 * 3600));
    let loaded = kit
        .tower
        .load(&r.id)
        .await
        .expect("load")
        .expect("live after a century");
    assert!(loaded.expiry_date > OffsetDateTime::now_utc() + time::Duration::days(365 * 1000));
    kit.tower.save(&loaded).await.expect("save");
}

pub async fn delete_destroys_the_session<S: SessionStore + Send + Sync + 'static>(kit: Kit<S>) {
    let events = kit.store().subscribe();
    let r = created(&kit, &[("a", json!(1))]).await;
    kit.tower.delete(&r.id).await.expect("delete");
    assert!(stored(&kit, r.id).is_none());
    kit.tower
        .delete(&r.id)
        .await
        .expect("deleting it again is no error");
    let sid = r.id.to_string();
    let got = events_until(
        &events,
        |e| matches!(e, Event::Destroyed { sid: id } if *id == sid),
    );
    assert!(
        got.iter()
            .any(|e| matches!(e, Event::Destroyed { sid: id } if *id == sid)),
        "{got:?}"
    );
}

pub async fn bad_input_is_an_encode_error_naming_it_and_writes_nothing<
    S: SessionStore + Send + Sync + 'static,
>(
    kit: Kit<S>,
) {
    let r = created(&kit, &[("a", json!(1))]).await;
    let before = stored(&kit, r.id);
    let big = "x".repeat(2 << 20);
    let long_key = "k".repeat(sessionstore::MAX_KEY_LEN + 1);
    for (key, value) in [
        ("", json!(1)),
        ("bell\u{7}", json!(1)),
        (long_key.as_str(), json!(1)),
        ("big", json!(big)),
    ] {
        let mut rec = r.clone();
        rec.data.insert(key.to_owned(), value.clone());
        rec.data.insert("a".into(), json!(2));
        let err = kit.tower.save(&rec).await.expect_err("refused");
        assert!(matches!(err, TowerError::Encode(_)), "{err:?}");
        assert_eq!(stored(&kit, r.id), before, "nothing written");

        let mut fresh = record(&[(key, value)], HOUR);
        let err = kit.tower.create(&mut fresh).await.expect_err("refused");
        assert!(
            matches!(&err, TowerError::Encode(m) if m.contains("key") || m.contains("value")),
            "{err:?}"
        );
        assert!(
            stored(&kit, fresh.id).is_none(),
            "no session is left behind"
        );
    }
}

pub async fn stored_bytes_that_are_not_json_text_are_a_decode_error<
    S: SessionStore + Send + Sync + 'static,
>(
    kit: Kit<S>,
) {
    let r = created(&kit, &[("a", json!(1))]).await;
    let mut scope = kit
        .store()
        .get(&r.id.to_string(), None)
        .expect("get")
        .expect("live");
    scope
        .set("written-by-another-program", "{not json")
        .expect("set");
    kit.store().save(&mut scope).expect("save");
    let err = kit.tower.load(&r.id).await.expect_err("not JSON");
    assert!(
        matches!(&err, TowerError::Decode(m) if m.contains("written-by-another-program")),
        "{err:?}"
    );
}

pub async fn update_is_exact_under_concurrency_and_none_when_not_live<
    S: SessionStore + Send + Sync + 'static,
>(
    kit: Kit<S>,
) {
    let r = created(&kit, &[("n", json!(0))]).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (tower, id) = (kit.tower.clone(), r.id);
            tokio::spawn(async move {
                for _ in 0..20 {
                    let n = tower
                        .update(id, "n", |n: Option<u64>| n.unwrap_or(0) + 1)
                        .await;
                    assert!(n.expect("update").is_some());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(stored(&kit, r.id).expect("live")["n"], "160");
    let loaded = kit.tower.load(&r.id).await.expect("load").expect("live");
    assert_eq!(loaded.data["n"], json!(160));
    let gone = kit
        .tower
        .update(Id::default(), "n", |n: Option<u64>| n.unwrap_or(0))
        .await;
    assert_eq!(gone.expect("update"), None);
}

macro_rules! mapping_suite {
    ($kit:path) => {
        mapping_suite!(@tests $kit;
            ids_map_one_to_one,
            create_never_overwrites_a_live_session,
            concurrent_requests_keep_each_others_changes,
            a_save_without_a_load_matches_the_stored_scope,
            a_save_never_brings_a_session_back,
            an_expired_session_loads_as_none_before_any_reaper,
            an_expiry_date_in_the_past_ends_the_session_at_once,
            the_latest_expiry_date_is_kept_far_away,
            delete_destroys_the_session,
            bad_input_is_an_encode_error_naming_it_and_writes_nothing,
            stored_bytes_that_are_not_json_text_are_a_decode_error,
            update_is_exact_under_concurrency_and_none_when_not_live,
        );
    };
    (@tests $kit:path; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($kit()).await;
            }
        )*
    };
}

over_every_store!(mapping_suite);

/// The embedded store's reaper deletes what tower-sessions let expire, as
/// expired: `delete_expired` is one reaper pass, with its `Expired` event.
#[tokio::test]
async fn delete_expired_reaps_with_an_expired_event() {
    for kit in [common::sled(), common::redb()] {
        let events = kit.store().subscribe();
        let r = created(&kit, &[("a", json!(1))]).await;
        let live = created(&kit, &[("b", json!(1))]).await;
        kit.tower
            .save(&Record {
                expiry_date: OffsetDateTime::now_utc() + time::Duration::days(1),
                ..live.clone()
            })
            .await
            .expect("save");
        kit.advance(Duration::from_secs(3600));
        kit.tower.delete_expired().await.expect("delete_expired");
        assert_eq!(
            kit.store().session_ids().count(),
            1,
            "the one with a day left stays"
        );
        let sid = r.id.to_string();
        let got = events_until(
            &events,
            |e| matches!(e, Event::Expired { sid: id } if *id == sid),
        );
        assert!(
            got.iter()
                .any(|e| matches!(e, Event::Expired { sid: id } if *id == sid)),
            "{got:?}"
        );
    }
}

/// The events `rx` receives until one satisfies `last` (each waited for at
/// most a minute: a bound, not a timing; events arrive just after the call
/// that sent them returns).
fn events_until(
    rx: &crossbeam_channel::Receiver<Event>,
    last: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut got = Vec::new();
    while let Ok(e) = rx.recv_timeout(Duration::from_secs(60)) {
        let done = last(&e);
        got.push(e);
        if done {
            break;
        }
    }
    got
}

/// A store whose engine fails every write: reads go to a real store.
struct Failing(sessionstore::Store);

fn engine_failed(what: &str) -> sessionstore::Error {
    sessionstore::Error::Storage {
        context: format!("{what} (the test's failing engine)"),
        source: "the disk is on fire".into(),
    }
}

impl SessionStore for Failing {
    fn create_new_session(&self, _: &str) -> sessionstore::Result<sessionstore::Session> {
        Err(engine_failed("creating a session"))
    }
    fn get(
        &self,
        sid: &str,
        component: Option<&str>,
    ) -> sessionstore::Result<Option<sessionstore::Session>> {
        self.0.get(sid, component)
    }
    fn save(&self, _: &mut sessionstore::Session) -> sessionstore::Result<()> {
        Err(engine_failed("saving"))
    }
    fn save_if_unchanged(&self, _: &mut sessionstore::Session) -> sessionstore::Result<()> {
        Err(engine_failed("saving"))
    }
    fn update_with(
        &self,
        _: &str,
        _: Option<&str>,
        _: &mut dyn FnMut(&mut sessionstore::Session) -> sessionstore::Result<()>,
    ) -> sessionstore::Result<bool> {
        Err(engine_failed("updating"))
    }
    fn destroy(&self, _: &str) -> sessionstore::Result<bool> {
        Err(engine_failed("destroying"))
    }
    fn create(&self) -> sessionstore::Result<sessionstore::Session> {
        Err(engine_failed("creating a session"))
    }
    fn touch(&self, _: &str) -> sessionstore::Result<bool> {
        Err(engine_failed("touching"))
    }
    fn regenerate(&self, _: &str) -> sessionstore::Result<String> {
        Err(engine_failed("regenerating"))
    }
    fn set_idle_timeout(&self, _: &str, _: Option<Duration>) -> sessionstore::Result<()> {
        Err(engine_failed("setting the idle timeout"))
    }
    fn info(&self, sid: &str) -> sessionstore::Result<Option<sessionstore::SessionInfo>> {
        self.0.info(sid)
    }
    fn subscribe(&self) -> crossbeam_channel::Receiver<Event> {
        SessionStore::subscribe(&self.0)
    }
    fn set_principal(&self, _: &str, _: Option<&str>) -> sessionstore::Result<()> {
        Err(engine_failed("setting the principal"))
    }
    fn principal(&self, sid: &str) -> sessionstore::Result<Option<String>> {
        self.0.principal(sid)
    }
    fn sessions_of(&self, name: &str) -> sessionstore::Result<Vec<String>> {
        self.0.sessions_of(name)
    }
    fn destroy_all_of(&self, _: &str) -> sessionstore::Result<usize> {
        Err(engine_failed("destroying a principal's sessions"))
    }
}

/// A store that fails a write gives `Backend`, with the store's message.
#[tokio::test]
async fn a_storage_error_is_a_backend_error_with_our_message() {
    let tower = TowerStore::new(Failing(sessionstore::Store::temporary().expect("store")));
    let mut r = record(&[("a", json!(1))], HOUR);
    let err = tower.create(&mut r).await.expect_err("the engine fails");
    assert!(
        matches!(&err, TowerError::Backend(m) if m.contains("the disk is on fire")),
        "{err:?}"
    );
}

/// Outside a tokio runtime every call is an error, never a panic.
#[test]
fn outside_a_tokio_runtime_a_call_is_a_backend_error() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let tower = TowerStore::new(sessionstore::Store::temporary().expect("store"));
    let id = Id::default();
    let mut load = std::pin::pin!(tower.load(&id));
    let mut cx = Context::from_waker(Waker::noop());
    match load.as_mut().poll(&mut cx) {
        Poll::Ready(Err(TowerError::Backend(m))) => assert!(m.contains("tokio runtime"), "{m}"),
        other => panic!("expected a Backend error at once, got {other:?}"),
    }
}

//! The behaviours tower-sessions' own route tests check (its repository's
//! `tests/common`), as our own tests through `SessionManagerLayer` over a
//! `TowerStore` on each store: no cookie until something is written, bogus
//! and malformed cookies replaced, insert/get/remove, `cycle_id`, `flush`,
//! and expiry set and changed. Each also looks into the store behind.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use common::Kit;
use sessionstore::SessionStore;
use tower::ServiceExt;
use tower_sessions::cookie::{Cookie, time};
use tower_sessions::session::Id;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// The handlers the suite calls, one behaviour each.
fn routes() -> Router {
    Router::new()
        .route("/", get(|_: Session| async { "untouched" }))
        .route(
            "/insert",
            get(|s: Session| async move { s.insert("foo", 42).await.map_err(err) }),
        )
        .route(
            "/get",
            get(|s: Session| async move {
                Ok::<_, (StatusCode, String)>(format!(
                    "{:?}",
                    s.get::<u32>("foo").await.map_err(err)?
                ))
            }),
        )
        .route(
            "/get_value",
            get(|s: Session| async move {
                Ok::<_, (StatusCode, String)>(format!(
                    "{:?}",
                    s.get_value("foo").await.map_err(err)?
                ))
            }),
        )
        .route(
            "/remove",
            get(|s: Session| async move { s.remove::<u32>("foo").await.map(drop).map_err(err) }),
        )
        .route(
            "/insert_bar",
            get(|s: Session| async move { s.insert("bar", "b").await.map_err(err) }),
        )
        .route(
            "/cycle_id",
            get(|s: Session| async move { s.cycle_id().await.map_err(err) }),
        )
        .route(
            "/flush",
            get(|s: Session| async move { s.flush().await.map_err(err) }),
        )
        .route(
            "/expire_in_a_day",
            get(|s: Session| async move {
                let at = time::OffsetDateTime::now_utc() + time::Duration::days(1);
                s.set_expiry(Some(Expiry::AtDateTime(at)));
            }),
        )
        .route(
            "/on_session_end",
            get(|s: Session| async move { s.set_expiry(Some(Expiry::OnSessionEnd)) }),
        )
}

fn err(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn app<S: SessionStore + Send + Sync + 'static>(kit: &Kit<S>, expiry: Option<Expiry>) -> Router {
    let mut layer = SessionManagerLayer::new(kit.tower.clone()).with_secure(false);
    if let Some(expiry) = expiry {
        layer = layer.with_expiry(expiry);
    }
    routes().layer(layer)
}

const HOUR: Option<Expiry> = Some(Expiry::OnInactivity(time::Duration::hours(1)));

/// A response: status, the session cookie it set (if any), body.
struct Reply {
    status: StatusCode,
    cookie: Option<Cookie<'static>>,
    body: String,
}

impl Reply {
    fn cookie(&self) -> &Cookie<'static> {
        self.cookie
            .as_ref()
            .expect("the response sets the session cookie")
    }
}

/// Sends one request on a task of its own, as a server does, with `cookie`
/// as the `id` cookie's value.
async fn call(app: &Router, path: &str, cookie: Option<&str>) -> Reply {
    let mut req = Request::builder().uri(path);
    if let Some(value) = cookie {
        req = req.header(header::COOKIE, format!("id={value}"));
    }
    let req = req.body(Body::empty()).expect("a request");
    let res = tokio::spawn(app.clone().oneshot(req))
        .await
        .expect("the request task")
        .expect("infallible");
    let status = res.status();
    let cookies: Vec<Cookie<'static>> = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| Cookie::parse_encoded(v.to_str().expect("ASCII").to_owned()).expect("a cookie"))
        .collect();
    assert!(
        cookies.len() <= 1,
        "one session cookie at most: {cookies:?}"
    );
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .expect("the body");
    Reply {
        status,
        cookie: cookies.into_iter().next(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn is_live<S: SessionStore + Send + Sync + 'static>(kit: &Kit<S>, sid: &str) -> bool {
    kit.store().info(sid).expect("info").is_some()
}

pub async fn no_cookie_until_something_is_written<S: SessionStore + Send + Sync + 'static>(
    kit: Kit<S>,
) {
    let app = app(&kit, HOUR);
    let r = call(&app, "/", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.cookie.is_none(),
        "a handler that touches nothing sets no cookie"
    );
    let r = call(&app, "/get_value", None).await;
    assert_eq!(r.body, "None");
    assert!(r.cookie.is_none(), "a read sets no cookie");

    let r = call(&app, "/insert", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let sid = r.cookie().value().to_owned();
    assert!(sid.parse::<Id>().is_ok(), "a tower-sessions id: {sid}");
    assert!(
        is_live(&kit, &sid),
        "the write created the session under the cookie's id"
    );
}

pub async fn bogus_cookie_is_replaced_by_a_fresh_id<S: SessionStore + Send + Sync + 'static>(
    kit: Kit<S>,
) {
    let app = app(&kit, HOUR);
    let bogus = "AAAAAAAAAAAAAAAAAAAAAA"; // well formed, never created
    let r = call(&app, "/get_value", Some(bogus)).await;
    assert_eq!(r.body, "None");
    let r = call(&app, "/insert", Some(bogus)).await;
    assert_eq!(r.status, StatusCode::OK);
    let fresh = r.cookie().value().to_owned();
    assert_ne!(fresh, bogus);
    assert!(is_live(&kit, &fresh));
    assert!(!is_live(&kit, bogus), "a bogus id never becomes a session");
}

pub async fn malformed_cookies_are_replaced_by_a_fresh_id<
    S: SessionStore + Send + Sync + 'static,
>(
    kit: Kit<S>,
) {
    let app = app(&kit, HOUR);
    let long = "A".repeat(300);
    for bad in [
        "malformed",
        "",
        "AAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAA",
        "!!!!!!!!!!!!!!!!!!!!!!",
        &long,
    ] {
        let r = call(&app, "/insert", Some(bad)).await;
        assert_eq!(r.status, StatusCode::OK, "cookie {bad:?}: {}", r.body);
        let fresh = r.cookie().value().to_owned();
        assert_ne!(fresh, bad);
        assert!(fresh.parse::<Id>().is_ok());
        assert!(is_live(&kit, &fresh));
    }
}

pub async fn insert_get_and_remove<S: SessionStore + Send + Sync + 'static>(kit: Kit<S>) {
    let app = app(&kit, HOUR);
    let r = call(&app, "/insert", None).await;
    let sid = r.cookie().value().to_owned();
    assert_eq!(call(&app, "/get", Some(&sid)).await.body, "Some(42)");
    assert_eq!(
        call(&app, "/get_value", Some(&sid)).await.body,
        "Some(Number(42))"
    );

    // In the store: the global scope's key `foo`, holding the JSON text.
    let scope = kit.store().get(&sid, None).expect("get").expect("live");
    assert_eq!(
        scope.get::<String>("foo").expect("a String").as_deref(),
        Some("42")
    );

    let r = call(&app, "/remove", Some(&sid)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(call(&app, "/get_value", Some(&sid)).await.body, "None");
    let scope = kit
        .store()
        .get(&sid, None)
        .expect("get")
        .expect("still live");
    assert!(
        scope.is_empty(),
        "the removal was saved: {:?}",
        scope.keys().collect::<Vec<_>>()
    );
}

pub async fn cycle_id_keeps_the_data_under_a_new_id<S: SessionStore + Send + Sync + 'static>(
    kit: Kit<S>,
) {
    let app = app(&kit, HOUR);
    let first = call(&app, "/insert", None)
        .await
        .cookie()
        .value()
        .to_owned();
    let r = call(&app, "/cycle_id", Some(&first)).await;
    assert_eq!(r.status, StatusCode::OK);
    let second = r.cookie().value().to_owned();
    assert_ne!(first, second);
    assert_eq!(call(&app, "/get", Some(&second)).await.body, "Some(42)");
    assert!(!is_live(&kit, &first), "the old id is gone from the store");
    assert_eq!(call(&app, "/get_value", Some(&first)).await.body, "None");
}

pub async fn flush_clears_the_cookie_and_the_session<S: SessionStore + Send + Sync + 'static>(
    kit: Kit<S>,
) {
    let app = app(&kit, HOUR);
    let sid = call(&app, "/insert", None)
        .await
        .cookie()
        .value()
        .to_owned();
    let r = call(&app, "/flush", Some(&sid)).await;
    assert_eq!(r.status, StatusCode::OK);
    let c = r.cookie();
    assert_eq!(c.value(), "");
    assert_eq!(c.max_age(), Some(time::Duration::ZERO));
    assert_eq!(c.path(), Some("/"));
    assert!(!is_live(&kit, &sid), "flush destroyed the session");
    assert_eq!(call(&app, "/get_value", Some(&sid)).await.body, "None");
}

/// The idle timeout the store holds for `sid`: where its deadline is.
fn idle_of<S: SessionStore + Send + Sync + 'static>(kit: &Kit<S>, sid: &str) -> Duration {
    let info = kit.store().info(sid).expect("info").expect("live");
    assert_eq!(
        info.deadline,
        Some(info.last_access + info.idle_timeout.expect("an idle timeout")),
        "the deadline is the idle deadline"
    );
    info.idle_timeout.expect("an idle timeout")
}

/// `a` is `b`, less the time the request took (the expiry date is taken
/// before the store's deadline is set); never more.
fn about(a: Duration, b: Duration) -> bool {
    a <= b && b - a < Duration::from_secs(60)
}

pub async fn expiry_is_set_and_changed<S: SessionStore + Send + Sync + 'static>(kit: Kit<S>) {
    let app = app(&kit, HOUR);
    let r = call(&app, "/insert", None).await;
    assert_eq!(r.cookie().max_age(), Some(time::Duration::hours(1)));
    let sid = r.cookie().value().to_owned();
    let idle = idle_of(&kit, &sid);
    assert!(about(idle, Duration::from_secs(3600)), "{idle:?}");

    let r = call(&app, "/expire_in_a_day", Some(&sid)).await;
    let max_age = r.cookie().max_age().expect("a max-age");
    assert!(max_age <= time::Duration::days(1) && max_age > time::Duration::hours(23));
    let idle = idle_of(&kit, &sid);
    assert!(about(idle, Duration::from_secs(24 * 3600)), "{idle:?}");

    // Past the hour the session would have had, it is still live …
    kit.advance(Duration::from_secs(2 * 3600));
    assert_eq!(call(&app, "/get", Some(&sid)).await.body, "Some(42)");
    // … and past the day it is gone for tower-sessions, before any reaper.
    kit.advance(Duration::from_secs(23 * 3600));
    assert_eq!(call(&app, "/get_value", Some(&sid)).await.body, "None");
    assert!(!is_live(&kit, &sid));
}

pub async fn expiry_type_changes_from_session_end_and_back<
    S: SessionStore + Send + Sync + 'static,
>(
    kit: Kit<S>,
) {
    let app = app(&kit, None); // tower-sessions' default: OnSessionEnd
    let r = call(&app, "/insert", None).await;
    assert_eq!(r.cookie().max_age(), None, "a session cookie");
    let sid = r.cookie().value().to_owned();
    // tower-sessions gives a session-end record two weeks in its store.
    let two_weeks = Duration::from_secs(14 * 24 * 3600);
    assert!(about(idle_of(&kit, &sid), two_weeks));

    let r = call(&app, "/expire_in_a_day", Some(&sid)).await;
    assert!(r.cookie().max_age().is_some());
    assert!(about(idle_of(&kit, &sid), Duration::from_secs(24 * 3600)));

    let app = self::app(&kit, HOUR);
    let r = call(&app, "/insert", None).await;
    let sid = r.cookie().value().to_owned();
    assert!(about(idle_of(&kit, &sid), Duration::from_secs(3600)));
    let r = call(&app, "/on_session_end", Some(&sid)).await;
    assert_eq!(r.cookie().max_age(), None);
    assert!(about(idle_of(&kit, &sid), two_weeks));
}

pub async fn an_expired_session_is_a_new_visitor<S: SessionStore + Send + Sync + 'static>(
    kit: Kit<S>,
) {
    let app = app(&kit, HOUR);
    let old = call(&app, "/insert", None)
        .await
        .cookie()
        .value()
        .to_owned();
    kit.advance(Duration::from_secs(3600) + Duration::from_millis(1));
    assert_eq!(call(&app, "/get_value", Some(&old)).await.body, "None");
    let r = call(&app, "/insert_bar", Some(&old)).await;
    let new = r.cookie().value().to_owned();
    assert_ne!(new, old, "a new session, not the expired one brought back");
    let scope = kit.store().get(&new, None).expect("get").expect("live");
    assert_eq!(
        scope.keys().collect::<Vec<_>>(),
        ["bar"],
        "none of the old data"
    );
}

pub async fn requests_that_change_different_keys_keep_both<
    S: SessionStore + Send + Sync + 'static,
>(
    kit: Kit<S>,
) {
    // Through the middleware, one after the other, with the same cookie.
    let app = app(&kit, HOUR);
    let sid = call(&app, "/insert", None)
        .await
        .cookie()
        .value()
        .to_owned();
    call(&app, "/insert_bar", Some(&sid)).await;
    let scope = kit.store().get(&sid, None).expect("get").expect("live");
    let mut keys: Vec<&str> = scope.keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["bar", "foo"]);
}

macro_rules! route_suite {
    ($kit:path) => {

        route_suite!(@tests $kit;
            no_cookie_until_something_is_written,
            bogus_cookie_is_replaced_by_a_fresh_id,
            malformed_cookies_are_replaced_by_a_fresh_id,
            insert_get_and_remove,
            cycle_id_keeps_the_data_under_a_new_id,
            flush_clears_the_cookie_and_the_session,
            expiry_is_set_and_changed,
            expiry_type_changes_from_session_end_and_back,
            an_expired_session_is_a_new_visitor,
            requests_that_change_different_keys_keep_both,
        );
    };
    (@tests $kit:path; $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                super::$name($kit()).await;
            }
        )*
    };
}

over_every_store!(route_suite);

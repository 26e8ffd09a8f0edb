//! The example web app (`examples/webapp.rs`), served on an ephemeral port
//! and driven by a real HTTP client. The store runs on a manual clock, so
//! expiry is tested without sleeping.

#[allow(dead_code)]
#[path = "../../examples/webapp.rs"]
mod app;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sessionstore::{Clock, Config, ManualClock, Store};
use tiny_http::Server;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const IDLE: Duration = Duration::from_secs(600);

/// The app on a thread, serving on a free port, and a client.
pub(crate) struct Web {
    base: String,
    agent: ureq::Agent,
    /// The server and its thread, when the app runs in this process.
    local: Option<(Arc<Server>, JoinHandle<()>)>,
}

impl Web {
    /// Serves `app` on a free port of 127.0.0.1.
    pub(crate) fn start(app: app::App) -> Result<Web, Box<dyn std::error::Error>> {
        let (server, addr) = app::bind(0).map_err(|e| e.to_string())?;
        let server = Arc::new(server);
        let serving = server.clone();
        let thread = std::thread::spawn(move || app.serve(&serving));
        let mut web = Web::remote(format!("http://{addr}"));
        web.local = Some((server, thread));
        Ok(web)
    }

    /// A client of an app served elsewhere (another process) at `base`.
    pub(crate) fn remote(base: String) -> Web {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Web {
            base,
            agent,
            local: None,
        }
    }

    pub(crate) fn get(&self, path: &str, sid: Option<&str>) -> Result<Reply, ureq::Error> {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(sid) = sid {
            req = req.header("Cookie", format!("theme=dark; sid={sid}"));
        }
        Reply::read(req.call()?)
    }

    pub(crate) fn post(
        &self,
        path: &str,
        sid: Option<&str>,
        form: &[(&str, &str)],
    ) -> Result<Reply, ureq::Error> {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(sid) = sid {
            req = req.header("Cookie", format!("sid={sid}"));
        }
        Reply::read(req.send_form(form.iter().copied())?)
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        if let Some((server, thread)) = self.local.take() {
            server.unblock();
            let _ = thread.join();
        }
    }
}

/// The app on an embedded store, and that store.
struct Harness {
    store: Store,
    clock: ManualClock,
    web: Web,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn start() -> Result<Harness, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let store = Config::new(dir.path().join("sessions"))
            .clock(Arc::new(clock.clone()))
            .idle_timeout(IDLE)
            .reap_interval(None)
            .open()?;
        let web = Web::start(app::App::new(store.clone()))?;
        Ok(Harness {
            store,
            clock,
            web,
            _dir: dir,
        })
    }

    fn get(&self, path: &str, sid: Option<&str>) -> Result<Reply, ureq::Error> {
        self.web.get(path, sid)
    }

    fn post(
        &self,
        path: &str,
        sid: Option<&str>,
        form: &[(&str, &str)],
    ) -> Result<Reply, ureq::Error> {
        self.web.post(path, sid, form)
    }

    /// Whether the store has `sid` as a live session.
    fn live(&self, sid: &str) -> bool {
        matches!(self.store.get(sid, None), Ok(Some(_)))
    }
}

pub(crate) struct Reply {
    status: u16,
    set_cookie: Option<String>,
    body: String,
}

impl Reply {
    fn read(mut resp: ureq::http::Response<ureq::Body>) -> Result<Reply, ureq::Error> {
        let set_cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Reply {
            status: resp.status().as_u16(),
            set_cookie,
            body: resp.body_mut().read_to_string()?,
        })
    }

    /// The session id the reply's cookie sets; panics if it sets none.
    fn new_sid(&self) -> String {
        let cookie = self.set_cookie.as_deref().expect("a Set-Cookie header");
        let value = cookie.split(';').next().unwrap_or("");
        value
            .strip_prefix("sid=")
            .expect("the sid cookie")
            .to_owned()
    }

    /// The text of the page element with this id.
    fn field(&self, id: &str) -> String {
        let open = format!("id=\"{id}\">");
        let start = self.body.find(&open).expect(id) + open.len();
        let len = self.body[start..].find('<').expect("a closing tag");
        self.body[start..start + len].to_owned()
    }

    fn counters(&self) -> (u64, u64) {
        (
            self.field("requests").parse().expect("a number"),
            self.field("views").parse().expect("a number"),
        )
    }
}

#[test]
fn a_new_visitor_gets_a_session_and_a_strict_cookie() -> TestResult {
    let h = Harness::start()?;
    let first = h.get("/", None)?;
    assert_eq!(first.status, 200);
    let cookie = first.set_cookie.clone().expect("Set-Cookie");
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).skip(1).collect();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(attributes.contains(&attr), "{attr} missing from {cookie}");
    }
    let sid = first.new_sid();
    assert!(h.live(&sid));
    assert_eq!(first.counters(), (1, 1));
    assert!(first.body.contains("Hello, visitor."));
    Ok(())
}

#[test]
fn the_counters_persist_across_requests() -> TestResult {
    let h = Harness::start()?;
    let sid = h.get("/", None)?.new_sid();
    let second = h.get("/", Some(&sid))?;
    assert_eq!(second.set_cookie, None, "a known session keeps its cookie");
    let third = h.get("/", Some(&sid))?;
    assert_eq!(third.counters(), (3, 3));
    // The page view counter lives in the component's scope, the request counter in the global one.
    let home = h.store.get(&sid, Some(app::HOME))?.expect("live");
    assert_eq!(home.get::<u64>("views")?, Some(3));
    let global = h.store.get(&sid, None)?.expect("live");
    assert_eq!(global.get::<u64>("requests")?, Some(3));
    assert_eq!(global.get::<u64>("views")?, None);
    Ok(())
}

#[test]
fn concurrent_requests_with_one_cookie_count_exactly() -> TestResult {
    // The app serves on several threads and counts through `update_with`:
    // requests of one visitor that race never lose a count.
    const CLIENTS: u64 = 8;
    const EACH: u64 = 25;
    let h = Harness::start()?;
    let sid = h.get("/", None)?.new_sid();
    std::thread::scope(|scope| -> TestResult {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                scope.spawn(|| -> Result<(), String> {
                    for _ in 0..EACH {
                        let reply = h.get("/", Some(&sid)).map_err(|e| e.to_string())?;
                        if reply.status != 200 {
                            return Err(format!("status {}", reply.status));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for c in clients {
            c.join().expect("no panic")?;
        }
        Ok(())
    })?;
    let last = h.get("/", Some(&sid))?;
    let total = 1 + CLIENTS * EACH + 1;
    assert_eq!(last.counters(), (total, total));
    Ok(())
}

#[test]
fn login_changes_the_cookie_and_keeps_the_data() -> TestResult {
    let h = Harness::start()?;
    let old = h.get("/", None)?.new_sid();
    h.get("/", Some(&old))?;
    let login = h.post("/login", Some(&old), &[("user", "ada lovelace")])?;
    assert_eq!(login.status, 303);
    let new = login.new_sid();
    assert_ne!(new, old);
    assert!(!h.live(&old), "the old id must die at login");
    assert!(h.live(&new));

    let after = h.get("/", Some(&new))?;
    assert_eq!(after.set_cookie, None);
    assert_eq!(after.field("user"), "ada lovelace");
    // Two views and a login before, this view now.
    assert_eq!(after.counters(), (4, 3));

    // The old cookie names nothing any more: a fresh, empty session.
    let stale = h.get("/", Some(&old))?;
    assert_ne!(stale.new_sid(), old);
    assert_eq!(stale.counters(), (1, 1));
    Ok(())
}

#[test]
fn a_user_name_is_shown_escaped_and_a_bad_one_refused() -> TestResult {
    let h = Harness::start()?;
    let sid = h
        .post("/login", None, &[("user", "<script>x</script>")])?
        .new_sid();
    let page = h.get("/", Some(&sid))?;
    assert!(!page.body.contains("<script>"), "{}", page.body);
    assert_eq!(page.field("user"), "&lt;script&gt;x&lt;/script&gt;");

    let refused = h.post("/login", Some(&sid), &[("user", "  ")])?;
    assert_eq!(refused.status, 400);
    assert!(h.live(&sid), "a refused login rotates nothing");
    Ok(())
}

#[test]
fn logout_invalidates_the_session() -> TestResult {
    let h = Harness::start()?;
    let sid = h.get("/", None)?.new_sid();
    let out = h.post("/logout", Some(&sid), &[])?;
    assert_eq!(out.status, 303);
    let cleared = out.set_cookie.expect("the cookie is cleared");
    assert!(
        cleared.starts_with("sid=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert!(!h.live(&sid));

    let again = h.get("/", Some(&sid))?;
    assert_ne!(again.new_sid(), sid);
    assert_eq!(again.counters(), (1, 1));
    Ok(())
}

#[test]
fn log_out_of_all_devices_ends_every_session_of_the_user_and_no_other() -> TestResult {
    let h = Harness::start()?;
    // Two browsers (cookie jars) of ada, one of bob.
    let laptop = h.post("/login", None, &[("user", "ada")])?.new_sid();
    let phone = h.post("/login", None, &[("user", "ada")])?.new_sid();
    let bob = h.post("/login", None, &[("user", "bob")])?.new_sid();
    let page = h.get("/", Some(&phone))?;
    assert_eq!(page.field("user"), "ada");
    assert!(
        page.body.contains("action=\"/logout-all\""),
        "{}",
        page.body
    );
    let mut mine = vec![laptop.clone(), phone.clone()];
    mine.sort();
    assert_eq!(h.store.sessions_of("ada")?, mine);

    // The laptop presses the button.
    let events = h.store.subscribe();
    let out = h.post("/logout-all", Some(&laptop), &[])?;
    assert_eq!(out.status, 303);
    let cleared = out.set_cookie.expect("the cookie is cleared");
    assert!(cleared.starts_with("sid=;") && cleared.contains("Max-Age=0"));
    assert!(!h.live(&laptop) && !h.live(&phone));
    assert_eq!(
        crate::common::events_before_now(&h.store, &events).len(),
        2,
        "one Destroyed per session"
    );

    // The phone is logged out at its next request: a fresh visitor session.
    let after = h.get("/", Some(&phone))?;
    assert_ne!(after.new_sid(), phone);
    assert!(after.body.contains("Hello, visitor."), "{}", after.body);
    // Bob is untouched.
    assert_eq!(h.get("/", Some(&bob))?.field("user"), "bob");
    assert!(h.store.sessions_of("ada")?.is_empty());
    Ok(())
}

#[test]
fn log_out_of_all_devices_without_a_login_ends_only_this_session() -> TestResult {
    let h = Harness::start()?;
    let visitor = h.get("/", None)?.new_sid();
    let other = h.get("/", None)?.new_sid();
    assert_eq!(h.post("/logout-all", Some(&visitor), &[])?.status, 303);
    assert!(!h.live(&visitor));
    assert!(h.live(&other));
    assert_eq!(h.post("/logout-all", Some("not an id"), &[])?.status, 303);
    assert_eq!(h.get("/logout-all", None)?.status, 405);
    Ok(())
}

#[test]
fn a_forged_cookie_gets_a_new_id() -> TestResult {
    let h = Harness::start()?;
    // Well formed but never issued, and not even well formed.
    for forged in ["AAAAAAAAAAAAAAAAAAAAAA", "..%2F..%2Fetc"] {
        let reply = h.get("/", Some(forged))?;
        let sid = reply.new_sid();
        assert_ne!(sid, forged);
        assert!(h.live(&sid));
        assert!(!h.live(forged), "the forged id is never adopted");
        assert_eq!(reply.counters(), (1, 1));
    }
    assert_eq!(h.store.stats()?.live_sessions, 2);
    Ok(())
}

#[test]
fn an_expired_cookie_gets_a_new_id() -> TestResult {
    let h = Harness::start()?;
    let sid = h.get("/", None)?.new_sid();
    h.clock.advance(IDLE + Duration::from_secs(1));
    let reply = h.get("/", Some(&sid))?;
    assert_ne!(reply.new_sid(), sid);
    assert_eq!(reply.counters(), (1, 1));
    Ok(())
}

#[test]
fn every_request_is_a_heartbeat() -> TestResult {
    let h = Harness::start()?;
    let start: SystemTime = h.clock.now();
    let sid = h.get("/", None)?.new_sid();
    // Two requests, each within the idle timeout of the one before, span more than it.
    for _ in 0..2 {
        h.clock.advance(IDLE * 2 / 3);
        let reply = h.get("/", Some(&sid))?;
        assert_eq!(reply.set_cookie, None, "the session is still the same");
    }
    let info = h.store.info(&sid)?.expect("live");
    assert!(info.last_access > start + IDLE);
    Ok(())
}

#[test]
fn other_paths_and_methods_are_refused_without_a_session() -> TestResult {
    let h = Harness::start()?;
    let missing = h.get("/nope", None)?;
    assert_eq!(missing.status, 404);
    let wrong = h.get("/login", None)?;
    assert_eq!(wrong.status, 405);
    assert_eq!(missing.set_cookie, None);
    assert_eq!(h.store.stats()?.live_sessions, 0);
    Ok(())
}

/// Scale-out: two app servers on two ports, each with its own `RedisStore`
/// (its own connections, as two processes would have) on one real
/// redis-server and one namespace, sharing one manual clock.
#[cfg(feature = "redis")]
mod on_redis {
    mod processes;

    use super::*;
    use sessionstore::{RedisConfig, RedisStore, SessionStore};

    fn store(clock: &ManualClock, namespace: &str) -> sessionstore::Result<RedisStore> {
        RedisConfig::new(crate::common::servers::standalone())
            .namespace(namespace)
            .clock(Arc::new(clock.clone()))
            .idle_timeout(IDLE)
            .open()
    }

    fn two_servers() -> Result<(Web, Web, RedisStore, ManualClock), Box<dyn std::error::Error>> {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let namespace = crate::common::fresh_namespace();
        let first = Web::start(app::App::new(store(&clock, &namespace)?))?;
        let second = Web::start(app::App::new(store(&clock, &namespace)?))?;
        assert_ne!(first.base, second.base, "two ports");
        Ok((first, second, store(&clock, &namespace)?, clock))
    }

    #[test]
    fn two_app_servers_over_one_redis_share_login_and_logout() -> TestResult {
        let (first, second, store, _clock) = two_servers()?;
        let visitor = first.get("/", None)?.new_sid();
        let login = first.post("/login", Some(&visitor), &[("user", "grace hopper")])?;
        assert_eq!(login.status, 303);
        let sid = login.new_sid();

        // The second server sees the user the first one logged in.
        let seen = second.get("/", Some(&sid))?;
        assert_eq!(seen.set_cookie, None, "the second server knows the session");
        assert_eq!(seen.field("user"), "grace hopper");
        // One view and the login on the first server, this view on the second.
        assert_eq!(seen.counters(), (3, 2));
        // The id the visitor had before the login is dead on both.
        assert_ne!(second.get("/", Some(&visitor))?.new_sid(), visitor);

        // Log out on the second: the first has no session any more.
        let out = second.post("/logout", Some(&sid), &[])?;
        assert_eq!(out.status, 303);
        assert!(
            store.get(&sid, None)?.is_none(),
            "logout destroyed it in Redis"
        );
        let after = first.get("/", Some(&sid))?;
        assert_ne!(
            after.new_sid(),
            sid,
            "the first server starts a new session"
        );
        assert_eq!(after.counters(), (1, 1));
        assert!(!after.body.contains("grace hopper"));
        Ok(())
    }

    #[test]
    fn log_out_of_all_devices_on_one_server_logs_out_the_other() -> TestResult {
        let (first, second, store, _clock) = two_servers()?;
        let a = first.post("/login", None, &[("user", "ada")])?.new_sid();
        let b = second.post("/login", None, &[("user", "ada")])?.new_sid();
        assert_eq!(second.get("/", Some(&b))?.field("user"), "ada");
        assert_eq!(first.post("/logout-all", Some(&a), &[])?.status, 303);
        assert!(store.get(&b, None)?.is_none());
        let after = second.get("/", Some(&b))?;
        assert_ne!(after.new_sid(), b);
        assert!(after.body.contains("Hello, visitor."));
        assert!(store.sessions_of("ada")?.is_empty());
        Ok(())
    }

    #[test]
    fn a_session_idle_on_one_server_expires_on_both() -> TestResult {
        let (first, second, _store, clock) = two_servers()?;
        let sid = first.post("/login", None, &[("user", "ada")])?.new_sid();
        clock.advance(IDLE * 2 / 3);
        // A request on the second server is the heartbeat for both.
        assert_eq!(second.get("/", Some(&sid))?.set_cookie, None);
        clock.advance(IDLE * 2 / 3);
        assert_eq!(first.get("/", Some(&sid))?.field("user"), "ada");
        clock.advance(IDLE + Duration::from_secs(1));
        assert_ne!(second.get("/", Some(&sid))?.new_sid(), sid);
        assert_ne!(first.get("/", Some(&sid))?.new_sid(), sid);
        Ok(())
    }
}

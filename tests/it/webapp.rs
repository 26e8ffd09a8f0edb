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

/// The app on a thread, the store it uses, and a client.
struct Harness {
    store: Store,
    clock: ManualClock,
    base: String,
    agent: ureq::Agent,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
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
        let (server, addr) = app::bind(0).map_err(|e| e.to_string())?;
        let server = Arc::new(server);
        let app = app::App::new(store.clone());
        let serving = server.clone();
        let thread = std::thread::spawn(move || app.serve(&serving));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Ok(Harness {
            store,
            clock,
            base: format!("http://{addr}"),
            agent,
            server,
            thread: Some(thread),
            _dir: dir,
        })
    }

    fn get(&self, path: &str, sid: Option<&str>) -> Result<Reply, ureq::Error> {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(sid) = sid {
            req = req.header("Cookie", format!("theme=dark; sid={sid}"));
        }
        Reply::read(req.call()?)
    }

    fn post(
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

    /// Whether the store has `sid` as a live session.
    fn live(&self, sid: &str) -> bool {
        matches!(self.store.get(sid, None), Ok(Some(_)))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Reply {
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

#[test]
fn a_read_only_store_follows_the_app_while_it_serves() -> TestResult {
    let h = Harness::start()?;
    // What `sessionctl` does on a running app: a read-only open beside it.
    let ro = Config::new(h.store.path())
        .read_only(true)
        .clock(Arc::new(h.clock.clone()))
        .idle_timeout(IDLE)
        .open()?;
    assert_eq!(ro.stats()?.live_sessions, 0);
    let sid = h.get("/", None)?.new_sid();
    assert_eq!(ro.stats()?.live_sessions, 1);
    for n in 2..=4u64 {
        assert_eq!(h.get("/", Some(&sid))?.counters(), (n, n));
        // The reader sees each request's save as it lands.
        let global = ro.get(&sid, None)?.expect("live for the reader");
        assert_eq!(global.get::<u64>("requests")?, Some(n));
        let home = ro.get(&sid, Some(app::HOME))?.expect("live for the reader");
        assert_eq!(home.get::<u64>("views")?, Some(n));
    }
    let other = h.get("/", None)?.new_sid();
    assert_eq!(ro.stats()?.live_sessions, 2);
    assert!(matches!(
        ro.destroy(&other),
        Err(sessionstore::Error::ReadOnly { op: "destroy", .. })
    ));
    // The app never notices the reader.
    assert_eq!(h.get("/", Some(&other))?.counters(), (2, 2));
    assert!(ro.verify()?.is_ok());
    Ok(())
}

//! The axum example's app (`examples/axum/app.rs`) on a real port, driven
//! by a real HTTP client that keeps cookies (ureq and a jar): an exact counter under
//! concurrency, login, logout, log out everywhere, expiry, and a restart
//! of the server process on the same store.

#[path = "../examples/axum/app.rs"]
mod app;
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sessionstore::SessionStore;
use sessionstore_tower::TowerStore;
use tower_sessions::cookie::{Cookie, time};
use tower_sessions::{Expiry, SessionManagerLayer};

/// A server in a runtime of its own; dropping it stops both.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            t.join().expect("the server thread");
        }
    }
}

/// The app over `tower`, as the example sets it up, on a free loopback port.
fn serve<S: SessionStore + Send + Sync + 'static>(tower: TowerStore<S>) -> Server {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, addr) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a port");
            ready
                .send(listener.local_addr().expect("its address"))
                .expect("the test");
            let layer = SessionManagerLayer::new(tower.clone())
                .with_secure(false)
                .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30)));
            axum::serve(listener, app::router(tower, layer))
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("serving");
        });
    });
    Server {
        addr: addr.recv().expect("the server's address"),
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// A browser: an HTTP client (ureq, with keep-alive) and a cookie jar for
/// the session cookie, shared by its clones as a browser's tabs share it.
/// The jar is kept here, not by ureq's `cookies` feature: turning that on
/// would change the root crate's tests, which use ureq with cookies set by
/// hand (cargo unifies the features of one workspace build).
#[derive(Clone)]
struct Browser {
    agent: ureq::Agent,
    base: String,
    jar: Arc<Mutex<Option<String>>>,
}

impl Browser {
    fn new(addr: SocketAddr) -> Browser {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Browser {
            agent,
            base: format!("http://{addr}"),
            jar: Arc::new(Mutex::new(None)),
        }
    }

    /// A new browser whose jar holds `cookie` as the session cookie.
    fn with_cookie(addr: SocketAddr, cookie: &str) -> Browser {
        let b = Browser::new(addr);
        *b.jar.lock().expect("jar") = Some(cookie.to_owned());
        b
    }

    fn request(&self, method: &str, path: &str) -> String {
        let url = format!("{}{path}", self.base);
        let cookie = self.session_id().map(|id| format!("id={id}"));
        let mut res = if method == "GET" {
            let mut req = self.agent.get(&url);
            if let Some(c) = &cookie {
                req = req.header("Cookie", c);
            }
            req.call()
        } else {
            let mut req = self.agent.post(&url);
            if let Some(c) = &cookie {
                req = req.header("Cookie", c);
            }
            req.send_empty()
        }
        .expect("a response");
        assert_eq!(res.status(), 200, "{method} {path}");
        for value in res.headers().get_all("set-cookie") {
            let c = Cookie::parse(value.to_str().expect("ASCII").to_owned()).expect("a cookie");
            if c.name() == "id" {
                let removed = c.value().is_empty() || c.max_age() == Some(time::Duration::ZERO);
                *self.jar.lock().expect("jar") = (!removed).then(|| c.value().to_owned());
            }
        }
        res.body_mut().read_to_string().expect("a body")
    }

    fn get(&self, path: &str) -> String {
        self.request("GET", path)
    }

    fn post(&self, path: &str) -> String {
        self.request("POST", path)
    }

    /// The session cookie in the jar, if any.
    fn session_id(&self) -> Option<String> {
        self.jar.lock().expect("jar").clone()
    }
}

/// GETs `path` sending only `cookie`: what an old cookie gets now.
fn get_with_cookie(addr: SocketAddr, cookie: &str, path: &str) -> String {
    Browser::with_cookie(addr, cookie).get(path)
}

fn counter_stays_exact<S: SessionStore + Send + Sync + 'static>(kit: common::Kit<S>) {
    let server = serve(kit.tower.clone());
    let browsers = [Browser::new(server.addr), Browser::new(server.addr)];
    for b in &browsers {
        assert_eq!(b.get("/counter"), "1");
    }
    let ids: Vec<String> = browsers
        .iter()
        .map(|b| b.session_id().expect("a cookie"))
        .collect();
    const PER_THREAD: u64 = 25;
    let seen: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = browsers
            .iter()
            .flat_map(|b| (0..8).map(move |_| b.clone()))
            .map(|b| {
                s.spawn(move || {
                    (0..PER_THREAD)
                        .map(|_| b.get("/counter").parse::<u64>().expect("a number"))
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    for (i, b) in browsers.iter().enumerate() {
        // Each request of a session got its own number: none lost, none twice.
        let mut numbers: Vec<u64> = seen[i * 8..(i + 1) * 8].concat();
        numbers.sort_unstable();
        assert_eq!(numbers, (2..=1 + 8 * PER_THREAD).collect::<Vec<_>>());
        assert_eq!(b.get("/counter"), (2 + 8 * PER_THREAD).to_string());
        assert_eq!(
            b.session_id().as_ref(),
            Some(&ids[i]),
            "the id did not change"
        );
    }
}

#[test]
fn counter_stays_exact_under_8_concurrent_requests_per_session_redb() {
    counter_stays_exact(common::redb());
}

#[test]
fn counter_stays_exact_under_8_concurrent_requests_per_session_sled() {
    counter_stays_exact(common::sled());
}

#[cfg(feature = "redis")]
#[test]
fn counter_stays_exact_under_8_concurrent_requests_per_session_redis() {
    counter_stays_exact(common::redis());
}

#[test]
fn login_rotates_the_id_and_the_old_cookie_is_a_new_visitor() {
    let kit = common::redb();
    let server = serve(kit.tower.clone());
    let b = Browser::new(server.addr);
    assert_eq!(b.get("/counter"), "1");
    assert_eq!(b.get("/counter"), "2");
    let before = b.session_id().expect("a cookie");
    assert_eq!(b.post("/login?user=ada"), "logged in as ada");
    let after = b.session_id().expect("a cookie");
    assert_ne!(before, after, "login rotates the id");
    assert_eq!(b.get("/whoami"), "ada");
    assert_eq!(b.get("/counter"), "3", "the data moved with the session");
    assert_eq!(
        kit.store().principal(&after).expect("principal").as_deref(),
        Some("ada")
    );
    assert!(
        kit.store().info(&before).expect("info").is_none(),
        "the old id is gone"
    );

    // Whoever holds the old cookie is a new visitor.
    assert_eq!(
        get_with_cookie(server.addr, &before, "/whoami"),
        "anonymous"
    );
    assert_eq!(get_with_cookie(server.addr, &before, "/counter"), "1");
    assert_eq!(b.get("/whoami"), "ada");
}

#[test]
fn logout_destroys_the_session() {
    let kit = common::redb();
    let server = serve(kit.tower.clone());
    let b = Browser::new(server.addr);
    b.post("/login?user=ada");
    b.get("/counter");
    let id = b.session_id().expect("a cookie");
    assert_eq!(b.post("/logout"), "logged out");
    assert!(
        kit.store().info(&id).expect("info").is_none(),
        "destroyed in the store"
    );
    assert_eq!(b.session_id(), None, "the cookie was removed");
    assert_eq!(get_with_cookie(server.addr, &id, "/whoami"), "anonymous");
    assert_eq!(b.get("/counter"), "1");
}

#[test]
fn logout_everywhere_ends_every_session_of_the_user() {
    let kit = common::redb();
    let server = serve(kit.tower.clone());
    let [laptop, phone, other] = [(); 3].map(|_| Browser::new(server.addr));
    laptop.post("/login?user=ada");
    phone.post("/login?user=ada");
    other.post("/login?user=bob");
    assert_eq!(
        kit.store().sessions_of("ada").expect("sessions_of").len(),
        2
    );
    assert_eq!(laptop.post("/logout-everywhere"), "ended 2 sessions");
    assert_eq!(phone.get("/whoami"), "anonymous");
    assert_eq!(laptop.get("/whoami"), "anonymous");
    assert_eq!(other.get("/whoami"), "bob");
    assert!(
        kit.store()
            .sessions_of("ada")
            .expect("sessions_of")
            .is_empty()
    );
}

#[test]
fn an_expired_session_is_a_new_visitor() {
    let kit = common::redb();
    let server = serve(kit.tower.clone());
    let b = Browser::new(server.addr);
    assert_eq!(b.get("/counter"), "1");
    assert_eq!(b.get("/counter"), "2");
    let old = b.session_id().expect("a cookie");
    kit.advance(Duration::from_secs(29 * 60));
    assert_eq!(b.get("/counter"), "3", "still live before 30 idle minutes");
    kit.advance(Duration::from_secs(30 * 60) + Duration::from_millis(1));
    assert_eq!(b.get("/counter"), "1", "a new visitor");
    assert_ne!(b.session_id().expect("a cookie"), old);
}

/// The environment variable that makes `child_server` serve a store.
const CHILD_DIR: &str = "SESSIONSTORE_TOWER_CHILD_DIR";

/// Not a test of its own: the server process of the restart test, which
/// runs this test binary again with `CHILD_DIR` set. Without it, returns.
#[test]
fn child_server() {
    let Some(dir) = std::env::var_os(CHILD_DIR).map(PathBuf::from) else {
        return;
    };
    let store = sessionstore::Config::new(dir.join("sessions"))
        .open()
        .expect("opening the store");
    let server = serve(TowerStore::new(store));
    std::fs::write(dir.join("addr.tmp"), server.addr.to_string()).expect("addr");
    std::fs::rename(dir.join("addr.tmp"), dir.join("addr")).expect("addr");
    loop {
        std::thread::park(); // until the parent kills this process
    }
}

/// A server process; dropping it kills it (SIGKILL: no clean shutdown).
struct ChildServer(Child);

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `child_server` on the store in `dir` and waits for its address.
fn start_child(dir: &Path) -> (ChildServer, SocketAddr) {
    let _ = std::fs::remove_file(dir.join("addr"));
    let child = ChildServer(
        Command::new(std::env::current_exe().expect("this test binary"))
            .args(["child_server", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir)
            .spawn()
            .expect("starting the server process"),
    );
    // A bound on a broken start, not a speed check.
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(addr) = std::fs::read_to_string(dir.join("addr")) {
            return (child, addr.parse().expect("an address"));
        }
        assert!(Instant::now() < give_up, "the server process did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_store_on_disk_survives_a_restart_of_the_server_process() {
    let dir = tempfile::tempdir().expect("dir");
    let (first, addr) = start_child(dir.path());
    let b = Browser::new(addr);
    assert_eq!(b.get("/counter"), "1");
    assert_eq!(b.post("/login?user=ada"), "logged in as ada");
    assert_eq!(b.get("/counter"), "2");
    let id = b.session_id().expect("a cookie");
    drop(first); // SIGKILL, no clean shutdown

    let (second, addr) = start_child(dir.path());
    // Cookies are not per port: the same jar sends the same cookie.
    let b = Browser {
        base: format!("http://{addr}"),
        ..b
    };
    assert_eq!(b.get("/whoami"), "ada");
    assert_eq!(b.get("/counter"), "3");
    assert_eq!(b.session_id(), Some(id));
    drop(second);
}

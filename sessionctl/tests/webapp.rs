//! The real `sessionctl` against the example web app (`examples/webapp.rs`)
//! running in a process of its own, on both engines, while a thread of this
//! process keeps sending it HTTP requests: sessionctl reaches the app's store
//! through its control socket.
//!
//! - `stats`, `list`, `show`, `export`, `verify` and `sessions-of` agree
//!   with what the app holds;
//! - after `sessionctl destroy SID`, that cookie's next request is a new
//!   visitor, and the app logged the `Destroyed` event;
//! - after `destroy-all-of NAME`, every device of that user is logged out;
//! - the app answered every request of the busy thread.
//!
//! The app is this test binary run again with `WEBAPP_CHILD_DB` set
//! (`harness = false`): it serves on a free port, prints the address, and
//! logs the store's events on stderr, as the example does.

#[allow(dead_code)]
#[path = "../../examples/webapp.rs"]
mod app;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sessionstore::{Config, Engine};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const CHILD_DB: &str = "WEBAPP_CHILD_DB";
const CHILD_ENGINE: &str = "WEBAPP_CHILD_ENGINE";
/// A generous bound for what must happen while the app runs.
const BOUND: Duration = Duration::from_secs(120);

fn main() -> TestResult {
    if let Some(db) = std::env::var_os(CHILD_DB) {
        let engine: Engine = std::env::var(CHILD_ENGINE)?.parse()?;
        return serve(Path::new(&db), engine);
    }
    for engine in Engine::ALL {
        let name = format!(
            "sessionctl_operates_the_running_web_app_on_{}",
            engine.name()
        );
        println!("test {name} ...");
        operates_the_running_app(*engine)?;
        println!("test {name} ... ok");
    }
    Ok(())
}

/// The child: the web app on `db`, as `cargo run --example webapp` runs it.
fn serve(db: &Path, engine: Engine) -> TestResult {
    let store = Config::new(db).engine(engine).open()?;
    let app = app::App::new(store);
    let (server, addr) = app::bind(0).map_err(|e| e.to_string())?;
    println!("listening on http://{addr}");
    app.serve(&server);
    Ok(())
}

/// The app's process; killed on drop.
struct Running {
    child: Child,
    base: String,
    /// Everything the app wrote on stderr so far.
    log: Arc<Mutex<String>>,
}

impl Running {
    fn start(db: &Path, engine: Engine) -> Result<Running, Box<dyn std::error::Error>> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(CHILD_DB, db)
            .env(CHILD_ENGINE, engine.name())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let log = Arc::new(Mutex::new(String::new()));
        let mut err = BufReader::new(child.stderr.take().ok_or("stderr")?);
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while err.read_line(&mut line).is_ok_and(|n| n > 0) {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&line);
                line.clear();
            }
        });
        let mut out = BufReader::new(child.stdout.take().ok_or("stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        let Some(base) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            return Err(format!(
                "the app did not start: {line:?} {}",
                log.lock().map(|l| l.clone()).unwrap_or_default()
            )
            .into());
        };
        Ok(Running {
            base: base.to_owned(),
            child,
            log,
        })
    }

    /// Waits until the app's log holds `needle`.
    fn logged(&self, needle: &str) -> bool {
        let start = Instant::now();
        while start.elapsed() < BOUND {
            if self
                .log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(needle)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP reply: status, the sid a `Set-Cookie` sets, the body.
struct Reply {
    status: u16,
    new_sid: Option<String>,
    body: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

fn read(mut resp: ureq::http::Response<ureq::Body>) -> Result<Reply, ureq::Error> {
    let new_sid = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .and_then(|v| v.strip_prefix("sid="))
        .map(str::to_owned);
    Ok(Reply {
        status: resp.status().as_u16(),
        new_sid,
        body: resp.body_mut().read_to_string()?,
    })
}

fn get(agent: &ureq::Agent, base: &str, sid: Option<&str>) -> Result<Reply, ureq::Error> {
    let mut req = agent.get(format!("{base}/"));
    if let Some(sid) = sid {
        req = req.header("Cookie", format!("sid={sid}"));
    }
    read(req.call()?)
}

/// Logs a new visitor in as `user`: the session id it ends with.
fn login(
    agent: &ureq::Agent,
    base: &str,
    user: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let reply = get(agent, base, None)?;
    let first = reply.new_sid.clone().ok_or_else(|| {
        format!(
            "a new visitor's cookie: the app answered {} {:?}",
            reply.status, reply.body
        )
    })?;
    let reply = read(
        agent
            .post(format!("{base}/login"))
            .header("Cookie", format!("sid={first}"))
            .send_form([("user", user)])?,
    )?;
    assert_eq!(reply.status, 303);
    Ok(reply.new_sid.ok_or("the login's new cookie")?)
}

fn ctl(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("sessionctl runs")
}

fn json(db: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ctl(db, &all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn operates_the_running_app(engine: Engine) -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("sessions");
    let app = Running::start(&db, engine)?;
    let base = app.base.clone();
    let agent = agent();

    let ada_laptop = login(&agent, &base, "ada")?;
    let ada_phone = login(&agent, &base, "ada")?;
    let bob = login(&agent, &base, "bob")?;
    let busy = get(&agent, &base, None)?.new_sid.ok_or("a cookie")?;

    // The busy visitor: one session, requests without a pause, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, served, base, busy) = (stop.clone(), served.clone(), base.clone(), busy.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let agent = self::agent();
            while !stop.load(Ordering::SeqCst) {
                let r = get(&agent, &base, Some(&busy)).map_err(|e| e.to_string())?;
                if r.status != 200 || r.new_sid.is_some() {
                    return Err(format!("the busy visitor got {} {:?}", r.status, r.new_sid));
                }
                served.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
    };

    let all: BTreeSet<String> = [&ada_laptop, &ada_phone, &bob, &busy]
        .into_iter()
        .cloned()
        .collect();
    let stats = json(&db, &["stats"]);
    assert_eq!(stats["live_sessions"], 4, "{stats}");
    assert_eq!(stats["engine"], engine.name());
    let listed: BTreeSet<String> = json(&db, &["list"])
        .as_array()
        .ok_or("a list")?
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(listed, all);
    let show = json(&db, &["show", &ada_laptop]);
    assert_eq!(show["principal"], "ada");
    let keys: Vec<&str> = show["scopes"][0]["keys"]
        .as_array()
        .ok_or("keys")?
        .iter()
        .filter_map(|k| k["key"].as_str())
        .collect();
    assert!(keys.contains(&"user"), "{show}");
    let user = show["scopes"][0]["keys"]
        .as_array()
        .ok_or("keys")?
        .iter()
        .find(|k| k["key"] == "user")
        .ok_or("user")?["preview"]
        .clone();
    assert_eq!(user, "ada", "{show}");
    let export = ctl(&db, &["export"]);
    assert!(export.status.success());
    let exported: BTreeSet<String> = String::from_utf8(export.stdout)?
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).map(|v| v["id"].as_str().unwrap_or("").to_owned())
        })
        .collect::<Result<_, _>>()?;
    assert_eq!(exported, all);
    let verify = ctl(&db, &["verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let mut of_ada: Vec<String> = json(&db, &["sessions-of", "ada"])["sessions"]
        .as_array()
        .ok_or("sessions")?
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    of_ada.sort();
    let mut expected = vec![ada_laptop.clone(), ada_phone.clone()];
    expected.sort();
    assert_eq!(of_ada, expected);

    // A stolen session, ended now.
    assert_eq!(json(&db, &["destroy", &bob])["state"], "live");
    assert!(
        app.logged(&format!("Destroyed {{ sid: {bob:?} }}")),
        "the app logged no Destroyed for bob"
    );
    let next = get(&agent, &base, Some(&bob))?;
    assert!(
        next.new_sid.is_some_and(|s| s != bob),
        "bob's cookie still works"
    );
    assert!(next.body.contains("Hello, visitor."));

    // Every device of ada, logged out.
    assert_eq!(json(&db, &["destroy-all-of", "ada"])["destroyed"], 2);
    for sid in [&ada_laptop, &ada_phone] {
        assert!(app.logged(&format!("Destroyed {{ sid: {sid:?} }}")));
        let next = get(&agent, &base, Some(sid))?;
        assert!(
            next.new_sid.is_some_and(|s| &s != sid),
            "ada's {sid} still works"
        );
        assert!(next.body.contains("Hello, visitor."), "{}", next.body);
    }

    stop.store(true, Ordering::SeqCst);
    traffic
        .join()
        .map_err(|_| "the traffic thread panicked")??;
    assert!(
        served.load(Ordering::SeqCst) > 0,
        "the busy visitor was never served"
    );
    // The busy visitor was never logged out by any of this.
    assert_eq!(json(&db, &["show", &busy])["live"], true);
    assert_eq!(
        json(&db, &["stats"])["live_sessions"],
        4,
        "busy, and the three new visitors"
    );
    drop(app);
    Ok(())
}

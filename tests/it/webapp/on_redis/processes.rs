//! Scale-out across processes: two web app processes on two ports, over one
//! real redis-server and one namespace. The test re-runs its own binary as
//! each app server (the child mode below), so each process has its own
//! `RedisStore`, its own connections and its own memory, as two app servers
//! behind a load balancer would.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::super::{TestResult, Web, app};
use sessionstore::{RedisConfig, SessionStore};

/// In a child, the server to serve on and the namespace.
const CHILD_URL: &str = "SESSIONSTORE_WEBAPP_CHILD_REDIS";
const CHILD_NAMESPACE: &str = "SESSIONSTORE_WEBAPP_CHILD_NAMESPACE";
/// What a child prints once it listens, before the address.
const LISTENING: &str = "WEBAPP LISTENING ";
/// How long a child may take to start. Not a speed limit: one that takes
/// this long is broken, and the test fails instead of hanging.
const START_BOUND: Duration = Duration::from_secs(60);

/// One app server process; dropping it kills it.
struct AppProcess {
    child: Child,
    web: Web,
}

impl AppProcess {
    fn start(
        test: &str,
        url: &str,
        namespace: &str,
    ) -> Result<AppProcess, Box<dyn std::error::Error>> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_URL, url)
            .env(CHILD_NAMESPACE, namespace)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("the child's stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may print the test's name before it on the same line.
                if let Some(at) = line.find(LISTENING) {
                    let _ = tx.send(line[at + LISTENING.len()..].trim().to_owned());
                }
            }
        });
        let base = match rx.recv_timeout(START_BOUND) {
            Ok(base) => base,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the app process did not start listening: {e}").into());
            }
        };
        Ok(AppProcess {
            child,
            web: Web::remote(base),
        })
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child: serves the app on a free port until its parent kills it, or
/// ends, which closes the child's stdin.
fn serve_as_child(url: &str, namespace: &str) -> TestResult {
    let app = app::on_redis(url, namespace)?;
    let (server, addr) = app::bind(0).map_err(|e| e.to_string())?;
    println!("{LISTENING}http://{addr}");
    std::io::stdout().flush()?;
    std::thread::spawn(|| {
        // EOF or an error: the parent is gone.
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    app.serve(&server);
    Ok(())
}

#[test]
fn two_webapp_processes_over_one_redis_share_login_and_logout() -> TestResult {
    if let (Ok(url), Ok(namespace)) = (std::env::var(CHILD_URL), std::env::var(CHILD_NAMESPACE)) {
        return serve_as_child(&url, &namespace);
    }
    let test =
        "webapp::on_redis::processes::two_webapp_processes_over_one_redis_share_login_and_logout";
    let url = crate::common::servers::standalone();
    let namespace = crate::common::fresh_namespace();
    let first = AppProcess::start(test, &url, &namespace)?;
    let second = AppProcess::start(test, &url, &namespace)?;
    assert_ne!(first.child.id(), second.child.id(), "two processes");
    assert_ne!(first.web.base, second.web.base, "two ports");
    let (first, second) = (&first.web, &second.web);

    let visitor = first.get("/", None)?.new_sid();
    let login = first.post("/login", Some(&visitor), &[("user", "grace hopper")])?;
    assert_eq!(login.status, 303);
    let sid = login.new_sid();

    // The second process sees the user the first one logged in.
    let seen = second.get("/", Some(&sid))?;
    assert_eq!(
        seen.set_cookie, None,
        "the second process knows the session"
    );
    assert_eq!(seen.field("user"), "grace hopper");
    assert_eq!(seen.counters(), (3, 2));
    // The id the visitor had before the login is dead in both.
    assert_ne!(second.get("/", Some(&visitor))?.new_sid(), visitor);

    // Log out on the second: the first has no session any more.
    let out = second.post("/logout", Some(&sid), &[])?;
    assert_eq!(out.status, 303);
    let store = RedisConfig::new(url).namespace(namespace).open()?;
    assert!(
        store.get(&sid, None)?.is_none(),
        "logout destroyed it in Redis"
    );
    let after = first.get("/", Some(&sid))?;
    assert_ne!(
        after.new_sid(),
        sid,
        "the first process starts a new session"
    );
    assert_eq!(after.counters(), (1, 1));
    assert!(!after.body.contains("grace hopper"));
    Ok(())
}

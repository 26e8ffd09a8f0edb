//! A running store: a writer process saves sessions in a loop while this
//! process runs the real `sessionctl` binary on the same store directory,
//! which it reaches through the writer's control socket.
//!
//! The writer is this test binary run again with `LIVE_WRITER_STORE` set
//! (`harness = false`, as the library's crash test does). Each save sets the
//! keys `a`, `b` and `c` of one session to the same new number, so a session
//! read whole holds three equal values or none of them. The parent checks,
//! on both engines, that every session `list` and `export` show is whole,
//! that the counts of `stats` move as the writer writes, that `destroy` and
//! `reap` go through while `import` is refused with one line, and that the
//! writer never sees an error; that a writer killed with SIGKILL leaves a
//! stale socket that neither sessionctl nor the next writer trips on; and
//! that a writer with the socket off gets one line naming the knob.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sessionstore::{Config, Engine, Store};

const CHILD_STORE: &str = "LIVE_WRITER_STORE";
const CHILD_ENGINE: &str = "LIVE_WRITER_ENGINE";
/// Set to `off` for a writer that serves no control socket.
const CHILD_SOCKET: &str = "LIVE_WRITER_SOCKET";
/// The keys every save sets together.
const KEYS: [&str; 3] = ["a", "b", "c"];
/// Sessions the writer keeps rewriting once it has created them.
const SESSIONS: u64 = 40;
/// A generous bound for what must happen while the writer runs.
const BOUND: Duration = Duration::from_secs(120);

type TestResult = Result<(), Box<dyn std::error::Error>>;
/// A test's name and body.
type Test = (&'static str, fn() -> TestResult);

fn main() -> TestResult {
    if let Some(dir) = std::env::var_os(CHILD_STORE) {
        let engine: Engine = std::env::var(CHILD_ENGINE)?.parse()?;
        let socket = std::env::var(CHILD_SOCKET).map_or(true, |v| v != "off");
        return writer(Path::new(&dir), engine, socket);
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: &[Test] = &[
        (
            "sessionctl_operates_a_store_while_its_writer_saves",
            reads_while_a_writer_saves,
        ),
        (
            "a_stale_socket_after_sigkill_is_replaced_by_the_next_writer",
            stale_socket_after_sigkill,
        ),
        (
            "a_writer_without_the_socket_gets_one_line_naming_the_knob",
            socket_off,
        ),
    ];
    for (name, test) in tests {
        let (name, test) = (*name, *test);
        if filter.iter().all(|f| name.contains(f.as_str())) {
            println!("test {name} ...");
            test()?;
            println!("test {name} ... ok");
        }
    }
    Ok(())
}

/// The writer process: creates sessions, then rewrites them, each save
/// setting every key of `KEYS` to one new number, until its stdin closes.
/// Prints `ready` after its first save and, at the end, `saves N`; any error
/// ends it with a non-zero status and the error on stderr.
fn writer(dir: &Path, engine: Engine, socket: bool) -> TestResult {
    let store = Config::new(dir)
        .engine(engine)
        .reap_interval(None)
        .control_socket(socket)
        .open()?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let mut n: u64 = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let sid = format!("s{:03}", n % SESSIONS);
        let mut session = match store.get(&sid, None)? {
            Some(s) => s,
            None => store.create_new_session(&sid)?,
        };
        for key in KEYS {
            session.set(key, &n)?;
        }
        store.save(&mut session)?;
        if n == 0 {
            println!("ready");
            std::io::stdout().flush()?;
        }
        n += 1;
        // Slow the growth a little, so that the reader sees the counts move.
        if n < SESSIONS {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    println!("saves {n}");
    Ok(())
}

/// Starts the writer on `dir` and waits for its first save.
fn start_writer(
    dir: &Path,
    engine: Engine,
) -> Result<(Child, BufReader<ChildStdout>), Box<dyn std::error::Error>> {
    start_writer_with(dir, engine, true)
}

/// As `start_writer`, with the control socket on or off.
fn start_writer_with(
    dir: &Path,
    engine: Engine,
    socket: bool,
) -> Result<(Child, BufReader<ChildStdout>), Box<dyn std::error::Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD_STORE, dir)
        .env(CHILD_ENGINE, engine.name())
        .env(CHILD_SOCKET, if socket { "on" } else { "off" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(child.stdout.take().ok_or("the writer's stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            e.read_to_string(&mut err)?;
        }
        return Err(format!("the writer did not start: {line:?} {err}").into());
    }
    Ok((child, out))
}

/// Closes the writer's stdin, waits for it, and returns its save count;
/// fails if it saw any error.
fn stop_writer(
    mut child: Child,
    mut out: BufReader<ChildStdout>,
) -> Result<u64, Box<dyn std::error::Error>> {
    drop(child.stdin.take());
    let mut rest = String::new();
    out.read_to_string(&mut rest)?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err)?;
    }
    let status = child.wait()?;
    assert!(status.success(), "the writer failed ({status}): {err}");
    let saves = rest
        .lines()
        .find_map(|l| l.strip_prefix("saves "))
        .ok_or_else(|| format!("no save count from the writer: {rest:?} {err}"))?;
    Ok(saves.trim().parse()?)
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

fn ok_stdout(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The command failed with one line on stderr, which is returned.
fn one_line_error(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "it succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    err
}

/// Checks that one exported session is whole: its global scope holds all of
/// `KEYS` with one value, or none of them. Returns whether it held them.
fn whole(session: &Value) -> bool {
    let id = &session["id"];
    let scopes = session["scopes"].as_array().expect("scopes");
    assert!(scopes.len() <= 1, "{id}: unexpected scopes {scopes:?}");
    let Some(values) = scopes.first().map(|s| &s["values"]) else {
        return false;
    };
    let got: Vec<&Value> = KEYS.iter().map(|k| &values[k]).collect();
    assert!(
        got.iter().all(|v| *v == got[0]) && !got[0].is_null(),
        "{id}: a half save: {values}"
    );
    true
}

fn reads_while_a_writer_saves() -> TestResult {
    for engine in Engine::ALL {
        println!("  engine {}", engine.name());
        reads_while_a_writer_saves_on(*engine)?;
    }
    Ok(())
}

fn reads_while_a_writer_saves_on(engine: Engine) -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("store");
    let (child, out) = start_writer(&db, engine)?;
    let start = Instant::now();

    // An import is refused with one line: the socket serves none.
    let import_file = dir.path().join("in.jsonl");
    std::fs::write(
        &import_file,
        r#"{"v":1,"id":"zz","created_us":1700000000000000,"last_access_us":1700000000000000,"idle_timeout_us":null,"absolute_deadline_us":null,"scopes":[]}"#,
    )?;
    let import = import_file.to_string_lossy().into_owned();
    let err = one_line_error(&ctl(&db, &["import", &import]));
    assert!(err.contains("is in use"), "{err}");
    assert!(
        err.contains("`import` needs the application stopped"),
        "{err}"
    );
    // The writes of the operator go through the writer's own store.
    let reaped: Value = serde_json::from_str(&ok_stdout(&ctl(&db, &["--json", "reap"]), "reap"))?;
    assert_eq!(reaped["reaped"].as_u64(), Some(0), "nothing expires here");
    let destroyed = ctl(&db, &["--json", "destroy", "s000"]);
    let destroyed: Value = serde_json::from_str(&ok_stdout(&destroyed, "destroy"))?;
    assert_eq!(destroyed["state"], "live", "{destroyed}");
    // The wrong engine is named, as on a stopped store.
    let other = Engine::ALL
        .iter()
        .find(|e| **e != engine)
        .ok_or("two engines")?;
    let err = one_line_error(&ctl(&db, &["--engine", other.name(), "stats"]));
    assert!(
        err.contains(&format!("--engine {}", engine.name())),
        "{err}"
    );

    // Counts move, and everything read is whole, while the writer writes.
    let mut counts = Vec::new();
    let mut whole_seen = 0usize;
    let mut rounds = 0;
    while counts.iter().filter(|c| **c != counts[0]).count() < 3 || rounds < 5 {
        assert!(
            start.elapsed() < BOUND,
            "the counts did not move: {counts:?}"
        );
        rounds += 1;
        let stats: Value =
            serde_json::from_str(&ok_stdout(&ctl(&db, &["--json", "stats"]), "stats"))?;
        assert_eq!(stats["engine"], engine.name());
        counts.push(stats["live_sessions"].as_u64().ok_or("live_sessions")?);

        let list: Value = serde_json::from_str(&ok_stdout(&ctl(&db, &["--json", "list"]), "list"))?;
        let listed: Vec<&str> = list
            .as_array()
            .ok_or("a list")?
            .iter()
            .filter_map(|s| s["id"].as_str())
            .collect();
        let unique: std::collections::BTreeSet<&&str> = listed.iter().collect();
        assert_eq!(unique.len(), listed.len(), "an id listed twice: {listed:?}");
        for s in list.as_array().ok_or("a list")? {
            let keys = s["keys"].as_u64().ok_or("keys")?;
            assert!(
                keys == 0 || keys == KEYS.len() as u64,
                "a half save listed: {s}"
            );
        }
        let limited: Value = serde_json::from_str(&ok_stdout(
            &ctl(&db, &["--json", "list", "--limit", "2"]),
            "list",
        ))?;
        assert!(limited.as_array().ok_or("a list")?.len() <= 2);

        let export = ok_stdout(&ctl(&db, &["export", "-"]), "export");
        let mut exported = std::collections::BTreeSet::new();
        for line in export.lines() {
            let id = serde_json::from_str::<Value>(line)?["id"].to_string();
            assert!(exported.insert(id), "an id exported twice: {line}");
        }
        for line in export.lines() {
            if whole(&serde_json::from_str(line)?) {
                whole_seen += 1;
            }
        }
        let verify = ctl(&db, &["verify"]);
        ok_stdout(&verify, "verify");
    }
    assert!(whole_seen > 0, "no exported session held its keys");

    let saves = stop_writer(child, out)?;
    assert!(saves > 0);
    // After the writer, the store opens again, is clean, and the socket is gone.
    assert!(
        !db.join("sessionstore.sock").exists(),
        "the socket outlived a clean close"
    );
    let store = Store::open(&db)?;
    assert!(store.verify()?.is_ok());
    Ok(())
}

/// A writer killed with SIGKILL leaves its socket file: sessionctl, finding
/// the lock free, opens the store itself; the next writer replaces the stale
/// socket and serves it.
fn stale_socket_after_sigkill() -> TestResult {
    for engine in Engine::ALL {
        println!("  engine {}", engine.name());
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("store");
        let (mut child, _out) = start_writer(&db, *engine)?;
        child.kill()?; // SIGKILL
        child.wait()?;
        let socket = db.join("sessionstore.sock");
        assert!(socket.exists(), "SIGKILL removed nothing");
        let stats: Value =
            serde_json::from_str(&ok_stdout(&ctl(&db, &["--json", "stats"]), "stats"))?;
        let before = stats["live_sessions"].as_u64().ok_or("live_sessions")?;
        assert!(before >= 1);

        let (child, out) = start_writer(&db, *engine)?;
        let destroyed: Value = serde_json::from_str(&ok_stdout(
            &ctl(&db, &["--json", "destroy", "s000"]),
            "destroy through the new writer's socket",
        ))?;
        assert_eq!(destroyed["destroyed"], "s000");
        stop_writer(child, out)?;
        assert!(!socket.exists());
    }
    Ok(())
}

/// A writer that turned the socket off: every command says, in one line,
/// what to turn on.
fn socket_off() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("store");
    let (child, out) = start_writer_with(&db, Engine::default(), false)?;
    for args in [&["stats"][..], &["list"], &["destroy", "s000"], &["reap"]] {
        let err = one_line_error(&ctl(&db, args));
        assert!(
            err.contains("serves no control socket")
                && err.contains("Config::control_socket(true)"),
            "{args:?}: {err}"
        );
    }
    stop_writer(child, out)?;
    Ok(())
}

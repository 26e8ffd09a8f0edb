//! Live inspection: a writer process saves sessions in a loop while this
//! process runs the real `sessionctl` binary on the same store directory.
//!
//! The writer is this test binary run again with `LIVE_WRITER_STORE` set
//! (`harness = false`, as the library's crash test does). Each save sets the
//! keys `a`, `b` and `c` of one session to the same new number, so a session
//! read whole holds three equal values or none of them. The parent checks
//! that every session `list` and `export` show is whole, that the counts of
//! `stats` move as the writer writes, that `destroy`, `reap` and `import`
//! are refused with one line, and that the writer never sees an error.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sessionstore::{Config, Engine, Store};

const CHILD_STORE: &str = "LIVE_WRITER_STORE";
const CHILD_ENGINE: &str = "LIVE_WRITER_ENGINE";
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
        return writer(Path::new(&dir), engine);
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: &[Test] = &[
        (
            "sessionctl_reads_a_store_while_its_writer_saves",
            reads_while_a_writer_saves,
        ),
        (
            "a_reader_outlives_a_writer_killed_with_sigkill",
            reader_outlives_a_killed_writer,
        ),
        #[cfg(feature = "sled")]
        (
            "sessionctl_on_a_live_sled_store_names_the_engine_and_the_way_out",
            live_sled,
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
fn writer(dir: &Path, engine: Engine) -> TestResult {
    let store = Config::new(dir).engine(engine).reap_interval(None).open()?;
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
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD_STORE, dir)
        .env(CHILD_ENGINE, engine.name())
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
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("store");
    let (child, out) = start_writer(&db, Engine::Redb)?;
    let start = Instant::now();

    // The writes of the reader are refused, each with one line.
    let import_file = dir.path().join("in.jsonl");
    std::fs::write(
        &import_file,
        r#"{"v":1,"id":"zz","created_us":1700000000000000,"last_access_us":1700000000000000,"idle_timeout_us":null,"absolute_deadline_us":null,"scopes":[]}"#,
    )?;
    let import = import_file.to_string_lossy().into_owned();
    for args in [&["destroy", "s000"][..], &["reap"], &["import", &import]] {
        let err = one_line_error(&ctl(&db, args));
        assert!(err.contains("is in use"), "{args:?}: {err}");
        assert!(
            err.contains("writes need the application stopped"),
            "{args:?}: {err}"
        );
        assert!(err.contains(&format!("`{}`", args[0])), "{args:?}: {err}");
    }

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
    // The counts only grow: the writer creates and never deletes.
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");

    let saves = stop_writer(child, out)?;
    assert!(saves > 0);
    // After the writer, the store opens for writing again and is clean.
    let store = Store::open(&db)?;
    assert!(store.verify()?.is_ok());
    assert_eq!(store.stats()?.live_sessions, SESSIONS.min(saves));
    Ok(())
}

/// What a reader sees when its writer dies: the reader (a library handle in
/// this process) keeps reading the last commit the writer made durable; a
/// new read-only open is refused until a writer has recovered the file;
/// sessionctl, finding the lock free, opens the store for writing, which
/// recovers it; and the next writer is followed by the same old reader.
fn reader_outlives_a_killed_writer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("store");
    let (mut child, _out) = start_writer(&db, Engine::Redb)?;
    let reader = Store::open_read_only(&db)?;
    let start = Instant::now();
    while reader.stats()?.live_sessions < 5 {
        assert!(start.elapsed() < BOUND, "the writer made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill()?; // SIGKILL
    child.wait()?;
    let before = reader.stats()?.live_sessions;
    assert!(before >= 5);
    let first = reader.export_session("s000")?.ok_or("s000")?;
    assert_eq!(first.scopes.len(), 1);
    assert_eq!(first.scopes[0].values.len(), KEYS.len());
    assert!(reader.verify()?.is_ok());

    let err = Store::open_read_only(&db)
        .err()
        .ok_or("a read-only open of a crashed file")?;
    assert!(err.to_string().contains("not closed cleanly"), "{err}");
    let stats: Value = serde_json::from_str(&ok_stdout(&ctl(&db, &["--json", "stats"]), "stats"))?;
    assert_eq!(stats["live_sessions"].as_u64(), Some(before));
    let again = Store::open_read_only(&db)?;
    assert_eq!(again.stats()?.live_sessions, before);

    // The next writer opens the file a dead writer left, and the old reader follows it.
    let writer = Config::new(&db).reap_interval(None).open()?;
    assert!(writer.verify()?.is_ok());
    writer.create_new_session("after")?;
    assert!(reader.get("after", None)?.is_some());
    assert_eq!(reader.stats()?.live_sessions, before + 1);
    Ok(())
}

#[cfg(feature = "sled")]
fn live_sled() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("store");
    let (child, out) = start_writer(&db, Engine::Sled)?;
    for args in [
        &["stats"][..],
        &["list"],
        &["export", "-"],
        &["verify"],
        &["show", "s000"],
    ] {
        let err = one_line_error(&ctl(&db, args));
        assert!(
            err.contains("sled store") && err.contains("stop the application"),
            "{args:?}: {err}"
        );
    }
    for args in [&["destroy", "s000"][..], &["reap"]] {
        let err = one_line_error(&ctl(&db, args));
        assert!(
            err.contains("writes need the application stopped"),
            "{args:?}: {err}"
        );
    }
    stop_writer(child, out)?;
    Ok(())
}

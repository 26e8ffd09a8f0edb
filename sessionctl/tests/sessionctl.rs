//! The `sessionctl` binary, run against stores made here. Sessions that must
//! look expired to it are created on a manual clock set two days back, so no
//! test sleeps.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use sessionstore::{Config, Engine, ManualClock, Store};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DAY: Duration = Duration::from_secs(86_400);

/// A store in a temporary directory holding:
/// - `alice`, live: global `user` = "alice", `visits` = 3u32; `cart` component:
///   `items` = ["book", "pen"]; `prefs` component: `theme` = "dark";
/// - `bob`, live, with no idle timeout: global `user` = "bob";
/// - `old1` and `old2`, expired a day ago and not reaped.
struct Fixture {
    dir: tempfile::TempDir,
    db: PathBuf,
    created: SystemTime,
}

impl Fixture {
    fn new() -> Result<Fixture, Box<dyn std::error::Error>> {
        Self::with_engine(Engine::default())
    }

    fn with_engine(engine: Engine) -> Result<Fixture, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("store");
        // Whole seconds, so that the table output can be predicted.
        let now = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)?
                    .as_secs(),
            );
        let clock = ManualClock::new(now - 2 * DAY);
        let store = Config::new(&db)
            .engine(engine)
            .clock(Arc::new(clock.clone()))
            .idle_timeout(DAY)
            .reap_interval(None)
            .open()?;
        store.create_new_session("old1")?;
        let mut old2 = store.create_new_session("old2")?;
        old2.set("k", "v")?;
        store.save(&mut old2)?;

        clock.set(now);
        let mut alice = store.create_new_session("alice")?;
        alice.set("user", "alice")?;
        alice.set("visits", &3u32)?;
        store.save(&mut alice)?;
        let mut cart = store.get("alice", Some("cart"))?.ok_or("alice")?;
        cart.set("items", &vec!["book", "pen"])?;
        store.save(&mut cart)?;
        let mut prefs = store.get("alice", Some("prefs"))?.ok_or("alice")?;
        prefs.set("theme", "dark")?;
        store.save(&mut prefs)?;
        let mut bob = store.create_new_session("bob")?;
        bob.set("user", "bob")?;
        store.save(&mut bob)?;
        store.set_idle_timeout("bob", None)?;
        drop(store);
        Ok(Fixture {
            dir,
            db,
            created: now,
        })
    }

    fn ctl(&self, args: &[&str]) -> Output {
        ctl(&self.db, args)
    }

    /// Runs a command that must succeed with `--json`, and parses its output.
    fn json(&self, args: &[&str]) -> Value {
        json_of(&self.db, args)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn ctl(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("sessionctl runs")
}

fn json_of(db: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ctl(db, &all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The command failed with exactly one line on standard error, and it is returned.
fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "it succeeded: {}", stdout(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    err
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch")
        .as_micros() as u64
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("an array")
        .iter()
        .map(|s| s["id"].as_str().expect("an id"))
        .collect()
}

#[test]
fn stats_counts_live_and_expired_sessions() -> TestResult {
    let f = Fixture::new()?;
    let stats = f.json(&["stats"]);
    assert_eq!(stats["live_sessions"], 2);
    assert_eq!(stats["expired_sessions"], 2);
    assert_eq!(stats["engine"], Engine::default().name());
    assert!(stats["bytes_on_disk"].as_u64() > Some(0));

    let table = stdout(&f.ctl(&["stats"]));
    let live = table.lines().find(|l| l.starts_with("live sessions"));
    assert_eq!(
        live.map(|l| l.split_whitespace().last()),
        Some(Some("2")),
        "{table}"
    );
    Ok(())
}

#[test]
fn list_shows_live_sessions_in_deadline_order() -> TestResult {
    let f = Fixture::new()?;
    let list = f.json(&["list"]);
    // alice's deadline is a day away; bob has none, so he comes last.
    assert_eq!(ids(&list), ["alice", "bob"]);
    let alice = &list[0];
    assert_eq!(alice["created_us"], micros(f.created));
    assert_eq!(alice["last_access_us"], micros(f.created));
    assert_eq!(alice["deadline_us"], micros(f.created + DAY));
    assert_eq!(alice["components"], serde_json::json!(["cart", "prefs"]));
    assert_eq!(alice["keys"], 4);
    assert_eq!(list[1]["deadline_us"], Value::Null);

    assert_eq!(ids(&f.json(&["list", "--limit", "1"])), ["alice"]);
    assert_eq!(ids(&f.json(&["list", "--expired"])), ["old1", "old2"]);

    let table = stdout(&f.ctl(&["list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("LAST ACCESS"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("alice") && lines[1].ends_with("cart,prefs"),
        "{table}"
    );
    assert!(lines[2].contains("never"), "{table}");
    Ok(())
}

#[test]
fn show_previews_every_key() -> TestResult {
    let f = Fixture::new()?;
    let show = f.json(&["show", "alice"]);
    assert_eq!(show["live"], true);
    let scopes = show["scopes"].as_array().ok_or("scopes")?;
    let names: Vec<&Value> = scopes.iter().map(|s| &s["component"]).collect();
    assert_eq!(names, [&Value::Null, &"cart".into(), &"prefs".into()]);
    let global = scopes[0]["keys"].as_array().ok_or("keys")?;
    // A String is a length byte and its UTF-8; 3u32 is one varint byte.
    assert_eq!(global[0]["key"], "user");
    assert_eq!(global[0]["size"], 6);
    assert_eq!(global[0]["kind"], "text");
    assert_eq!(global[0]["preview"], "alice");
    assert_eq!(global[0]["value_base64"], "BWFsaWNl");
    assert_eq!(global[1]["key"], "visits");
    assert_eq!(global[1]["kind"], "hex");
    assert_eq!(global[1]["preview"], "03");

    let cart = f.json(&["show", "alice", "--component", "cart"]);
    let only = cart["scopes"].as_array().ok_or("scopes")?;
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["keys"][0]["key"], "items");
    assert_eq!(only[0]["keys"][0]["kind"], "hex");
    let global = f.json(&["show", "alice", "--global"]);
    assert_eq!(global["scopes"].as_array().map(Vec::len), Some(1));
    assert_eq!(global["scopes"][0]["component"], Value::Null);

    let table = stdout(&f.ctl(&["show", "alice"]));
    assert!(table.contains("state              live"), "{table}");
    let user = table
        .lines()
        .find(|l| l.contains(" user "))
        .ok_or("a user row")?;
    assert_eq!(
        user.split_whitespace().collect::<Vec<_>>(),
        ["(global)", "user", "6", "\"alice\""]
    );
    assert!(table.contains("0x03"), "{table}");

    // An expired session that is not reaped yet can still be inspected.
    assert_eq!(f.json(&["show", "old2"])["live"], false);
    let missing = one_line_error(&f.ctl(&["show", "carol"]));
    assert!(missing.contains("\"carol\""), "{missing}");
    Ok(())
}

#[test]
fn destroy_deletes_one_session_and_fails_on_a_missing_one() -> TestResult {
    let f = Fixture::new()?;
    assert_eq!(f.json(&["destroy", "bob"])["destroyed"], "bob");
    assert_eq!(ids(&f.json(&["list"])), ["alice"]);
    let again = one_line_error(&f.ctl(&["destroy", "bob"]));
    assert!(again.contains("no session \"bob\""), "{again}");
    Ok(())
}

#[test]
fn reap_deletes_the_expired_sessions() -> TestResult {
    let f = Fixture::new()?;
    assert_eq!(f.json(&["reap"])["reaped"], 2);
    assert_eq!(f.json(&["stats"])["expired_sessions"], 0);
    assert_eq!(f.json(&["stats"])["live_sessions"], 2);
    assert_eq!(stdout(&f.ctl(&["reap"])), "reaped 0 expired sessions\n");
    Ok(())
}

/// Every live session of the store at `db`, as the library exports it.
fn exported(db: &Path, engine: Engine) -> sessionstore::Result<Vec<sessionstore::ExportedSession>> {
    let store = Config::new(db).engine(engine).reap_interval(None).open()?;
    let ids: Vec<String> = store.session_ids().collect::<sessionstore::Result<_>>()?;
    ids.iter()
        .map(|id| store.export_session(id).map(|s| s.expect("live")))
        .collect()
}

#[test]
fn export_then_import_round_trips_exactly() -> TestResult {
    let f = Fixture::new()?;
    let file = f.path("sessions.jsonl");
    let file_arg = file.to_str().ok_or("path")?;
    assert_eq!(f.json(&["export", file_arg])["exported"], 2);
    let text = std::fs::read_to_string(&file)?;
    assert_eq!(text.lines().count(), 2);
    for line in text.lines() {
        let record: Value = serde_json::from_str(line)?;
        assert_eq!(record["v"], 1);
    }
    // Without a file, the same lines go to standard output.
    assert_eq!(stdout(&f.ctl(&["export"])), text);

    let copy = f.path("copy");
    assert_eq!(json_of(&copy, &["import", file_arg])["imported"], 2);
    let again = f.path("again.jsonl");
    json_of(&copy, &["export", again.to_str().ok_or("path")?]);
    assert_eq!(std::fs::read_to_string(&again)?, text);
    assert_eq!(
        exported(&copy, Engine::default())?,
        exported(&f.db, Engine::default())?
    );

    let store = Store::open(&copy)?;
    let cart = store.get("alice", Some("cart"))?.ok_or("alice")?;
    assert_eq!(
        cart.get::<Vec<String>>("items")?,
        Some(vec!["book".into(), "pen".into()])
    );
    Ok(())
}

#[cfg(all(feature = "sled", feature = "redb"))]
#[test]
fn export_then_import_round_trips_across_engines() -> TestResult {
    for from in Engine::ALL {
        for to in Engine::ALL.iter().filter(|e| *e != from) {
            let f = Fixture::with_engine(*from)?;
            let file = f.path("sessions.jsonl");
            let file_arg = file.to_str().ok_or("path")?;
            json_of(&f.db, &["--engine", from.name(), "export", file_arg]);
            let copy = f.path("copy");
            json_of(&copy, &["--engine", to.name(), "import", file_arg]);
            // Without --engine, sessionctl finds the engine the store was made with.
            assert_eq!(json_of(&copy, &["stats"])["engine"], to.name());
            let again = f.path("again.jsonl");
            json_of(&copy, &["export", again.to_str().ok_or("path")?]);
            assert_eq!(
                std::fs::read_to_string(&again)?,
                std::fs::read_to_string(&file)?,
                "{from} to {to}"
            );
            assert_eq!(exported(&copy, *to)?, exported(&f.db, *from)?);
        }
    }
    Ok(())
}

#[test]
fn import_refuses_existing_ids_unless_replace() -> TestResult {
    let f = Fixture::new()?;
    let file = f.path("sessions.jsonl");
    let file_arg = file.to_str().ok_or("path")?;
    f.json(&["export", file_arg]);
    let store = Store::open(&f.db)?;
    let mut alice = store.get("alice", None)?.ok_or("alice")?;
    alice.set("visits", &4u32)?;
    store.save(&mut alice)?;
    drop(store);

    let refused = one_line_error(&f.ctl(&["import", file_arg]));
    assert!(
        refused.contains("already exists") && refused.contains("--replace"),
        "{refused}"
    );
    assert!(refused.contains("line 1"), "{refused}");
    let store = Store::open(&f.db)?;
    let alice = store.get("alice", None)?.ok_or("alice")?;
    assert_eq!(alice.get::<u32>("visits")?, Some(4), "nothing was imported");
    drop(store);

    assert_eq!(f.json(&["import", "--replace", file_arg])["imported"], 2);
    let store = Store::open(&f.db)?;
    let alice = store.get("alice", None)?.ok_or("alice")?;
    assert_eq!(
        alice.get::<u32>("visits")?,
        Some(3),
        "the export's value is back"
    );
    Ok(())
}

#[test]
fn a_bad_import_file_is_refused_before_anything_is_written() -> TestResult {
    let f = Fixture::new()?;
    let good = stdout(&f.ctl(&["export"]));
    let first = good.lines().next().ok_or("a line")?;
    let empty = f.path("empty");
    let cases = [
        (format!("{first}\n{{not json\n"), "line 2"),
        (format!("{first}\n{first}\n"), "also on line 1"),
        (first.replace("\"v\":1", "\"v\":9"), "format version 9"),
        (
            first.replace("\"id\":\"alice\"", "\"id\":\"a/b\""),
            "invalid session id",
        ),
        (first.replace("\"BWFsaWNl\"", "\"!!\""), "not valid base64"),
        (
            first.replace("\"v\":1", "\"v\":1,\"extra\":0"),
            "unknown field",
        ),
        // A good line first: a bad key further on must stop the import before
        // the good line is written.
        (
            format!(
                "{}\n{}\n",
                good.lines()
                    .find(|l| !l.contains("\"visits\""))
                    .ok_or("another line")?,
                good.lines()
                    .find(|l| l.contains("\"visits\""))
                    .ok_or("alice's line")?
                    .replace("\"visits\"", "\"bad\\u0007key\""),
            ),
            "invalid key",
        ),
    ];
    for (i, (content, expected)) in cases.iter().enumerate() {
        let file = f.path(&format!("bad{i}.jsonl"));
        std::fs::write(&file, content)?;
        let err = one_line_error(&ctl(&empty, &["import", file.to_str().ok_or("path")?]));
        assert!(err.contains(expected), "case {i}: {err}");
        assert!(
            err.contains(&format!("bad{i}.jsonl")),
            "names the file: {err}"
        );
    }
    // Nothing was about to be written, so no store was created.
    assert!(
        !empty.exists(),
        "a failed import created {}",
        empty.display()
    );
    let missing = one_line_error(&f.ctl(&["import", "/no/such/file.jsonl"]));
    assert!(missing.contains("/no/such/file.jsonl"), "{missing}");
    Ok(())
}

#[test]
fn bad_input_is_one_line_and_a_non_zero_exit() -> TestResult {
    let f = Fixture::new()?;
    for args in [
        &["frobnicate"][..],
        &["list", "--limit", "many"],
        &["--engine", "lmdb", "stats"],
        &["show"],
    ] {
        let out = f.ctl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = one_line_error(&out);
        assert!(err.contains("sessionctl --help"), "{err}");
    }
    let lmdb = one_line_error(&f.ctl(&["--engine", "lmdb", "stats"]));
    assert!(lmdb.contains("unknown engine \"lmdb\""), "{lmdb}");

    let bad_id = f.ctl(&["show", "a/b"]);
    assert_eq!(bad_id.status.code(), Some(1));
    assert!(one_line_error(&bad_id).contains("invalid session id \"a/b\""));

    let nowhere = ctl(&f.path("nothing-here"), &["stats"]);
    assert!(one_line_error(&nowhere).contains("no store at"));
    assert!(
        !f.path("nothing-here").exists(),
        "a command other than import creates nothing"
    );

    let file = f.path("a-file");
    std::fs::write(&file, "hello")?;
    assert!(one_line_error(&ctl(&file, &["stats"])).contains("not a sessionstore database"));
    Ok(())
}

/// A store that the application has open is operated through its control
/// socket: every command gives what it gives on the stopped store, text and
/// JSON alike; a destroy reaches the application's subscribers; an import is
/// refused in one line.
#[test]
fn a_store_in_use_is_operated_through_its_control_socket() -> TestResult {
    for engine in Engine::ALL {
        let f = Fixture::with_engine(*engine)?;
        let export = f.path("all.jsonl");
        let commands: [&[&str]; 9] = [
            &["list"],
            &["list", "--expired"],
            &["list", "--limit", "1"],
            &["show", "alice"],
            &["show", "alice", "--component", "cart"],
            &["show", "nobody"],
            &["export"],
            &["verify"],
            &["sessions-of", "ada"],
        ];
        let run_all = || {
            let mut outs = Vec::new();
            for args in commands {
                for json in [false, true] {
                    let mut all = args.to_vec();
                    if json {
                        all.insert(0, "--json");
                    }
                    let out = f.ctl(&all);
                    outs.push((all.join(" "), out.status.code(), stdout(&out), stderr(&out)));
                }
            }
            let stats = f.json(&["stats"]);
            outs.push((
                "stats".into(),
                Some(0),
                format!(
                    "{} {} {}",
                    stats["path"], stats["live_sessions"], stats["expired_sessions"]
                ),
                String::new(),
            ));
            outs
        };
        let stopped = run_all();
        let store = Store::open(&f.db)?;
        let events = store.subscribe();
        let running = run_all();
        for (a, b) in stopped.iter().zip(&running) {
            assert_eq!(a, b, "{engine:?}: {} differs on the running store", a.0);
        }
        // Writes go through the application's store.
        assert_eq!(f.json(&["destroy", "alice"])["state"], "live");
        assert_eq!(
            events.recv_timeout(Duration::from_secs(60))?,
            sessionstore::Event::Destroyed {
                sid: "alice".into()
            }
        );
        assert!(store.get("alice", None)?.is_none());
        assert_eq!(f.json(&["destroy", "old1"])["state"], "expired");
        assert!(one_line_error(&f.ctl(&["destroy", "alice"])).contains("no session \"alice\""));
        assert_eq!(f.json(&["reap"])["reaped"], 1, "old2");
        assert_eq!(f.json(&["destroy-all-of", "ada"])["destroyed"], 0);
        // An import is refused: the socket serves none.
        drop(store);
        assert!(
            f.ctl(&["export", &export.to_string_lossy()])
                .status
                .success()
        );
        let _store = Store::open(&f.db)?;
        let err = one_line_error(&f.ctl(&["import", &export.to_string_lossy(), "--replace"]));
        assert!(err.contains("is in use"), "{err}");
        assert!(err.contains(&f.db.display().to_string()), "{err}");
        assert!(
            err.contains("`import` needs the application stopped"),
            "{err}"
        );
    }
    Ok(())
}

/// A random id can start with `-`: it is an id, not a flag, where a command
/// takes one (the web app's test met one: `destroy -oIZ…` was refused as an
/// unknown flag).
#[test]
fn an_id_or_a_name_may_start_with_a_dash() -> TestResult {
    let f = Fixture::new()?;
    let store = Store::open(&f.db)?;
    store.create_new_session("-oIZ")?;
    store.set_principal("-oIZ", Some("-ada"))?;
    drop(store);
    assert_eq!(f.json(&["show", "-oIZ"])["id"], "-oIZ");
    assert_eq!(f.json(&["sessions-of", "-ada"])["sessions"][0], "-oIZ");
    assert_eq!(f.json(&["destroy", "-oIZ"])["state"], "live");
    assert_eq!(f.json(&["destroy-all-of", "-ada"])["destroyed"], 0);
    Ok(())
}

// Issue 19: the findings of hostile testing, one test (or a few) each.

/// Runs sessionctl with `input` on its standard input, a pipe.
fn ctl_stdin(db: &Path, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sessionctl runs");
    let mut stdin = child.stdin.take().expect("a pipe");
    let input = input.to_vec();
    // Written from another thread, so that a child that stops reading cannot block the test.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("sessionctl ends");
    writer.join().expect("the writer ends");
    out
}

/// The names in `dir`.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("a directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Finding 1: import from a pipe, `-` or `/dev/stdin`, reads its input once
/// and imports every session; `export -` writes to standard output.
#[test]
fn import_reads_a_pipe_once_and_dash_means_stdin_and_stdout() -> TestResult {
    let f = Fixture::new()?;
    let out = Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .current_dir(f.dir.path())
        .args(["--db", "store", "export", "-"])
        .output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2);
    assert!(!f.path("-").exists(), "export - wrote a file named -");
    let text = out.stdout;

    for source in ["-", "/dev/stdin"] {
        let copy = f.path(&format!("copy{}", source.len()));
        let out = ctl_stdin(&copy, &["--json", "import", source], &text);
        assert!(out.status.success(), "{source}: {}", stderr(&out));
        let summary: Value = serde_json::from_slice(&out.stdout)?;
        assert_eq!(summary["imported"], 2, "{source}");
        assert_eq!(stdout(&ctl(&copy, &["export", "-"])).as_bytes(), text);
    }

    // Process substitution: a pipe under a /dev/fd name.
    let file = f.path("sessions.jsonl");
    std::fs::write(&file, &text)?;
    let copy = f.path("copy-fd");
    let script = format!(
        "{:?} --db {:?} --json import <(cat {:?})",
        env!("CARGO_BIN_EXE_sessionctl"),
        copy,
        file
    );
    let out = Command::new("bash").args(["-c", &script]).output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout)?["imported"], 2);
    Ok(())
}

/// Finding 1, the "done when": export piped into import moves every session,
/// and a second export is byte-identical.
#[test]
fn export_piped_into_import_moves_every_session_byte_identically() -> TestResult {
    let dir = tempfile::tempdir()?;
    let a = dir.path().join("a");
    let store = Config::new(&a)
        .durability(sessionstore::Durability::Periodic(Duration::from_secs(1)))
        .reap_interval(None)
        .open()?;
    for i in 0..1000u32 {
        let mut s = store.create()?;
        s.set("n", &i)?;
        s.set("name", &format!("user {i}"))?;
        store.save(&mut s)?;
    }
    drop(store);
    let first = ctl(&a, &["export", "-"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(first.stdout.iter().filter(|b| **b == b'\n').count(), 1000);
    let b = dir.path().join("b");
    let out = ctl_stdin(&b, &["import", "-"], &first.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "imported 1000 sessions from standard input, skipped 0 already expired\n"
    );
    assert!(ctl(&b, &["export", "-"]).stdout == first.stdout);
    Ok(())
}

/// Finding 2: an import that fails before writing leaves the directory as it
/// was, and a wrong --engine is answered with the flag that opens the store.
#[test]
fn a_failed_import_leaves_no_store_and_hints_name_flags() -> TestResult {
    let f = Fixture::new()?;
    let bad = f.path("bad.jsonl");
    std::fs::write(&bad, "{not json\n")?;
    let inputs = [
        f.path("missing.jsonl"),
        bad.clone(),
        f.dir.path().to_path_buf(),
    ];
    for input in &inputs {
        let target = f.path("new");
        one_line_error(&ctl(&target, &["import", input.to_str().ok_or("path")?]));
        assert!(!target.exists(), "{}: a store was left", input.display());
        // An existing empty directory stays empty.
        std::fs::create_dir(&target)?;
        one_line_error(&ctl(&target, &["import", input.to_str().ok_or("path")?]));
        assert!(names_in(&target).is_empty(), "{}", input.display());
        std::fs::remove_dir(&target)?;
    }
    // An empty input writes nothing, so it creates nothing either.
    let empty_input = f.path("empty.jsonl");
    std::fs::write(&empty_input, "")?;
    let target = f.path("new");
    assert_eq!(
        json_of(&target, &["import", empty_input.to_str().ok_or("path")?])["imported"],
        0
    );
    assert!(!target.exists());

    #[cfg(all(feature = "sled", feature = "redb"))]
    {
        let other = if Engine::default() == Engine::Redb {
            Engine::Sled
        } else {
            Engine::Redb
        };
        let err = one_line_error(&f.ctl(&["--engine", other.name(), "stats"]));
        assert!(
            err.contains(&format!("--engine {}", Engine::default().name())),
            "{err}"
        );
        assert!(!err.contains("Config::"), "{err}");
    }
    Ok(())
}

/// Finding 3: the help says which engine a new store gets.
#[test]
fn help_names_the_default_engine() -> TestResult {
    let out = Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .arg("--help")
        .output()?;
    assert!(out.status.success());
    let help = stdout(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let default = Engine::default().name();
    assert!(
        help.contains(&format!("the default engine ({default})")),
        "{help}"
    );
    Ok(())
}

/// Finding 4: destroying an expired session that is not reaped yet deletes it,
/// says so, and succeeds.
#[test]
fn destroy_of_an_expired_unreaped_session_succeeds_and_says_so() -> TestResult {
    let f = Fixture::new()?;
    let out = f.ctl(&["destroy", "old1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert!(stdout(&out).contains("expired"), "{}", stdout(&out));
    assert_eq!(ids(&f.json(&["list", "--expired"])), ["old2"]);
    let json = f.json(&["destroy", "old2"]);
    assert_eq!(json["destroyed"], "old2");
    assert_eq!(json["state"], "expired");
    assert_eq!(f.json(&["destroy", "alice"])["state"], "live");
    Ok(())
}

/// Finding 5: export refuses to replace a file without --force, keeps its
/// mode with --force, refuses a symlink, streams into a FIFO, and leaves no
/// temporary file.
#[cfg(unix)]
#[test]
fn export_does_not_clobber_files_links_or_fifos() -> TestResult {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let f = Fixture::new()?;
    let expected = f.ctl(&["export", "-"]).stdout;
    let out_dir = f.path("out");
    std::fs::create_dir(&out_dir)?;

    let existing = out_dir.join("existing.jsonl");
    std::fs::write(&existing, "precious\n")?;
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o640))?;
    let arg = existing.to_str().ok_or("path")?;
    let refused = one_line_error(&f.ctl(&["export", arg]));
    assert!(refused.contains("--force"), "{refused}");
    assert_eq!(std::fs::read_to_string(&existing)?, "precious\n");
    assert!(f.ctl(&["export", "--force", arg]).status.success());
    assert_eq!(std::fs::read(&existing)?, expected);
    let mode = std::fs::metadata(&existing)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "the mode was not kept");

    let new = out_dir.join("new.jsonl");
    assert!(
        f.ctl(&["export", new.to_str().ok_or("path")?])
            .status
            .success()
    );
    assert_eq!(std::fs::metadata(&new)?.permissions().mode() & 0o777, 0o600);

    let target = f.path("target.jsonl");
    std::fs::write(&target, "kept\n")?;
    let link = out_dir.join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link)?;
    for args in [&["export"][..], &["export", "--force"]] {
        let mut args = args.to_vec();
        args.push(link.to_str().ok_or("path")?);
        let err = one_line_error(&f.ctl(&args));
        assert!(err.contains("symbolic link"), "{err}");
    }
    assert!(std::fs::symlink_metadata(&link)?.file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&target)?, "kept\n");

    let fifo = out_dir.join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status()?.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo))
    };
    let out = f.ctl(&["export", fifo.to_str().ok_or("path")?]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(reader.join().map_err(|_| "reader")??, expected);
    assert!(std::fs::symlink_metadata(&fifo)?.file_type().is_fifo());

    assert_eq!(
        names_in(&out_dir),
        ["existing.jsonl", "fifo", "link.jsonl", "new.jsonl"],
        "no temporary file is left"
    );
    Ok(())
}

/// Finding 6: a store whose values exceed the default 1 MiB limit exports a
/// file that imports, and --max-value-size sets the limit.
#[test]
fn an_export_of_large_values_imports_and_the_limit_is_a_flag() -> TestResult {
    let dir = tempfile::tempdir()?;
    let a = dir.path().join("a");
    let store = Config::new(&a)
        .max_value_size(4 << 20)
        .reap_interval(None)
        .open()?;
    let mut s = store.create_new_session("big")?;
    s.set("blob", &vec![7u8; 2 << 20])?;
    store.save(&mut s)?;
    drop(store);
    let file = dir.path().join("big.jsonl");
    let file_arg = file.to_str().ok_or("path")?;
    json_of(&a, &["export", file_arg]);

    let b = dir.path().join("b");
    assert_eq!(json_of(&b, &["import", file_arg])["imported"], 1);
    assert_eq!(ctl(&b, &["export", "-"]).stdout, std::fs::read(&file)?);

    let c = dir.path().join("c");
    let err = one_line_error(&ctl(&c, &["import", "--max-value-size", "1000", file_arg]));
    assert!(err.contains("--max-value-size"), "{err}");
    assert!(!c.exists());
    // Over the library's ceiling: named as the flag, not as a library setting.
    let over = (64usize << 20) + 1;
    let err = one_line_error(&ctl(
        &c,
        &["import", "--max-value-size", &over.to_string(), file_arg],
    ));
    assert!(
        err.contains("--max-value-size") && err.contains("ceiling"),
        "{err}"
    );
    assert!(!err.contains("max_value_size"), "{err}");
    assert!(!c.exists());
    Ok(())
}

/// Finding 7: read-only commands never create a store, even in a directory
/// that holds a stale lock file.
#[test]
fn read_only_commands_never_create_a_store() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("store");
    std::fs::create_dir(&db)?;
    std::fs::write(db.join("sessionstore.lock"), "")?;
    for args in [
        &["stats"][..],
        &["list"],
        &["show", "x"],
        &["destroy", "x"],
        &["reap"],
        &["verify"],
        &["export", "-"],
    ] {
        let err = one_line_error(&ctl(&db, args));
        assert!(err.contains("no store at"), "{args:?}: {err}");
        assert_eq!(names_in(&db), ["sessionstore.lock"], "{args:?}");
    }
    Ok(())
}

/// Finding 8: import refuses lines that no export writes, and skips
/// sessions that already expired, counting them.
#[test]
fn import_is_strict_and_skips_expired_sessions() -> TestResult {
    let f = Fixture::new()?;
    let good = stdout(&f.ctl(&["export", "-"]));
    let alice = good.lines().find(|l| l.contains("alice")).ok_or("alice")?;
    let target = f.path("new");
    let cases = [
        (
            alice.replace("\"component\":\"prefs\"", "\"component\":\"cart\""),
            "listed twice",
        ),
        (
            alice.replace(
                &format!("\"last_access_us\":{}", micros(f.created)),
                &format!("\"last_access_us\":{}", u64::MAX),
            ),
            "9999-12-31",
        ),
        (
            alice.replace(
                "\"idle_timeout_us\":86400000000",
                &format!("\"idle_timeout_us\":{}", u64::MAX),
            ),
            "9999-12-31",
        ),
        (
            alice.replace(
                &format!("\"created_us\":{}", micros(f.created)),
                &format!("\"created_us\":{}", micros(f.created + 30 * DAY)),
            ),
            "in the future",
        ),
    ];
    for (i, (line, expected)) in cases.iter().enumerate() {
        assert_ne!(line, alice, "case {i} changed nothing");
        let file = f.path(&format!("strict{i}.jsonl"));
        std::fs::write(&file, format!("{line}\n"))?;
        let err = one_line_error(&ctl(&target, &["import", file.to_str().ok_or("path")?]));
        assert!(
            err.contains(expected) && err.contains("line 1"),
            "case {i}: {err}"
        );
        assert!(!target.exists(), "case {i}");
    }

    // An expired session: old2 as the library exports it.
    let store = Config::new(&f.db).reap_interval(None).open()?;
    let old2 = store.export_session("old2")?.ok_or("old2")?;
    drop(store);
    let file = f.path("mixed.jsonl");
    std::fs::write(&file, format!("{}\n{good}", serde_json::to_string(&old2)?))?;
    let out = ctl(&target, &["import", file.to_str().ok_or("path")?]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("imported 2 sessions")
            && stdout(&out).contains("skipped 1 already expired"),
        "{}",
        stdout(&out)
    );
    assert_eq!(json_of(&target, &["stats"])["expired_sessions"], 0);
    Ok(())
}

/// Finding 9: errors are one line naming the argument, file and line;
/// `--json` makes them JSON; global flags go anywhere.
#[test]
fn errors_name_what_is_wrong_and_flags_go_anywhere() -> TestResult {
    let f = Fixture::new()?;
    let good = stdout(&f.ctl(&["export", "-"]));
    let target = f.path("new");

    let mut bytes = good.as_bytes().to_vec();
    bytes.extend_from_slice(b"{\"v\":1,\"id\":\"\xff\xfe\"}\n");
    let file = f.path("latin1.jsonl");
    std::fs::write(&file, &bytes)?;
    let err = one_line_error(&ctl(&target, &["import", file.to_str().ok_or("path")?]));
    assert!(err.contains("line 3") && err.contains("UTF-8"), "{err}");

    // A byte order mark is accepted.
    let file = f.path("bom.jsonl");
    std::fs::write(&file, format!("\u{feff}{good}"))?;
    assert_eq!(
        json_of(&target, &["import", file.to_str().ok_or("path")?])["imported"],
        2
    );

    let out = Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .arg("stats")
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line_error(&out).contains("--db"), "{}", stderr(&out));
    let out = f.ctl(&["show"]);
    assert!(one_line_error(&out).contains("<SID>"), "{}", stderr(&out));

    let out = f.ctl(&["show", "alice", "--component", "bad/comp"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("\"bad/comp\""));

    let out = f.ctl(&["--json", "show", "carol"]);
    assert_eq!(out.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&out.stderr)?;
    assert!(
        err["error"].as_str().is_some_and(|e| e.contains("carol")),
        "{err}"
    );
    let out = f.ctl(&["--json", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let err: Value = serde_json::from_slice(&out.stderr)?;
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("frobnicate")),
        "{err}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .args(["stats", "--db"])
        .arg(&f.db)
        .args(["--engine", Engine::default().name(), "--json"])
        .output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout)?["live_sessions"],
        2
    );
    Ok(())
}

/// Finding 10: `verify` prints the library's report and exits 1 when the
/// store is not clean.
#[cfg(feature = "redb")]
#[test]
fn verify_reports_and_fails_on_an_unclean_store() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("store");
    let store = Config::new(&db)
        .engine(Engine::Redb)
        .reap_interval(None)
        .open()?;
    store.create_new_session("alice")?;
    drop(store);
    let report = json_of(&db, &["verify"]);
    assert_eq!(report["clean"], true);
    assert_eq!(report["sessions"], 1);
    assert!(stdout(&ctl(&db, &["verify"])).contains("clean"));

    // A data key whose session has no metadata record, written behind the store's back.
    {
        let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("sessionstore");
        let database = redb::Database::open(db.join("data.redb"))?;
        let tx = database.begin_write()?;
        tx.open_table(table)?.insert(&b"ghost//k"[..], &[1u8][..])?;
        tx.commit()?;
    }
    let out = ctl(&db, &["--json", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["clean"], false);
    assert_eq!(report["orphans"], serde_json::json!(["ghost//k"]));
    let err: Value = serde_json::from_slice(&out.stderr)?;
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("not clean")),
        "{err}"
    );
    Ok(())
}

#[test]
fn sessions_of_lists_a_principals_sessions_and_destroy_all_of_ends_them() -> TestResult {
    let f = Fixture::new()?;
    let store = Store::open(&f.db)?;
    store.set_principal("alice", Some("ada"))?;
    store.set_principal("bob", Some("ada"))?;
    drop(store);

    assert_eq!(stdout(&f.ctl(&["sessions-of", "ada"])), "alice\nbob\n");
    // `show` names the principal.
    assert_eq!(f.json(&["show", "bob"])["principal"], "ada");
    assert!(stdout(&f.ctl(&["show", "bob"])).contains("principal"));
    let listed = f.json(&["sessions-of", "ada"]);
    assert_eq!(listed["principal"], "ada");
    assert_eq!(listed["sessions"], serde_json::json!(["alice", "bob"]));
    assert_eq!(
        stdout(&f.ctl(&["sessions-of", "nobody"])),
        "no live sessions of \"nobody\"\n"
    );
    // A bad name is refused with one line naming it.
    let err = one_line_error(&f.ctl(&["sessions-of", "a\tb"]));
    assert!(err.contains("a\\tb"), "{err}");

    let destroyed = f.json(&["destroy-all-of", "ada"]);
    assert_eq!(destroyed["destroyed"], 2);
    assert_eq!(
        f.json(&["sessions-of", "ada"])["sessions"],
        serde_json::json!([])
    );
    let left = ids(&f.json(&["list"])).len();
    assert_eq!(left, 0, "alice and bob were the live sessions");
    assert_eq!(
        stdout(&f.ctl(&["destroy-all-of", "ada"])),
        "destroyed 0 live sessions of \"ada\"\n"
    );
    assert!(f.ctl(&["verify"]).status.success());
    Ok(())
}

#[cfg(feature = "redb")]
#[test]
fn verify_reports_a_broken_principal_index() -> TestResult {
    let f = Fixture::with_engine(Engine::Redb)?;
    // An index entry of a principal no session has, written behind the store's back.
    {
        let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("sessionstore");
        let database = redb::Database::open(f.db.join("data.redb"))?;
        let tx = database.begin_write()?;
        tx.open_table(table)?
            .insert(&b"@ghost\0alice"[..], &[][..])?;
        tx.commit()?;
    }
    let out = f.ctl(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("dangling principal entry: ghost → alice"),
        "{}",
        stdout(&out)
    );
    Ok(())
}

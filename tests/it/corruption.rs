//! Corruption: wrong bytes on disk give errors for what they touch and leave
//! the rest of the store working; a damaged engine file never takes the
//! process down.
use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use sessionstore::{Error, ImportMode, RawTarget, Result, Store};

const MIN: Duration = Duration::from_secs(60);

/// Log lines, captured for every test of this file (the logger is global).
static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        LOGS.lock()
            .expect("the log buffer")
            .push(format!("{} {}", record.level(), record.args()));
    }

    fn flush(&self) {}
}

fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&Capture).expect("the only logger");
        log::set_max_level(log::LevelFilter::Warn);
    });
}

fn logged(needle: &str) -> bool {
    LOGS.lock()
        .expect("the log buffer")
        .iter()
        .any(|l| l.contains(needle))
}

fn value(sid: &str, component: Option<&'static str>, key: &'static str) -> RawTarget<'static> {
    let sid: &'static str = Box::leak(sid.to_owned().into_boxed_str());
    RawTarget::Value {
        sid,
        component,
        key,
    }
}

engine_test!(garbage_under_a_data_key_fails_that_key_only, |db| {
    let store = db.open()?;
    let mut s = store.create_new_session("s")?;
    s.set("n", &7u64)?;
    s.set("name", "ada")?;
    store.save(&mut s)?;
    let mut other = store.create_new_session("t")?;
    other.set("n", &8u64)?;
    store.save(&mut other)?;

    // Bytes that no value of the type read can be: a string that is not
    // UTF-8, an empty u64, a bool of 7, a length claiming 2^64 bytes, trailing bytes.
    store.__write_raw(value("s", None, "text"), &[3, 0xFF, 0xFE, 0xFD])?;
    store.__write_raw(value("s", None, "empty"), &[])?;
    store.__write_raw(value("s", None, "flag"), &[7])?;
    store.__write_raw(
        value("s", None, "huge"),
        &[0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
    )?;
    store.__write_raw(value("s", Some("cart"), "extra"), &[1, 2, 3])?;

    let global = store.get("s", None)?.expect("the session still reads");
    let decode_err = |r: Result<Option<_>>, key: &str| match r {
        Err(Error::Decode { what, .. }) => assert!(what.contains(key), "{what}"),
        other => panic!("{key}: want Decode, got {other:?}"),
    };
    decode_err(global.get::<String>("text").map(|v| v.map(drop)), "text");
    decode_err(global.get::<u64>("empty").map(|v| v.map(drop)), "empty");
    decode_err(global.get::<bool>("flag").map(|v| v.map(drop)), "flag");
    decode_err(global.get::<Vec<u8>>("huge").map(|v| v.map(drop)), "huge");
    let cart = store.get("s", Some("cart"))?.expect("live");
    decode_err(cart.get::<u8>("extra").map(|v| v.map(drop)), "extra");
    // Every other key of the scope, and every other session, reads as before.
    assert_eq!(global.get::<u64>("n")?, Some(7));
    assert_eq!(global.get::<String>("name")?.as_deref(), Some("ada"));
    assert_eq!(
        store.get("t", None)?.expect("live").get::<u64>("n")?,
        Some(8)
    );

    // Saving other keys leaves the bad one as it was; removing it heals the scope.
    let mut global = global;
    global.set("n", &9u64)?;
    global.remove("text");
    store.save(&mut global)?;
    let again = store.get("s", None)?.expect("live");
    assert_eq!(again.get::<u64>("n")?, Some(9));
    assert_eq!(again.get_raw("text"), None);
    assert_eq!(again.get_raw("flag"), Some(&[7u8][..]));
    // Values are opaque to verify: the store's structure is sound.
    assert!(store.verify()?.is_ok());
    Ok(())
});

engine_test!(
    garbage_metadata_fails_that_session_and_the_reaper_skips_it,
    |db| {
        capture_logs();
        let store = db.open()?;
        // Unique ids: the log buffer is shared by the tests running in parallel.
        let bad = format!("bad-meta-{}", db.engine.name());
        for sid in ["a", bad.as_str(), "c"] {
            let mut s = store.create_new_session(sid)?;
            s.set("k", &1u8)?;
            store.save(&mut s)?;
        }
        let mut stale = store.get(&bad, None)?.expect("live");
        stale.set("k", &2u8)?;
        // The last: a known version byte followed by text (it was a unit test of its own).
        let garbage: [&[u8]; 4] = [&[1, 0xFF, 0xFF, 0xFF], &[], &[9, 0, 0], b"\x01garbage"];
        for bytes in garbage {
            store.__write_raw(RawTarget::Meta(&bad), bytes)?;
            let is_decode = |r: Result<()>, what: &str| match r {
                Err(Error::Decode { what: w, .. }) => assert!(w.contains(&bad), "{what}: {w}"),
                other => panic!("{what} of a corrupt session: want Decode, got {other:?}"),
            };
            is_decode(store.get(&bad, None).map(drop), "get");
            is_decode(store.info(&bad).map(drop), "info");
            is_decode(store.touch(&bad).map(drop), "touch");
            is_decode(store.regenerate(&bad).map(drop), "regenerate");
            is_decode(store.set_idle_timeout(&bad, None), "set_idle_timeout");
            is_decode(
                store.create_new_session(&bad).map(drop),
                "create_new_session",
            );
            is_decode(store.export_session(&bad).map(drop), "export_session");
            is_decode(store.save(&mut stale.clone()), "save");
            // The others are untouched, and listing and statistics still work.
            for sid in ["a", "c"] {
                assert_eq!(
                    store.get(sid, None)?.expect("live").get::<u8>("k")?,
                    Some(1)
                );
            }
            assert_eq!(store.session_ids().count(), 3);
            assert_eq!(store.stats()?.live_sessions, 3);
            let report = store.verify()?;
            assert_eq!(report.undecodable.len(), 1, "{report:?}");
            assert!(report.undecodable[0].contains(&bad), "{report:?}");
        }

        // The reaper deletes the two others when they expire, and skips and logs this one.
        db.clock.advance(11 * MIN);
        assert_eq!(store.reap_expired()?, 2);
        assert!(
            logged(&format!("skipped session {bad:?}")),
            "{:?}",
            LOGS.lock()
        );
        assert_eq!(
            store.expired_session_ids().count(),
            1,
            "its index entry is left"
        );
        assert!(store.get("a", None)?.is_none());

        // destroy removes what is left of it.
        assert!(store.destroy(&bad)?);
        assert!(store.get(&bad, None)?.is_none());
        assert_eq!(store.verify()?.sessions, 0);
        Ok(())
    }
);

// Found while writing the test above. Postmortem: `destroy` deletes every key
// under `{sid}/`, but it finds the index entry through the deadline in the
// metadata record; with the record unreadable the entry was left behind, so
// the destroyed id stayed in `session_ids`, in `stats().live_sessions` and in
// `verify`'s dangling entries until its deadline passed and the reaper tidied it.
engine_test!(
    destroying_a_session_with_corrupt_metadata_leaves_no_trace,
    |db| {
        let store = db.open()?;
        for sid in ["bad", "good"] {
            let mut s = store.create_new_session(sid)?;
            s.set("k", &1u8)?;
            store.save(&mut s)?;
        }
        store.__write_raw(RawTarget::Meta("bad"), &[1, 0xFF])?;
        assert!(store.destroy("bad")?);
        // Its expiry index entry must go with it: otherwise the destroyed id is
        // still listed, counted as live, and reported by verify until its deadline.
        let ids: Vec<String> = store.session_ids().collect::<Result<_>>()?;
        assert_eq!(ids, vec!["good".to_string()]);
        assert_eq!(store.stats()?.live_sessions, 1);
        let report = store.verify()?;
        assert!(report.is_ok(), "{report:?}");

        // The same holds for an import that replaces a corrupt session.
        let mut exported = store.export_session("good")?.expect("good is stored");
        exported.last_access += MIN;
        store.__write_raw(RawTarget::Meta("good"), &[1, 0xFF])?;
        store.import_session(&exported, ImportMode::Replace)?;
        let ids: Vec<String> = store.session_ids().collect::<Result<_>>()?;
        assert_eq!(ids, vec!["good".to_string()], "one index entry");
        let report = store.verify()?;
        assert!(report.is_ok(), "{report:?}");
        Ok(())
    }
);

engine_test!(stray_keys_and_index_entries_are_reported_and_tidied, |db| {
    let store = db.open()?;
    let mut s = store.create_new_session("s")?;
    s.set("k", &1u8)?;
    store.save(&mut s)?;
    // A key of no known shape, a data key of a session that does not exist,
    // a key under the session that is not UTF-8, an index entry of nobody.
    store.__write_raw(RawTarget::Key(b"zz"), b"?")?;
    store.__write_raw(value("ghost", None, "k"), &[1])?;
    store.__write_raw(RawTarget::Key(b"s//\xFF\xFE"), &[1])?;
    store.__write_raw(
        RawTarget::Index {
            deadline_micros: 5,
            sid: "nobody",
        },
        &[],
    )?;
    let report = store.verify()?;
    assert_eq!(report.orphans.len(), 1, "{report:?}");
    assert_eq!(report.dangling_index.len(), 1, "{report:?}");
    assert_eq!(report.undecodable.len(), 2, "{report:?}");

    // Reads skip what they cannot name.
    let global = store.get("s", None)?.expect("live");
    assert_eq!(global.keys().collect::<Vec<_>>(), vec!["k"]);
    assert!(store.get("ghost", None)?.is_none());
    // The reaper removes the index entry of nobody, destroy the session's stray key.
    assert_eq!(store.reap_expired()?, 0);
    assert!(store.destroy("s")?);
    let report = store.verify()?;
    assert!(report.dangling_index.is_empty(), "{report:?}");
    assert_eq!(
        report.undecodable.len(),
        1,
        "only \"zz\" is left: {report:?}"
    );
    Ok(())
});

// ---------------------------------------------------------------------------
// Damaged engine files, opened in a child process so an abort would show.

const CHILD_STORE: &str = "CORRUPTION_CHILD_STORE";
const SESSIONS: usize = 60;

engine_test!(a_damaged_engine_file_never_aborts_the_process, |db| {
    let mut db = db;
    if let Ok(path) = std::env::var(CHILD_STORE) {
        db.path = PathBuf::from(path);
        return child(&db);
    }
    let test = format!(
        "{}::{}",
        module_path!().split_once("::").map_or("", |p| p.1),
        db.engine.name()
    );
    parent(&db, &test)
});

/// Opens the damaged store and uses all of it; prints what happened.
fn child(db: &common::Db) -> Result<()> {
    let store = match db.open() {
        Ok(s) => s,
        Err(e) => {
            println!("OUTCOME open failed: {e}");
            return Ok(());
        }
    };
    let outcome = use_everything(&store);
    match outcome {
        Ok(summary) => println!("OUTCOME opened; {summary}"),
        Err(e) => println!("OUTCOME opened; then an error: {e}"),
    }
    Ok(())
}

fn use_everything(store: &Store) -> Result<String> {
    let report = store.verify()?;
    let mut readable = 0;
    let ids: Vec<String> = store.session_ids().collect::<Result<_>>()?;
    for id in &ids {
        for c in [None, Some("c")] {
            if let Ok(Some(scope)) = store.get(id, c) {
                readable += scope.keys().filter(|k| scope.get::<u64>(k).is_ok()).count();
            }
        }
    }
    store.reap_expired()?;
    let mut s = store.create()?;
    s.set("after", &1u8)?;
    store.save(&mut s)?;
    store.flush()?;
    Ok(format!(
        "{} sessions listed, {readable} values read, verify ok: {}, a new write succeeded",
        ids.len(),
        report.is_ok()
    ))
}

/// One way to damage a file: what it does, and doing it.
type Damage = (String, Box<dyn Fn(&Path)>);

/// Every damage done to one file of the store.
fn damages(len: u64, seed: u64) -> Vec<Damage> {
    let mut out: Vec<Damage> = Vec::new();
    let mut keeps = vec![0, 1, 100, 4096, len / 2, len.saturating_sub(1)];
    keeps.retain(|k| *k < len);
    keeps.dedup();
    for keep in keeps {
        out.push((
            format!("truncated to {keep} of {len} bytes"),
            Box::new(move |p: &Path| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .and_then(|f| f.set_len(keep))
                    .expect("truncating");
            }),
        ));
    }
    let offsets = (0..8).map(|i| len * i / 8).chain([len.saturating_sub(64)]);
    for (i, at) in offsets.enumerate() {
        let fill = seed.wrapping_add(i as u64);
        out.push((
            format!("64 random bytes at offset {at}"),
            Box::new(move |p: &Path| overwrite(p, at, 64, fill)),
        ));
    }
    out.push((
        "4 KiB of zeros in the middle".into(),
        Box::new(move |p: &Path| {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .expect("opening");
            f.seek(SeekFrom::Start(len / 2)).expect("seeking");
            f.write_all(&[0; 4096]).expect("writing");
        }),
    ));
    out.push((
        "every 512th byte flipped".into(),
        Box::new(move |p: &Path| {
            let mut bytes = std::fs::read(p).expect("reading");
            for b in bytes.iter_mut().step_by(512) {
                *b ^= 0xFF;
            }
            std::fs::write(p, bytes).expect("writing");
        }),
    ));
    out
}

fn overwrite(path: &Path, at: u64, n: usize, seed: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut x = seed | 1;
    let junk: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("opening");
    f.seek(SeekFrom::Start(at)).expect("seeking");
    f.write_all(&junk).expect("writing");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("a copy");
    for entry in std::fs::read_dir(from).expect("listing") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copying");
        }
    }
}

fn parent(db: &common::Db, test: &str) -> Result<()> {
    {
        let store = db.open()?;
        for i in 0..SESSIONS {
            let mut s = store.create_new_session(&format!("s{i}"))?;
            for k in 0..8u64 {
                s.set(&format!("k{k}"), &(i as u64 * 100 + k))?;
            }
            store.save(&mut s)?;
            let mut c = store.get(s.id(), Some("c"))?.expect("live");
            c.set("big", &vec![i as u8; 3000])?;
            store.save(&mut c)?;
        }
    }
    let mut files: Vec<String> = std::fs::read_dir(&db.path)
        .expect("listing the store")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "sessionstore.lock")
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let child_tmp = db.dir.path().join("child-tmp");
    std::fs::create_dir_all(&child_tmp).expect("a directory");
    let mut failures = Vec::new();
    let mut n = 0;
    for file in &files {
        let len = std::fs::metadata(db.path.join(file)).expect("a file").len();
        for (what, damage) in damages(len, n) {
            n += 1;
            let copy = db.dir.path().join(format!("damaged-{n}"));
            copy_dir(&db.path, &copy);
            damage(&copy.join(file));
            let line = format!("{}: {file} {what}", db.engine);
            match run_child(test, &copy, &child_tmp) {
                Ok(outcome) => println!("{line}: {outcome}"),
                Err(e) => {
                    println!("{line}: FAILED: {e}");
                    failures.push(format!("{line}: {e}"));
                }
            }
            std::fs::remove_dir_all(&copy).ok();
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} damaged stores took the process down or hung:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

/// Runs the child on the damaged store; `Err` if it did not end normally with an outcome.
fn run_child(test: &str, store: &Path, tmp: &Path) -> std::result::Result<String, String> {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_STORE, store)
        .env("TMPDIR", tmp)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the child");
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(std::result::Result::ok)
            .collect::<Vec<_>>()
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).ok();
        s
    });
    // Not a speed limit: a child that takes this long is hung.
    let give_up = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("polling") {
            break Some(status);
        }
        if Instant::now() > give_up {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines = out.join().expect("the stdout reader");
    let stderr = err.join().expect("the stderr reader");
    let outcome = lines
        .iter()
        .find_map(|l| l.split_once("OUTCOME ").map(|(_, o)| o.to_owned()));
    match (status, outcome) {
        (None, _) => Err("hung for 60 s".into()),
        (Some(s), Some(o)) if s.success() => Ok(o),
        (Some(s), _) => Err(format!(
            "the child ended with {s}:\n{}",
            stderr.lines().take(12).collect::<Vec<_>>().join("\n")
        )),
    }
}

engine_test!(
    a_damaged_time_floor_is_ignored_and_new_sessions_live,
    |db| {
        for damage in [&u64::MAX.to_be_bytes()[..], b"\x01\x02\x03"] {
            {
                let store = db.open()?;
                store.__write_raw(RawTarget::Key(b"#clock"), damage)?;
            }
            let store = db.open()?;
            let s = store.create()?;
            assert!(
                store.get(s.id(), None)?.is_some(),
                "a new session is live after the floor read {damage:?}"
            );
        }
        Ok(())
    }
);

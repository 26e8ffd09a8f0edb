//! Dropping the last handle flushes: with `Periodic` durability and an
//! interval far longer than the test, a child process saves, drops its store,
//! and is then killed with SIGKILL. The data must be there after a reopen.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sessionstore::{Config, Durability, Engine};

const CHILD: &str = "SESSIONSTORE_DROP_FLUSH_CHILD";

fn child(path: &str, engine: Engine) -> sessionstore::Result<()> {
    let store = Config::new(path)
        .engine(engine)
        .durability(Durability::Periodic(Duration::from_secs(3600)))
        .reap_interval(None)
        .open()?;
    let mut s = store.create_new_session("kept")?;
    s.set("k", "v")?;
    store.save(&mut s)?;
    drop(store);
    println!("dropped");
    loop {
        std::thread::park();
    }
}

engine_test!(dropping_the_last_handle_flushes, |db| {
    if let Ok(path) = std::env::var(CHILD) {
        let engine = std::env::var("ENGINE")
            .unwrap_or_default()
            .parse()
            .expect("an engine name");
        return child(&path, engine);
    }
    let mut proc = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            &format!(
                "{}::{}",
                module_path!().split_once("::").map_or("", |p| p.1),
                db.engine.name()
            ),
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, &db.path)
        .env("ENGINE", db.engine.name())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = proc.stdout.take().expect("piped stdout");
    let saw_drop = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l == "dropped");
    proc.kill().expect("kill the child");
    proc.wait().expect("reap the child");
    assert!(saw_drop, "the child never reached its drop");
    let store = db.open()?;
    let s = store
        .get("kept", None)?
        .expect("the session survived the kill");
    assert_eq!(s.get::<String>("k")?.as_deref(), Some("v"));
    Ok(())
});

// A clean close checkpoints the engine and removes the journal: the closed
// store is its engine files, an empty `journal/` and its reserve, and a
// reopen replays nothing yet holds every write.
engine_test!(a_clean_close_leaves_an_empty_journal, |db| {
    let store = db
        .config()
        .durability(Durability::Periodic(Duration::from_secs(3600)))
        .open()?;
    for i in 0..300 {
        let mut s = store.create_new_session(&format!("s{i}"))?;
        s.set("k", &i)?;
        store.save(&mut s)?;
    }
    let journal = db.path.join("journal");
    let segments = || std::fs::read_dir(&journal).map(|d| d.count()).unwrap_or(0);
    assert!(segments() >= 1, "the open store journals its writes");
    drop(store);
    assert_eq!(segments(), 0, "the journal is empty after a clean close");
    let store = db.open()?;
    for i in 0..300 {
        let s = store
            .get(&format!("s{i}"), None)?
            .expect("live after the reopen");
        assert_eq!(s.get::<i32>("k")?, Some(i));
    }
    Ok(())
});

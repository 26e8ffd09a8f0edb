//! How long a reopen takes after `kill -9` with the journal full: a store
//! of 10,000 live sessions, a child process that saves from 16 threads
//! until it is killed, then the time to `open` (replay included) and to the
//! first `get`.
//!
//! ```sh
//! cargo run --release --example reopen_after_kill -- [ENGINE] [ROUNDS]
//! ```

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sessionstore::{Config, Durability, Engine, Result, Store};

const SESSIONS: usize = 10_000;
const CHILD: &str = "REOPEN_CHILD_STORE";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let engine: Engine = args.next().map_or(Ok(Engine::default()), |e| e.parse())?;
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    if let Ok(path) = std::env::var(CHILD) {
        return child(&path, engine);
    }
    let dir = tempfile::tempdir().map_err(|e| sessionstore::Error::Io {
        path: std::env::temp_dir(),
        source: e,
    })?;
    let path = dir.path().join("store");
    {
        let store = Config::new(&path)
            .engine(engine)
            .durability(Durability::Periodic(Duration::from_secs(1)))
            .reap_interval(None)
            .open()?;
        for _ in 0..SESSIONS {
            let mut s = store.create()?;
            s.set("user", &"someone")?;
            store.save(&mut s)?;
        }
    }
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().expect("the example's path"))
            .arg(engine.name())
            .env(CHILD, &path)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawning the writer");
        std::thread::sleep(Duration::from_millis(2500 + 300 * round as u64));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaping the writer");
        let journal: u64 = std::fs::read_dir(path.join("journal"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let start = Instant::now();
        let store = Config::new(&path)
            .engine(engine)
            .reap_interval(None)
            .open()?;
        let opened = start.elapsed();
        let live = store.stats()?.live_sessions;
        let first = store.session_ids().next().transpose()?;
        if let Some(sid) = first {
            store.get(&sid, None)?;
        }
        let ready = start.elapsed();
        println!(
            "round {round}: engine={} journal_files={journal} bytes live={live} open={:.1} ms first_get={:.1} ms",
            engine.name(),
            opened.as_secs_f64() * 1e3,
            ready.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Saves from 16 threads until killed.
fn child(path: &str, engine: Engine) -> Result<()> {
    let store = Config::new(path)
        .engine(engine)
        .reap_interval(None)
        .open()?;
    let ids: Vec<String> = store.session_ids().take(1000).collect::<Result<_>>()?;
    std::thread::scope(|scope| {
        for t in 0..16 {
            let store: &Store = &store;
            let ids = &ids;
            scope.spawn(move || {
                let mut n = 0usize;
                loop {
                    let sid = &ids[(t * 61 + n) % ids.len()];
                    if let Ok(Some(mut s)) = store.get(sid, None) {
                        let _ = s.set("n", &n);
                        let _ = store.save(&mut s);
                    }
                    n += 1;
                }
            });
        }
    });
    Ok(())
}

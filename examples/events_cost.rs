//! What lifecycle events and principals cost, for docs/performance.md.
//!
//! ```text
//! cargo run --release --example events_cost -- save     none|reader|unread N
//! cargo run --release --example events_cost -- cycle    none|reader|unread N
//! cargo run --release --example events_cost -- destroy-all-of SESSIONS MINE [ENGINE]
//! cargo run --release --example events_cost -- fanout SUBSCRIBERS unread|drained N
//! ```
//!
//! - `save`: N saves of one key of one session, with no subscriber, with
//!   one that reads every event on a thread of its own (`reader`), or with
//!   one that never reads (`unread`: its channel is full after 1,024 events,
//!   so every later send is a counted drop). The saves run in the function
//!   `measured`, so that `valgrind --tool=callgrind
//!   --toggle-collect='*events_cost*measured*'` counts the writer's
//!   instructions only.
//! - `cycle`: N times create a session and destroy it: two events each.
//! - `destroy-all-of`: SESSIONS sessions, MINE of them of principal `ada`;
//!   prints the wall-clock time of `sessions_of("ada")` and
//!   `destroy_all_of("ada")`, and checks that exactly MINE were destroyed.
//!
//! - `fanout`: N create + destroy cycles under `Durability::Periodic(1 s)`
//!   with SUBSCRIBERS subscribers (0, 1, 100, 2000 ...) that never read
//!   (`unread`) or that one thread of their own empties in turn (`drained`);
//!   prints events per second of the writer (wall clock) and what the
//!   subscribers received. The cycles run in `measured_cycles`, so that
//!   callgrind's `--toggle-collect='*events_cost*measured*'` counts the
//!   writer's thread only (the dispatcher thread's fan-out is not in it; a
//!   run without the toggle counts both).
//!
//! `save` and `cycle` use a temporary store with the defaults (redb,
//! `Durability::Immediate`). `destroy-all-of` fills a store on redb (or
//! ENGINE) without a flush per write, then reopens it with the defaults and
//! measures there; `destroy_all_of` flushes once at its end.

use std::time::{Duration, Instant};

use sessionstore::{Config, Durability, Engine, Result, Store};

fn usage() -> ! {
    eprintln!(
        "usage: events_cost save|cycle none|reader|unread N | destroy-all-of SESSIONS MINE [ENGINE] | fanout SUBSCRIBERS unread|drained N"
    );
    std::process::exit(2)
}

fn number(arg: Option<String>) -> usize {
    arg.and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or_else(|| usage())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| usage());
    if what == "fanout" {
        let subscribers = number(args.next());
        let mode = args.next().unwrap_or_else(|| usage());
        let n = number(args.next());
        return fanout(subscribers, &mode, n);
    }
    if what == "destroy-all-of" {
        let sessions = number(args.next());
        let mine = number(args.next());
        let engine = args
            .next()
            .map_or(Ok(Engine::default()), |e| e.parse::<Engine>())
            .unwrap_or_else(|e| {
                eprintln!("{e}");
                usage()
            });
        return destroy_all_of(sessions, mine, engine);
    }
    let mode = args.next().unwrap_or_else(|| usage());
    let n = number(args.next());
    let store = Config::temporary().reap_interval(None).open()?;
    let receiver = match mode.as_str() {
        "none" => None,
        "reader" | "unread" => Some(store.subscribe()),
        _ => usage(),
    };
    let reader = match (mode.as_str(), receiver) {
        ("reader", Some(rx)) => Some(std::thread::spawn(move || rx.iter().count())),
        (_, rx) => {
            // Held unread (or none): dropped at the end of main.
            std::mem::forget(rx);
            None
        }
    };
    let started = Instant::now();
    match what.as_str() {
        "save" => measured_saves(&store, n)?,
        "cycle" => measured_cycles(&store, n)?,
        _ => usage(),
    }
    let took = started.elapsed();
    drop(store);
    let received = reader.map(|r| r.join().unwrap_or(0));
    println!(
        "{what} {mode} n={n}: {:.1} µs per operation (wall clock){}",
        took.as_secs_f64() * 1e6 / n as f64,
        received.map_or(String::new(), |r| format!(", reader received {r} events"))
    );
    Ok(())
}

#[inline(never)]
fn measured_saves(store: &Store, n: usize) -> Result<()> {
    let mut s = store.create()?;
    for i in 0..n {
        s.set("k", &(i as u64))?;
        store.save(&mut s)?;
    }
    Ok(())
}

#[inline(never)]
fn measured_cycles(store: &Store, n: usize) -> Result<()> {
    for _ in 0..n {
        let s = store.create()?;
        store.destroy(s.id())?;
    }
    Ok(())
}

fn fanout(subscribers: usize, mode: &str, n: usize) -> Result<()> {
    let store = Config::temporary()
        .reap_interval(None)
        .durability(Durability::Periodic(Duration::from_secs(1)))
        .open()?;
    let receivers: Vec<_> = (0..subscribers).map(|_| store.subscribe()).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (reader, kept) = match mode {
        "unread" => (None, receivers),
        "drained" => {
            let stop = stop.clone();
            let reader = std::thread::spawn(move || {
                let mut received = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for rx in &receivers {
                        received += rx.try_iter().count();
                    }
                    std::thread::yield_now();
                }
                received
            });
            (Some(reader), Vec::new())
        }
        _ => usage(),
    };
    let started = Instant::now();
    measured_cycles(&store, n)?;
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let received = reader.map(|r| r.join().unwrap_or(0));
    let held: usize = kept.iter().map(|rx| rx.len()).sum();
    println!(
        "fanout {subscribers} {mode} n={n}: {:.0} events/s of the writer (wall clock, 2 per cycle); subscribers {}",
        2.0 * n as f64 / took.as_secs_f64(),
        received.map_or(format!("hold {held} events unread"), |r| format!(
            "received {r} events while it ran"
        ))
    );
    drop(kept);
    Ok(())
}

fn destroy_all_of(sessions: usize, mine: usize, engine: Engine) -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| sessionstore::Error::Io {
        path: std::env::temp_dir(),
        source: e,
    })?;
    let path = dir.path().join("store");
    // Filled without a flush per write, then reopened with the defaults to measure.
    let fill = Config::new(&path)
        .engine(engine)
        .reap_interval(None)
        .durability(Durability::Periodic(Duration::from_secs(1)));
    let store = fill.open()?;
    let every = (sessions / mine.max(1)).max(1);
    let mut owned = 0;
    for i in 0..sessions {
        let s = store.create()?;
        if i % every == 0 && owned < mine {
            store.set_principal(s.id(), Some("ada"))?;
            owned += 1;
        }
    }
    drop(store);
    let store = Config::new(&path)
        .engine(engine)
        .reap_interval(None)
        .open()?;
    let started = Instant::now();
    let listed = store.sessions_of("ada")?.len();
    let list_took = started.elapsed();
    let started = Instant::now();
    let destroyed = store.destroy_all_of("ada")?;
    let destroy_took = started.elapsed();
    assert_eq!((listed, destroyed), (owned, owned));
    let left = store.stats()?.live_sessions;
    assert_eq!(left as usize, sessions - owned);
    println!(
        "{engine}: {owned} sessions of ada among {sessions}: sessions_of {:.2} ms, destroy_all_of {:.2} ms (wall clock, default config)",
        list_took.as_secs_f64() * 1e3,
        destroy_took.as_secs_f64() * 1e3
    );
    Ok(())
}

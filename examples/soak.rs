//! Churn soak: a live set of sessions, each with 8 keys in 4 components; every
//! cycle destroys the oldest session and creates a new one. Not part of
//! `cargo test`: run it by hand.
//!
//! ```sh
//! cargo run --release --example soak -- --cycles 300000 --durability immediate --threads 1 --engine sled
//! ```
//!
//! Flags (defaults in brackets):
//! - `--cycles N` [2000000]: destroy-and-create cycles in all.
//! - `--durability immediate|periodic[:MS]` [immediate]: `periodic` flushes every MS ms [200].
//! - `--threads N` [1]: writer threads; each churns its own share of the live set.
//! - `--engine sled|redb` [the default engine, `Engine::default()`].
//! - `--live N` [10000]: sessions alive at any time.
//! - `--report-every N` [100000]: cycles between progress lines.
//! - `--stall-secs N` [15]: no completed cycle for this long is a stall.
//! - `--dir PATH` [a new temporary directory]: where the store lives.
//!
//! Every report prints cycles/s, bytes on disk (allocated blocks of the store's
//! files) and their ratio to the live raw data, bytes written to storage per
//! cycle since the last report (`write_bytes` of `/proc/self/io`), and the
//! resident set size. A
//! watchdog prints every thread's stack with gdb and exits with status 2 if
//! no cycle completes for `--stall-secs`. At the end the store is reopened and
//! must hold exactly the live set, every key of it, and pass `verify`.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sessionstore::{Config, Durability, Engine, Store};

const COMPONENTS: [&str; 4] = ["cart", "prefs", "auth", "flash"];
const KEYS_PER_COMPONENT: usize = 2;
const VALUE_LEN: usize = 48;

struct Args {
    cycles: u64,
    durability: Durability,
    threads: usize,
    engine: Engine,
    live: usize,
    report_every: u64,
    stall: Duration,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        cycles: 2_000_000,
        durability: Durability::Immediate,
        threads: 1,
        engine: Engine::default(),
        live: 10_000,
        report_every: 100_000,
        stall: Duration::from_secs(15),
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--cycles" => a.cycles = num(value()?)?,
            "--threads" => a.threads = num(value()?)?.max(1) as usize,
            "--live" => a.live = num(value()?)?.max(1) as usize,
            "--report-every" => a.report_every = num(value()?)?.max(1),
            "--stall-secs" => a.stall = Duration::from_secs(num(value()?)?),
            "--dir" => a.dir = Some(PathBuf::from(value()?)),
            "--engine" => a.engine = value()?.parse().map_err(|e| format!("{e}"))?,
            "--durability" => {
                let v = value()?;
                a.durability = match v.split_once(':') {
                    None if v == "immediate" => Durability::Immediate,
                    None if v == "periodic" => Durability::Periodic(Duration::from_millis(200)),
                    Some(("periodic", ms)) => {
                        Durability::Periodic(Duration::from_millis(num(ms.into())?))
                    }
                    _ => {
                        return Err(format!(
                            "--durability {v}: immediate, periodic or periodic:MS"
                        ));
                    }
                };
            }
            "-h" | "--help" => return Err("see the doc comment of examples/soak.rs".into()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// The value of key `k` of component `c` of session `sid`: derived from them,
/// so the final check knows what every key must hold.
fn value(sid: &str, c: usize, k: usize) -> String {
    let mut v = format!("{sid}:{c}:{k}:");
    while v.len() < VALUE_LEN {
        v.push('.');
    }
    v
}

fn key(k: usize) -> String {
    format!("k{k}")
}

/// Creates a session with all its keys: one create and one save per component.
fn create(store: &Store) -> sessionstore::Result<String> {
    let s = store.create()?;
    let sid = s.id().to_owned();
    for (c, component) in COMPONENTS.iter().enumerate() {
        let mut scope = store
            .get(&sid, Some(component))?
            .ok_or_else(|| sessionstore::Error::NotFound { id: sid.clone() })?;
        for k in 0..KEYS_PER_COMPONENT {
            scope.set(&key(k), &value(&sid, c, k))?;
        }
        store.save(&mut scope)?;
    }
    Ok(sid)
}

/// Allocated bytes of every file under `dir`.
fn bytes_on_disk(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => bytes_on_disk(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Bytes this process has caused to be written to storage (`write_bytes` of
/// `/proc/self/io`), 0 where that is not available.
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Raw bytes of one live session: its keys' names and encoded values.
fn raw_bytes_per_session() -> u64 {
    let per_key = key(0).len() + VALUE_LEN + 1;
    (COMPONENTS.len() * KEYS_PER_COMPONENT * per_key) as u64
}

/// Prints every thread's stack with gdb, then exits with status 2.
fn stall_report(stalled_for: Duration, done: u64) -> ! {
    eprintln!("STALL: no cycle completed for {stalled_for:?} (after {done} cycles); thread dump:");
    let pid = std::process::id().to_string();
    match std::process::Command::new("gdb")
        .args(["-p", &pid, "-batch", "-ex", "thread apply all bt"])
        .output()
    {
        Ok(out) => {
            eprintln!("{}", String::from_utf8_lossy(&out.stdout));
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        }
        Err(e) => eprintln!("could not run gdb: {e}"),
    }
    std::process::exit(2);
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let path = args.dir.clone().unwrap_or_else(|| temp.path().join("soak"));
    let config = || {
        Config::new(&path)
            .engine(args.engine)
            .durability(args.durability)
            .idle_timeout(Duration::from_secs(7 * 24 * 3600))
    };
    println!(
        "soak: engine {}, {:?}, {} thread(s), {} live sessions x {} keys in {} components, {} cycles, store in {}",
        args.engine,
        args.durability,
        args.threads,
        args.live,
        COMPONENTS.len() * KEYS_PER_COMPONENT,
        COMPONENTS.len(),
        args.cycles,
        path.display()
    );
    let store = config().open()?;

    // Fill the live set: each thread owns a FIFO of its share, and fills it.
    let started = Instant::now();
    let fillers: Vec<_> = (0..args.threads)
        .map(|t| {
            let store = store.clone();
            let share = args.live / args.threads + usize::from(t < args.live % args.threads);
            std::thread::spawn(move || -> sessionstore::Result<VecDeque<String>> {
                (0..share).map(|_| create(&store)).collect()
            })
        })
        .collect();
    let mut fifos = Vec::new();
    for f in fillers {
        fifos.push(f.join().map_err(|_| "a filler thread panicked")??);
    }
    let raw_live = raw_bytes_per_session() * args.live as u64;
    println!(
        "filled {} sessions in {:.1?}; raw live data {raw_live} bytes; on disk {} bytes; RSS {} KiB",
        args.live,
        started.elapsed(),
        bytes_on_disk(&path),
        rss_kib()
    );

    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (done, finished, stall) = (done.clone(), finished.clone(), args.stall);
        std::thread::Builder::new()
            .name("soak-watchdog".into())
            .spawn(move || {
                let (mut last, mut since) = (done.load(Ordering::Relaxed), Instant::now());
                while !finished.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    let now = done.load(Ordering::Relaxed);
                    if now != last {
                        (last, since) = (now, Instant::now());
                    } else if since.elapsed() >= stall {
                        stall_report(since.elapsed(), now);
                    }
                }
            })?
    };

    let cycles_per_thread = args.cycles / args.threads as u64;
    let total = cycles_per_thread * args.threads as u64;
    let start = Instant::now();
    let written_at_start = written_bytes();
    let reporter = {
        let (done, finished, store, path) =
            (done.clone(), finished.clone(), store.clone(), path.clone());
        let every = args.report_every;
        std::thread::Builder::new().name("soak-report".into()).spawn(move || {
            let (mut next, mut last_at, mut last_n) = (every, Instant::now(), 0u64);
            let mut last_written = written_bytes();
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let n = done.load(Ordering::Relaxed);
                if n >= next {
                    let disk = bytes_on_disk(&path);
                    let engine_bytes = store.stats().map(|s| s.bytes_on_disk).unwrap_or(0);
                    let written = written_bytes();
                    println!(
                        "cycles {n}: {:.0} cycles/s (overall {:.0}); on disk {disk} bytes ({:.1}x live raw; engine says {engine_bytes}); written {:.0} bytes/cycle; RSS {} KiB",
                        (n - last_n) as f64 / last_at.elapsed().as_secs_f64(),
                        n as f64 / start.elapsed().as_secs_f64(),
                        disk as f64 / raw_live as f64,
                        written.saturating_sub(last_written) as f64 / (n - last_n).max(1) as f64,
                        rss_kib()
                    );
                    (last_at, last_n, last_written) = (Instant::now(), n, written);
                    while next <= n {
                        next += every;
                    }
                }
            }
        })?
    };

    let workers: Vec<_> = fifos
        .into_iter()
        .enumerate()
        .map(|(t, mut fifo)| {
            let (store, done) = (store.clone(), done.clone());
            std::thread::Builder::new()
                .name(format!("soak-writer-{t}"))
                .spawn(move || -> sessionstore::Result<VecDeque<String>> {
                    for _ in 0..cycles_per_thread {
                        if let Some(oldest) = fifo.pop_front() {
                            store.destroy(&oldest)?;
                        }
                        fifo.push_back(create(&store)?);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(fifo)
                })
        })
        .collect::<Result<_, _>>()?;
    let mut live = BTreeSet::new();
    let mut failure = None;
    for w in workers {
        match w.join() {
            Ok(Ok(fifo)) => live.extend(fifo),
            Ok(Err(e)) => failure = Some(e.to_string()),
            Err(_) => failure = Some("a writer thread panicked".into()),
        }
    }
    let elapsed = start.elapsed();
    finished.store(true, Ordering::Relaxed);
    reporter.join().map_err(|_| "the report thread panicked")?;
    watchdog.join().map_err(|_| "the watchdog panicked")?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    println!(
        "done: {total} cycles in {elapsed:.1?}: {:.0} cycles/s; on disk {} bytes ({:.1}x live raw); written {:.0} bytes/cycle; RSS {} KiB",
        total as f64 / elapsed.as_secs_f64(),
        bytes_on_disk(&path),
        bytes_on_disk(&path) as f64 / raw_live as f64,
        written_bytes().saturating_sub(written_at_start) as f64 / total.max(1) as f64,
        rss_kib()
    );

    // Reopen, and check that exactly the live set remains with every key.
    drop(store);
    let reopen = Instant::now();
    let store = config().reap_interval(None).open()?;
    let stored: BTreeSet<String> = store.session_ids().collect::<sessionstore::Result<_>>()?;
    if stored != live {
        return Err(format!(
            "after reopening, {} sessions are stored, {} should be; {} missing, {} extra",
            stored.len(),
            live.len(),
            live.difference(&stored).count(),
            stored.difference(&live).count()
        )
        .into());
    }
    for sid in &live {
        for (c, component) in COMPONENTS.iter().enumerate() {
            let scope = store
                .get(sid, Some(component))?
                .ok_or_else(|| format!("{sid} is not live"))?;
            for k in 0..KEYS_PER_COMPONENT {
                let got = scope.get::<String>(&key(k))?;
                if got.as_deref() != Some(value(sid, c, k).as_str()) {
                    return Err(format!("{sid} {component} {}: {got:?}", key(k)).into());
                }
            }
        }
    }
    let report = store.verify()?;
    if !report.is_ok() || report.sessions != live.len() as u64 {
        return Err(format!("verify: {report:?}").into());
    }
    println!(
        "verified after reopening ({:.1?}): exactly the {} live sessions, every key; verify ok",
        reopen.elapsed(),
        live.len()
    );
    Ok(())
}

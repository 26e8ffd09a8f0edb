//! `perf_report --scale [TOP]`: how the store's per-operation costs grow
//! with the number of live sessions, beside SQLite's, in one run.
//!
//! For each size (TOP / 100, TOP / 10 and TOP live sessions; TOP defaults to
//! 1,000,000) it builds a store (the default engine) and a SQLite database
//! holding the same sessions, each with 8 keys of 32 bytes in its global
//! scope and 8 in a component's, and no idle timeout, so that they stay
//! live while the clock moves. The build is bulk and not durable, since it
//! is not what is measured: the store imports each session in one batch
//! (`import_session`) from several threads under `Durability::Periodic(1 h)`;
//! SQLite inserts 10,000 sessions per transaction with `synchronous=OFF`.
//! Both are then closed cleanly, and measured:
//!
//! - **open**: a new process opens the closed store (default `Config`, with
//!   [`Config::verify_on_open`] off, and once more with it on) or the SQLite
//!   database and reads one session: the time from the start of the open to
//!   the end of that first `get`, and the process's peak RSS (VmHWM). The
//!   page cache is warm (the files were just written). The median of 5
//!   processes; the RSS rows also with a 2 GiB `cache_capacity`.
//! - **uniform get**: the global scope of a session drawn uniformly from
//!   all of them.
//! - **durable save**: one key saved into the global scope of a session
//!   drawn uniformly, `Durability::Immediate` against `synchronous=FULL`;
//!   the read of the scope before it is not timed.
//! - **reap per session**: 1,000 sessions created (and saved with one key)
//!   with the default idle timeout among the live ones, the clock moved past it, and one reap
//!   timed; divided by 1,000.
//!
//! With `SCALE_OPEN_BASELINE=PATH` in the environment, the open processes
//! of the store are also run with the `perf_report` binary at PATH (another
//! build of this program, such as one of an earlier commit), on the same
//! files in the same run, in two more rows: a before/after of the open.
//!
//! The store and SQLite are measured in interleaved rounds (5), each cell
//! the median. Growth is a figure at TOP over the same figure at TOP / 100;
//! the last column divides the store's growth by SQLite's (the issue's
//! target: at most 1.5).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use sessionstore::{
    Clock, Config, Durability, ExportedScope, ExportedSession, ImportMode, ManualClock,
};

use super::common::StoreContender;
use super::common::contender::{COMPONENT, Contender, IDLE, Mode, key_names, values};
use super::common::sqlite::{self, Sqlite};
use super::common::workload::KEYS;

/// Rounds per cell; the cell is their median.
const ROUNDS: usize = 5;
/// Processes per open cell; the cell is their median.
const OPENS: usize = 5;
/// Measured time per round per contender, for gets.
const GET_BUDGET: Duration = Duration::from_millis(400);
/// Durable saves per round per contender.
const SAVES: usize = 100;
/// Sessions expired and reaped per round.
const REAP: usize = 1_000;
/// Threads importing the store's sessions.
const BUILD_THREADS: usize = 4;
/// Sessions per SQLite transaction while building.
const SQL_CHUNK: usize = 10_000;
/// The large cache of the RSS rows.
const BIG_CACHE: u64 = 2 << 30;

/// The configuration every measurement opens the store with: the defaults,
/// the contenders' idle timeout, no reaper thread, and `clock`.
pub fn store_config(path: &Path, clock: Arc<dyn Clock>) -> Config {
    Config::new(path)
        .idle_timeout(IDLE)
        .reap_interval(None)
        .clock(clock)
}

/// A small PRNG (xorshift64*), so that both contenders get the same ids and draws.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `n` session ids as the store draws them (16 bytes, URL-safe base64), from a fixed seed.
fn ids(n: usize) -> Vec<String> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&rng.next().to_le_bytes());
            bytes[8..].copy_from_slice(&rng.next().to_le_bytes());
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        })
        .collect()
}

/// Writes every session of `ids` into a new store at `path`, in bulk, and closes it.
fn build_store(path: &Path, ids: &[String], clock: &ManualClock) {
    let store = store_config(path, Arc::new(clock.clone()))
        .durability(Durability::Periodic(Duration::from_secs(3600)))
        .open()
        .expect("opening the store to build");
    let now = clock.now();
    let vals = values(key_names(KEYS), 0);
    let scope = |component: Option<&str>| {
        vals.iter().fold(
            ExportedScope::new(component.map(str::to_owned)),
            |scope, (k, v)| scope.with_value(*k, v.clone()),
        )
    };
    let (global, component) = (scope(None), scope(Some(COMPONENT)));
    std::thread::scope(|s| {
        for part in ids.chunks(ids.len().div_ceil(BUILD_THREADS).max(1)) {
            let (store, global, component) = (&store, &global, &component);
            s.spawn(move || {
                for id in part {
                    let session = ExportedSession::new(id.clone(), now, now)
                        .with_idle_timeout(None)
                        .with_scope(global.clone())
                        .with_scope(component.clone());
                    store
                        .import_session(&session, ImportMode::Create)
                        .expect("import_session");
                }
            });
        }
    });
    store.flush().expect("flush");
}

/// Writes every session of `ids` into a new SQLite database in `dir`, in bulk, and closes it.
fn build_sqlite(dir: &Path, ids: &[String], clock: &ManualClock) {
    let mut conn = rusqlite::Connection::open(dir.join(sqlite::FILE)).expect("opening SQLite");
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
        .expect("pragmas");
    conn.execute_batch(sqlite::SCHEMA).expect("the schema");
    let now = super::common::contender::now_micros(&(Arc::new(clock.clone()) as Arc<dyn Clock>));
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let vals = values(key_names(KEYS), 0);
    for chunk in ids.chunks(SQL_CHUNK) {
        let tx = conn.transaction().expect("begin");
        {
            let mut meta = tx
                .prepare_cached(
                    "INSERT INTO session_meta (sid, created, last_access, deadline) VALUES (?1, ?2, ?2, ?3)",
                )
                .expect("prepare");
            let mut data = tx
                .prepare_cached(
                    "INSERT INTO session_data (sid, component, key, value) VALUES (?1, ?2, ?3, ?4)",
                )
                .expect("prepare");
            for id in chunk {
                // No deadline: the session never expires, as the store's.
                meta.execute(rusqlite::params![id, now, i64::MAX])
                    .expect("insert");
                for component in ["", COMPONENT] {
                    for (k, v) in &vals {
                        data.execute(rusqlite::params![id, component, k, v])
                            .expect("insert");
                    }
                }
            }
        }
        tx.commit().expect("commit");
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
}

/// One size's figures: (store, SQLite) for each row.
#[derive(Default, Clone)]
struct Figures {
    open_ms: (f64, f64),
    open_verify_ms: f64,
    baseline_open_ms: f64,
    baseline_big_cache_rss_mib: f64,
    open_rss_mib: (f64, f64),
    big_cache_rss_mib: (f64, f64),
    big_cache_verify_rss_mib: f64,
    get_us: (f64, f64),
    save_us: (f64, f64),
    reap_us: (f64, f64),
    disk_mib: (f64, f64),
    build_s: (f64, f64),
}

/// What one open process measured.
struct Opened {
    ms: f64,
    rss_mib: f64,
}

/// Runs `perf_report --child-open` on `target` and parses its line.
fn open_in_child(
    exe: &Path,
    kind: &str,
    dir: &Path,
    cache: u64,
    verify: bool,
    sid: &str,
) -> Opened {
    let out = Command::new(exe)
        .args([
            "--child-open",
            kind,
            &dir.display().to_string(),
            &cache.to_string(),
            if verify { "verify" } else { "trust" },
            sid,
        ])
        .output()
        .expect("running the open child");
    assert!(
        out.status.success(),
        "the open child for {kind} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> f64 {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    Opened {
        ms: field("open_us=") / 1e3,
        rss_mib: field("rss_kib=") / 1024.0,
    }
}

/// In a child process: opens the store or the SQLite database in `dir`,
/// reads session `sid`, and prints the time that took and the peak RSS.
/// `args`: KIND DIR CACHE verify|trust SID.
pub fn child_open(args: &[String]) {
    let [kind, dir, cache, verify, sid] = args else {
        panic!("--child-open store|sqlite DIR CACHE verify|trust SID");
    };
    let dir = PathBuf::from(dir);
    let cache: u64 = cache.parse().expect("a cache size");
    let verify = verify == "verify";
    // Sqlite::open_in owns its directory: lend it the real file by a link
    // in a directory of its own, so that nothing is copied or deleted.
    let lent = (kind == "sqlite").then(|| {
        let tmp = tempfile::TempDir::new_in(&dir).expect("a directory");
        std::fs::hard_link(dir.join(sqlite::FILE), tmp.path().join(sqlite::FILE)).expect("a link");
        tmp
    });
    let start = Instant::now();
    // Each arm takes the time while its handle is still open: the close
    // (a last commit, a checkpoint) is not part of the open.
    let (keys, took) = match (kind.as_str(), lent) {
        ("store", _) => {
            let store = Config::new(&dir)
                .idle_timeout(IDLE)
                .reap_interval(None)
                .cache_capacity(cache)
                .verify_on_open(verify)
                .open()
                .expect("opening the store");
            let keys = store.get(sid, None).expect("get").map_or(0, |s| s.len());
            (keys, start.elapsed())
        }
        ("sqlite", Some(tmp)) => {
            let clock: Arc<dyn Clock> = Arc::new(ManualClock::default());
            let db = Sqlite::open_in(tmp, Mode::Durable, clock);
            let keys = db.get(sid, None);
            (keys, start.elapsed())
        }
        (other, _) => panic!("unknown kind {other}"),
    };
    assert_eq!(keys, KEYS, "the first get read the wrong number of keys");
    println!(
        "open_us={:.0} rss_kib={}",
        took.as_secs_f64() * 1e6,
        super::peak_rss_kib()
    );
}

fn median(v: Vec<f64>) -> f64 {
    super::median(v)
}

/// Runs the scale mode up to `top` live sessions and prints its table and line.
pub fn run(top: usize) {
    let exe = std::env::current_exe().expect("the path of this program");
    let sizes = [top / 100, top / 10, top].map(|n| n.max(1));
    let root = tempfile::tempdir().expect("a temporary directory");
    let started = Instant::now();
    let mut all: Vec<(usize, Figures)> = Vec::new();
    for &n in &sizes {
        let f = measure_size(&exe, root.path(), n, started);
        all.push((n, f));
    }
    print(&all);
}

/// Builds both contenders with `n` sessions under `root` and measures them.
fn measure_size(exe: &Path, root: &Path, n: usize, started: Instant) -> Figures {
    let mut f = Figures::default();
    let clock = ManualClock::new(SystemTime::now());
    let ids = ids(n);
    let store_dir = root.join(format!("store-{n}"));
    let sql_dir = tempfile::TempDir::new_in(root).expect("a directory");
    let t = Instant::now();
    build_store(&store_dir, &ids, &clock);
    f.build_s.0 = t.elapsed().as_secs_f64();
    let t = Instant::now();
    build_sqlite(sql_dir.path(), &ids, &clock);
    f.build_s.1 = t.elapsed().as_secs_f64();
    f.disk_mib = (
        super::common::contender::dir_bytes(&store_dir) as f64 / (1 << 20) as f64,
        super::common::contender::dir_bytes(sql_dir.path()) as f64 / (1 << 20) as f64,
    );
    eprintln!(
        "  {n} sessions built: store {:.1} s, SQLite {:.1} s, at {:.0?}",
        f.build_s.0,
        f.build_s.1,
        started.elapsed()
    );

    // Opens, each in a process of its own, interleaved.
    let probe = &ids[n / 2];
    let default_cache = 64 << 20;
    let baseline = std::env::var_os("SCALE_OPEN_BASELINE").map(PathBuf::from);
    let store_open = |bin: &Path, cache: u64, verify: bool| {
        open_in_child(bin, "store", &store_dir, cache, verify, probe)
    };
    let (mut store, mut sql, mut verify, mut base) = (vec![], vec![], vec![], vec![]);
    for _ in 0..OPENS {
        store.push(store_open(exe, default_cache, false));
        sql.push(open_in_child(
            exe,
            "sqlite",
            sql_dir.path(),
            0,
            false,
            probe,
        ));
        verify.push(store_open(exe, default_cache, true));
        if let Some(b) = &baseline {
            base.push(store_open(b, default_cache, false));
        }
    }
    let ms = |v: &[Opened]| median(v.iter().map(|o| o.ms).collect());
    let rss = |v: &[Opened]| median(v.iter().map(|o| o.rss_mib).collect());
    f.open_ms = (ms(&store), ms(&sql));
    f.open_verify_ms = ms(&verify);
    f.baseline_open_ms = ms(&base);
    f.open_rss_mib = (rss(&store), rss(&sql));
    f.big_cache_rss_mib = (store_open(exe, BIG_CACHE, false).rss_mib, f64::NAN);
    f.big_cache_verify_rss_mib = store_open(exe, BIG_CACHE, true).rss_mib;
    f.baseline_big_cache_rss_mib = baseline
        .as_ref()
        .map_or(f64::NAN, |b| store_open(b, BIG_CACHE, false).rss_mib);
    eprintln!("  {n}: opens done at {:.0?}", started.elapsed());

    // In this process: the store with the defaults (Immediate), SQLite with FULL.
    // The open processes read the system clock, and the store keeps the
    // latest time it saw as a floor: start past it, so that a session
    // created now expires when the clock moves past the idle timeout.
    clock.set(SystemTime::now() + Duration::from_secs(60));
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let s = StoreContender::at(
        store_config(&store_dir, shared.clone()),
        &store_dir,
        "store",
    );
    let q = Sqlite::open_in(sql_dir, Mode::Durable, shared);
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let (mut sg, mut qg, mut ss, mut qs, mut sr, mut qr) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    // Reaps first: a SQLite save gives its session a deadline (the schema
    // has no session without one), which a later reap would then count.
    for _ in 0..ROUNDS {
        let (a, b) = reap_costs(&s, &q, &clock);
        sr.push(a);
        qr.push(b);
    }
    eprintln!("  {n}: reaps done at {:.0?}", started.elapsed());
    for round in 0..ROUNDS {
        sg.push(get_cost(&s, &ids, &mut rng));
        qg.push(get_cost(&q, &ids, &mut rng));
        ss.push(save_cost(&s, &ids, &mut rng, round));
        qs.push(save_cost(&q, &ids, &mut rng, round));
    }
    eprintln!("  {n}: gets and saves done at {:.0?}", started.elapsed());
    f.get_us = (median(sg), median(qg));
    f.save_us = (median(ss), median(qs));
    f.reap_us = (median(sr), median(qr));
    drop(s);
    drop(q);
    std::fs::remove_dir_all(&store_dir).ok();
    f
}

/// Microseconds per uniform get over about `GET_BUDGET`.
fn get_cost<C: Contender>(c: &C, ids: &[String], rng: &mut Rng) -> f64 {
    let (mut ops, mut spent) = (0u64, Duration::ZERO);
    while spent < GET_BUDGET {
        let batch: Vec<&str> = (0..256)
            .map(|_| ids[rng.below(ids.len())].as_str())
            .collect();
        let start = Instant::now();
        for sid in &batch {
            assert_eq!(
                c.get(sid, None),
                KEYS,
                "a get read the wrong number of keys"
            );
        }
        spent += start.elapsed();
        ops += batch.len() as u64;
    }
    spent.as_secs_f64() * 1e6 / ops as f64
}

/// Microseconds per durable save of one key into a uniformly drawn session.
fn save_cost<C: Contender>(c: &C, ids: &[String], rng: &mut Rng, round: usize) -> f64 {
    let vals = values(key_names(1), round as u64 + 1);
    let mut spent = Duration::ZERO;
    for _ in 0..SAVES {
        let mut scope = c.open(&ids[rng.below(ids.len())], None);
        let start = Instant::now();
        c.save(&mut scope, &vals);
        spent += start.elapsed();
    }
    spent.as_secs_f64() * 1e6 / SAVES as f64
}

/// Microseconds per session of one reap of `REAP` expired sessions, on each:
/// both create theirs, then the shared clock moves past the idle timeout.
fn reap_costs<A: Contender, B: Contender>(a: &A, b: &B, clock: &ManualClock) -> (f64, f64) {
    // Created and saved with one key, as the reap workload does (a store
    // session is written at its first save).
    let vals = values(key_names(1), 0);
    for _ in 0..REAP {
        a.save(&mut a.create(), &vals);
        b.save(&mut b.create(), &vals);
    }
    clock.advance(IDLE + Duration::from_secs(1));
    let time = |c: &dyn Fn() -> usize| {
        let start = Instant::now();
        let reaped = c();
        let took = start.elapsed();
        assert_eq!(
            reaped, REAP,
            "a reap missed expired sessions or took live ones"
        );
        took.as_secs_f64() * 1e6 / REAP as f64
    };
    (time(&|| a.reap()), time(&|| b.reap()))
}

/// `x` at the largest size over `x` at the smallest.
fn growth(all: &[(usize, Figures)], x: impl Fn(&Figures) -> f64) -> f64 {
    match (all.first(), all.last()) {
        (Some((_, lo)), Some((_, hi))) => x(hi) / x(lo),
        _ => f64::NAN,
    }
}

fn print(all: &[(usize, Figures)]) {
    let sizes: Vec<String> = all.iter().map(|(n, _)| count(*n)).collect();
    let mut header = vec!["figure".to_owned()];
    for s in &sizes {
        header.push(format!("{s} store"));
        header.push(format!("{s} SQLite"));
    }
    header.extend(
        [
            "store growth",
            "SQLite growth",
            "growth ratio",
            "store/SQLite at top",
        ]
        .map(String::from),
    );
    println!("| {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(header.len() - 1));
    type Pick = fn(&Figures) -> (f64, f64);
    let rows: [(&str, Pick); 11] = [
        ("open to first get (ms)", |f| f.open_ms),
        ("  same, verify_on_open(true) (ms)", |f| {
            (f.open_verify_ms, f64::NAN)
        }),
        ("  same, baseline build (ms)", |f| {
            (f.baseline_open_ms, f64::NAN)
        }),
        ("uniform get (µs)", |f| f.get_us),
        ("durable save (µs)", |f| f.save_us),
        ("reap per session (µs)", |f| f.reap_us),
        ("open: peak RSS (MiB), cache 64 MiB", |f| f.open_rss_mib),
        ("open: peak RSS (MiB), cache 2 GiB", |f| f.big_cache_rss_mib),
        ("  same, verify_on_open(true)", |f| {
            (f.big_cache_verify_rss_mib, f64::NAN)
        }),
        ("  same, baseline build", |f| {
            (f.baseline_big_cache_rss_mib, f64::NAN)
        }),
        ("on disk (MiB)", |f| f.disk_mib),
    ];
    let mut line = Vec::new();
    for (name, pick) in rows {
        if all.iter().all(|(_, f)| {
            let (a, b) = pick(f);
            a.is_nan() && b.is_nan()
        }) {
            continue;
        }
        let mut cells = vec![name.to_owned()];
        for (_, f) in all {
            let (a, b) = pick(f);
            cells.push(num(a));
            cells.push(num(b));
        }
        let ga = growth(all, |f| pick(f).0);
        let gb = growth(all, |f| pick(f).1);
        let top = all.last().map_or((f64::NAN, f64::NAN), |(_, f)| pick(f));
        cells.extend([ratio(ga), ratio(gb), ratio(ga / gb), ratio(top.0 / top.1)]);
        println!("| {} |", cells.join(" | "));
        let key = match name {
            "open to first get (ms)" => Some("open"),
            "uniform get (µs)" => Some("get"),
            "durable save (µs)" => Some("save"),
            "reap per session (µs)" => Some("reap"),
            _ => None,
        };
        if let Some(key) = key {
            line.push(format!(
                "{key}_growth={} {key}_sqlite_growth={} {key}_growth_ratio={} {key}_vs_sqlite_top={}",
                ratio(ga),
                ratio(gb),
                ratio(ga / gb),
                ratio(top.0 / top.1)
            ));
        }
    }
    let builds: Vec<String> = all
        .iter()
        .map(|(n, f)| format!("{}: {:.1} s / {:.1} s", count(*n), f.build_s.0, f.build_s.1))
        .collect();
    println!();
    println!(
        "build (store / SQLite, not measured above): {}",
        builds.join("; ")
    );
    println!(
        "scale: top={} {}",
        all.last().map_or(0, |(n, _)| *n),
        line.join(" ")
    );
}

fn count(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

fn num(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn ratio(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.2}")
    }
}

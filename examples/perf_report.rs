//! The store side by side with raw sled, raw redb and SQLite, in one table.
//!
//! `cargo run --release --example perf_report [-- --quick]`
//!
//! For every workload it opens a fresh store on each engine, a fresh raw sled
//! database, a fresh raw redb database and a fresh SQLite database, prepares
//! the same work on each (the code is shared with the criterion benches in
//! `benches/common/`), and measures them in interleaved rounds, so that a
//! burst of load from other programs hits every contender alike. A rate cell
//! is the median of its rounds; a ratio cell is `min–median–max` of the
//! per-round ratios (the two contenders measured back to back in the same
//! round). It then measures how a reap pass scales with the number of live
//! sessions, and, each in a child process of its own, the peak RSS and the
//! bytes on disk per live session after writing a population of sessions.
//!
//! The last two lines sum it up, each figure the median of its per-round
//! ratios:
//!
//! ```text
//! perf: engine=redb writes_vs_sqlite_min=… reap_vs_sqlite=… get_vs_sqlite_min=… durable16_vs_sqlite=… vs_raw_min=… durable16_vs_1=… reap_scaling=…
//! sled: save_ratio=… get_ratio=… durable16_vs_1=… reap_vs_sqlite=… reap_scaling=…
//! ```
//!
//! - `perf:` is the default engine, redb: `writes_vs_sqlite_min` is the
//!   lowest store/SQLite ratio over create, save_1, save_8, destroy, touch,
//!   regenerate and durable_save_1_threads; `reap_vs_sqlite` the reap
//!   workload's; `get_vs_sqlite_min` the lower of the two gets';
//!   `durable16_vs_sqlite` 16 threads' durable saves; `vs_raw_min` the lowest
//!   store/raw redb ratio over every workload;
//! - `sled:` keeps the earlier targets as a guard: `save_ratio`,
//!   `get_ratio` are store (sled) over raw sled, the lower of the two save
//!   workloads (1 and 8 keys) and of the two get workloads;
//! - on both, `durable16_vs_1` is the store's durable saves per second from
//!   16 threads over those from 1 thread, and `reap_scaling` the time the
//!   store takes to reap 1,000 expired sessions among 100,000 live ones, over
//!   1,000 among 1,000.
//!
//! Every contender writes durably (the store's default `Durability::Immediate`,
//! raw sled with a flush after every batch, SQLite with `synchronous=FULL`),
//! unless `--background` asks the single-threaded workloads to flush in the
//! background instead (`Durability::Periodic(1 s)`, sled's flusher every
//! second, `synchronous=NORMAL`). With sled the store then risks sled's log
//! deadlock; see "Stalls" in src/contract.md.
//!
//! `--quick` measures shorter and writes fewer sessions for the memory rows;
//! it is meant to finish in about 3 minutes on 2 cores. `--only NAME` runs
//! the workloads whose name contains NAME and prints only their rows;
//! `--profile CONTENDER WORKLOAD N [background] [sessions=S]` runs one
//! workload N times on one contender (`store-sled`, `store-redb`, `raw-sled`,
//! `raw-redb`, `raw-redb-exclusive`, `sqlite`), spread over S sessions (default 1,000; the full table uses
//! 10,000), for a profiler such as `valgrind --tool=callgrind`.
//!
//! After the table, before the two lines, it measures the bytes written per
//! create+destroy churn cycle (`perf_report/bytes.rs`): `write_bytes` of
//! `/proc/self/io`, with the device's sector counts beside it as a
//! cross-check, for the store and SQLite, durable (`Immediate`, `FULL`) and
//! with background flushes (`Periodic(200 ms)`, `NORMAL`), and prints the
//! line `bytes: immediate_per_cycle=… immediate_vs_sqlite=…
//! periodic_per_cycle=… periodic_vs_sqlite_normal=…`. `--bytes [CYCLES]`
//! runs that part alone.
//!
//! `--scale [TOP]` runs the scale mode instead (`perf_report/scale.rs`): the
//! store and SQLite with TOP / 100, TOP / 10 and TOP live sessions (TOP
//! defaults to 1,000,000), the cost of a clean reopen to the first get, a
//! uniform get, a durable save and a reap per session at each size, and how
//! each grows from the smallest size to TOP, with the line
//! `scale: top=… open_growth=… open_sqlite_growth=… open_growth_ratio=… …`.
//!
//! `--redis URL` (a build with `--features redis`) adds a Redis section: the
//! `RedisStore` against raw redis-rs on the server at URL, from 1 and 16
//! threads (`perf_report/redis.rs`), and its line
//! `redis: save_ratio=… get_ratio=… threads16_vs_1=…`. With `--only redis`
//! it runs that section alone. The section writes under its own namespace
//! and deletes what it wrote.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionstore::{Clock, Engine, ManualClock, SystemClock};

#[allow(
    dead_code,
    reason = "shared with benches/compare.rs, which uses the rest"
)]
#[path = "../benches/common/mod.rs"]
mod common;

use common::contender::Mode;
use common::workload::{self, Runner, Workload};
use common::{Contender, RawRedb, RawSled, Sqlite, StoreContender};

#[cfg(feature = "redis")]
#[path = "perf_report/redis.rs"]
mod redis_section;

#[path = "perf_report/bytes.rs"]
mod bytes;
#[path = "perf_report/scale.rs"]
mod scale;

/// How long to measure, and on how much data.
struct Plan {
    /// Rounds per cell; the cell is their median.
    rounds: usize,
    /// Measured time per round per contender.
    budget: Duration,
    /// Sessions the save, get, touch and regenerate workloads spread over.
    population: usize,
    /// Sessions written before the memory and disk are read.
    memory_sessions: usize,
    /// Repetitions of each reap-scaling measurement; the median counts.
    reap_repeats: usize,
    /// Whether the single-threaded workloads flush in the background instead of durably.
    background: bool,
    /// Create+destroy cycles per contender in the bytes table.
    churn_cycles: usize,
}

const QUICK: Plan = Plan {
    rounds: 5,
    budget: Duration::from_millis(150),
    population: 500,
    memory_sessions: 5_000,
    reap_repeats: 7,
    background: false,
    churn_cycles: 500,
};

const FULL: Plan = Plan {
    rounds: 5,
    budget: Duration::from_millis(600),
    population: 10_000,
    memory_sessions: 50_000,
    reap_repeats: 5,
    background: false,
    churn_cycles: 2_000,
};

/// Expired sessions per reap-scaling measurement.
const REAP_EXPIRED: usize = 1_000;
/// The small and the large number of live sessions beside them.
const REAP_LIVE: [usize; 2] = [1_000, 100_000];

const RAW: &str = "raw sled";
const RAW_REDB: &str = "raw redb";
const SQLITE: &str = "SQLite";

/// Every engine of this build, sled first: raw sled is its floor.
fn engines() -> Vec<Engine> {
    let mut v = Engine::ALL.to_vec();
    v.sort_by_key(|e| *e != Engine::Sled);
    v
}

fn store_label(engine: Engine) -> String {
    format!("store ({})", engine.name())
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let mut quick = false;
    let mut background = false;
    let mut only: Option<String> = None;
    let mut redis: Option<String> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--background" => background = true,
            "--only" => only = args.next(),
            "--redis" => match args.next() {
                Some(url) => redis = Some(url),
                None => {
                    eprintln!("usage: perf_report --redis URL");
                    std::process::exit(2);
                }
            },
            "--profile" => {
                let which = args
                    .next()
                    .expect("--profile CONTENDER WORKLOAD N [background] [sessions=S]");
                let name = args.next().expect("a workload");
                let n = args.next().and_then(|n| n.parse().ok()).expect("a count");
                let rest: Vec<String> = args.collect();
                let background = rest.iter().any(|a| a == "background");
                let population = rest
                    .iter()
                    .find_map(|a| a.strip_prefix("sessions="))
                    .map_or(1_000, |s| s.parse().expect("sessions=S takes a number"));
                profile(&which, &name, n, background, population);
                return;
            }
            "--scale" => {
                let top = args
                    .next_if(|a| a.parse::<usize>().is_ok())
                    .map_or(1_000_000, |a| a.parse().unwrap_or(1_000_000));
                eprintln!("perf_report --scale {top}: {}", machine());
                scale::run(top);
                return;
            }
            "--bytes" => {
                let cycles = args
                    .next_if(|a| a.parse::<usize>().is_ok())
                    .map_or(FULL.churn_cycles, |a| a.parse().unwrap_or(1));
                eprintln!("perf_report --bytes {cycles}: {}", machine());
                for line in bytes::report(&bytes::measure(cycles.max(1)), cycles.max(1)) {
                    println!("{line}");
                }
                return;
            }
            "--child-open" => {
                let rest: Vec<String> = args.collect();
                scale::child_open(&rest);
                return;
            }
            "--child-memory" => {
                let which = args.next().expect("--child-memory WHICH N");
                let n = args.next().and_then(|n| n.parse().ok()).expect("a count");
                child_memory(&which, n);
                return;
            }
            other => {
                eprintln!(
                    "usage: perf_report [--quick] [--background] [--only WORKLOAD] [--redis URL] | --scale [TOP] | --bytes [CYCLES]; unknown argument {other:?}"
                );
                std::process::exit(2);
            }
        }
    }
    let mut plan = if quick { QUICK } else { FULL };
    plan.background = background;
    let started = Instant::now();
    eprintln!(
        "perf_report ({}): {} rounds of {:?} per cell; {}",
        if quick { "quick" } else { "full" },
        plan.rounds,
        plan.budget,
        machine()
    );

    let mut table = Table::default();
    for &w in Workload::ALL {
        if only
            .as_ref()
            .is_some_and(|o| !w.name().contains(o.as_str()))
        {
            continue;
        }
        measure_workload(&plan, w, &mut table);
        eprintln!("  {} done at {:.0?}", w.name(), started.elapsed());
    }
    let redis_lines = redis.map(|url| {
        let lines = redis_report(&url, &plan);
        eprintln!("  redis done at {:.0?}", started.elapsed());
        lines
    });
    if only.is_some() {
        if !table.columns.is_empty() {
            print_table(&table, &[], &[], 0);
        }
        for line in redis_lines.iter().flatten() {
            println!("{line}");
        }
        return;
    }
    let scaling: Vec<(Engine, f64)> = engines()
        .into_iter()
        .map(|e| (e, reap_scaling(&plan, e)))
        .collect();
    eprintln!("  reap scaling done at {:.0?}", started.elapsed());
    let memory = memory_rows(&plan);
    eprintln!("  memory done at {:.0?}", started.elapsed());
    let churn = bytes::measure(plan.churn_cycles);
    eprintln!("  bytes done at {:.0?}", started.elapsed());

    print_table(&table, &scaling, &memory, plan.memory_sessions);
    for line in bytes::report(&churn, plan.churn_cycles) {
        println!("{line}");
    }
    println!(
        "peak RSS of this whole run: {:.1} MiB; it took {:.0?}",
        peak_rss_kib() as f64 / 1024.0,
        started.elapsed()
    );
    for line in redis_lines.iter().flatten() {
        println!("{line}");
    }
    let scaling_of = |e: Engine| {
        scaling
            .iter()
            .find(|(x, _)| *x == e)
            .map_or(f64::NAN, |(_, s)| *s)
    };
    if let Some(redb) = engines().into_iter().find(|e| e.name() == "redb") {
        println!("{}", redb_line(&table, redb, scaling_of(redb)));
    }
    println!("{}", sled_line(&table, scaling_of(Engine::Sled)));
}

/// The writes `writes_vs_sqlite_min` covers.
const WRITES: [Workload; 7] = [
    Workload::Create,
    Workload::Save(1),
    Workload::Save(workload::KEYS),
    Workload::Destroy,
    Workload::Touch,
    Workload::Regenerate,
    Workload::Durable(1),
];

/// The `perf:` line: the default engine (redb) against SQLite and raw redb.
/// Each figure is the median of its per-round ratios.
fn redb_line(table: &Table, redb: Engine, reap_scaling: f64) -> String {
    let store = store_label(redb);
    let vs = |w: Workload, other: &str| table.ratio(w, &store, other);
    let writes = lowest(WRITES.iter().map(|&w| vs(w, SQLITE)));
    let gets = lowest([
        vs(Workload::GetGlobal, SQLITE),
        vs(Workload::GetComponent, SQLITE),
    ]);
    let vs_raw = lowest(Workload::ALL.iter().map(|&w| vs(w, RAW_REDB)));
    format!(
        "perf: engine={} writes_vs_sqlite_min={:.2} reap_vs_sqlite={:.2} get_vs_sqlite_min={:.2} durable16_vs_sqlite={:.2} vs_raw_min={:.2} durable16_vs_1={:.2} reap_scaling={:.2}",
        redb.name(),
        writes.median,
        vs(Workload::Reap, SQLITE).median,
        gets.median,
        vs(Workload::Durable(16), SQLITE).median,
        vs_raw.median,
        table
            .across(&store, Workload::Durable(16), Workload::Durable(1))
            .median,
        reap_scaling,
    )
}

/// The `sled:` line: the store on sled against raw sled (the old targets,
/// kept as a guard) and SQLite.
fn sled_line(table: &Table, reap_scaling: f64) -> String {
    let sled = store_label(Engine::Sled);
    let vs = |w: Workload, other: &str| table.ratio(w, &sled, other);
    let save = lowest([
        vs(Workload::Save(1), RAW),
        vs(Workload::Save(workload::KEYS), RAW),
    ]);
    let get = lowest([
        vs(Workload::GetGlobal, RAW),
        vs(Workload::GetComponent, RAW),
    ]);
    format!(
        "sled: save_ratio={:.2} get_ratio={:.2} durable16_vs_1={:.2} reap_vs_sqlite={:.2} reap_scaling={:.2}",
        save.median,
        get.median,
        table
            .across(&sled, Workload::Durable(16), Workload::Durable(1))
            .median,
        vs(Workload::Reap, SQLITE).median,
        reap_scaling,
    )
}

/// The Redis section's table and its `redis:` line; exits on an error.
#[cfg(feature = "redis")]
fn redis_report(url: &str, plan: &Plan) -> Vec<String> {
    let budget = redis_section::Budget {
        rounds: plan.rounds,
        per_round: plan.budget / 2,
    };
    match redis_section::run(url, &budget) {
        Ok(f) => {
            let mut lines = vec![
                String::new(),
                format!("Redis at {url} (ops/s):"),
                String::new(),
                "| workload | RedisStore | raw redis-rs | store/raw |".into(),
                "|---|---:|---:|---:|".into(),
            ];
            lines.extend(f.rows);
            lines.push(String::new());
            lines.push(f.line);
            lines
        }
        Err(e) => {
            eprintln!("perf_report: the Redis section failed on {url}: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(not(feature = "redis"))]
fn redis_report(_: &str, _: &Plan) -> Vec<String> {
    eprintln!(
        "perf_report: --redis needs a build with the Redis store: cargo run --release --features redis --example perf_report -- --redis URL"
    );
    std::process::exit(2);
}

/// Ops per second, by workload and contender: every round's rate, in round
/// order, so that two contenders' rates of the same round can be paired.
#[derive(Default)]
struct Table {
    cells: HashMap<(Workload, String), Vec<f64>>,
    columns: Vec<String>,
}

/// A ratio over the rounds of a run: the lowest, the median and the highest
/// of the per-round ratios (contenders measured back to back in each round).
#[derive(Debug, Clone, Copy)]
struct Spread {
    min: f64,
    median: f64,
    max: f64,
}

impl Spread {
    const NAN: Spread = Spread {
        min: f64::NAN,
        median: f64::NAN,
        max: f64::NAN,
    };

    fn of(values: Vec<f64>) -> Spread {
        if values.is_empty() || values.iter().any(|v| v.is_nan()) {
            return Spread::NAN;
        }
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Spread {
            min,
            median: median(values),
            max,
        }
    }

    /// `min–median–max`, or the median alone if all three print alike.
    fn show(self) -> String {
        let (a, b, c) = (
            fmt_ratio(self.min),
            fmt_ratio(self.median),
            fmt_ratio(self.max),
        );
        if a == c {
            b
        } else {
            format!("{a}–{b}–{c}")
        }
    }
}

impl Table {
    fn set(&mut self, w: Workload, label: String, rounds: Vec<f64>) {
        if !self.columns.contains(&label) {
            self.columns.push(label.clone());
        }
        self.cells.insert((w, label), rounds);
    }

    /// The median rate of `label` on `w`.
    fn get(&self, w: Workload, label: &str) -> f64 {
        self.cells
            .get(&(w, label.to_owned()))
            .map_or(f64::NAN, |r| median(r.clone()))
    }

    /// `a` over `b` on `w`, round by round.
    fn ratio(&self, w: Workload, a: &str, b: &str) -> Spread {
        self.divide((w, a), (w, b))
    }

    /// `label`'s rate on `a` over its rate on `b`, round by round: the
    /// rounds of two workloads are not interleaved, so this pairs them by
    /// index only.
    fn across(&self, label: &str, a: Workload, b: Workload) -> Spread {
        self.divide((a, label), (b, label))
    }

    /// Cell `x` over cell `y`, round by round.
    fn divide(&self, (wx, lx): (Workload, &str), (wy, ly): (Workload, &str)) -> Spread {
        match (
            self.cells.get(&(wx, lx.to_owned())),
            self.cells.get(&(wy, ly.to_owned())),
        ) {
            (Some(x), Some(y)) if x.len() == y.len() => {
                Spread::of(x.iter().zip(y).map(|(x, y)| x / y).collect())
            }
            _ => Spread::NAN,
        }
    }
}

/// The spread whose median is lowest.
fn lowest(spreads: impl IntoIterator<Item = Spread>) -> Spread {
    spreads
        .into_iter()
        .min_by(|a, b| a.median.total_cmp(&b.median))
        .unwrap_or(Spread::NAN)
}

/// Opens every contender for `w`, prepares it, and measures it in interleaved rounds.
fn measure_workload(plan: &Plan, w: Workload, table: &mut Table) {
    let manual = ManualClock::default();
    let clock: Arc<dyn Clock> = if w.needs_manual_clock() {
        Arc::new(manual.clone())
    } else {
        Arc::new(SystemClock)
    };
    let mode = w.mode(plan.background);
    let stores: Vec<StoreContender> = engines()
        .into_iter()
        .map(|e| StoreContender::new(e, mode, clock.clone()))
        .collect();
    let raw = RawSled::new(mode, clock.clone());
    let raw_redb = RawRedb::new(mode, clock.clone());
    let sqlite = Sqlite::new(mode, clock.clone());
    let mut runners: Vec<(String, Runner<'_>)> = Vec::new();
    for s in &stores {
        runners.push(prepared(s, w, plan.population, &manual));
    }
    runners.push(prepared(&raw, w, plan.population, &manual));
    runners.push(prepared(&raw_redb, w, plan.population, &manual));
    runners.push(prepared(&sqlite, w, plan.population, &manual));

    // The threaded durable saves get three times the budget: their rates
    // swing most from round to round (group commits of a few threads), and
    // `durable16_vs_1` divides two of them.
    let budget = match w {
        Workload::Durable(_) => plan.budget * 3,
        _ => plan.budget,
    };
    // A short warm-up each, then rounds in turn.
    for (_, run) in &mut runners {
        rate(run, budget / 4);
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); runners.len()];
    for _ in 0..plan.rounds {
        for (i, (_, run)) in runners.iter_mut().enumerate() {
            rates[i].push(rate(run, budget) * w.elements_per_op() as f64);
        }
    }
    for ((label, _), r) in runners.into_iter().zip(rates) {
        table.set(w, label, r);
    }
}

fn prepared<'a, C: Contender>(
    c: &'a C,
    w: Workload,
    population: usize,
    clock: &'a ManualClock,
) -> (String, Runner<'a>) {
    (c.label(), workload::prepare(c, w, population, clock))
}

/// Operations per second of `run` over about `budget` of measured time,
/// in chunks that double while they are short. Gives up after four times
/// the budget of wall time (setup included), with at least one operation.
fn rate(run: &mut Runner<'_>, budget: Duration) -> f64 {
    let wall = Instant::now();
    let mut chunk = 1u64;
    let (mut ops, mut spent) = (0u64, Duration::ZERO);
    while spent < budget && (ops == 0 || wall.elapsed() < budget * 4) {
        let took = run(chunk);
        ops += chunk;
        spent += took;
        if took < budget / 16 {
            chunk *= 2;
        }
    }
    ops as f64 / spent.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Seconds to reap `REAP_EXPIRED` expired sessions among `live` live ones, median of repeats.
fn reap_time(plan: &Plan, engine: Engine, live: usize) -> f64 {
    let clock = ManualClock::default();
    let c = StoreContender::new(engine, Mode::Durable, Arc::new(clock.clone()));
    let store = c.store();
    workload::create_many(&c, live);
    let mut times = Vec::new();
    for _ in 0..plan.reap_repeats {
        for _ in 0..REAP_EXPIRED {
            let s = c.create();
            store
                .set_idle_timeout(s.id(), Some(Duration::from_secs(1)))
                .expect("set_idle_timeout");
        }
        clock.advance(Duration::from_secs(2));
        let start = Instant::now();
        let reaped = store.reap_expired().expect("reap_expired");
        times.push(start.elapsed().as_secs_f64());
        assert_eq!(reaped, REAP_EXPIRED, "the reap missed expired sessions");
    }
    assert_eq!(
        store.stats().expect("stats").live_sessions,
        live as u64,
        "live sessions were reaped"
    );
    median(times)
}

/// reap time among 100,000 live over reap time among 1,000 live.
fn reap_scaling(plan: &Plan, engine: Engine) -> f64 {
    let small = reap_time(plan, engine, REAP_LIVE[0]);
    let large = reap_time(plan, engine, REAP_LIVE[1]);
    eprintln!(
        "  {}: reap of {REAP_EXPIRED} among {} live {:.1} ms, among {} live {:.1} ms",
        store_label(engine),
        REAP_LIVE[0],
        small * 1e3,
        REAP_LIVE[1],
        large * 1e3
    );
    large / small
}

/// Prepares one workload on one contender and runs it `n` times, for a
/// profiler: the difference between two counts is the cost of the operations.
/// `background` opens the contender with background flushing, as `--background` does.
fn profile(which: &str, name: &str, n: u64, background: bool, population: usize) {
    let w = Workload::ALL
        .iter()
        .copied()
        .find(|w| w.name() == name)
        .expect("a workload name, as the table spells it");
    let manual = ManualClock::default();
    let clock: Arc<dyn Clock> = if w.needs_manual_clock() {
        Arc::new(manual.clone())
    } else {
        Arc::new(SystemClock)
    };
    let mode = w.mode(background);
    let took = match which {
        "raw-sled" => {
            let c = RawSled::new(mode, clock);
            workload::prepare(&c, w, population, &manual)(n)
        }
        "raw-redb" => {
            let c = RawRedb::new(mode, clock);
            workload::prepare(&c, w, population, &manual)(n)
        }
        "raw-redb-exclusive" => {
            let c = RawRedb::exclusive(mode, clock);
            workload::prepare(&c, w, population, &manual)(n)
        }
        "sqlite" => {
            let c = Sqlite::new(mode, clock);
            workload::prepare(&c, w, population, &manual)(n)
        }
        store => {
            let engine = Engine::ALL
                .iter()
                .copied()
                .find(|e| store == format!("store-{}", e.name()))
                .expect("store-ENGINE, raw-sled, raw-redb[-exclusive] or sqlite");
            let c = StoreContender::new(engine, mode, clock);
            let before = c.store().stats().expect("stats");
            let took = workload::prepare(&c, w, population, &manual)(n);
            eprintln!("before: {before:?}");
            eprintln!("after: {:?}", c.store().stats().expect("stats"));
            took
        }
    };
    println!("{n} x {name} on {which}: {took:?}");
}

/// Peak RSS and disk bytes per live session of one contender, measured in a child process.
struct Memory {
    label: String,
    peak_rss_kib: u64,
    disk_per_session: f64,
}

/// The contenders of the memory rows: (argument for the child, label).
fn memory_contenders() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for e in engines() {
        v.push((format!("store-{}", e.name()), store_label(e)));
        v.push((
            format!("store-{}-4mib", e.name()),
            format!("{} cache 4 MiB", store_label(e)),
        ));
    }
    v.push(("raw-sled".into(), RAW.into()));
    v.push(("raw-redb".into(), RAW_REDB.into()));
    v.push(("sqlite".into(), SQLITE.into()));
    v
}

fn memory_rows(plan: &Plan) -> Vec<Memory> {
    let exe = std::env::current_exe().expect("the path of this program");
    memory_contenders()
        .into_iter()
        .map(|(arg, label)| {
            let out = Command::new(&exe)
                .args(["--child-memory", &arg, &plan.memory_sessions.to_string()])
                .output()
                .expect("running the memory child");
            assert!(
                out.status.success(),
                "the memory child for {label} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let field = |name: &str| -> f64 {
                text.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN)
            };
            Memory {
                label,
                peak_rss_kib: field("rss_kib=") as u64,
                disk_per_session: field("disk_per_session="),
            }
        })
        .collect()
}

/// In a child process: write `n` sessions of 8 + 8 keys, then print peak RSS and disk use.
fn child_memory(which: &str, n: usize) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mode = Mode::Durable;
    let report = |c: &dyn Fn() -> u64| {
        let disk = c();
        println!(
            "rss_kib={} disk_per_session={:.1}",
            peak_rss_kib(),
            disk as f64 / n as f64
        );
    };
    match which {
        "raw-sled" => {
            let c = RawSled::new(mode, clock);
            workload::populate(&c, n);
            report(&|| c.disk_bytes());
        }
        "raw-redb" => {
            let c = RawRedb::new(mode, clock);
            workload::populate(&c, n);
            report(&|| c.disk_bytes());
        }
        "sqlite" => {
            let c = Sqlite::new(mode, clock);
            workload::populate(&c, n);
            report(&|| c.disk_bytes());
        }
        store => {
            let engine = Engine::ALL
                .iter()
                .copied()
                .find(|e| {
                    store == format!("store-{}", e.name())
                        || store == format!("store-{}-4mib", e.name())
                })
                .expect("a known contender");
            let cache = if store.ends_with("-4mib") {
                4 << 20
            } else {
                64 << 20
            };
            let c = StoreContender::with_cache(engine, mode, clock, cache);
            workload::populate(&c, n);
            report(&|| c.disk_bytes());
        }
    }
}

/// The peak resident set size of this process (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The CPU count and model, and the load average, for the header.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    format!("{cpus} CPUs, {model}; load average {load}")
}

fn fmt_rate(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x >= 10_000.0 {
        format!("{:.0}k", x / 1_000.0)
    } else if x >= 1_000.0 {
        format!("{:.1}k", x / 1_000.0)
    } else {
        format!("{x:.0}")
    }
}

fn fmt_ratio(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.2}")
    }
}

/// The ratio columns: (numerator, denominator) contender labels.
fn ratio_columns() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for e in engines() {
        let store = store_label(e);
        let raw = if e == Engine::Sled { RAW } else { RAW_REDB };
        v.push((store.clone(), raw.to_owned()));
        v.push((store, SQLITE.to_owned()));
    }
    v
}

/// The short name of a ratio column: `redb store/SQLite`.
fn ratio_name(a: &str, b: &str) -> String {
    let a = a
        .strip_prefix("store (")
        .and_then(|x| x.strip_suffix(')'))
        .map_or(a.to_owned(), |e| format!("{e} store"));
    format!("{a}/{b}")
}

fn print_table(table: &Table, scaling: &[(Engine, f64)], memory: &[Memory], sessions: usize) {
    let ratios = ratio_columns();
    let mut header = vec!["workload (ops/s)".to_owned()];
    header.extend(table.columns.iter().cloned());
    header.extend(ratios.iter().map(|(a, b)| ratio_name(a, b)));
    let mut rows: Vec<Vec<String>> = Vec::new();
    for &w in Workload::ALL {
        if table.columns.iter().all(|c| table.get(w, c).is_nan()) {
            continue;
        }
        let mut row = vec![w.name()];
        row.extend(table.columns.iter().map(|c| fmt_rate(table.get(w, c))));
        row.extend(ratios.iter().map(|(a, b)| table.ratio(w, a, b).show()));
        rows.push(row);
    }
    if !memory.is_empty() {
        for mut row in memory_table_rows(table, scaling, memory, sessions) {
            row.resize(header.len(), "-".into());
            rows.push(row);
        }
    }

    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        println!("| {} |", parts.join(" | "));
    };
    line(&header);
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                "-".repeat(*w)
            } else {
                format!("{}:", "-".repeat(w - 1))
            }
        })
        .collect();
    line(&rule);
    for r in &rows {
        line(r);
    }
}

/// The rows below the workloads: peak RSS, the same with a small cache,
/// disk bytes per live session, and reap scaling.
fn memory_table_rows(
    table: &Table,
    scaling: &[(Engine, f64)],
    memory: &[Memory],
    sessions: usize,
) -> Vec<Vec<String>> {
    let mem = |label: &str| memory.iter().find(|m| m.label == label);
    let mut rss_row = vec![format!("peak RSS MiB, {sessions} sessions written")];
    let mut disk_row = vec!["disk bytes per live session".to_owned()];
    let mut cache_row = vec!["  same, cache_capacity 4 MiB: RSS MiB".to_owned()];
    for c in &table.columns {
        let m = mem(c);
        rss_row.push(m.map_or("-".into(), |m| {
            format!("{:.1}", m.peak_rss_kib as f64 / 1024.0)
        }));
        disk_row.push(m.map_or("-".into(), |m| format!("{:.0}", m.disk_per_session)));
        cache_row.push(mem(&format!("{c} cache 4 MiB")).map_or("-".into(), |m| {
            format!("{:.1}", m.peak_rss_kib as f64 / 1024.0)
        }));
    }
    let ratio_of = |f: &dyn Fn(&Memory) -> f64, a: &str, b: &str| match (mem(a), mem(b)) {
        (Some(a), Some(b)) => fmt_ratio(f(a) / f(b)),
        _ => "-".into(),
    };
    let rss = |m: &Memory| m.peak_rss_kib as f64;
    let disk = |m: &Memory| m.disk_per_session;
    for (a, b) in ratio_columns() {
        rss_row.push(ratio_of(&rss, &a, &b));
        disk_row.push(ratio_of(&disk, &a, &b));
        cache_row.push("-".to_owned());
    }
    let mut scaling_row = vec![format!(
        "reap {REAP_EXPIRED} among {}k / among {}k live (x)",
        REAP_LIVE[1] / 1000,
        REAP_LIVE[0] / 1000
    )];
    for c in &table.columns {
        let s = scaling.iter().find(|(e, _)| store_label(*e) == *c);
        scaling_row.push(s.map_or("-".into(), |(_, s)| fmt_ratio(*s)));
    }
    vec![rss_row, cache_row, disk_row, scaling_row]
}

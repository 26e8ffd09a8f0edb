//! The workloads, written once against [`Contender`] so that the criterion
//! benches and the report run exactly the same operations on every contender.
//!
//! A workload is prepared once (its setup is not measured), then run any
//! number of times: `run(n)` does `n` operations and returns the time they
//! took, leaving out any per-operation setup. That is the shape criterion's
//! `iter_custom` wants, and the report sums it over a time budget.

use std::hint::black_box;
use std::time::{Duration, Instant};

use sessionstore::ManualClock;

use super::contender::{COMPONENT, Contender, IDLE, Mode, key_names, values};

/// Keys in each scope of a populated session, and dirty keys of the large save.
pub const KEYS: usize = 8;
/// Sessions the reap workload expires and reaps per operation.
pub const REAP_BATCH: u64 = 100;
/// Sessions each thread of a durable workload saves into, in turn.
pub const SESSIONS_PER_THREAD: usize = 16;

/// One measured operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Create an empty session under a fresh id.
    Create,
    /// Save this many dirty keys into the global scope of a live session.
    Save(usize),
    /// Read the global scope (8 keys) of a live session.
    GetGlobal,
    /// Read one component's scope (8 keys) of a live session.
    GetComponent,
    /// Destroy a session that holds 8 keys in its global scope.
    Destroy,
    /// Move the idle deadline of a live session.
    Touch,
    /// Move a session with 8 + 8 keys to a fresh id.
    Regenerate,
    /// Reap expired sessions, `REAP_BATCH` per operation; the rate is per session.
    Reap,
    /// Save 1 dirty key, flushed before returning, from this many threads at once.
    Durable(usize),
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: &'static [Workload] = &[
        Workload::Create,
        Workload::Save(1),
        Workload::Save(KEYS),
        Workload::GetGlobal,
        Workload::GetComponent,
        Workload::Destroy,
        Workload::Touch,
        Workload::Regenerate,
        Workload::Reap,
        Workload::Durable(1),
        Workload::Durable(4),
        Workload::Durable(16),
    ];

    /// Its name in the report and in criterion's group names.
    pub fn name(self) -> String {
        match self {
            Workload::Create => "create".into(),
            Workload::Save(n) => format!("save_{n}_keys"),
            Workload::GetGlobal => "get_global_8_keys".into(),
            Workload::GetComponent => "get_component_8_keys".into(),
            Workload::Destroy => "destroy".into(),
            Workload::Touch => "touch".into(),
            Workload::Regenerate => "regenerate".into(),
            Workload::Reap => "reap".into(),
            Workload::Durable(t) => format!("durable_save_{t}_threads"),
        }
    }

    /// The durability its contenders are opened with: durable, the store's
    /// default, unless `background` asks for background flushing. The durable
    /// workloads are durable either way.
    pub fn mode(self, background: bool) -> Mode {
        match self {
            Workload::Durable(_) => Mode::Durable,
            _ if background => Mode::Background,
            _ => Mode::Durable,
        }
    }

    /// Whether its contenders must read a `ManualClock` (the reap workload moves it).
    pub fn needs_manual_clock(self) -> bool {
        self == Workload::Reap
    }

    /// Sessions handled per operation, for throughput.
    pub fn elements_per_op(self) -> u64 {
        match self {
            Workload::Reap => REAP_BATCH,
            _ => 1,
        }
    }
}

/// A prepared workload: `run(n)` does `n` operations and returns their time.
pub type Runner<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

/// Writers that `populate` runs at once, so that durable contenders can
/// share flushes while the population is written.
const POPULATE_THREADS: usize = 16;

/// Creates `n` sessions with `KEYS` keys in the global scope and `KEYS` in
/// the component's scope, from several threads; returns their ids.
pub fn populate<C: Contender>(c: &C, n: usize) -> Vec<String> {
    let names = key_names(KEYS);
    let vals = values(names, 0);
    let vals = &vals;
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..POPULATE_THREADS)
            .map(|t| {
                let count = n / POPULATE_THREADS + usize::from(t < n % POPULATE_THREADS);
                scope.spawn(move || {
                    (0..count)
                        .map(|_| {
                            let mut global = c.create();
                            c.save(&mut global, vals);
                            let sid = c.sid(&global).to_owned();
                            let mut component = c.open(&sid, Some(COMPONENT));
                            c.save(&mut component, vals);
                            sid
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|w| w.join().expect("a populating thread"))
            .collect()
    })
}

/// Creates `n` empty sessions from several threads.
pub fn create_many<C: Contender>(c: &C, n: usize) {
    std::thread::scope(|scope| {
        for t in 0..POPULATE_THREADS {
            let count = n / POPULATE_THREADS + usize::from(t < n % POPULATE_THREADS);
            scope.spawn(move || {
                for _ in 0..count {
                    c.create();
                }
            });
        }
    });
}

/// Prepares `workload` on `c`, with `population` sessions to work on where it
/// needs them. For `Workload::Reap`, `c` must read `clock`.
pub fn prepare<'a, C: Contender>(
    c: &'a C,
    workload: Workload,
    population: usize,
    clock: &'a ManualClock,
) -> Runner<'a> {
    match workload {
        Workload::Create => Box::new(move |n| timed(n, || drop(black_box(c.create())))),
        Workload::Save(k) => {
            let sids = populate(c, population);
            let mut scopes: Vec<C::Scope> = sids.iter().map(|s| c.open(s, None)).collect();
            let names = key_names(k);
            let rounds = [values(names, 1), values(names, 2)];
            let mut i = 0usize;
            Box::new(move |n| {
                timed(n, || {
                    let len = scopes.len();
                    c.save(&mut scopes[i % len], &rounds[(i / len) % 2]);
                    i += 1;
                })
            })
        }
        Workload::GetGlobal | Workload::GetComponent => {
            let component = (workload == Workload::GetComponent).then_some(COMPONENT);
            let sids = populate(c, population);
            let mut i = 0usize;
            Box::new(move |n| {
                timed(n, || {
                    let got = c.get(&sids[i % sids.len()], component);
                    assert_eq!(got, KEYS, "a get read the wrong number of keys");
                    i += 1;
                })
            })
        }
        Workload::Destroy => {
            let names = key_names(KEYS);
            let vals = values(names, 0);
            Box::new(move |n| {
                let mut spent = Duration::ZERO;
                let mut left = n;
                while left > 0 {
                    let chunk = left.min(1_000);
                    let sids: Vec<String> = (0..chunk)
                        .map(|_| {
                            let mut s = c.create();
                            c.save(&mut s, &vals);
                            c.sid(&s).to_owned()
                        })
                        .collect();
                    let start = Instant::now();
                    for sid in &sids {
                        assert!(c.destroy(sid), "destroying a live session");
                    }
                    spent += start.elapsed();
                    left -= chunk;
                }
                spent
            })
        }
        Workload::Touch => {
            let sids = populate(c, population);
            let mut i = 0usize;
            Box::new(move |n| {
                timed(n, || {
                    assert!(c.touch(&sids[i % sids.len()]), "touching a live session");
                    i += 1;
                })
            })
        }
        Workload::Regenerate => {
            let mut sids = populate(c, population);
            let mut i = 0usize;
            Box::new(move |n| {
                timed(n, || {
                    let len = sids.len();
                    sids[i % len] = c.regenerate(&sids[i % len]);
                    i += 1;
                })
            })
        }
        Workload::Reap => {
            let names = key_names(1);
            let vals = values(names, 0);
            Box::new(move |n| {
                let mut spent = Duration::ZERO;
                for _ in 0..n {
                    for _ in 0..REAP_BATCH {
                        let mut s = c.create();
                        c.save(&mut s, &vals);
                    }
                    clock.advance(IDLE + Duration::from_secs(1));
                    let start = Instant::now();
                    let reaped = c.reap();
                    spent += start.elapsed();
                    assert_eq!(reaped as u64, REAP_BATCH, "a reap missed expired sessions");
                }
                spent
            })
        }
        Workload::Durable(threads) => {
            let mut scopes: Vec<Vec<C::Scope>> = (0..threads)
                .map(|_| (0..SESSIONS_PER_THREAD).map(|_| c.create()).collect())
                .collect();
            let names = key_names(1);
            let vals = values(names, 1);
            Box::new(move |n| {
                let threads = scopes.len() as u64;
                let vals = &vals;
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for (t, mine) in scopes.iter_mut().enumerate() {
                        // Spread n over the threads; the first n % threads do one more.
                        let ops = n / threads + u64::from((t as u64) < n % threads);
                        scope.spawn(move || {
                            for i in 0..ops as usize {
                                let len = mine.len();
                                c.save(&mut mine[i % len], vals);
                            }
                        });
                    }
                });
                start.elapsed()
            })
        }
    }
}

/// Times `n` calls of `op`.
fn timed(n: u64, mut op: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        op();
    }
    start.elapsed()
}

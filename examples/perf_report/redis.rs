//! The Redis section of `perf_report`: `RedisStore` against raw redis-rs
//! doing the same work on the same server, from 1 and 16 threads.
//!
//! - A save sets one key and removes another in the global scope of a live
//!   session. Raw redis-rs does it as one `MULTI`/`EXEC` of `HSET` (a
//!   metadata field and the key), `HDEL` (the removed key) and `PEXPIRE`: the
//!   same writes without the store's liveness and incarnation check.
//! - A get reads the global scope (8 keys) of a live session. Raw redis-rs
//!   does one `HGETALL` of the session's hash.
//!
//! Raw redis-rs gives each thread a connection of its own; the store's 16
//! threads share its pool of 16. Every cell is the median of interleaved rounds.
//! The section prints a table and the line
//! `redis: save_ratio=… get_ratio=… threads16_vs_1=…`: the lower store/raw
//! ratio of the 1 and 16 thread runs, for saves and for gets, and the
//! store's saves per second from 16 threads over those from 1.

use std::time::{Duration, Instant};

use sessionstore::{RedisConfig, RedisStore, Session, SessionStore};

/// What can go wrong: the server, or the store.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sessions each workload spreads over (separate ones for saves and gets).
const POPULATION: usize = 1_000;
/// Keys in the global scope of a populated session.
const KEYS: [&str; 8] = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"];
/// The thread counts measured.
const THREADS: [usize; 2] = [1, 16];
/// The sessions' idle timeout; raw redis-rs sets it as the TTL.
const IDLE: Duration = Duration::from_secs(30 * 60);

/// How long to measure.
pub struct Budget {
    /// Rounds per cell; the cell is their median.
    pub rounds: usize,
    /// Measured time per round per cell.
    pub per_round: Duration,
}

/// The figures of the section.
pub struct Figures {
    /// Markdown rows: workload, store, raw, ratio.
    pub rows: Vec<String>,
    /// The `redis: …` line.
    pub line: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Save,
    Get,
}

/// A 32-byte value, different for every round.
fn value(round: u64) -> Vec<u8> {
    let mut v = round.to_le_bytes().to_vec();
    v.resize(32, b'v');
    v
}

/// The raw contender's key of a session: a hash tag, as the store's.
fn raw_key(namespace: &str, i: usize) -> String {
    format!("{{{namespace}-raw:{i}}}")
}

/// Runs the section against the server at `url`.
///
/// # Errors
///
/// The server cannot be reached, or a call fails.
pub fn run(url: &str, budget: &Budget) -> Result<Figures, BoxError> {
    let namespace = format!("perf-report-{}", std::process::id());
    let store = RedisConfig::new(url)
        .namespace(&namespace)
        .idle_timeout(IDLE)
        .pool_size(16)
        .open()?;
    let client = redis::Client::open(url)?;
    let mut conns = (0..16)
        .map(|_| client.get_connection())
        .collect::<Result<Vec<_>, _>>()?;

    let save_sids = populate_store(&store)?;
    let get_sids = populate_store(&store)?;
    let raw_save = populate_raw(&mut conns[0], &namespace, 0)?;
    let raw_get = populate_raw(&mut conns[0], &namespace, POPULATION)?;
    let mut scopes: Vec<Session> = save_sids
        .iter()
        .map(|sid| {
            store
                .get(sid, None)?
                .ok_or_else(|| format!("session {sid} vanished").into())
        })
        .collect::<Result<_, BoxError>>()?;

    let cells: Vec<(Op, usize)> = [Op::Save, Op::Get]
        .into_iter()
        .flat_map(|op| THREADS.into_iter().map(move |t| (op, t)))
        .collect();
    let mut store_rates = vec![Vec::new(); cells.len()];
    let mut raw_rates = vec![Vec::new(); cells.len()];
    let mut round = 0u64;
    for r in 0..=budget.rounds {
        for (c, &(op, threads)) in cells.iter().enumerate() {
            // Round 0 warms up and is not counted.
            let per = if r == 0 {
                budget.per_round / 4
            } else {
                budget.per_round
            };
            let s = rate(per, &mut |n| {
                round += 1;
                match op {
                    Op::Save => store_saves(&store, &mut scopes, threads, n, round),
                    Op::Get => store_gets(&store, &get_sids, threads, n),
                }
            })?;
            let w = rate(per, &mut |n| {
                round += 1;
                match op {
                    Op::Save => raw_saves(&mut conns, &raw_save, threads, n, round),
                    Op::Get => raw_gets(&mut conns, &raw_get, threads, n),
                }
            })?;
            if r > 0 {
                store_rates[c].push(s);
                raw_rates[c].push(w);
            }
        }
    }

    for sid in save_sids.iter().chain(&get_sids) {
        store.destroy(sid)?;
    }
    for key in raw_save.iter().chain(&raw_get) {
        redis::cmd("DEL").arg(key).query::<()>(&mut conns[0])?;
    }

    let mut rows = Vec::new();
    let mut ratios = [f64::INFINITY; 2];
    let mut store_save = [0.0; 2];
    for (c, &(op, threads)) in cells.iter().enumerate() {
        let s = median(std::mem::take(&mut store_rates[c]));
        let w = median(std::mem::take(&mut raw_rates[c]));
        let name = match op {
            Op::Save => "redis save (set 1, remove 1)",
            Op::Get => "redis get (global scope, 8 keys)",
        };
        rows.push(format!(
            "| {name}, {threads} thread{} | {s:.0} | {w:.0} | {:.2} |",
            if threads == 1 { "" } else { "s" },
            s / w
        ));
        let which = usize::from(op == Op::Get);
        ratios[which] = ratios[which].min(s / w);
        if op == Op::Save {
            store_save[usize::from(threads != 1)] = s;
        }
    }
    let line = format!(
        "redis: save_ratio={:.2} get_ratio={:.2} threads16_vs_1={:.2}",
        ratios[0],
        ratios[1],
        store_save[1] / store_save[0]
    );
    Ok(Figures { rows, line })
}

/// `POPULATION` sessions with `KEYS` in their global scope.
fn populate_store(store: &RedisStore) -> Result<Vec<String>, BoxError> {
    let mut sids = Vec::with_capacity(POPULATION);
    for _ in 0..POPULATION {
        let mut s = store.create()?;
        for k in KEYS {
            s.set_raw(k, value(0))?;
        }
        store.save(&mut s)?;
        sids.push(s.id().to_owned());
    }
    Ok(sids)
}

/// The same population for raw redis-rs: a metadata field and `KEYS`, with a TTL.
fn populate_raw(
    conn: &mut redis::Connection,
    namespace: &str,
    first: usize,
) -> Result<Vec<String>, BoxError> {
    let mut keys = Vec::with_capacity(POPULATION);
    for i in first..first + POPULATION {
        let key = raw_key(namespace, i);
        let mut hset = redis::cmd("HSET");
        hset.arg(&key).arg("meta").arg(value(0));
        for k in KEYS {
            hset.arg(k).arg(value(0));
        }
        redis::pipe()
            .atomic()
            .add_command(hset)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(IDLE.as_millis() as u64)
            .ignore()
            .query::<()>(conn)?;
        keys.push(key);
    }
    Ok(keys)
}

/// `n` operations spread over `threads` threads, each running `op(thread, i)`
/// on its own share; the time they took.
fn spread<T: Send>(
    states: &mut [T],
    threads: usize,
    n: u64,
    op: impl Fn(&mut T, usize, u64) -> Result<(), BoxError> + Sync,
) -> Result<Duration, BoxError> {
    let op = &op;
    let start = Instant::now();
    let results: Vec<Result<(), BoxError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = states
            .iter_mut()
            .take(threads)
            .enumerate()
            .map(|(t, state)| {
                let ops = n / threads as u64 + u64::from((t as u64) < n % threads as u64);
                scope.spawn(move || {
                    for i in 0..ops {
                        op(state, t, i)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a thread panicked".into())))
            .collect()
    });
    let took = start.elapsed();
    results.into_iter().collect::<Result<(), _>>()?;
    Ok(took)
}

/// The share of `items` thread `t` of `threads` works on.
fn share<T>(items: &[T], t: usize, threads: usize) -> &[T] {
    let per = items.len() / threads;
    &items[t * per..(t + 1) * per]
}

fn store_saves(
    store: &RedisStore,
    scopes: &mut [Session],
    threads: usize,
    n: u64,
    round: u64,
) -> Result<Duration, BoxError> {
    let per = scopes.len() / threads;
    let mut shares: Vec<&mut [Session]> = scopes.chunks_mut(per).collect();
    let v = value(round);
    spread(&mut shares, threads, n, |mine, _, i| {
        let len = mine.len() as u64;
        let s = &mut mine[(i % len) as usize];
        s.set_raw("k0", v.clone())?;
        s.remove("k1");
        store.save(s)?;
        Ok(())
    })
}

fn store_gets(
    store: &RedisStore,
    sids: &[String],
    threads: usize,
    n: u64,
) -> Result<Duration, BoxError> {
    let mut states = vec![(); threads];
    spread(&mut states, threads, n, |_, t, i| {
        let mine = share(sids, t, threads);
        let sid = &mine[(i % mine.len() as u64) as usize];
        let got = store.get(sid, None)?.map_or(0, |s| s.len());
        if got != KEYS.len() {
            return Err(format!("a get read {got} keys of {sid}, not {}", KEYS.len()).into());
        }
        Ok(())
    })
}

fn raw_saves(
    conns: &mut [redis::Connection],
    keys: &[String],
    threads: usize,
    n: u64,
    round: u64,
) -> Result<Duration, BoxError> {
    let v = value(round);
    let ttl = IDLE.as_millis() as u64;
    spread(conns, threads, n, |conn, t, i| {
        let mine = share(keys, t, threads);
        let key = &mine[(i % mine.len() as u64) as usize];
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(key)
            .arg("meta")
            .arg(&v[..24])
            .arg("k0")
            .arg(&v)
            .ignore()
            .cmd("HDEL")
            .arg(key)
            .arg("k1")
            .ignore()
            .cmd("PEXPIRE")
            .arg(key)
            .arg(ttl)
            .ignore()
            .query::<()>(conn)?;
        Ok(())
    })
}

fn raw_gets(
    conns: &mut [redis::Connection],
    keys: &[String],
    threads: usize,
    n: u64,
) -> Result<Duration, BoxError> {
    spread(conns, threads, n, |conn, t, i| {
        let mine = share(keys, t, threads);
        let key = &mine[(i % mine.len() as u64) as usize];
        let all: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL").arg(key).query(conn)?;
        let got = all.iter().filter(|(f, _)| f.as_slice() != b"meta").count();
        if got != KEYS.len() {
            return Err(format!("HGETALL read {got} keys of {key}, not {}", KEYS.len()).into());
        }
        Ok(())
    })
}

/// Operations per second of `run` over about `budget`, in chunks that double while short.
fn rate(
    budget: Duration,
    run: &mut dyn FnMut(u64) -> Result<Duration, BoxError>,
) -> Result<f64, BoxError> {
    let mut chunk = 16u64;
    let (mut ops, mut spent) = (0u64, Duration::ZERO);
    while spent < budget {
        spent += run(chunk)?;
        ops += chunk;
        if spent < budget / 8 {
            chunk *= 2;
        }
    }
    Ok(ops as f64 / spent.as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

//! Saves of `perf_report`'s Redis kind (set one key and remove another in
//! the global scope of one of 1,000 live sessions), by the store or by raw
//! redis-rs, for a given time: a target for `valgrind --tool=callgrind` and
//! `perf`, not a benchmark (`perf_report --redis` is).
//!
//! ```sh
//! redis-server --port 6399 --save '' --appendonly no --daemonize yes
//! cargo build --release --features redis --example redis_saves
//! valgrind --tool=callgrind --toggle-collect='*save_session*' \
//!     target/release/examples/redis_saves redis://127.0.0.1:6399/ store 2 1
//! valgrind --tool=callgrind --toggle-collect='*raw_save*' \
//!     target/release/examples/redis_saves redis://127.0.0.1:6399/ raw 2 1
//! ```
//!
//! Arguments: URL, `store` or `raw`, seconds [5], threads [1]. Prints the
//! saves per second; the instructions per save are callgrind's total over
//! that count times the seconds.

use std::time::{Duration, Instant};

use sessionstore::{RedisConfig, SessionStore};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SESSIONS: usize = 1_000;

/// Raw redis-rs's save, as `perf_report` does it.
#[inline(never)]
fn raw_save(conn: &mut redis::Connection, key: &str, value: &[u8]) -> redis::RedisResult<()> {
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(key)
        .arg("meta")
        .arg(&value[..24])
        .arg("k0")
        .arg(value)
        .ignore()
        .cmd("HDEL")
        .arg(key)
        .arg("k1")
        .ignore()
        .cmd("PEXPIRE")
        .arg(key)
        .arg(1_800_000)
        .ignore()
        .query(conn)
}

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: redis_saves URL store|raw [SECONDS] [THREADS]")?;
    let raw = match args.next().as_deref() {
        Some("store") => false,
        Some("raw") => true,
        _ => return Err("the second argument is `store` or `raw`".into()),
    };
    let seconds: f64 = args.next().map_or(Ok(5.0), |s| s.parse())?;
    let threads: usize = args.next().map_or(Ok(1), |s| s.parse())?;
    if threads == 0 || threads > SESSIONS {
        return Err(format!("threads: 1 to {SESSIONS}").into());
    }
    let namespace = format!("redis-saves-{}", std::process::id());
    let store = RedisConfig::new(&url)
        .namespace(&namespace)
        .idle_timeout(Duration::from_secs(1800))
        .pool_size(threads.try_into()?)
        .open()?;
    let client = redis::Client::open(url.as_str())?;
    let mut sessions = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        let mut s = store.create()?;
        for k in 0..8 {
            s.set_raw(&format!("k{k}"), vec![b'v'; 32])?;
        }
        store.save(&mut s)?;
        sessions.push(s);
    }
    let start = Instant::now();
    let per = SESSIONS / threads;
    let saves = std::thread::scope(|scope| -> Result<u64, BoxError> {
        let handles: Vec<_> = sessions
            .chunks_mut(per)
            .take(threads)
            .enumerate()
            .map(|(t, mine)| {
                let (store, client, namespace) = (&store, &client, &namespace);
                scope.spawn(move || -> Result<u64, BoxError> {
                    let mut conn = client.get_connection()?;
                    let mut n = 0u64;
                    while start.elapsed().as_secs_f64() < seconds {
                        let i = (n as usize) % mine.len();
                        let value = vec![(n % 251) as u8; 32];
                        if raw {
                            let key = format!("{{{namespace}-raw:{t}:{i}}}");
                            raw_save(&mut conn, &key, &value)?;
                        } else {
                            let s = &mut mine[i];
                            s.set_raw("k0", value)?;
                            s.remove("k1");
                            store.save(s)?;
                        }
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h.join().map_err(|_| "a thread panicked")??;
        }
        Ok(total)
    })?;
    println!(
        "{}: {saves} saves, {:.0} per second",
        if raw { "raw" } else { "store" },
        saves as f64 / seconds
    );
    for s in &sessions {
        store.destroy(s.id())?;
    }
    let mut conn = client.get_connection()?;
    for t in 0..threads {
        for i in 0..per {
            redis::cmd("DEL")
                .arg(format!("{{{namespace}-raw:{t}:{i}}}"))
                .exec(&mut conn)?;
        }
    }
    Ok(())
}

//! How fast `Store::update` counts when many threads update one key of one
//! session: the worst case for conflicts.
//!
//! `cargo run --release --example update_rate [-- THREADS UPDATES_EACH [periodic]]`
//!
//! Defaults: 8 threads, 500 updates each, `Durability::Immediate`, on a
//! temporary redb store. It prints the updates per second, how many times a
//! change ran (a conflict makes `update` run it again), and checks that the
//! final count is exact.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sessionstore::{Config, Durability, Engine};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let threads: u64 = args.next().map_or(Ok(8), |a| a.parse())?;
    let each: u64 = args.next().map_or(Ok(500), |a| a.parse())?;
    let durability = match args.next().as_deref() {
        Some("periodic") => Durability::Periodic(Duration::from_secs(1)),
        None => Durability::Immediate,
        Some(other) => return Err(format!("unknown mode {other:?}").into()),
    };
    let store = Config::temporary()
        .engine(Engine::Redb)
        .durability(durability)
        .update_attempts(u32::MAX)
        .open()?;
    let sid = store.create()?.id().to_owned();
    let runs = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<(), sessionstore::Error> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<(), sessionstore::Error> {
                    for _ in 0..each {
                        store.update(&sid, None, |s| {
                            runs.fetch_add(1, Ordering::Relaxed);
                            let n = s.get::<u64>("n")?.unwrap_or(0) + 1;
                            s.set("n", &n)
                        })?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().expect("no panic")?;
        }
        Ok(())
    })?;
    let elapsed = start.elapsed();
    let total = threads * each;
    let n = store
        .get(&sid, None)?
        .and_then(|s| s.get::<u64>("n").ok().flatten());
    if n != Some(total) {
        return Err(format!("lost updates: the count is {n:?}, want {total}").into());
    }
    let ran = runs.load(Ordering::Relaxed);
    println!(
        "update_rate: threads={threads} updates={total} durability={durability:?} \
         updates_per_s={:.0} runs_per_update={:.2} count_exact=true",
        total as f64 / elapsed.as_secs_f64(),
        ran as f64 / total as f64
    );
    Ok(())
}

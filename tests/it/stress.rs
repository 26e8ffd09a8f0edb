//! Concurrency stress: 8 threads run mixed operations on 64 sessions while the
//! reaper runs every millisecond and the (shared, manual) clock moves on.
//!
//! 48 "stable" sessions never expire and are never destroyed: every save to
//! them must stay visible to the end. Each thread writes only its own keys,
//! so the last value each thread saved under each key is known exactly. 16
//! "churn" sessions are also destroyed, recreated, regenerated and left to
//! expire, so saves race with deletions and with the reaper. Every save
//! writes a pair of keys with one number, and every read checks that both
//! carry the same one. Bounded by operation count, not time;
//! `STRESS_OPS=N` changes the operations per thread, `STRESS_SEED=N` the choices.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use sessionstore::{Error, Result, Session, Store};

const THREADS: usize = 8;
const STABLE: usize = 48;
const CHURN: usize = 16;
const COMPONENTS: [Option<&str>; 3] = [None, Some("a"), Some("b")];

fn stable(i: usize) -> String {
    format!("stable-{i}")
}

fn churn(i: usize) -> String {
    format!("churn-{i}")
}

fn ops_per_thread() -> u64 {
    std::env::var("STRESS_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// The keys thread `t` writes: a pair that every save sets to one number.
fn pair(t: usize) -> [String; 2] {
    [format!("t{t}-a"), format!("t{t}-b")]
}

/// Checks that in `scope` every thread's pair is either absent or one number.
fn check_pairs(scope: &Session) -> Result<()> {
    for t in 0..THREADS {
        let [a, b] = pair(t);
        let (va, vb) = (scope.get::<u64>(&a)?, scope.get::<u64>(&b)?);
        assert_eq!(
            va,
            vb,
            "a save of thread {t} is partly visible in {} {:?}",
            scope.id(),
            scope.component()
        );
    }
    Ok(())
}

/// What one thread saved last to each stable scope: (session, component) -> number.
type Saved = BTreeMap<(usize, usize), u64>;

fn worker(
    store: &Store,
    clock: &sessionstore::ManualClock,
    seed: u64,
    t: usize,
    ops: u64,
) -> Result<Saved> {
    let mut rng = Rng(seed ^ ((t as u64) << 48));
    let mut saved = Saved::new();
    let [ka, kb] = pair(t);
    for seq in 1..=ops {
        match rng.below(100) {
            // Save this thread's pair to a stable scope: it must succeed.
            0..=34 => {
                let (s, c) = (rng.below(STABLE as u64) as usize, rng.below(3) as usize);
                let mut scope = store.get(&stable(s), COMPONENTS[c])?.expect("stable lives");
                check_pairs(&scope)?;
                scope.set(&ka, &seq)?;
                scope.set(&kb, &seq)?;
                store.save(&mut scope)?;
                saved.insert((s, c), seq);
            }
            // Read a stable scope: own writes are visible, every pair is whole.
            35..=49 => {
                let (s, c) = (rng.below(STABLE as u64) as usize, rng.below(3) as usize);
                let scope = store.get(&stable(s), COMPONENTS[c])?.expect("stable lives");
                check_pairs(&scope)?;
                assert_eq!(
                    scope.get::<u64>(&ka)?,
                    saved.get(&(s, c)).copied(),
                    "thread {t} reads its own last save"
                );
            }
            50..=57 => {
                let sid = if rng.below(2) == 0 {
                    stable(rng.below(STABLE as u64) as usize)
                } else {
                    churn(rng.below(CHURN as u64) as usize)
                };
                store.touch(&sid)?;
            }
            // Save to a churn session, which may vanish at any moment.
            58..=69 => {
                let sid = churn(rng.below(CHURN as u64) as usize);
                let c = rng.below(3) as usize;
                if let Some(mut scope) = store.get(&sid, COMPONENTS[c])? {
                    check_pairs(&scope)?;
                    scope.set(&ka, &seq)?;
                    scope.set(&kb, &seq)?;
                    match store.save(&mut scope) {
                        Ok(()) | Err(Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            70..=77 => {
                let sid = churn(rng.below(CHURN as u64) as usize);
                store.destroy(&sid)?;
                match store.create_new_session(&sid) {
                    Ok(_) | Err(Error::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            78..=81 => {
                let sid = churn(rng.below(CHURN as u64) as usize);
                match store.regenerate(&sid) {
                    Ok(_) | Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            82..=85 => {
                let sid = churn(rng.below(CHURN as u64) as usize);
                let idle = Duration::from_secs(60 * (1 + rng.below(10)));
                match store.set_idle_timeout(&sid, Some(idle)) {
                    Ok(()) | Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            86..=91 => clock.advance(Duration::from_secs(60)),
            92..=95 => {
                store.reap_expired()?;
            }
            _ => {
                for id in store.session_ids().take(20) {
                    id?;
                }
                store.stats()?;
            }
        }
    }
    Ok(saved)
}

engine_test!(
    eight_threads_with_a_busy_reaper_lose_no_completed_save,
    |db| {
        let store = db
            .config()
            .reap_interval(Some(Duration::from_millis(1)))
            .open()?;
        for i in 0..STABLE {
            store.create_new_session(&stable(i))?;
            store.set_idle_timeout(&stable(i), None)?;
        }
        for i in 0..CHURN {
            store.create_new_session(&churn(i))?;
        }
        let ops = ops_per_thread();
        let seed = std::env::var("STRESS_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0x5EED);
        println!(
            "stress on {}: {THREADS} threads x {ops} operations, STRESS_SEED={seed}",
            db.engine
        );
        let (done_tx, done_rx) = mpsc::channel();
        let store = Arc::new(store);
        for t in 0..THREADS {
            let (store, clock, done) = (store.clone(), db.clock.clone(), done_tx.clone());
            std::thread::Builder::new()
                .name(format!("stress-{t}"))
                .spawn(move || {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        worker(&store, &clock, seed, t, ops)
                    }));
                    // Let go of the store before reporting, so that the main
                    // thread can take it back once every worker has reported.
                    drop(store);
                    let _ = done.send((t, r));
                })
                .expect("spawning a worker");
        }
        drop(done_tx);
        // Not a speed limit: a bound after which the threads are taken to be deadlocked.
        let mut saved = Vec::new();
        for _ in 0..THREADS {
            match done_rx.recv_timeout(Duration::from_secs(300)) {
                Ok((t, Ok(r))) => saved.push((t, r?)),
                Ok((t, Err(panic))) => std::panic::resume_unwind(Box::new(format!(
                    "thread {t} panicked: {:?}",
                    panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                ))),
                Err(_) => panic!(
                    "deadlock: {} of {THREADS} threads still running after 300 s",
                    THREADS - saved.len()
                ),
            }
        }

        let check = |store: &Store| -> Result<()> {
            for (t, last) in &saved {
                let [ka, kb] = pair(*t);
                for (&(s, c), &seq) in last {
                    let scope = store.get(&stable(s), COMPONENTS[c])?.expect("stable lives");
                    assert_eq!(
                        (scope.get::<u64>(&ka)?, scope.get::<u64>(&kb)?),
                        (Some(seq), Some(seq)),
                        "thread {t}'s last save to stable-{s} {:?}",
                        COMPONENTS[c]
                    );
                }
            }
            for id in store.session_ids().chain(store.expired_session_ids()) {
                let id = id?;
                for c in COMPONENTS {
                    if let Some(scope) = store.get(&id, c)? {
                        check_pairs(&scope)?;
                    }
                }
            }
            let report = store.verify()?;
            assert!(report.is_ok(), "{report:?}");
            Ok(())
        };
        store.reap_expired()?;
        check(&store)?;
        let stats = store.stats()?;
        println!("stress on {}: {stats:?}", db.engine);
        assert_eq!(stats.failed_reap_passes, 0);
        assert!(
            stats.reaped_since_open > 0,
            "the reaper had work: {stats:?}"
        );
        drop(Arc::try_unwrap(store).expect("the workers are done"));
        let reopened = db.open()?;
        check(&reopened)?;
        Ok(())
    }
);

//! Crash test: a child process writes, the parent kills it with SIGKILL at a
//! random moment, reopens the store and checks what survived.
//!
//! The child is this test binary run again with `CRASH_CHILD_STORE` set, so
//! the same test function runs the writer instead of the checker. Each save
//! stamps every key of one scope with a fresh generation number, and the child
//! prints each operation before it is sent (`SEND`) and when it is
//! acknowledged (`ACK`). After the kill the parent replays the printed
//! operations and requires the store to equal exactly the state after some
//! prefix of them (nothing partly visible, nothing out of order) that holds
//! every acknowledged save (`Immediate`), or every save acknowledged before
//! the last explicit flush and before the last periodic interval (`Periodic`).
//!
//! A binary of its own, not a module of `tests/it`: every round re-runs this
//! binary as a child and kills it, and the rounds must not share the process
//! (and its CPU) with the rest of the suite, whose timing they would skew.
//!
//! The seed is printed; `CRASH_SEED=N` replays a run, `CRASH_ROUNDS=N` changes the rounds.
#[path = "../it/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sessionstore::{Durability, Result, Store};

const CHILD_STORE: &str = "CRASH_CHILD_STORE";
const CHILD_SEED: &str = "CRASH_CHILD_SEED";
const CHILD_FIRST_GEN: &str = "CRASH_CHILD_FIRST_GEN";

/// Sessions and scopes the child writes.
const SESSIONS: usize = 5;
const COMPONENTS: [Option<&str>; 3] = [None, Some("a"), Some("b")];
/// Keys each save stamps with its generation, besides a padding value.
const KEYS: [&str; 8] = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"];
/// `Periodic` flush interval, and how late a periodic flush may be before a
/// loss counts as a failure (generous: the machine is shared).
const PERIOD: Duration = Duration::from_millis(20);
const PERIOD_SLACK: Duration = Duration::from_secs(2);
/// The child flushes explicitly after this many operations in `Periodic` mode.
const FLUSH_EVERY: u64 = 25;

engine_test!(immediate, |db| {
    crash_rounds(db, Durability::Immediate, module_path!())
});

engine_test!(periodic, |db| {
    crash_rounds(db, Durability::Periodic(PERIOD), module_path!())
});

/// A small deterministic generator (splitmix64), so the seed replays a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn sid(i: usize) -> String {
    format!("crash-{i}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create(usize),
    Destroy(usize),
    Save(usize, usize),
}

impl Op {
    fn encode(self) -> String {
        match self {
            Op::Create(s) => format!("create {s}"),
            Op::Destroy(s) => format!("destroy {s}"),
            Op::Save(s, c) => format!("save {s} {c}"),
        }
    }

    fn decode(words: &[&str]) -> Op {
        let n = |i: usize| words[i].parse::<usize>().expect("a number");
        match words[0] {
            "create" => Op::Create(n(1)),
            "destroy" => Op::Destroy(n(1)),
            "save" => Op::Save(n(1), n(2)),
            other => panic!("unknown operation {other:?}"),
        }
    }
}

/// What the store holds: each existing session's scopes, with the generation
/// every key of the scope carries. A session with no saved scope maps to an empty map.
type State = BTreeMap<usize, BTreeMap<usize, u64>>;

fn apply(state: &mut State, gen_: u64, op: Op) {
    match op {
        Op::Create(s) => {
            state.insert(s, BTreeMap::new());
        }
        Op::Destroy(s) => {
            state.remove(&s);
        }
        Op::Save(s, c) => {
            state.entry(s).or_default().insert(c, gen_);
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn crash_rounds(mut db: common::Db, durability: Durability, module: &str) -> Result<()> {
    if let Ok(store) = std::env::var(CHILD_STORE) {
        db.path = PathBuf::from(store);
        return child(&db, durability);
    }
    let test = format!(
        "{}::{}",
        module.split_once("::").map_or(module, |(_, rest)| rest),
        db.engine.name()
    );
    parent(&db, durability, &test)
}

/// The writer: runs until it is killed.
fn child(db: &common::Db, durability: Durability) -> Result<()> {
    let mut rng = Rng(env_u64(CHILD_SEED).expect("a seed"));
    let mut gen_ = env_u64(CHILD_FIRST_GEN).expect("a first generation");
    let store = db.config().durability(durability).open()?;
    println!("READY");
    let periodic = matches!(durability, Durability::Periodic(_));
    let mut since_flush = 0;
    loop {
        let s = rng.below(SESSIONS as u64) as usize;
        let live = store.get(&sid(s), None)?.is_some();
        let op = match (live, rng.below(12)) {
            (false, _) => Op::Create(s),
            (true, 0) => Op::Destroy(s),
            (true, _) => Op::Save(s, rng.below(COMPONENTS.len() as u64) as usize),
        };
        println!("SEND {gen_} {}", op.encode());
        match op {
            Op::Create(s) => drop(store.create_new_session(&sid(s))?),
            Op::Destroy(s) => assert!(store.destroy(&sid(s))?),
            Op::Save(s, c) => {
                let mut session = store.get(&sid(s), COMPONENTS[c])?.expect("live");
                for k in KEYS {
                    session.set(k, &gen_)?;
                }
                let pad = vec![gen_ as u8; rng.below(3000) as usize];
                session.set("pad", &pad)?;
                store.save(&mut session)?;
            }
        }
        println!("ACK {gen_}");
        since_flush += 1;
        if periodic && since_flush == FLUSH_EVERY {
            store.flush()?;
            println!("FLUSHED {gen_}");
            since_flush = 0;
        }
        gen_ += 1;
    }
}

/// What one child printed, each line with when the parent read it.
#[derive(Default)]
struct Transcript {
    sent: Vec<(u64, Op)>,
    acked: Vec<(u64, Instant)>,
    flushed: Option<u64>,
}

fn parent(db: &common::Db, durability: Durability, test: &str) -> Result<()> {
    let seed = env_u64("CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_nanos() as u64
    });
    let rounds = env_u64("CRASH_ROUNDS").unwrap_or(30);
    println!("crash test {test}: seed {seed} (CRASH_SEED={seed} replays it), {rounds} rounds");
    let mut rng = Rng(seed);
    let periodic = matches!(durability, Durability::Periodic(_));
    // The children's leftover temporary directories go under ours.
    let child_tmp = db.dir.path().join("child-tmp");
    std::fs::create_dir_all(&child_tmp).expect("a directory for the children");

    let mut state = State::new();
    let mut next_gen = 1u64;
    let (mut acked_total, mut lost_acked, mut worst_loss) = (0usize, 0usize, Duration::ZERO);
    for round in 0..rounds {
        // Mostly kill while writing; sometimes during start-up and recovery;
        // in Periodic mode sometimes after long enough to test the interval bound.
        let (after_ready, delay) = match rng.below(8) {
            0 => (false, Duration::from_millis(rng.below(60))),
            1 if periodic => (true, Duration::from_millis(2_300 + rng.below(400))),
            _ => (true, Duration::from_millis(rng.below(300))),
        };
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_STORE, &db.path)
            .env(CHILD_SEED, rng.next().to_string())
            .env(CHILD_FIRST_GEN, next_gen.to_string())
            .env("TMPDIR", &child_tmp)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the child");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((line, Instant::now())).is_err() {
                    break;
                }
            }
        });
        let start = Instant::now();
        let mut lines = Vec::new();
        if after_ready {
            // Wait for READY (or the child's early end), then for the delay.
            // libtest prints the test's name before it, on the same line.
            let give_up = start + Duration::from_secs(60);
            let wait = || give_up.saturating_duration_since(Instant::now());
            while let Ok((l, t)) = rx.recv_timeout(wait()) {
                let ready = l.ends_with("READY");
                lines.push((l, t));
                if ready {
                    break;
                }
            }
            std::thread::sleep(delay);
        } else {
            std::thread::sleep(delay.saturating_sub(start.elapsed()));
        }
        let early_exit = child.try_wait().expect("polling the child");
        child.kill().expect("SIGKILL");
        let killed_at = Instant::now();
        let status = child.wait().expect("reaping the child");
        reader.join().expect("the reader thread");
        lines.extend(rx.try_iter());
        if let Some(status) = early_exit {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut err).ok();
            panic!("round {round}: the child ended by itself ({status}) before the kill:\n{err}");
        }
        assert!(!status.success(), "round {round}: the child was killed");

        let mut t = Transcript::default();
        for (line, at) in &lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["SEND", g, rest @ ..] => t.sent.push((g.parse().expect("gen"), Op::decode(rest))),
                ["ACK", g] => t.acked.push((g.parse().expect("gen"), *at)),
                ["FLUSHED", g] => t.flushed = Some(g.parse().expect("gen")),
                _ => {}
            }
        }
        acked_total += t.acked.len();
        // The latest generation that must have survived.
        let must = if periodic {
            let bound = killed_at.checked_sub(PERIOD + PERIOD_SLACK);
            let by_time = t
                .acked
                .iter()
                .filter(|(_, at)| bound.is_some_and(|b| *at <= b))
                .map(|(g, _)| *g)
                .max();
            t.flushed.max(by_time)
        } else {
            t.acked.last().map(|(g, _)| *g)
        };

        let store = db.config().open()?;
        let seen = observe(&store, round)?;
        // Replay: the store must equal the state after some prefix of the
        // operations sent, at or after the last one that had to survive.
        let mut replay = state.clone();
        let mut cut = (replay == seen).then_some(next_gen - 1);
        for &(g, op) in &t.sent {
            apply(&mut replay, g, op);
            if replay == seen {
                cut = Some(g);
            }
        }
        let Some(cut) = cut else {
            panic!(
                "round {round} (seed {seed}): the store matches no prefix of the writes: nothing \
                 may be partly visible or out of order.\nstore: {seen:?}\nbefore the round: \
                 {state:?}\nsent: {:?}",
                t.sent
            );
        };
        if let Some(must) = must {
            assert!(
                cut >= must,
                "round {round} (seed {seed}): generation {must} had to survive, the store holds \
                 only up to {cut}; acked: {:?}, flushed: {:?}",
                t.acked.iter().map(|(g, _)| g).collect::<Vec<_>>(),
                t.flushed
            );
        }
        if let Some(&(_, first_lost_at)) = t.acked.iter().find(|(g, _)| *g > cut) {
            lost_acked += t.acked.iter().filter(|(g, _)| *g > cut).count();
            worst_loss = worst_loss.max(killed_at - first_lost_at);
        }
        state = seen;
        next_gen = t.sent.last().map_or(next_gen, |(g, _)| g + 1);

        // The store is whole and takes writes.
        let report = store.verify()?;
        assert!(report.is_ok(), "round {round}: {report:?}");
        let mut probe = store.create()?;
        probe.set("probe", &round)?;
        store.save(&mut probe)?;
        assert_eq!(
            store
                .get(probe.id(), None)?
                .expect("live")
                .get::<u64>("probe")?,
            Some(round)
        );
        assert!(store.destroy(probe.id())?);
    }
    println!(
        "crash test {test}: {rounds} rounds, {acked_total} acknowledged writes, {lost_acked} of \
         them lost (allowed only in Periodic), longest loss window {worst_loss:?}"
    );
    if !periodic {
        assert_eq!(lost_acked, 0);
    }
    Ok(())
}

/// Reads every scope of every session the child writes, requiring each scope
/// to be whole: all its keys present with one generation, or none.
fn observe(store: &Store, round: u64) -> Result<State> {
    let mut state = State::new();
    for s in 0..SESSIONS {
        let Some(_) = store.get(&sid(s), None)? else {
            continue;
        };
        let scopes = state.entry(s).or_default();
        for (c, component) in COMPONENTS.iter().enumerate() {
            let scope = store.get(&sid(s), *component)?.expect("live");
            if scope.is_empty() {
                continue;
            }
            let gens: Vec<Option<u64>> = KEYS
                .iter()
                .map(|k| scope.get::<u64>(k))
                .collect::<Result<_>>()?;
            let pad = scope.get::<Vec<u8>>("pad")?;
            let g = gens[0];
            assert!(
                g.is_some() && gens.iter().all(|x| *x == g) && scope.len() == KEYS.len() + 1,
                "round {round}: scope {c} of session {s} is partly written: {gens:?}, {} keys",
                scope.len()
            );
            let g = g.expect("checked");
            let pad = pad.expect("the padding is part of every save");
            assert!(
                pad.iter().all(|b| *b == g as u8),
                "round {round}: the padding of scope {c} of session {s} is not all of generation {g}"
            );
            scopes.insert(c, g);
        }
    }
    Ok(state)
}

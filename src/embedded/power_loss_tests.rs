//! Power loss and I/O errors under the default engine, redb, through the
//! whole store: the database lives on a simulated disk
//! (`backend::redb::sim_disk`) that records every write and sync.
//!
//! A round runs a short random script of creates, saves, destroys and
//! flushes over three ids, then loses power at a cut point: every write not
//! covered by a completed sync is lost, except a random torn prefix of the
//! last one (or, with `Loss::Reordered`, a random subset of them with one
//! torn). The store is reopened on the bytes that survive, and then:
//!
//! - it opens, and `verify` is clean;
//! - what it holds is the state after some prefix of the script, every
//!   save whole: nothing partly visible, nothing out of order;
//! - that prefix holds, under `Immediate`, every acknowledged operation;
//!   under `Periodic`, every one up to the last acknowledged flush, which is
//!   the documented bound (the period is an hour, so the script's flushes
//!   are the only ones);
//! - it takes new writes.
//!
//! Other rounds inject single `ENOSPC` or `EIO` errors instead, and check
//! that they are errors that say so, that the store then reads right or says
//! to reopen, and that a reopen holds everything acknowledged.
//!
//! `POWER_LOSS_ROUNDS=N` sets the random rounds (default 1,000) and
//! `POWER_LOSS_SEED=N` replays a run; every run prints its seed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use crate::embedded::backend::redb::RedbBackend;
use crate::embedded::backend::redb::sim_disk::{Fault, Image, Loss, SimDisk};
use crate::embedded::core::Parts;
use crate::error::{Error, Result};
use crate::{Config, Durability, ManualClock, Store};

const IDS: [&str; 3] = ["a", "b", "c"];
const SCOPES: [Option<&str>; 2] = [None, Some("cart")];
const KEYS: [&str; 3] = ["k0", "k1", "k2"];
/// `Periodic` rounds flush only when the script says so: within a round the
/// timer never fires, so the last completed flush is known exactly.
const PERIOD: Duration = Duration::from_secs(3600);
/// Longest one round may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(120);

/// splitmix64: small, seedable, good enough to pick cut points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 for `n == 0`).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn seed() -> u64 {
    env_u64("POWER_LOSS_SEED").unwrap_or_else(|| {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_or(0x5EED, |()| u64::from_le_bytes(b))
    })
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Create(usize),
    /// Sets every key of the scope to the generation `generation`, padded to `len` bytes.
    Save {
        sid: usize,
        scope: usize,
        generation: u64,
        len: usize,
    },
    Destroy(usize),
    Flush,
}

/// Live ids, each with the generation of every scope saved since its creation.
type State = BTreeMap<usize, BTreeMap<usize, u64>>;

fn step(state: &mut State, op: &Op) {
    match *op {
        Op::Create(sid) => drop(state.insert(sid, BTreeMap::new())),
        Op::Save {
            sid,
            scope,
            generation,
            ..
        } => drop(state.entry(sid).or_default().insert(scope, generation)),
        Op::Destroy(sid) => drop(state.remove(&sid)),
        Op::Flush => {}
    }
}

/// A random script of `len` operations, each valid in the state before it.
fn script(rng: &mut Rng, len: usize) -> Vec<Op> {
    let mut state = State::new();
    let mut ops = Vec::with_capacity(len);
    for generation in 1..=len as u64 {
        let sid = rng.below(IDS.len() as u64) as usize;
        let live = state.contains_key(&sid);
        let op = match rng.below(10) {
            _ if !live => Op::Create(sid),
            0 => Op::Destroy(sid),
            1 => Op::Flush,
            _ => Op::Save {
                sid,
                scope: rng.below(SCOPES.len() as u64) as usize,
                generation,
                // Up to three pages a key: saves that split and free pages.
                len: {
                    let most = if rng.below(4) == 0 { 12_000 } else { 600 };
                    1 + rng.below(most) as usize
                },
            },
        };
        step(&mut state, &op);
        ops.push(op);
    }
    ops
}

fn run(store: &Store, op: &Op) -> Result<()> {
    match *op {
        Op::Create(sid) => store.create_new_session(IDS[sid]).map(drop),
        Op::Save {
            sid,
            scope,
            generation,
            len,
        } => {
            let mut s = store
                .get(IDS[sid], SCOPES[scope])?
                .ok_or_else(|| Error::storage("the test", "a live session read as gone"))?;
            let value = format!("{generation}:{}", "x".repeat(len));
            for key in KEYS {
                s.set(key, &value)?;
            }
            store.save(&mut s)
        }
        Op::Destroy(sid) => store.destroy(IDS[sid]).map(drop),
        Op::Flush => store.flush(),
    }
}

/// What the store holds, as a `State`; an error if a save is partly there.
fn observe(store: &Store) -> std::result::Result<State, String> {
    let mut state = State::new();
    for (sid, id) in IDS.iter().enumerate() {
        if store.get(id, None).map_err(|e| e.to_string())?.is_none() {
            continue;
        }
        let scopes = state.entry(sid).or_default();
        for (scope, component) in SCOPES.iter().enumerate() {
            let s = store
                .get(id, *component)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{id} vanished between two reads"))?;
            let mut generations = Vec::new();
            for key in KEYS {
                let v: Option<String> = s.get(key).map_err(|e| e.to_string())?;
                generations.push(v.and_then(|v| v.split(':').next()?.parse::<u64>().ok()));
            }
            match generations.as_slice() {
                [None, None, None] => {}
                [Some(g), rest @ ..] if rest.iter().all(|r| *r == Some(*g)) => {
                    scopes.insert(scope, *g);
                }
                other => return Err(format!("{id} scope {scope} is partly saved: {other:?}")),
            }
        }
    }
    Ok(state)
}

#[derive(Debug, Clone, Copy)]
struct Mode {
    durability: Durability,
    loss: Loss,
}

impl Mode {
    fn immediate(&self) -> bool {
        self.durability == Durability::Immediate
    }
}

const MODES: [Mode; 4] = [
    Mode {
        durability: Durability::Immediate,
        loss: Loss::TornLast,
    },
    Mode {
        durability: Durability::Periodic(PERIOD),
        loss: Loss::TornLast,
    },
    Mode {
        durability: Durability::Immediate,
        loss: Loss::Reordered,
    },
    Mode {
        durability: Durability::Periodic(PERIOD),
        loss: Loss::Reordered,
    },
];

fn open(disk: &SimDisk, mode: Mode) -> Result<Store> {
    let backend = RedbBackend::open_on(disk.clone(), Path::new("<simulated disk>"), 1 << 20)?;
    let config = Config::temporary()
        .clock(Arc::new(ManualClock::default()))
        .reap_interval(None)
        .idle_timeout(Duration::from_secs(3600))
        .durability(mode.durability);
    Store::from_parts(
        config,
        Parts {
            backend: Some(Arc::new(backend)),
            ids: None,
            journal: Some(Arc::new(disk.segments())),
            write_through: false,
        },
    )
}

/// Where the power goes, in operations after the store's open.
#[derive(Debug, Clone, Copy)]
enum Cut {
    At(u64),
    /// After the script's last operation.
    End,
}

/// What one round saw.
#[derive(Debug, Default)]
struct Outcome {
    acknowledged: usize,
    /// Operations the reopened store had to hold.
    required: usize,
    /// Whether the cut fell inside the script (not after it).
    cut_inside: bool,
    /// Operations of the disk, from the open on.
    ops: u64,
    /// The disk's completed syncs, numbered from the open on.
    syncs: Vec<u64>,
}

/// How many operations of `ops` a reopen must hold when the first `acked`
/// were acknowledged: under `Immediate` all of them; under `Periodic`, all up
/// to the last acknowledged flush (the timer never fires: `PERIOD`).
fn required(mode: Mode, ops: &[Op], acked: usize) -> usize {
    if mode.immediate() {
        return acked;
    }
    ops[..acked]
        .iter()
        .rposition(|op| matches!(op, Op::Flush))
        .map_or(0, |i| i + 1)
}

/// One round: the script on a fresh disk, a power loss at `cut`, a reopen on
/// what survives, and every check. An `Err` is a failed check, described.
fn power_loss_round(
    rng: &mut Rng,
    mode: Mode,
    ops: &[Op],
    cut: Cut,
) -> std::result::Result<Outcome, String> {
    let disk = SimDisk::default();
    let store = open(&disk, mode).map_err(|e| format!("first open: {e}"))?;
    let base = disk.ops();
    if let Cut::At(k) = cut {
        disk.cut_at(base + k);
    }
    let mut acked = 0;
    let mut attempted = 0;
    for op in ops {
        attempted += 1;
        match run(&store, op) {
            Ok(()) => acked += 1,
            Err(Error::Storage { .. }) if disk.cut_when().is_some() => break,
            Err(e) => return Err(format!("op {op:?} failed with a live disk: {e}")),
        }
    }
    let cut_inside = disk.cut_when().is_some();
    disk.cut_at(disk.ops());
    let outcome = Outcome {
        acknowledged: acked,
        required: required(mode, ops, acked),
        cut_inside,
        ops: disk.ops() - base,
        syncs: disk
            .syncs()
            .iter()
            .filter(|&&s| s >= base)
            .map(|s| s - base)
            .collect(),
    };
    // Closing now only meets the dead disk: errors, logged.
    drop(store);
    let image = disk.crash(mode.loss, &mut |n| rng.below(n));
    check_reopen(image, mode, ops, outcome.required, attempted)?;
    Ok(outcome)
}

/// Reopens the store on `image` and checks it: it holds the state after a
/// prefix of `ops` of at least `required` and at most `attempted`
/// operations, `verify` is clean, and it takes a write.
fn check_reopen(
    image: Image,
    mode: Mode,
    ops: &[Op],
    required: usize,
    attempted: usize,
) -> std::result::Result<(), String> {
    let disk = SimDisk::with_image(image);
    let store = open(&disk, mode).map_err(|e| format!("reopen after the power loss: {e}"))?;
    let seen = observe(&store)?;
    let mut state = State::new();
    let mut prefixes = vec![state.clone()];
    for op in &ops[..attempted] {
        step(&mut state, op);
        prefixes.push(state.clone());
    }
    if !(required..=attempted).any(|k| prefixes[k] == seen) {
        let matches: Vec<usize> = (0..=attempted).filter(|&k| prefixes[k] == seen).collect();
        return Err(format!(
            "the store holds {seen:?}: the state after ops {matches:?}, \
             but it must be after {required}..={attempted}"
        ));
    }
    let report = store.verify().map_err(|e| format!("verify: {e}"))?;
    if !report.is_ok() {
        return Err(format!("verify after the reopen: {report:?}"));
    }
    let mut s = store
        .create_new_session("after")
        .map_err(|e| format!("a create after the reopen: {e}"))?;
    s.set("k", &7u8).map_err(|e| e.to_string())?;
    store
        .save(&mut s)
        .and_then(|()| store.flush())
        .map_err(|e| format!("a save after the reopen: {e}"))?;
    match store.get("after", None) {
        Ok(Some(s)) if s.get::<u8>("k").ok().flatten() == Some(7) => Ok(()),
        other => Err(format!("the save after the reopen reads back as {other:?}")),
    }
}

/// Runs `body` on a thread of its own, which calls `alive` after every
/// round; no round for `HANG` is a hang.
fn without_hang(name: &str, body: impl FnOnce(&dyn Fn()) -> String + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let summary = body(&|| drop(tx.send(None)));
            let _ = tx.send(Some(summary));
        })
        .expect("spawning the test thread");
    loop {
        match rx.recv_timeout(HANG) {
            Ok(None) => {}
            Ok(Some(summary)) => return println!("{name}: {summary}"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{name}: no round done in {HANG:?}: a hang")
            }
            // The body panicked: raise its panic here.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Err(panic) = worker.join() {
                    std::panic::resume_unwind(panic);
                }
                panic!("{name}: the test thread ended without a result");
            }
        }
    }
}

#[test]
fn power_loss_at_random_points_keeps_a_prefix_with_every_synced_save() {
    let seed = seed();
    let rounds = env_u64("POWER_LOSS_ROUNDS").unwrap_or(1_000);
    without_hang("power loss, random cuts", move |alive| {
        let mut rng = Rng(seed);
        let (mut inside, mut acked, mut required) = (0, 0, 0);
        for round in 0..rounds {
            let mode = MODES[(round % MODES.len() as u64) as usize];
            let len = 4 + rng.below(16) as usize;
            let ops = script(&mut rng, len);
            // About 3 operations of the disk per script operation: most cuts
            // fall inside the script, some after it.
            let cut = Cut::At(rng.below(ops.len() as u64 * 4));
            match power_loss_round(&mut rng, mode, &ops, cut) {
                Ok(o) => {
                    alive();
                    inside += u64::from(o.cut_inside);
                    acked += o.acknowledged;
                    required += o.required;
                }
                Err(e) => panic!(
                    "POWER_LOSS_SEED={seed}: round {round}, {mode:?}, cut {cut:?}, script {ops:?}: {e}"
                ),
            }
        }
        format!(
            "seed {seed}: {rounds} rounds, {inside} cut inside the script; \
             {acked} operations acknowledged, {required} of them required after the reopen and found"
        )
    });
}

#[test]
fn power_loss_at_every_sync_boundary_keeps_every_synced_save() {
    let seed = seed();
    without_hang("power loss, every sync", move |alive| {
        let mut rng = Rng(seed);
        let ops = script(&mut rng, 12);
        let mut rounds = 0;
        for mode in MODES.iter().filter(|m| m.immediate()) {
            let dry = power_loss_round(&mut rng, *mode, &ops, Cut::End)
                .unwrap_or_else(|e| panic!("POWER_LOSS_SEED={seed}: {mode:?}, no cut: {e}"));
            assert!(dry.syncs.len() >= ops.len() / 2, "{dry:?}");
            // Just before each sync (its writes issued, the last torn) and
            // just after it.
            for cut in dry.syncs.iter().flat_map(|&s| [s, s + 1]) {
                let o = power_loss_round(&mut rng, *mode, &ops, Cut::At(cut)).unwrap_or_else(|e| {
                    panic!("POWER_LOSS_SEED={seed}: {mode:?}, cut at {cut} of {dry:?}: {e}")
                });
                assert!(o.cut_inside || cut >= dry.ops, "{o:?}");
                rounds += 1;
                alive();
            }
        }
        format!(
            "seed {seed}: {rounds} rounds, script of {} operations",
            ops.len()
        )
    });
}

/// One round with errors injected at random operations of the disk: every
/// failing operation is a storage error that names the OS error, nothing
/// panics or hangs, the store stays readable and holds a prefix of the script
/// with every acknowledged operation, and after a power loss right then a
/// reopen holds every synced one.
fn fault_round(
    rng: &mut Rng,
    mode: Mode,
    ops: &[Op],
) -> std::result::Result<(bool, bool, bool), String> {
    let disk = SimDisk::default();
    let store = open(&disk, mode).map_err(|e| format!("open: {e}"))?;
    let base = disk.ops();
    let fault = if rng.below(2) == 0 {
        Fault::NoSpace
    } else {
        Fault::Eio
    };
    for _ in 0..=rng.below(3) {
        disk.fail_at(base + rng.below(ops.len() as u64 * 4), fault);
    }
    let mut acked = 0;
    let mut attempted = 0;
    let mut failed = false;
    let named = match fault {
        Fault::NoSpace => "No space left on device",
        Fault::Eio => "Input/output error",
    };
    for op in ops {
        attempted += 1;
        match run(&store, op) {
            Ok(()) => acked += 1,
            Err(e @ Error::Storage { .. }) => {
                let text = e.to_string();
                if !text.contains(named) {
                    return Err(format!("the error does not say {named:?}: {text}"));
                }
                failed = true;
                break;
            }
            Err(e) => return Err(format!("op {op:?}: not a storage error: {e}")),
        }
    }
    // Without a reopen: the store reads every acknowledged operation (and
    // perhaps the failed one), or refuses with an error that says to reopen
    // (redb refuses every call after a failed write until it is reopened).
    let readable = match observe(&store) {
        Ok(seen) => {
            let mut state = State::new();
            for op in &ops[..acked] {
                step(&mut state, op);
            }
            let before = state.clone();
            if let Some(op) = ops.get(acked) {
                step(&mut state, op);
            }
            if seen != before && seen != state {
                return Err(format!("the open store holds {seen:?} after the error"));
            }
            true
        }
        Err(e) if e.contains("re-open") => false,
        Err(e) => return Err(format!("a read after the error: {e}")),
    };
    // A write after the error: success, or an error that says to reopen or
    // names the fault (another one may be injected further on).
    let writable = match store
        .create_new_session("probe")
        .and_then(|mut s| store.save(&mut s))
    {
        Ok(()) => true,
        Err(e @ Error::Storage { .. })
            if e.to_string().contains("re-open") || e.to_string().contains(named) =>
        {
            false
        }
        Err(e) => return Err(format!("a write after the error: {e}")),
    };
    disk.cut_at(disk.ops());
    drop(store);
    let image = disk.crash(mode.loss, &mut |n| rng.below(n));
    check_reopen(image, mode, ops, required(mode, ops, acked), attempted)?;
    Ok((failed, failed && readable, failed && writable))
}

#[test]
fn injected_enospc_and_eio_are_errors_and_lose_nothing_acknowledged() {
    let seed = seed();
    let rounds = env_u64("POWER_LOSS_ROUNDS").map_or(300, |r| r.div_ceil(3));
    without_hang("injected I/O errors", move |alive| {
        let mut rng = Rng(seed);
        let (mut failed, mut readable, mut writable) = (0, 0, 0);
        for round in 0..rounds {
            let mode = MODES[(round % MODES.len() as u64) as usize];
            let len = 4 + rng.below(16) as usize;
            let ops = script(&mut rng, len);
            match fault_round(&mut rng, mode, &ops) {
                Ok((f, r, w)) => {
                    alive();
                    failed += u64::from(f);
                    readable += u64::from(r);
                    writable += u64::from(w);
                }
                Err(e) => {
                    panic!("POWER_LOSS_SEED={seed}: round {round}, {mode:?}, script {ops:?}: {e}")
                }
            }
        }
        assert!(
            failed > rounds / 4,
            "only {failed} of {rounds} rounds met an error"
        );
        format!(
            "seed {seed}: {rounds} rounds, {failed} met an error; without a reopen \
             {readable} of those still read and {writable} took a write"
        )
    });
}

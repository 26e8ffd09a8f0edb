//! Bytes written per create+destroy churn cycle, the store beside SQLite.
//!
//! A cycle creates a session, saves 8 keys of 32 bytes into its global
//! scope, and destroys it, among `LIVE` live sessions written beforehand.
//! Each contender runs its cycles alone (the others are closed), then makes
//! everything durable (the store's `flush`, SQLite's
//! `wal_checkpoint(TRUNCATE)`, which moves the WAL into the database as it
//! will have to sooner or later), and the bytes are read before and after:
//!
//! - `write_bytes` of `/proc/self/io`: what the kernel charged this process
//!   for dirtying page-cache pages of its files (in whole pages: one byte
//!   written into a clean page counts 4 KiB; a page dirtied again before
//!   it is written back counts once). This is the figure reported.
//! - the sectors written of the device the files are on
//!   (`/sys/dev/block/MAJ:MIN/stat`, 512 bytes each), as a cross-check:
//!   what reached the device, file-system journal and metadata included,
//!   but also every other process's writes in the same interval and pages
//!   written back later than the interval, so only an upper bound on a
//!   shared machine.
//!
//! Under `Durability::Periodic(200 ms)` (against `synchronous=NORMAL`) the
//! bytes per cycle depend on how many cycles fall between two flushes, and
//! so on the machine's speed and load.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionstore::{Clock, Durability, SystemClock};

use super::common::Sqlite;
use super::common::StoreContender;
use super::common::contender::{Contender, Mode, key_names, values};
use super::common::workload::{self, KEYS};
use super::scale::store_config;

/// Live sessions written before the churn.
const LIVE: usize = 1_000;

/// Bytes so far: (`write_bytes` of this process, sectors written on the device × 512).
fn counters(dir: &Path) -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let write_bytes = io
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (write_bytes, device_sectors(dir) * 512)
}

/// Sectors written on the block device holding `dir` (field 7 of its `stat`).
fn device_sectors(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return 0;
    };
    let dev = meta.dev();
    // The kernel's encoding of dev_t (glibc's gnu_dev_major / gnu_dev_minor).
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/stat"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(6).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// One contender's result: bytes per cycle by each count, and cycles per second.
pub struct Churn {
    pub label: String,
    pub write_bytes: f64,
    pub device_bytes: f64,
    pub cycles_per_s: f64,
}

/// Runs `cycles` churn cycles on `c` (after `LIVE` sessions) and counts the bytes.
fn churn<C: Contender>(label: &str, c: &C, cycles: usize) -> Churn {
    workload::populate(c, LIVE);
    c.flush();
    let vals = values(key_names(KEYS), 1);
    let before = counters(c.dir());
    let start = Instant::now();
    for _ in 0..cycles {
        let mut s = c.create();
        c.save(&mut s, &vals);
        let sid = c.sid(&s).to_owned();
        assert!(c.destroy(&sid), "destroying a live session");
    }
    c.flush();
    let took = start.elapsed();
    let after = counters(c.dir());
    let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / cycles as f64;
    Churn {
        label: label.to_owned(),
        write_bytes: per(after.0, before.0),
        device_bytes: per(after.1, before.1),
        cycles_per_s: cycles as f64 / took.as_secs_f64(),
    }
}

/// The store (default engine) under `durability`, in a new directory.
fn store(durability: Durability, clock: Arc<dyn Clock>) -> (tempfile::TempDir, StoreContender) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("store");
    let s = StoreContender::at(
        store_config(&path, clock).durability(durability),
        &path,
        "store",
    );
    (dir, s)
}

/// Every contender's churn, one after another: the store and SQLite, durable
/// and with background flushes.
pub fn measure(cycles: usize) -> Vec<Churn> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut out = Vec::new();
    {
        let (_dir, s) = store(Durability::Immediate, clock.clone());
        out.push(churn("store Immediate", &s, cycles));
    }
    {
        let q = Sqlite::new(Mode::Durable, clock.clone());
        out.push(churn("SQLite FULL", &q, cycles));
    }
    {
        let periodic = Durability::Periodic(Duration::from_millis(200));
        let (_dir, s) = store(periodic, clock.clone());
        out.push(churn("store Periodic(200 ms)", &s, cycles));
    }
    {
        let q = Sqlite::new(Mode::Background, clock);
        out.push(churn("SQLite NORMAL", &q, cycles));
    }
    out
}

/// The table and the `bytes:` line.
pub fn report(rows: &[Churn], cycles: usize) -> Vec<String> {
    let mut lines = vec![
        String::new(),
        format!(
            "Bytes written per create+destroy cycle ({cycles} cycles among {LIVE} live sessions, final flush included):"
        ),
        String::new(),
        "| contender | write_bytes per cycle (/proc/self/io) | device bytes per cycle (shared device) | cycles/s |".into(),
        "|---|---:|---:|---:|".into(),
    ];
    for r in rows {
        lines.push(format!(
            "| {} | {:.0} | {:.0} | {:.0} |",
            r.label, r.write_bytes, r.device_bytes, r.cycles_per_s
        ));
    }
    let of = |label: &str| {
        rows.iter()
            .find(|r| r.label == label)
            .map_or(f64::NAN, |r| r.write_bytes)
    };
    lines.push(String::new());
    lines.push(format!(
        "bytes: immediate_per_cycle={:.0} immediate_vs_sqlite={:.2} periodic_per_cycle={:.0} periodic_vs_sqlite_normal={:.2}",
        of("store Immediate"),
        of("store Immediate") / of("SQLite FULL"),
        of("store Periodic(200 ms)"),
        of("store Periodic(200 ms)") / of("SQLite NORMAL"),
    ));
    lines
}

//! The operations every contender implements, and what they share.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use sessionstore::Clock;

/// The idle timeout of every session in every contender.
pub const IDLE: Duration = Duration::from_secs(30 * 60);

/// The component whose scope the component workloads use.
pub const COMPONENT: &str = "cart";

/// Whether a write must be on disk before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Flushed in the background: the store with `Durability::Periodic(1 s)`,
    /// raw sled with its flusher every second, SQLite with `synchronous=NORMAL`.
    Background,
    /// Flushed before the call returns: the store with `Durability::Immediate`,
    /// raw sled with a `flush` after every batch, SQLite with `synchronous=FULL`.
    Durable,
}

/// One way to keep sessions. Every method panics on error: a bench that
/// fails should stop loudly, not measure an error path.
pub trait Contender: Sync {
    /// An open scope of one session, as a caller holds it between a read and a save.
    type Scope: Send;

    /// The column name in the report.
    fn label(&self) -> String;
    /// Creates an empty session under a fresh random id; returns its global scope.
    fn create(&self) -> Self::Scope;
    /// Reads one scope (`None`: the global one) of a live session, to save into later.
    fn open(&self, sid: &str, component: Option<&str>) -> Self::Scope;
    /// The session id of a scope.
    fn sid<'a>(&self, scope: &'a Self::Scope) -> &'a str;
    /// Sets `values` in the scope and saves them with the last-access time, atomically.
    fn save(&self, scope: &mut Self::Scope, values: &[(&str, Vec<u8>)]);
    /// Reads one scope of a live session; returns how many keys it holds.
    fn get(&self, sid: &str, component: Option<&str>) -> usize;
    /// Deletes a session and every scope of it. Returns whether it was live.
    fn destroy(&self, sid: &str) -> bool;
    /// Moves the idle deadline of a live session to now plus the idle timeout.
    fn touch(&self, sid: &str) -> bool;
    /// Moves a live session to a fresh id in one atomic write; returns the new id.
    fn regenerate(&self, sid: &str) -> String;
    /// Deletes every expired session; returns how many.
    fn reap(&self) -> usize;
    /// Makes every write so far durable.
    fn flush(&self);
    /// Bytes the contender's files take on disk, after a flush.
    fn disk_bytes(&self) -> u64 {
        self.flush();
        dir_bytes(self.dir())
    }
    /// The directory the contender keeps its files in.
    fn dir(&self) -> &Path;
}

/// A fresh session id as the store draws it: 16 bytes from the OS CSPRNG,
/// in URL-safe base64. Raw sled and SQLite use it too, so that all pay the same.
pub fn fresh_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Now, in microseconds since the Unix epoch, from `clock`.
pub fn now_micros(clock: &Arc<dyn Clock>) -> u64 {
    let since = clock.now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}

/// The idle timeout in microseconds.
pub fn idle_micros() -> u64 {
    u64::try_from(IDLE.as_micros()).unwrap_or(u64::MAX)
}

/// Bytes the regular files under `dir` take on disk (allocated blocks).
pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            total += dir_bytes(&entry.path());
        } else {
            total += meta.blocks() * 512;
        }
    }
    total
}

/// The names of the keys the workloads set.
const KEY_NAMES: [&str; 8] = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"];

/// The names of `n` keys (at most 8): `k0`, `k1`, ...
pub fn key_names(n: usize) -> &'static [&'static str] {
    &KEY_NAMES[..n]
}

/// A value for each key in `names`, 32 bytes each, different for every `round`.
pub fn values(names: &[&'static str], round: u64) -> Vec<(&'static str, Vec<u8>)> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut v = Vec::with_capacity(32);
            v.extend_from_slice(&round.to_le_bytes());
            v.extend_from_slice(&(i as u64).to_le_bytes());
            v.resize(32, b'v');
            (*name, v)
        })
        .collect()
}

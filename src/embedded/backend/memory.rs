//! An in-memory engine for the crate's own tests, with switches that make it
//! fail or hang, so that error paths can be tested deterministically.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Condvar, Mutex};

use super::{Backend, Batch, Entry, Op};
use crate::error::{Error, Result};

#[derive(Default)]
pub(crate) struct MemoryBackend {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// While set, every apply and flush fails.
    pub fail_writes: AtomicBool,
    /// While set, every scan fails.
    pub fail_scans: AtomicBool,
    hang: Mutex<bool>,
    hang_scans: Mutex<bool>,
    /// Range scans that have started, hung ones included.
    pub scans_started: std::sync::atomic::AtomicUsize,
    hang_flush: Mutex<bool>,
    /// The name of the thread of the latest apply that started.
    last_apply_thread: Mutex<Option<String>>,
    /// Applies that have started, hung ones included.
    pub applies_started: std::sync::atomic::AtomicUsize,
    /// Point reads (`get`) so far.
    pub gets: std::sync::atomic::AtomicUsize,
    /// Flushes that have started, hung ones included.
    pub flushes_started: std::sync::atomic::AtomicUsize,
    unhang: Condvar,
    /// What `checkpoint_chunk` says; 0 for no limit.
    pub chunk: std::sync::atomic::AtomicUsize,
    /// The keys of every batch applied, in order.
    pub applied: Mutex<Vec<Vec<Vec<u8>>>>,
}

impl MemoryBackend {
    /// While `on`, every apply blocks, as sled's does when it deadlocks.
    pub fn set_hang(&self, on: bool) {
        self.set_switch(&self.hang, on);
    }

    /// While `on`, every range scan blocks, as sled's reads do while one of
    /// its writes hangs.
    pub fn set_hang_scans(&self, on: bool) {
        self.set_switch(&self.hang_scans, on);
    }

    /// While `on`, every flush blocks.
    pub fn set_hang_flush(&self, on: bool) {
        self.set_switch(&self.hang_flush, on);
    }

    /// The name of the thread of the latest apply that started.
    pub fn last_apply_thread(&self) -> Option<String> {
        self.last_apply_thread.lock().clone()
    }

    fn set_switch(&self, switch: &Mutex<bool>, on: bool) {
        *switch.lock() = on;
        self.unhang.notify_all();
    }

    /// Blocks while `switch` is on.
    fn wait_while(&self, switch: &Mutex<bool>) {
        let mut on = switch.lock();
        while *on {
            self.unhang.wait(&mut on);
        }
    }

    fn check(&self, flag: &AtomicBool) -> Result<()> {
        if flag.load(Ordering::SeqCst) {
            return Err(Error::storage("a test", "injected failure"));
        }
        Ok(())
    }
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Ok(self.map.lock().get(key).cloned())
    }

    fn visit_prefix(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        self.check(&self.fail_scans)?;
        let map = self.map.lock();
        for (k, v) in map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            visit(k, v);
        }
        Ok(())
    }

    fn scan_range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        self.scans_started.fetch_add(1, Ordering::SeqCst);
        self.wait_while(&self.hang_scans);
        self.check(&self.fail_scans)?;
        let map = self.map.lock();
        Ok(map
            .range(start.to_vec()..)
            .take_while(|(k, _)| end.is_none_or(|e| k.as_slice() < e))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        *self.last_apply_thread.lock() = std::thread::current().name().map(str::to_owned);
        self.applies_started.fetch_add(1, Ordering::SeqCst);
        self.wait_while(&self.hang);
        self.check(&self.fail_writes)?;
        self.applied.lock().push(
            batch
                .ops()
                .iter()
                .map(|op| match op {
                    Op::Put(k, _) | Op::Delete(k) | Op::DeletePrefix(k) => k.clone(),
                })
                .collect(),
        );
        let mut map = self.map.lock();
        for op in batch.ops() {
            match op {
                Op::Put(k, v) => drop(map.insert(k.clone(), v.clone())),
                Op::Delete(k) => drop(map.remove(k)),
                Op::DeletePrefix(p) => map.retain(|k, _| !k.starts_with(p)),
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.flushes_started.fetch_add(1, Ordering::SeqCst);
        self.wait_while(&self.hang_flush);
        self.check(&self.fail_writes)
    }

    fn checkpoint_chunk(&self) -> usize {
        match self.chunk.load(Ordering::SeqCst) {
            0 => usize::MAX,
            n => n,
        }
    }

    fn size_on_disk(&self) -> Result<u64> {
        Ok(self
            .map
            .lock()
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum())
    }
}

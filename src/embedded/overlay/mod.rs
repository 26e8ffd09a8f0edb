//! The writes applied since the last checkpoint, held in memory in front of
//! the engine.
//!
//! A batch whose journal record is appended (and synced, if durable) is
//! applied here, to a sorted map of the keys it puts or deletes, instead of
//! to the engine: an engine commit per batch (redb's copy-on-write of every
//! page on the path to each key, sled's log buffer roll) cost five times
//! what the rest of a save does (see docs/performance.md). A checkpoint
//! ([`Backend::flush`] here) hands everything held to the engine as one
//! batch, makes it durable, and only then lets it go; the journal keeps the
//! records until then, so a crash loses nothing this map held.
//!
//! - **Reads** see the map over the engine: the newest value of a key is
//!   the map's, and a deleted key is a tombstone that hides the engine's
//!   value. A read holds the map's read lock over its engine read, so it
//!   sees one state: the engine changes meanwhile only by a checkpoint,
//!   which writes exactly what the map still holds.
//! - **Layers.** A checkpoint freezes the map as it is and starts a new one
//!   for the writes that come meanwhile; the frozen layer is dropped once
//!   the engine holds it durably. A checkpoint that fails keeps it, and the
//!   next one writes it again (a batch of plain puts and deletes, so writing
//!   it twice is harmless).
//! - **Prefix deletions** become tombstones for the keys under the prefix
//!   that the map and the engine hold, in the batch's order.
//! - **Bounded.** While checkpoints fail (a full disk, a failing engine),
//!   the map grows; past [`LIMIT`] bytes it refuses every batch but one that
//!   only deletes, and past twice that, every batch, with the error of the
//!   last failed checkpoint.

mod layer;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockUpgradableReadGuard};

use self::layer::{Layer, Layers, prefix_bounds};
use super::backend::{Backend, Batch, DurableHook, Entry, Op};
use crate::error::{Error, Result};

/// Bytes held in memory past which only deleting batches are taken.
pub(crate) const LIMIT: u64 = 64 << 20;
/// Bytes held past which a writer takes a checkpoint itself before its
/// batch: about twice what the journal holds when one is asked for.
pub(crate) const BACKLOG: u64 = 4 << 20;
/// The in-memory layer in front of an engine; itself a [`Backend`].
pub(crate) struct Overlay {
    inner: Arc<dyn Backend>,
    layers: RwLock<Layers>,
    /// Held by a checkpoint from freezing to dropping its layer.
    checkpoint: Mutex<()>,
    /// Makes the journal durable through a record number, before a
    /// checkpoint writes the frozen layers (see [`Backend::before_checkpoint`]).
    durable: Mutex<Option<DurableHook>>,
}

impl Overlay {
    /// An empty overlay in front of `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Overlay {
            inner,
            layers: RwLock::new(Layers::default()),
            checkpoint: Mutex::new(()),
            durable: Mutex::new(None),
        }
    }

    /// Calls `visit` with every key and value of the merged view whose key
    /// starts with `prefix`, in key order.
    fn visit_merged(
        &self,
        layers: &Layers,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<()> {
        let end = super::backend::prefix_end(prefix);
        let bounds = prefix_bounds(prefix, &end);
        if !layers.touches(bounds) {
            return self.inner.visit_prefix(prefix, visit);
        }
        let held = layers.live(bounds, usize::MAX);
        let mut next = 0;
        self.inner.visit_prefix(prefix, &mut |k, v| {
            while let Some((hk, hv)) = held.get(next).copied().filter(|(hk, _)| *hk < k) {
                next += 1;
                visit(hk, hv);
            }
            if !layers.shadows(k) {
                visit(k, v);
            }
        })?;
        for (hk, hv) in &held[next..] {
            visit(hk, hv);
        }
        Ok(())
    }

    /// Refuses a batch while the layers hold more than the limit.
    fn admit(layers: &Layers, batch: &Batch) -> Result<()> {
        let held = layers.bytes();
        let deletes = only_deletes(batch);
        if held < LIMIT || (deletes && held < 2 * LIMIT) {
            return Ok(());
        }
        Err(Error::storage(
            "applying a batch",
            format!(
                "{held} bytes of writes wait in memory for a checkpoint, over the limit of {}; the last checkpoint failed: {}",
                if deletes { 2 * LIMIT } else { LIMIT },
                layers.failed.as_deref().unwrap_or("none has finished yet")
            ),
        ))
    }
}

/// Whether `batch` only deletes, but for the puts every batch carries (the
/// time floor, the journal mark).
fn only_deletes(batch: &Batch) -> bool {
    batch.only_deletes(&[crate::keys::CLOCK_KEY, crate::keys::JOURNAL_KEY])
}

impl Backend for Overlay {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let layers = self.layers.read();
        match layers.state(key) {
            Some(state) => Ok(state.map(<[u8]>::to_vec)),
            None => self.inner.get(key),
        }
    }

    fn visit_prefix(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        let layers = self.layers.read();
        self.visit_merged(&layers, prefix, visit)
    }

    fn scan_range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        let layers = self.layers.read();
        let end_bound = end.map_or(Bound::Unbounded, Bound::Excluded);
        let mut out: Vec<Entry> = Vec::new();
        let mut from = start.to_vec();
        // Chunks of the engine, each merged with the layers' values in the
        // same keys (no more of them than can still be returned), until
        // `limit` entries are out or both run dry.
        while out.len() < limit {
            let chunk = self.inner.scan_range(&from, end, limit)?;
            let engine_done = chunk.len() < limit;
            let upto = match chunk.last() {
                Some((k, _)) if !engine_done => Bound::Included(k.as_slice()),
                _ => end_bound,
            };
            let held = layers.live((Bound::Included(&from), upto), limit - out.len());
            let mut held = held.into_iter().peekable();
            for (k, v) in chunk.iter().filter(|(k, _)| !layers.shadows(k)) {
                while let Some((hk, hv)) = held.next_if(|(hk, _)| *hk < k.as_slice()) {
                    out.push((hk.to_vec(), hv.to_vec()));
                }
                out.push((k.clone(), v.clone()));
            }
            out.extend(held.map(|(hk, hv)| (hk.to_vec(), hv.to_vec())));
            if engine_done {
                break;
            }
            // Go on after the engine's last key.
            if let Some((k, _)) = chunk.last() {
                from.clone_from(k);
                from.push(0);
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        self.apply_owned(batch.clone())
    }

    fn apply_owned(&self, batch: Batch) -> Result<()> {
        // Backpressure: a writer that finds more in the active layer than a
        // checkpoint should take takes one itself, so that writes cannot
        // outrun the engine (the journal keeps every record until a
        // checkpoint). Not while checkpoints fail: the checkpoint thread
        // retries, and `admit` bounds what is held.
        if !only_deletes(&batch) {
            let over = {
                let layers = self.layers.read();
                layers.active.bytes() >= BACKLOG && layers.failed.is_none()
            };
            // A failure is the checkpoint's, not this write's: it is kept
            // in `failed`, and `admit` refuses writes once too much is held.
            if over && let Err(e) = self.checkpoint_if(|l| l.active.bytes() >= BACKLOG) {
                log::error!(
                    "sessionstore: a checkpoint failed, the journal keeps its records: {e}"
                );
            }
        }
        let layers = self.layers.upgradable_read();
        Self::admit(&layers, &batch)?;
        // The engine's keys under each prefix the batch deletes, read
        // before anything changes, so that an error leaves nothing applied.
        // The engine changes meanwhile only by a checkpoint writing layers
        // frozen before: a key it writes is named by those layers, which
        // `delete_prefix` covers too, so a stale engine read misses nothing.
        let mut in_engine = Vec::new();
        for op in batch.ops() {
            if let Op::DeletePrefix(p) = op {
                let mut keys = Vec::new();
                self.inner
                    .visit_prefix(p, &mut |k, _| keys.push(k.to_vec()))?;
                in_engine.push(keys);
            }
        }
        let mut in_engine = in_engine.into_iter();
        let mut layers = RwLockUpgradableReadGuard::upgrade(layers);
        for op in batch.into_ops() {
            match op {
                Op::Put(k, v) => layers.active.put(k, v),
                Op::Delete(k) => layers.active.kill(k),
                Op::DeletePrefix(p) => {
                    layers.delete_prefix(&p, &in_engine.next().unwrap_or_default())
                }
            }
        }
        Ok(())
    }

    /// A checkpoint: hands the engine everything held, makes the engine
    /// durable, then drops what it held.
    fn flush(&self) -> Result<()> {
        self.checkpoint_if(|_| true)
    }

    fn before_checkpoint(&self, durable: DurableHook) {
        *self.durable.lock() = Some(durable);
    }

    fn size_on_disk(&self) -> Result<u64> {
        self.inner.size_on_disk()
    }

    fn pending_bytes(&self) -> u64 {
        self.layers.read().bytes()
    }
}

impl Overlay {
    /// A checkpoint, if `needed` still says so once no other checkpoint
    /// runs: freezes the active layer, makes the journal durable through
    /// the newest record the frozen layers hold (under `Periodic` it may
    /// not be: an engine that kept part of a checkpoint must never be ahead
    /// of the journal that replays the rest), writes them, and drops them.
    /// A failed one merges the frozen layers into one, so that failures do
    /// not pile layers up for every read to look through.
    fn checkpoint_if(&self, needed: impl Fn(&Layers) -> bool) -> Result<()> {
        let _one = self.checkpoint.lock();
        let frozen: Vec<Arc<Layer>> = {
            let mut layers = self.layers.write();
            if !needed(&layers) {
                return Ok(());
            }
            if !layers.active.is_empty() {
                let active = std::mem::take(&mut layers.active);
                layers.frozen.push(Arc::new(active));
            }
            layers.frozen.clone()
        };
        let done = self
            .make_durable(&frozen)
            .and_then(|()| self.write_through(&frozen));
        let mut layers = self.layers.write();
        match done {
            Ok(()) => {
                // Checkpoints run one at a time: the frozen layers are still
                // the oldest ones.
                layers.frozen.drain(..frozen.len());
                layers.failed = None;
                Ok(())
            }
            Err(e) => {
                if layers.frozen.len() > 1 {
                    let merged = Layer::merged(&layers.frozen);
                    layers.frozen = vec![Arc::new(merged)];
                }
                layers.failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Makes the journal durable through the newest record in `frozen`.
    fn make_durable(&self, frozen: &[Arc<Layer>]) -> Result<()> {
        let hook = self.durable.lock().clone();
        let mark = frozen.iter().rev().find_map(|l| l.mark());
        match (hook, mark) {
            (Some(hook), Some(mark)) => hook(mark),
            _ => Ok(()),
        }
    }

    /// Writes `frozen`, oldest first, to the engine, and makes the engine
    /// durable. The batches are the engine's chunk long (one batch on
    /// redb); the journal mark goes in the last, so that an engine that
    /// keeps the first chunks without the last (a crash between them) says
    /// to replay from the mark before: writing a chunk twice is harmless.
    fn write_through(&self, frozen: &[Arc<Layer>]) -> Result<()> {
        if !frozen.is_empty() {
            let mut merged: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
            for layer in frozen {
                merged.extend(layer.entries());
            }
            let mark = merged.remove(crate::keys::JOURNAL_KEY);
            let chunk = self.inner.checkpoint_chunk().max(1);
            let mut ops = merged
                .into_iter()
                .chain(mark.map(|m| (crate::keys::JOURNAL_KEY, m)));
            loop {
                let mut batch = Batch::default();
                for (k, v) in ops.by_ref().take(chunk) {
                    match v {
                        Some(v) => batch.put(k.to_vec(), v.to_vec()),
                        None => batch.delete(k.to_vec()),
                    }
                }
                if batch.is_empty() {
                    break;
                }
                self.inner.apply(&batch)?;
            }
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests;

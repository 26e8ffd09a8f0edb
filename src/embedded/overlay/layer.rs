//! The overlay's layers: sorted maps of the keys batches put, and sets of
//! the keys they deleted (tombstones), kept apart so that a range read walks
//! only what is live and looks tombstones up by key.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

/// What an entry costs beyond its key and value, for the byte count.
const ENTRY_COST: u64 = 64;

/// A range of keys.
pub(super) type Bounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The keys that start with `prefix`, as a range.
pub(super) fn prefix_bounds<'a>(prefix: &'a [u8], end: &'a Option<Vec<u8>>) -> Bounds<'a> {
    (
        Bound::Included(prefix),
        end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
    )
}

/// Whether `bounds` holds no key: `BTreeMap::range` panics on a range that
/// ends before it starts, and such a range is asked for by a scan whose end
/// is at or before its start.
fn is_empty(bounds: Bounds<'_>) -> bool {
    match bounds {
        (Bound::Included(s), Bound::Excluded(e)) => s >= e,
        (Bound::Included(s), Bound::Included(e)) => s > e,
        _ => false,
    }
}

/// One layer: what the batches applied to it put and deleted.
#[derive(Default)]
pub(super) struct Layer {
    puts: BTreeMap<Vec<u8>, Vec<u8>>,
    dead: BTreeSet<Vec<u8>>,
    bytes: u64,
}

impl Layer {
    /// Whether the layer puts or deletes `key`.
    fn names(&self, key: &[u8]) -> bool {
        self.puts.contains_key(key) || self.dead.contains(key)
    }

    /// The layer's state of `key`: `Some(Some(value))`, `Some(None)` for
    /// deleted, `None` if it does not name it.
    fn state(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        match self.puts.get(key) {
            Some(v) => Some(Some(v)),
            None => self.dead.contains(key).then_some(None),
        }
    }

    fn puts_in<'a>(&'a self, bounds: Bounds<'_>) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.puts
            .range::<[u8], _>(bounds)
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Puts `value` under `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let cost = key.len() as u64 + ENTRY_COST;
        if self.dead.remove(&key) {
            self.bytes = self.bytes.saturating_sub(cost);
        }
        let add = value.len() as u64;
        match self.puts.insert(key, value) {
            Some(old) => self.bytes = (self.bytes + add).saturating_sub(old.len() as u64),
            None => self.bytes += cost + add,
        }
    }

    /// Deletes `key`: a tombstone that hides what the layers below and
    /// the engine hold.
    pub fn kill(&mut self, key: Vec<u8>) {
        self.unput(&key);
        self.bury(key);
    }

    /// Takes the value the layer puts under `key` out, and returns whether
    /// there was one; a tombstone of `key` stays.
    fn unput(&mut self, key: &[u8]) -> bool {
        match self.puts.remove(key) {
            Some(old) => {
                let cost = key.len() as u64 + ENTRY_COST + old.len() as u64;
                self.bytes = self.bytes.saturating_sub(cost);
                true
            }
            None => false,
        }
    }

    /// A tombstone of `key`, which the layer does not put.
    fn bury(&mut self, key: Vec<u8>) {
        let cost = key.len() as u64 + ENTRY_COST;
        if self.dead.insert(key) {
            self.bytes += cost;
        }
    }

    /// Bytes the layer holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The journal mark the layer puts: the number of its newest record.
    pub fn mark(&self) -> Option<u64> {
        crate::embedded::journal::decode_mark(self.puts.get(crate::keys::JOURNAL_KEY)?)
    }

    /// One layer holding what `layers` (oldest first) hold, the newest
    /// state of each key winning.
    pub fn merged(layers: &[Arc<Layer>]) -> Layer {
        let mut out = Layer::default();
        for layer in layers {
            for (k, v) in &layer.puts {
                out.put(k.clone(), v.clone());
            }
            for k in &layer.dead {
                out.kill(k.clone());
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.dead.is_empty()
    }

    /// Every key the layer names, with its value or `None` for deleted.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.puts
            .iter()
            .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
            .chain(self.dead.iter().map(|k| (k.as_slice(), None)))
    }
}

/// The active layer and the frozen ones.
#[derive(Default)]
pub(super) struct Layers {
    /// Where batches go.
    pub active: Layer,
    /// Frozen by checkpoints that have not yet finished, oldest first.
    pub frozen: Vec<Arc<Layer>>,
    /// Why the last checkpoint failed, until one succeeds.
    pub failed: Option<String>,
}

impl Layers {
    /// The layers, newest first.
    fn newest_first(&self) -> impl Iterator<Item = &Layer> {
        std::iter::once(&self.active).chain(self.frozen.iter().rev().map(|l| &**l))
    }

    /// Bytes the layers hold.
    pub fn bytes(&self) -> u64 {
        self.active.bytes + self.frozen.iter().map(|l| l.bytes).sum::<u64>()
    }

    /// The newest state of `key`: `Some(Some(value))`, `Some(None)` for
    /// deleted, `None` if no layer names it (the engine decides).
    pub fn state(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.newest_first().find_map(|l| l.state(key))
    }

    /// Whether a layer names `key`, so that the engine's value is not the
    /// one to read.
    pub fn shadows(&self, key: &[u8]) -> bool {
        self.newest_first().any(|l| l.names(key))
    }

    /// Whether any layer names a key in `bounds`.
    pub fn touches(&self, bounds: Bounds<'_>) -> bool {
        !is_empty(bounds)
            && self.newest_first().any(|l| {
                l.puts.range::<[u8], _>(bounds).next().is_some()
                    || l.dead.range::<[u8], _>(bounds).next().is_some()
            })
    }

    /// The first `limit` keys in `bounds` whose newest state is a value,
    /// with that value, in key order.
    pub fn live(&self, bounds: Bounds<'_>, limit: usize) -> Vec<(&[u8], &[u8])> {
        if is_empty(bounds) {
            return Vec::new();
        }
        if self.frozen.is_empty() {
            return self.active.puts_in(bounds).take(limit).collect();
        }
        // During a checkpoint: each layer's values that no newer layer names.
        let layers: Vec<&Layer> = self.newest_first().collect();
        let mut merged: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
        for (i, layer) in layers.iter().enumerate() {
            for (k, v) in layer.puts_in(bounds) {
                if !layers[..i].iter().any(|l| l.names(k)) {
                    merged.insert(k, v);
                }
            }
        }
        merged.into_iter().take(limit).collect()
    }

    /// Deletes every key under `prefix`, given the engine's keys under it
    /// (sorted): a key that the engine or a frozen layer may hold gets a
    /// tombstone; a value only the active layer held is simply dropped, so
    /// a session created and destroyed between two checkpoints never
    /// reaches the engine.
    pub fn delete_prefix(&mut self, prefix: &[u8], in_engine: &[Vec<u8>]) {
        let end = super::super::backend::prefix_end(prefix);
        let bounds = prefix_bounds(prefix, &end);
        let held: Vec<Vec<u8>> = self
            .active
            .puts_in(bounds)
            .map(|(k, _)| k.to_vec())
            .collect();
        for k in held {
            self.active.unput(&k);
            if in_engine.binary_search(&k).is_ok() || self.frozen.iter().any(|l| l.names(&k)) {
                self.active.bury(k);
            }
        }
        // What only the layers below hold: the engine's keys and the
        // frozen layers' values that the active layer does not name.
        for k in in_engine {
            if !self.active.names(k) {
                self.active.bury(k.clone());
            }
        }
        let below: Vec<Vec<u8>> = self
            .frozen
            .iter()
            .flat_map(|l| l.puts_in(bounds))
            .filter(|(k, _)| !self.active.names(k))
            .map(|(k, _)| k.to_vec())
            .collect();
        for k in below {
            self.active.bury(k);
        }
    }
}

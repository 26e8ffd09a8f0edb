//! The engine seam: everything the store needs from a storage engine.
//!
//! The rest of the crate sees one ordered key space through [`Backend`]. Each
//! engine lives in a module of its own, and only that module names its crate.

#[cfg(test)]
pub(crate) mod memory;
#[cfg(feature = "redb")]
pub(crate) mod redb;
#[cfg(feature = "sled")]
pub(crate) mod sled;

#[cfg(not(any(feature = "sled", feature = "redb")))]
compile_error!("sessionstore needs an engine: enable the cargo feature `sled`, `redb`, or both");

use std::path::Path;
use std::sync::Arc;

use crate::engine::Engine;
use crate::error::Result;

/// Opens `engine`'s database in directory `dir` for writing.
pub(crate) fn open(engine: Engine, dir: &Path, cache_capacity: u64) -> Result<Arc<dyn Backend>> {
    match engine {
        #[cfg(feature = "sled")]
        Engine::Sled => Ok(Arc::new(sled::SledBackend::open(dir, cache_capacity)?)),
        #[cfg(feature = "redb")]
        Engine::Redb => Ok(Arc::new(redb::RedbBackend::open(dir, cache_capacity)?)),
    }
}

/// Runs `engine`'s full check of its existing database in directory `dir`,
/// with a cache of `cache_capacity` bytes, and closes it again; does nothing
/// if there is none. For `Config::verify_on_open`, before [`open`]: redb's
/// integrity check (every page checksum), sled's read of every key and value
/// (every page it loads has its CRC checked).
pub(crate) fn check(engine: Engine, dir: &Path, cache_capacity: u64) -> Result<()> {
    match engine {
        #[cfg(feature = "sled")]
        Engine::Sled => sled::SledBackend::check(dir, cache_capacity),
        #[cfg(feature = "redb")]
        Engine::Redb => redb::RedbBackend::check(dir, cache_capacity),
    }
}

/// The files whose presence in a directory marks a database of `engine`.
pub(crate) fn marker_files(engine: Engine) -> &'static [&'static str] {
    match engine {
        #[cfg(feature = "sled")]
        Engine::Sled => sled::MARKER_FILES,
        #[cfg(feature = "redb")]
        Engine::Redb => redb::MARKER_FILES,
    }
}

/// Whether `name` is what an engine leaves behind when a crash interrupts
/// the creation of a new store (the engine replaces it on the next open), so
/// that a directory holding only it still counts as empty.
pub(crate) fn is_creation_leftover(name: &str) -> bool {
    #[cfg(feature = "redb")]
    if name == redb::NEW_FILE {
        return true;
    }
    let _ = name;
    false
}

/// The message of a panic payload caught by an engine's `catch_unwind`.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("no message")
}

/// One stored key and its value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// One operation of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Stores the value under the key.
    Put(Vec<u8>, Vec<u8>),
    /// Deletes the key, if it is there.
    Delete(Vec<u8>),
    /// Deletes every key that starts with these bytes, as the engine holds
    /// them when it applies the batch (inside its write transaction on
    /// redb): so that deleting a whole session needs no scan beforehand,
    /// and misses no key.
    DeletePrefix(Vec<u8>),
}

/// Puts and deletes that an engine applies atomically, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// Stores `value` under `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(Op::Put(key, value));
    }

    /// Deletes `key`, if it is there.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push(Op::Delete(key));
    }

    /// Deletes every key starting with `prefix` when the batch is applied.
    pub fn delete_prefix(&mut self, prefix: Vec<u8>) {
        self.ops.push(Op::DeletePrefix(prefix));
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Whether the batch puts or deletes `key` itself (a prefix deletion
    /// does not count).
    pub fn names(&self, key: &[u8]) -> bool {
        self.ops.iter().any(|op| match op {
            Op::Put(k, _) | Op::Delete(k) => k == key,
            Op::DeletePrefix(_) => false,
        })
    }

    /// Whether the batch only deletes, but for puts of the keys in `except`.
    pub fn only_deletes(&self, except: &[&[u8]]) -> bool {
        self.ops.iter().all(|op| match op {
            Op::Put(k, _) => except.contains(&k.as_slice()),
            Op::Delete(_) | Op::DeletePrefix(_) => true,
        })
    }

    /// Appends every operation of `other`, after those already here.
    pub fn append(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The operations, in order, taken out of the batch.
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }
}

/// The first key after every key that starts with `prefix`: `None` if
/// there is none (the prefix is empty or all `0xFF`). Byte arithmetic on
/// any prefix, for the engines' range deletions.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// What makes the journal durable through a record number (see
/// [`Backend::before_checkpoint`]).
pub(crate) type DurableHook = Arc<dyn Fn(u64) -> Result<()> + Send + Sync>;

/// An ordered key space with atomic batches.
pub(crate) trait Backend: Send + Sync + 'static {
    /// The engine's name, as `Config::engine` spells it.
    fn name(&self) -> &'static str;
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Calls `visit` with every entry whose key starts with `prefix`, in key
    /// order, as the engine holds it: nothing is copied unless `visit` copies
    /// it. `visit` must not call back into the engine.
    fn visit_prefix(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        self.visit_prefix(prefix, &mut |k, v| entries.push((k.to_vec(), v.to_vec())))?;
        Ok(entries)
    }
    /// Up to `limit` entries with `start <= key < end` (no upper bound if
    /// `end` is `None`), in key order.
    fn scan_range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>>;
    /// Calls `visit` with every entry with `start <= key < end` (no upper
    /// bound if `end` is `None`), in key order, reading `chunk` entries at a
    /// time, so that `visit` may write between chunks. `more` is asked
    /// between chunks; the walk ends when it says no.
    fn walk(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        chunk: usize,
        more: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<()> {
        let mut start = start.to_vec();
        loop {
            let entries = self.scan_range(&start, end, chunk)?;
            for (key, value) in &entries {
                visit(key, value);
            }
            match entries.last() {
                Some((last, _)) if entries.len() == chunk && more() => {
                    start.clone_from(last);
                    start.push(0);
                }
                _ => return Ok(()),
            }
        }
    }
    /// Applies every operation of `batch`, all or nothing.
    fn apply(&self, batch: &Batch) -> Result<()>;
    /// [`apply`](Backend::apply), given the batch to keep: the overlay
    /// moves its keys and values in instead of copying them.
    fn apply_owned(&self, batch: Batch) -> Result<()> {
        self.apply(&batch)
    }
    /// Makes every applied batch durable.
    fn flush(&self) -> Result<()>;
    /// Bytes the engine's files take on disk.
    fn size_on_disk(&self) -> Result<u64>;
    /// Bytes of applied batches held in memory until the next
    /// [`flush`](Backend::flush), which writes them (the overlay's); an
    /// engine holds none.
    fn pending_bytes(&self) -> u64 {
        0
    }
    /// The most operations a checkpoint hands the engine in one batch. An
    /// engine that blocks reads while it applies a batch (sled holds its
    /// concurrency lock for the whole of one) takes a checkpoint in
    /// chunks, so that no read waits for all of it.
    fn checkpoint_chunk(&self) -> usize {
        usize::MAX
    }
    /// Gives the overlay what makes the journal durable through a record
    /// number, which it calls before a checkpoint writes to the engine; an
    /// engine, which sees every batch only after its record, needs none.
    fn before_checkpoint(&self, durable: DurableHook) {
        let _ = durable;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reserve lets a batch through a full disk only if it frees space:
    /// deletions, and the time floor every batch carries.
    #[test]
    fn only_deletes_allows_the_one_named_put() {
        let mut b = Batch::default();
        b.delete_prefix(b"s/".to_vec());
        b.delete(b"!x".to_vec());
        b.put(b"#clock".to_vec(), vec![0; 8]);
        assert!(b.only_deletes(&[b"#clock"]));
        b.put(b"s/".to_vec(), b"meta".to_vec());
        assert!(!b.only_deletes(&[b"#clock"]));
        assert!(Batch::default().only_deletes(&[b"#clock"]));
    }

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"s1/").as_deref(), Some(&b"s10"[..]));
        assert_eq!(prefix_end(b"a\xFF").as_deref(), Some(&b"b"[..]));
        assert_eq!(prefix_end(b"a\xFF\xFF").as_deref(), Some(&b"b"[..]));
        assert_eq!(prefix_end(b"\xFF\xFF"), None);
        assert_eq!(prefix_end(b""), None);
    }

    /// Every engine deletes exactly the keys under a prefix, where the
    /// batch says: a put before the deletion goes with it, a put after it
    /// stays; neighbouring ids (`s1-x` sorts before `s1/`, `s10` and `s1_`
    /// after it) keep every key.
    fn deletes_a_prefix_in_batch_order(b: &dyn Backend) -> Result<()> {
        let keep: &[&[u8]] = &[
            b"s1", b"s1-x/", b"s1-x//k", b"s10/", b"s10//k", b"s1_/", b"s2/",
        ];
        let mut setup = Batch::default();
        for k in keep
            .iter()
            .chain([&b"s1/"[..], b"s1//k", b"s1/c/", b"s1/c/k", b"s1/\0"].iter())
        {
            setup.put(k.to_vec(), b"v".to_vec());
        }
        b.apply(&setup)?;
        let mut batch = Batch::default();
        batch.put(b"s1//before".to_vec(), b"v".to_vec());
        batch.delete_prefix(b"s1/".to_vec());
        batch.put(b"s1//after".to_vec(), b"w".to_vec());
        // A key the deletion removed, put again (a create over an expired
        // session writes its record `s1/` so).
        batch.put(b"s1/".to_vec(), b"new".to_vec());
        b.apply(&batch)?;
        b.flush()?;
        assert_eq!(
            b.get(b"s1/")?.as_deref(),
            Some(&b"new"[..]),
            "on {}",
            b.name()
        );
        let left: Vec<Vec<u8>> = b
            .scan_range(b"", None, 100)?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.first() == Some(&b's'))
            .collect();
        let mut expected: Vec<Vec<u8>> = keep.iter().map(|k| k.to_vec()).collect();
        expected.push(b"s1//after".to_vec());
        expected.push(b"s1/".to_vec());
        expected.sort();
        assert_eq!(left, expected, "on {}", b.name());
        Ok(())
    }

    #[test]
    fn the_memory_engine_deletes_a_prefix_in_batch_order() -> Result<()> {
        deletes_a_prefix_in_batch_order(&memory::MemoryBackend::default())
    }

    #[cfg(feature = "redb")]
    #[test]
    fn redb_deletes_a_prefix_in_batch_order() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| crate::Error::storage("test", e))?;
        deletes_a_prefix_in_batch_order(&redb::RedbBackend::open(dir.path(), 1 << 20)?)
    }

    #[cfg(feature = "sled")]
    #[test]
    fn sled_deletes_a_prefix_in_batch_order() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| crate::Error::storage("test", e))?;
        deletes_a_prefix_in_batch_order(&sled::SledBackend::open(dir.path(), 1 << 20)?)
    }
}

//! The overlay against a model of the key space, and its checkpoints under
//! a failing or hanging engine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use proptest::prelude::*;

use super::*;
use crate::embedded::backend::memory::MemoryBackend;

fn overlay() -> (Arc<MemoryBackend>, Overlay) {
    let inner = Arc::new(MemoryBackend::default());
    (inner.clone(), Overlay::new(inner))
}

fn put(k: &[u8], v: &[u8]) -> Batch {
    let mut b = Batch::default();
    b.put(k.to_vec(), v.to_vec());
    b
}

/// What the engine itself holds, under the overlay.
fn engine(inner: &MemoryBackend) -> Vec<Entry> {
    inner.scan_range(b"", None, usize::MAX).expect("a scan")
}

#[derive(Debug, Clone)]
enum Step {
    Put(u8, u8),
    Delete(u8),
    DeletePrefix(u8),
    /// A batch of two operations.
    Pair(u8, u8),
    Checkpoint,
    FailedCheckpoint,
}

/// Keys of one or two bytes from a small alphabet, so that prefixes,
/// neighbours and rewrites meet often.
fn key(n: u8) -> Vec<u8> {
    let a = b'a' + n % 4;
    match n / 4 % 3 {
        0 => vec![a],
        1 => vec![a, b'a' + n / 12 % 4],
        _ => vec![a, b'/', b'a' + n / 12 % 4],
    }
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
        2 => any::<u8>().prop_map(Step::Delete),
        1 => any::<u8>().prop_map(Step::DeletePrefix),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Step::Pair(a, b)),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::FailedCheckpoint),
    ]
}

fn apply_model(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, batch: &Batch) {
    for op in batch.ops() {
        match op {
            Op::Put(k, v) => drop(model.insert(k.clone(), v.clone())),
            Op::Delete(k) => drop(model.remove(k)),
            Op::DeletePrefix(p) => model.retain(|k, _| !k.starts_with(p)),
        }
    }
}

fn check_reads(
    o: &Overlay,
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> std::result::Result<(), TestCaseError> {
    for n in 0..48u8 {
        let k = key(n);
        prop_assert_eq!(
            o.get(&k).expect("a get"),
            model.get(&k).cloned(),
            "get {:?}",
            k
        );
        let prefix = &k[..1];
        let want: Vec<Entry> = model
            .iter()
            .filter(|(mk, _)| mk.starts_with(prefix))
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect();
        prop_assert_eq!(o.scan_prefix(prefix).expect("a prefix scan"), want);
    }
    for limit in [0usize, 1, 2, 3, 100] {
        for (start, end) in [
            (&b""[..], None),
            (b"a", Some(&b"c"[..])),
            (b"b/", Some(&b"b/c"[..])),
            (b"c", Some(&b"a"[..])),
            (b"bb", None),
        ] {
            let want: Vec<Entry> = model
                .iter()
                .filter(|(k, _)| k.as_slice() >= start && end.is_none_or(|e| k.as_slice() < e))
                .take(limit)
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect();
            prop_assert_eq!(
                o.scan_range(start, end, limit).expect("a range scan"),
                want,
                "scan_range({:?}, {:?}, {})",
                start,
                end,
                limit
            );
        }
    }
    Ok(())
}

proptest! {
    /// Whatever the batches and checkpoints, failed ones included, every
    /// read sees the model, and after a good checkpoint the engine holds it.
    #[test]
    fn reads_see_the_model_through_layers_and_checkpoints(steps in proptest::collection::vec(step(), 1..60)) {
        let (inner, o) = overlay();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for s in steps {
            let mut batch = Batch::default();
            match s {
                Step::Put(k, v) => batch.put(key(k), vec![v]),
                Step::Delete(k) => batch.delete(key(k)),
                Step::DeletePrefix(k) => batch.delete_prefix(key(k)),
                Step::Pair(a, b) => {
                    batch.delete_prefix(key(a)[..1].to_vec());
                    batch.put(key(b), vec![a]);
                }
                Step::Checkpoint => {
                    o.flush().expect("a checkpoint");
                    let held: Vec<Entry> = model.iter().map(|(a, b)| (a.clone(), b.clone())).collect();
                    prop_assert_eq!(engine(&inner), held);
                    prop_assert_eq!(o.pending_bytes(), 0);
                }
                Step::FailedCheckpoint => {
                    inner.fail_writes.store(true, Ordering::SeqCst);
                    prop_assert!(o.flush().is_err());
                    inner.fail_writes.store(false, Ordering::SeqCst);
                }
            }
            if !batch.is_empty() {
                o.apply(&batch).expect("an apply");
                apply_model(&mut model, &batch);
            }
            check_reads(&o, &model)?;
        }
    }
}

/// A batch's prefix deletion takes what the batch put before it and leaves
/// what it puts after, over the layers and the engine alike.
#[test]
fn a_prefix_deletion_follows_the_batch_order_over_every_layer() -> Result<()> {
    let (_inner, o) = overlay();
    o.apply(&put(b"s1//old", b"engine"))?;
    o.flush()?;
    o.apply(&put(b"s1//held", b"layer"))?;
    o.apply(&put(b"s10/", b"neighbour"))?;
    let mut batch = put(b"s1//before", b"v");
    batch.delete_prefix(b"s1/".to_vec());
    batch.put(b"s1//after".to_vec(), b"w".to_vec());
    o.apply(&batch)?;
    let keys: Vec<Vec<u8>> = o.scan_prefix(b"s1")?.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [b"s1//after".to_vec(), b"s10/".to_vec()]);
    o.flush()?;
    assert_eq!(o.scan_prefix(b"s1")?.len(), 2);
    Ok(())
}

/// A failed checkpoint keeps what it froze readable, and the next one
/// writes it and what came meanwhile; the error is named by later refusals.
#[test]
fn a_failed_checkpoint_keeps_its_layer_and_the_next_one_writes_it() -> Result<()> {
    let (inner, o) = overlay();
    o.apply(&put(b"a", b"1"))?;
    inner.fail_writes.store(true, Ordering::SeqCst);
    assert!(o.flush().is_err());
    o.apply(&put(b"b", b"2"))?;
    assert_eq!(o.get(b"a")?.as_deref(), Some(&b"1"[..]));
    assert!(engine(&inner).is_empty());
    inner.fail_writes.store(false, Ordering::SeqCst);
    o.flush()?;
    assert_eq!(
        engine(&inner),
        [
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec())
        ]
    );
    assert_eq!(o.pending_bytes(), 0);
    Ok(())
}

/// While checkpoints fail, a writer past the backlog tries one itself, and
/// its write still goes in; past the limit only deletions get in, and past
/// twice the limit nothing, each refusal naming the failed checkpoint.
#[test]
fn failing_checkpoints_bound_what_is_held() -> Result<()> {
    let (inner, o) = overlay();
    let big = vec![7u8; 1 << 20];
    let mut n = 0u32;
    while o.pending_bytes() < BACKLOG {
        o.apply(&put(&n.to_be_bytes(), &big))?;
        n += 1;
    }
    inner.fail_writes.store(true, Ordering::SeqCst);
    let tried = inner.applies_started.load(Ordering::SeqCst);
    o.apply(&put(b"x", b"v"))?;
    assert!(
        inner.applies_started.load(Ordering::SeqCst) > tried,
        "the writer past the backlog tried a checkpoint"
    );
    assert_eq!(o.get(b"x")?.as_deref(), Some(&b"v"[..]));
    // No more tries from writers while checkpoints fail.
    let tried = inner.applies_started.load(Ordering::SeqCst);
    o.apply(&put(b"x2", b"v"))?;
    assert_eq!(inner.applies_started.load(Ordering::SeqCst), tried);
    o.layers
        .write()
        .active
        .put(b"filler".to_vec(), vec![0; LIMIT as usize]);
    let mut delete = Batch::default();
    delete.delete(0u32.to_be_bytes().to_vec());
    delete.put(crate::keys::CLOCK_KEY.to_vec(), vec![0; 8]);
    o.apply(&delete)?;
    let e = o.apply(&put(b"y", b"v")).expect_err("over the limit");
    assert!(e.to_string().contains("injected failure"), "{e}");
    assert_eq!(o.get(b"y")?, None, "a refused batch leaves nothing");
    o.layers
        .write()
        .active
        .put(b"filler2".to_vec(), vec![0; LIMIT as usize]);
    let e = o.apply(&delete).expect_err("over twice the limit");
    assert!(e.to_string().contains("over the limit"), "{e}");
    inner.fail_writes.store(false, Ordering::SeqCst);
    o.flush()?;
    o.apply(&put(b"z", b"v"))?;
    assert_eq!(o.get(b"z")?.as_deref(), Some(&b"v"[..]));
    assert_eq!(o.get(b"x")?.as_deref(), Some(&b"v"[..]));
    Ok(())
}

/// Failed checkpoints leave one frozen layer, not one per attempt, and
/// reads and the next good checkpoint see the newest state of every key.
#[test]
fn failed_checkpoints_merge_their_frozen_layers() -> Result<()> {
    let (inner, o) = overlay();
    inner.fail_writes.store(true, Ordering::SeqCst);
    for round in 0..4u8 {
        o.apply(&put(b"k", &[round]))?;
        o.apply(&put(&[b'a' + round], b"v"))?;
        if round == 2 {
            let mut d = Batch::default();
            d.delete(b"a".to_vec());
            o.apply(&d)?;
        }
        assert!(o.flush().is_err());
        assert_eq!(o.layers.read().frozen.len(), 1, "round {round}");
    }
    assert_eq!(o.get(b"k")?.as_deref(), Some(&[3u8][..]));
    assert_eq!(o.get(b"a")?, None);
    inner.fail_writes.store(false, Ordering::SeqCst);
    o.flush()?;
    assert_eq!(
        engine(&inner),
        [
            (b"b".to_vec(), b"v".to_vec()),
            (b"c".to_vec(), b"v".to_vec()),
            (b"d".to_vec(), b"v".to_vec()),
            (b"k".to_vec(), vec![3u8]),
        ]
    );
    Ok(())
}

/// A checkpoint makes the journal durable through the newest record it
/// writes before it writes anything to the engine: under `Periodic` an
/// engine that kept part of a checkpoint must not be ahead of the journal.
#[test]
fn a_checkpoint_makes_the_journal_durable_before_it_writes() -> Result<()> {
    let (inner, o) = overlay();
    inner.chunk.store(1, Ordering::SeqCst);
    let seen: Arc<parking_lot::Mutex<Vec<(u64, usize)>>> = Arc::default();
    let (s, i) = (seen.clone(), inner.clone());
    o.before_checkpoint(Arc::new(move |through| {
        s.lock().push((through, i.applied.lock().len()));
        Ok(())
    }));
    o.apply(&put(crate::keys::JOURNAL_KEY, &41u64.to_be_bytes()))?;
    let mut b = put(b"a", b"1");
    b.put(b"b".to_vec(), b"2".to_vec());
    b.put(
        crate::keys::JOURNAL_KEY.to_vec(),
        42u64.to_be_bytes().to_vec(),
    );
    o.apply(&b)?;
    inner.applied.lock().clear();
    o.flush()?;
    assert_eq!(
        *seen.lock(),
        [(42, 0)],
        "synced through 42 before any chunk"
    );
    assert_eq!(inner.applied.lock().len(), 3);
    // A failing sync stops the checkpoint before the engine sees anything.
    o.before_checkpoint(Arc::new(|_| {
        Err(Error::storage("a test", "the sync failed"))
    }));
    o.apply(&put(b"c", b"3"))?;
    o.apply(&put(crate::keys::JOURNAL_KEY, &43u64.to_be_bytes()))?;
    inner.applied.lock().clear();
    assert!(o.flush().is_err());
    assert!(inner.applied.lock().is_empty());
    assert_eq!(o.get(b"c")?.as_deref(), Some(&b"3"[..]));
    Ok(())
}

/// While a checkpoint is inside the engine, reads see what it froze and
/// writes go on into a new layer.
#[test]
fn reads_and_writes_go_on_while_a_checkpoint_is_inside_the_engine() -> Result<()> {
    let (inner, o) = overlay();
    o.apply(&put(b"a", b"1"))?;
    inner.set_hang(true);
    let started = inner.applies_started.load(Ordering::SeqCst);
    std::thread::scope(|scope| -> Result<()> {
        let checkpoint = scope.spawn(|| o.flush());
        // A hang guard, not a speed check.
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while inner.applies_started.load(Ordering::SeqCst) == started {
            assert!(
                std::time::Instant::now() < give_up,
                "the checkpoint never reached the engine"
            );
            std::thread::yield_now();
        }
        assert_eq!(o.get(b"a")?.as_deref(), Some(&b"1"[..]));
        let mut d = Batch::default();
        d.delete(b"a".to_vec());
        o.apply(&d)?;
        o.apply(&put(b"b", b"2"))?;
        assert_eq!(o.get(b"a")?, None);
        assert_eq!(o.scan_prefix(b"")?, [(b"b".to_vec(), b"2".to_vec())]);
        inner.set_hang(false);
        checkpoint.join().expect("no panic")
    })?;
    assert_eq!(engine(&inner), [(b"a".to_vec(), b"1".to_vec())]);
    assert_eq!(o.scan_prefix(b"")?, [(b"b".to_vec(), b"2".to_vec())]);
    o.flush()?;
    assert_eq!(engine(&inner), [(b"b".to_vec(), b"2".to_vec())]);
    Ok(())
}

/// A session created and destroyed between two checkpoints leaves nothing
/// held: the engine never sees it. One the engine holds leaves tombstones.
#[test]
fn what_only_the_active_layer_held_is_dropped_not_tombstoned() -> Result<()> {
    let (inner, o) = overlay();
    o.apply(&put(b"kept/", b"meta"))?;
    o.flush()?;
    let mut create = put(b"s1/", b"meta");
    create.put(b"s1//k".to_vec(), b"v".to_vec());
    o.apply(&create)?;
    assert!(o.pending_bytes() > 0);
    let mut destroy = Batch::default();
    destroy.delete_prefix(b"s1/".to_vec());
    o.apply(&destroy)?;
    assert_eq!(o.pending_bytes(), 0, "nothing held for s1");
    let mut destroy = Batch::default();
    destroy.delete_prefix(b"kept/".to_vec());
    o.apply(&destroy)?;
    assert!(o.pending_bytes() > 0, "a tombstone for the engine's key");
    assert_eq!(o.get(b"kept/")?, None);
    o.flush()?;
    assert!(engine(&inner).is_empty());
    Ok(())
}

/// An engine that takes a checkpoint in chunks gets batches no longer than
/// its chunk, the journal mark in the last one only: a crash between two
/// chunks leaves a mark that replays them all.
#[test]
fn a_chunked_checkpoint_writes_the_journal_mark_last() -> Result<()> {
    let (inner, o) = overlay();
    inner.chunk.store(2, Ordering::SeqCst);
    let mut batch = put(crate::keys::JOURNAL_KEY, &7u64.to_be_bytes());
    for k in [&b"a"[..], b"b", b"c", b"d", b"e"] {
        batch.put(k.to_vec(), b"v".to_vec());
    }
    batch.delete(b"z".to_vec());
    o.apply(&batch)?;
    inner.applied.lock().clear();
    o.flush()?;
    let applied = inner.applied.lock().clone();
    assert_eq!(applied.len(), 4, "7 operations in chunks of 2: {applied:?}");
    assert!(applied.iter().all(|b| b.len() <= 2));
    let marks: Vec<usize> = applied
        .iter()
        .enumerate()
        .filter(|(_, b)| b.iter().any(|k| k == crate::keys::JOURNAL_KEY))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(marks, [3], "the mark only in the last batch");
    assert_eq!(engine(&inner).len(), 6);
    Ok(())
}

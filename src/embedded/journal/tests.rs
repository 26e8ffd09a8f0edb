//! The journal end to end: append, crash (the files as they are), recover.

use std::fs;
use std::path::Path;

use super::record::{HEADER, SEGMENT_HEAD};
use super::*;
use crate::embedded::backend::memory::MemoryBackend;

fn put(n: u64) -> Batch {
    let mut b = Batch::default();
    b.put(format!("k{n}").into_bytes(), vec![n as u8; 10]);
    b
}

/// Appends puts `from..=to`, syncing after each.
fn write(w: &mut Writer, from: u64, to: u64) {
    for n in from..=to {
        assert_eq!(w.append(&put(n)).unwrap(), n);
        w.sync().unwrap();
    }
}

fn value(b: &MemoryBackend, n: u64) -> Option<Vec<u8>> {
    b.get(format!("k{n}").as_bytes()).unwrap()
}

fn segment_file(dir: &Path, id: u64) -> std::path::PathBuf {
    dir.join(DIR).join(format!("segment-{id}"))
}

#[test]
fn records_after_the_mark_are_replayed_and_the_journal_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let engine = MemoryBackend::default();
    let mut w = open(dir.path(), None, &engine).unwrap();
    write(&mut w, 1, 5);
    // The engine held 1 and 2 (its mark says so) when the process died.
    let mut held = put(1);
    held.append(put(2));
    stamp(&mut held, 2);
    engine.apply(&held).unwrap();
    drop(w);
    let w = open(dir.path(), None, &engine).unwrap();
    for n in 1..=5 {
        assert_eq!(value(&engine, n), Some(vec![n as u8; 10]), "k{n}");
    }
    assert_eq!(read_mark(&engine).unwrap(), 5);
    assert_eq!(w.last(), 5, "numbers go on from the last record");
    let left: Vec<_> = fs::read_dir(dir.path().join(DIR)).unwrap().collect();
    assert_eq!(left.len(), 1, "one fresh segment");
}

#[test]
fn records_at_or_below_the_mark_are_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = MemoryBackend::default();
    let mut w = open(dir.path(), None, &engine).unwrap();
    write(&mut w, 1, 3);
    // The engine moved on past record 2: a delete of k2 after it.
    let mut later = Batch::default();
    later.delete(b"k2".to_vec());
    later.put(b"k1".to_vec(), b"new".to_vec());
    stamp(&mut later, 2);
    engine.apply(&later).unwrap();
    drop(w);
    open(dir.path(), None, &engine).unwrap();
    assert_eq!(value(&engine, 1).as_deref(), Some(&b"new"[..]));
    assert_eq!(value(&engine, 2), None);
    assert_eq!(value(&engine, 3), Some(vec![3; 10]));
}

#[test]
fn a_torn_tail_is_cut_at_the_last_good_record() {
    let dir = tempfile::tempdir().unwrap();
    let engine = MemoryBackend::default();
    let mut w = open(dir.path(), None, &engine).unwrap();
    write(&mut w, 1, 3);
    // Record 4 is written but torn: its last byte never reached the disk.
    w.append(&put(4)).unwrap();
    drop(w);
    let path = segment_file(dir.path(), 0);
    let mut bytes = fs::read(&path).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).unwrap();
    bytes[end] ^= 0xFF;
    fs::write(&path, &bytes).unwrap();
    let w = open(dir.path(), None, &engine).unwrap();
    assert_eq!(value(&engine, 3), Some(vec![3; 10]));
    assert_eq!(value(&engine, 4), None);
    assert_eq!(w.last(), 3);
}

#[test]
fn unsynced_records_after_a_lost_one_are_a_torn_tail_too() {
    let dir = tempfile::tempdir().unwrap();
    let engine = MemoryBackend::default();
    let mut w = open(dir.path(), None, &engine).unwrap();
    write(&mut w, 1, 2);
    // 3 and 4 written, never synced; the drive kept 4 and lost 3.
    w.append(&put(3)).unwrap();
    w.append(&put(4)).unwrap();
    drop(w);
    let path = segment_file(dir.path(), 0);
    let mut bytes = fs::read(&path).unwrap();
    let third = SEGMENT_HEAD.len() + 2 * (HEADER + 1 + 4 + 2 + 4 + 10);
    bytes[third..third + HEADER].fill(0);
    fs::write(&path, &bytes).unwrap();
    let w = open(dir.path(), None, &engine).unwrap();
    assert_eq!(w.last(), 2);
    assert_eq!(value(&engine, 4), None, "4 was never acknowledged");
}

#[test]
fn a_damaged_record_before_a_durable_one_is_an_error_naming_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let engine = MemoryBackend::default();
    let mut w = open(dir.path(), None, &engine).unwrap();
    write(&mut w, 1, 4);
    drop(w);
    let path = segment_file(dir.path(), 0);
    let mut bytes = fs::read(&path).unwrap();
    let second = SEGMENT_HEAD.len() + HEADER + 1 + 4 + 2 + 4 + 10;
    bytes[second + HEADER + 3] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let err = open(dir.path(), None, &engine).err().expect("an error");
    let text = err.to_string();
    assert!(text.contains("record 2 is missing or damaged"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains(&format!("offset {second}")), "{text}");
    assert_eq!(value(&engine, 1), None, "nothing replayed");
    // It stays an error: nothing was removed.
    assert!(open(dir.path(), None, &engine).is_err());
}

#[test]
fn a_huge_length_is_a_torn_tail_and_allocates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = MemoryBackend::default();
    let mut w = open(dir.path(), None, &engine).unwrap();
    write(&mut w, 1, 2);
    w.append(&put(3)).unwrap();
    drop(w);
    let path = segment_file(dir.path(), 0);
    let mut bytes = fs::read(&path).unwrap();
    let third = SEGMENT_HEAD.len() + 2 * (HEADER + 1 + 4 + 2 + 4 + 10);
    bytes[third..third + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let w = open(dir.path(), None, &engine).unwrap();
    assert_eq!(w.last(), 2);
}

#[test]
fn a_gap_between_segments_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine = MemoryBackend::default();
    let mut w = open(dir.path(), None, &engine).unwrap();
    // Records big enough that three fill more than a segment.
    let big = |n: u64| {
        let mut b = Batch::default();
        b.put(
            format!("k{n}").into_bytes(),
            vec![1; (SEGMENT_BYTES / 3) as usize],
        );
        b
    };
    for n in 1..=6 {
        w.append(&big(n)).unwrap();
        w.sync().unwrap();
    }
    drop(w);
    // Segment 1 (records 3 and 4, synced before 5 went to segment 2) is lost.
    fs::remove_file(segment_file(dir.path(), 1)).unwrap();
    let err = open(dir.path(), None, &engine).err().expect("an error");
    assert!(err.to_string().contains("record 3 is missing"), "{err}");
}

#[test]
fn an_empty_or_unfinished_segment_recovers_to_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = MemoryBackend::default();
    drop(open(dir.path(), None, &engine).unwrap());
    // A segment whose making was cut short: half a header, zeros.
    let mut half = SEGMENT_HEAD[..7].to_vec();
    half.resize(4096, 0);
    fs::write(segment_file(dir.path(), 9), &half).unwrap();
    let w = open(dir.path(), None, &engine).unwrap();
    assert_eq!(w.last(), 0);
    // Something else under a segment's name is an error, not skipped.
    drop(w);
    fs::write(segment_file(dir.path(), 9), b"garbage!").unwrap();
    assert!(open(dir.path(), None, &engine).is_err());
}

#[test]
fn segments_are_reused_after_a_checkpoint_and_recover_right() {
    let dir = tempfile::tempdir().unwrap();
    let engine = MemoryBackend::default();
    let mut w = open(dir.path(), None, &engine).unwrap();
    let big = |n: u64| {
        let mut b = Batch::default();
        b.put(b"k".to_vec(), vec![n as u8; (SEGMENT_BYTES / 3) as usize]);
        b
    };
    let mut applied = Batch::default();
    // Two records a segment: 1 and 2 in segment 0, 3 and 4 in 1, 5 in 2.
    for n in 1..=5 {
        w.append(&big(n)).unwrap();
        applied.append(big(n));
    }
    w.sync().unwrap();
    // A checkpoint: the engine holds 1..=5 durably.
    stamp(&mut applied, 5);
    engine.apply(&applied).unwrap();
    w.release_through(5);
    // 6 beside 5; 7 and 8 in segment 1 again, 9 in segment 0.
    for n in 6..=9 {
        w.append(&big(n)).unwrap();
        w.sync().unwrap();
    }
    let files = fs::read_dir(dir.path().join(DIR)).unwrap().count();
    assert_eq!(files, 3, "a segment was reused rather than made");
    drop(w);
    let w = open(dir.path(), None, &engine).unwrap();
    assert_eq!(w.last(), 9);
    assert_eq!(
        engine.get(b"k").unwrap(),
        Some(vec![9; (SEGMENT_BYTES / 3) as usize])
    );
}

#[test]
fn a_record_larger_than_a_segment_gets_one_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let engine = MemoryBackend::default();
    let mut w = open(dir.path(), None, &engine).unwrap();
    let mut b = Batch::default();
    b.put(b"big".to_vec(), vec![7; (SEGMENT_BYTES * 2) as usize]);
    w.append(&put(1)).unwrap();
    w.append(&b).unwrap();
    w.append(&put(3)).unwrap();
    w.sync().unwrap();
    drop(w);
    open(dir.path(), None, &engine).unwrap();
    assert_eq!(engine.get(b"big").unwrap().map(|v| v.len()), Some(2 << 20));
    assert_eq!(value(&engine, 3), Some(vec![3; 10]));
}

#[test]
fn a_segment_made_to_measure_is_removed_once_a_checkpoint_covers_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = MemoryBackend::default();
    let mut w = open(dir.path(), None, &engine).unwrap();
    let mut b = Batch::default();
    b.put(b"big".to_vec(), vec![7; (SEGMENT_BYTES * 2) as usize]);
    for _ in 0..3 {
        w.append(&b).unwrap();
        w.append(&put(1)).unwrap();
        w.sync().unwrap();
        w.release_through(w.last());
    }
    let files = fs::read_dir(dir.path().join(DIR)).unwrap().count();
    assert!(files <= 3, "{files} segments: big ones must not pile up");
}

#[test]
fn a_damaged_mark_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine = MemoryBackend::default();
    let mut b = Batch::default();
    b.put(crate::keys::JOURNAL_KEY.to_vec(), b"xyz".to_vec());
    engine.apply(&b).unwrap();
    let err = open(dir.path(), None, &engine).err().expect("an error");
    assert!(err.to_string().contains("journal mark"), "{err}");
}

#[test]
fn a_cancelled_record_is_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = MemoryBackend::default();
    let mut w = open(dir.path(), None, &engine).unwrap();
    write(&mut w, 1, 1);
    let refused = w.append(&put(2)).unwrap();
    w.sync().unwrap();
    w.cancel(refused).unwrap();
    assert_eq!(w.append(&put(4)).unwrap(), 4);
    w.sync().unwrap();
    drop(w);
    let w = open(dir.path(), None, &engine).unwrap();
    assert_eq!(value(&engine, 1), Some(vec![1; 10]));
    assert_eq!(
        value(&engine, 2),
        None,
        "the engine refused it: it never happened"
    );
    assert_eq!(value(&engine, 4), Some(vec![4; 10]));
    assert_eq!(w.last(), 4);
}

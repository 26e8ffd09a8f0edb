//! Recovery at open: what the journal holds past the engine's durable
//! state goes into the engine, and the journal starts empty.

use super::file::Segments;
use super::reader::{self, Run};
use super::record::{self, Payload, Record, SEGMENT_HEAD};
use super::{read_mark, stamp};
use crate::embedded::backend::{Backend, Batch};
use crate::error::{Error, Result};

/// Replay applies this many operations (or more, by one record) as one
/// engine batch.
const REPLAY_CHUNK: usize = 16_384;

/// Replays into `backend` every journal record past the engine's mark (the
/// last record its state holds), makes the engine durable, and removes the
/// segments. Returns the last sequence number the store has used.
///
/// The same state results whether a crash came before, during or after a
/// checkpoint: the mark is written in the same engine batch as the records
/// it counts, so the engine's durable state names exactly where the replay
/// starts, and a replay cut short by another crash starts again from there.
///
/// # Errors
///
/// A record that is missing or damaged while a later record proves it was
/// durable, or a whole record that does not decode: an error naming the
/// segment and the offset. A torn tail (records never made durable) is not
/// an error: the journal ends at the last good record.
pub(crate) fn recover(segments: &dyn Segments, backend: &dyn Backend) -> Result<u64> {
    let fail = |message: String| Error::storage("recovering the journal", message);
    let io = |id: u64, e: std::io::Error| {
        Error::storage(
            format!(
                "reading the journal segment {}",
                segments.path(id).display()
            ),
            e,
        )
    };

    // 1. Where the engine's durable state ends.
    let mark = read_mark(backend)?;

    // 2. Every segment, read whole. One whose making was cut short holds
    //    a prefix of the header and zeros: it never held a record.
    let mut files: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut ids = segments.list().map_err(|e| io(0, e))?;
    ids.sort_unstable();
    for id in ids {
        // Synced before it is read: what the replay hands the engine (a
        // checkpoint may write it in several batches) must be durable in
        // the journal first, or a power loss during the replay could leave
        // the engine ahead of it (records a crashed process wrote but never
        // synced are in the page cache only).
        let bytes = segments
            .open(id)
            .and_then(|f| {
                f.sync_data()?;
                f.read_all()
            })
            .map_err(|e| io(id, e))?;
        if reader::has_head(&bytes) {
            files.push((id, bytes));
        } else if !is_unfinished(&bytes) {
            return Err(fail(format!(
                "{} is not a journal segment: its first bytes are not the segment header",
                segments.path(id).display()
            )));
        }
    }
    let runs: Vec<(u64, Run<'_>)> = files
        .iter()
        .map(|(id, bytes)| (*id, reader::run(bytes)))
        .collect();

    // 3. The chain of records from mark + 1: each segment's run holds
    //    consecutive numbers, and the chain passes from run to run.
    let mut last = mark;
    let mut chain: Vec<(u64, Record<'_>)> = Vec::new();
    let mut ended_at: Option<(u64, u64)> = None;
    let mut torn = false;
    while let Some((id, run)) = runs.iter().find(|(_, run)| {
        run.range()
            .is_some_and(|(first, end)| first <= last + 1 && last < end)
    }) {
        for r in run.records.iter().filter(|r| r.seq > last) {
            chain.push((*id, *r));
        }
        last = run.range().map_or(last, |(_, end)| end);
        ended_at = Some((*id, run.end_offset));
        torn = run.end == reader::End::Damaged;
    }

    // 4. Past the chain's end only a torn tail may follow: records written
    //    before anything past `last` was durable. A record that says a
    //    later one was durable proves damage in the middle.
    for ((id, bytes), (_, run)) in files.iter().zip(&runs) {
        let later = run
            .records
            .iter()
            .find(|r| r.seq > last && r.synced > last)
            .copied()
            .or_else(|| reader::later_durable(bytes, run.end_offset, last));
        if let Some(r) = later {
            let (broken, offset) = ended_at.unwrap_or((*id, SEGMENT_HEAD.len() as u64));
            return Err(fail(format!(
                "record {} is missing or damaged at {} offset {offset}, but record {} at {} \
                 offset {} was written after it was durable; the journal is damaged in the \
                 middle, and replaying past the damage would lose acknowledged writes",
                last + 1,
                segments.path(broken).display(),
                r.seq,
                segments.path(*id).display(),
                r.offset,
            )));
        }
    }

    if let (true, Some((id, offset))) = (torn, ended_at) {
        log::warn!(
            "sessionstore: the journal ends in a torn record at {} offset {offset}, \
             never acknowledged; recovering up to record {last}",
            segments.path(id).display()
        );
    }

    // 5. Replay, in chunks, each stamped with the last number it holds;
    //    a cancelled record (the engine refused it) is skipped.
    let mut payloads: Vec<(u64, Option<Batch>)> = Vec::with_capacity(chain.len());
    for (id, r) in &chain {
        match record::decode(r.payload) {
            Some(Payload::Batch(b)) => payloads.push((r.seq, Some(b))),
            Some(Payload::Cancel(seq)) => {
                if let Some(p) = payloads.iter_mut().rev().find(|(s, _)| *s == seq) {
                    p.1 = None;
                }
                payloads.push((r.seq, None));
            }
            None => {
                return Err(fail(format!(
                    "record {} at {} offset {} passed its checksum but does not parse",
                    r.seq,
                    segments.path(*id).display(),
                    r.offset
                )));
            }
        }
    }
    let mut batch = Batch::default();
    let mut bytes = 0usize;
    let count = payloads.len();
    for (i, (seq, payload)) in payloads.into_iter().enumerate() {
        if let Some(b) = payload {
            bytes += b.ops().len();
            batch.append(b);
        }
        if bytes >= REPLAY_CHUNK || i + 1 == count {
            stamp(&mut batch, seq);
            backend.apply_owned(std::mem::take(&mut batch))?;
            bytes = 0;
        }
    }

    // 6. The engine's state is durable through `last`: the journal can go.
    backend.flush()?;
    segments
        .remove_all()
        .map_err(|e| Error::storage("removing the replayed journal", e))?;
    if !chain.is_empty() {
        log::info!(
            "sessionstore: replayed {} journal records ({} to {last})",
            chain.len(),
            mark + 1
        );
    }
    Ok(last)
}

/// Whether `bytes` are what a cut-short making of a segment leaves: a
/// prefix of the header (or nothing), then zeros.
fn is_unfinished(bytes: &[u8]) -> bool {
    let head = bytes.len().min(SEGMENT_HEAD.len());
    let prefix_ok = bytes[..head]
        .iter()
        .zip(SEGMENT_HEAD.iter())
        .all(|(a, b)| a == b || *a == 0);
    prefix_ok && bytes[head..].iter().all(|b| *b == 0)
}

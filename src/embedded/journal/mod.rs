//! The write-ahead journal in front of the engine.
//!
//! Every batch is appended here, as one numbered record, before the engine
//! applies it, and a durable batch is acknowledged once its record is
//! synced: the engine itself commits durably only at checkpoints
//! (`embedded::checkpoint`). Every engine batch also carries the journal
//! mark ([`JOURNAL_KEY`](crate::keys::JOURNAL_KEY)), the number of the last
//! record it holds, so the engine's durable state says where a replay
//! starts.
//!
//! - `file`: the segment files, behind a seam the power-loss tests replace;
//! - `record`: a record's bytes;
//! - `reader`: one segment's run of records;
//! - `writer`: appends, syncs, segment reuse;
//! - `recovery`: the replay at open.

mod file;
mod reader;
mod record;
mod recovery;
mod writer;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

#[cfg(test)]
pub(crate) use file::SegmentFile;
pub(crate) use file::{DIR, DirSegments, Segments};
pub(crate) use writer::{SEGMENT_BYTES, Writer};

use crate::embedded::backend::{Backend, Batch};
use crate::error::{Error, Result};
use crate::keys;

/// Opens the journal of the store in `dir` (or `segments`, if given:
/// tests inside the crate do), replays into `backend` what it holds past
/// the engine's mark, and returns a writer on an empty journal.
pub(crate) fn open(
    dir: &Path,
    segments: Option<Arc<dyn Segments>>,
    backend: &dyn Backend,
) -> Result<Writer> {
    let segments = match segments {
        Some(s) => s,
        None => Arc::new(DirSegments::new(dir).map_err(|source| Error::Io {
            path: dir.join(DIR),
            source,
        })?),
    };
    let last = recovery::recover(&*segments, backend)?;
    Writer::create(segments, last)
}

/// Adds to `batch` the journal mark: the engine's state after it holds
/// every record up to `seq`.
pub(crate) fn stamp(batch: &mut Batch, seq: u64) {
    batch.put(keys::JOURNAL_KEY.to_vec(), seq.to_be_bytes().to_vec());
}

/// The record number a journal mark's bytes hold (see [`stamp`]); `None`
/// if they are not 8 bytes.
pub(crate) fn decode_mark(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// The journal mark the engine holds; 0 if it holds none (a new store, or
/// one from before the journal).
pub(crate) fn read_mark(backend: &dyn Backend) -> Result<u64> {
    match backend.get(keys::JOURNAL_KEY)? {
        None => Ok(0),
        Some(bytes) => match decode_mark(&bytes) {
            Some(seq) => Ok(seq),
            None => Err(Error::storage(
                "reading the journal mark",
                format!(
                    "the record {:?} holds {} bytes, not 8: the engine's file is damaged",
                    String::from_utf8_lossy(keys::JOURNAL_KEY),
                    bytes.len()
                ),
            )),
        },
    }
}

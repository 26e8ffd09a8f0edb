//! Appending to the journal: one record per batch at the end of the active
//! segment, `fdatasync` when asked, and segments reused once a checkpoint
//! has made their records redundant. The writer knows nothing of recovery.
//!
//! - Segments are made [`SEGMENT_BYTES`] long, zero-filled and synced once,
//!   so an append inside one writes data only.
//! - A record that does not fit the active segment goes to the start of
//!   the next free one, after the active one is synced: a later segment's
//!   records are then never durable before an earlier one's.
//! - A record larger than a segment gets a segment of its own, made to
//!   measure.
//! - A failed write consumes nothing: the next append writes the same
//!   number at the same place. A failed sync leaves the journal's state
//!   unknown, so every later call fails until the store is reopened.

use std::sync::Arc;

use super::file::{SegmentFile, Segments};
use super::record::{self, SEGMENT_HEAD};
use crate::embedded::backend::Batch;
use crate::error::{Error, Result};

/// The size of a segment; also how much journal a checkpoint is asked for
/// after (see `checkpoint`).
pub(crate) const SEGMENT_BYTES: u64 = 1 << 20;

struct Segment {
    id: u64,
    file: Box<dyn SegmentFile>,
    /// The segment's size: records must end within it.
    len: u64,
    /// The last sequence number written into it in this use.
    last: u64,
}

/// The journal's writing end.
pub(crate) struct Writer {
    segments: Arc<dyn Segments>,
    active: Segment,
    /// Where the next record goes in the active segment.
    pos: u64,
    /// Full segments whose records a checkpoint has not yet covered.
    sealed: Vec<Segment>,
    /// Segments ready for reuse.
    free: Vec<Segment>,
    next_id: u64,
    /// The last sequence number appended.
    last: u64,
    /// The last sequence number known durable.
    synced: u64,
    /// Set by a failed sync.
    failed: Option<String>,
    /// Bytes appended since the store opened.
    appended: u64,
    buf: Vec<u8>,
}

impl Writer {
    /// A new journal in an empty `segments`, whose first record will be
    /// numbered `last + 1`.
    pub fn create(segments: Arc<dyn Segments>, last: u64) -> Result<Self> {
        let file = segments
            .create(0, SEGMENT_HEAD, SEGMENT_BYTES)
            .map_err(|e| io_error(&*segments, 0, "creating", e))?;
        Ok(Writer {
            active: Segment {
                id: 0,
                file,
                len: SEGMENT_BYTES,
                last,
            },
            segments,
            pos: SEGMENT_HEAD.len() as u64,
            sealed: Vec::new(),
            free: Vec::new(),
            next_id: 1,
            last,
            synced: last,
            failed: None,
            appended: 0,
            buf: Vec::new(),
        })
    }

    /// The last sequence number appended.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Bytes appended since the store opened.
    pub fn appended(&self) -> u64 {
        self.appended
    }

    /// Whether a record was appended and not yet synced.
    pub fn is_unsynced(&self) -> bool {
        self.synced < self.last
    }

    /// Appends the record of `batch`, not synced; returns its sequence number.
    pub fn append(&mut self, batch: &Batch) -> Result<u64> {
        self.check()?;
        let seq = self.last + 1;
        self.buf.clear();
        record::encode(&mut self.buf, seq, self.synced, batch).ok_or_else(|| {
            Error::storage(
                "appending to the journal",
                "the batch is over 4 GiB, more than a journal record holds",
            )
        })?;
        self.write_buf(seq)
    }

    /// Appends and syncs a record that cancels record `seq`, which the
    /// engine refused, so that no replay applies it. If that fails, what
    /// a replay would do is unknown: every later call fails until the store
    /// is reopened.
    pub fn cancel(&mut self, seq: u64) -> Result<()> {
        self.check()?;
        let next = self.last + 1;
        self.buf.clear();
        record::encode_cancel(&mut self.buf, next, self.synced, seq);
        let done = self.write_buf(next).and_then(|_| self.sync());
        if let Err(e) = &done {
            self.failed = Some(format!("record {seq} could not be cancelled: {e}"));
        }
        done
    }

    /// Writes the record in the buffer, numbered `seq`.
    fn write_buf(&mut self, seq: u64) -> Result<u64> {
        let len = self.buf.len() as u64;
        if self.pos + len > self.active.len {
            self.next_segment(len)?;
        }
        if let Err(e) = self.active.file.write_at(self.pos, &self.buf) {
            return Err(io_error(&*self.segments, self.active.id, "writing", e));
        }
        self.pos += len;
        self.active.last = seq;
        self.last = seq;
        self.appended += len;
        Ok(seq)
    }

    /// Makes every appended record durable: one `fdatasync` of the active
    /// segment (the earlier ones were synced when they filled).
    pub fn sync(&mut self) -> Result<()> {
        self.check()?;
        if !self.is_unsynced() {
            return Ok(());
        }
        if let Err(e) = self.active.file.sync_data() {
            let e = io_error(&*self.segments, self.active.id, "syncing", e);
            self.failed = Some(format!("an earlier sync failed ({e})"));
            return Err(e);
        }
        self.synced = self.last;
        Ok(())
    }

    /// Lets the segments whose records are all at or below `seq` be
    /// reused: a checkpoint made the engine's state durable through `seq`.
    pub fn release_through(&mut self, seq: u64) {
        let (done, kept): (Vec<Segment>, Vec<Segment>) =
            self.sealed.drain(..).partition(|s| s.last <= seq);
        self.sealed = kept;
        for s in done {
            if s.len == SEGMENT_BYTES {
                self.free.push(s);
            } else if let Err(e) = self.segments.remove(s.id) {
                // A segment made to measure for one big record is not
                // reused; left behind, it goes at the next close or open.
                log::warn!(
                    "sessionstore: could not remove the journal segment {}: {e}",
                    self.segments.path(s.id).display()
                );
            }
        }
    }

    /// Removes every segment: the engine's state is durable through the
    /// last record (a clean close). The journal takes no more appends.
    pub fn remove_all(&mut self) -> Result<()> {
        self.failed = Some("the journal was closed".into());
        self.segments
            .remove_all()
            .map_err(|e| Error::storage("removing the journal's segments", e))
    }

    /// Bytes the journal's segments take.
    pub fn size(&self) -> Result<u64> {
        self.segments
            .size()
            .map_err(|e| Error::storage("measuring the journal", e))
    }

    fn check(&self) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(Error::storage(
                "writing to the journal",
                format!("{why}; what the journal holds is unknown: reopen the store"),
            )),
        }
    }

    /// Seals the active segment (synced) and makes the next one active: a
    /// free one, or a new one big enough for a record of `len` bytes.
    fn next_segment(&mut self, len: u64) -> Result<()> {
        self.sync()?;
        let head = SEGMENT_HEAD.len() as u64;
        let next = match self.free.pop() {
            Some(s) if head + len <= s.len => s,
            other => {
                self.free.extend(other);
                let id = self.next_id;
                let size = (head + len).max(SEGMENT_BYTES);
                let file = self
                    .segments
                    .create(id, SEGMENT_HEAD, size)
                    .map_err(|e| io_error(&*self.segments, id, "creating", e))?;
                self.next_id += 1;
                Segment {
                    id,
                    file,
                    len: size,
                    last: self.last,
                }
            }
        };
        let old = std::mem::replace(&mut self.active, next);
        self.sealed.push(old);
        self.pos = head;
        Ok(())
    }
}

fn io_error(segments: &dyn Segments, id: u64, what: &str, e: std::io::Error) -> Error {
    Error::storage(
        format!("{what} the journal segment {}", segments.path(id).display()),
        e,
    )
}

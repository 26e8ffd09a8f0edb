//! Reading one segment: the run of records it holds from its start, and
//! what ends the run. The reader judges no record against another segment;
//! that is recovery's work.

use super::record::{self, HEADER, Record, SEGMENT_HEAD};

/// What ended a segment's run of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Zeros (never written) or the end of the file.
    Blank,
    /// A whole record with a lower sequence number than the one before it:
    /// what an earlier use of a reused segment left.
    Stale,
    /// Bytes that are no whole record: a torn write, or damage.
    Damaged,
}

/// One segment's run: consecutive records from its start.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    pub records: Vec<Record<'a>>,
    /// Where the run ends: the offset after its last record.
    pub end_offset: u64,
    pub end: End,
}

impl Run<'_> {
    /// The first and last sequence numbers, if the run holds a record.
    pub fn range(&self) -> Option<(u64, u64)> {
        Some((self.records.first()?.seq, self.records.last()?.seq))
    }
}

/// Whether `segment` starts with the journal's segment header.
pub(crate) fn has_head(segment: &[u8]) -> bool {
    segment.starts_with(SEGMENT_HEAD)
}

/// The run of records of `segment` (which starts with its header): each
/// record's sequence number is one more than the one before.
pub(crate) fn run(segment: &[u8]) -> Run<'_> {
    let mut records: Vec<Record<'_>> = Vec::new();
    let mut at = SEGMENT_HEAD.len();
    let end = loop {
        if record::is_blank(segment, at) {
            break End::Blank;
        }
        let Some(r) = record::parse(segment, at) else {
            break End::Damaged;
        };
        match records.last() {
            Some(prev) if r.seq <= prev.seq => break End::Stale,
            // One use of a segment holds consecutive numbers: a jump is damage.
            Some(prev) if r.seq != prev.seq + 1 => break End::Damaged,
            _ => {}
        }
        at = r.end() as usize;
        records.push(r);
    };
    Run {
        records,
        end_offset: at as u64,
        end,
    }
}

/// The first whole record at or after byte `from` of `segment` whose
/// sequence number is above `last` and that was written after a record
/// above `last` was durable (`synced > last`): proof that a record above
/// `last` was made durable, so its absence is damage, not a torn tail.
/// Every offset is tried; the numbers are checked before the checksum, so
/// the search costs little more than reading the bytes.
pub(crate) fn later_durable(segment: &[u8], from: u64, last: u64) -> Option<Record<'_>> {
    let from = usize::try_from(from).ok()?;
    (from..segment.len().saturating_sub(HEADER - 1)).find_map(|at| {
        let (seq, synced) = record::claims(segment, at)?;
        if seq > last && synced > last && synced < seq {
            record::parse(segment, at)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::backend::Batch;

    fn batch(n: u8) -> Batch {
        let mut b = Batch::default();
        b.put(vec![b'k', n], vec![n; usize::from(n)]);
        b
    }

    /// A zero-filled segment of `len` bytes with records `seqs` from its start.
    fn segment(seqs: &[u64], len: usize) -> Vec<u8> {
        let mut out = SEGMENT_HEAD.to_vec();
        for &s in seqs {
            record::encode(&mut out, s, s.saturating_sub(1), &batch(s as u8)).unwrap();
        }
        out.resize(len.max(out.len()), 0);
        out
    }

    fn seqs(run: &Run<'_>) -> Vec<u64> {
        run.records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn an_empty_segment_has_an_empty_run() {
        let seg = segment(&[], 4096);
        let r = run(&seg);
        assert_eq!((r.range(), r.end, r.end_offset), (None, End::Blank, 16));
        let exact = segment(&[], 0);
        assert_eq!(run(&exact).end, End::Blank, "the file ends at the header");
    }

    #[test]
    fn a_run_ends_at_zeros() {
        let seg = segment(&[4, 5, 6], 4096);
        let r = run(&seg);
        assert_eq!((seqs(&r), r.end), (vec![4, 5, 6], End::Blank));
    }

    #[test]
    fn a_torn_tail_ends_the_run_as_damaged() {
        let full = segment(&[1, 2, 3], 0);
        let cut = full.len() - 3;
        let mut seg = full[..cut].to_vec();
        seg.resize(4096, 0);
        let r = run(&seg);
        assert_eq!((seqs(&r), r.end), (vec![1, 2], End::Damaged));
        assert_eq!(later_durable(&seg, r.end_offset, 2), None);
    }

    #[test]
    fn a_reused_segment_ends_at_the_first_stale_record() {
        let mut seg = segment(&[1, 2, 3, 4, 5], 4096);
        let new = segment(&[20, 21], 0);
        // The new use wrote over the start of the old one.
        seg[..new.len()].copy_from_slice(&new);
        let r = run(&seg);
        assert_eq!(seqs(&r), vec![20, 21]);
        assert!(matches!(r.end, End::Stale | End::Damaged));
        assert_eq!(
            later_durable(&seg, r.end_offset, 21),
            None,
            "old records are older"
        );
    }

    #[test]
    fn a_gap_inside_a_segment_ends_the_run_as_damaged() {
        let seg = segment(&[1, 2, 4], 4096);
        let r = run(&seg);
        assert_eq!((seqs(&r), r.end), (vec![1, 2], End::Damaged));
    }

    #[test]
    fn damage_before_a_durable_record_is_found() {
        let mut seg = segment(&[1, 2, 3, 4], 4096);
        let second = run(&seg).records[1].offset as usize;
        // Damage the length of record 2: the run cannot step over it.
        seg[second] ^= 0x40;
        let r = run(&seg);
        assert_eq!((seqs(&r), r.end), (vec![1], End::Damaged));
        // Record 3 says 2 was durable when it was written.
        let found = later_durable(&seg, r.end_offset, 1).map(|r| r.seq);
        assert_eq!(found, Some(3));
    }
}

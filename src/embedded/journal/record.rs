//! The journal's bytes: a segment's header, and one record per engine batch.
//!
//! A segment starts with [`SEGMENT_HEAD`]. Records follow it, one after the
//! other, each [`HEADER`] bytes and then its payload:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | payload length, u32 little-endian |
//! | 4 | CRC-32 of the length, sequence, synced and payload bytes |
//! | 8 | sequence number, u64 LE: 1, 2, 3, … over the store's life |
//! | 8 | synced: the highest sequence number known durable when this record was written |
//! | n | the batch: its operations in order |
//!
//! An operation is a tag byte (1 put, 2 delete, 3 prefix deletion), the
//! key's length (u32 LE) and bytes, and for a put the value's length and
//! bytes. The raw key and value bytes are the engine's; nothing here knows
//! what they mean. A cancellation is the tag 4 and the sequence number (u64
//! LE) of an earlier record that the engine refused: replay skips both.

use crate::embedded::backend::{Batch, Op};

/// The first bytes of every segment: the format's name and version.
pub(crate) const SEGMENT_HEAD: &[u8; 16] = b"sessionstore-j1\n";
/// The bytes of a record before its payload.
pub(crate) const HEADER: usize = 24;

const PUT: u8 = 1;
const DELETE: u8 = 2;
const DELETE_PREFIX: u8 = 3;
const CANCEL: u8 = 4;

/// What a record's payload holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Payload {
    /// A batch for the engine.
    Batch(Batch),
    /// The record with this number never reached the engine: skip it.
    Cancel(u64),
}

/// One record as read from a segment: it passed its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub seq: u64,
    pub synced: u64,
    /// Where the record starts in its segment.
    pub offset: u64,
    pub payload: &'a [u8],
}

impl Record<'_> {
    /// Where the next record starts.
    pub fn end(&self) -> u64 {
        self.offset + (HEADER + self.payload.len()) as u64
    }
}

/// Appends the record of `batch` to `out`; `None` if its payload would not
/// fit the 32-bit length.
pub(crate) fn encode(out: &mut Vec<u8>, seq: u64, synced: u64, batch: &Batch) -> Option<()> {
    encode_with(out, seq, synced, |out| {
        for op in batch.ops() {
            encode_op(out, op)?;
        }
        Some(())
    })
}

/// Appends to `out` the record that cancels record `cancelled`.
pub(crate) fn encode_cancel(out: &mut Vec<u8>, seq: u64, synced: u64, cancelled: u64) {
    let done = encode_with(out, seq, synced, |out| {
        out.push(CANCEL);
        out.extend_from_slice(&cancelled.to_le_bytes());
        Some(())
    });
    debug_assert!(done.is_some(), "nine bytes fit any length");
}

fn encode_op(out: &mut Vec<u8>, op: &Op) -> Option<()> {
    match op {
        Op::Put(k, v) => {
            out.push(PUT);
            put_bytes(out, k)?;
            put_bytes(out, v)
        }
        Op::Delete(k) => {
            out.push(DELETE);
            put_bytes(out, k)
        }
        Op::DeletePrefix(p) => {
            out.push(DELETE_PREFIX);
            put_bytes(out, p)
        }
    }
}

/// Appends a record whose payload `body` writes.
fn encode_with(
    out: &mut Vec<u8>,
    seq: u64,
    synced: u64,
    body: impl FnOnce(&mut Vec<u8>) -> Option<()>,
) -> Option<()> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    if body(out).is_none() {
        out.truncate(start);
        return None;
    }
    let len = u32::try_from(out.len() - start - HEADER).ok()?;
    let head = &mut out[start..start + HEADER];
    head[0..4].copy_from_slice(&len.to_le_bytes());
    head[8..16].copy_from_slice(&seq.to_le_bytes());
    head[16..24].copy_from_slice(&synced.to_le_bytes());
    let crc = checksum(&out[start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Some(())
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    out.extend_from_slice(&u32::try_from(bytes.len()).ok()?.to_le_bytes());
    out.extend_from_slice(bytes);
    Some(())
}

/// The checksum of a whole record: every byte but the checksum's own.
fn checksum(record: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&record[0..4]);
    h.update(&record[8..]);
    h.finalize()
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The sequence number and synced mark a record at `offset` claims,
/// unchecked: for a cheap filter before [`parse`].
pub(crate) fn claims(segment: &[u8], offset: usize) -> Option<(u64, u64)> {
    Some((u64_at(segment, offset + 8)?, u64_at(segment, offset + 16)?))
}

/// Whether the header at `offset` is all zeros: bytes never written (a
/// segment is zero-filled when made), the end of the records.
pub(crate) fn is_blank(segment: &[u8], offset: usize) -> bool {
    segment
        .get(offset..offset + HEADER)
        .is_none_or(|h| h.iter().all(|b| *b == 0))
}

/// The record at `offset` of `segment`, if one is there whole with a good
/// checksum. A length past the segment's end is no record: nothing is
/// allocated for what the bytes claim.
pub(crate) fn parse(segment: &[u8], offset: usize) -> Option<Record<'_>> {
    let len = usize::try_from(u32_at(segment, offset)?).ok()?;
    let end = offset.checked_add(HEADER)?.checked_add(len)?;
    let whole = segment.get(offset..end)?;
    if u32_at(whole, 4)? != checksum(whole) {
        return None;
    }
    Some(Record {
        seq: u64_at(whole, 8)?,
        synced: u64_at(whole, 16)?,
        offset: offset as u64,
        payload: &whole[HEADER..],
    })
}

/// What a payload holds; `None` if it does not parse.
pub(crate) fn decode(payload: &[u8]) -> Option<Payload> {
    if let [CANCEL, rest @ ..] = payload {
        return Some(Payload::Cancel(u64::from_le_bytes(rest.try_into().ok()?)));
    }
    let mut batch = Batch::default();
    let mut at = 0usize;
    let take = |at: &mut usize| -> Option<Vec<u8>> {
        let len = usize::try_from(u32_at(payload, *at)?).ok()?;
        let start = *at + 4;
        let bytes = payload.get(start..start.checked_add(len)?)?;
        *at = start + len;
        Some(bytes.to_vec())
    };
    while at < payload.len() {
        let tag = payload[at];
        at += 1;
        match tag {
            PUT => {
                let k = take(&mut at)?;
                let v = take(&mut at)?;
                batch.put(k, v);
            }
            DELETE => batch.delete(take(&mut at)?),
            DELETE_PREFIX => batch.delete_prefix(take(&mut at)?),
            _ => return None,
        }
    }
    Some(Payload::Batch(batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        let mut b = Batch::default();
        b.put(b"s/".to_vec(), b"meta".to_vec());
        b.delete(b"s//k".to_vec());
        b.delete_prefix(b"t/".to_vec());
        b.put(b"e".to_vec(), Vec::new());
        b
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let mut out = b"xy".to_vec();
        encode(&mut out, 7, 5, &sample()).unwrap();
        let r = parse(&out, 2).unwrap();
        assert_eq!((r.seq, r.synced, r.offset), (7, 5, 2));
        assert_eq!(r.end() as usize, out.len());
        assert_eq!(decode(r.payload), Some(Payload::Batch(sample())));
        let mut cancel = Vec::new();
        encode_cancel(&mut cancel, 8, 7, 7);
        let c = parse(&cancel, 0).unwrap();
        assert_eq!(decode(c.payload), Some(Payload::Cancel(7)));
    }

    #[test]
    fn any_flipped_bit_fails_the_checksum() {
        let mut out = Vec::new();
        encode(&mut out, 1, 0, &sample()).unwrap();
        for i in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[i] ^= 1 << bit;
                assert_eq!(parse(&bad, 0), None, "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn a_huge_length_is_no_record_and_allocates_nothing() {
        let mut out = Vec::new();
        encode(&mut out, 1, 0, &sample()).unwrap();
        out[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&out, 0), None);
        // A payload whose inner length claims 4 GiB.
        let mut payload = vec![PUT];
        payload.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&payload), None);
        assert_eq!(decode(&[9]), None, "an unknown tag");
    }

    #[test]
    fn a_cut_record_is_no_record() {
        let mut out = Vec::new();
        encode(&mut out, 1, 0, &sample()).unwrap();
        for len in 0..out.len() {
            assert_eq!(parse(&out[..len], 0), None, "cut at {len}");
        }
        assert!(is_blank(&[0; HEADER], 0));
        assert!(!is_blank(&out, 0));
    }
}

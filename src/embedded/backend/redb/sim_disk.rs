//! Test-only: a simulated disk that records every write and sync, and can
//! lose power or fail. It holds files: file 0 is redb's (the disk is a
//! `redb::StorageBackend`), the others the journal's segments
//! ([`SimSegments`], the journal's `Segments`).
//!
//! Each file has two images: what reads see (every write so far) and what
//! survives a power loss for sure (every write covered by a completed sync
//! of that file). The writes in between are pending, in order. Each write,
//! length change and sync, of any file, is one numbered operation. At an
//! armed cut the power goes: that operation and every later one fails with
//! `EIO`, and [`SimDisk::crash`] gives the bytes a reopen finds, built from
//! each file's durable image and pending writes as [`Loss`] says. Single
//! errors (`ENOSPC`, `EIO`) can be injected at chosen operations; a failed
//! operation changes nothing. Making and removing a segment are durable at
//! once (the journal syncs the directory after both).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use redb::{BackendError, StorageBackend};

use crate::embedded::journal::{SegmentFile, Segments};

/// What a power loss does to the writes not covered by a completed sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// All are lost, except a random prefix of the last one (a torn write).
    TornLast,
    /// Each survives or not at random (the drive reorders them); one of the
    /// survivors is torn.
    Reordered,
}

/// An error injected at one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// `ENOSPC`: no space left on the device.
    NoSpace,
    /// `EIO`: the device failed.
    Eio,
}

impl Fault {
    fn error(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            Fault::NoSpace => 28, // ENOSPC
            Fault::Eio => 5,      // EIO
        })
    }
}

#[derive(Clone)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

/// One file's images.
#[derive(Default, Clone)]
struct FileState {
    live: Vec<u8>,
    durable: Vec<u8>,
}

/// What survives a power loss: every file's bytes.
pub(crate) type Image = BTreeMap<u64, Vec<u8>>;

#[derive(Default)]
struct State {
    files: BTreeMap<u64, FileState>,
    /// Pending writes of every file, in order, with the file's number.
    pending: Vec<(u64, Pending)>,
    ops: u64,
    syncs: Vec<u64>,
    cut_at: Option<u64>,
    cut_when: Option<Instant>,
    faults: BTreeMap<u64, Fault>,
}

impl State {
    /// Takes the next operation's number; the error it must fail with, if any.
    fn next_op(&mut self) -> Result<(), io::Error> {
        let op = self.ops;
        self.ops += 1;
        if self.cut_at.is_some_and(|cut| op >= cut) {
            self.cut_when.get_or_insert_with(Instant::now);
            return Err(io::Error::from_raw_os_error(5));
        }
        match self.faults.remove(&op) {
            Some(fault) => Err(fault.error()),
            None => Ok(()),
        }
    }
}

/// A simulated disk, seen as its file 0 (redb's). Clones share it: redb
/// holds one, the journal one, the test another.
#[derive(Clone, Default)]
pub(crate) struct SimDisk(Arc<Mutex<State>>);

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.lock();
        write!(f, "SimDisk({} files, {} ops)", s.files.len(), s.ops)
    }
}

/// redb's file.
const REDB: u64 = 0;

impl SimDisk {
    /// A disk holding `image`, all of it durable.
    pub fn with_image(image: Image) -> Self {
        let files = image
            .into_iter()
            .map(|(id, bytes)| {
                (
                    id,
                    FileState {
                        live: bytes.clone(),
                        durable: bytes,
                    },
                )
            })
            .collect();
        SimDisk(Arc::new(Mutex::new(State {
            files,
            ..State::default()
        })))
    }

    /// The journal's segments on this disk: segment `n` is file `n + 1`.
    pub fn segments(&self) -> SimSegments {
        SimSegments(self.clone())
    }

    /// Operations so far.
    pub fn ops(&self) -> u64 {
        self.0.lock().ops
    }

    /// The numbers of the completed syncs.
    pub fn syncs(&self) -> Vec<u64> {
        self.0.lock().syncs.clone()
    }

    /// Loses power at operation `op`: it and every later one fail.
    pub fn cut_at(&self, op: u64) {
        self.0.lock().cut_at = Some(op);
    }

    /// When the power went, if it has.
    pub fn cut_when(&self) -> Option<Instant> {
        self.0.lock().cut_when
    }

    /// Fails operation `op` (once) with `fault`.
    pub fn fail_at(&self, op: u64, fault: Fault) {
        self.0.lock().faults.insert(op, fault);
    }

    /// The bytes a reopen finds after a power loss now: the durable image,
    /// plus the pending writes that `loss` lets through, `rand` choosing.
    ///
    /// Each file loses its own pending writes: with `Loss::TornLast` all
    /// but a torn prefix of its last write.
    pub fn crash(&self, loss: Loss, rand: &mut dyn FnMut(u64) -> u64) -> Image {
        let s = self.0.lock();
        let mut image: Image = s
            .files
            .iter()
            .map(|(id, f)| (*id, f.durable.clone()))
            .collect();
        for (id, bytes) in &mut image {
            let mut mine = s.pending.iter().filter(|(f, _)| f == id).map(|(_, p)| p);
            let survivors: Vec<&Pending> = match loss {
                Loss::TornLast => mine
                    .rfind(|p| matches!(p, Pending::Write { .. }))
                    .into_iter()
                    .collect(),
                Loss::Reordered => mine.filter(|_| rand(2) == 0).collect(),
            };
            let torn = match survivors.len() {
                0 => 0,
                n => rand(n as u64) as usize,
            };
            for (i, p) in survivors.into_iter().enumerate() {
                match p {
                    Pending::SetLen(len) => bytes.resize(*len as usize, 0),
                    Pending::Write { offset, data } => {
                        let keep = if i == torn {
                            rand(data.len() as u64 + 1) as usize
                        } else {
                            data.len()
                        };
                        write_into(bytes, *offset, &data[..keep]);
                    }
                }
            }
        }
        image
    }

    fn len_of(&self, file: u64) -> u64 {
        self.0
            .lock()
            .files
            .get(&file)
            .map_or(0, |f| f.live.len() as u64)
    }

    fn read_of(&self, file: u64, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let s = self.0.lock();
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let live = s.files.get(&file).map_or(&[][..], |f| &f.live[..]);
        match live.get(start..start + out.len()) {
            Some(bytes) => {
                out.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the simulated disk",
            )),
        }
    }

    fn change(&self, file: u64, p: Pending) -> Result<(), io::Error> {
        let mut s = self.0.lock();
        s.next_op()?;
        apply(&mut s.files.entry(file).or_default().live, &p);
        s.pending.push((file, p));
        Ok(())
    }

    fn sync_of(&self, file: u64) -> Result<(), io::Error> {
        let mut s = self.0.lock();
        s.next_op()?;
        let State { files, pending, .. } = &mut *s;
        let durable = &mut files.entry(file).or_default().durable;
        pending.retain(|(f, p)| {
            if *f == file {
                apply(durable, p);
            }
            *f != file
        });
        let op = s.ops - 1;
        s.syncs.push(op);
        Ok(())
    }
}

fn write_into(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

fn apply(image: &mut Vec<u8>, p: &Pending) {
    match p {
        Pending::SetLen(len) => image.resize(*len as usize, 0),
        Pending::Write { offset, data } => write_into(image, *offset, data),
    }
}

impl StorageBackend for SimDisk {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.len_of(REDB))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.read_of(REDB, offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.change(REDB, Pending::SetLen(len))
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.sync_of(REDB)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.change(
            REDB,
            Pending::Write {
                offset,
                data: data.to_vec(),
            },
        )
    }

    // One disk, one database: no other instance can hold a lock, so every
    // lock is granted (redb's single-writer mode needs them).
    fn try_lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
        Ok(true)
    }

    fn try_lock_shared_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
        Ok(true)
    }

    fn lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }

    fn lock_shared_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }

    fn unlock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }

    fn query_lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
        Ok(false)
    }
}

/// The journal's segments on a simulated disk.
pub(crate) struct SimSegments(SimDisk);

struct SimSegment {
    disk: SimDisk,
    file: u64,
}

impl SegmentFile for SimSegment {
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut out =
            vec![0; usize::try_from(self.disk.len_of(self.file)).map_err(io::Error::other)?];
        self.disk.read_of(self.file, 0, &mut out)?;
        Ok(out)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.disk.change(
            self.file,
            Pending::Write {
                offset,
                data: data.to_vec(),
            },
        )
    }

    fn sync_data(&self) -> io::Result<()> {
        self.disk.sync_of(self.file)
    }
}

impl Segments for SimSegments {
    fn list(&self) -> io::Result<Vec<u64>> {
        let s = self.0.0.lock();
        Ok(s.files
            .keys()
            .filter(|f| **f != REDB)
            .map(|f| f - 1)
            .collect())
    }

    fn open(&self, id: u64) -> io::Result<Box<dyn SegmentFile>> {
        Ok(Box::new(SimSegment {
            disk: self.0.clone(),
            file: id + 1,
        }))
    }

    /// Holds the head only: the zeros after it read as the file's end,
    /// which the journal's reader takes the same way (no record there).
    fn create(&self, id: u64, head: &[u8], _len: u64) -> io::Result<Box<dyn SegmentFile>> {
        let bytes = head.to_vec();
        {
            let mut s = self.0.0.lock();
            // Writing the zeros and the sync: one operation, where the power
            // can go (and then the segment is not there).
            s.next_op()?;
            s.pending.retain(|(f, _)| *f != id + 1);
            s.files.insert(
                id + 1,
                FileState {
                    live: bytes.clone(),
                    durable: bytes,
                },
            );
        }
        self.open(id)
    }

    fn remove(&self, id: u64) -> io::Result<()> {
        let mut s = self.0.0.lock();
        s.next_op()?;
        s.files.remove(&(id + 1));
        s.pending.retain(|(f, _)| *f != id + 1);
        Ok(())
    }

    fn remove_all(&self) -> io::Result<()> {
        let mut s = self.0.0.lock();
        s.next_op()?;
        s.files.retain(|f, _| *f == REDB);
        s.pending.retain(|(f, _)| *f == REDB);
        Ok(())
    }

    fn path(&self, id: u64) -> std::path::PathBuf {
        format!("<simulated journal segment {id}>").into()
    }

    fn size(&self) -> io::Result<u64> {
        let s = self.0.0.lock();
        Ok(s.files
            .iter()
            .filter(|(f, _)| **f != REDB)
            .map(|(_, f)| f.live.len() as u64)
            .sum())
    }
}

//! Test-only: a simulated disk under redb (a `redb::StorageBackend` in
//! memory) that records every write and sync, and can lose power or fail.
//!
//! The disk keeps two images: what reads see (every write so far) and what
//! survives a power loss for sure (every write covered by a completed sync).
//! The writes in between are pending, in order. Each write, length change and
//! sync is one numbered operation. At an armed cut the power goes: that
//! operation and every later one fails with `EIO`, and [`SimDisk::crash`]
//! gives the bytes a reopen finds, built from the durable image and the
//! pending writes as [`Loss`] says. Single errors (`ENOSPC`, `EIO`) can be
//! injected at chosen operations; a failed operation changes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use redb::{BackendError, StorageBackend};

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

#[derive(Default)]
struct State {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
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

/// A simulated disk. Clones share it: redb holds one, the test another.
#[derive(Clone, Default)]
pub(crate) struct SimDisk(Arc<Mutex<State>>);

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.lock();
        write!(f, "SimDisk({} bytes, {} ops)", s.live.len(), s.ops)
    }
}

impl SimDisk {
    /// A disk holding `image`, all of it durable.
    pub fn with_image(image: Vec<u8>) -> Self {
        SimDisk(Arc::new(Mutex::new(State {
            durable: image.clone(),
            live: image,
            ..State::default()
        })))
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
    pub fn crash(&self, loss: Loss, rand: &mut dyn FnMut(u64) -> u64) -> Vec<u8> {
        let s = self.0.lock();
        let mut image = s.durable.clone();
        let survivors: Vec<&Pending> = match loss {
            Loss::TornLast => s
                .pending
                .iter()
                .rev()
                .find(|p| matches!(p, Pending::Write { .. }))
                .into_iter()
                .collect(),
            Loss::Reordered => s.pending.iter().filter(|_| rand(2) == 0).collect(),
        };
        let torn = match survivors.len() {
            0 => 0,
            n => rand(n as u64) as usize,
        };
        for (i, p) in survivors.into_iter().enumerate() {
            match p {
                Pending::SetLen(len) => image.resize(*len as usize, 0),
                Pending::Write { offset, data } => {
                    let keep = if i == torn {
                        rand(data.len() as u64 + 1) as usize
                    } else {
                        data.len()
                    };
                    write_into(&mut image, *offset, &data[..keep]);
                }
            }
        }
        image
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
        Ok(self.0.lock().live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let s = self.0.lock();
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        match s.live.get(start..start + out.len()) {
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

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut s = self.0.lock();
        s.next_op()?;
        let p = Pending::SetLen(len);
        apply(&mut s.live, &p);
        s.pending.push(p);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let mut s = self.0.lock();
        s.next_op()?;
        let State {
            durable, pending, ..
        } = &mut *s;
        for p in pending.drain(..) {
            apply(durable, &p);
        }
        let op = s.ops - 1;
        s.syncs.push(op);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut s = self.0.lock();
        s.next_op()?;
        let p = Pending::Write {
            offset,
            data: data.to_vec(),
        };
        apply(&mut s.live, &p);
        s.pending.push(p);
        Ok(())
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

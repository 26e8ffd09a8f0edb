//! A full disk the store gets out of by itself: a floor of free space that
//! ordinary writes may not go under, and a ballast file the store owns,
//! released so that writes which free space (`destroy`, the reaper) get
//! through.
//!
//! Before the engine or the journal sees a batch, [`Reserve::admit`] reads
//! the file system's free space (`statvfs`, one system call):
//!
//! - at or above [`FLOOR`]: the batch goes on; if the ballast was released
//!   and there is room for it again (the floor plus [`BALLAST`]), it is
//!   rebuilt first;
//! - under it, a batch that only deletes goes on, after the ballast is
//!   released (deleted) to give the engine room for its deletions;
//! - under it, any other batch is refused with an error that says `No space
//!   left on device`, before anything is written: the engines never meet the
//!   full disk, so their handles keep working, reads go on, and writes
//!   resume by themselves once there is room.
//!
//! The floor covers what the store writes outside a batch: a new journal
//! segment (1 MiB) and a checkpoint. A temporary store keeps no reserve.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// The ballast file in the store's directory.
pub(crate) const FILE: &str = "ballast";
/// The ballast's size: what a full disk gives back to deletions.
pub(crate) const BALLAST: u64 = 4 << 20;
/// The free space under which only deletions are admitted.
pub(crate) const FLOOR: u64 = 2 << 20;

/// The store's reserve of space.
pub(crate) struct Reserve {
    dir: PathBuf,
    ballast: PathBuf,
    /// Whether the ballast is on disk.
    held: AtomicBool,
    /// Set when the ballast is released, cleared by the next checkpoint:
    /// the deletions it was released for reach the engine only then (see
    /// `overlay`), and need its room until they do.
    owed: AtomicBool,
}

impl Reserve {
    /// The reserve of the store in `dir`: its ballast made if missing and
    /// there is room for it (an error making it is logged: the store then
    /// runs without one until there is room).
    pub fn open(dir: &Path) -> Self {
        let ballast = dir.join(FILE);
        let held = fs::metadata(&ballast).is_ok_and(|m| m.len() >= BALLAST);
        let reserve = Reserve {
            dir: dir.to_path_buf(),
            ballast,
            held: AtomicBool::new(held),
            owed: AtomicBool::new(false),
        };
        if !held {
            match reserve.free() {
                Ok(free) if free >= FLOOR + BALLAST => reserve.rebuild(),
                Ok(_) => log::warn!(
                    "sessionstore: too little free space in {} for the store's reserve",
                    dir.display()
                ),
                Err(e) => log::warn!("sessionstore: cannot read the free space: {e}"),
            }
        }
        reserve
    }

    /// Whether a batch may go to the journal and the engine; `frees` says
    /// it only deletes, `pending` is what the next checkpoint will write
    /// (the overlay's bytes): the floor rises by twice that, room for the
    /// engine's copy-on-write pages, so that no checkpoint meets a full
    /// disk. The caller holds the engine lock.
    pub fn admit(&self, frees: bool, pending: u64) -> Result<()> {
        let free = match self.free() {
            Ok(free) => free,
            Err(e) => {
                // Nothing known: the engine's own error will say.
                log::warn!("sessionstore: cannot read the free space: {e}");
                return Ok(());
            }
        };
        let floor = FLOOR.saturating_add(pending.saturating_mul(2));
        if free >= floor {
            if !self.held.load(Ordering::Relaxed)
                && !self.owed.load(Ordering::Acquire)
                && free >= floor + BALLAST
            {
                self.rebuild();
            }
            return Ok(());
        }
        if frees {
            self.release();
            return Ok(());
        }
        Err(Error::storage(
            "admitting a write",
            format!(
                "No space left on device: {free} bytes free on the file system of {}, under \
                 the store's floor of {floor} ({FLOOR}, and room for the next checkpoint); the write was refused before anything was \
                 written. Reads go on; destroy and the reaper get through (the store \
                 releases its {BALLAST}-byte reserve for them); writes resume by themselves \
                 once there is room",
                self.dir.display()
            ),
        ))
    }

    /// Bytes free for this process on the store's file system.
    fn free(&self) -> io::Result<u64> {
        let st = rustix::fs::statvfs(&self.dir)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// A checkpoint finished: the engine holds every deletion the ballast
    /// was released for, so it may be rebuilt when there is room.
    pub fn checkpointed(&self) {
        self.owed.store(false, Ordering::Release);
    }

    fn release(&self) {
        self.owed.store(true, Ordering::Release);
        if self.held.swap(false, Ordering::Relaxed) {
            match fs::remove_file(&self.ballast) {
                Ok(()) => log::warn!(
                    "sessionstore: the disk is full; released the store's reserve for a deletion"
                ),
                Err(e) => log::error!("sessionstore: could not release the reserve: {e}"),
            }
        }
    }

    fn rebuild(&self) {
        let made = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.ballast)
            .and_then(|f: File| {
                rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, BALLAST)?;
                f.sync_all()
            });
        match made {
            Ok(()) => self.held.store(true, Ordering::Relaxed),
            Err(e) => log::warn!("sessionstore: could not make the reserve: {e}"),
        }
    }
}

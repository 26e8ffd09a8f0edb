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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    /// The journal record a checkpoint must cover before the ballast is
    /// made again (0: none): the deletions it was released for reach the
    /// engine only at a checkpoint (see `overlay`), and need its room until
    /// then.
    owed: AtomicU64,
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
            owed: AtomicU64::new(0),
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
    /// disk. `next` is the number the batch's journal record will get. The
    /// caller holds the engine lock.
    pub fn admit(&self, frees: bool, pending: u64, next: &dyn Fn() -> u64) -> Result<()> {
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
                && self.owed.load(Ordering::Acquire) == 0
                && free >= floor + BALLAST
            {
                self.rebuild();
            }
            return Ok(());
        }
        if frees {
            self.release(next());
            return Ok(());
        }
        Err(Error::storage(
            "admitting a write",
            format!(
                "No space left on device: {free} bytes free on the file system of {}, under \
                 the store's floor of {floor} ({FLOOR}, and twice the {pending} bytes the next \
                 checkpoint will write); the write was refused before anything was \
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

    /// A checkpoint made the engine durable through journal record
    /// `covered`: if that holds every deletion the ballast was released
    /// for, the ballast may be made again when there is room.
    pub fn checkpointed(&self, covered: u64) {
        let owed = self.owed.load(Ordering::Acquire);
        if owed != 0 && covered >= owed {
            // A release since the load raised `owed`: then it stays.
            let _ = self
                .owed
                .compare_exchange(owed, 0, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Deletes the ballast for the deletion whose journal record will be
    /// number `next`.
    fn release(&self, next: u64) {
        self.owed.fetch_max(next.max(1), Ordering::AcqRel);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The ballast released for a deletion is made again only once a
    /// checkpoint covers that deletion's journal record, not at the next
    /// checkpoint whatever it covers.
    #[test]
    fn the_ballast_waits_for_the_checkpoint_that_holds_its_deletion() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage("a test", e))?;
        let reserve = Reserve::open(dir.path());
        let ballast = dir.path().join(FILE);
        assert!(ballast.exists(), "made at open on a roomy file system");
        // Room for nothing: twice this much waits for a checkpoint.
        let full = u64::MAX / 4;
        assert!(
            reserve.admit(false, full, &|| 5).is_err(),
            "a put is refused"
        );
        reserve.admit(true, full, &|| 5)?;
        assert!(!ballast.exists(), "released for the deletion numbered 5");
        reserve.admit(false, 0, &|| 6)?;
        assert!(!ballast.exists(), "not made again before a checkpoint");
        reserve.checkpointed(4);
        reserve.admit(false, 0, &|| 6)?;
        assert!(
            !ballast.exists(),
            "a checkpoint through 4 misses the deletion"
        );
        reserve.checkpointed(5);
        reserve.admit(false, 0, &|| 6)?;
        assert!(
            ballast.exists(),
            "made again after the checkpoint through 5"
        );
        Ok(())
    }
}

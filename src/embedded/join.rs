//! Stopping a background thread with a time limit: a thread stuck inside a
//! hung engine must not hang the drop of the last `Store` handle with it.

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

/// A background thread, and a channel that disconnects when it ends.
pub(crate) struct Worker {
    handle: JoinHandle<()>,
    ended: Receiver<()>,
}

impl Worker {
    /// Starts `body` on a thread called `name`.
    pub fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> std::io::Result<Worker> {
        let (alive, ended) = bounded::<()>(0);
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // Dropped when the thread ends, panic or not: that disconnects `ended`.
                let _alive: Sender<()> = alive;
                body();
            })?;
        Ok(Worker { handle, ended })
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits up to `limit` for the thread to end, then joins it. Returns
    /// `false` if it did not end in time: it is left running, detached.
    pub fn join_within(self, limit: Duration) -> bool {
        let name = self.handle.thread().name().unwrap_or("unnamed").to_owned();
        match self.ended.recv_timeout(limit) {
            Err(RecvTimeoutError::Disconnected) => {
                if self.handle.join().is_err() {
                    log::error!("sessionstore: the thread {name:?} panicked");
                }
                true
            }
            Ok(()) | Err(RecvTimeoutError::Timeout) => {
                log::error!(
                    "sessionstore: the thread {name:?} did not stop within {limit:?}, \
                     stuck in the storage engine; leaving it running"
                );
                false
            }
        }
    }
}

//! Deleting expired sessions now, for tower-sessions' `ExpiredDeletion`.

use sessionstore::{Result, SessionStore, Store};

/// A store that can delete its expired sessions on demand. The embedded
/// [`Store`] runs a reaper thread anyway (`Config::reap_interval`), so
/// tower-sessions' `continuously_delete_expired` task is optional with it.
pub trait Reap: SessionStore {
    /// Deletes the sessions past their deadline and returns how many.
    ///
    /// # Errors
    ///
    /// The store's storage errors.
    fn reap(&self) -> Result<usize>;
}

impl Reap for Store {
    /// One reaper pass: [`Store::reap_expired`].
    fn reap(&self) -> Result<usize> {
        self.reap_expired()
    }
}

#[cfg(feature = "redis")]
impl Reap for sessionstore::RedisStore {
    /// Nothing to do: Redis deletes each session's keys itself when their
    /// TTL (the session's deadline) passes. Returns 0.
    fn reap(&self) -> Result<usize> {
        Ok(0)
    }
}

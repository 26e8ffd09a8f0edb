//! Expiry operations on a live session: touch, id rotation, per-session
//! timeouts, reaping on demand, and statistics.

use std::time::Duration;

use crate::clock;
use crate::embedded::commit::Applier;
use crate::embedded::reaper;
use crate::embedded::store::Store;
use crate::embedded::write::WriteSet;
use crate::error::{Error, Result};
use crate::info::{SessionInfo, Stats};
use crate::meta::Meta;
use crate::{keys, validate};

/// How many fresh ids `regenerate` draws before it gives up.
const REGENERATE_ATTEMPTS: usize = 8;

impl Store {
    /// The timestamps and deadline of a live session, or `None` if it is not
    /// live. Never writes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::Decode`] for a corrupt metadata record, and storage errors.
    pub fn info(&self, sid: &str) -> Result<Option<SessionInfo>> {
        validate::sid(sid)?;
        let core = self.core();
        let _guard = core.lock_shared(sid);
        Ok(core
            .live_meta(sid, core.now())?
            .as_ref()
            .map(SessionInfo::from_meta))
    }

    /// Marks the session as used now, moving its idle deadline. Returns
    /// whether it is live. A touch that would move the deadline by less than
    /// `touch_granularity` writes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::Decode`] for a corrupt metadata record, and storage errors.
    pub fn touch(&self, sid: &str) -> Result<bool> {
        validate::sid(sid)?;
        let core = self.core();
        let _guard = core.lock(sid);
        let now = core.now();
        let Some(meta) = core.live_meta(sid, now)? else {
            return Ok(false);
        };
        let new = meta.accessed(now);
        if core.policy().moves_enough(&meta, &new) {
            let mut batch = WriteSet::default();
            batch.put_meta(sid, Some(&meta), &new);
            core.write(batch)?;
        }
        Ok(true)
    }

    /// Moves the live session `sid` to a fresh random id, in one atomic batch:
    /// every component's keys, the metadata and the expiry entry. Returns the
    /// new id. The old id then reads `None`, and saving a `Session` read under
    /// it gives [`Error::NotFound`]. The creation time is kept, so the
    /// absolute timeout is not reset. Do this on login, against session fixation.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::NotFound`] if `sid` is not live (also
    /// when a concurrent `regenerate` of it won), and storage errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use sessionstore::Store;
    ///
    /// let store = Store::temporary()?;
    /// let mut s = store.create()?;
    /// s.set("cart", &vec![1, 2])?;
    /// store.save(&mut s)?;
    /// let new_id = store.regenerate(s.id())?;
    /// assert!(store.get(s.id(), None)?.is_none());
    /// assert_eq!(store.get(&new_id, None)?.unwrap().get::<Vec<i32>>("cart")?, Some(vec![1, 2]));
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    #[must_use = "the session now lives under the returned id; the old one is gone"]
    pub fn regenerate(&self, sid: &str) -> Result<String> {
        validate::sid(sid)?;
        let core = self.core();
        let mut attempts = 0;
        while attempts < REGENERATE_ATTEMPTS {
            let new_sid = core.next_id()?;
            let guard = core.lock_pair(sid, &new_sid);
            let now = core.now();
            let Some(meta) = core.live_meta(sid, now)? else {
                return Err(Error::NotFound { id: sid.to_owned() });
            };
            if !core
                .scan_prefix(&keys::session_prefix(&new_sid))?
                .is_empty()
            {
                attempts += 1;
                continue;
            }
            let entries = core.scan_prefix(&keys::session_prefix(sid))?;
            let principal = keys::principal_of(sid);
            let names = match entries.iter().find(|(key, _)| *key == principal) {
                Some((_, stored)) => core.principal_names(sid, stored)?,
                None => Vec::new(),
            };
            // The move of a principal's entry waits for a `destroy_all_of`
            // or `sessions_of` of that principal: it never slips past one.
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let Some(_shared) = core.try_share_principals(&names) else {
                drop(guard);
                core.wait_principals(&names);
                continue;
            };
            let mut batch = WriteSet::default();
            for name in &names {
                batch.delete(keys::principal_index(name, sid));
                batch.put(keys::principal_index(name, &new_sid), Vec::new());
            }
            let record = keys::meta(sid);
            for (key, value) in entries {
                if key == record {
                    continue;
                }
                if let Some(moved) = keys::rebase(&key, sid, &new_sid) {
                    batch.put(moved, value);
                }
                batch.delete(key);
            }
            batch.delete_meta(sid, Some(&meta));
            let new = meta.accessed(now);
            batch.put_meta(&new_sid, None, &new);
            core.write(batch)?;
            core.events().send(crate::events::Event::Regenerated {
                old: sid.to_owned(),
                new: new_sid.clone(),
            });
            return Ok(new_sid);
        }
        Err(Error::storage(
            "regenerating a session id",
            format!(
                "{REGENERATE_ATTEMPTS} fresh random ids in a row were taken; the id source is broken"
            ),
        ))
    }

    /// Sets the idle timeout of one live session, overriding the store's
    /// default; `None` means it ends only by the absolute timeout or by
    /// `destroy`. The override is stored and survives a reopen.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::InvalidConfig`] naming `set_idle_timeout`
    /// for a timeout under 1 ms, [`Error::NotFound`] if `sid` is not live, and
    /// storage errors.
    pub fn set_idle_timeout(&self, sid: &str, timeout: Option<Duration>) -> Result<()> {
        validate::sid(sid)?;
        if let Some(d) = timeout {
            crate::limits::check_timeout("set_idle_timeout", d)?;
        }
        let core = self.core();
        let _guard = core.lock(sid);
        let Some(meta) = core.live_meta(sid, core.now())? else {
            return Err(Error::NotFound { id: sid.to_owned() });
        };
        let new = Meta {
            idle: timeout.map(clock::duration_micros),
            ..meta
        };
        let mut batch = WriteSet::default();
        batch.put_meta(sid, Some(&meta), &new);
        core.write(batch)
    }

    /// Runs one reaper pass now and returns how many expired sessions it deleted.
    /// Its cost is proportional to what expired, not to what lives.
    ///
    /// # Errors
    ///
    /// Storage errors. A corrupt metadata record is skipped and logged, not an error.
    pub fn reap_expired(&self) -> Result<usize> {
        reaper::reap_once(self.core(), &|| false, Applier::CallerIfFree, &mut |_| {})
    }

    /// Live sessions, sessions reaped since open, bytes on disk.
    /// Counting live sessions reads the live part of the expiry index.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn stats(&self) -> Result<Stats> {
        let core = self.core();
        let mut live = 0u64;
        for id in self.session_ids() {
            id?;
            live += 1;
        }
        Ok(Stats {
            live_sessions: live,
            reaped_since_open: core.reaped(),
            failed_reap_passes: core.failed_reaps(),
            bytes_on_disk: core.size_on_disk()?,
            writes_since_open: core.writes(),
            flushes_since_open: core.flushes(),
            engine: Some(core.engine()),
        })
    }
}

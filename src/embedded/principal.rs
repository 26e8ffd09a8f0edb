//! Principals: the user (name or id) a session belongs to, and the index
//! from a principal to its sessions, so that "log out of all devices" costs
//! what that user has, never a scan of every session.
//!
//! A session's principal is the record `{sid}/` + NUL (see `keys`), under the
//! session's prefix: every deletion of the session (`Core::delete_session`:
//! destroy, the reaper, a create or import over an expired one) and every
//! move (`regenerate`) takes it along, and removes or moves the index entry
//! `@{name}` + NUL + `{sid}` in the same atomic batch. So no entry outlives
//! its session.

use crate::embedded::store::Store;
use crate::embedded::write::WriteSet;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::keys::{self, Parsed};
use crate::validate;

/// How many sessions `destroy_all_of` deletes in one batch.
pub(crate) const DESTROY_CHUNK: usize = 256;

impl Store {
    /// Sets the principal (a user name or id) that the live session `sid`
    /// belongs to, or clears it with `None`. The session's record and the
    /// principal's index change in one atomic batch. Setting the principal
    /// it already has writes nothing. A change counts as a use of the
    /// session, as a touch does: its last access moves to now, and always
    /// forward, by at least 1 µs (so that on Redis every copy of the session
    /// read before the change reads the new principal before its next save).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::InvalidKey`] for a name that breaks the
    /// key rules (1–1024 bytes of UTF-8, no control characters), and
    /// [`Error::NotFound`] if `sid` is not live; nothing is written then.
    /// And storage errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use sessionstore::Store;
    ///
    /// let store = Store::temporary()?;
    /// let laptop = store.create()?;
    /// let phone = store.create()?;
    /// store.set_principal(laptop.id(), Some("ada"))?;
    /// store.set_principal(phone.id(), Some("ada"))?;
    /// assert_eq!(store.sessions_of("ada")?.len(), 2);
    /// assert_eq!(store.principal(phone.id())?.as_deref(), Some("ada"));
    ///
    /// // "Log out of all devices".
    /// assert_eq!(store.destroy_all_of("ada")?, 2);
    /// assert!(store.get(laptop.id(), None)?.is_none());
    /// assert!(store.sessions_of("ada")?.is_empty());
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn set_principal(&self, sid: &str, name: Option<&str>) -> Result<()> {
        validate::sid(sid)?;
        if let Some(n) = name {
            validate::key(n)?;
        }
        let core = self.core();
        loop {
            let guard = core.lock(sid);
            let now = core.now();
            let Some(meta) = core.live_meta(sid, now)? else {
                return Err(Error::NotFound { id: sid.to_owned() });
            };
            let record = keys::principal_of(sid);
            let current = core.get(&record)?;
            if current.as_deref() == name.map(str::as_bytes) {
                return Ok(());
            }
            let mut names = match &current {
                Some(old) => core.principal_names(sid, old)?,
                None => Vec::new(),
            };
            names.extend(name.map(str::to_owned));
            // A change of a principal's entries waits for a `destroy_all_of`
            // or `sessions_of` of that principal.
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let Some(_shared) = core.try_share_principals(&names) else {
                drop(guard);
                core.wait_principals(&names);
                continue;
            };
            let mut set = WriteSet::default();
            // A change of principal is a use of the session (as on Redis, where
            // it must rewrite the metadata record).
            set.put_meta(sid, Some(&meta), &meta.used(now));
            if let Some(old) = &current {
                core.unindex(&mut set, sid, old)?;
            }
            match name {
                Some(n) => {
                    set.put(record, n.as_bytes().to_vec());
                    set.put(keys::principal_index(n, sid), Vec::new());
                }
                None => set.delete(record),
            }
            return core.write(set);
        }
    }

    /// The principal of the live session `sid`; `None` if it has none or
    /// is not live. Never writes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::Decode`] for a corrupt record, and storage errors.
    pub fn principal(&self, sid: &str) -> Result<Option<String>> {
        validate::sid(sid)?;
        let core = self.core();
        let _guard = core.lock_shared(sid);
        if core.live_meta(sid, core.now())?.is_none() {
            return Ok(None);
        }
        core.get(&keys::principal_of(sid))?
            .map(|bytes| keys::stored_principal(sid, &bytes))
            .transpose()
    }

    /// The live sessions of principal `name`, in id order. Reads that
    /// principal's index entries, their sessions' principal records and
    /// metadata: the cost is what the principal has, never a scan of every
    /// session. It holds the principal's index for its whole run, so no
    /// `regenerate`, `set_principal` or import moves one of its sessions
    /// out of sight meanwhile: it never misses a live session. A session
    /// whose deadline passed is left out (the reaper removes its entry with
    /// it); one whose metadata is corrupt is logged and left out; an entry
    /// whose session's principal record does not name `name` is stale and
    /// left out (one whose record is unreadable is listed: see
    /// [`destroy_all_of`](Self::destroy_all_of)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for a bad name, and storage errors.
    pub fn sessions_of(&self, name: &str) -> Result<Vec<String>> {
        validate::key(name)?;
        let core = self.core();
        let _index = core.lock_principal(name);
        let mut live = Vec::new();
        for (_, sid) in self.indexed(name)? {
            let Some(sid) = sid else { continue };
            let _guard = core.lock_shared(&sid);
            match core.live_meta(&sid, core.now()) {
                Ok(Some(_)) if core.belongs(&sid, name)? => live.push(sid),
                Ok(_) => {}
                Err(Error::Decode { .. }) => {
                    log::warn!(
                        "sessionstore: sessions_of({name:?}) skips {sid:?}: corrupt metadata"
                    )
                }
                Err(e) => return Err(e),
            }
        }
        Ok(live)
    }

    /// Destroys every session of principal `name` ("log out of all
    /// devices") and returns how many of them were live. The sessions are
    /// deleted 256 at a time, each chunk in one atomic batch
    /// under the locks of all its sessions, at the store's durability (one
    /// flush per chunk, not per session); each session sends its own event
    /// (`Destroyed`, or `Expired` for one past its deadline) after its
    /// chunk's write. The cost is what the principal has.
    ///
    /// It is complete: `Ok` means that no session that was the principal's
    /// when the call began is live. It holds the principal's index for its
    /// whole run, so a `regenerate`, `set_principal` or import that would
    /// add or move one of its entries waits until it returns (a regenerate
    /// then finds its session gone). A session indexed under `name` whose
    /// principal record is unreadable (damage) is destroyed too, and
    /// counted; an index entry whose session's record names no principal or
    /// another one is stale, and is removed by its key, leaving that
    /// session alone. Nothing is skipped silently: whatever it cannot
    /// destroy is an error.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for a bad name, and storage errors: the chunks
    /// written before stay destroyed; call it again.
    pub fn destroy_all_of(&self, name: &str) -> Result<usize> {
        validate::key(name)?;
        let core = self.core();
        let _index = core.lock_principal(name);
        let mut destroyed = 0;
        let entries = self.indexed(name)?;
        for chunk in entries.chunks(DESTROY_CHUNK) {
            let _guards = core.lock_many(chunk.iter().filter_map(|(_, sid)| sid.as_deref()));
            let now = core.now();
            let mut set = WriteSet::default();
            let mut events = Vec::with_capacity(chunk.len());
            for (key, sid) in chunk {
                let Some(sid) = sid else {
                    // Not an entry any session could have: removed by its key.
                    set.delete(key.clone());
                    continue;
                };
                if !core.belongs(sid, name)? {
                    log::warn!(
                        "sessionstore: destroy_all_of({name:?}) removes a stale index entry of {sid:?}"
                    );
                    set.delete(key.clone());
                    continue;
                }
                let live = match core.read_meta(sid) {
                    Ok(meta) => {
                        core.delete_session(&mut set, sid, meta.as_ref())?;
                        meta.is_some_and(|m| m.is_live(now))
                    }
                    Err(Error::Decode { .. }) => {
                        core.delete_session(&mut set, sid, None)?;
                        core.delete_index_entries_of(&mut set, sid)?;
                        true
                    }
                    Err(e) => return Err(e),
                };
                // Whatever the record held, this entry goes by its key.
                set.delete(key.clone());
                destroyed += usize::from(live);
                let sid = sid.clone();
                events.push(if live {
                    Event::Destroyed { sid }
                } else {
                    Event::Expired { sid }
                });
            }
            if set.is_empty() {
                continue;
            }
            core.write(set)?;
            for event in events {
                core.events().send(event);
            }
        }
        Ok(destroyed)
    }

    /// The entries of principal `name`'s index, in key order: each key with
    /// its session id, or `None` for a key that does not parse as an entry.
    fn indexed(&self, name: &str) -> Result<Vec<(Vec<u8>, Option<String>)>> {
        let entries = self.core().scan_prefix(&keys::principal_prefix(name))?;
        Ok(entries
            .into_iter()
            .map(|(key, _)| {
                let sid = match keys::parse(&key) {
                    Parsed::PrincipalIndex { sid, .. } => Some(sid.to_owned()),
                    _ => {
                        log::warn!("sessionstore: an undecodable principal index key {key:?}");
                        None
                    }
                };
                (key, sid)
            })
            .collect())
    }
}

//! Saving a session's scope: plain `save`, which merges per key, and
//! `save_if_unchanged`, which refuses to write over a scope written since
//! the session was read. Every save that changes a scope writes a new
//! version of it in the same batch.

use crate::codec;
use crate::embedded::store::Store;
use crate::embedded::write::WriteSet;
use crate::error::{Error, Result};
use crate::keys;
use crate::session::Session;

impl Store {
    /// See [`SessionStore::save`](crate::SessionStore::save).
    ///
    /// # Errors
    ///
    /// As [`SessionStore::save`](crate::SessionStore::save).
    pub fn save(&self, session: &mut Session) -> Result<()> {
        self.save_scope(session, false)
    }

    /// See [`SessionStore::save_if_unchanged`](crate::SessionStore::save_if_unchanged).
    ///
    /// # Errors
    ///
    /// As [`SessionStore::save_if_unchanged`](crate::SessionStore::save_if_unchanged).
    pub fn save_if_unchanged(&self, session: &mut Session) -> Result<()> {
        self.save_scope(session, true)
    }

    /// Reads the scope `component` of `sid`, runs `change` on it, and saves
    /// it with [`save_if_unchanged`](Store::save_if_unchanged). If another
    /// writer changed the scope in between, it reads again and runs `change`
    /// again, up to [`Config::update_attempts`](crate::Config::update_attempts)
    /// times in all. So `change` may run more than once: it should only
    /// change the session, not act on the world.
    ///
    /// Returns what the last run of `change` returned, or `None` if the
    /// session is not live (also when it ends between the read and the save).
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] after the last attempt, any error `change`
    /// returns (nothing is written then), and as [`Store::get`] and
    /// [`Store::save`].
    ///
    /// # Examples
    ///
    /// ```
    /// use sessionstore::Store;
    ///
    /// let store = Store::temporary()?;
    /// let s = store.create()?;
    /// let visits = store.update(s.id(), None, |s| {
    ///     let n = s.get::<u32>("visits")?.unwrap_or(0) + 1;
    ///     s.set("visits", &n)?;
    ///     Ok(n)
    /// })?;
    /// assert_eq!(visits, Some(1));
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn update<T>(
        &self,
        sid: &str,
        component: Option<&str>,
        change: impl FnMut(&mut Session) -> Result<T>,
    ) -> Result<Option<T>> {
        crate::update::update(self, self.core().update_attempts(), sid, component, change)
    }

    /// Writes the dirty keys of `session`'s scope and its last access; with
    /// `check`, only if the scope's version is still the one it was read at.
    fn save_scope(&self, session: &mut Session, check: bool) -> Result<()> {
        let core = self.core();
        let sid = session.id();
        let component = session.component();
        let _guard = core.lock(sid);
        let now = core.now();
        let meta = match core.live_meta(sid, now)? {
            Some(m) if m.incarnation == session.incarnation() => m,
            _ => return Err(Error::NotFound { id: sid.to_owned() }),
        };
        session.check_sizes(core.max_value_size())?;
        if check && core.read_version(sid, component)? != session.version() {
            return Err(Error::Conflict {
                sid: sid.to_owned(),
                component: component.map(str::to_owned),
            });
        }
        let mut batch = WriteSet::default();
        if session.cleared() {
            let prefix = keys::scope_prefix(sid, component);
            for (key, _) in core.scan_prefix(&prefix)? {
                let keep = keys::key_in_scope(&key, &prefix).is_some_and(|k| session.was_set(k));
                if !keep {
                    batch.delete(key);
                }
            }
        }
        for (key, value) in session.changes() {
            let k = keys::data(sid, component, key);
            match value {
                Some(v) => batch.put(k, v.to_vec()),
                None => batch.delete(k),
            }
        }
        let writes_scope = !batch.is_empty() || session.cleared();
        let new = meta.accessed(now);
        if !writes_scope && !core.policy().moves_enough(&meta, &new) {
            return Ok(());
        }
        // The session takes the version it writes only if it held the
        // current one: a plain save of a copy read before another write
        // keeps its old version, so a later `save_if_unchanged` of it still
        // conflicts. (A checked save has just compared them.)
        let version = if writes_scope {
            let fresh = check || core.read_version(sid, component)? == session.version();
            let v = core.next_version();
            batch.put(keys::version(sid, component), codec::encode_version(v));
            if fresh { v } else { session.version() }
        } else {
            session.version()
        };
        batch.put_meta(sid, Some(&meta), &new);
        core.write(batch)?;
        session.saved_at(version);
        Ok(())
    }
}

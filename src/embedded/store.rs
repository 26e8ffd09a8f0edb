//! The store handle and RAIN's `BaseSessionStore` contract.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::embedded::config::Config;
use crate::embedded::core::{Core, Parts};
use crate::embedded::reaper::Reaper;
use crate::embedded::write::WriteSet;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::info::SessionInfo;
use crate::session::Session;
use crate::session_store::SessionStore;
use crate::snapshot::Snapshot;
use crate::{codec, keys, validate};

/// How many fresh ids `create` draws before it gives up.
const CREATE_ATTEMPTS: usize = 8;

/// An embedded, persistent session store. Cheap to clone: clones share one
/// database. The last handle to drop stops the background threads, flushes
/// and closes the database.
///
/// # Examples
///
/// ```
/// use sessionstore::Store;
///
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("db");
/// let store = Store::open(&path)?;
/// let mut cart = store.create_new_session("visitor-1")?;
/// cart.set("theme", "dark")?;
/// store.save(&mut cart)?;
/// drop(store);
///
/// let store = Store::open(&path)?;
/// let global = store.get("visitor-1", None)?.expect("still there");
/// assert_eq!(global.get::<String>("theme")?.as_deref(), Some("dark"));
/// assert!(store.destroy("visitor-1")?);
/// # Ok::<(), sessionstore::Error>(())
/// ```
#[derive(Clone)]
pub struct Store {
    pub(crate) shared: Arc<Shared>,
}

/// What the handles share. Dropping it stops the control socket's server
/// first, then the reaper, then the core.
pub(crate) struct Shared {
    /// The control socket's server, attached after open (`launch.rs`);
    /// dropping it stops and joins its threads.
    control: OnceLock<Box<dyn Send + Sync>>,
    reaper: Option<Reaper>,
    pub(crate) core: Arc<Core>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        drop(self.control.take());
        drop(self.reaper.take());
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.core().path())
            .field("engine", &self.core().engine())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in directory `path` with the default configuration:
    /// the same as `Config::new(path).open()`.
    ///
    /// # Errors
    ///
    /// As [`Config::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Config::new(path).open()
    }

    /// A throwaway store in a new temporary directory, deleted when the last handle drops.
    ///
    /// # Errors
    ///
    /// As [`Config::open`].
    pub fn temporary() -> Result<Store> {
        Config::temporary().open()
    }

    pub(crate) fn from_config(config: Config) -> Result<Store> {
        Self::from_parts(config, Parts::default())
    }

    /// Opens a store on substitute parts: tests inside the crate use it.
    pub(crate) fn from_parts(config: Config, parts: Parts) -> Result<Store> {
        let core = Arc::new(Core::open(&config, parts)?);
        let reaper = match config.reap_interval {
            Some(interval) => Some(Reaper::spawn(core.clone(), interval)?),
            _ => None,
        };
        Ok(Store {
            shared: Arc::new(Shared {
                control: OnceLock::new(),
                reaper,
                core,
            }),
        })
    }

    /// Another handle on this store's core alone: no reaper, no control
    /// socket, so that dropping it stops nothing. The control socket's
    /// threads hold one, never a handle of the application's.
    pub(crate) fn core_handle(&self) -> Store {
        Store {
            shared: Arc::new(Shared {
                control: OnceLock::new(),
                reaper: None,
                core: self.shared.core.clone(),
            }),
        }
    }

    /// Keeps `guard` until the last handle drops; dropped before the reaper stops.
    pub(crate) fn attach(&self, guard: Box<dyn Send + Sync>) {
        if let Err(guard) = self.shared.control.set(guard) {
            // Attached once per store, at open: a second is stopped at once.
            drop(guard);
        }
    }

    pub(crate) fn core(&self) -> &Core {
        &self.shared.core
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        self.core().path()
    }

    /// The largest encoded value this store accepts, in bytes (`Config::max_value_size`).
    pub fn max_value_size(&self) -> usize {
        self.core().max_value_size()
    }

    /// Creates a session under a fresh id drawn from the OS CSPRNG (128 bits,
    /// URL-safe base64) and returns its global scope. A collision with a live
    /// id is retried, never overwritten.
    ///
    /// # Errors
    ///
    /// Storage errors, and an error if the OS random source fails.
    pub fn create(&self) -> Result<Session> {
        for _ in 0..CREATE_ATTEMPTS {
            let sid = self.core().next_id()?;
            match self.create_new_session(&sid) {
                Err(Error::AlreadyExists { .. }) => continue,
                other => return other,
            }
        }
        Err(Error::storage(
            "creating a session",
            format!(
                "{CREATE_ATTEMPTS} fresh random ids in a row were taken; the id source is broken"
            ),
        ))
    }

    /// Makes every acknowledged write durable now.
    ///
    /// # Errors
    ///
    /// Storage errors, and [`Error::Stalled`].
    pub fn flush(&self) -> Result<()> {
        self.core().flush()
    }

    /// See [`SessionStore::subscribe`]. A read-only store writes nothing,
    /// so its subscribers receive nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use sessionstore::{Event, Store};
    ///
    /// let store = Store::temporary()?;
    /// let events = store.subscribe();
    /// let old = store.create()?;
    /// let new = store.regenerate(old.id())?;
    /// // A dispatcher thread hands events out: wait for the two.
    /// let got: Vec<Event> = events.iter().take(2).collect();
    /// assert_eq!(got, [
    ///     Event::Created { sid: old.id().to_owned() },
    ///     Event::Regenerated { old: old.id().to_owned(), new },
    /// ]);
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn subscribe(&self) -> Receiver<Event> {
        self.core().events().subscribe()
    }

    /// See [`SessionStore::create_new_session`].
    ///
    /// # Errors
    ///
    /// As [`SessionStore::create_new_session`].
    pub fn create_new_session(&self, sid: &str) -> Result<Session> {
        validate::sid(sid)?;
        let core = self.core();
        let _guard = core.lock(sid);
        let now = core.now();
        let old = core.read_meta(sid)?;
        let mut batch = WriteSet::default();
        if let Some(old) = &old {
            if old.is_live(now) {
                return Err(Error::AlreadyExists { id: sid.to_owned() });
            }
            // An expired session nobody reaped yet: the new one starts empty.
            core.delete_session(&mut batch, sid, Some(old))?;
        }
        let meta = core.policy().new_meta(now)?;
        batch.put_meta(sid, None, &meta);
        core.write(batch)?;
        if old.is_some() {
            core.events().send(Event::Expired {
                sid: sid.to_owned(),
            });
        }
        core.events().send(Event::Created {
            sid: sid.to_owned(),
        });
        Ok(Session::new(
            sid.to_owned(),
            None,
            meta.incarnation,
            core.max_value_size(),
            Snapshot::default(),
        ))
    }

    /// See [`SessionStore::get`].
    ///
    /// # Errors
    ///
    /// As [`SessionStore::get`].
    pub fn get(&self, sid: &str, component: Option<&str>) -> Result<Option<Session>> {
        validate::sid(sid)?;
        validate::scope(component)?;
        let core = self.core();
        let _guard = core.lock_shared(sid);
        let Some(meta) = core.live_meta(sid, core.now())? else {
            return Ok(None);
        };
        let prefix = keys::scope_prefix(sid, component);
        let mut values = Snapshot::default();
        let mut version = 0;
        core.visit_prefix(&prefix, &mut |key, value| {
            if key == prefix.as_slice() {
                // The scope's version record (see keys::version).
                version = codec::decode_version(value).unwrap_or_else(|| {
                    log::warn!("sessionstore: an unreadable scope version under {sid:?}");
                    0
                });
                return;
            }
            match keys::key_in_scope(key, &prefix) {
                Some(name) => values.push(name, value),
                None => {
                    log::warn!("sessionstore: skipping an undecodable key under {sid:?}: {key:?}")
                }
            }
        })?;
        Ok(Some(
            Session::new(
                sid.to_owned(),
                component.map(str::to_owned),
                meta.incarnation,
                core.max_value_size(),
                values,
            )
            .with_version(version),
        ))
    }

    /// See [`SessionStore::destroy`].
    ///
    /// # Errors
    ///
    /// As [`SessionStore::destroy`].
    pub fn destroy(&self, sid: &str) -> Result<bool> {
        validate::sid(sid)?;
        let core = self.core();
        let _guard = core.lock(sid);
        let now = core.now();
        let mut batch = WriteSet::default();
        // Whether a session was there, and whether it was live.
        let (there, existed) = match core.read_meta(sid) {
            Ok(meta) => {
                core.delete_session(&mut batch, sid, meta.as_ref())?;
                (meta.is_some(), meta.is_some_and(|m| m.is_live(now)))
            }
            Err(Error::Decode { .. }) => {
                core.delete_session(&mut batch, sid, None)?;
                core.delete_index_entries_of(&mut batch, sid)?;
                (true, true)
            }
            Err(e) => return Err(e),
        };
        if !batch.is_empty() {
            core.write(batch)?;
        }
        if there {
            let sid = sid.to_owned();
            core.events().send(if existed {
                Event::Destroyed { sid }
            } else {
                Event::Expired { sid }
            });
        }
        Ok(existed)
    }
}

impl SessionStore for Store {
    fn create_new_session(&self, sid: &str) -> Result<Session> {
        Store::create_new_session(self, sid)
    }

    fn get(&self, sid: &str, component: Option<&str>) -> Result<Option<Session>> {
        Store::get(self, sid, component)
    }

    fn save(&self, session: &mut Session) -> Result<()> {
        Store::save(self, session)
    }

    fn save_if_unchanged(&self, session: &mut Session) -> Result<()> {
        Store::save_if_unchanged(self, session)
    }

    fn update_with(
        &self,
        sid: &str,
        component: Option<&str>,
        change: &mut dyn FnMut(&mut Session) -> Result<()>,
    ) -> Result<bool> {
        Ok(Store::update(self, sid, component, change)?.is_some())
    }

    fn destroy(&self, sid: &str) -> Result<bool> {
        Store::destroy(self, sid)
    }

    fn create(&self) -> Result<Session> {
        Store::create(self)
    }

    fn touch(&self, sid: &str) -> Result<bool> {
        Store::touch(self, sid)
    }

    fn regenerate(&self, sid: &str) -> Result<String> {
        Store::regenerate(self, sid)
    }

    fn set_idle_timeout(&self, sid: &str, timeout: Option<Duration>) -> Result<()> {
        Store::set_idle_timeout(self, sid, timeout)
    }

    fn info(&self, sid: &str) -> Result<Option<SessionInfo>> {
        Store::info(self, sid)
    }

    fn subscribe(&self) -> Receiver<Event> {
        Store::subscribe(self)
    }

    fn set_principal(&self, sid: &str, name: Option<&str>) -> Result<()> {
        Store::set_principal(self, sid, name)
    }

    fn principal(&self, sid: &str) -> Result<Option<String>> {
        Store::principal(self, sid)
    }

    fn sessions_of(&self, name: &str) -> Result<Vec<String>> {
        Store::sessions_of(self, name)
    }

    fn destroy_all_of(&self, name: &str) -> Result<usize> {
        Store::destroy_all_of(self, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    /// `a` expired and the pass chose it, but before the pass locked it `a`
    /// was created again: the pass must leave the new `a` alone and send no
    /// `Expired` for it. The old `a`'s `Expired` comes from the creation that
    /// replaced it, before the new one's `Created`.
    #[test]
    fn a_session_created_again_between_scan_and_lock_gets_no_expired() -> Result<()> {
        let clock = ManualClock::default();
        let store = Config::temporary()
            .clock(Arc::new(clock.clone()))
            .reap_interval(None)
            .idle_timeout(Duration::from_secs(600))
            .open()?;
        store.create_new_session("a")?;
        clock.advance(Duration::from_secs(1));
        store.create_new_session("b")?;
        clock.advance(Duration::from_secs(600));
        let rx = store.subscribe();
        let hook_store = store.clone();
        crate::embedded::reaper::hook::set(Some(Box::new(move |sid| {
            if sid == "b" {
                hook_store.create_new_session("a").unwrap();
            }
        })));
        let reaped = store.reap_expired();
        crate::embedded::reaper::hook::set(None);
        assert_eq!(reaped?, 1, "only b");
        assert!(store.get("a", None)?.is_some(), "the new a lives");
        store.core().events().settle();
        let got: Vec<Event> = rx.try_iter().collect();
        assert_eq!(
            got,
            [
                Event::Expired { sid: "a".into() },
                Event::Created { sid: "a".into() },
                Event::Expired { sid: "b".into() }
            ]
        );
        Ok(())
    }

    #[test]
    fn session_store_is_object_safe_and_store_delegates() -> Result<()> {
        let store = Store::temporary()?;
        let dyn_store: &dyn SessionStore = &store;
        let mut s = dyn_store.create()?;
        s.set("k", &1u8)?;
        dyn_store.save(&mut s)?;
        assert!(dyn_store.touch(s.id())?);
        dyn_store.set_idle_timeout(s.id(), None)?;
        let info = dyn_store.info(s.id())?.expect("live");
        assert_eq!(info.idle_timeout, None);
        let new_id = dyn_store.regenerate(s.id())?;
        assert!(dyn_store.get(s.id(), None)?.is_none());
        let moved = dyn_store.get(&new_id, None)?.expect("moved");
        assert_eq!(moved.get::<u8>("k")?, Some(1));
        assert!(dyn_store.destroy(&new_id)?);
        assert!(dyn_store.info(&new_id)?.is_none());
        Ok(())
    }
}

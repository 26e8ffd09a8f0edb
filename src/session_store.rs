//! The trait every store implements: RAIN's `BaseSessionStore` and what the
//! store adds to it.

use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::error::Result;
use crate::events::Event;
use crate::info::SessionInfo;
use crate::session::Session;

/// The whole per-session API: RAIN's `BaseSessionStore` (create, read, save
/// and destroy sessions) plus fresh ids, touch, id rotation, per-session
/// timeouts and session info.
///
/// [`Store`](crate::Store) implements it, and so does `RedisStore` (cargo feature `redis`).
/// Write code against this trait, generic or as `&dyn SessionStore` (the trait
/// is object-safe), to keep it independent of the store behind it.
///
/// # Examples
///
/// ```
/// use sessionstore::{SessionStore, Store};
///
/// fn visit(store: &dyn SessionStore, sid: &str) -> sessionstore::Result<u32> {
///     let mut s = store.get(sid, None)?.ok_or_else(|| sessionstore::Error::NotFound {
///         id: sid.to_owned(),
///     })?;
///     let n = s.get::<u32>("visits")?.unwrap_or(0) + 1;
///     s.set("visits", &n)?;
///     store.save(&mut s)?;
///     Ok(n)
/// }
///
/// let store = Store::temporary()?;
/// let s = SessionStore::create(&store)?;
/// assert_eq!(visit(&store, s.id())?, 1);
/// assert_eq!(visit(&store, s.id())?, 2);
/// # Ok::<(), sessionstore::Error>(())
/// ```
pub trait SessionStore {
    /// Creates an empty, live session under `sid` and returns its global scope.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`](crate::Error::InvalidId) for a bad id, [`Error::AlreadyExists`](crate::Error::AlreadyExists) if `sid` is
    /// live (nothing is overwritten), and storage errors.
    fn create_new_session(&self, sid: &str) -> Result<Session>;

    /// The global scope of `sid` (`component` `None`) or one component's scope.
    /// A live session's component with no keys yet is an empty scope.
    /// An unknown or expired `sid` gives `Ok(None)`. Never writes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`](crate::Error::InvalidId), [`Error::InvalidComponent`](crate::Error::InvalidComponent), [`Error::Decode`](crate::Error::Decode)
    /// for a corrupt metadata record, and storage errors.
    fn get(&self, sid: &str, component: Option<&str>) -> Result<Option<Session>>;

    /// Writes the dirty keys of `session`'s scope, sets and deletions, and
    /// its last-access time, in one atomic batch. Keys that are not dirty are
    /// not written. On success the session is clean; on failure it stays dirty.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) if the session was destroyed, expired or
    /// regenerated since it was read, [`Error::ValueTooLarge`](crate::Error::ValueTooLarge) if a dirty
    /// value is over this store's `max_value_size` (a session made by a store
    /// with a larger limit); nothing is written then. And storage errors.
    fn save(&self, session: &mut Session) -> Result<()>;

    /// Saves like [`save`](SessionStore::save), but only if the session's
    /// scope was not written since `session` was read (or last saved): each
    /// scope carries a version that every write of it changes, in the same
    /// atomic step. Scopes are independent: a save to `cart` never conflicts
    /// with one to `prefs`. Plain `save` keeps merging per key.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`](crate::Error::Conflict) if the scope was written meanwhile: nothing is
    /// written and the session stays dirty; read it again and redo the
    /// change, or use `update`, which does. Otherwise as [`save`](SessionStore::save).
    fn save_if_unchanged(&self, session: &mut Session) -> Result<()>;

    /// `update` for code written against the trait (`&dyn SessionStore`):
    /// reads the scope, runs `change`, saves with
    /// [`save_if_unchanged`](SessionStore::save_if_unchanged), and on a
    /// conflict reads and runs `change` again, up to the store's
    /// `update_attempts`. `change` may run more than once. Returns whether
    /// the session was live. [`Store::update`](crate::Store::update) is the same, generic over
    /// what `change` returns.
    ///
    /// # Errors
    ///
    /// As [`Store::update`](crate::Store::update).
    fn update_with(
        &self,
        sid: &str,
        component: Option<&str>,
        change: &mut dyn FnMut(&mut Session) -> Result<()>,
    ) -> Result<bool>;

    /// Deletes the session: every scope's keys and its metadata. Returns
    /// whether a live session was there.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`](crate::Error::InvalidId), and storage errors.
    fn destroy(&self, sid: &str) -> Result<bool>;

    /// Creates a session under a fresh id drawn from the OS CSPRNG (128 bits,
    /// URL-safe base64) and returns its global scope. A collision with a live
    /// id is retried, never overwritten.
    ///
    /// # Errors
    ///
    /// Storage errors, and an error if the OS random source fails.
    fn create(&self) -> Result<Session>;

    /// Marks the session as used now, moving its idle deadline. Returns
    /// whether it is live. A touch that would move the deadline by less than
    /// the touch granularity writes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`](crate::Error::InvalidId), [`Error::Decode`](crate::Error::Decode) for a corrupt metadata record, and storage errors.
    fn touch(&self, sid: &str) -> Result<bool>;

    /// Moves the live session `sid` to a fresh random id: every component's
    /// keys and the metadata. Returns the new id. The old id then reads
    /// `None`, and saving a `Session` read under it gives [`Error::NotFound`](crate::Error::NotFound).
    /// The creation time is kept, so the absolute timeout is not reset.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`](crate::Error::InvalidId), [`Error::NotFound`](crate::Error::NotFound) if `sid` is not live (also
    /// when a concurrent `regenerate` of it won), and storage errors.
    #[must_use = "the session now lives under the returned id; the old one is gone"]
    fn regenerate(&self, sid: &str) -> Result<String>;

    /// Sets the idle timeout of one live session, overriding the store's
    /// default; `None` means it ends only by the absolute timeout or by `destroy`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`](crate::Error::InvalidId), [`Error::NotFound`](crate::Error::NotFound) if `sid` is not live, and storage errors.
    fn set_idle_timeout(&self, sid: &str, timeout: Option<Duration>) -> Result<()>;

    /// The timestamps and deadline of a live session, or `None` if it is not
    /// live. Never writes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`](crate::Error::InvalidId), [`Error::Decode`](crate::Error::Decode) for a corrupt metadata record, and storage errors.
    fn info(&self, sid: &str) -> Result<Option<SessionInfo>>;

    /// A new subscriber to this store's lifecycle events ([`Event`]). Any
    /// number may subscribe; each gets every event sent after it subscribed,
    /// in commit order for any one session, through a channel of
    /// `event_capacity` events. An event is sent only once its write is
    /// acknowledged at the store's durability; a dispatcher thread hands it
    /// out, so it arrives just after the call returns (read with `recv` or
    /// `recv_timeout`). A writer only queues: subscribers, read or not, do
    /// not add to its cost. What does not fit a channel is dropped, counted,
    /// and reported by an [`Event::Lagged`] before its next event. Dropping
    /// the receiver unsubscribes.
    fn subscribe(&self) -> Receiver<Event>;

    /// Sets the principal (a user name or id) the live session `sid`
    /// belongs to, or clears it with `None`: see [`Store::set_principal`](crate::Store::set_principal).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`](crate::Error::InvalidId), [`Error::InvalidKey`](crate::Error::InvalidKey) for a bad name,
    /// [`Error::NotFound`](crate::Error::NotFound) if `sid` is not live, and storage errors.
    fn set_principal(&self, sid: &str, name: Option<&str>) -> Result<()>;

    /// The principal of the live session `sid`; `None` if none or not live.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`](crate::Error::InvalidId), [`Error::Decode`](crate::Error::Decode), and storage errors.
    fn principal(&self, sid: &str) -> Result<Option<String>>;

    /// The live sessions of principal `name`, in id order. Costs what that
    /// principal has, never a scan of every session.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) for a bad name, and storage errors.
    fn sessions_of(&self, name: &str) -> Result<Vec<String>>;

    /// Destroys every session of principal `name` and returns how many were
    /// live, each with its own `Destroyed` event: "log out of all devices".
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) for a bad name, and storage errors (some
    /// sessions may be destroyed then; call it again).
    fn destroy_all_of(&self, name: &str) -> Result<usize>;
}

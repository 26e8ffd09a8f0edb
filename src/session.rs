//! A detached copy of one scope of one session, with dirty tracking.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::{Error, Result};
use crate::snapshot::Snapshot;
use crate::validate;

/// A key set or removed since the session was read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    /// The new bytes, or `None` if the key was removed.
    value: Option<Vec<u8>>,
    /// Whether the change is not saved yet.
    dirty: bool,
}

/// One scope (the global one, or one component's) of one session, copied out
/// of the store. Changing it changes nothing stored until
/// [`SessionStore::save`](crate::SessionStore::save).
///
/// Values are typed through serde. Each `set` and `remove` marks its key
/// dirty, and the last operation on a key wins.
///
/// # Examples
///
/// ```
/// use sessionstore::Store;
///
/// let store = Store::temporary()?;
/// let mut session = store.create()?;
/// session.set("user", "ada")?;
/// session.set("visits", &3u32)?;
/// assert!(session.is_dirty());
/// store.save(&mut session)?;
/// assert!(!session.is_dirty());
///
/// let again = store.get(session.id(), None)?.expect("the session is live");
/// assert_eq!(again.get::<u32>("visits")?, Some(3));
/// # Ok::<(), sessionstore::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    sid: String,
    component: Option<String>,
    incarnation: u64,
    /// The scope's version as it was read or last saved; 0 if it was never written.
    version: u64,
    max_value_size: usize,
    /// The scope as it was read; emptied by `clear`.
    read: Snapshot,
    /// Every key set or removed since the read. It hides `read`'s entry.
    changes: BTreeMap<String, Change>,
    /// How many keys are set.
    len: usize,
    cleared: bool,
    /// Opaque to everything but the store that set it: for `RedisStore`,
    /// what it read or last wrote of the session's record (see [`ReadToken`]).
    #[cfg(feature = "redis")]
    read_token: Option<ReadToken>,
}

/// What `RedisStore` keeps in a session between its read and its save, so
/// that a save can check-and-write at once.
#[cfg(feature = "redis")]
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadToken {
    /// The exact bytes of the metadata record read or last written.
    pub meta: Vec<u8>,
    /// The stored principal name read with them; empty for none.
    pub principal: Vec<u8>,
    /// The deadline (µs) up to which the principal's set is known to cover
    /// the session, read with them; 0 if unknown.
    pub covered: u64,
    /// On Redis, the newest entry of the hash's field `o` (the last write's
    /// operation token and status) read or written with them; empty if
    /// unknown. A resend compares it (see `scripts::SAVE_LOOKUP_AGAIN`).
    pub last: Vec<u8>,
}

impl Session {
    pub(crate) fn new(
        sid: String,
        component: Option<String>,
        incarnation: u64,
        max_value_size: usize,
        read: Snapshot,
    ) -> Self {
        Session {
            sid,
            component,
            incarnation,
            version: 0,
            max_value_size,
            len: read.len(),
            read,
            changes: BTreeMap::new(),
            cleared: false,
            #[cfg(feature = "redis")]
            read_token: None,
        }
    }

    /// The session carrying `token` (see `read_token`).
    #[cfg(feature = "redis")]
    pub(crate) fn with_read_token(mut self, token: ReadToken) -> Self {
        self.read_token = Some(token);
        self
    }

    /// The token set by the store this session was read from or last saved to.
    #[cfg(feature = "redis")]
    pub(crate) fn read_token(&self) -> Option<&ReadToken> {
        self.read_token.as_ref()
    }

    /// Replaces the token (after a save, or a read of the metadata record).
    #[cfg(feature = "redis")]
    pub(crate) fn set_read_token(&mut self, token: ReadToken) {
        self.read_token = Some(token);
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.sid
    }

    /// The component this scope belongs to; `None` for the global scope.
    pub fn component(&self) -> Option<&str> {
        self.component.as_deref()
    }

    /// The value under `key`, decoded as `T`; `None` if the key is not set.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if `key` breaks the key rules, and
    /// [`Error::Decode`] if the stored bytes are not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        validate::key(key)?;
        match self.get_raw(key) {
            Some(bytes) => codec::decode_value(|| self.describe(key), bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The stored bytes under `key`, undecoded.
    pub fn get_raw(&self, key: &str) -> Option<&[u8]> {
        match self.changes.get(key) {
            Some(change) => change.value.as_deref(),
            None => self.read.get(key),
        }
    }

    /// Sets `key` to `value` and marks it dirty.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if `key` breaks the key rules, [`Error::Encode`]
    /// if serde cannot encode the value, and [`Error::ValueTooLarge`] if its
    /// encoding is over the store's `max_value_size`. On error nothing changes.
    pub fn set<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        validate::key(key)?;
        let bytes = codec::encode_value(key, value)?;
        self.set_raw(key, bytes)
    }

    /// Sets `key` to already-encoded bytes and marks it dirty.
    ///
    /// # Errors
    ///
    /// As [`set`](Session::set), except that nothing is encoded.
    pub fn set_raw(&mut self, key: &str, bytes: Vec<u8>) -> Result<()> {
        validate::key(key)?;
        if bytes.len() > self.max_value_size {
            return Err(Error::ValueTooLarge {
                key: key.to_owned(),
                size: bytes.len(),
                max: self.max_value_size,
            });
        }
        self.change(key, Some(bytes));
        Ok(())
    }

    /// Removes `key` and marks it deleted. Returns whether it was there.
    /// A key that breaks the key rules cannot be stored, so removing it does nothing.
    pub fn remove(&mut self, key: &str) -> bool {
        if validate::key(key).is_err() {
            return false;
        }
        self.change(key, None)
    }

    /// Records a dirty change of `key`, keeping `len` right. Returns whether
    /// the key was set before.
    fn change(&mut self, key: &str, value: Option<Vec<u8>>) -> bool {
        let was_set = self.get_raw(key).is_some();
        match (was_set, value.is_some()) {
            (false, true) => self.len += 1,
            (true, false) => self.len -= 1,
            _ => {}
        }
        let change = Change { value, dirty: true };
        self.changes.insert(key.to_owned(), change);
        was_set
    }

    /// Removes every key. After a save the scope holds exactly the keys set after this call.
    pub fn clear(&mut self) {
        self.read = Snapshot::default();
        self.changes.clear();
        self.len = 0;
        self.cleared = true;
    }

    /// The keys that are set, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        let mut read = self.read.iter().map(|(k, _)| k).peekable();
        let mut changed = self.changes.iter().peekable();
        // A merge of two sorted lists; a changed key hides the read one.
        std::iter::from_fn(move || {
            loop {
                let next_read = read.peek().copied();
                let from_read = match (next_read, changed.peek()) {
                    (None, None) => return None,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (Some(r), Some((c, _))) => {
                        if r == c.as_str() {
                            read.next();
                        }
                        r < c.as_str()
                    }
                };
                if from_read {
                    return read.next();
                }
                match changed.next() {
                    Some((key, change)) if change.value.is_some() => return Some(key.as_str()),
                    Some(_) => {}
                    None => return None,
                }
            }
        })
    }

    /// How many keys are set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether anything changed since the session was read or last saved.
    pub fn is_dirty(&self) -> bool {
        self.cleared || self.changes.values().any(|c| c.dirty)
    }

    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The session with the scope version it was read at.
    pub(crate) fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// The scope version this session was read at, or last saved.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Called after a successful save that wrote the scope at `version`.
    pub(crate) fn saved_at(&mut self, version: u64) {
        self.version = version;
        self.mark_clean();
    }

    pub(crate) fn cleared(&self) -> bool {
        self.cleared
    }

    /// The changed keys, each with its new bytes or `None` if it was removed.
    pub(crate) fn changes(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.changes
            .iter()
            .filter(|(_, c)| c.dirty)
            .map(|(k, c)| (k.as_str(), c.value.as_deref()))
    }

    /// Checks every dirty value against `max`, the limit of the store about
    /// to write it: the session may come from a store with a larger one.
    pub(crate) fn check_sizes(&self, max: usize) -> Result<()> {
        for (key, value) in self.changes() {
            if let Some(v) = value
                && v.len() > max
            {
                return Err(Error::ValueTooLarge {
                    key: key.to_owned(),
                    size: v.len(),
                    max,
                });
            }
        }
        Ok(())
    }

    /// Whether `key` was set since the last save.
    pub(crate) fn was_set(&self, key: &str) -> bool {
        self.changes
            .get(key)
            .is_some_and(|c| c.dirty && c.value.is_some())
    }

    /// Called after a successful save: nothing is dirty any more.
    pub(crate) fn mark_clean(&mut self) {
        for change in self.changes.values_mut() {
            change.dirty = false;
        }
        self.cleared = false;
    }

    fn describe(&self, key: &str) -> String {
        match &self.component {
            Some(c) => format!("key {key:?} of component {c:?} of session {:?}", self.sid),
            None => format!("key {key:?} of session {:?}", self.sid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let mut read = Snapshot::default();
        read.push("old", &codec::encode_value("old", &1u8).unwrap());
        Session::new("s".into(), None, 0, 100, read)
    }

    #[test]
    fn last_operation_wins() {
        let mut s = session();
        s.set("k", &1u8).unwrap();
        assert!(s.remove("k"));
        assert_eq!(s.changes().collect::<Vec<_>>(), vec![("k", None)]);
        s.set("k", &2u8).unwrap();
        assert_eq!(s.get::<u8>("k").unwrap(), Some(2));
        assert!(s.was_set("k"));
    }

    #[test]
    fn remove_reports_presence_and_marks_deleted() {
        let mut s = session();
        assert!(!s.is_dirty());
        assert!(s.remove("old"));
        assert!(!s.remove("never"));
        assert!(s.is_dirty());
        assert_eq!(s.changes().count(), 2);
        assert!(!s.remove(""));
    }

    #[test]
    fn too_large_and_invalid_change_nothing() {
        let mut s = session();
        let err = s.set("big", &vec![0u8; 200]).unwrap_err();
        assert!(
            matches!(err, Error::ValueTooLarge { ref key, max: 100, .. } if key == "big"),
            "{err}"
        );
        assert!(matches!(s.set("", &1u8), Err(Error::InvalidKey { .. })));
        assert!(!s.is_dirty());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn clear_then_set() {
        let mut s = session();
        s.clear();
        assert!(s.is_empty() && s.is_dirty() && s.cleared());
        s.set("n", &1u8).unwrap();
        assert_eq!(s.keys().collect::<Vec<_>>(), vec!["n"]);
        s.mark_clean();
        assert!(!s.is_dirty() && !s.cleared());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(u8, u8),
        Remove(u8),
        Clear,
        Saved,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0u8..8, any::<u8>()).prop_map(|(k, v)| Op::Set(k, v)),
            3 => (0u8..8).prop_map(Op::Remove),
            1 => Just(Op::Clear),
            1 => Just(Op::Saved),
        ]
    }

    proptest::proptest! {
        /// Whatever was read and whatever happened since, the session shows
        /// what a plain map would.
        #[test]
        fn reads_like_a_map(
            read in proptest::collection::btree_map(0u8..8, proptest::prelude::any::<u8>(), 0..8),
            ops in proptest::collection::vec(op(), 0..24),
        ) {
            let name = |k: u8| format!("k{k}");
            let mut model: BTreeMap<String, Vec<u8>> =
                read.iter().map(|(k, v)| (name(*k), vec![*v])).collect();
            let mut snapshot = Snapshot::default();
            for (k, v) in &model {
                snapshot.push(k, v);
            }
            let mut s = Session::new("s".into(), None, 0, 100, snapshot);
            for op in ops {
                match op {
                    Op::Set(k, v) => {
                        s.set_raw(&name(k), vec![v]).unwrap();
                        model.insert(name(k), vec![v]);
                    }
                    Op::Remove(k) => {
                        let was = model.remove(&name(k)).is_some();
                        proptest::prop_assert_eq!(s.remove(&name(k)), was);
                    }
                    Op::Clear => {
                        s.clear();
                        model.clear();
                    }
                    Op::Saved => s.mark_clean(),
                }
                let keys: Vec<&str> = s.keys().collect();
                let expected: Vec<&str> = model.keys().map(String::as_str).collect();
                proptest::prop_assert_eq!(keys, expected);
                proptest::prop_assert_eq!(s.len(), model.len());
                for k in 0..8 {
                    proptest::prop_assert_eq!(s.get_raw(&name(k)), model.get(&name(k)).map(Vec::as_slice));
                }
            }
        }
    }

    #[test]
    fn saved_changes_are_clean_but_still_read() {
        let mut s = session();
        s.set("new", &2u8).unwrap();
        assert!(s.remove("old"));
        s.mark_clean();
        assert!(!s.is_dirty());
        assert_eq!(s.changes().count(), 0);
        assert!(!s.was_set("new"));
        assert_eq!(s.get::<u8>("new").unwrap(), Some(2));
        assert_eq!(s.get_raw("old"), None);
        assert_eq!(s.keys().collect::<Vec<_>>(), vec!["new"]);
    }

    #[test]
    fn wrong_type_names_the_key() {
        let s = session();
        let err = s.get::<String>("old").unwrap_err();
        assert!(err.to_string().contains("\"old\""), "{err}");
    }
}

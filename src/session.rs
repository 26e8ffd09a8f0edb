//! A detached copy of one scope of one session, with dirty tracking.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::{Error, Result};
use crate::validate;

/// What happened to a key since the session was read or last saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Set,
    Removed,
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
    max_value_size: usize,
    values: BTreeMap<String, Vec<u8>>,
    changes: BTreeMap<String, Change>,
    cleared: bool,
}

impl Session {
    pub(crate) fn new(
        sid: String,
        component: Option<String>,
        incarnation: u64,
        max_value_size: usize,
        values: BTreeMap<String, Vec<u8>>,
    ) -> Self {
        Session {
            sid,
            component,
            incarnation,
            max_value_size,
            values,
            changes: BTreeMap::new(),
            cleared: false,
        }
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
        match self.values.get(key) {
            Some(bytes) => codec::decode_value(|| self.describe(key), bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The stored bytes under `key`, undecoded.
    pub fn get_raw(&self, key: &str) -> Option<&[u8]> {
        self.values.get(key).map(Vec::as_slice)
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
        self.values.insert(key.to_owned(), bytes);
        self.changes.insert(key.to_owned(), Change::Set);
        Ok(())
    }

    /// Removes `key` and marks it deleted. Returns whether it was there.
    /// A key that breaks the key rules cannot be stored, so removing it does nothing.
    pub fn remove(&mut self, key: &str) -> bool {
        if validate::key(key).is_err() {
            return false;
        }
        self.changes.insert(key.to_owned(), Change::Removed);
        self.values.remove(key).is_some()
    }

    /// Removes every key. After a save the scope holds exactly the keys set after this call.
    pub fn clear(&mut self) {
        self.values.clear();
        self.changes.clear();
        self.cleared = true;
    }

    /// The keys that are set, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// How many keys are set.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether anything changed since the session was read or last saved.
    pub fn is_dirty(&self) -> bool {
        self.cleared || !self.changes.is_empty()
    }

    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub(crate) fn cleared(&self) -> bool {
        self.cleared
    }

    /// The changed keys, each with its new bytes or `None` if it was removed.
    pub(crate) fn changes(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.changes.iter().map(|(k, c)| {
            let v = match c {
                Change::Set => self.values.get(k).map(Vec::as_slice),
                Change::Removed => None,
            };
            (k.as_str(), v)
        })
    }

    /// Whether `key` was set since the last save.
    pub(crate) fn was_set(&self, key: &str) -> bool {
        self.changes.get(key) == Some(&Change::Set)
    }

    /// Called after a successful save: nothing is dirty any more.
    pub(crate) fn mark_clean(&mut self) {
        self.changes.clear();
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
        let mut values = BTreeMap::new();
        values.insert("old".to_string(), codec::encode_value("old", &1u8).unwrap());
        Session::new("s".into(), None, 0, 100, values)
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

    #[test]
    fn wrong_type_names_the_key() {
        let s = session();
        let err = s.get::<String>("old").unwrap_err();
        assert!(err.to_string().contains("\"old\""), "{err}");
    }
}

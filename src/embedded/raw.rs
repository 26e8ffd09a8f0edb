//! Writing arbitrary bytes where the store keeps a record: for corruption
//! tests and fuzzing only. Compiled into tests of this crate, and into
//! builds with the cargo feature `corruption-testing`, never otherwise.

use crate::embedded::store::Store;
use crate::embedded::write::WriteSet;
use crate::error::Result;
use crate::keys;

/// Where [`Store::__write_raw`] writes.
#[derive(Debug, Clone, Copy)]
pub enum RawTarget<'a> {
    /// The metadata record of a session.
    Meta(&'a str),
    /// A data key.
    Value {
        /// The session id.
        sid: &'a str,
        /// The component; `None` for the global scope.
        component: Option<&'a str>,
        /// The key.
        key: &'a str,
    },
    /// An expiry index entry.
    Index {
        /// The deadline in microseconds since the epoch.
        deadline_micros: u64,
        /// The session id.
        sid: &'a str,
    },
    /// Any key at all.
    Key(&'a [u8]),
}

impl Store {
    /// Stores `bytes` where the store keeps `target`, bypassing every check.
    /// A metadata record is written under its session's lock, as every other
    /// write of one is, and the metadata cache forgets the session, so the
    /// next read sees the bytes.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn __write_raw(&self, target: RawTarget<'_>, bytes: &[u8]) -> Result<()> {
        let core = self.core();
        let key = match target {
            RawTarget::Meta(sid) => keys::meta(sid),
            RawTarget::Value {
                sid,
                component,
                key,
            } => keys::data(sid, component, key),
            RawTarget::Index {
                deadline_micros,
                sid,
            } => keys::index(deadline_micros, sid),
            RawTarget::Key(k) => k.to_vec(),
        };
        let mut set = WriteSet::default();
        match keys::parse(&key) {
            keys::Parsed::Meta { sid } => {
                let _guard = core.lock(sid);
                set.put_raw_meta(sid, bytes.to_vec());
                core.write(set)
            }
            _ => {
                set.put(key.clone(), bytes.to_vec());
                core.write(set)
            }
        }
    }
}

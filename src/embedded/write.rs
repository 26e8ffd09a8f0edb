//! A write set: the engine batch of one operation, plus the metadata records
//! it puts or deletes, so that the metadata cache can follow the write
//! without decoding anything back.

use crate::codec;
use crate::embedded::backend::Batch;
use crate::keys;
use crate::meta::Meta;

/// What one operation writes, atomically.
#[derive(Debug, Default)]
pub(crate) struct WriteSet {
    batch: Batch,
    /// Each metadata record the batch puts (`Some`) or deletes (`None`), in order.
    metas: Vec<(String, Option<Meta>)>,
}

impl WriteSet {
    /// Puts `value` under `key`: a data key, or an index entry being tidied.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.batch.put(key, value);
    }

    /// Deletes `key`. Deleting a metadata record goes through
    /// [`delete_meta`](Self::delete_meta), so that the cache forgets it.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.batch.delete(key);
    }

    /// Writes `new` as the metadata of `sid`: the record, and its expiry
    /// index entry moved from where `old` had it.
    pub fn put_meta(&mut self, sid: &str, old: Option<&Meta>, new: &Meta) {
        self.batch.put(keys::meta(sid), codec::encode_meta(new));
        match old {
            Some(old) if old.index_deadline() == new.index_deadline() => {}
            Some(old) => {
                self.batch.delete(keys::index(old.index_deadline(), sid));
                self.batch
                    .put(keys::index(new.index_deadline(), sid), Vec::new());
            }
            None => self
                .batch
                .put(keys::index(new.index_deadline(), sid), Vec::new()),
        }
        self.metas.push((sid.to_owned(), Some(*new)));
    }

    /// Deletes the metadata record of `sid` and, if its record `meta` is
    /// known, its expiry index entry.
    pub fn delete_meta(&mut self, sid: &str, meta: Option<&Meta>) {
        self.batch.delete(keys::meta(sid));
        if let Some(m) = meta {
            self.batch.delete(keys::index(m.index_deadline(), sid));
        }
        self.metas.push((sid.to_owned(), None));
    }

    /// Deletes every key of session `sid` (everything under `{sid}/`: its
    /// record, data, scope versions and principal record), as the engine
    /// holds them when it applies the batch, and the expiry index entry of
    /// its record `meta`.
    pub fn delete_session(&mut self, sid: &str, meta: &Meta) {
        self.batch.delete_prefix(keys::session_prefix(sid));
        self.batch.delete(keys::index(meta.index_deadline(), sid));
        self.metas.push((sid.to_owned(), None));
    }

    /// Puts raw bytes as the metadata record of `sid`, unchecked: the cache
    /// forgets the session, so the next read goes to the engine.
    #[cfg(any(test, feature = "corruption-testing"))]
    pub fn put_raw_meta(&mut self, sid: &str, bytes: Vec<u8>) {
        self.batch.put(keys::meta(sid), bytes);
        self.metas.push((sid.to_owned(), None));
    }

    /// Whether the set writes nothing.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// The batch for the engine, and the metadata records for the cache.
    pub fn into_parts(self) -> (Batch, Vec<(String, Option<Meta>)>) {
        (self.batch, self.metas)
    }
}

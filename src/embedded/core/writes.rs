//! The one write path, and the deletions the operations share.

use super::Core;
use crate::embedded::backend::Batch;
use crate::embedded::commit::{Applier, Committer};
use crate::embedded::write::WriteSet;
use crate::error::Result;
use crate::keys;
use crate::meta::Meta;

impl Core {
    /// Writes `set` atomically at the store's durability. The caller holds
    /// the lock of every session it touches.
    pub fn write(&self, set: WriteSet) -> Result<()> {
        self.commit(set, |c, batch| c.write(batch))
    }

    /// Writes `set` atomically and durably, whatever the store's durability,
    /// on the thread `applier` allows: for the reaper, one batch per chunk.
    pub fn write_durable(&self, set: WriteSet, applier: Applier) -> Result<()> {
        self.commit(set, |c, batch| c.write_durable(batch, applier))
    }

    /// The one write path: hands the batch to the committer (which adds the
    /// time floor under the engine lock) and brings the metadata cache in
    /// step (see `metacache`).
    fn commit(
        &self,
        set: WriteSet,
        submit: impl FnOnce(&Committer, Batch) -> Result<()>,
    ) -> Result<()> {
        let committer = self.committer();
        let (batch, metas) = set.into_parts();
        let result = submit(committer, batch);
        for (sid, meta) in metas {
            match (&result, meta) {
                (Ok(()), Some(meta)) => self.metas.insert(&sid, meta),
                _ => self.metas.remove(&sid),
            }
        }
        result
    }

    /// Makes every acknowledged write durable now.
    pub fn flush(&self) -> Result<()> {
        self.committer().flush()
    }

    /// Adds to `set` the deletion of every key of `sid`, its metadata record
    /// and, if its record `meta` is known, its index entry; and its entry in
    /// its principal's index, if it has a principal (see `principal`).
    ///
    /// With the record known, the session's keys are not read here: the
    /// batch deletes the prefix `{sid}/` inside the engine's write
    /// (`WriteSet::delete_session`), so whatever the engine holds under it
    /// when the batch lands goes, and nothing is read and copied twice. Only
    /// the principal record is read, by its key, for its index entry: the
    /// caller holds the session's lock, so it cannot change meanwhile.
    ///
    /// It reads before it adds anything: on an error, `set` is unchanged.
    pub fn delete_session(&self, set: &mut WriteSet, sid: &str, meta: Option<&Meta>) -> Result<()> {
        if let Some(meta) = meta {
            if let Some(stored) = self.backend.get(&keys::principal_of(sid))? {
                self.unindex(set, sid, &stored)?;
            }
            set.delete_session(sid, meta);
            return Ok(());
        }
        // The record is unknown (unreadable, or not there): scan, to learn
        // whether there is anything to delete.
        let record = keys::meta(sid);
        let principal = keys::principal_of(sid);
        let entries = self.backend.scan_prefix(&keys::session_prefix(sid))?;
        let names = match entries.iter().find(|(key, _)| *key == principal) {
            Some((_, stored)) => self.principal_names(sid, stored)?,
            None => Vec::new(),
        };
        for name in names {
            set.delete(keys::principal_index(&name, sid));
        }
        let mut has_record = false;
        for (key, _) in entries {
            if key == record {
                has_record = true;
                continue;
            }
            set.delete(key);
        }
        // A session that is not there writes nothing.
        if has_record {
            set.delete_meta(sid, None);
        }
        Ok(())
    }

    /// Adds to `set` the deletion of every expiry index entry of `sid`,
    /// found by walking the whole index: for a session whose metadata is
    /// unreadable, so its deadline unknown. Only corruption takes this path.
    pub fn delete_index_entries_of(&self, set: &mut WriteSet, sid: &str) -> Result<()> {
        self.walk(
            &keys::index_start(),
            Some(&keys::index_end()),
            1024,
            &|| true,
            &mut |key, _| {
                if matches!(keys::parse(key), keys::Parsed::Index { sid: s, .. } if s == sid) {
                    set.delete(key.to_vec());
                }
            },
        )
    }
}

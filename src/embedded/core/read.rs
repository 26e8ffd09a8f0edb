//! Reads: metadata records through the cache, and the engine's key space.

use super::Core;
use crate::codec;
use crate::embedded::backend::Entry;
use crate::error::{Error, Result};
use crate::keys;
use crate::meta::Meta;

impl Core {
    /// The metadata record of `sid`, whether or not it has expired.
    /// The caller holds the session's lock (shared or not), which makes it
    /// safe to fill the cache from the engine.
    ///
    /// Once a write has timed out the cache is bypassed: the timed-out batch
    /// may still land, and only the engine knows when.
    pub fn read_meta(&self, sid: &str) -> Result<Option<Meta>> {
        let use_cache = !self.is_stalled();
        if use_cache && let Some(meta) = self.metas.get(sid) {
            return Ok(Some(meta));
        }
        match self.backend.get(&keys::meta(sid))? {
            Some(bytes) => {
                let meta = codec::decode_meta(sid, &bytes)?;
                if use_cache {
                    self.metas.insert(sid, meta);
                }
                Ok(Some(meta))
            }
            None => Ok(None),
        }
    }

    /// The stored version of one scope of `sid`; 0 if it was never written.
    pub fn read_version(&self, sid: &str, component: Option<&str>) -> Result<u64> {
        match self.backend.get(&keys::version(sid, component))? {
            Some(bytes) => codec::decode_version(&bytes).ok_or_else(|| Error::Decode {
                what: format!("the scope version of session {sid:?}"),
                message: format!("{} bytes, not 8", bytes.len()),
            }),
            None => Ok(0),
        }
    }

    /// The stored value of `key`, read from the engine.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.backend.get(key)
    }

    /// The metadata record of `sid` if the session is live at `now`.
    pub fn live_meta(&self, sid: &str, now: u64) -> Result<Option<Meta>> {
        Ok(self.read_meta(sid)?.filter(|m| m.is_live(now)))
    }

    /// Calls `visit` with every entry under `prefix`, in place (see `Backend::visit_prefix`).
    pub fn visit_prefix(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        self.backend.visit_prefix(prefix, visit)
    }

    /// Every entry under `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        self.backend.scan_prefix(prefix)
    }

    /// Up to `limit` entries of a key range (see `Backend::scan_range`).
    pub fn scan_range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        self.backend.scan_range(start, end, limit)
    }

    /// Walks a key range a chunk at a time (see `Backend::walk`).
    pub fn walk(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        chunk: usize,
        more: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<()> {
        self.backend.walk(start, end, chunk, more, visit)
    }
}

//! Listing a Redis store's sessions, and its statistics.

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::info::Stats;
use crate::keys;
use crate::meta::Meta;
use crate::redis::store::RedisStore;

impl RedisStore {
    /// The ids of the sessions live now, by the store's clock, in no
    /// particular order. It SCANs every key of the namespace (on every master
    /// of a cluster) and reads each one's metadata: its cost is proportional
    /// to the number of sessions stored.
    ///
    /// # Errors
    ///
    /// Errors naming the server. A key of the namespace that holds no
    /// session of this store (another type, or a record that does not
    /// decode: foreign bytes) is skipped and logged, not an error: the
    /// damage stays with that key.
    pub fn session_ids(&self) -> Result<Vec<String>> {
        let sids = self.stored_ids()?;
        let now = self.now();
        let mut live = Vec::with_capacity(sids.len());
        for sid in sids {
            if self
                .meta_or_skip(&sid)?
                .is_some_and(|(m, _)| self.live(&m, now))
            {
                live.push(sid);
            }
        }
        Ok(live)
    }

    /// The metadata record of `sid`, or `None` for a key that holds no
    /// session of this store (logged): what listing reads.
    pub(super) fn meta_or_skip(&self, sid: &str) -> Result<Option<(Meta, Vec<u8>)>> {
        match self.read_meta(sid) {
            Err(e @ Error::Decode { .. }) => {
                log::warn!("sessionstore: listing sessions, skipping {sid:?}: {e}");
                Ok(None)
            }
            other => other,
        }
    }

    /// The id of every session key of the namespace, live or not, sorted:
    /// SCAN on every master.
    pub(super) fn stored_ids(&self) -> Result<Vec<String>> {
        let ns = &self.inner.namespace;
        let mut sids = Vec::new();
        self.inner
            .conns
            .scan(&keys::redis_session_pattern(ns), &mut |key| {
                if let Some(sid) = keys::redis_parse_session(ns, key) {
                    sids.push(sid.to_owned());
                }
            })?;
        sids.sort_unstable();
        sids.dedup();
        Ok(sids)
    }

    /// Live sessions (as [`session_ids`](RedisStore::session_ids) counts
    /// them) and the writes this store's handles made since open. `engine` is
    /// `None`; Redis's own expiry reaps, so the reaper counters and
    /// `bytes_on_disk` are 0 (see Redis's `INFO memory`).
    ///
    /// # Errors
    ///
    /// As [`session_ids`](RedisStore::session_ids).
    pub fn stats(&self) -> Result<Stats> {
        Ok(Stats {
            live_sessions: self.session_ids()?.len() as u64,
            reaped_since_open: 0,
            flushes_since_open: 0,
            failed_reap_passes: 0,
            bytes_on_disk: 0,
            writes_since_open: self.inner.writes.load(Ordering::Relaxed),
            engine: None,
        })
    }
}

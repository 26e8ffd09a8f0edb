//! A bounded in-memory copy of recently used metadata records.
//!
//! Every operation on a session first reads its metadata record to learn
//! whether the session is live; on sled that read costs as much as a quarter
//! of a whole get. The store holds its directory's lock file, so nothing but
//! this process writes the records, and every write passes through
//! [`Core::write`](crate::embedded::core::Core::write), which keeps this copy
//! in step:
//!
//! - a read that misses fills the entry while it holds the session's read
//!   lock, so no writer of that session runs at the same time;
//! - a write updates or removes the entry of every record its batch puts or
//!   deletes, after the engine acknowledged the batch and before the
//!   writer's session lock is released;
//! - a write that fails removes those entries, because a batch that timed out
//!   may still be applied later: the next read goes to the engine;
//! - once a write has timed out, reads bypass the cache for good
//!   ([`Core::read_meta`](crate::embedded::core::Core::read_meta)): only the engine
//!   knows when the timed-out batch lands.
//!
//! Only records that exist are cached: ids nobody holds (a stale or forged
//! cookie) never push live sessions out. Eviction is quick_cache's CLOCK-Pro.

use crate::meta::Meta;

/// Recently read or written metadata records, keyed by session id.
pub(crate) struct MetaCache {
    /// `None` when the configured capacity is zero: every read goes to the engine.
    cache: Option<quick_cache::sync::Cache<String, Meta>>,
}

impl MetaCache {
    /// A cache of up to `entries` records; 0 turns it off.
    pub fn new(entries: usize) -> Self {
        MetaCache {
            cache: (entries > 0).then(|| quick_cache::sync::Cache::new(entries)),
        }
    }

    /// The cached record of `sid`, if there is one.
    pub fn get(&self, sid: &str) -> Option<Meta> {
        self.cache.as_ref()?.get(sid)
    }

    /// Remembers `meta` as the record of `sid`.
    pub fn insert(&self, sid: &str, meta: Meta) {
        if let Some(c) = &self.cache {
            c.insert(sid.to_owned(), meta);
        }
    }

    /// Forgets the record of `sid`.
    pub fn remove(&self, sid: &str) {
        if let Some(c) = &self.cache {
            c.remove(sid);
        }
    }

    /// How many records are cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(incarnation: u64) -> Meta {
        Meta {
            created: 1,
            last_access: 2,
            idle: Some(3),
            absolute_deadline: None,
            incarnation,
        }
    }

    #[test]
    fn remembers_replaces_and_forgets() {
        let c = MetaCache::new(16);
        assert_eq!(c.get("a"), None);
        c.insert("a", meta(1));
        assert_eq!(c.get("a"), Some(meta(1)));
        c.insert("a", meta(2));
        assert_eq!(c.get("a"), Some(meta(2)));
        c.remove("a");
        assert_eq!(c.get("a"), None);
    }

    #[test]
    fn zero_entries_caches_nothing() {
        let c = MetaCache::new(0);
        c.insert("a", meta(1));
        assert_eq!(c.get("a"), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn stays_within_its_capacity() {
        let c = MetaCache::new(100);
        for i in 0..10_000 {
            c.insert(&format!("s{i}"), meta(i));
        }
        assert!(c.len() <= 200, "{} entries for a capacity of 100", c.len());
        assert!(c.len() > 0);
    }
}

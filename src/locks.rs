//! Per-session locks: a fixed array of striped reader-writer locks.
//!
//! Every check-then-write on a session (create, save, touch, destroy,
//! regenerate, and the reaper's re-check) holds its stripe's write lock, so the
//! check and the batch are atomic with respect to each other within this
//! process. Reads of a scope hold the read lock, so they never see half of a save.
//!
//! A second set, keyed by principal name, guards a principal's index (see
//! `embedded::principal`): `sessions_of` and `destroy_all_of` hold their
//! name's stripe exclusively, and every write that adds or moves an entry of
//! a name holds it shared.

use std::hash::BuildHasher;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

const STRIPES: usize = 1024;

pub(crate) struct Locks {
    stripes: Box<[RwLock<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

/// The write guards of two sessions, taken in stripe order so that two
/// callers locking the same pair cannot deadlock.
pub(crate) struct PairGuard<'a> {
    _first: RwLockWriteGuard<'a, ()>,
    _second: Option<RwLockWriteGuard<'a, ()>>,
}

impl Locks {
    pub fn new() -> Self {
        Locks {
            stripes: (0..STRIPES).map(|_| RwLock::new(())).collect(),
            hasher: Default::default(),
        }
    }

    fn stripe(&self, sid: &str) -> usize {
        // The modulus keeps the value below STRIPES, so the cast cannot truncate it.
        (self.hasher.hash_one(sid) % STRIPES as u64) as usize
    }

    /// Exclusive access to session `sid`.
    pub fn write(&self, sid: &str) -> RwLockWriteGuard<'_, ()> {
        self.stripes[self.stripe(sid)].write()
    }

    /// Shared access to session `sid`.
    pub fn read(&self, sid: &str) -> RwLockReadGuard<'_, ()> {
        self.stripes[self.stripe(sid)].read()
    }

    /// Shared access to `key`'s stripe if no one holds it exclusively (or
    /// waits to): never blocks.
    pub fn try_read(&self, key: &str) -> Option<RwLockReadGuard<'_, ()>> {
        self.stripes[self.stripe(key)].try_read()
    }

    /// Exclusive access to two sessions at once.
    pub fn write_pair(&self, a: &str, b: &str) -> PairGuard<'_> {
        let (x, y) = (self.stripe(a), self.stripe(b));
        let (lo, hi) = (x.min(y), x.max(y));
        let first = self.stripes[lo].write();
        let second = (hi != lo).then(|| self.stripes[hi].write());
        PairGuard {
            _first: first,
            _second: second,
        }
    }

    /// Exclusive access to every session of `sids` at once. The stripes are
    /// taken in ascending order, each once, as `write_pair` takes its two:
    /// so no two callers of either can deadlock.
    pub fn write_many<'s>(&self, sids: impl Iterator<Item = &'s str>) -> ManyGuard<'_> {
        let mut stripes: Vec<usize> = sids.map(|sid| self.stripe(sid)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        ManyGuard {
            _guards: stripes
                .into_iter()
                .map(|i| self.stripes[i].write())
                .collect(),
        }
    }
}

/// The write guards of many sessions, taken in ascending stripe order.
pub(crate) struct ManyGuard<'a> {
    _guards: Vec<RwLockWriteGuard<'a, ()>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn pairs_in_either_order_do_not_deadlock() {
        let locks = Arc::new(Locks::new());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let locks = locks.clone();
                std::thread::spawn(move || {
                    for j in 0..2_000 {
                        let (a, b) = if (i + j) % 2 == 0 {
                            ("a", "b")
                        } else {
                            ("b", "a")
                        };
                        let _g = locks.write_pair(a, b);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Both stripes are free again afterwards.
        assert!(locks.stripes[locks.stripe("a")].try_write().is_some());
        assert!(locks.stripes[locks.stripe("b")].try_write().is_some());
    }

    #[test]
    fn many_overlapping_sets_in_any_order_do_not_deadlock() {
        let locks = Arc::new(Locks::new());
        let ids: Vec<String> = (0..64).map(|i| format!("s{i}")).collect();
        let ids = Arc::new(ids);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (locks, ids) = (locks.clone(), ids.clone());
                std::thread::spawn(move || {
                    for j in 0..500 {
                        // Each thread names the sessions in another order,
                        // with pairs taken between the sets.
                        let set = ids.iter().rev().skip((t + j) % 8).map(String::as_str);
                        drop(locks.write_many(set));
                        let _p = locks.write_pair(&ids[(t * 7 + j) % 64], &ids[j % 64]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for id in ids.iter() {
            assert!(locks.stripes[locks.stripe(id)].try_write().is_some());
        }
    }

    #[test]
    fn many_takes_each_stripe_once_and_holds_them_all() {
        let locks = Locks::new();
        // The same session twice would deadlock if its stripe were taken twice.
        let g = locks.write_many(["x", "y", "x"].into_iter());
        assert!(locks.stripes[locks.stripe("x")].try_read().is_none());
        assert!(locks.stripes[locks.stripe("y")].try_read().is_none());
        drop(g);
        assert!(locks.stripes[locks.stripe("x")].try_read().is_some());
    }

    #[test]
    fn same_stripe_pair_takes_one_lock() {
        let locks = Locks::new();
        let _g = locks.write_pair("x", "x");
        assert!(locks.stripes[locks.stripe("x")].try_read().is_none());
    }
}

//! Per-session locks: a fixed array of striped reader-writer locks.
//!
//! Every check-then-write on a session (create, save, touch, destroy,
//! regenerate, and the reaper's re-check) holds its stripe's write lock, so the
//! check and the batch are atomic with respect to each other within this
//! process. Reads of a scope hold the read lock, so they never see half of a save.

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

    /// Exclusive access to many sessions at once: each stripe once, in
    /// ascending order, as `write_pair` takes them, so that no two callers
    /// can deadlock.
    pub fn write_many<'a>(
        &'a self,
        sids: impl IntoIterator<Item = &'a str>,
    ) -> Vec<RwLockWriteGuard<'a, ()>> {
        let mut stripes: Vec<usize> = sids.into_iter().map(|s| self.stripe(s)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes
            .into_iter()
            .map(|i| self.stripes[i].write())
            .collect()
    }
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
    fn many_beside_pairs_do_not_deadlock_and_take_each_stripe_once() {
        let locks = Arc::new(Locks::new());
        let names: Vec<String> = (0..64).map(|i| format!("s{i}")).collect();
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (locks, names) = (locks.clone(), names.clone());
                std::thread::spawn(move || {
                    for j in 0..500 {
                        if i % 2 == 0 {
                            // The same ids twice: a stripe is taken once.
                            let ids = names.iter().chain(names.iter().rev());
                            let _g = locks.write_many(ids.map(String::as_str));
                        } else {
                            let _g = locks.write_pair(&names[j % 64], &names[(j * 7) % 64]);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(locks.stripes[locks.stripe("s0")].try_write().is_some());
    }

    #[test]
    fn same_stripe_pair_takes_one_lock() {
        let locks = Locks::new();
        let _g = locks.write_pair("x", "x");
        assert!(locks.stripes[locks.stripe("x")].try_read().is_none());
    }
}

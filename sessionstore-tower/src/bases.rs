//! What each request loaded, so that its save writes only what it changed.
//!
//! tower-sessions hands a store the whole record at save time, not what the
//! request changed. Comparing it with the stored scope would write back, as
//! if changed, every key another request changed in the meantime, and would
//! delete the keys another request added. So `load` keeps the scope it read
//! (a [`Session`], which remembers what it was loaded with) under the tokio
//! task that asked and the session id; `save` on the same task takes it,
//! applies the record to it, and saves it: the store then writes the keys
//! that differ from what this request loaded and nothing else, and refuses
//! the save if the session was destroyed or replaced since.
//!
//! A request's load and save run on one task (the middleware awaits the
//! handler, then saves). A save with no base here (a load on another task,
//! or one pushed out by [`CAPACITY`] newer loads) compares with the stored
//! scope instead.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use sessionstore::Session;
use tokio::task;

/// Loads kept at most; the oldest go first. Requests that only read leave
/// theirs behind until then.
pub(crate) const CAPACITY: usize = 1024;

type Key = (task::Id, i128);

/// The scopes loaded by requests that have not saved yet.
#[derive(Default)]
pub(crate) struct Bases {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    loaded: HashMap<Key, (u64, Session)>,
    /// Insertion order; an entry whose number no longer matches was replaced or taken.
    order: VecDeque<(u64, Key)>,
}

impl Bases {
    /// Keeps `scope` as what the current task loaded for `id`. Outside a tokio task it keeps nothing.
    pub(crate) fn keep(&self, task: Option<task::Id>, id: i128, scope: Session) {
        let Some(task) = task else { return };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let n = inner.next;
        inner.next += 1;
        inner.loaded.insert((task, id), (n, scope));
        inner.order.push_back((n, (task, id)));
        while inner.loaded.len() > CAPACITY {
            let Some((n, key)) = inner.order.pop_front() else {
                break;
            };
            if inner.loaded.get(&key).is_some_and(|(m, _)| *m == n) {
                inner.loaded.remove(&key);
            }
        }
        if inner.order.len() > 2 * CAPACITY {
            let Inner { loaded, order, .. } = &mut *inner;
            order.retain(|(n, key)| loaded.get(key).is_some_and(|(m, _)| m == n));
        }
    }

    /// Takes what the current task loaded for `id`, if it is still kept.
    pub(crate) fn take(&self, task: Option<task::Id>, id: i128) -> Option<Session> {
        let task = task?;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.loaded.remove(&(task, id)).map(|(_, s)| s)
    }

    /// How many loads are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.loaded.len()
    }

    #[cfg(test)]
    pub(crate) fn order_len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessionstore::{SessionStore, Store};

    /// `n` distinct tokio task ids.
    fn task_ids(n: usize) -> Vec<task::Id> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(tokio::spawn(async { task::id() }).await.expect("task"));
            }
            ids
        })
    }

    #[test]
    fn a_load_is_taken_once_by_its_own_task_and_id() {
        let store = Store::temporary().expect("store");
        let scope = SessionStore::create(&store).expect("create");
        let [a, b] = task_ids(2)[..] else {
            panic!("two ids")
        };
        let bases = Bases::default();
        bases.keep(Some(a), 7, scope);
        assert!(bases.take(Some(b), 7).is_none(), "another task's load");
        assert!(bases.take(Some(a), 8).is_none(), "another session");
        assert!(bases.take(None, 7).is_none(), "no task");
        assert!(bases.take(Some(a), 7).is_some());
        assert!(bases.take(Some(a), 7).is_none(), "taken once");
    }

    #[test]
    fn outside_a_task_nothing_is_kept() {
        let store = Store::temporary().expect("store");
        let bases = Bases::default();
        bases.keep(None, 1, SessionStore::create(&store).expect("create"));
        assert_eq!(bases.len(), 0);
    }

    #[test]
    fn loads_that_are_never_saved_stay_bounded() {
        let store = Store::temporary().expect("store");
        let scope = SessionStore::create(&store).expect("create");
        let ids = task_ids(CAPACITY + 10);
        let bases = Bases::default();
        for (i, t) in ids.iter().enumerate() {
            bases.keep(Some(*t), i as i128, scope.clone());
        }
        assert_eq!(bases.len(), CAPACITY);
        assert!(
            bases.take(Some(ids[0]), 0).is_none(),
            "the oldest went first"
        );
        let last = CAPACITY + 9;
        assert!(bases.take(Some(ids[last]), last as i128).is_some());
        // Reloading one session over and over keeps one entry, and the order
        // queue is compacted instead of growing.
        for _ in 0..10 * CAPACITY {
            bases.keep(Some(ids[1]), -1, scope.clone());
        }
        assert!(bases.len() <= CAPACITY);
        assert!(
            bases.order_len() <= 2 * CAPACITY + 1,
            "{}",
            bases.order_len()
        );
    }
}

//! The floor under the default store: raw redb 4.6 doing the same writes as
//! the store, with the same key shapes (a save puts the scope's version
//! record beside its values, as the store's save does), in one table of
//! byte-string keys and values, without the store's liveness checks, locks,
//! codec, time floor or commit thread. One write transaction per operation,
//! committed with `Durability::Immediate` in durable mode; a range read for
//! a get.
//!
//! It opens its file in redb's default `ExclusiveWriter` mode, as the store
//! does; [`RawRedb::exclusive`] is the same database under another label.
//! In background mode it commits with `Durability::None`; `flush` is an
//! empty durable commit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    ConcurrencyMode, Database, Durability, ReadableDatabase, ReadableTable, TableDefinition,
};
use sessionstore::Clock;

use super::contender::{Contender, Mode, fresh_id, idle_micros, now_micros};
use super::raw_keys::{index_key, meta_key, meta_value, parse_meta, scope_prefix};
use super::raw_sled::RawScope;

const TABLE: TableDefinition<'static, &'static [u8], &'static [u8]> =
    TableDefinition::new("sessionstore");

type Table<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

/// A redb database configured as the store configures its own.
pub struct RawRedb {
    db: Database,
    durable: bool,
    label: &'static str,
    clock: Arc<dyn Clock>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl RawRedb {
    /// A new, empty database in the store's mode: 64 MiB cache, `ExclusiveWriter`.
    pub fn new(mode: Mode, clock: Arc<dyn Clock>) -> Self {
        Self::open(mode, clock, false, "raw redb")
    }

    /// The same in redb's default `ExclusiveWriter` mode.
    pub fn exclusive(mode: Mode, clock: Arc<dyn Clock>) -> Self {
        Self::open(mode, clock, false, "raw redb (exclusive)")
    }

    fn open(mode: Mode, clock: Arc<dyn Clock>, shared: bool, label: &'static str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("redb");
        std::fs::create_dir(&path).expect("a directory");
        let concurrency = if shared {
            ConcurrencyMode::SingleWriter
        } else {
            ConcurrencyMode::ExclusiveWriter
        };
        let db = Database::builder()
            .set_cache_size(64 << 20)
            .set_concurrency_mode(concurrency)
            .create(path.join("data.redb"))
            .expect("opening redb");
        let raw = RawRedb {
            db,
            durable: mode == Mode::Durable,
            label,
            clock,
            path,
            _dir: dir,
        };
        raw.write(|_| {});
        raw
    }

    fn now(&self) -> u64 {
        now_micros(&self.clock)
    }

    /// Runs `f` on the table in one write transaction and commits it.
    fn write<T>(&self, f: impl FnOnce(&mut Table<'_>) -> T) -> T {
        let mut txn = self.db.begin_write().expect("begin_write");
        let durability = if self.durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(durability).expect("set_durability");
        let out = {
            let mut table = txn.open_table(TABLE).expect("open_table");
            f(&mut table)
        };
        txn.commit().expect("commit");
        out
    }

    /// (created, deadline) of `sid` if it is live now.
    fn live(&self, sid: &str, now: u64) -> Option<(u64, u64)> {
        let txn = self.db.begin_read().expect("begin_read");
        let table = txn.open_table(TABLE).expect("open_table");
        let v = table.get(meta_key(sid).as_slice()).expect("get")?;
        let (created, deadline) = parse_meta(v.value());
        (now < deadline).then_some((created, deadline))
    }
}

/// Every entry of `table` whose key starts with `prefix`.
fn scan_prefix(table: &Table<'_>, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for item in table.range(prefix..).expect("range") {
        let (k, v) = item.expect("range");
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    out
}

impl Contender for RawRedb {
    type Scope = RawScope;

    fn label(&self) -> String {
        self.label.into()
    }

    fn create(&self) -> RawScope {
        let sid = fresh_id();
        let now = self.now();
        let deadline = now + idle_micros();
        self.write(|t| {
            t.insert(
                meta_key(&sid).as_slice(),
                meta_value(now, now, deadline).as_slice(),
            )
            .expect("insert");
            t.insert(index_key(deadline, &sid).as_slice(), &[][..])
                .expect("insert");
        });
        RawScope::new(sid, None, now, deadline)
    }

    fn open(&self, sid: &str, component: Option<&str>) -> RawScope {
        let (created, deadline) = self.live(sid, self.now()).expect("a live session");
        RawScope::new(
            sid.to_owned(),
            component.map(str::to_owned),
            created,
            deadline,
        )
    }

    fn sid<'a>(&self, scope: &'a RawScope) -> &'a str {
        scope.sid()
    }

    fn save(&self, scope: &mut RawScope, values: &[(&str, Vec<u8>)]) {
        let now = self.now();
        let deadline = now + idle_micros();
        let (sid, component, created, old) = scope.parts();
        let prefix = scope_prefix(sid, component);
        self.write(|t| {
            for (key, value) in values {
                let mut k = prefix.clone();
                k.extend_from_slice(key.as_bytes());
                t.insert(k.as_slice(), value.as_slice()).expect("insert");
            }
            // The scope's version record, under the scope prefix itself, as
            // every store save that writes a scope puts it.
            if !values.is_empty() {
                t.insert(prefix.as_slice(), &now.to_be_bytes()[..])
                    .expect("insert");
            }
            t.insert(
                meta_key(sid).as_slice(),
                meta_value(created, now, deadline).as_slice(),
            )
            .expect("insert");
            if deadline != old {
                t.remove(index_key(old, sid).as_slice()).expect("remove");
                t.insert(index_key(deadline, sid).as_slice(), &[][..])
                    .expect("insert");
            }
        });
        scope.set_deadline(deadline);
    }

    fn get(&self, sid: &str, component: Option<&str>) -> usize {
        let txn = self.db.begin_read().expect("begin_read");
        let table = txn.open_table(TABLE).expect("open_table");
        let prefix = scope_prefix(sid, component);
        let mut n = 0;
        for item in table.range(prefix.as_slice()..).expect("range") {
            let (k, v) = item.expect("range");
            if !k.value().starts_with(&prefix) {
                break;
            }
            std::hint::black_box(v.value());
            // The scope's version record is read with the values, as the
            // store's get reads it, but is not one of them.
            n += usize::from(k.value() != prefix.as_slice());
        }
        n
    }

    fn destroy(&self, sid: &str) -> bool {
        let now = self.now();
        self.write(|t| {
            let mut live = false;
            let meta = meta_key(sid);
            for (key, value) in scan_prefix(t, &meta) {
                if key == meta {
                    let (_, deadline) = parse_meta(&value);
                    live = now < deadline;
                    t.remove(index_key(deadline, sid).as_slice())
                        .expect("remove");
                }
                t.remove(key.as_slice()).expect("remove");
            }
            live
        })
    }

    fn touch(&self, sid: &str) -> bool {
        let now = self.now();
        self.write(|t| {
            let Some(v) = t.get(meta_key(sid).as_slice()).expect("get") else {
                return false;
            };
            let (created, old) = parse_meta(v.value());
            drop(v);
            if now >= old {
                return false;
            }
            let deadline = now + idle_micros();
            t.insert(
                meta_key(sid).as_slice(),
                meta_value(created, now, deadline).as_slice(),
            )
            .expect("insert");
            if deadline != old {
                t.remove(index_key(old, sid).as_slice()).expect("remove");
                t.insert(index_key(deadline, sid).as_slice(), &[][..])
                    .expect("insert");
            }
            true
        })
    }

    fn regenerate(&self, sid: &str) -> String {
        let now = self.now();
        let new_sid = fresh_id();
        let deadline = now + idle_micros();
        let old_meta = meta_key(sid);
        self.write(|t| {
            for (key, value) in scan_prefix(t, &old_meta) {
                let mut moved = meta_key(&new_sid);
                moved.extend_from_slice(&key[old_meta.len()..]);
                if key == old_meta {
                    let (created, old_deadline) = parse_meta(&value);
                    t.remove(index_key(old_deadline, sid).as_slice())
                        .expect("remove");
                    t.insert(
                        moved.as_slice(),
                        meta_value(created, now, deadline).as_slice(),
                    )
                    .expect("insert");
                } else {
                    t.insert(moved.as_slice(), value.as_slice())
                        .expect("insert");
                }
                t.remove(key.as_slice()).expect("remove");
            }
            t.insert(index_key(deadline, &new_sid).as_slice(), &[][..])
                .expect("insert");
        });
        new_sid
    }

    /// One write transaction deletes every expired session, as SQLite's
    /// one `DELETE … WHERE deadline <= ?` does.
    fn reap(&self) -> usize {
        let end = index_key(self.now().saturating_add(1), "");
        self.write(|t| {
            let due: Vec<Vec<u8>> = t
                .range(&b"!"[..]..end.as_slice())
                .expect("range")
                .map(|item| item.expect("range").0.value().to_vec())
                .collect();
            for index in &due {
                let sid = std::str::from_utf8(&index[9..]).expect("an id");
                // Every key of the session, `{sid}/` up to `{sid}0` ('/' + 1),
                // by redb's range removal: the cheapest way raw redb has.
                let start = meta_key(sid);
                let mut end = start.clone();
                if let Some(last) = end.last_mut() {
                    *last = b'0';
                }
                t.retain_in(start.as_slice()..end.as_slice(), |_, _| false)
                    .expect("retain_in");
                t.remove(index.as_slice()).expect("remove");
            }
            due.len()
        })
    }

    fn flush(&self) {
        let mut txn = self.db.begin_write().expect("begin_write");
        txn.set_durability(Durability::Immediate)
            .expect("set_durability");
        txn.commit().expect("commit");
    }

    fn dir(&self) -> &Path {
        &self.path
    }
}

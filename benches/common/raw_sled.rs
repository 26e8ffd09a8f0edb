//! The floor: raw sled 0.34 doing the same writes as the store, with the
//! same key shapes (a save puts the scope's version record beside its
//! values, as the store's save does), but without the store's liveness
//! checks, locks, codec or commit thread. One `apply_batch` per operation, `scan_prefix` for a read,
//! and in durable mode one `flush` after every batch.
//!
//! The metadata value is three big-endian u64s (created, last access,
//! deadline) instead of the store's bincode record.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sessionstore::Clock;

use super::contender::{Contender, Mode, fresh_id, idle_micros, now_micros};
use super::raw_keys::{index_key, meta_key, meta_value, parse_meta, scope_prefix};

/// A sled database configured as the store configures its own.
pub struct RawSled {
    db: sled::Db,
    durable: bool,
    clock: Arc<dyn Clock>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

/// An open scope: its session, its component, and the deadline read with it.
/// Raw redb uses it too.
pub struct RawScope {
    sid: String,
    component: Option<String>,
    created: u64,
    deadline: u64,
}

impl RawScope {
    /// A scope of `sid` read at `deadline`.
    pub fn new(sid: String, component: Option<String>, created: u64, deadline: u64) -> Self {
        RawScope {
            sid,
            component,
            created,
            deadline,
        }
    }

    /// Its session id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// Id, component, creation time and deadline.
    pub fn parts(&self) -> (&str, Option<&str>, u64, u64) {
        (
            &self.sid,
            self.component.as_deref(),
            self.created,
            self.deadline,
        )
    }

    /// Notes the deadline a save wrote.
    pub fn set_deadline(&mut self, deadline: u64) {
        self.deadline = deadline;
    }
}

impl RawSled {
    /// A new, empty database: 64 MiB cache, like the store's default.
    pub fn new(mode: Mode, clock: Arc<dyn Clock>) -> Self {
        Self::with_cache(mode, clock, 64 << 20)
    }

    /// A new, empty database with `cache` bytes of cache.
    pub fn with_cache(mode: Mode, clock: Arc<dyn Clock>, cache: u64) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("sled");
        let durable = mode == Mode::Durable;
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(cache)
            .flush_every_ms(if durable { None } else { Some(1000) })
            .open()
            .expect("opening sled");
        RawSled {
            db,
            durable,
            clock,
            path,
            _dir: dir,
        }
    }

    fn now(&self) -> u64 {
        now_micros(&self.clock)
    }

    fn apply(&self, batch: sled::Batch) {
        self.db.apply_batch(batch).expect("apply_batch");
        if self.durable {
            self.db.flush().expect("flush");
        }
    }

    /// (created, deadline) of `sid` if it is live now.
    fn live(&self, sid: &str, now: u64) -> Option<(u64, u64)> {
        let v = self.db.get(meta_key(sid)).expect("get")?;
        let (created, deadline) = parse_meta(&v);
        (now < deadline).then_some((created, deadline))
    }
}

impl Contender for RawSled {
    type Scope = RawScope;

    fn label(&self) -> String {
        "raw sled".into()
    }

    fn create(&self) -> RawScope {
        let sid = fresh_id();
        let now = self.now();
        let deadline = now + idle_micros();
        let mut batch = sled::Batch::default();
        batch.insert(meta_key(&sid), meta_value(now, now, deadline));
        batch.insert(index_key(deadline, &sid), Vec::new());
        self.apply(batch);
        RawScope {
            sid,
            component: None,
            created: now,
            deadline,
        }
    }

    fn open(&self, sid: &str, component: Option<&str>) -> RawScope {
        let (created, deadline) = self.live(sid, self.now()).expect("a live session");
        RawScope {
            sid: sid.to_owned(),
            component: component.map(str::to_owned),
            created,
            deadline,
        }
    }

    fn sid<'a>(&self, scope: &'a RawScope) -> &'a str {
        &scope.sid
    }

    fn save(&self, scope: &mut RawScope, values: &[(&str, Vec<u8>)]) {
        let now = self.now();
        let deadline = now + idle_micros();
        let prefix = scope_prefix(&scope.sid, scope.component.as_deref());
        let mut batch = sled::Batch::default();
        for (key, value) in values {
            let mut k = prefix.clone();
            k.extend_from_slice(key.as_bytes());
            batch.insert(k, value.as_slice());
        }
        // The scope's version record, under the scope prefix itself, as
        // every store save that writes a scope puts it.
        if !values.is_empty() {
            batch.insert(prefix.as_slice(), &now.to_be_bytes()[..]);
        }
        batch.insert(
            meta_key(&scope.sid),
            meta_value(scope.created, now, deadline),
        );
        if deadline != scope.deadline {
            batch.remove(index_key(scope.deadline, &scope.sid));
            batch.insert(index_key(deadline, &scope.sid), Vec::new());
        }
        self.apply(batch);
        scope.deadline = deadline;
    }

    fn get(&self, sid: &str, component: Option<&str>) -> usize {
        let prefix = scope_prefix(sid, component);
        let entries: Vec<(sled::IVec, sled::IVec)> = self
            .db
            .scan_prefix(&prefix)
            .collect::<Result<_, _>>()
            .expect("scan_prefix");
        // The scope's version record is read with the values, as the
        // store's get reads it, but is not one of them.
        entries
            .iter()
            .filter(|(k, _)| k.as_ref() != prefix.as_slice())
            .count()
    }

    fn destroy(&self, sid: &str) -> bool {
        let now = self.now();
        let mut batch = sled::Batch::default();
        let mut live = false;
        for entry in self.db.scan_prefix(meta_key(sid)) {
            let (key, value) = entry.expect("scan_prefix");
            if *key == *meta_key(sid) {
                let (_, deadline) = parse_meta(&value);
                live = now < deadline;
                batch.remove(index_key(deadline, sid));
            }
            batch.remove(key);
        }
        self.apply(batch);
        live
    }

    fn touch(&self, sid: &str) -> bool {
        let now = self.now();
        let Some((created, old)) = self.live(sid, now) else {
            return false;
        };
        let deadline = now + idle_micros();
        let mut batch = sled::Batch::default();
        batch.insert(meta_key(sid), meta_value(created, now, deadline));
        if deadline != old {
            batch.remove(index_key(old, sid));
            batch.insert(index_key(deadline, sid), Vec::new());
        }
        self.apply(batch);
        true
    }

    fn regenerate(&self, sid: &str) -> String {
        let now = self.now();
        let new_sid = fresh_id();
        let deadline = now + idle_micros();
        let old_meta = meta_key(sid);
        let mut batch = sled::Batch::default();
        for entry in self.db.scan_prefix(&old_meta) {
            let (key, value) = entry.expect("scan_prefix");
            let mut moved = meta_key(&new_sid);
            moved.extend_from_slice(&key[old_meta.len()..]);
            if *key == *old_meta {
                let (created, old_deadline) = parse_meta(&value);
                batch.remove(index_key(old_deadline, sid));
                batch.insert(moved, meta_value(created, now, deadline));
            } else {
                batch.insert(moved, value);
            }
            batch.remove(key);
        }
        batch.insert(index_key(deadline, &new_sid), Vec::new());
        self.apply(batch);
        new_sid
    }

    fn reap(&self) -> usize {
        let end = index_key(self.now().saturating_add(1), "");
        let due: Vec<sled::IVec> = self
            .db
            .range(&b"!"[..]..&end[..])
            .keys()
            .collect::<Result<_, _>>()
            .expect("range");
        for index in &due {
            let sid = std::str::from_utf8(&index[9..]).expect("an id");
            let mut batch = sled::Batch::default();
            for key in self.db.scan_prefix(meta_key(sid)).keys() {
                batch.remove(key.expect("scan_prefix"));
            }
            batch.remove(index);
            self.db.apply_batch(batch).expect("apply_batch");
        }
        self.db.flush().expect("flush");
        due.len()
    }

    fn flush(&self) {
        self.db.flush().expect("flush");
    }

    fn dir(&self) -> &Path {
        &self.path
    }
}

//! What a user would pick instead: SQLite through rusqlite, in WAL mode, with
//! the schema of a typical SQL session backend (Django's database backend,
//! tower-sessions' SQLite store), split per key so that a save writes only
//! the dirty keys: a data table keyed by `(sid, component, key)` and a
//! metadata table with an index on the deadline.
//!
//! Writes go through one connection behind a mutex, reads through a pool of
//! connections (WAL lets them run beside the writer). One writer connection
//! is what SQLite does best: several would only take turns on its write
//! lock, sleeping in the busy handler between tries.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use sessionstore::Clock;

use super::contender::{Contender, Mode, fresh_id, idle_micros, now_micros};

/// The tables and the index, created if missing.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS session_meta (
    sid TEXT PRIMARY KEY NOT NULL,
    created INTEGER NOT NULL,
    last_access INTEGER NOT NULL,
    deadline INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS session_meta_deadline ON session_meta (deadline);
CREATE TABLE IF NOT EXISTS session_data (
    sid TEXT NOT NULL,
    component TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (sid, component, key)
) WITHOUT ROWID;
";

/// A SQLite database in WAL mode.
pub struct Sqlite {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    mode: Mode,
    clock: Arc<dyn Clock>,
    path: PathBuf,
    dir: tempfile::TempDir,
}

/// An open scope: its session and component.
pub struct SqlScope {
    sid: String,
    component: String,
}

fn to_i64(micros: u64) -> i64 {
    i64::try_from(micros).unwrap_or(i64::MAX)
}

/// The database file in the contender's directory.
pub const FILE: &str = "sessions.sqlite3";

impl Sqlite {
    /// A new, empty database: `synchronous=FULL` in durable mode, `NORMAL` otherwise.
    pub fn new(mode: Mode, clock: Arc<dyn Clock>) -> Self {
        Self::open_in(
            tempfile::tempdir().expect("a temporary directory"),
            mode,
            clock,
        )
    }

    /// The database in `dir` ([`FILE`]), created if it is not there yet;
    /// the directory goes with the contender.
    pub fn open_in(dir: tempfile::TempDir, mode: Mode, clock: Arc<dyn Clock>) -> Self {
        let path = dir.path().join(FILE);
        let writer = connect(&path, mode);
        writer.execute_batch(SCHEMA).expect("creating the schema");
        Sqlite {
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            mode,
            clock,
            path,
            dir,
        }
    }

    /// Closes every connection and gives the directory back, to open again.
    pub fn into_dir(self) -> tempfile::TempDir {
        self.dir
    }

    fn now(&self) -> i64 {
        to_i64(now_micros(&self.clock))
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        let pooled = self.readers.lock().expect("the reader pool").pop();
        let conn = pooled.unwrap_or_else(|| connect(&self.path, self.mode));
        let out = f(&conn);
        self.readers.lock().expect("the reader pool").push(conn);
        out
    }
}

/// A connection in WAL mode with the contender's pragmas for `mode`.
pub fn connect(path: &Path, mode: Mode) -> Connection {
    let conn = Connection::open(path).expect("opening SQLite");
    let sync = match mode {
        Mode::Background => "NORMAL",
        Mode::Durable => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA cache_size = -65536;"
    ))
    .expect("setting the pragmas");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy_timeout");
    conn
}

impl Contender for Sqlite {
    type Scope = SqlScope;

    fn label(&self) -> String {
        "SQLite".into()
    }

    fn create(&self) -> SqlScope {
        let sid = fresh_id();
        let now = self.now();
        let deadline = now + to_i64(idle_micros());
        let conn = self.writer.lock().expect("the writer");
        conn.prepare_cached(
            "INSERT INTO session_meta (sid, created, last_access, deadline) VALUES (?1, ?2, ?2, ?3)",
        )
        .expect("prepare")
        .execute(params![sid, now, deadline])
        .expect("insert");
        SqlScope {
            sid,
            component: String::new(),
        }
    }

    fn open(&self, sid: &str, component: Option<&str>) -> SqlScope {
        SqlScope {
            sid: sid.to_owned(),
            component: component.unwrap_or("").to_owned(),
        }
    }

    fn sid<'a>(&self, scope: &'a SqlScope) -> &'a str {
        &scope.sid
    }

    fn save(&self, scope: &mut SqlScope, values: &[(&str, Vec<u8>)]) {
        let now = self.now();
        let deadline = now + to_i64(idle_micros());
        let mut conn = self.writer.lock().expect("the writer");
        let tx = conn.transaction().expect("begin");
        let live = tx
            .prepare_cached(
                "UPDATE session_meta SET last_access = ?2, deadline = ?3 WHERE sid = ?1 AND deadline > ?2",
            )
            .expect("prepare")
            .execute(params![scope.sid, now, deadline])
            .expect("update");
        assert_eq!(live, 1, "saving a session that is not live");
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO session_data (sid, component, key, value) VALUES (?1, ?2, ?3, ?4)",
                )
                .expect("prepare");
            for (key, value) in values {
                put.execute(params![scope.sid, scope.component, key, value])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }

    fn get(&self, sid: &str, component: Option<&str>) -> usize {
        let now = self.now();
        self.with_reader(|conn| {
            let deadline: Option<i64> = conn
                .prepare_cached("SELECT deadline FROM session_meta WHERE sid = ?1")
                .expect("prepare")
                .query_row(params![sid], |row| row.get(0))
                .optional()
                .expect("select");
            if deadline.is_none_or(|d| now >= d) {
                return 0;
            }
            let mut stmt = conn
                .prepare_cached(
                    "SELECT key, value FROM session_data WHERE sid = ?1 AND component = ?2",
                )
                .expect("prepare");
            let rows: Vec<(String, Vec<u8>)> = stmt
                .query_map(params![sid, component.unwrap_or("")], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .expect("select")
                .collect::<Result<_, _>>()
                .expect("rows");
            rows.len()
        })
    }

    fn destroy(&self, sid: &str) -> bool {
        let now = self.now();
        let mut conn = self.writer.lock().expect("the writer");
        let tx = conn.transaction().expect("begin");
        let deadline: Option<i64> = tx
            .prepare_cached("SELECT deadline FROM session_meta WHERE sid = ?1")
            .expect("prepare")
            .query_row(params![sid], |row| row.get(0))
            .optional()
            .expect("select");
        tx.prepare_cached("DELETE FROM session_data WHERE sid = ?1")
            .expect("prepare")
            .execute(params![sid])
            .expect("delete");
        tx.prepare_cached("DELETE FROM session_meta WHERE sid = ?1")
            .expect("prepare")
            .execute(params![sid])
            .expect("delete");
        tx.commit().expect("commit");
        deadline.is_some_and(|d| now < d)
    }

    fn touch(&self, sid: &str) -> bool {
        let now = self.now();
        let deadline = now + to_i64(idle_micros());
        let conn = self.writer.lock().expect("the writer");
        let n = conn
            .prepare_cached(
                "UPDATE session_meta SET last_access = ?2, deadline = ?3 WHERE sid = ?1 AND deadline > ?2",
            )
            .expect("prepare")
            .execute(params![sid, now, deadline])
            .expect("update");
        n == 1
    }

    fn regenerate(&self, sid: &str) -> String {
        let now = self.now();
        let deadline = now + to_i64(idle_micros());
        let new_sid = fresh_id();
        let mut conn = self.writer.lock().expect("the writer");
        let tx = conn.transaction().expect("begin");
        let moved = tx
            .prepare_cached(
                "UPDATE session_meta SET sid = ?2, last_access = ?3, deadline = ?4 WHERE sid = ?1 AND deadline > ?3",
            )
            .expect("prepare")
            .execute(params![sid, new_sid, now, deadline])
            .expect("update");
        assert_eq!(moved, 1, "regenerating a session that is not live");
        tx.prepare_cached("UPDATE session_data SET sid = ?2 WHERE sid = ?1")
            .expect("prepare")
            .execute(params![sid, new_sid])
            .expect("update");
        tx.commit().expect("commit");
        new_sid
    }

    fn reap(&self) -> usize {
        let now = self.now();
        let mut conn = self.writer.lock().expect("the writer");
        let tx = conn.transaction().expect("begin");
        tx.prepare_cached(
            "DELETE FROM session_data WHERE sid IN (SELECT sid FROM session_meta WHERE deadline <= ?1)",
        )
        .expect("prepare")
        .execute(params![now])
        .expect("delete");
        let n = tx
            .prepare_cached("DELETE FROM session_meta WHERE deadline <= ?1")
            .expect("prepare")
            .execute(params![now])
            .expect("delete");
        tx.commit().expect("commit");
        n
    }

    fn flush(&self) {
        let conn = self.writer.lock().expect("the writer");
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("checkpoint");
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }
}

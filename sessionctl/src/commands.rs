//! Opening the store and running each command except export and import.

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use serde_json::{Value, json};
use sessionstore::{Config, Durability, Engine, Error, ExportedScope, ExportedSession, Store};

use crate::Fail;
use crate::args::Cli;
use crate::render::{self, Table, micros, preview};
use crate::target::Target;

/// The lock file every store directory holds; a directory holding only it has no store.
const LOCK_FILE: &str = "sessionstore.lock";

/// What a command does to the store: decides how a live store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// It only reads: on a store the application has open, it opens it read-only.
    Read,
    /// It writes (the command is named): on a live store it fails.
    Write(&'static str),
}

/// Opens the existing store at `db` for a command other than `import`,
/// with no reaper thread. Never creates a store: a missing directory, an empty
/// one, or one that holds only the lock file is refused.
///
/// A store that another process (the application) has open is opened
/// read-only for a command that only reads (redb; sled cannot, and says so),
/// and refused for one that writes.
pub fn open(cli: &Cli, db: &Path, access: Access) -> Result<Store, Fail> {
    if !store_present(db) {
        return Err(Fail(format!(
            "no store at {}: the directory does not exist, or holds no store",
            db.display()
        )));
    }
    match open_or_create(cli, db, Durability::Immediate, None) {
        Err(Opening::InUse) => match access {
            Access::Read => open_live(cli, db),
            Access::Write(command) => Err(in_use(db, command)),
        },
        Err(Opening::Other(fail)) => Err(fail),
        Ok(store) => Ok(store),
    }
}

/// The one line for a command that writes to a store the application has open.
pub fn in_use(db: &Path, command: &str) -> Fail {
    Fail(format!(
        "the store at {} is in use by another process (the application); `{command}` writes, and writes need the application stopped (or go through the application's own API)",
        db.display()
    ))
}

/// Opens the store at `db`, which another process has open, read-only.
fn open_live(cli: &Cli, db: &Path) -> Result<Store, Fail> {
    let mut config = Config::new(db).read_only(true);
    if let Some(engine) = cli.engine {
        config = config.engine(engine);
    }
    match config.open() {
        Ok(store) => Ok(store),
        Err(Error::ReadOnlyUnsupported { engine, .. }) => Err(Fail(format!(
            "the store at {} is in use by another process (the application), and it is a {engine} store: {engine} lets one process at a time open its files, so stop the application to inspect it",
            db.display()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Why `open_or_create` failed: the store is in use, or anything else.
pub enum Opening {
    /// Another handle or process has the store open.
    InUse,
    /// Any other failure, as its one line.
    Other(Fail),
}

impl Opening {
    /// The one line for `command`, which writes to the store at `db`.
    pub fn for_write(self, db: &Path, command: &str) -> Fail {
        match self {
            Opening::Other(fail) => fail,
            Opening::InUse => in_use(db, command),
        }
    }
}

/// Opens the store at `db` with no reaper thread, creating it if there is
/// none. Without `--engine`, an existing store is opened with whichever engine
/// it was made with, and a new one gets the default engine.
pub fn open_or_create(
    cli: &Cli,
    db: &Path,
    durability: Durability,
    max_value_size: Option<usize>,
) -> Result<Store, Opening> {
    let config = |engine: Option<Engine>| {
        let mut config = Config::new(db).durability(durability).reap_interval(None);
        if let Some(bytes) = max_value_size {
            config = config.max_value_size(bytes);
        }
        if let Some(engine) = engine {
            config = config.engine(engine);
        }
        config
    };
    match (config(cli.engine).open(), cli.engine) {
        (Ok(store), _) => Ok(store),
        (Err(Error::InUse { .. }), _) => Err(Opening::InUse),
        (Err(e @ Error::NotAStore { .. }), Some(wanted)) => {
            // Perhaps a store of another engine: name the flag that opens it.
            // Opening with another engine creates nothing where no store is.
            for other in Engine::ALL.iter().filter(|e| **e != wanted) {
                if config(Some(*other)).open().is_ok() {
                    return Err(Opening::Other(Fail(format!(
                        "{} holds a {other} store, not a {wanted} one; use --engine {other}, or leave --engine out",
                        db.display()
                    ))));
                }
            }
            Err(Opening::Other(e.into()))
        }
        (Err(e), _) => Err(Opening::Other(e.into())),
    }
}

/// Whether `path` may hold a store: it exists and is not an empty directory
/// nor one holding only the lock file. Anything else, files included, is left
/// to the store to judge.
pub fn store_present(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        Ok(m) if m.is_dir() => std::fs::read_dir(path).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|entry| entry.file_name() != LOCK_FILE)
        }),
        Ok(_) => true,
    }
}

/// Prints JSON or text.
pub fn emit(cli: &Cli, json: Value, text: impl FnOnce() -> String) {
    if cli.json {
        println!("{json}");
    } else {
        print!("{}", text());
    }
}

/// `stats`.
pub fn stats(cli: &Cli, target: &Target) -> Result<(), Fail> {
    let mut expired = 0u64;
    for id in target.expired_ids() {
        id?;
        expired += 1;
    }
    // Only infallible in a build without the feature redis.
    #[allow(clippy::infallible_destructuring_match)]
    let store = match target {
        Target::Embedded(store) => store,
        #[cfg(feature = "redis")]
        Target::Redis { url, namespace, .. } => {
            let live = target.live_sessions()?;
            let json = json!({
                "redis": url,
                "namespace": namespace,
                "engine": "redis",
                "live_sessions": live,
                "expired_sessions": expired,
            });
            emit(cli, json, || {
                render::pairs(&[
                    ("redis", url.clone()),
                    ("namespace", namespace.clone()),
                    ("engine", "redis".to_owned()),
                    ("live sessions", live.to_string()),
                    ("expired, still stored", expired.to_string()),
                ])
            });
            return Ok(());
        }
    };
    let stats = store.stats()?;
    let engine = stats.engine.map_or("redis", |e| e.name());
    let json = json!({
        "path": store.path(),
        "engine": engine,
        "live_sessions": stats.live_sessions,
        "expired_sessions": expired,
        "bytes_on_disk": stats.bytes_on_disk,
    });
    emit(cli, json, || {
        render::pairs(&[
            ("path", store.path().display().to_string()),
            ("engine", engine.to_owned()),
            ("live sessions", stats.live_sessions.to_string()),
            ("expired, not reaped", expired.to_string()),
            ("bytes on disk", stats.bytes_on_disk.to_string()),
        ])
    });
    Ok(())
}

/// `list`.
pub fn list(cli: &Cli, store: &Target, limit: Option<usize>, expired: bool) -> Result<(), Fail> {
    let ids = if expired {
        store.expired_ids()
    } else {
        store.live_ids()
    };
    let mut sessions = Vec::new();
    // On a live store (opened read-only) the application writes meanwhile: a
    // session saved during the walk moves to a later deadline and is met
    // again (listed once), and one deleted before it is read is skipped.
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if sessions.len() >= limit.unwrap_or(usize::MAX) {
            break;
        }
        let id = id?;
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Some(s) = store.export_session(&id)? {
            sessions.push(s);
        }
    }
    let json = Value::Array(
        sessions
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "created_us": micros(s.created),
                    "last_access_us": micros(s.last_access),
                    "deadline_us": s.deadline().map(micros),
                    "components": components(s),
                    "keys": key_count(s),
                })
            })
            .collect(),
    );
    emit(cli, json, || {
        if sessions.is_empty() {
            let what = if expired { "expired" } else { "live" };
            return format!("no {what} sessions\n");
        }
        let mut table = Table::new(&[
            "ID",
            "CREATED",
            "LAST ACCESS",
            "DEADLINE",
            "KEYS",
            "COMPONENTS",
        ]);
        for s in &sessions {
            table.row(vec![
                s.id.clone(),
                render::time(s.created),
                render::time(s.last_access),
                render::time_or_never(s.deadline()),
                key_count(s).to_string(),
                components(s).join(","),
            ]);
        }
        table.render()
    });
    Ok(())
}

fn components(s: &ExportedSession) -> Vec<&str> {
    s.scopes
        .iter()
        .filter_map(|scope| scope.component.as_deref())
        .collect()
}

fn key_count(s: &ExportedSession) -> usize {
    s.scopes.iter().map(|scope| scope.values.len()).sum()
}

/// Which scopes `show` prints.
#[derive(Debug, Clone, Copy)]
pub enum ScopeFilter<'a> {
    /// Every scope.
    All,
    /// The global scope.
    Global,
    /// One component's scope.
    Component(&'a str),
}

impl ScopeFilter<'_> {
    fn admits(self, component: Option<&str>) -> bool {
        match self {
            ScopeFilter::All => true,
            ScopeFilter::Global => component.is_none(),
            ScopeFilter::Component(c) => component == Some(c),
        }
    }
}

/// `show`: also shows a session that expired but is not reaped yet, marked so.
pub fn show(cli: &Cli, store: &Target, sid: &str, filter: ScopeFilter<'_>) -> Result<(), Fail> {
    if let ScopeFilter::Component(c) = filter {
        // The store's input rules for a component name, checked through a scope
        // that holds nothing.
        let probe = SystemTime::UNIX_EPOCH;
        ExportedSession::new(sid, probe, probe)
            .with_scope(ExportedScope::new(Some(c.to_owned())))
            .validate(0)?;
    }
    let Some(s) = store.export_session(sid)? else {
        return Err(Fail(format!("no session {sid:?} in the store")));
    };
    let live = s.deadline().is_none_or(|d| SystemTime::now() < d);
    let scopes: Vec<_> = s
        .scopes
        .iter()
        .filter(|scope| filter.admits(scope.component.as_deref()))
        .collect();
    let json = json!({
        "id": s.id,
        "live": live,
        "created_us": micros(s.created),
        "last_access_us": micros(s.last_access),
        "idle_timeout_us": s.idle_timeout.map(render::duration_micros),
        "absolute_deadline_us": s.absolute_deadline.map(micros),
        "deadline_us": s.deadline().map(micros),
        "scopes": scopes.iter().map(|scope| json!({
            "component": scope.component,
            "keys": scope.values.iter().map(|(key, bytes)| {
                let p = preview(scope, key);
                json!({
                    "key": key,
                    "size": bytes.len(),
                    "kind": p.kind(),
                    "preview": p.body(),
                    "value_base64": base64_of(bytes),
                })
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let mut json = json;
    if let Some(name) = &s.principal {
        json["principal"] = json!(name);
    }
    emit(cli, json, || {
        let mut pairs = vec![
            ("session", s.id.clone()),
            ("state", if live { "live" } else { "expired" }.to_owned()),
            ("created", render::time(s.created)),
            ("last access", render::time(s.last_access)),
            (
                "idle timeout",
                s.idle_timeout
                    .map_or_else(|| "none".into(), render::duration),
            ),
            (
                "absolute deadline",
                render::time_or_never(s.absolute_deadline),
            ),
            ("deadline", render::time_or_never(s.deadline())),
        ];
        if let Some(name) = &s.principal {
            pairs.push(("principal", name.clone()));
        }
        let mut out = render::pairs(&pairs);
        out.push('\n');
        let rows: usize = scopes.iter().map(|scope| scope.values.len()).sum();
        if rows == 0 {
            out.push_str("no keys\n");
            return out;
        }
        let mut table = Table::new(&["SCOPE", "KEY", "SIZE", "VALUE"]);
        for scope in &scopes {
            for (key, bytes) in &scope.values {
                table.row(vec![
                    scope.component.as_deref().unwrap_or("(global)").to_owned(),
                    key.clone(),
                    bytes.len().to_string(),
                    preview(scope, key).shown(),
                ]);
            }
        }
        out.push_str(&table.render());
        out
    });
    Ok(())
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `destroy`: deletes a live session, or an expired one that is not reaped
/// yet, and says which; fails only if there was no session to delete.
pub fn destroy(cli: &Cli, store: &Target, sid: &str) -> Result<(), Fail> {
    // The CLI holds an embedded store's lock, so the session found here is
    // the one deleted; whether it was live is the store's own answer. (On
    // Redis an application may destroy it in between; then it was not live.)
    if store.export_session(sid)?.is_none() {
        return Err(Fail(format!("no session {sid:?} in the store")));
    }
    let was_live = store.api().destroy(sid)?;
    let state = if was_live { "live" } else { "expired" };
    emit(cli, json!({ "destroyed": sid, "state": state }), || {
        if was_live {
            format!("destroyed session {sid}\n")
        } else {
            format!("destroyed session {sid}, which had expired but was not reaped yet\n")
        }
    });
    Ok(())
}

/// `sessions-of`.
pub fn sessions_of(cli: &Cli, store: &Target, name: &str) -> Result<(), Fail> {
    let sids = store.api().sessions_of(name)?;
    emit(cli, json!({ "principal": name, "sessions": sids }), || {
        if sids.is_empty() {
            format!("no live sessions of {name:?}\n")
        } else {
            sids.iter().map(|s| format!("{s}\n")).collect()
        }
    });
    Ok(())
}

/// `destroy-all-of`.
pub fn destroy_all_of(cli: &Cli, store: &Target, name: &str) -> Result<(), Fail> {
    let n = store.api().destroy_all_of(name)?;
    emit(cli, json!({ "principal": name, "destroyed": n }), || {
        format!("destroyed {n} live sessions of {name:?}\n")
    });
    Ok(())
}

/// `reap`.
pub fn reap(cli: &Cli, store: &Store) -> Result<(), Fail> {
    let n = store.reap_expired()?;
    emit(cli, json!({ "reaped": n }), || {
        format!("reaped {n} expired sessions\n")
    });
    Ok(())
}

/// `verify`: prints the library's report, and fails if the store is not clean.
pub fn verify(cli: &Cli, store: &Store) -> Result<(), Fail> {
    let r = store.verify()?;
    let problems = r.orphans.len()
        + r.dangling_index.len()
        + r.missing_index.len()
        + r.undecodable.len()
        + r.dangling_principal.len()
        + r.missing_principal.len();
    let json = json!({
        "clean": r.is_ok(),
        "sessions": r.sessions,
        "keys": r.keys,
        "index_entries": r.index_entries,
        "orphans": r.orphans,
        "dangling_index": r.dangling_index,
        "missing_index": r.missing_index,
        "undecodable": r.undecodable,
        "principal_entries": r.principal_entries,
        "dangling_principal": r.dangling_principal,
        "missing_principal": r.missing_principal,
    });
    emit(cli, json, || {
        let mut out = render::pairs(&[
            (
                "state",
                if r.is_ok() { "clean" } else { "NOT clean" }.to_owned(),
            ),
            ("sessions", r.sessions.to_string()),
            ("keys", r.keys.to_string()),
            ("index entries", r.index_entries.to_string()),
        ]);
        let lists = [
            ("orphan key", &r.orphans),
            ("dangling index entry", &r.dangling_index),
            ("missing index entry", &r.missing_index),
            ("undecodable", &r.undecodable),
            ("dangling principal entry", &r.dangling_principal),
            ("missing principal entry", &r.missing_principal),
        ];
        for (what, items) in lists {
            for item in items {
                let _ = writeln!(out, "{what}: {item}");
            }
        }
        out
    });
    if r.is_ok() {
        Ok(())
    } else {
        Err(Fail(format!(
            "the store at {} is not clean: {problems} problems",
            store.path().display()
        )))
    }
}

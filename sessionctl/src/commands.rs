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
/// The control socket a running store serves, left behind by a crash.
const SOCKET: &str = "sessionstore.sock";

/// Opens the existing store at `db` for a command other than `import`,
/// with no reaper thread and no control socket. Never creates a store: a
/// missing directory, an empty one, or one that holds only the lock file is
/// refused.
///
/// A store that another process (the application) has open is reached
/// through that process's control socket, for every command.
pub fn open(cli: &Cli, db: &Path) -> Result<Target, Fail> {
    if !store_present(db) {
        return Err(Fail(format!(
            "no store at {}: the directory does not exist, or holds no store",
            db.display()
        )));
    }
    match open_or_create(cli, db, Durability::Immediate, None) {
        Ok(store) => Ok(Target::Embedded(store)),
        Err(Opening::InUse) => live(cli, db),
        Err(Opening::Other(fail)) => Err(fail),
    }
}

/// The one line for `import` on a store the application has open.
pub fn in_use(db: &Path, command: &str) -> Fail {
    Fail(format!(
        "the store at {} is in use by another process (the application); `{command}` needs the application stopped (the control socket serves no imports, see docs/control.md)",
        db.display()
    ))
}

/// Connects to the control socket of the store at `db`, which another
/// process has open.
#[cfg(unix)]
fn live(cli: &Cli, db: &Path) -> Result<Target, Fail> {
    use std::io::ErrorKind;
    let mut client = match sessionstore::ControlClient::connect(db) {
        Ok(client) => client,
        Err(Error::Io { source, path }) => {
            return Err(Fail(match source.kind() {
                ErrorKind::NotFound | ErrorKind::ConnectionRefused => format!(
                    "the store at {} is in use by another process (the application), which serves no control socket; turn it on in the application (Config::control_socket(true), the default on Unix) and restart it, or stop the application and run sessionctl again",
                    db.display()
                ),
                ErrorKind::PermissionDenied => format!(
                    "the store at {} is in use by another process (the application), and its control socket {} is not open to this user: only the store's owner and root may operate it",
                    db.display(),
                    path.display()
                ),
                _ => format!(
                    "the store at {} is in use by another process (the application), and its control socket {} cannot be reached: {source}",
                    db.display(),
                    path.display()
                ),
            }));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(wanted) = cli.engine {
        let found = client.stats()?.engine;
        if found.is_some_and(|f| f != wanted) {
            let found = found.map_or("other", |f| f.name());
            return Err(Fail(format!(
                "{} holds a {found} store, not a {wanted} one; use --engine {found}, or leave --engine out",
                db.display()
            )));
        }
    }
    Ok(Target::Live {
        client: std::cell::RefCell::new(client),
        path: db.to_path_buf(),
    })
}

/// Not on Unix: a running store has no control socket to reach.
#[cfg(not(unix))]
fn live(_: &Cli, db: &Path) -> Result<Target, Fail> {
    Err(Fail(format!(
        "the store at {} is in use by another process (the application); a running store is operated through its control socket, which needs Unix: stop the application and run sessionctl again",
        db.display()
    )))
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
        let mut config = Config::new(db)
            .durability(durability)
            .reap_interval(None)
            .control_socket(false);
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
                // In use: the application has it open with that engine.
                if matches!(
                    config(Some(*other)).open(),
                    Ok(_) | Err(Error::InUse { .. })
                ) {
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
                .any(|entry| entry.file_name() != LOCK_FILE && entry.file_name() != SOCKET)
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
    #[cfg(feature = "redis")]
    if let Target::Redis { url, namespace, .. } = target {
        {
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
    }
    let stats = target.stats()?;
    let path = target.place();
    let engine = stats.engine.map_or("redis", |e| e.name());
    let json = json!({
        "path": path,
        "engine": engine,
        "live_sessions": stats.live_sessions,
        "expired_sessions": expired,
        "bytes_on_disk": stats.bytes_on_disk,
    });
    emit(cli, json, || {
        render::pairs(&[
            ("path", path.clone()),
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
    let limit = limit.unwrap_or(usize::MAX);
    let mut sessions = Vec::new();
    if limit > 0 {
        store.each_session(expired, |s| {
            sessions.push(s);
            Ok::<_, Fail>(sessions.len() < limit)
        })?;
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
    let Some(was_live) = store.destroy(sid)? else {
        return Err(Fail(format!("no session {sid:?} in the store")));
    };
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
    let sids = store.sessions_of(name)?;
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
    let n = store.destroy_all_of(name)?;
    emit(cli, json!({ "principal": name, "destroyed": n }), || {
        format!("destroyed {n} live sessions of {name:?}\n")
    });
    Ok(())
}

/// `reap`.
pub fn reap(cli: &Cli, store: &Target) -> Result<(), Fail> {
    let n = store.reap()?;
    emit(cli, json!({ "reaped": n }), || {
        format!("reaped {n} expired sessions\n")
    });
    Ok(())
}

/// `verify`: prints the library's report, and fails if the store is not clean.
pub fn verify(cli: &Cli, store: &Target) -> Result<(), Fail> {
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
            store.place()
        )))
    }
}

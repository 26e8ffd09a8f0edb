//! The export file: JSON Lines, one session per line, every value as base64
//! of its stored bytes, every time in microseconds since the Unix epoch.
//!
//! ```text
//! {"v":1,"id":"…","created_us":…,"last_access_us":…,"idle_timeout_us":1800000000,
//!  "absolute_deadline_us":null,"scopes":[{"component":null,"values":{"user":"A2FkYQ=="}}]}
//! ```
//! (one line in the file). The store keeps times in microseconds, so a
//! session exported and imported again is stored exactly as it was.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sessionstore::{ExportedScope, ExportedSession, Store};

use crate::Fail;
use crate::args::Cli;
use crate::commands::emit;
use crate::render::{duration_micros, from_micros, micros};

/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

/// One line of an export file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The format version, [`VERSION`].
    pub v: u32,
    /// The session id.
    pub id: String,
    /// When the session was created.
    pub created_us: u64,
    /// Its last access.
    pub last_access_us: u64,
    /// Its idle timeout, `null` for none.
    pub idle_timeout_us: Option<u64>,
    /// Its absolute deadline, `null` for none.
    pub absolute_deadline_us: Option<u64>,
    /// The scopes that hold keys, the global one (`component: null`) first.
    pub scopes: Vec<Scope>,
}

/// One scope of a [`Record`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// The component; `null` for the global scope.
    pub component: Option<String>,
    /// Each key's stored bytes, in standard base64.
    pub values: BTreeMap<String, String>,
}

impl Record {
    /// The line for an exported session.
    pub fn from_session(s: &ExportedSession) -> Record {
        Record {
            v: VERSION,
            id: s.id.clone(),
            created_us: micros(s.created),
            last_access_us: micros(s.last_access),
            idle_timeout_us: s.idle_timeout.map(duration_micros),
            absolute_deadline_us: s.absolute_deadline.map(micros),
            scopes: s
                .scopes
                .iter()
                .map(|scope| Scope {
                    component: scope.component.clone(),
                    values: scope
                        .values
                        .iter()
                        .map(|(k, v)| (k.clone(), BASE64.encode(v)))
                        .collect(),
                })
                .collect(),
        }
    }

    /// Parses one line.
    pub fn parse(line: &str) -> Result<Record, String> {
        let record: Record = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if record.v != VERSION {
            return Err(format!(
                "format version {} is not supported; this sessionctl reads version {VERSION}",
                record.v
            ));
        }
        Ok(record)
    }

    /// The session to import. The store checks ids, components and keys.
    pub fn into_session(self) -> Result<ExportedSession, String> {
        let mut scopes = Vec::with_capacity(self.scopes.len());
        for scope in self.scopes {
            let mut values = BTreeMap::new();
            for (key, b64) in scope.values {
                let bytes = BASE64
                    .decode(b64.as_bytes())
                    .map_err(|e| format!("the value of key {key:?} is not valid base64: {e}"))?;
                values.insert(key, bytes);
            }
            scopes.push(ExportedScope {
                component: scope.component,
                values,
            });
        }
        Ok(ExportedSession {
            id: self.id,
            created: from_micros(self.created_us),
            last_access: from_micros(self.last_access_us),
            idle_timeout: self.idle_timeout_us.map(Duration::from_micros),
            absolute_deadline: self.absolute_deadline_us.map(from_micros),
            scopes,
        })
    }
}

/// `export`: every live session, earliest deadline first. A file is written
/// beside its destination and renamed into place once complete.
pub fn export(cli: &Cli, store: &Store, file: Option<&Path>) -> Result<(), Fail> {
    let Some(path) = file else {
        let out = std::io::stdout().lock();
        write_sessions(store, BufWriter::new(out), &ProgressBar::hidden())
            .map_err(|e| e.context("standard output"))?;
        return Ok(());
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io = |e: std::io::Error| Fail(format!("cannot write {}: {e}", path.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let bar = progress(cli, store.stats()?.live_sessions, "exporting");
    let n = write_sessions(store, BufWriter::new(tmp.as_file_mut()), &bar)
        .map_err(|e| e.context(&path.display().to_string()))?;
    bar.finish_and_clear();
    tmp.persist(path).map_err(|e| io(e.error))?;
    emit(cli, json!({ "exported": n, "file": path }), || {
        format!("exported {n} sessions to {}\n", path.display())
    });
    Ok(())
}

/// Why writing sessions stopped: the store, or the output.
enum WriteError {
    Store(sessionstore::Error),
    Output(std::io::Error),
}

impl WriteError {
    fn context(self, output: &str) -> Fail {
        match self {
            WriteError::Store(e) => Fail::from(e),
            WriteError::Output(e) => Fail(format!("cannot write {output}: {e}")),
        }
    }
}

fn write_sessions(
    store: &Store,
    mut out: impl Write,
    bar: &ProgressBar,
) -> Result<u64, WriteError> {
    let mut n = 0;
    for id in store.session_ids() {
        let id = id.map_err(WriteError::Store)?;
        // The CLI holds the store's lock, so nothing deletes a listed session
        // in between; a missing one is skipped all the same.
        let Some(session) = store.export_session(&id).map_err(WriteError::Store)? else {
            continue;
        };
        let line = serde_json::to_string(&Record::from_session(&session))
            .map_err(|e| WriteError::Output(e.into()))?;
        writeln!(out, "{line}").map_err(WriteError::Output)?;
        n += 1;
        bar.inc(1);
    }
    out.flush().map_err(WriteError::Output)?;
    Ok(n)
}

/// `import`: a first pass checks every line (JSON, base64, duplicate ids,
/// ids already live unless `replace`) and writes nothing; a second pass
/// imports each session in one atomic write.
pub fn import(cli: &Cli, store: &Store, file: &Path, replace: bool) -> Result<(), Fail> {
    let mut seen = HashMap::new();
    let mut total = 0u64;
    for_each_record(file, |line, record| {
        if let Some(first) = seen.insert(record.id.clone(), line) {
            return Err(format!(
                "session {:?} is also on line {first}; an export holds each session once",
                record.id
            ));
        }
        // `info` also checks the id, so that a bad one stops the import here.
        let live = store.info(&record.id).map_err(|e| e.to_string())?.is_some();
        if live && !replace {
            return Err(format!(
                "session {:?} already exists in the store; nothing was imported (use --replace to overwrite)",
                record.id
            ));
        }
        record
            .into_session()?
            .validate(store.max_value_size())
            .map_err(|e| e.to_string())?;
        total += 1;
        Ok(())
    })?;
    let bar = progress(cli, total, "importing");
    let mut done = 0u64;
    for_each_record(file, |_, record| {
        let session = record.into_session()?;
        store.import_session(&session, replace).map_err(|e| {
            format!("{e}; {done} of {total} sessions were imported before this one")
        })?;
        done += 1;
        bar.inc(1);
        Ok(())
    })?;
    store.flush()?;
    bar.finish_and_clear();
    emit(cli, json!({ "imported": done, "file": file }), || {
        format!("imported {done} sessions from {}\n", file.display())
    });
    Ok(())
}

/// Calls `f` with each non-blank line's number and record. An error names
/// the file and the line.
fn for_each_record(
    file: &Path,
    mut f: impl FnMut(usize, Record) -> Result<(), String>,
) -> Result<(), Fail> {
    let shown = file.display();
    let reader = File::open(file).map_err(|e| Fail(format!("cannot read {shown}: {e}")))?;
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| Fail(format!("cannot read {shown}: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        Record::parse(&line)
            .and_then(|record| f(line_no, record))
            .map_err(|e| Fail(format!("{shown}, line {line_no}: {e}")))?;
    }
    Ok(())
}

/// A progress bar on standard error, shown only to a person: standard output
/// is a terminal and not asked for JSON.
fn progress(cli: &Cli, len: u64, what: &'static str) -> ProgressBar {
    if cli.json || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} sessions")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len).with_style(style).with_message(what)
}

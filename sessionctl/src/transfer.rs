//! The export file: JSON Lines, one session per line, in the shape of the
//! library's `serde` implementation of `ExportedSession`: every value as
//! base64 of its stored bytes, every time in microseconds since the Unix
//! epoch, so a session exported and imported again is stored exactly as it was.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use sessionstore::{ExportedSession, Store};

use crate::Fail;
use crate::args::Cli;
use crate::commands::emit;

/// Parses one line of an export file.
fn parse(line: &str) -> Result<ExportedSession, String> {
    serde_json::from_str(line).map_err(|e| e.to_string())
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
        let line = serde_json::to_string(&session).map_err(|e| WriteError::Output(e.into()))?;
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
            .validate(store.max_value_size())
            .map_err(|e| e.to_string())?;
        total += 1;
        Ok(())
    })?;
    let bar = progress(cli, total, "importing");
    let mut done = 0u64;
    for_each_record(file, |_, record| {
        store.import_session(&record, replace).map_err(|e| {
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
    mut f: impl FnMut(usize, ExportedSession) -> Result<(), String>,
) -> Result<(), Fail> {
    let shown = file.display();
    let reader = File::open(file).map_err(|e| Fail(format!("cannot read {shown}: {e}")))?;
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| Fail(format!("cannot read {shown}: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        parse(&line)
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

//! The export file: JSON Lines, one session per line, in the shape of the
//! library's `serde` implementation of `ExportedSession`: every value as
//! base64 of its stored bytes, every time in microseconds since the Unix
//! epoch, so a session exported and imported again is stored exactly as it was.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use sessionstore::{Durability, ExportedSession, ImportMode};

use crate::args::Cli;
use crate::commands::{self, emit};
use crate::target::{self, Target};
use crate::{Fail, Place};

/// The default `--max-value-size` of `import`: the library's ceiling for
/// `Config::max_value_size`, so that every export, whatever the limit of the
/// store it came from, can be imported.
const IMPORT_MAX_VALUE_SIZE: usize = 64 << 20;
/// The latest time an import accepts, 9999-12-31T23:59:59Z: no store writes a
/// later one, and `u64::MAX` would read as "never expires".
const LATEST: Duration = Duration::from_secs(253_402_300_799);
/// How far in the future a creation or last-access time may be: clock skew
/// between the machine that exported and this one.
const FUTURE_SLACK: Duration = Duration::from_secs(86_400);

/// Where `export` writes.
enum Output {
    /// Standard output.
    Stdout,
    /// A FIFO or a character device, opened and written in place.
    Stream(File),
    /// A regular file, written beside its destination and renamed into place.
    Replace {
        /// The mode of the file being replaced, kept; `None` for a new file.
        keep: Option<std::fs::Permissions>,
    },
}

/// Decides what `export` does with `path`, refusing what it must not touch.
fn output(path: &Path, force: bool) -> Result<Output, Fail> {
    if path.as_os_str() == "-" {
        return Ok(Output::Stdout);
    }
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Output::Replace { keep: None });
        }
        Err(e) => return Err(Fail(format!("cannot write {shown}: {e}"))),
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Err(Fail(format!(
            "{shown} is a symbolic link, which export does not follow; name the file it points to"
        )));
    }
    if kind.is_file() {
        if !force {
            return Err(Fail(format!(
                "{shown} already exists; use --force to replace it"
            )));
        }
        return Ok(Output::Replace {
            keep: Some(meta.permissions()),
        });
    }
    if is_stream(&kind) {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Fail(format!("cannot write {shown}: {e}")))?;
        return Ok(Output::Stream(file));
    }
    Err(Fail(format!(
        "cannot write {shown}: it is not a regular file, a FIFO or a character device"
    )))
}

#[cfg(unix)]
fn is_stream(kind: &std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    kind.is_fifo() || kind.is_char_device()
}

#[cfg(not(unix))]
fn is_stream(_: &std::fs::FileType) -> bool {
    false
}

/// `export`: every live session, earliest deadline first.
pub fn export(cli: &Cli, store: &Target, file: Option<&Path>, force: bool) -> Result<(), Fail> {
    let path = file.unwrap_or(Path::new("-"));
    let never = AtomicBool::new(false);
    let n = match output(path, force)? {
        Output::Stdout => {
            let out = std::io::stdout().lock();
            write_sessions(store, BufWriter::new(out), &ProgressBar::hidden(), &never)
                .map_err(|e| e.context("standard output"))?;
            return Ok(());
        }
        Output::Stream(file) => {
            let bar = progress(cli, store.live_sessions()?, "exporting");
            let n = write_sessions(store, BufWriter::new(file), &bar, &never)
                .map_err(|e| e.context(&path.display().to_string()))?;
            bar.finish_and_clear();
            n
        }
        Output::Replace { keep } => replace(cli, store, path, keep)?,
    };
    emit(cli, json!({ "exported": n, "file": path }), || {
        format!("exported {n} sessions to {}\n", path.display())
    });
    Ok(())
}

/// Writes a regular file atomically: a temporary file beside it, written,
/// given the mode to keep, synced, renamed over `path`, and the directory
/// synced. SIGINT, SIGTERM and SIGHUP stop the export and remove the
/// temporary file.
fn replace(
    cli: &Cli,
    store: &Target,
    path: &Path,
    keep: Option<std::fs::Permissions>,
) -> Result<u64, Fail> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        #[cfg(unix)]
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| Fail(format!("cannot handle signals: {e}")))?;
    }
    replace_unless(cli, store, path, dir, keep, &stop)
}

/// The body of [`replace`]: stops, removing the temporary file, once `stop` is set.
fn replace_unless(
    cli: &Cli,
    store: &Target,
    path: &Path,
    dir: &Path,
    keep: Option<std::fs::Permissions>,
    stop: &AtomicBool,
) -> Result<u64, Fail> {
    let shown = path.display().to_string();
    let io = |e: std::io::Error| Fail(format!("cannot write {shown}: {e}"));
    let mut tmp = tempfile::Builder::new()
        .prefix(".sessionctl-export-")
        .tempfile_in(dir)
        .map_err(io)?;
    let bar = progress(cli, store.live_sessions()?, "exporting");
    // On an error the temporary file is dropped, which removes it.
    let n = write_sessions(store, BufWriter::new(tmp.as_file_mut()), &bar, stop)
        .map_err(|e| e.context(&shown))?;
    bar.finish_and_clear();
    if let Some(mode) = keep {
        tmp.as_file().set_permissions(mode).map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(n)
}

/// Why writing sessions stopped: the store, the output, or a signal.
enum WriteError {
    Store(sessionstore::Error),
    Output(std::io::Error),
    Interrupted,
}

impl From<sessionstore::Error> for WriteError {
    fn from(e: sessionstore::Error) -> Self {
        WriteError::Store(e)
    }
}

impl WriteError {
    fn context(self, output: &str) -> Fail {
        match self {
            WriteError::Store(e) => Fail::from(e),
            WriteError::Output(e) => Fail(format!("cannot write {output}: {e}")),
            WriteError::Interrupted => Fail(format!(
                "interrupted by a signal; {output} was left as it was"
            )),
        }
    }
}

fn write_sessions(
    store: &Target,
    mut out: impl Write,
    bar: &ProgressBar,
    stop: &AtomicBool,
) -> Result<u64, WriteError> {
    let mut n = 0;
    store.each_session(false, |session| {
        if stop.load(Ordering::Relaxed) {
            return Err(WriteError::Interrupted);
        }
        let line = serde_json::to_string(&session).map_err(|e| WriteError::Output(e.into()))?;
        writeln!(out, "{line}").map_err(WriteError::Output)?;
        n += 1;
        bar.inc(1);
        Ok(true)
    })?;
    out.flush().map_err(WriteError::Output)?;
    if stop.load(Ordering::Relaxed) {
        return Err(WriteError::Interrupted);
    }
    Ok(n)
}

/// `import`. The input is read once: each line is checked (UTF-8, JSON,
/// format, input rules, value sizes, times, duplicate ids, ids already live
/// unless `replace`) and copied to an unnamed temporary file; sessions that
/// already expired are counted and left out. Only if every line is good, and
/// at least one session is left to write, is the store opened (or created)
/// and each session written in one atomic write.
pub fn import(
    cli: &Cli,
    place: Place<'_>,
    file: &Path,
    replace: bool,
    max_value_size: Option<usize>,
) -> Result<(), Fail> {
    let limit = max_value_size.unwrap_or(IMPORT_MAX_VALUE_SIZE);
    if limit > IMPORT_MAX_VALUE_SIZE {
        return Err(Fail(format!(
            "--max-value-size {limit} is over the store's ceiling of {IMPORT_MAX_VALUE_SIZE} bytes"
        )));
    }
    let (shown, input): (String, Box<dyn Read>) = if file.as_os_str() == "-" {
        (
            "standard input".to_owned(),
            Box::new(std::io::stdin().lock()),
        )
    } else {
        let shown = file.display().to_string();
        let f = File::open(file).map_err(|e| Fail(format!("cannot read {shown}: {e}")))?;
        (shown, Box::new(f))
    };
    // Durability: import flushes once at its end instead of per session.
    let durability = Durability::Periodic(Duration::from_secs(1));
    // Redis is opened at once: there is nothing to create.
    let mut store = match place {
        Place::Db(db) if commands::store_present(db) => Some(Target::Embedded(
            commands::open_or_create(cli, db, durability, Some(limit))
                .map_err(|e| e.for_write(db, "import"))?,
        )),
        Place::Db(_) => None,
        Place::Redis(url) => Some(target::open_redis(cli, url, Some(limit))?),
    };
    let spool_io = |e: std::io::Error| Fail(format!("cannot spool {shown}: {e}"));
    let mut spool = BufWriter::new(tempfile::tempfile().map_err(spool_io)?);
    let now = SystemTime::now();
    let mut seen = HashMap::new();
    let mut total = 0u64;
    let mut expired = 0u64;
    for_each_line(&shown, input, |line_no, text| {
        let session: ExportedSession = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if let Some(first) = seen.insert(session.id.clone(), line_no) {
            return Err(format!(
                "session {:?} is also on line {first}; an export holds each session once",
                session.id
            ));
        }
        session.validate(limit).map_err(|e| {
            format!("{e}; if the export is right, raise --max-value-size (now {limit})")
        })?;
        check_times(&session, now)?;
        if session.deadline().is_some_and(|d| d <= now) {
            expired += 1;
            return Ok(());
        }
        if let Some(store) = &store {
            let live = store
                .api()
                .map_err(|f| f.0)?
                .info(&session.id)
                .map_err(|e| e.to_string())?
                .is_some();
            if live && !replace {
                return Err(format!(
                    "session {:?} already exists in the store; nothing was imported (use --replace to overwrite)",
                    session.id
                ));
            }
        }
        writeln!(spool, "{text}").map_err(|e| format!("cannot spool it: {e}"))?;
        total += 1;
        Ok(())
    })?;
    let mut spool = spool.into_inner().map_err(|e| spool_io(e.into_error()))?;
    spool.seek(SeekFrom::Start(0)).map_err(spool_io)?;
    let mut done = 0u64;
    if total > 0 {
        let store = match (store.take(), place) {
            (Some(store), _) => store,
            (None, Place::Db(db)) => Target::Embedded(
                commands::open_or_create(cli, db, durability, Some(limit))
                    .map_err(|e| e.for_write(db, "import"))?,
            ),
            (None, Place::Redis(url)) => target::open_redis(cli, url, Some(limit))?,
        };
        let bar = progress(cli, total, "importing");
        for_each_line(&shown, spool, |_, text| {
            let session: ExportedSession = serde_json::from_str(text).map_err(|e| e.to_string())?;
            store
                .import_session(
                    &session,
                    if replace {
                        ImportMode::Replace
                    } else {
                        ImportMode::Create
                    },
                )
                .map_err(|e| {
                    format!(
                        "{}; {done} of {total} sessions were written, each whole, before this one",
                        e.0
                    )
                })?;
            done += 1;
            bar.inc(1);
            Ok(())
        })?;
        store.flush().map_err(|e| {
            Fail(format!(
                "{e}; {done} sessions were written but may not be on disk"
            ))
        })?;
        bar.finish_and_clear();
    }
    emit(
        cli,
        json!({ "imported": done, "skipped_expired": expired, "file": shown }),
        || format!("imported {done} sessions from {shown}, skipped {expired} already expired\n"),
    );
    Ok(())
}

/// Refuses times no export writes: past 9999-12-31, or a creation or last
/// access more than a day in the future.
fn check_times(s: &ExportedSession, now: SystemTime) -> Result<(), String> {
    let latest = UNIX_EPOCH + LATEST;
    let times = [
        ("created_us", Some(s.created)),
        ("last_access_us", Some(s.last_access)),
        ("absolute_deadline_us", s.absolute_deadline),
        ("the deadline (last access plus idle timeout)", s.deadline()),
    ];
    for (what, t) in times {
        if t.is_some_and(|t| t > latest) {
            return Err(format!(
                "{what} is after 9999-12-31T23:59:59Z, which no store writes"
            ));
        }
    }
    for (what, t) in [("created_us", s.created), ("last_access_us", s.last_access)] {
        if t > now + FUTURE_SLACK {
            return Err(format!(
                "{what} is more than a day in the future ({}); check the clock of the exporting machine",
                crate::render::time(t)
            ));
        }
    }
    Ok(())
}

/// Calls `f` with each non-blank line's number and text, reading `input`
/// once. A byte order mark before the first line is skipped. An error names
/// the input and the line.
fn for_each_line(
    shown: &str,
    input: impl Read,
    mut f: impl FnMut(usize, &str) -> Result<(), String>,
) -> Result<(), Fail> {
    let mut reader = BufReader::new(input);
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Fail(format!("cannot read {shown}: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let mut bytes = buf.as_slice();
        if line_no == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let at = |e: String| Fail(format!("{shown}, line {line_no}: {e}"));
        let text = std::str::from_utf8(bytes).map_err(|e| {
            at(format!(
                "not valid UTF-8 at byte {} of the line",
                e.valid_up_to() + 1
            ))
        })?;
        if text.trim().is_empty() {
            continue;
        }
        f(line_no, text.trim_end_matches(['\n', '\r'])).map_err(at)?;
    }
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

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    /// What a signal does to an export into a file: it stops, and leaves
    /// neither the destination nor a temporary file. (The signal handlers
    /// only set the flag that this test sets before the export starts.)
    #[test]
    fn a_stopped_export_leaves_no_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Target::Embedded(sessionstore::Store::temporary()?);
        store.api().map_err(|f| f.0)?.create()?;
        let cli = Cli::try_parse_from(["sessionctl", "--db", "x", "export"])?;
        let path = dir.path().join("out.jsonl");
        let stopped = AtomicBool::new(true);
        let Err(Fail(message)) = replace_unless(&cli, &store, &path, dir.path(), None, &stopped)
        else {
            panic!("a stopped export succeeded");
        };
        assert!(message.contains("interrupted"), "{message}");
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 0, "a file was left");

        let running = AtomicBool::new(false);
        assert_eq!(
            replace_unless(&cli, &store, &path, dir.path(), None, &running).map_err(|f| f.0)?,
            1
        );
        assert_eq!(std::fs::read_to_string(&path)?.lines().count(), 1);
        Ok(())
    }
}

//! Opening a store's directory: the path (or a temporary directory), the
//! engine found there or asked for, the lock file that makes this process
//! the only writer, the engine's full check if `Config::verify_on_open`
//! asks for it, the format marker, and the time floor.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::codec;
use crate::embedded::backend::{self, Backend, Batch};
use crate::embedded::config::Config;
use crate::embedded::journal::{self, Segments, Writer};
use crate::embedded::overlay::Overlay;
use crate::embedded::reserve::{self, Reserve};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::keys;

/// The name of the lock file in the store's directory.
const LOCK_FILE: &str = "sessionstore.lock";
/// The format version written in the format marker.
const FORMAT_VERSION: u8 = 1;

/// An opened directory and engine, ready for a `Core`.
pub(crate) struct Opened {
    pub path: PathBuf,
    pub engine: Engine,
    pub backend: Arc<dyn Backend>,
    /// The journal, empty: what it held is in the engine now.
    pub journal: Writer,
    /// The reserve of free space; `None` for a temporary store, or an
    /// engine the caller supplied.
    pub reserve: Option<Reserve>,
    /// The time floor the store last wrote; 0 for a new store.
    pub floor: u64,
    /// The lock file.
    pub lock: Option<File>,
    pub temp: Option<tempfile::TempDir>,
}

/// Opens the directory of `config` (already validated): creates it or checks
/// that it holds nothing or one store, takes its lock file, opens the engine
/// (`engine`, if the caller supplies one: tests inside the crate do) and
/// checks or writes the format marker, puts the in-memory overlay in front
/// of the engine (unless `write_through`: tests of the engine's own faults
/// inside the crate ask so), and replays the journal (on `segments`, if the
/// caller supplies them) into it.
pub(crate) fn open(
    config: &Config,
    engine: Option<Arc<dyn Backend>>,
    segments: Option<Arc<dyn Segments>>,
    write_through: bool,
) -> Result<Opened> {
    let temp = if config.temporary {
        Some(tempfile::tempdir().map_err(|e| Error::Io {
            path: std::env::temp_dir(),
            source: e,
        })?)
    } else {
        None
    };
    let path = temp
        .as_ref()
        .map_or_else(|| config.path.clone(), |t| t.path().to_path_buf());
    let kind = create_dir(&path, config.engine)?;
    let lock = lock_dir(&path)?;
    // The engine's full check, on demand (an engine supplied by a test has none).
    if engine.is_none() && config.verify_on_open {
        backend::check(kind, &path, config.cache_capacity)?;
    }
    let (backend, reserve) = match engine {
        Some(b) => (b, None),
        None => (
            backend::open(kind, &path, config.cache_capacity)?,
            (!config.temporary).then(|| Reserve::open(&path)),
        ),
    };
    check_format(&*backend, &path)?;
    let backend: Arc<dyn Backend> = if write_through {
        backend
    } else {
        Arc::new(Overlay::new(backend))
    };
    let journal = journal::open(&path, segments, &*backend)?;
    let floor = read_floor(&*backend)?;
    Ok(Opened {
        path,
        engine: kind,
        backend,
        journal,
        reserve,
        floor,
        lock: Some(lock),
        temp,
    })
}

/// Creates the directory, or checks that it holds nothing or one store.
/// Returns the engine to open: the one asked for, else the one whose store is
/// there, else the default.
fn create_dir(path: &Path, wanted: Option<Engine>) -> Result<Engine> {
    match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(path).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(wanted.unwrap_or_default())
        }
        _ => Ok(prepare_dir(path, wanted)?.unwrap_or(wanted.unwrap_or_default())),
    }
}

/// Checks that the existing directory `path` holds nothing or one store, and
/// returns that store's engine (`None` if it is empty), which must be
/// `wanted` if given.
fn prepare_dir(path: &Path, wanted: Option<Engine>) -> Result<Option<Engine>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_a_store = |reason: String| Error::NotAStore {
        path: path.to_path_buf(),
        reason,
    };
    match fs::metadata(path) {
        Ok(m) if !m.is_dir() => return Err(not_a_store("it is a file, not a directory".into())),
        Ok(_) => {}
        Err(e) => return Err(io(e)),
    }
    let names: Vec<String> = fs::read_dir(path)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let holds = |e: Engine| {
        let markers = backend::marker_files(e);
        !markers.is_empty() && markers.iter().all(|m| names.iter().any(|n| n == m))
    };
    match (wanted, Engine::ALL.iter().copied().find(|e| holds(*e))) {
        (None, Some(found)) => return Ok(Some(found)),
        (Some(w), Some(found)) if w == found => return Ok(Some(found)),
        (Some(w), Some(found)) => {
            return Err(not_a_store(format!(
                "it holds a {} store, and this one was configured for {}; open it with Config::engine(Engine::{:?})",
                found.name(),
                w.name(),
                found
            )));
        }
        (_, None) => {}
    }
    match names.iter().find(|n| {
        ![LOCK_FILE, journal::DIR, reserve::FILE].contains(&n.as_str())
            && !backend::is_creation_leftover(n)
            && !is_control_file(n)
    }) {
        None => Ok(None),
        Some(other) => Err(not_a_store(format!(
            "the directory holds other files, such as {other:?}, and no store"
        ))),
    }
}

/// Whether `name` is the control socket, or what making it leaves after a crash.
fn is_control_file(name: &str) -> bool {
    #[cfg(unix)]
    return crate::embedded::control::is_control_file(name);
    #[cfg(not(unix))]
    return false;
}

/// Takes the store's lock file. A lock that is busy is tried again for a
/// short while: a process that forks a child while another of its threads
/// closes a store lends the child the lock for the moment before `exec`.
fn lock_dir(path: &Path) -> Result<File> {
    const ATTEMPTS: u32 = 10;
    let lock_path = path.join(LOCK_FILE);
    let file = File::create(&lock_path).map_err(|source| Error::Io {
        path: lock_path.clone(),
        source,
    })?;
    for attempt in 1..=ATTEMPTS {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if attempt < ATTEMPTS => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => break,
            Err(TryLockError::Error(source)) => {
                return Err(Error::Io {
                    path: lock_path,
                    source,
                });
            }
        }
    }
    Err(Error::InUse {
        path: path.to_path_buf(),
    })
}

/// Reads the format marker; writes it into a new, empty database.
fn check_format(backend: &dyn Backend, path: &Path) -> Result<()> {
    let not_a_store = |reason: String| Error::NotAStore {
        path: path.to_path_buf(),
        reason,
    };
    match backend.get(keys::FORMAT_KEY)? {
        Some(v) if v.first() == Some(&FORMAT_VERSION) => Ok(()),
        Some(v) => Err(not_a_store(format!(
            "its format version {:?} is not one this version reads ({FORMAT_VERSION})",
            v.first()
        ))),
        None if backend.scan_range(&[], None, 1)?.is_empty() => {
            let mut batch = Batch::default();
            let mut marker = vec![FORMAT_VERSION];
            marker.extend_from_slice(backend.name().as_bytes());
            batch.put(keys::FORMAT_KEY.to_vec(), marker);
            backend.apply(&batch)?;
            backend.flush()
        }
        None => Err(not_a_store(format!(
            "it is a {} database without the sessionstore format marker",
            backend.name()
        ))),
    }
}

/// The time floor the store last wrote; 0 for a new store. An unreadable
/// record is logged and read as 0: the clock then decides alone.
fn read_floor(backend: &dyn Backend) -> Result<u64> {
    Ok(match backend.get(keys::CLOCK_KEY)? {
        // A floor past the latest time the store reads is damage: from it,
        // every new session would be born dead.
        Some(bytes) => codec::decode_time(&bytes)
            .filter(|t| *t <= crate::clock::MAX_MICROS)
            .unwrap_or_else(|| {
                log::warn!("sessionstore: ignoring an unreadable time floor record {bytes:?}");
                0
            }),
        None => 0,
    })
}

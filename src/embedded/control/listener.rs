//! The socket file: `sessionstore.sock` in the store's directory, created
//! with mode 0600 and no moment in which it is more open, a stale one (left
//! by a crash: nothing answers) replaced, a live one never taken, and the
//! file removed at a clean close if it is still the one this store made.
//!
//! `bind` makes the socket where nobody else can reach it: in a new
//! directory of mode 0700 (`sessionstore.sock.new`) inside the store's.
//! There it gets mode 0600, then it is renamed into place, which also
//! replaces a stale socket in one step. The process's umask, which other
//! threads share, is never touched.

use std::fs::{self, DirBuilder};
use std::io::ErrorKind;
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _,
};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The socket's name in the store's directory.
pub(crate) const SOCKET_NAME: &str = "sessionstore.sock";
/// The private directory the socket is made in, then renamed out of.
const NEW_DIR: &str = "sessionstore.sock.new";

/// Whether `name`, in a store's directory, is the control socket or what
/// making it leaves after a crash: `open` accepts them beside a store.
pub(crate) fn is_control_file(name: &str) -> bool {
    name == SOCKET_NAME || name == NEW_DIR
}

/// The socket's path for the store in `dir`.
pub(crate) fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET_NAME)
}

/// A bound, listening socket (non-blocking) and the file it has.
pub(crate) struct Bound {
    pub listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the file made, so that `remove` removes only it.
    id: (u64, u64),
}

impl Bound {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file, if it is still the one `bind` made.
    pub fn remove(&self) {
        match fs::symlink_metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.id => {
                if let Err(e) = fs::remove_file(&self.path) {
                    log::warn!(
                        "sessionstore: cannot remove the control socket {}: {e}",
                        self.path.display()
                    );
                }
            }
            _ => {}
        }
    }
}

/// Binds the control socket of the store in `dir` (see the module docs).
///
/// # Errors
///
/// [`Error::Control`] if a live socket or something that is not a socket is
/// at the path, [`Error::Io`] naming the file if the file system refuses.
pub(crate) fn bind(dir: &Path) -> Result<Bound> {
    let path = socket_path(dir);
    let control = |reason: String| Error::Control {
        path: path.clone(),
        reason,
    };
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
        Ok(m) if m.file_type().is_socket() => match probe(&path) {
            Probe::Live => {
                return Err(control(
                    "another process serves a live socket there; it is left alone".into(),
                ));
            }
            Probe::Stale => log::info!(
                "sessionstore: replacing the stale control socket {} (nothing answers on it)",
                path.display()
            ),
        },
        Ok(_) => {
            return Err(control(
                "the path holds something that is not a socket; move it away".into(),
            ));
        }
    }
    let new_dir = dir.join(NEW_DIR);
    if fs::symlink_metadata(&new_dir).is_ok() {
        // Left by a crash while a socket was made: this store holds the
        // directory's lock, so nobody else is making one.
        fs::remove_dir_all(&new_dir).map_err(io(&new_dir))?;
    }
    DirBuilder::new()
        .mode(0o700)
        .create(&new_dir)
        .map_err(io(&new_dir))?;
    let made = make_in(&new_dir, &path);
    if let Err(e) = fs::remove_dir_all(&new_dir) {
        log::warn!("sessionstore: cannot remove {}: {e}", new_dir.display());
    }
    let listener = made?;
    let m = fs::symlink_metadata(&path).map_err(io(&path))?;
    listener.set_nonblocking(true).map_err(io(&path))?;
    Ok(Bound {
        listener,
        path,
        id: (m.dev(), m.ino()),
    })
}

/// Binds in the private directory `new_dir`, sets mode 0600, and renames the
/// socket to `path`.
fn make_in(new_dir: &Path, path: &Path) -> Result<UnixListener> {
    let tmp = new_dir.join("s");
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io { path: p, source }
    };
    let listener = UnixListener::bind(&tmp).map_err(io(path))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    Ok(listener)
}

/// What answers on an existing socket file.
enum Probe {
    /// A server accepts connections (or its queue is full): never replaced.
    Live,
    /// Nothing listens: left by a process that died.
    Stale,
}

/// Connects without blocking: refused means stale, anything else live (a
/// full queue, or an error that proves nothing, is taken as live).
fn probe(path: &Path) -> Probe {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let attempt = || -> rustix::io::Result<()> {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::connect(&fd, &SocketAddrUnix::new(path)?)
    };
    match attempt() {
        Err(e) if e == rustix::io::Errno::CONNREFUSED || e == rustix::io::Errno::NOENT => {
            Probe::Stale
        }
        Ok(()) | Err(_) => Probe::Live,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_0600_and_replaces_a_stale_one_but_not_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = bind(dir.path()).unwrap();
        let mode = fs::metadata(first.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!dir.path().join(NEW_DIR).exists());
        let Err(Error::Control { reason, .. }) = bind(dir.path()) else {
            panic!("a live socket was taken");
        };
        assert!(reason.contains("live"), "{reason}");
        // A crash: the listener closes, the file stays.
        drop(first.listener);
        assert!(socket_path(dir.path()).exists());
        let second = bind(dir.path()).unwrap();
        assert!(std::os::unix::net::UnixStream::connect(second.path()).is_ok());
        second.remove();
        assert!(!socket_path(dir.path()).exists());
    }

    #[test]
    fn something_else_at_the_path_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(socket_path(dir.path()), b"mine").unwrap();
        assert!(matches!(bind(dir.path()), Err(Error::Control { .. })));
        assert_eq!(fs::read(socket_path(dir.path())).unwrap(), b"mine");
    }

    #[test]
    fn remove_leaves_a_socket_someone_else_put_there() {
        let dir = tempfile::tempdir().unwrap();
        let bound = bind(dir.path()).unwrap();
        fs::remove_file(bound.path()).unwrap();
        let other = UnixListener::bind(bound.path()).unwrap();
        bound.remove();
        assert!(bound.path().exists(), "removed a socket it did not make");
        drop(other);
    }

    #[test]
    fn a_leftover_private_directory_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(NEW_DIR)).unwrap();
        fs::write(dir.path().join(NEW_DIR).join("s"), b"").unwrap();
        let bound = bind(dir.path()).unwrap();
        assert!(!dir.path().join(NEW_DIR).exists());
        bound.remove();
    }
}

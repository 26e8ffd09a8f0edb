//! [`ControlClient`]: the other end of a store's control socket, as
//! `sessionctl` uses it on a running application's store.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock;
use crate::embedded::control::listener;
use crate::embedded::control::protocol::{self, Line, Request, SessionHead, Which};
use crate::embedded::control::serve::REQUEST_TIME_LIMIT;
use crate::embedded::verify::Report;
use crate::error::{Error, Result};
use crate::export::{ExportedScope, ExportedSession};
use crate::info::Stats;

/// The longest reply line read: a value at the store's 64 MiB ceiling, in base64, and its key.
const MAX_REPLY_LINE: u64 = 96 << 20;

/// A connection to the control socket of a store that another process (the
/// application) has open: the operations `sessionctl` offers, run by that
/// process through its own [`Store`](crate::Store) API, so with its locks,
/// its durability and its events. Only the store's owner and root are
/// served. The protocol, the limits and the threat model are in
/// docs/control.md. Unix only.
///
/// Requests go one at a time. A listing ([`session_ids`](Self::session_ids),
/// [`export`](Self::export)) streams: drop it before its end and the
/// connection is closed, and the next request opens a new one.
///
/// # Examples
///
/// ```
/// use sessionstore::{Config, ControlClient};
///
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("sessions");
/// // The application, which keeps the store open:
/// let store = Config::new(&path).open()?;
/// let session = store.create()?;
///
/// // An operator's tool, in any process of the same user:
/// let mut control = ControlClient::connect(&path)?;
/// assert_eq!(control.stats()?.live_sessions, 1);
/// assert_eq!(control.destroy(session.id())?, Some(true));
/// assert!(store.get(session.id(), None)?.is_none());
/// # Ok::<(), sessionstore::Error>(())
/// ```
#[derive(Debug)]
pub struct ControlClient {
    path: PathBuf,
    conn: Option<BufReader<UnixStream>>,
}

impl ControlClient {
    /// Connects to the control socket of the store in directory `store_dir`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the socket if it cannot be reached: `NotFound`
    /// or `ConnectionRefused` when nothing serves it (the application is
    /// not running, or opened the store with `control_socket(false)`),
    /// `PermissionDenied` for another user; [`Error::Control`] if the server
    /// refuses this user, is busy, or speaks another protocol.
    pub fn connect(store_dir: impl AsRef<Path>) -> Result<ControlClient> {
        let mut client = ControlClient {
            path: listener::socket_path(store_dir.as_ref()),
            conn: None,
        };
        client.open()?;
        Ok(client)
    }

    /// The socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// The store's [`Stats`], as [`Store::stats`](crate::Store::stats) gives them.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] for the store's own error, [`Error::Io`] and
    /// [`Error::Control`] for the connection's: as for every request.
    pub fn stats(&mut self) -> Result<Stats> {
        let lines = self.call(&Request::Stats)?;
        let mut stats = Stats {
            live_sessions: 0,
            reaped_since_open: 0,
            flushes_since_open: 0,
            failed_reap_passes: 0,
            bytes_on_disk: 0,
            writes_since_open: 0,
            engine: None,
        };
        for (name, value) in self.stats_of(lines)? {
            let n = || self.number(&value);
            match name.as_str() {
                "live_sessions" => stats.live_sessions = n()?,
                "reaped_since_open" => stats.reaped_since_open = n()?,
                "flushes_since_open" => stats.flushes_since_open = n()?,
                "failed_reap_passes" => stats.failed_reap_passes = n()?,
                "bytes_on_disk" => stats.bytes_on_disk = n()?,
                "writes_since_open" => stats.writes_since_open = n()?,
                "engine" => stats.engine = value.parse().ok(),
                // A figure of a later server, or the path: not part of `Stats`.
                _ => {}
            }
        }
        Ok(stats)
    }

    /// The ids of live sessions, earliest deadline first, as
    /// [`Store::session_ids`](crate::Store::session_ids).
    ///
    /// # Errors
    ///
    /// As [`stats`](Self::stats); the iterator's items carry the errors met
    /// while it streams.
    pub fn session_ids(&mut self) -> Result<ControlIds<'_>> {
        self.send(&Request::List(Which::Live))?;
        Ok(ControlIds {
            client: self,
            done: false,
        })
    }

    /// The ids of sessions that expired but are not reaped yet, as
    /// [`Store::expired_session_ids`](crate::Store::expired_session_ids).
    ///
    /// # Errors
    ///
    /// As [`session_ids`](Self::session_ids).
    pub fn expired_session_ids(&mut self) -> Result<ControlIds<'_>> {
        self.send(&Request::List(Which::Expired))?;
        Ok(ControlIds {
            client: self,
            done: false,
        })
    }

    /// Every live session, whole, earliest deadline first: what
    /// [`Store::export_session`](crate::Store::export_session) gives for
    /// each id of [`Store::session_ids`](crate::Store::session_ids). The
    /// application writes meanwhile, so a session saved during the walk may
    /// come twice (its later state second); one destroyed is left out.
    ///
    /// # Errors
    ///
    /// As [`session_ids`](Self::session_ids).
    pub fn export(&mut self) -> Result<ControlSessions<'_>> {
        self.sessions(&Request::Export(Which::Live))
    }

    /// Every session that expired but is not reaped yet, whole.
    ///
    /// # Errors
    ///
    /// As [`session_ids`](Self::session_ids).
    pub fn export_expired(&mut self) -> Result<ControlSessions<'_>> {
        self.sessions(&Request::Export(Which::Expired))
    }

    /// One session, whole, live or expired but not reaped yet, as
    /// [`Store::export_session`](crate::Store::export_session).
    ///
    /// # Errors
    ///
    /// As [`stats`](Self::stats).
    pub fn export_session(&mut self, sid: &str) -> Result<Option<ExportedSession>> {
        let mut all = self
            .sessions(&Request::Show(sid.to_owned()))?
            .collect::<Result<Vec<_>>>()?;
        Ok(all.pop())
    }

    /// The live sessions of principal `name`, as [`Store::sessions_of`](crate::Store::sessions_of).
    ///
    /// # Errors
    ///
    /// As [`stats`](Self::stats).
    pub fn sessions_of(&mut self, name: &str) -> Result<Vec<String>> {
        let lines = self.call(&Request::SessionsOf(name.to_owned()))?;
        lines
            .into_iter()
            .map(|l| match l {
                Line::Id(id) => Ok(id),
                other => Err(self.unexpected(&other)),
            })
            .collect()
    }

    /// The store's consistency report, as [`Store::verify`](crate::Store::verify).
    ///
    /// # Errors
    ///
    /// As [`stats`](Self::stats).
    pub fn verify(&mut self) -> Result<Report> {
        let lines = self.call(&Request::Verify)?;
        let mut r = Report::default();
        for line in lines {
            match line {
                Line::Stat { name, value } => {
                    let n = self.number(&value)?;
                    match name.as_str() {
                        "sessions" => r.sessions = n,
                        "keys" => r.keys = n,
                        "index_entries" => r.index_entries = n,
                        "principal_entries" => r.principal_entries = n,
                        _ => {}
                    }
                }
                Line::Problem { kind, item } => match kind.as_str() {
                    "orphans" => r.orphans.push(item),
                    "dangling_index" => r.dangling_index.push(item),
                    "missing_index" => r.missing_index.push(item),
                    "undecodable" => r.undecodable.push(item),
                    "dangling_principal" => r.dangling_principal.push(item),
                    "missing_principal" => r.missing_principal.push(item),
                    // A kind of a later server: still a problem.
                    _ => r.undecodable.push(format!("{kind}: {item}")),
                },
                other => return Err(self.unexpected(&other)),
            }
        }
        Ok(r)
    }

    /// Destroys session `sid` in the owning process, as
    /// [`Store::destroy`](crate::Store::destroy) (its subscribers get
    /// `Destroyed`): `Some(true)` if it was live, `Some(false)` if it had
    /// expired but was not reaped yet, `None` if there was no such session.
    ///
    /// # Errors
    ///
    /// As [`stats`](Self::stats).
    pub fn destroy(&mut self, sid: &str) -> Result<Option<bool>> {
        let lines = self.call(&Request::Destroy(sid.to_owned()))?;
        match self.one_stat(lines, "destroyed")?.as_str() {
            "live" => Ok(Some(true)),
            "expired" => Ok(Some(false)),
            "none" => Ok(None),
            other => Err(self.broken(format!("an unknown destroy state {other:?}"))),
        }
    }

    /// Destroys every session of principal `name`, as
    /// [`Store::destroy_all_of`](crate::Store::destroy_all_of): how many were live.
    ///
    /// # Errors
    ///
    /// As [`stats`](Self::stats).
    pub fn destroy_all_of(&mut self, name: &str) -> Result<usize> {
        let lines = self.call(&Request::DestroyAllOf(name.to_owned()))?;
        let n = self.one_stat(lines, "destroyed")?;
        self.count(&n)
    }

    /// Deletes every expired session now, as
    /// [`Store::reap_expired`](crate::Store::reap_expired): how many.
    ///
    /// # Errors
    ///
    /// As [`stats`](Self::stats).
    pub fn reap_expired(&mut self) -> Result<usize> {
        let lines = self.call(&Request::Reap)?;
        let n = self.one_stat(lines, "reaped")?;
        self.count(&n)
    }

    fn open(&mut self) -> Result<()> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let stream = UnixStream::connect(&self.path).map_err(io)?;
        // The server's own limit per request, and some slack.
        stream
            .set_read_timeout(Some(REQUEST_TIME_LIMIT + Duration::from_secs(30)))
            .map_err(io)?;
        self.conn = Some(BufReader::new(stream));
        let first = self.read_raw()?;
        if first == protocol::GREETING.as_bytes() {
            return Ok(());
        }
        match protocol::parse_line(&first) {
            Ok(Line::Error { code, message }) => {
                self.conn = None;
                Err(Error::Control {
                    path: self.path.clone(),
                    reason: format!("{message} ({code})"),
                })
            }
            _ => Err(self.broken(format!(
                "the server did not greet with {:?}: it is not a sessionstore control socket, or speaks another version",
                protocol::GREETING
            ))),
        }
    }

    fn sessions(&mut self, request: &Request) -> Result<ControlSessions<'_>> {
        self.send(request)?;
        Ok(ControlSessions {
            client: self,
            done: false,
            pending: None,
        })
    }

    /// Sends `request`, on a new connection if the last one was closed.
    fn send(&mut self, request: &Request) -> Result<()> {
        if self.conn.is_none() {
            self.open()?;
        }
        let line = protocol::render_request(request);
        let sent = match &mut self.conn {
            Some(conn) => conn.get_mut().write_all(line.as_bytes()),
            None => Ok(()),
        };
        sent.map_err(|source| {
            self.conn = None;
            Error::Io {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// Sends `request` and reads its whole reply: the lines before `ok`.
    fn call(&mut self, request: &Request) -> Result<Vec<Line>> {
        self.send(request)?;
        let mut lines = Vec::new();
        loop {
            match self.read()? {
                Line::Ok => return Ok(lines),
                Line::Error { code, message } => return Err(self.failed(&code, message)),
                line => lines.push(line),
            }
        }
    }

    /// Reads one reply line. Any failure closes the connection.
    fn read(&mut self) -> Result<Line> {
        let buf = self.read_raw()?;
        protocol::parse_line(&buf).map_err(|e| self.broken(e))
    }

    /// Reads one line, without its `\n`.
    fn read_raw(&mut self) -> Result<Vec<u8>> {
        let Some(conn) = &mut self.conn else {
            return Err(self.broken("the connection was closed".into()));
        };
        let mut buf = Vec::new();
        let got = conn
            .by_ref()
            .take(MAX_REPLY_LINE)
            .read_until(b'\n', &mut buf);
        let got = match got {
            Ok(n) => n,
            Err(source) => {
                self.conn = None;
                return Err(Error::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        if got == 0 || buf.pop() != Some(b'\n') {
            return Err(self.broken(if got == 0 {
                "the server closed the connection".into()
            } else {
                "a reply line was cut off or too long".into()
            }));
        }
        Ok(buf)
    }

    /// Closes the connection and names what went wrong.
    fn broken(&mut self, reason: String) -> Error {
        self.conn = None;
        Error::Control {
            path: self.path.clone(),
            reason,
        }
    }

    /// The error of an `error` line: the store's own, or the server's.
    fn failed(&mut self, code: &str, message: String) -> Error {
        if code == "store" {
            Error::Remote { message }
        } else {
            // The server closes the connection after every error but a store's.
            self.conn = None;
            Error::Control {
                path: self.path.clone(),
                reason: format!("{message} ({code})"),
            }
        }
    }

    fn unexpected(&mut self, line: &Line) -> Error {
        self.broken(format!("an unexpected reply line {line:?}"))
    }

    fn stats_of(&mut self, lines: Vec<Line>) -> Result<Vec<(String, String)>> {
        lines
            .into_iter()
            .map(|l| match l {
                Line::Stat { name, value } => Ok((name, value)),
                other => Err(self.unexpected(&other)),
            })
            .collect()
    }

    fn one_stat(&mut self, lines: Vec<Line>, wanted: &str) -> Result<String> {
        self.stats_of(lines)?
            .into_iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::Control {
                path: self.path.clone(),
                reason: format!("the reply has no {wanted:?}"),
            })
    }

    fn number(&self, value: &str) -> Result<u64> {
        value.parse().map_err(|_| Error::Control {
            path: self.path.clone(),
            reason: format!("{value:?} is not a number"),
        })
    }

    fn count(&self, value: &str) -> Result<usize> {
        let n = self.number(value)?;
        usize::try_from(n).map_err(|_| Error::Control {
            path: self.path.clone(),
            reason: format!("{n} does not fit this machine's usize"),
        })
    }
}

/// Session ids streamed from a [`ControlClient`]. Dropped before its end,
/// it closes the connection.
#[derive(Debug)]
pub struct ControlIds<'a> {
    client: &'a mut ControlClient,
    done: bool,
}

impl Iterator for ControlIds<'_> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        if self.done {
            return None;
        }
        let line = self.client.read();
        match line {
            Ok(Line::Id(id)) => Some(Ok(id)),
            Ok(Line::Ok) => {
                self.done = true;
                None
            }
            Ok(Line::Error { code, message }) => {
                self.done = true;
                Some(Err(self.client.failed(&code, message)))
            }
            Ok(other) => {
                self.done = true;
                Some(Err(self.client.unexpected(&other)))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl Drop for ControlIds<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.client.conn = None;
        }
    }
}

/// Whole sessions streamed from a [`ControlClient`]. Dropped before its
/// end, it closes the connection.
#[derive(Debug)]
pub struct ControlSessions<'a> {
    client: &'a mut ControlClient,
    done: bool,
    /// The head of the next session, read while ending the one before.
    pending: Option<SessionHead>,
}

impl ControlSessions<'_> {
    fn fail(&mut self, e: Error) -> Option<Result<ExportedSession>> {
        self.done = true;
        Some(Err(e))
    }
}

impl Iterator for ControlSessions<'_> {
    type Item = Result<ExportedSession>;

    fn next(&mut self) -> Option<Result<ExportedSession>> {
        if self.done {
            return None;
        }
        let head = match self.pending.take() {
            Some(h) => h,
            None => match self.client.read() {
                Ok(Line::Session(h)) => h,
                Ok(Line::Ok) => {
                    self.done = true;
                    return None;
                }
                Ok(Line::Error { code, message }) => {
                    let e = self.client.failed(&code, message);
                    return self.fail(e);
                }
                Ok(other) => {
                    let e = self.client.unexpected(&other);
                    return self.fail(e);
                }
                Err(e) => return self.fail(e),
            },
        };
        let mut session = ExportedSession {
            id: head.id,
            created: clock::from_micros(head.created),
            last_access: clock::from_micros(head.last_access),
            idle_timeout: head.idle.map(Duration::from_micros),
            absolute_deadline: head.absolute.map(clock::from_micros),
            scopes: Vec::new(),
            principal: head.principal,
        };
        loop {
            match self.client.read() {
                Ok(Line::Scope(component)) => session.scopes.push(ExportedScope::new(component)),
                Ok(Line::Value { key, bytes }) => match session.scopes.last_mut() {
                    Some(scope) => {
                        scope.values.insert(key, bytes);
                    }
                    None => {
                        let e = self.client.broken("a value before any scope".into());
                        return self.fail(e);
                    }
                },
                Ok(Line::Session(next)) => {
                    self.pending = Some(next);
                    return Some(Ok(session));
                }
                Ok(Line::Ok) => {
                    self.done = true;
                    return Some(Ok(session));
                }
                Ok(Line::Error { code, message }) => {
                    let e = self.client.failed(&code, message);
                    return self.fail(e);
                }
                Ok(other) => {
                    let e = self.client.unexpected(&other);
                    return self.fail(e);
                }
                Err(e) => return self.fail(e),
            }
        }
    }
}

impl Drop for ControlSessions<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.client.conn = None;
        }
    }
}

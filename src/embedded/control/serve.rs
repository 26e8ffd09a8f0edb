//! The server: the thread `sessionstore-control` accepts connections and
//! hands each to a short-lived thread of its own (`sessionstore-control-client`),
//! at most [`MAX_CLIENTS`] at once. Everything a client can make the
//! process spend is bounded: a request line of at most
//! [`MAX_REQUEST`](protocol::MAX_REQUEST) bytes that must arrive whole within
//! [`REQUEST_READ_LIMIT`], replies that must be taken within
//! [`WRITE_TIMEOUT`] per write, a request that runs at most
//! [`REQUEST_TIME_LIMIT`]. The threads
//! hold a handle on the store's shared internals, never the application's
//! handle, so the application's last drop stops them.

use std::io::{self, Read as _};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

use crate::embedded::control::answer::{self, Sink};
use crate::embedded::control::listener::{self, Bound};
use crate::embedded::control::peer::{self, Verdict};
use crate::embedded::control::protocol::{self, Line};
use crate::embedded::join::Worker;
use crate::embedded::store::Store;
use crate::error::{Error, Result};

/// Clients served at once; one more is told `error busy` and closed.
pub(crate) const MAX_CLIENTS: usize = 4;
/// How long a request line may take to arrive whole, from the moment the
/// server waits for it: also how long a connection may sit idle.
pub(crate) const REQUEST_READ_LIMIT: Duration = Duration::from_secs(10);
/// How long one write of a reply may wait for the client to read.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may run; a streamed answer stops at it.
pub(crate) const REQUEST_TIME_LIMIT: Duration = Duration::from_secs(300);

/// The running server. Dropping it stops its threads, joins them (waiting
/// at most the store's `write_timeout`), and removes the socket file.
pub(crate) struct Server {
    /// Dropping it wakes the accepting thread, which then stops.
    waker: Option<UnixStream>,
    thread: Option<Worker>,
    join_limit: Duration,
    bound: Arc<Bound>,
}

impl Server {
    /// Binds the socket of the store in `dir` and starts serving it with
    /// `store`, a handle that holds the store's shared internals only.
    pub fn start(store: Store, dir: &Path, join_limit: Duration) -> Result<Server> {
        let bound = Arc::new(listener::bind(dir)?);
        let io = |source| Error::Io {
            path: bound.path().to_path_buf(),
            source,
        };
        let (waker, woken) = UnixStream::pair().map_err(io)?;
        let serving = bound.clone();
        let thread = Worker::spawn("sessionstore-control", move || {
            accept_loop(&store, &serving, &woken, join_limit);
        });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                bound.remove();
                return Err(Error::storage("starting the control socket's thread", e));
            }
        };
        Ok(Server {
            waker: Some(waker),
            thread: Some(thread),
            join_limit,
            bound,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.waker.take());
        if let Some(t) = self.thread.take() {
            // Twice the limit: the thread itself waits up to the limit for its clients.
            t.join_within(self.join_limit.saturating_mul(2));
        }
        self.bound.remove();
    }
}

/// One client being served, and a clone of its stream to cut it off.
struct Client {
    worker: Worker,
    stream: UnixStream,
}

fn accept_loop(store: &Store, bound: &Bound, woken: &UnixStream, join_limit: Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients: Vec<Client> = Vec::new();
    loop {
        let mut fds = [
            PollFd::new(&bound.listener, PollFlags::IN),
            PollFd::new(woken, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                log::error!("sessionstore: the control socket stops serving: poll failed: {e}");
                break;
            }
        }
        if !fds[1].revents().is_empty() {
            break;
        }
        clients.retain(|c| !c.worker.is_finished());
        loop {
            match bound.listener.accept() {
                Ok((stream, _)) => admit(store, stream, &mut clients, &stop),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, say: back off rather than spin.
                    log::warn!("sessionstore: the control socket cannot accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    for c in &clients {
        let _ = c.stream.shutdown(Shutdown::Both);
    }
    for c in clients {
        c.worker.join_within(join_limit);
    }
}

/// Serves, refuses (not the owner nor root) or turns away (too many
/// clients) one new connection. Never blocks: a refusal is one short line
/// into an empty socket buffer.
fn admit(store: &Store, stream: UnixStream, clients: &mut Vec<Client>, stop: &Arc<AtomicBool>) {
    if let Verdict::Refuse(why) = peer::check(&stream) {
        refuse(&stream, "denied", &why);
        return;
    }
    clients.retain(|c| !c.worker.is_finished());
    if clients.len() >= MAX_CLIENTS {
        refuse(
            &stream,
            "busy",
            &format!("{MAX_CLIENTS} clients are being served; try again shortly"),
        );
        return;
    }
    let Ok(cut) = stream.try_clone() else {
        refuse(&stream, "busy", "cannot serve this connection now");
        return;
    };
    let store = store.clone();
    let stop = stop.clone();
    match Worker::spawn("sessionstore-control-client", move || {
        if let Err(e) = serve(&store, &stream, &stop) {
            log::debug!("sessionstore: a control client left: {e}");
        }
        // The accepting thread holds a clone of the stream: end the
        // connection itself, not just this handle on it.
        let _ = stream.shutdown(Shutdown::Both);
    }) {
        Ok(worker) => clients.push(Client {
            worker,
            stream: cut,
        }),
        Err(e) => {
            refuse(&cut, "busy", &format!("cannot start a thread: {e}"));
        }
    }
}

fn refuse(stream: &UnixStream, code: &str, message: &str) {
    let mut line = String::new();
    protocol::render_line(
        &Line::Error {
            code: code.into(),
            message: message.into(),
        },
        &mut line,
    );
    let _ = stream.set_nonblocking(true);
    let _ = send(stream, line.as_bytes());
    let _ = stream.shutdown(Shutdown::Both);
}

/// Serves one client until it leaves, breaks a limit, or the server stops.
fn serve(store: &Store, stream: &UnixStream, stop: &AtomicBool) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut out = Out {
        stream,
        buf: String::new(),
    };
    out.raw(protocol::GREETING)?;
    out.flush()?;
    let mut lines = LineReader::default();
    while !stop.load(Ordering::SeqCst) {
        let line = match lines.next(stream, Instant::now() + REQUEST_READ_LIMIT) {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(Cut::TooLong) => {
                return out.error(
                    "too-long",
                    &format!("a request line is at most {} bytes", protocol::MAX_REQUEST),
                );
            }
            Err(Cut::Late) => {
                return out.error("timeout", "no whole request line arrived in time; closing");
            }
            Err(Cut::Io(e)) => return Err(e),
        };
        match protocol::parse_request(&line) {
            Ok(request) => {
                answer::answer(
                    store,
                    &request,
                    Instant::now() + REQUEST_TIME_LIMIT,
                    &mut out,
                )?;
            }
            Err(r) => out.line(&Line::Error {
                code: r.code.into(),
                message: r.message,
            })?,
        }
        out.flush()?;
    }
    Ok(())
}

/// Why a request line was not read.
enum Cut {
    TooLong,
    Late,
    Io(io::Error),
}

/// Reads request lines of at most `MAX_REQUEST` bytes; bytes after a line
/// (a client that sends several requests at once) wait for the next call.
#[derive(Default)]
struct LineReader {
    buf: Vec<u8>,
}

impl LineReader {
    /// The next line without its `\n`; `None` at the end of the stream
    /// (a partial line at the end is dropped: the client left).
    fn next(&mut self, mut stream: &UnixStream, deadline: Instant) -> Result<Option<Vec<u8>>, Cut> {
        let mut chunk = [0u8; 512];
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let rest = self.buf.split_off(at + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                return Ok(Some(line));
            }
            if self.buf.len() >= protocol::MAX_REQUEST {
                return Err(Cut::TooLong);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Cut::Late);
            }
            stream.set_read_timeout(Some(left)).map_err(Cut::Io)?;
            let room = (protocol::MAX_REQUEST - self.buf.len()).min(chunk.len());
            match stream.read(&mut chunk[..room]) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Cut::Late);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Cut::Io(e)),
            }
        }
    }
}

/// Reply lines, gathered and sent in pieces of about 64 KiB.
struct Out<'a> {
    stream: &'a UnixStream,
    buf: String,
}

impl Out<'_> {
    fn raw(&mut self, text: &str) -> io::Result<()> {
        self.buf.push_str(text);
        self.buf.push('\n');
        Ok(())
    }

    fn error(&mut self, code: &str, message: &str) -> io::Result<()> {
        self.line(&Line::Error {
            code: code.into(),
            message: message.into(),
        })?;
        self.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut sent = 0;
        while sent < self.buf.len() {
            match send(self.stream, &self.buf.as_bytes()[sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        Ok(())
    }
}

impl Sink for Out<'_> {
    fn line(&mut self, line: &Line) -> io::Result<()> {
        protocol::render_line(line, &mut self.buf);
        if self.buf.len() >= 64 << 10 {
            self.flush()?;
        }
        Ok(())
    }
}

/// One send that never raises SIGPIPE when the client has gone: the
/// application may not ignore that signal, and it would kill the process.
fn send(stream: &UnixStream, bytes: &[u8]) -> io::Result<usize> {
    #[cfg(not(target_vendor = "apple"))]
    {
        rustix::net::send(stream, bytes, rustix::net::SendFlags::NOSIGNAL).map_err(io::Error::from)
    }
    #[cfg(target_vendor = "apple")]
    {
        // No MSG_NOSIGNAL there: the socket's own option, set before each send.
        use std::io::Write as _;
        rustix::net::sockopt::set_socket_nosigpipe(stream, true)?;
        let mut s = stream;
        s.write(bytes)
    }
}

//! A small TCP proxy in front of one Redis server, for the tests of lost and
//! late replies: it forwards every byte both ways, and, once armed, applies a
//! fault to the `n`-th command that holds a chosen pattern (a command name
//! such as `EVAL`, which also matches `EVALSHA`, and here `FCALL` too: a
//! script call either way; or a key):
//!
//! - [`Fault::DelayCommand`]: holds the command back for a while, then
//!   forwards it;
//! - [`Fault::DelayReply`]: forwards the command at once, and holds its reply
//!   back;
//! - [`Fault::DropReply`]: forwards the command, waits for the server's
//!   reply (so the server has run it), then closes both connections without
//!   passing the reply on: the client sees its connection drop after the
//!   server acted.
//! - [`Fault::DropCommand`]: closes both connections instead of forwarding
//!   the command: the client sees its connection drop, and the server never
//!   saw the command (as on a connection left stale by a restart).
//!
//! Commands are matched per read from the client: the store sends one
//! command per write, and no pipelines, so a read is one command.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What happens to the chosen command.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// The command reaches the server this much later.
    DelayCommand(Duration),
    /// The reply reaches the client this much later.
    DelayReply(Duration),
    /// The server runs the command; the client never sees the reply.
    DropReply,
    /// The server never sees the command; the client's connection drops.
    DropCommand,
}

/// The armed fault: the pattern, which match fires, and the fault.
struct Rule {
    pattern: Vec<u8>,
    nth: usize,
    fault: Fault,
}

struct Shared {
    upstream: u16,
    rule: Mutex<Option<Rule>>,
    /// Matches of the armed pattern seen since it was armed.
    seen: AtomicUsize,
    /// Faults applied since the proxy started.
    fired: AtomicUsize,
}

/// A proxy listening on a free loopback port. It stops accepting when
/// dropped; connections already open live on until either side closes.
pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts a proxy in front of the server on `upstream` (a port on 127.0.0.1).
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        listener.set_nonblocking(true).expect("non-blocking accept");
        let shared = Arc::new(Shared {
            upstream,
            rule: Mutex::new(None),
            seen: AtomicUsize::new(0),
            fired: AtomicUsize::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        thread::Builder::new()
            .name("test-proxy".into())
            .spawn(move || accept(&listener, &s, &st))
            .expect("a thread");
        Proxy { port, shared, stop }
    }

    /// The URL to give the store.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Applies `fault` to the `nth` (1-based) command holding `pattern`
    /// from now on, once.
    pub fn arm(&self, pattern: &str, nth: usize, fault: Fault) {
        self.shared.seen.store(0, Ordering::SeqCst);
        *self.shared.rule.lock().unwrap_or_else(|e| e.into_inner()) = Some(Rule {
            pattern: pattern.as_bytes().to_vec(),
            nth,
            fault,
        });
    }

    /// How many faults were applied since the proxy started.
    pub fn fired(&self) -> usize {
        self.shared.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn accept(listener: &TcpListener, shared: &Arc<Shared>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let shared = shared.clone();
                thread::spawn(move || serve(client, &shared));
            }
            Err(_) => thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// What the server-to-client half must do with the next reply.
#[derive(Default)]
struct Pending {
    drop_reply: AtomicBool,
    delay_reply_ms: AtomicUsize,
}

fn serve(client: TcpStream, shared: &Shared) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect(("127.0.0.1", shared.upstream)) else {
        return;
    };
    let pending = Arc::new(Pending::default());
    let (client_r, server_w) = (client.try_clone(), server.try_clone());
    let (Ok(mut client_r), Ok(mut server_w)) = (client_r, server_w) else {
        return;
    };
    let (mut server_r, mut client_w) = (server, client);
    let p = pending.clone();
    // Server to client: replies, unless one is to be dropped or held back.
    let back = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if p.drop_reply.swap(false, Ordering::SeqCst) {
                let _ = server_r.shutdown(Shutdown::Both);
                let _ = client_w.shutdown(Shutdown::Both);
                return;
            }
            let ms = p.delay_reply_ms.swap(0, Ordering::SeqCst);
            if ms > 0 {
                thread::sleep(Duration::from_millis(ms as u64));
            }
            if client_w.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = client_w.shutdown(Shutdown::Both);
    });
    // Client to server: commands, the chosen one faulted.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client_r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(fault) = chosen(shared, &buf[..n]) {
            shared.fired.fetch_add(1, Ordering::SeqCst);
            match fault {
                Fault::DelayCommand(d) => thread::sleep(d),
                Fault::DelayReply(d) => pending
                    .delay_reply_ms
                    .store(d.as_millis() as usize, Ordering::SeqCst),
                Fault::DropReply => pending.drop_reply.store(true, Ordering::SeqCst),
                Fault::DropCommand => break,
            }
        }
        if server_w.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server_w.shutdown(Shutdown::Both);
    let _ = back.join();
}

/// The fault to apply to `command`, if it is the chosen one (then disarmed).
fn chosen(shared: &Shared, command: &[u8]) -> Option<Fault> {
    let mut rule = shared.rule.lock().unwrap_or_else(|e| e.into_inner());
    let r = rule.as_ref()?;
    let holds = |p: &[u8]| command.windows(p.len()).any(|w| w == p);
    let script = r.pattern == b"EVAL" && holds(b"FCALL");
    if !script && !holds(&r.pattern) {
        return None;
    }
    if shared.seen.fetch_add(1, Ordering::SeqCst) + 1 != r.nth {
        return None;
    }
    rule.take().map(|r| r.fault)
}

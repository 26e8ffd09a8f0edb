//! The control socket (docs/control.md): where it is, who gets in, what it
//! answers, and hostile clients, which must never block the store's writers,
//! crash the process, or make it hold more than a bounded amount of memory.
//! The real `sessionctl` against a running app is in `sessionctl/tests/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sessionstore::{Config, ControlClient, Error, Event, Result, Store};

fn socket(dir: &Path) -> PathBuf {
    dir.join("sessionstore.sock")
}

/// Connects and reads the greeting (or the refusal).
fn raw(dir: &Path) -> (UnixStream, BufReader<UnixStream>, String) {
    let s = UnixStream::connect(socket(dir)).expect("the socket answers");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut greeting = String::new();
    r.read_line(&mut greeting).unwrap();
    (s, r, greeting)
}

/// Reads reply lines up to and including `ok` or `error …`.
fn reply(r: &mut BufReader<UnixStream>) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            lines.push("<eof>".into());
            return lines;
        }
        let line = line.trim_end().to_owned();
        let end = line == "ok" || line.starts_with("error ");
        lines.push(line);
        if end {
            return lines;
        }
    }
}

/// Saves `n` times on `store`: the app's writers.
fn saves(store: &Store, n: usize) -> Result<()> {
    let mut s = store.create()?;
    for i in 0..n {
        s.set("n", &i)?;
        store.save(&mut s)?;
    }
    Ok(())
}

engine_test!(
    the_socket_is_served_at_open_0600_and_removed_at_close,
    |db| {
        let store = db.config().open()?;
        let path = socket(&db.path);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (_s, _r, greeting) = raw(&db.path);
        assert_eq!(greeting, "sessionstore-control v1\n");
        drop(store);
        assert!(!path.exists(), "a clean close removes the socket");
        // Off: none; and the directory still opens with its leftovers.
        let store = db.config().control_socket(false).open()?;
        assert!(!path.exists());
        drop(store);
        Ok(())
    }
);

#[test]
fn a_temporary_store_serves_only_when_asked() -> Result<()> {
    let store = Store::temporary()?;
    assert!(!socket(store.path()).exists());
    let store = Config::temporary().control_socket(true).open()?;
    let mut client = ControlClient::connect(store.path())?;
    assert_eq!(client.stats()?.live_sessions, 0);
    Ok(())
}

engine_test!(requests_run_through_the_store_and_its_events, |db| {
    let store = db.config().open()?;
    let events = store.subscribe();
    let mut a = store.create_new_session("a")?;
    a.set("k", "v")?;
    store.save(&mut a)?;
    store.create_new_session("b")?;
    store.set_principal("a", Some("ada lovelace"))?;
    store.set_principal("b", Some("ada lovelace"))?;
    let _ = crate::common::events_before_now(&store, &events);

    let mut c = ControlClient::connect(&db.path)?;
    let stats = c.stats()?;
    assert_eq!(stats.live_sessions, 2);
    assert_eq!(stats.engine, Some(db.engine));
    let ids: Vec<String> = c.session_ids()?.collect::<Result<_>>()?;
    assert_eq!(ids.len(), 2);
    let shown = c.export_session("a")?.expect("a");
    assert_eq!(shown, store.export_session("a")?.expect("a"));
    let exported: Vec<_> = c.export()?.collect::<Result<_>>()?;
    assert_eq!(exported.len(), 2);
    assert!(exported.contains(&shown));
    let mut of = c.sessions_of("ada lovelace")?;
    of.sort();
    assert_eq!(of, ["a", "b"]);
    assert!(c.verify()?.is_ok());
    assert_eq!(c.destroy("nobody")?, None);
    // A store error is the store's own message, and the connection goes on.
    let Err(Error::Remote { message }) = c.destroy("not/an id") else {
        panic!("a bad id was accepted");
    };
    assert!(message.contains("invalid session id"), "{message}");
    assert_eq!(c.destroy("a")?, Some(true));
    assert_eq!(
        events.recv_timeout(Duration::from_secs(60)).ok(),
        Some(Event::Destroyed { sid: "a".into() })
    );
    assert_eq!(c.destroy_all_of("ada lovelace")?, 1);
    assert_eq!(
        events.recv_timeout(Duration::from_secs(60)).ok(),
        Some(Event::Destroyed { sid: "b".into() })
    );
    store.create_new_session("old")?;
    db.clock.advance(Duration::from_secs(3600));
    assert_eq!(c.expired_session_ids()?.count(), 1);
    assert_eq!(c.export_expired()?.count(), 1);
    assert_eq!(c.reap_expired()?, 1);
    assert_eq!(store.stats()?.live_sessions, 0);
    // A listing dropped half-way closes the connection; the next request opens another.
    for i in 0..3 {
        store.create_new_session(&format!("s{i}"))?;
    }
    let first = c.export()?.next();
    assert!(first.is_some());
    assert_eq!(c.stats()?.live_sessions, 3);
    Ok(())
});

engine_test!(
    garbage_gets_an_error_line_and_the_connection_goes_on,
    |db| {
        let _store = db.config().open()?;
        let (mut s, mut r, _) = raw(&db.path);
        for bad in [
            &b"hello\n"[..],
            b"v9 stats\n",
            b"v1\n",
            b"v1 stats please\n",
            b"v1 show %zz\n",
            b"\xff\xfe\n",
            b"\n",
            b"v1 show a b c\n",
        ] {
            s.write_all(bad).unwrap();
            let got = reply(&mut r);
            assert_eq!(got.len(), 1, "{bad:?}: {got:?}");
            assert!(
                got[0].starts_with("error bad-request ") || got[0].starts_with("error version "),
                "{bad:?}: {got:?}"
            );
        }
        // Two requests in one write are answered in order.
        s.write_all(b"v1 list live\nv1 stats\r\n").unwrap();
        assert_eq!(reply(&mut r), ["ok"]);
        assert!(reply(&mut r).iter().any(|l| l == "stat live_sessions 0"));
        Ok(())
    }
);

engine_test!(a_huge_line_is_cut_off_unread, |db| {
    let store = db.config().open()?;
    let (mut s, mut r, _) = raw(&db.path);
    // 64 MiB with no line break: the server stops reading at 4 KiB and
    // closes, so the write fails long before it is all sent.
    let mb = vec![b'x'; 1 << 20];
    let mut sent = 0usize;
    for _ in 0..64 {
        match s.write(&mb) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(
        sent < 64 << 20,
        "the server took the whole line ({sent} bytes)"
    );
    let got = reply(&mut r);
    assert!(got[0].starts_with("error too-long "), "{got:?}");
    saves(&store, 10)?;
    Ok(())
});

engine_test!(a_half_closed_client_gets_its_whole_reply, |db| {
    let store = db.config().open()?;
    store.create_new_session("a")?;
    let (s, mut r, _) = raw(&db.path);
    (&s).write_all(b"v1 list live\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(reply(&mut r), ["id a", "ok"]);
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "closed after the reply");
    // One that leaves without reading a long reply costs nothing either.
    for i in 0..300 {
        let mut s = store.create_new_session(&format!("big{i}"))?;
        s.set("v", &"x".repeat(1000))?;
        store.save(&mut s)?;
    }
    for _ in 0..5 {
        let (s, _r, _) = raw(&db.path);
        // Turned away as busy while earlier ones are cut off: then the
        // write fails, which is fine too.
        let _ = (&s).write_all(b"v1 export live\n");
        drop(s);
    }
    saves(&store, 10)?;
    assert_eq!(
        ControlClient::connect(&db.path)?.stats()?.live_sessions,
        302
    );
    Ok(())
});

// Slow clients hold every slot: the next is turned away at once, the app's
// writes go on meanwhile, and the slow ones are closed at the read limit.
engine_test!(slow_clients_hold_slots_but_never_writers, |db| {
    let store = db.config().open()?;
    let mut slow = Vec::new();
    for _ in 0..4 {
        let (mut s, r, greeting) = raw(&db.path);
        assert!(greeting.starts_with("sessionstore-control"), "{greeting}");
        s.write_all(b"v1 sta").unwrap(); // and nothing more
        slow.push((s, r));
    }
    let (_s, _r, busy) = raw(&db.path);
    assert!(busy.starts_with("error busy "), "{busy}");
    saves(&store, 50)?;
    for (_s, mut r) in slow {
        let got = reply(&mut r);
        assert!(got[0].starts_with("error timeout "), "{got:?}");
    }
    // The slots are free again.
    assert_eq!(ControlClient::connect(&db.path)?.stats()?.live_sessions, 1);
    Ok(())
});

// 100 clients at once: each gets an answer or `error busy`, at most a few
// are served at a time, and the app's writers never wait for them.
engine_test!(a_hundred_clients_at_once, |db| {
    let store = db.config().open()?;
    for i in 0..20 {
        store.create_new_session(&format!("s{i}"))?;
    }
    let path = db.path.clone();
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let (mut s, mut r, greeting) = raw(&path);
                if greeting.starts_with("error busy ") {
                    return false;
                }
                assert_eq!(greeting, "sessionstore-control v1\n");
                s.write_all(b"v1 export live\n").unwrap();
                let got = reply(&mut r);
                assert_eq!(got.last().map(String::as_str), Some("ok"), "{got:?}");
                true
            })
        })
        .collect();
    saves(&store, 100)?;
    let served = clients
        .into_iter()
        .map(|c| c.join().expect("a client thread"))
        .filter(|served| *served)
        .count();
    assert!(served >= 1, "nobody was served");
    assert_eq!(store.stats()?.live_sessions, 21);
    Ok(())
});

/// Another uid is refused. The tests run as root: the check runs this test
/// binary again as uid 65534 (`setpriv`), connecting to the socket. With
/// the socket's mode 0600 the kernel refuses the connection; with the mode
/// opened up by mistake, the server refuses the peer by its credentials.
#[test]
fn another_uid_is_refused() -> Result<()> {
    if let Ok(path) = std::env::var(PEER_CHILD) {
        return peer_child(Path::new(&path));
    }
    if rustix_uid() != 0 {
        println!(
            "skipped: another uid needs root to switch to, and this runs as uid {}",
            rustix_uid()
        );
        return Ok(());
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        println!("skipped: setpriv (util-linux) is not installed");
        return Ok(());
    }
    let dir = tempfile::tempdir().expect("a directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("store");
    let store = Config::new(&path).reap_interval(None).open()?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = socket(&path);

    let kernel = as_nobody(&sock);
    println!("uid 65534, socket 0600: {kernel}");
    assert!(
        kernel.contains("connect failed") && kernel.contains("ermission"),
        "{kernel}"
    );

    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let server = as_nobody(&sock);
    println!("uid 65534, socket 0666: {server}");
    assert!(
        server.contains("got: error denied uid%2065534%20may%20not%20operate"),
        "{server}"
    );
    // The owner is still served.
    assert_eq!(ControlClient::connect(&path)?.stats()?.live_sessions, 0);
    drop(store);
    Ok(())
}

const PEER_CHILD: &str = "CONTROL_PEER_CHILD_SOCKET";

fn rustix_uid() -> u32 {
    // The owner of /proc/self is this process's uid.
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// Runs this test as uid and gid 65534 with `PEER_CHILD` set; its output.
fn as_nobody(sock: &Path) -> String {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().expect("the test binary"))
        .args([
            "control::another_uid_is_refused",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PEER_CHILD, sock)
        .output()
        .expect("setpriv runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The child: connects, prints what it got.
fn peer_child(sock: &Path) -> Result<()> {
    match UnixStream::connect(sock) {
        Err(e) => println!("connect failed: {e}"),
        Ok(s) => {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut line = String::new();
            let _ = BufReader::new(&s).read_line(&mut line);
            println!("got: {}", line.trim_end());
            // Refused: nothing more comes, the server closed.
            let _ = (&s).write_all(b"v1 stats\n");
            let mut rest = String::new();
            let _ = BufReader::new(&s).read_to_string(&mut rest);
            println!("then: {rest:?}");
        }
    }
    Ok(())
}

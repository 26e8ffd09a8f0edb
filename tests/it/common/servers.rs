//! Real Redis servers for the tests: one standalone redis-server and one
//! 3-master Redis Cluster, each started on free loopback ports in a temporary
//! directory the first time a test asks for it, shared by the tests of this
//! process (each test uses its own namespace), and stopped when the process
//! ends. `Server::start` gives a test a server of its own, to kill and restart.
//!
//! Each redis-server runs under a small `sh` guard whose stdin is a pipe from
//! this process: when the process ends, however it ends, the pipe closes and
//! the guard stops its server and deletes the directory.
//!
//! Without redis-server installed, every Redis test fails with a message that
//! names the Debian package; none is skipped.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What a missing redis-server or redis-cli says.
const MISSING: &str = "redis-server and redis-cli are needed by the Redis tests: install the Debian package `redis-server` (apt-get install -y redis-server)";

/// How long a starting server or cluster may take before the test fails.
/// Not a speed limit: a server that takes this long is broken.
const START_BOUND: Duration = Duration::from_secs(30);

/// One redis-server process under its guard.
pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    extra: Vec<String>,
    guard: Child,
    /// Dropping it closes the pipe: the guard stops the server.
    stdin: Option<ChildStdin>,
}

impl Server {
    /// Starts a redis-server on a free port with `extra` settings
    /// (`--name value` pairs) in a new temporary directory.
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("a temporary directory").keep();
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        Server::start_at(free_port(), dir, extra)
    }

    fn start_at(port: u16, dir: PathBuf, extra: Vec<String>) -> Server {
        require_binaries();
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir.to_string_lossy(),
            "--logfile",
            "redis.log",
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().cloned());
        // $1 is the directory to delete at the end, the rest the server's arguments.
        let script = r#"dir="$1"; shift
redis-server "$@" &
pid=$!
cat >/dev/null
kill "$pid" 2>/dev/null
wait "$pid"
# 137: killed with SIGKILL by a test, which restarts it in the same directory.
[ $? -eq 137 ] || rm -rf "$dir""#;
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&dir)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting redis-server under sh: {e}; {MISSING}"));
        let stdin = guard.stdin.take();
        let server = Server {
            port,
            dir,
            extra,
            guard,
            stdin,
        };
        server.wait_until_up();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn wait_until_up(&self) {
        let give_up = Instant::now() + START_BOUND;
        while cli(self.port, &["PING"]).map(|o| o.stdout) != Some(b"PONG\n".to_vec()) {
            assert!(
                Instant::now() < give_up,
                "redis-server on port {} did not answer within {START_BOUND:?}; its log: {}",
                self.port,
                std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id, as it reports it.
    pub fn pid(&self) -> u32 {
        let info = cli(self.port, &["INFO", "server"]).expect("INFO server");
        String::from_utf8_lossy(&info.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix("process_id:")?.parse().ok())
            .expect("a process_id line")
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for its guard.
    pub fn kill(mut self) -> (u16, PathBuf, Vec<String>) {
        let pid = self.pid();
        let status = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -9 {pid}");
        // The server is dead: the guard ends, and keeps the directory.
        drop(self.stdin.take());
        self.guard.wait().ok();
        (
            self.port,
            std::mem::take(&mut self.dir),
            std::mem::take(&mut self.extra),
        )
    }

    /// Starts a server again on the port and in the directory of a killed one.
    pub fn restart((port, dir, extra): (u16, PathBuf, Vec<String>)) -> Server {
        Server::start_at(port, dir, extra)
    }

    /// Runs `redis-cli` against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = cli(self.port, args).expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stdin.take());
        self.guard.wait().ok();
    }
}

/// Fails the test, naming the package, if redis-server or redis-cli is missing.
pub fn require_binaries() {
    for bin in ["redis-server", "redis-cli"] {
        let found = Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "{bin} was not found. {MISSING}");
    }
}

fn cli(port: u16, args: &[&str]) -> Option<Output> {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()
}

/// Ports handed out in this process, so that two servers never get the same one.
static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A loopback port nothing listens on, whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = l.local_addr().expect("its address").port();
        drop(l);
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", bus)).is_err()
            || TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            continue;
        }
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        if !taken.contains(&port) {
            taken.push(port);
            return port;
        }
    }
}

/// The URL of the shared standalone server, started on first use; or, if
/// `SESSIONSTORE_TEST_REDIS_URL` is set, that server's (to look at what the
/// suite leaves behind: `redis-cli --scan`, `INFO keyspace`).
pub fn standalone() -> String {
    if let Ok(url) = std::env::var("SESSIONSTORE_TEST_REDIS_URL") {
        return url;
    }
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start(&[])).url()
}

/// The node URLs of the shared 3-master cluster, started on first use.
pub fn cluster() -> Vec<String> {
    static CLUSTER: OnceLock<Vec<Server>> = OnceLock::new();
    CLUSTER
        .get_or_init(start_cluster)
        .iter()
        .map(Server::url)
        .collect()
}

/// A 3-master cluster of the caller's own, to stop and sleep; stopped when
/// dropped.
pub fn private_cluster() -> Vec<Server> {
    start_cluster()
}

fn start_cluster() -> Vec<Server> {
    let nodes: Vec<Server> = (0..3)
        .map(|_| {
            Server::start(&[
                "--enable-debug-command",
                "yes",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
            ])
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("redis-cli --cluster create: {e}; {MISSING}"));
    assert!(
        out.status.success(),
        "redis-cli --cluster create failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every node must see the whole cluster before the tests use it.
    let give_up = Instant::now() + START_BOUND;
    for node in &nodes {
        loop {
            let info = node.cli(&["CLUSTER", "INFO"]);
            let ok = info.contains("cluster_state:ok")
                && info.contains("cluster_slots_assigned:16384")
                && info.contains("cluster_known_nodes:3");
            if ok {
                break;
            }
            assert!(
                Instant::now() < give_up,
                "the cluster was not ready within {START_BOUND:?}: {info}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    nodes
}

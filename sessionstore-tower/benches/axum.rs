//! Requests per second through the axum example's app (`examples/axum/app.rs`)
//! on a real port, with sessions in a `TowerStore` and, in the same run, in
//! tower-sessions' `MemoryStore` (the peer: `tower-sessions-sqlx-store`'s
//! sqlx cannot resolve beside this workspace's rusqlite; see
//! docs/performance.md).
//!
//! `cargo bench -p sessionstore-tower --bench axum [-- --quick]`
//!
//! Each measurement: 8 browsers (8 sessions, each a ureq agent with a
//! keep-alive connection, sending its session cookie) send requests one after another from 8
//! threads. `counter`: `GET /counter`, one write per request. `whoami`:
//! `GET /whoami`, one read per request. Rounds alternate the stores, and the
//! median round is reported.

#[path = "../examples/axum/app.rs"]
mod app;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sessionstore::{Config, Durability, Engine};
use sessionstore_tower::TowerStore;
use tower_sessions::cookie::time;
use tower_sessions::{Expiry, MemoryStore, SessionManagerLayer};

const BROWSERS: usize = 8;

/// Serves `router` on a free port from a 2-worker runtime on its own thread.
fn serve(make: impl FnOnce() -> axum::Router + Send + 'static) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a port");
            tx.send(listener.local_addr().expect("address"))
                .expect("main");
            axum::serve(listener, make()).await.expect("serving");
        });
    });
    rx.recv().expect("the server's address")
}

fn expiry() -> Expiry {
    Expiry::OnInactivity(time::Duration::minutes(30))
}

fn ours(engine: Engine, durability: Durability, dir: &std::path::Path) -> SocketAddr {
    let store = Config::new(dir)
        .engine(engine)
        .durability(durability)
        .open()
        .expect("opening the store");
    serve(move || {
        let tower = TowerStore::new(store);
        let layer = SessionManagerLayer::new(tower.clone())
            .with_secure(false)
            .with_expiry(expiry());
        app::router(tower, layer)
    })
}

fn memory() -> SocketAddr {
    serve(|| {
        let store = MemoryStore::default();
        let layer = SessionManagerLayer::new(store.clone())
            .with_secure(false)
            .with_expiry(expiry());
        app::router(store, layer)
    })
}

/// A browser: a keep-alive agent and its session cookie.
struct Browser {
    agent: ureq::Agent,
    base: String,
    cookie: String,
}

/// Browsers with a session each (one `/counter` request made).
fn browsers(addr: SocketAddr) -> Vec<Browser> {
    (0..BROWSERS)
        .map(|_| {
            let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
            let base = format!("http://{addr}");
            let mut res = agent
                .get(format!("{base}/counter"))
                .call()
                .expect("first request");
            let set = res
                .headers()
                .get("set-cookie")
                .expect("a session cookie")
                .to_str()
                .expect("ASCII");
            let cookie = set.split(';').next().expect("name=value").to_owned();
            assert_eq!(res.body_mut().read_to_string().expect("body"), "1");
            Browser {
                agent,
                base,
                cookie,
            }
        })
        .collect()
}

/// Requests per second of `per_browser` requests of `path` from each browser at once.
fn round(browsers: &[Browser], path: &str, per_browser: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for b in browsers {
            s.spawn(move || {
                for _ in 0..per_browser {
                    let mut res = b
                        .agent
                        .get(format!("{}{path}", b.base))
                        .header("Cookie", &b.cookie)
                        .call()
                        .expect("request");
                    res.body_mut().read_to_string().expect("body");
                }
            });
        }
    });
    (browsers.len() * per_browser) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (per_browser, rounds) = if quick { (100, 3) } else { (400, 5) };
    let dir = tempfile::tempdir().expect("dir");
    let targets: Vec<(&str, SocketAddr)> = vec![
        ("MemoryStore", memory()),
        (
            "TowerStore redb Immediate",
            ours(
                Engine::Redb,
                Durability::Immediate,
                &dir.path().join("redb-i"),
            ),
        ),
        (
            "TowerStore redb Periodic(1s)",
            ours(
                Engine::Redb,
                Durability::Periodic(Duration::from_secs(1)),
                &dir.path().join("redb-p"),
            ),
        ),
        (
            "TowerStore sled Immediate",
            ours(
                Engine::Sled,
                Durability::Immediate,
                &dir.path().join("sled-i"),
            ),
        ),
    ];
    let clients: Vec<_> = targets.iter().map(|(_, a)| browsers(*a)).collect();
    println!(
        "{BROWSERS} browsers x {per_browser} requests per round, {rounds} rounds alternating, median round"
    );
    for path in ["/counter", "/whoami"] {
        let mut rates = vec![Vec::new(); targets.len()];
        for _ in 0..rounds {
            for (i, c) in clients.iter().enumerate() {
                rates[i].push(round(c, path, per_browser));
            }
        }
        let rates: Vec<f64> = rates.into_iter().map(median).collect();
        println!("\nGET {path}");
        for ((name, _), rate) in targets.iter().zip(&rates) {
            println!(
                "  {name:<30} {rate:>9.0} req/s   {:.2}x MemoryStore",
                rate / rates[0]
            );
        }
    }
}

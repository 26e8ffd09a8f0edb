//! What an idle control socket costs the store's writes: the same saves on
//! a store with the socket on and with it off, counted in instructions by
//! callgrind, which no load on the machine moves (wall time would: several
//! builds share the cores this runs on).
//!
//! ```text
//! cargo build --release --example control_cost
//! for s in on off; do
//!   TMPDIR=/dev/shm valgrind --tool=callgrind --callgrind-out-file=/tmp/cc.$s \
//!     --collect-atstart=no --toggle-collect='control_cost::saves' \
//!     target/release/examples/control_cost $s 2000 redb
//! done
//! callgrind_annotate /tmp/cc.on | head -20; callgrind_annotate /tmp/cc.off | head -20
//! ```
//!
//! Only `saves` is counted: the open (which binds the socket and starts its
//! thread) and the close are not, so the figure is what the socket's
//! thread, asleep in `poll`, takes from the writes while it serves nobody.
//! Without valgrind it prints the wall time of the saves too (noisy).
//! docs/control.md has the figures.

use std::time::Instant;

use sessionstore::{Config, Durability, Engine, Store};

/// The saves that are measured: one session, its counter set and saved `n` times.
#[inline(never)]
fn saves(store: &Store, n: u64) -> sessionstore::Result<()> {
    let mut session = store.create()?;
    for i in 0..n {
        session.set("n", &i)?;
        store.save(&mut session)?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let socket = match args.next().as_deref() {
        Some("on") => true,
        Some("off") => false,
        other => {
            return Err(
                format!("usage: control_cost on|off [N] [redb|sled], not {other:?}").into(),
            );
        }
    };
    let n: u64 = args.next().map_or(Ok(2000), |a| a.parse())?;
    let engine: Engine = args.next().map_or(Ok(Engine::default()), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let store = Config::new(dir.path().join("store"))
        .engine(engine)
        .durability(Durability::Immediate)
        .reap_interval(None)
        .control_socket(socket)
        .open()?;
    assert_eq!(
        dir.path().join("store/sessionstore.sock").exists(),
        socket,
        "the socket is served exactly when asked"
    );
    let t = Instant::now();
    saves(&store, n)?;
    let took = t.elapsed();
    println!(
        "control_cost: socket={} engine={} saves={n} wall={:.3}s ({:.0} saves/s)",
        if socket { "on" } else { "off" },
        engine.name(),
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    Ok(())
}

//! Kill redis-server in the middle of a run and start it again on the same
//! port, with `appendonly yes` and `appendfsync always`: calls fail while it
//! is down, with an error naming the server; the next calls after the restart
//! succeed on the same store handle; no acknowledged save is lost.

use sessionstore::{Error, ManualClock, SessionStore};

use crate::common::servers::Server;

#[test]
fn a_killed_server_restarted_on_its_port_keeps_acknowledged_saves_and_serves_again()
-> sessionstore::Result<()> {
    let server = Server::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = server.url();
    let clock = ManualClock::default();
    let store = super::config(&url, &clock, "restart").open()?;
    let mut sids = Vec::new();
    for i in 0..20u32 {
        let mut s = store.create()?;
        s.set("n", &i)?;
        store.save(&mut s)?;
        let mut cart = store.get(s.id(), Some("cart"))?.expect("live");
        cart.set("items", &vec![i; 3])?;
        store.save(&mut cart)?;
        sids.push(s.id().to_owned());
    }
    let mut pending = store.get(&sids[2], None)?.expect("live");
    pending.set("n", &1000u32)?;

    let killed = server.kill();
    let names_the_server = |r: sessionstore::Result<()>, what: &str| match r {
        Err(e @ Error::Storage { .. }) => {
            assert!(e.to_string().contains(&url), "{what}: {e}")
        }
        other => panic!("{what} with the server down: want a storage error, got {other:?}"),
    };
    names_the_server(store.get(&sids[0], None).map(drop), "get");
    names_the_server(store.save(&mut pending), "save");
    names_the_server(store.create().map(drop), "create");
    names_the_server(store.destroy(&sids[1]).map(drop), "destroy");
    assert!(pending.is_dirty(), "a failed save leaves the session dirty");

    let server = Server::restart(killed);
    // The same handle: its pooled connections are stale, and it recovers by itself.
    for (i, sid) in sids.iter().enumerate() {
        let s = store
            .get(sid, None)?
            .expect("an acknowledged session survived");
        assert_eq!(s.get::<u32>("n")?, Some(i as u32));
        let cart = store.get(sid, Some("cart"))?.expect("live");
        assert_eq!(cart.get::<Vec<u32>>("items")?, Some(vec![i as u32; 3]));
    }
    store.save(&mut pending)?;
    assert_eq!(
        store.get(&sids[2], None)?.expect("live").get::<u32>("n")?,
        Some(1000)
    );
    assert!(store.destroy(&sids[1])?);
    assert!(store.get(&sids[1], None)?.is_none());
    drop(server);
    Ok(())
}

#[test]
fn opening_a_store_on_a_server_that_is_down_names_the_server() {
    // A port nothing listens on: a server started and stopped again.
    let server = Server::start(&[]);
    let url = server.url();
    drop(server);
    let err = super::config(&url, &sessionstore::ManualClock::default(), "down")
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::Storage { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[test]
fn connections_the_server_drops_are_replaced_without_an_error() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let store = super::config(&server.url(), &ManualClock::default(), "dropped").open()?;
    let mut s = store.create_new_session("s")?;
    // Several pooled connections, then the server closes every one of them.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| store.get("s", None).map(drop));
        }
    });
    let killed = server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    assert_ne!(killed.trim(), "0", "the store had connections to drop");
    s.set("k", &1u8)?;
    store.save(&mut s)?;
    assert_eq!(
        store.get("s", None)?.expect("live").get::<u8>("k")?,
        Some(1)
    );
    Ok(())
}

/// A server that lost the store's scripts and functions (`SCRIPT FLUSH` and
/// `FUNCTION FLUSH`, as after a restart or a failover to a node that never
/// ran them) answers `NOSCRIPT` or `Function not found`; every call loads
/// its script again and succeeds.
#[test]
fn every_call_loads_its_script_again_after_a_script_flush() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let clock = ManualClock::default();
    let store = super::config(&server.url(), &clock, "flush").open()?;
    let flushed = || {
        server.cli(&["SCRIPT", "FLUSH"]);
        server.cli(&["FUNCTION", "FLUSH"]);
    };
    flushed();
    let mut s = store.create()?;
    flushed();
    s.set("k", &1u8)?;
    store.save(&mut s)?;
    flushed();
    clock.advance(std::time::Duration::from_secs(60));
    assert!(store.touch(s.id())?);
    flushed();
    store.set_principal(s.id(), Some("ada"))?;
    flushed();
    let id = store.regenerate(s.id())?;
    flushed();
    let export = store.export_session(&id)?.expect("there");
    assert!(store.destroy(&id)?);
    flushed();
    store.import_session(&export, sessionstore::ImportMode::Create)?;
    assert_eq!(
        store.get(&id, None)?.expect("live").get::<u8>("k")?,
        Some(1)
    );
    flushed();
    assert_eq!(store.destroy_all_of("ada")?, 1);
    assert!(store.get(&id, None)?.is_none());
    Ok(())
}

//! A save of a copy whose session nobody wrote since its read (or its last
//! save) is one round trip: the check-and-write script, with no read of the
//! metadata record first. A copy whose session was written since falls back
//! to reading the record, and still saves right.

use std::time::Duration;

use sessionstore::{Error, ManualClock, SessionStore};

use crate::common::servers::Server;

/// Calls of `command` that did not fail since the last `CONFIG RESETSTAT`,
/// as `INFO commandstats` counts them (a failed one: an `EVALSHA` of a
/// script the server did not hold yet).
fn calls(server: &Server, command: &str) -> u64 {
    let info = server.cli(&["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:");
    let Some(line) = info.lines().find_map(|l| l.strip_prefix(&prefix)) else {
        return 0;
    };
    let field = |name: &str| -> u64 {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name))
            .map_or(0, |n| n.parse().expect("a number of calls"))
    };
    field("calls=") - field("failed_calls=")
}

/// Since the last reset: the scripts run (`EVALSHA`, or `FCALL` for the
/// saves), and the reads of a
/// session's hash (`HGET` and `HMGET`), those the scripts call included (a
/// save that writes the scope reads `m` and the scope's version in one
/// `HMGET`, and compares the version with the session's, to refuse for
/// `save_if_unchanged` or to report a stale copy for `save`).
fn client_calls(server: &Server) -> (u64, u64) {
    let evalsha = calls(server, "evalsha") + calls(server, "eval") + calls(server, "fcall");
    (evalsha, calls(server, "hget") + calls(server, "hmget"))
}

#[test]
fn an_unchanged_session_saves_in_one_round_trip_and_a_changed_one_falls_back()
-> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let clock = ManualClock::default();
    let store = super::config(&server.url(), &clock, "trips").open()?;
    let mut s = store.create_new_session("s")?;
    let mut other = store.get("s", None)?.expect("live");

    // Fresh from create, then from its own save, then after a get.
    // Each save a second later: a new last access, so new metadata bytes.
    for round in 0..3u8 {
        clock.advance(Duration::from_secs(1));
        s.set("k", &round)?;
        server.cli(&["CONFIG", "RESETSTAT"]);
        store.save(&mut s)?;
        assert_eq!(client_calls(&server), (1, 1), "round {round}");
    }
    clock.advance(Duration::from_secs(1));
    let mut read = store.get("s", None)?.expect("live");
    read.set("r", &1u8)?;
    server.cli(&["CONFIG", "RESETSTAT"]);
    store.save_if_unchanged(&mut read)?;
    assert_eq!(client_calls(&server), (1, 1), "after a get");

    // `other` was read before those saves: its first try finds another
    // record, it reads the record and tries again.
    other.set("o", &1u8)?;
    server.cli(&["CONFIG", "RESETSTAT"]);
    store.save(&mut other)?;
    assert_eq!(client_calls(&server), (2, 3), "a stale copy");
    // Then it holds the record it wrote: one round trip again.
    other.set("o", &2u8)?;
    server.cli(&["CONFIG", "RESETSTAT"]);
    store.save(&mut other)?;
    assert_eq!(client_calls(&server), (1, 1), "after its own save");

    // Past the deadline by the store's clock the key is still on the
    // server (its TTL runs on real time), bytes unchanged: no write.
    clock.advance(Duration::from_secs(601));
    other.set("o", &3u8)?;
    server.cli(&["CONFIG", "RESETSTAT"]);
    assert!(matches!(
        store.save(&mut other),
        Err(Error::NotFound { .. })
    ));
    // The one script: the namespace's time floor, raised to the time at
    // which a session was first judged expired (once per time).
    assert_eq!(
        client_calls(&server),
        (1, 1),
        "expired: read, and the floor"
    );
    assert_eq!(
        server
            .cli(&["EXISTS", &super::keys_of(&server, "trips")[0]])
            .trim(),
        "1"
    );
    assert!(store.get("s", None)?.is_none());
    Ok(())
}

/// A session with a principal whose set covers its new deadline (the hash
/// says how far, field `c`) saves in one round trip; past that, in two:
/// `INDEX` on the principal's set, reaching half an idle timeout further,
/// then the check-and-write.
#[test]
fn a_session_with_a_principal_covers_its_set_once_per_half_idle_timeout() -> sessionstore::Result<()>
{
    let server = Server::start(&[]);
    let clock = ManualClock::default();
    let store = super::config(&server.url(), &clock, "ptrips").open()?;
    store.create_new_session("s")?;
    // Covered up to 600 s + 300 s from now.
    store.set_principal("s", Some("ada"))?;
    let save = |advance: u64, value: u8| -> sessionstore::Result<(u64, u64)> {
        clock.advance(Duration::from_secs(advance));
        let mut s = store.get("s", None)?.expect("live");
        s.set("k", &value)?;
        server.cli(&["CONFIG", "RESETSTAT"]);
        store.save(&mut s)?;
        Ok((client_calls(&server).0, calls(&server, "zadd")))
    };
    assert_eq!(save(100, 1)?, (1, 0), "deadline 700 s: covered");
    assert_eq!(save(200, 2)?, (1, 0), "deadline 900 s: covered");
    assert_eq!(save(1, 3)?, (2, 1), "deadline 901 s: INDEX, then SAVE");
    assert_eq!(save(299, 4)?, (1, 0), "deadline 1200 s: covered to 1201 s");
    Ok(())
}

/// Saves on one server go by `FCALL` of the store's function library
/// (which costs the server less than `EVALSHA`), loaded by the first save;
/// a server without functions (before Redis 7, or with `FCALL` or
/// `FUNCTION` renamed away) gets `EVALSHA`, and saves the same.
#[test]
fn saves_go_by_fcall_or_by_evalsha_where_the_server_has_no_functions() -> sessionstore::Result<()> {
    let cases: [(&[&str], bool); 3] = [
        (&[], true),
        (&["--rename-command", "FCALL", ""], false),
        (&["--rename-command", "FUNCTION", ""], false),
    ];
    for (extra, functions) in cases {
        let server = Server::start(extra);
        let clock = ManualClock::default();
        let store = super::config(&server.url(), &clock, "fcall").open()?;
        let mut s = store.create()?;
        for round in 0..3u8 {
            clock.advance(Duration::from_secs(1));
            s.set("k", &round)?;
            server.cli(&["CONFIG", "RESETSTAT"]);
            store.save(&mut s)?;
            let fcall = calls(&server, "fcall");
            let eval = calls(&server, "evalsha") + calls(&server, "eval");
            let want = if functions { (1, 0) } else { (0, 1) };
            assert_eq!((fcall, eval), want, "{extra:?}, round {round}");
        }
        let read = store.get(s.id(), None)?.expect("live");
        assert_eq!(read.get::<u8>("k")?, Some(2), "{extra:?}");
    }
    Ok(())
}

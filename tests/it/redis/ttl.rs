//! Every key the store writes carries a TTL at or after its session's
//! deadline, computed from the store's clock, however far that clock is from
//! real time; only a session that never expires has none.

use std::time::{Duration, UNIX_EPOCH};

use sessionstore::{ManualClock, SessionStore};

use crate::common::servers::Server;

const IDLE_MS: i64 = 600_000;

#[test]
fn ttls_follow_the_store_clock_even_years_from_real_time() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    // 2020, 1990 and 2080: years behind and ahead of the server's clock.
    for (ns, secs) in [
        ("c2020", 1_577_836_800u64),
        ("c1990", 631_152_000),
        ("c2080", 3_471_292_800),
    ] {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(secs));
        let store = super::config(&server.url(), &clock, ns).open()?;
        let mut s = store.create()?;
        s.set("k", &1u8)?;
        store.save(&mut s)?;
        let mut c = store.get(s.id(), Some("c"))?.expect("live");
        c.set("k", &2u8)?;
        store.save(&mut c)?;
        let id = store.regenerate(s.id())?;
        let forever = store.create()?;
        store.set_idle_timeout(forever.id(), None)?;

        let keys = super::keys_of(&server, ns);
        assert_eq!(keys.len(), 2, "{ns}: {keys:?}");
        for key in &keys {
            let pttl: i64 = server.cli(&["PTTL", key]).trim().parse().expect("a number");
            if key.contains(forever.id()) {
                assert_eq!(pttl, -1, "{ns}: a session that never expires has no TTL");
            } else {
                assert!(key.contains(&id), "{ns}: {key}");
                // 600 s from the clock's now when written, counting down since:
                // a TTL taken from the clock's absolute time would have
                // expired the key already (1990) or be decades long (2080).
                assert!(pttl > 0 && pttl <= IDLE_MS, "{ns}: {key} has PTTL {pttl}");
            }
        }
        // Moving the clock moves liveness at once, whatever the TTL says.
        clock.advance(Duration::from_secs(600));
        assert!(store.get(&id, None)?.is_none());
        assert!(store.get(forever.id(), None)?.is_some());
    }
    Ok(())
}

/// A principal's sorted set lives as long as its members' sessions can: its
/// TTL reaches the latest absolute deadline among them; with a member that
/// has no absolute deadline it has none (such a set is pruned on read).
#[test]
fn a_principals_set_lives_as_long_as_its_sessions_can() -> sessionstore::Result<()> {
    const ABSOLUTE_MS: i64 = 3_600_000;
    let server = Server::start(&[]);
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let store = super::config(&server.url(), &clock, "pabs")
        .idle_timeout(Duration::from_secs(7200))
        .absolute_timeout(Some(Duration::from_millis(ABSOLUTE_MS as u64)))
        .open()?;
    let set_ttl = |ns: &str, name: &str| -> i64 {
        let key = format!("{{{ns}/p:{name}}}");
        server
            .cli(&["PTTL", &key])
            .trim()
            .parse()
            .expect("a number")
    };
    let first = store.create()?;
    store.set_principal(first.id(), Some("ada"))?;
    let ttl = set_ttl("pabs", "ada");
    assert!(
        ttl > ABSOLUTE_MS - 1_000 && ttl <= ABSOLUTE_MS,
        "PTTL {ttl}"
    );
    // A session created 20 minutes later can live 20 minutes longer.
    clock.advance(Duration::from_secs(1200));
    let second = store.create()?;
    store.set_principal(second.id(), Some("ada"))?;
    let ttl = set_ttl("pabs", "ada");
    assert!(
        ttl > ABSOLUTE_MS - 1_000 && ttl <= ABSOLUTE_MS,
        "PTTL {ttl}"
    );
    // An earlier deadline never shortens it: set the first one again.
    store.set_principal(first.id(), None)?;
    store.set_principal(first.id(), Some("ada"))?;
    assert!(set_ttl("pabs", "ada") > ABSOLUTE_MS - 1_000);

    // Without an absolute timeout a session can live for ever, and so does its set.
    let open_ended = super::config(&server.url(), &clock, "pnone").open()?;
    let s = open_ended.create()?;
    open_ended.set_principal(s.id(), Some("bob"))?;
    assert_eq!(set_ttl("pnone", "bob"), -1);
    Ok(())
}

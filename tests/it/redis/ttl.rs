//! Every key the store writes carries a TTL at or after its session's
//! deadline, computed from the store's clock, however far that clock is from
//! real time; only a session that never expires has none.

use std::time::{Duration, UNIX_EPOCH};

use sessionstore::{ManualClock, SessionStore};

use crate::common::servers::Server;

const IDLE_MS: i64 = 600_000;
/// What a principal's set lives past its members' covers (`INDEX`).
const MARGIN_MS: i64 = 1_000;
/// How far past a session's idle deadline a cover reaches: half the idle
/// timeout, so that the saves of the next half timeout need no `INDEX`.
const SLACK_MS: i64 = IDLE_MS / 2;

/// Whether a set's PTTL covers `ms` from now with the margin, give or take
/// a second of real time since it was set.
fn covers(pttl: i64, ms: i64) -> bool {
    pttl > ms + MARGIN_MS - 1_000 && pttl <= ms + MARGIN_MS
}

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

        // The old id of the regenerate is a tombstone (a hash without `m`,
        // with a TTL of its own): every key has a TTL but the session that
        // never expires. The time floor is no key of a session.
        let all = super::keys_of(&server, ns);
        let keys: Vec<String> = all
            .iter()
            .filter(|k| server.cli(&["HEXISTS", k, "m"]).trim() == "1")
            .cloned()
            .collect();
        assert_eq!(keys.len(), 2, "{ns}: {all:?}");
        for key in all
            .iter()
            .filter(|k| !keys.contains(k) && !k.ends_with("/floor}"))
        {
            let pttl: i64 = server.cli(&["PTTL", key]).trim().parse().expect("a number");
            assert!(pttl > 0, "{ns}: the tombstone {key} has PTTL {pttl}");
        }
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
/// TTL reaches the latest deadline among them (here the absolute ones).
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
    assert!(covers(ttl, ABSOLUTE_MS), "PTTL {ttl}");
    // A session created 20 minutes later can live 20 minutes longer.
    clock.advance(Duration::from_secs(1200));
    let second = store.create()?;
    store.set_principal(second.id(), Some("ada"))?;
    let ttl = set_ttl("pabs", "ada");
    assert!(covers(ttl, ABSOLUTE_MS), "PTTL {ttl}");
    // An earlier deadline never shortens it: set the first one again.
    store.set_principal(first.id(), None)?;
    store.set_principal(first.id(), Some("ada"))?;
    assert!(set_ttl("pabs", "ada") > ABSOLUTE_MS - 1_000);

    Ok(())
}

/// Without an absolute timeout, a session's deadline moves with every save
/// and touch: one past what its principal's set covers moves the set first
/// (the member's score is how far its last cover reaches), even from a copy
/// read before the principal was set; a session that never expires makes
/// the set persistent, and the set goes with its last member.
#[test]
fn a_principals_set_follows_its_sessions_deadline() -> sessionstore::Result<()> {
    const T0: u64 = 1_700_000_000;
    let server = Server::start(&[]);
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(T0));
    let store = super::config(&server.url(), &clock, "pidle").open()?;
    let key = "{pidle/p:cy}";
    let pttl = || -> i64 { server.cli(&["PTTL", key]).trim().parse().expect("a number") };
    // The one member's score: how far its cover reaches, in µs since the
    // epoch (exact in an f64 below 2^53).
    let score = || -> u64 {
        let out = server.cli(&["ZRANGE", key, "0", "-1", "WITHSCORES"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "one member: {out}");
        lines[1].trim().parse::<f64>().expect("a score") as u64
    };
    let secs = |s: u64| s * 1_000_000;

    let s = store.create()?;
    // Read before the principal is set: its save expects none.
    let mut stale = store.get(s.id(), None)?.expect("live");
    store.set_principal(s.id(), Some("cy"))?;
    let ttl = pttl();
    assert!(covers(ttl, IDLE_MS + SLACK_MS), "PTTL {ttl}");
    // The change of principal was a use, 1 µs after the creation; the cover
    // reaches half an idle timeout past the deadline.
    assert_eq!(score(), secs(T0 + 600 + 300) + 1);

    clock.advance(Duration::from_secs(500));
    stale.set("k", &1u8)?;
    store.save(&mut stale)?;
    assert_eq!(
        score(),
        secs(T0 + 1100 + 300),
        "the stale copy's save moved it"
    );

    // A touch to a deadline the set covers already leaves it; one past it
    // moves it.
    clock.advance(Duration::from_secs(300));
    assert!(store.touch(s.id())?);
    assert_eq!(score(), secs(T0 + 1400), "covered: left");
    clock.advance(Duration::from_secs(100));
    assert!(store.touch(s.id())?);
    assert_eq!(score(), secs(T0 + 1500 + 300), "the touch moved it");

    store.set_idle_timeout(s.id(), Some(Duration::from_secs(7200)))?;
    let ttl = pttl();
    assert!(covers(ttl, 7_200_000 + 3_600_000), "PTTL {ttl}");
    let long = score();
    // A shorter timeout moves the deadline earlier; the score stays, and so
    // does the set's TTL.
    store.set_idle_timeout(s.id(), Some(Duration::from_secs(60)))?;
    assert_eq!(score(), long);
    assert!(covers(pttl(), 7_200_000 + 3_600_000));

    store.set_idle_timeout(s.id(), None)?;
    assert_eq!(pttl(), -1, "a session that never expires");
    // Expiring again, it gives the set a TTL again.
    store.set_idle_timeout(s.id(), Some(Duration::from_secs(600)))?;
    let ttl = pttl();
    assert!(covers(ttl, IDLE_MS + SLACK_MS), "PTTL {ttl}");

    assert!(store.destroy(s.id())?);
    assert_eq!(server.cli(&["EXISTS", key]).trim(), "0");
    Ok(())
}

/// A set made persistent by a session that never expires takes a TTL again
/// once that session leaves it: up to its other members' deadlines.
#[test]
fn a_persistent_principal_set_takes_a_ttl_again_when_its_endless_session_leaves()
-> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let store = super::config(&server.url(), &clock, "pend").open()?;
    let key = "{pend/p:dan}";
    let pttl = || -> i64 { server.cli(&["PTTL", key]).trim().parse().expect("a number") };
    let endless = store.create()?;
    store.set_idle_timeout(endless.id(), None)?;
    store.set_principal(endless.id(), Some("dan"))?;
    let timed = store.create()?;
    store.set_principal(timed.id(), Some("dan"))?;
    assert_eq!(pttl(), -1);
    // Destroyed: the set lives as long as the other session can.
    assert!(store.destroy(endless.id())?);
    assert!(covers(pttl(), IDLE_MS + SLACK_MS), "PTTL {}", pttl());

    // The same when the endless one moves to another principal.
    let endless = store.create()?;
    store.set_idle_timeout(endless.id(), None)?;
    store.set_principal(endless.id(), Some("dan"))?;
    assert_eq!(pttl(), -1);
    store.set_principal(endless.id(), Some("eve"))?;
    assert!(covers(pttl(), IDLE_MS + SLACK_MS), "PTTL {}", pttl());
    Ok(())
}

/// A member that never expires, whose key is gone without its `UNINDEX` (a
/// crash between the two), is pruned by the next `set_principal` to that
/// principal, and the set takes a TTL again.
#[test]
fn set_principal_prunes_a_gone_member_that_never_expired() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let store = super::config(&server.url(), &clock, "pgone").open()?;
    let key = "{pgone/p:fay}";
    let endless = store.create()?;
    store.set_idle_timeout(endless.id(), None)?;
    store.set_principal(endless.id(), Some("fay"))?;
    server.cli(&["DEL", &format!("{{pgone:{}}}", endless.id())]);
    let timed = store.create()?;
    store.set_principal(timed.id(), Some("fay"))?;
    let members = server.cli(&["ZRANGE", key, "0", "-1"]);
    assert_eq!(members.lines().count(), 1, "{members}");
    assert!(members.starts_with(timed.id()), "{members}");
    let pttl: i64 = server.cli(&["PTTL", key]).trim().parse().expect("a number");
    assert!(covers(pttl, IDLE_MS + SLACK_MS), "PTTL {pttl}");
    Ok(())
}

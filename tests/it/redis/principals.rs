//! The principal index on Redis: a sorted set per principal, in its own
//! slot, that never leaves a live session out and is pruned on read.

use std::time::Duration;

use sessionstore::{ManualClock, SessionStore};

use crate::common::servers::Server;

fn zcard(server: &Server, key: &str) -> usize {
    server
        .cli(&["ZCARD", key])
        .trim()
        .parse()
        .expect("a number")
}

fn members(server: &Server, key: &str) -> Vec<String> {
    server
        .cli(&["ZRANGE", key, "0", "-1"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn stale_members_are_pruned_on_read_and_a_live_one_mid_set_is_kept() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let clock = ManualClock::default();
    let store = super::config(&server.url(), &clock, "pr").open()?;
    let key = "{pr/p:ada}";
    let a = store.create()?;
    let b = store.create()?;
    store.set_principal(a.id(), Some("ada"))?;
    store.set_principal(b.id(), Some("ada"))?;
    assert_eq!(zcard(&server, key), 2);
    // A crash between `TAKE` and `ZREM`: the hash is gone, the member stays.
    server.cli(&["DEL", &format!("{{pr:{}}}", a.id())]);
    // A member of no session, and one that is not a member at all.
    server.cli(&["ZADD", key, "0", "ghost:00000000000000ff"]);
    server.cli(&["ZADD", key, "0", "garbage"]);
    // A live session whose hash does not name ada yet (a `set_principal`
    // between its ZADD and its script): kept, not listed.
    let c = store.create()?;
    let c_member = members(&server, key).len();
    store.set_principal(c.id(), Some("bob"))?;
    let bob_member = members(&server, "{pr/p:bob}").pop().expect("one member");
    server.cli(&["ZADD", key, "+inf", &bob_member]);
    assert_eq!(zcard(&server, key), c_member + 1);

    assert_eq!(store.sessions_of("ada")?, [b.id().to_owned()]);
    let left = members(&server, key);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&bob_member), "{left:?}");
    assert!(left.iter().any(|m| m.starts_with(b.id())), "{left:?}");
    Ok(())
}

#[test]
fn expiry_by_ttl_leaves_a_member_that_the_next_read_removes() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let clock = ManualClock::default();
    let store = super::config(&server.url(), &clock, "ex").open()?;
    let key = "{ex/p:ada}";
    let s = store.create()?;
    store.set_principal(s.id(), Some("ada"))?;
    clock.advance(Duration::from_secs(601));
    // Expired by the clock, its key still there: not listed, not pruned yet.
    assert_eq!(store.sessions_of("ada")?, Vec::<String>::new());
    assert_eq!(zcard(&server, key), 1);
    // Redis drops the key (its TTL): the next read drops the member, and
    // with it the empty set.
    server.cli(&["DEL", &format!("{{ex:{}}}", s.id())]);
    assert_eq!(store.sessions_of("ada")?, Vec::<String>::new());
    assert_eq!(server.cli(&["EXISTS", key]).trim(), "0");
    Ok(())
}

#[test]
fn set_principal_prunes_the_members_that_are_due() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let clock = ManualClock::default();
    let store = super::config(&server.url(), &clock, "due").open()?;
    let key = "{due/p:ada}";
    let old = store.create()?;
    store.set_principal(old.id(), Some("ada"))?;
    // Past its score: its deadline and half an idle timeout (the cover's reach).
    clock.advance(Duration::from_secs(901));
    server.cli(&["DEL", &format!("{{due:{}}}", old.id())]);
    let fresh = store.create()?;
    store.set_principal(fresh.id(), Some("ada"))?;
    // The dead member was due (its score has passed): gone.
    let left = members(&server, key);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(fresh.id()));
    // The principal's set is no session: listings do not see it.
    assert_eq!(store.session_ids()?.len(), 1);
    Ok(())
}

#[test]
fn destroy_all_of_leaves_a_session_that_moved_to_another_principal() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let clock = ManualClock::default();
    let store = super::config(&server.url(), &clock, "mv").open()?;
    let s = store.create()?;
    store.set_principal(s.id(), Some("ada"))?;
    let member = members(&server, "{mv/p:ada}").pop().expect("one member");
    store.set_principal(s.id(), Some("bob"))?;
    // As if the move crashed before its ZREM: ada's set still names it.
    server.cli(&["ZADD", "{mv/p:ada}", "+inf", &member]);
    assert_eq!(store.destroy_all_of("ada")?, 0);
    assert!(store.get(s.id(), None)?.is_some());
    assert_eq!(store.sessions_of("bob")?, [s.id().to_owned()]);
    assert_eq!(store.destroy_all_of("bob")?, 1);
    assert_eq!(zcard(&server, "{mv/p:bob}"), 0);
    Ok(())
}

#[test]
fn export_and_import_keep_the_principal() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let clock = ManualClock::default();
    let store = super::config(&server.url(), &clock, "io").open()?;
    let s = store.create()?;
    store.set_principal(s.id(), Some("ada"))?;
    let export = store.export_session(s.id())?.expect("there");
    assert_eq!(export.principal.as_deref(), Some("ada"));
    assert!(store.destroy(s.id())?);
    assert_eq!(
        zcard(&server, "{io/p:ada}"),
        0,
        "destroy took the member along"
    );
    store.import_session(&export, sessionstore::ImportMode::Create)?;
    assert_eq!(store.sessions_of("ada")?, [s.id().to_owned()]);
    assert_eq!(store.principal(s.id())?.as_deref(), Some("ada"));
    // Replacing it leaves one member, the new incarnation's: the old one's
    // is removed, not left for a read to prune.
    let before = members(&server, "{io/p:ada}");
    store.import_session(&export, sessionstore::ImportMode::Replace)?;
    let after = members(&server, "{io/p:ada}");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before, "a new incarnation");
    Ok(())
}

#[test]
fn a_member_s_score_follows_its_session_s_deadline() -> sessionstore::Result<()> {
    let server = Server::start(&[]);
    let clock = ManualClock::default();
    let store = super::config(&server.url(), &clock, "sc").open()?;
    let key = "{sc/p:ada}";
    let s = store.create()?;
    store.set_principal(s.id(), Some("ada"))?;
    let member = members(&server, key).pop().expect("one member");
    let score = |server: &Server| -> f64 {
        server
            .cli(&["ZSCORE", key, &member])
            .trim()
            .parse()
            .expect("a score")
    };
    let first = score(&server);
    // A touch moves the deadline, and the score with it, before the hash.
    clock.advance(Duration::from_secs(500));
    assert!(store.touch(s.id())?);
    let moved = score(&server);
    assert!(
        (moved - first - 500e6).abs() < 2.0,
        "the score moved to the new deadline: {first} -> {moved}"
    );
    clock.advance(Duration::from_secs(200));
    // Not due: a read leaves it.
    assert_eq!(store.sessions_of("ada")?, [s.id().to_owned()]);
    assert_eq!(score(&server), moved);
    // A score behind a live session's deadline (a set written otherwise) is
    // due: a read moves it to the deadline.
    server.cli(&["ZADD", key, "XX", "0", &member]);
    assert_eq!(store.sessions_of("ada")?, [s.id().to_owned()]);
    assert_eq!(score(&server), moved);
    Ok(())
}

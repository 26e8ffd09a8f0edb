//! Principals on Redis: the field `p` of a session's hash names its
//! principal, and the sorted set `{<namespace>/p:<name>}` indexes the
//! principal's sessions, one member `<sid>:<incarnation>` each, scored by the
//! session's deadline in µs (`+inf` for none) when it was last checked.
//!
//! The hash and the set are in different Cluster slots, so no step writes
//! both. The order keeps one promise: a live session with principal `p` is
//! always in `p`'s set; the set may hold stale members, which reads prune.
//!
//! - `set_principal`: `INDEX` the member first, then `SET_PRINCIPAL` on the
//!   hash (a check-and-write against the metadata read), then `UNINDEX` the
//!   member from the old principal's set.
//! - `destroy`: `TAKE` the hash, then `UNINDEX`. `regenerate`: `INDEX` the new
//!   id's member before the old key is deleted, `UNINDEX` the old one after
//!   the new key is written. Import: `INDEX` before the write.
//! - Expiry by TTL leaves the member; reads prune it.
//! - The set's own TTL covers each member's session for as long as it can
//!   live without another write: `INDEX` adds (or rescores) a member and
//!   lengthens the set's TTL to that session's deadline. Every write that
//!   moves a deadline later (a save, a touch, `set_idle_timeout`, the new id
//!   of a regenerate) runs `INDEX` for the new deadline first, for the
//!   principal read with the metadata record it then compares. A change of
//!   principal rewrites that record too (it is a use of the session), so a
//!   write against a record read before the change fails its compare and
//!   reads the principal again. So the set never expires before a live
//!   member, and outlives the last one by nothing: no set is left without a
//!   TTL, except one holding a session that never expires (no idle and no
//!   absolute timeout), which is made persistent until no
//!   member of it is scored as never expiring.
//!
//! Pruning: a member whose hash is gone, or holds another incarnation, names
//! a session that can never come back, so it is removed whatever else runs
//! meanwhile. A member of a live session of another principal (or none) is
//! left alone: it may be a `set_principal` between its two steps. Every
//! read (`sessions_of`, `destroy_all_of`) checks every member, and moves
//! the score of a live one that is due (at or before now) to its deadline;
//! `set_principal` also checks the members that are due, so a set only
//! grows by members not yet due.

use crate::codec;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::keys;
use crate::meta::Meta;
use crate::redis::scripts;
use crate::redis::store::{CAS_ATTEMPTS, RedisStore};
use crate::validate;

/// What a member of a principal's set turned out to be.
enum Member {
    /// A live session of this principal.
    Live(String),
    /// Gone for good: removed from the set.
    Pruned,
    /// Anything else (another principal's live session, one expired by the
    /// clock whose key is still there, a corrupt record): left alone.
    Kept,
}

impl RedisStore {
    fn principal_key(&self, name: &str) -> String {
        keys::redis_principal(&self.inner.namespace, name)
    }

    /// A member's score: how far a cover of the session reaches
    /// ([`RedisStore::coverage`]: its deadline and half an idle timeout) in
    /// µs, or `+inf` for a session that never expires.
    fn score(meta: &Meta) -> String {
        match Self::coverage(meta) {
            0 => "+inf".to_owned(),
            reach => reach.to_string(),
        }
    }

    /// Adds session `sid`, whose record is `meta` as written at `now`, to the
    /// set of the principal named by the stored bytes `name`, or raises its
    /// score to `meta`'s deadline, and makes the set's TTL cover it.
    pub(super) fn index(&self, name: &[u8], sid: &str, meta: &Meta, now: u64) -> Result<()> {
        let Some(name) = keys::valid_principal(name) else {
            log::warn!("sessionstore: session {sid:?} has an unreadable principal field");
            return Ok(());
        };
        let key = self.principal_key(name);
        let member = keys::redis_principal_member(sid, meta.incarnation);
        let score = Self::score(meta);
        // The set lives at least as long as this session can, as long as
        // its deadline stays `meta`'s: every write that moves it covers the
        // new one first (`RedisStore::cover`). `now` is the write's, so the
        // TTLs of the set and of the hash count from the same instant.
        let life = match Self::coverage(meta) {
            0 => "0".to_owned(),
            reach => Self::ms_until(reach, now).to_string(),
        };
        self.with("adding a session to its principal's index", |c| {
            scripts::eval::<i64>(c, &scripts::INDEX, &key, |cmd| {
                cmd.arg(&score).arg(&member).arg(&life).arg(now);
            })
            .map(drop)
        })
    }

    /// Removes session `sid` of `incarnation` from the set of the principal
    /// named by the stored bytes `name` (none if empty).
    pub(super) fn unindex(&self, name: &[u8], sid: &str, incarnation: u64) -> Result<()> {
        let Some(name) = keys::valid_principal(name) else {
            return Ok(());
        };
        let key = self.principal_key(name);
        let member = keys::redis_principal_member(sid, incarnation);
        self.remove_member(&key, member.as_bytes())
    }

    /// As [`unindex`](Self::unindex), after a write that stands whatever
    /// this does: a failure leaves a stale member (reads prune it, and the
    /// set keeps its TTL), and is logged.
    pub(super) fn unindex_logged(&self, name: &[u8], sid: &str, incarnation: u64) {
        if let Err(e) = self.unindex(name, sid, incarnation) {
            log::warn!("sessionstore: a stale index entry of {sid:?} stays: {e}");
        }
    }

    /// Removes `member` from the set `key` (`UNINDEX`: a persistent set
    /// left with no member that never expires takes a TTL again).
    fn remove_member(&self, key: &str, member: &[u8]) -> Result<()> {
        let now = self.now();
        self.with("removing a session from its principal's index", |c| {
            scripts::eval::<i64>(c, &scripts::UNINDEX, key, |cmd| {
                cmd.arg(member).arg(now);
            })
            .map(drop)
        })
    }

    /// The members of the set `key` scored from `min` to `max`, with their
    /// scores.
    fn members(&self, key: &str, min: &str, max: &str) -> Result<Vec<(Vec<u8>, f64)>> {
        self.with("reading a principal's index", |c| {
            redis::cmd("ZRANGE")
                .arg(key)
                .arg(min)
                .arg(max)
                .arg("BYSCORE")
                .arg("WITHSCORES")
                .query(c)
        })
    }

    /// Checks one member of principal `name`'s set, scored `score`, against
    /// its session: prunes it if the session is gone, and moves a due score
    /// (at or before `now`) of a live one to its deadline.
    fn check(
        &self,
        name: &str,
        key: &str,
        (member, score): (&[u8], f64),
        now: u64,
    ) -> Result<Member> {
        let Some((sid, incarnation)) = keys::redis_parse_principal_member(member) else {
            self.remove_member(key, member)?;
            return Ok(Member::Pruned);
        };
        let (meta, read) = match self.read_record(sid) {
            Ok(Some(record)) => record,
            Ok(None) => {
                self.remove_member(key, member)?;
                return Ok(Member::Pruned);
            }
            Err(e @ Error::Decode { .. }) => {
                log::warn!("sessionstore: principal {name:?}: skipping {sid:?}: {e}");
                return Ok(Member::Kept);
            }
            Err(e) => return Err(e),
        };
        if meta.incarnation != incarnation {
            self.remove_member(key, member)?;
            return Ok(Member::Pruned);
        }
        if !self.live(&meta, now) || read.principal != name.as_bytes() {
            return Ok(Member::Kept);
        }
        // µs since the epoch are exact as a score until 2^53 (the year
        // 2255); later ones round by a few µs, which the set's TTL margin
        // (1 s, `INDEX`) covers.
        let due = score <= now as f64;
        if !due {
            return Ok(Member::Live(sid.to_owned()));
        }
        let score = Self::score(&meta);
        self.with("updating a principal's index", |c| {
            redis::cmd("ZADD")
                .arg(key)
                .arg("XX")
                .arg("GT")
                .arg(&score)
                .arg(member)
                .exec(c)
        })?;
        Ok(Member::Live(sid.to_owned()))
    }

    /// See [`Store::set_principal`](crate::Store::set_principal). The
    /// principal's set gets the session before the hash names it, and the
    /// old principal's set loses it after; members of that principal whose
    /// score has passed are checked and pruned on the way.
    ///
    /// # Errors
    ///
    /// As [`Store::set_principal`](crate::Store::set_principal), with errors naming the server.
    pub fn set_principal(&self, sid: &str, name: Option<&str>) -> Result<()> {
        validate::sid(sid)?;
        if let Some(n) = name {
            validate::key(n)?;
        }
        let key = self.key(sid);
        let _guard = self.inner.locks.write(sid);
        let token = self.op_token();
        // The member this call added to the new name's set, removed again
        // if the call ends without writing (the session is gone, or never
        // settles): else a set could keep it, persistent for a session that
        // never expires, with nobody left to remove it.
        let mut added: Option<u64> = None;
        let undo = |added: Option<u64>| {
            if let (Some(n), Some(incarnation)) = (name, added) {
                self.unindex_logged(n.as_bytes(), sid, incarnation);
            }
        };
        for _ in 0..CAS_ATTEMPTS {
            let now = self.now();
            let Some((meta, old)) = self.live_record(sid, now)? else {
                undo(added);
                return Err(Error::NotFound { id: sid.to_owned() });
            };
            if old.principal.as_slice() == name.unwrap_or("").as_bytes() {
                return Ok(());
            }
            if added.is_some_and(|i| i != meta.incarnation) {
                undo(added.take());
            }
            // A change of principal is a use of the session that always
            // rewrites its metadata, so that no save against the record
            // read before can write without reading the new principal.
            let new = meta.used(now);
            if let Some(n) = name {
                self.index(n.as_bytes(), sid, &new, now)?;
                added = Some(meta.incarnation);
            }
            let new_bytes = codec::encode_meta(&new);
            let ttl = Self::ttl(&new, now);
            let (status, previous): (i64, Vec<u8>) =
                self.write("set_principal", sid, "setting a session's principal", |c| {
                    scripts::eval(c, &scripts::SET_PRINCIPAL, &key, |cmd| {
                        cmd.arg(&old.meta)
                            .arg(&new_bytes)
                            .arg(&ttl)
                            .arg(name.unwrap_or(""))
                            .arg(Self::coverage(&new))
                            .arg(&token[..]);
                    })
                })?;
            match status {
                scripts::WRITTEN => {
                    self.wrote();
                    // The principal is set whatever these say: a failure
                    // leaves a stale member, logged, not returned.
                    if Some(previous.as_slice()) != name.map(str::as_bytes) {
                        self.unindex_logged(&previous, sid, meta.incarnation);
                    }
                    if let Some(n) = name
                        && let Err(e) = self.prune_due(n, now)
                    {
                        log::warn!("sessionstore: pruning principal {n:?}: {e}");
                    }
                    return Ok(());
                }
                scripts::CONFLICT => continue,
                other => return Err(self.unexpected("setting a session's principal", other)),
            }
        }
        undo(added);
        Err(self.contention("setting a session's principal", sid))
    }

    /// Checks the members of `name`'s set whose score is at or before `now`.
    /// Members scored `+inf` (sessions that never expire, when last
    /// covered) are checked too: one whose session is gone keeps the set
    /// persistent until it is removed.
    fn prune_due(&self, name: &str, now: u64) -> Result<()> {
        let key = self.principal_key(name);
        let mut members = self.members(&key, "-inf", &now.to_string())?;
        members.extend(self.members(&key, "+inf", "+inf")?);
        for (member, score) in members {
            self.check(name, &key, (&member, score), now)?;
        }
        Ok(())
    }

    /// See [`Store::principal`](crate::Store::principal).
    ///
    /// # Errors
    ///
    /// As [`Store::principal`](crate::Store::principal), with errors naming the server.
    pub fn principal(&self, sid: &str) -> Result<Option<String>> {
        validate::sid(sid)?;
        let Some((_, read)) = self.live_record(sid, self.now())? else {
            return Ok(None);
        };
        if read.principal.is_empty() {
            return Ok(None);
        }
        keys::stored_principal(sid, &read.principal).map(Some)
    }

    /// See [`Store::sessions_of`](crate::Store::sessions_of): every member of
    /// the principal's set is checked against its session (one `HMGET`
    /// each), and pruned if that session is gone.
    ///
    /// # Errors
    ///
    /// As [`Store::sessions_of`](crate::Store::sessions_of), with errors naming the server.
    pub fn sessions_of(&self, name: &str) -> Result<Vec<String>> {
        validate::key(name)?;
        let key = self.principal_key(name);
        let now = self.now();
        let mut live = Vec::new();
        for (member, score) in self.members(&key, "-inf", "+inf")? {
            if let Member::Live(sid) = self.check(name, &key, (&member, score), now)? {
                live.push(sid);
            }
        }
        live.sort();
        live.dedup();
        Ok(live)
    }

    /// See [`Store::destroy_all_of`](crate::Store::destroy_all_of): each
    /// session of the principal is deleted by a script that checks its
    /// principal field first (one that moved to another principal is left
    /// alone), then leaves the set. Each sends its event as it goes.
    ///
    /// # Errors
    ///
    /// As [`Store::destroy_all_of`](crate::Store::destroy_all_of), with errors naming the server.
    pub fn destroy_all_of(&self, name: &str) -> Result<usize> {
        validate::key(name)?;
        let key = self.principal_key(name);
        let mut destroyed = 0;
        for (member, _) in self.members(&key, "-inf", "+inf")? {
            let Some((sid, incarnation)) = keys::redis_parse_principal_member(&member) else {
                self.remove_member(&key, &member)?;
                continue;
            };
            let _guard = self.inner.locks.write(sid);
            let now = self.now();
            let session = self.key(sid);
            let token = self.op_token();
            let (status, m): (i64, Vec<u8>) = self.write(
                "destroy_all_of",
                sid,
                "destroying a principal's session",
                |c| {
                    scripts::eval(c, &scripts::TAKE_IF_PRINCIPAL, &session, |cmd| {
                        cmd.arg(name).arg(&token[..]).arg(self.tomb_ms());
                    })
                },
            )?;
            match status {
                scripts::WRITTEN => {
                    self.wrote();
                    let live = match codec::decode_meta(sid, &m) {
                        Ok(meta) => {
                            if meta.incarnation != incarnation {
                                self.unindex_logged(name.as_bytes(), sid, meta.incarnation);
                            }
                            self.live(&meta, now)
                        }
                        Err(_) => true,
                    };
                    // The session is gone: counted and announced whatever
                    // the removal of its member says.
                    if let Err(e) = self.remove_member(&key, &member) {
                        log::warn!("sessionstore: a stale index entry of {sid:?} stays: {e}");
                    }
                    destroyed += usize::from(live);
                    let sid = sid.to_owned();
                    self.inner.events.send(if live {
                        Event::Destroyed { sid }
                    } else {
                        Event::Expired { sid }
                    });
                }
                scripts::GONE => self.remove_member(&key, &member)?,
                scripts::CONFLICT => {}
                other => return Err(self.unexpected("destroying a principal's session", other)),
            }
        }
        Ok(destroyed)
    }
}

//! `RedisStore`: the per-session API on a Redis server or cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::ConnectionLike;

use crate::clock::{self, Clock};
use crate::codec;
use crate::error::{Error, Result};
use crate::events::{Event, Events};
use crate::id::{IdSource, OsRandom};
use crate::info::SessionInfo;
use crate::keys;
use crate::locks::Locks;
use crate::meta::Meta;
use crate::meta::Policy;
use crate::redis::config::{RETRY_WAIT, RedisConfig};
use crate::redis::conn::Connections;
use crate::redis::scripts;
use crate::session::ReadToken;
use crate::session::Session;
use crate::session_store::SessionStore;
use crate::snapshot::Snapshot;
use crate::validate;

/// How many times a check-and-write is tried again after a concurrent write
/// to the same session changed its metadata between the read and the write.
pub(super) const CAS_ATTEMPTS: usize = 64;
/// How many fresh ids `create` and `regenerate` draw before they give up.
const ID_ATTEMPTS: usize = 8;
/// The shortest life of a tombstone, in ms (see `scripts::ONCE`).
const TOMBSTONE_MIN_MS: u64 = 10_000;

/// Sessions on a Redis server or a Redis Cluster, shared by every process
/// that opens it: the same contract as [`Store`](crate::Store), through
/// [`SessionStore`]. Cheap to clone: clones share the connection pool.
///
/// # Layout
///
/// One session is one Redis hash, `{<namespace>:<sid>}`: the field `m` holds
/// its metadata record, and `<component>/<key>` (`/<key>` for the global
/// scope) each value. So every step that checks and writes a session touches
/// one key, in one Cluster slot, in one Lua script; no command spans slots,
/// and no `KEYS` is used.
///
/// # Expiry
///
/// Whether a session is live is decided by the store's [`Clock`], as on disk.
/// Every write sets the key's TTL to the session's deadline minus the clock's
/// now (relative, so a [`ManualClock`](crate::ManualClock) years away from
/// real time gives the right TTL), in the same script: no key of an expiring
/// session is ever without a TTL. Redis's own expiry does the reaping; there
/// is no reaper thread and no `reap_expired`. A session whose clock deadline
/// passed before its TTL did (a clock running ahead of real time) reads as
/// gone at once and is replaced or deleted by the next create or destroy.
///
/// # Regenerate
///
/// The new id lives in another slot, so moving a session cannot be one step.
/// The order is: (1) draw a fresh id whose key is free; (2) read the old
/// session; (3) delete the old key if nobody wrote to it since the read: its
/// metadata and its last write's operation token are unchanged (else start
/// again from 1); (4) write the new key, if it does not exist, with every
/// field and the metadata. A crash between 3 and 4 loses the session (the
/// safe side): at no moment are both ids usable.
///
/// # Exactly once
///
/// Every write is applied at most once, and every call answers what it did.
/// Each call draws an operation token; the script that writes records it,
/// with its answer, in the session's hash (at least the last 16), and a
/// deletion leaves a short-lived tombstone holding it. A command whose reply
/// was lost (the connection dropped after the server ran it, or the reply
/// came too late) is sent again, up to [`RedisConfig::attempts`] times in
/// all, and the resend answers the first result instead of writing again.
/// This holds for every call that writes: `create`, `create_new_session`,
/// `save`, `save_if_unchanged`, `update` (so its change is never applied
/// twice), `touch`, `set_idle_timeout`, `destroy`, each step of
/// `regenerate`, `set_principal`, `destroy_all_of` and `import_session`.
/// The principal index steps (`ZADD`, `ZREM`) are idempotent by nature.
///
/// When no reply comes on any attempt, the write may or may not have been
/// applied: the call returns [`Error::Unknown`](crate::Error::Unknown)
/// naming the call and the session, never `Conflict`, `NotFound`,
/// `AlreadyExists` or `false`. So does a resend of a save that finds the
/// session written by more than 16 calls since its first send.
///
/// Steps across slots (the principal's set, the new id of a regenerate) run
/// after the session's own write; once that write is done, the call
/// reports it (a `destroy` returns `true` and sends `Destroyed`), and a
/// later step that fails is logged and leaves a stale index member that
/// the next read prunes. A `set_principal` that ends without writing removes
/// the member it added.
///
/// # Time
///
/// The store's "now" never goes back, across app servers and restarts: the
/// latest time at which any store judged a session expired (and each
/// store's time when it closes) is kept in the key `{<namespace>/floor}`
/// and read at open. An expired session never comes back.
///
/// # Redis settings
///
/// - `maxmemory-policy noeviction`: any other policy may evict live
///   sessions, and log users out silently.
/// - Functions (Redis 7): at open the store loads a function library
///   named `sessionstore_<hash of its code>` (`FUNCTION LOAD REPLACE`, on
///   one server; again after `FUNCTION FLUSH` or a restart that lost it)
///   and saves by `FCALL`, which costs the server less than `EVALSHA`.
///   A server without functions, or a user not allowed `FUNCTION LOAD` or
///   `FCALL`, gets the same scripts by `EVALSHA`. Each version of the
///   store loads a library of its own; `FUNCTION DELETE` removes those of
///   versions no longer running.
/// - `appendonly yes`: with `appendfsync always` an acknowledged write
///   survives a crash of the server; with `everysec` (Redis's default) up to
///   about a second of acknowledged writes can be lost. The store's calls
///   return when Redis acknowledges them; what that promises is Redis's
///   `appendfsync` setting.
#[derive(Clone)]
pub struct RedisStore {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) conns: Connections,
    pub(super) namespace: String,
    policy: Policy,
    /// The latest time this store has read: its "now" never goes below it
    /// (see `Clock`). Starts at the namespace's persisted floor.
    floor: AtomicU64,
    /// The latest floor this store knows to be persisted in Redis
    /// (`keys::redis_floor`).
    persisted: AtomicU64,
    /// How long a tombstone lives, in ms: longer than every resend of the
    /// deletion that left it can take.
    tomb_ms: u64,
    max_value_size: usize,
    clock: Arc<dyn Clock>,
    /// Writes (check-and-write scripts that wrote, deletions) since open, by this store's handles.
    pub(super) writes: AtomicU64,
    /// The next scope version to write: random at open, then counting up, so
    /// that writes from different app servers do not share one.
    versions: AtomicU64,
    update_attempts: u32,
    /// Whether the save scripts go by `FCALL` (see `scripts::call`).
    functions: scripts::Functions,
    /// This store's event subscribers.
    pub(super) events: Events,
    /// Striped per-session locks, held by the calls that send events from
    /// their write to their send, so that this process sends them in the
    /// order Redis applied them.
    pub(super) locks: Locks,
}

impl Drop for Inner {
    /// Persists the time floor, so that a store opened later never goes
    /// back in time (issue 27: a restart with a clock stepped back revived
    /// expired sessions). A failure is logged.
    fn drop(&mut self) {
        let floor = *self.floor.get_mut();
        if floor <= *self.persisted.get_mut() {
            return;
        }
        let key = keys::redis_floor(&self.namespace);
        let arg = format!("{floor:020}");
        if let Err(e) = self.conns.with("persisting the time floor", |c| {
            scripts::eval::<Vec<u8>>(c, &scripts::FLOOR, &key, |cmd| {
                cmd.arg(&arg);
            })
        }) {
            log::warn!("sessionstore: closing the store: {e}");
        }
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.inner.conns.target())
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

/// What one session's hash holds, as read.
pub(super) struct Read {
    pub(super) meta: Meta,
    /// The exact bytes of the metadata record, for the check-and-write.
    pub(super) meta_bytes: Vec<u8>,
    /// Every data field and its value.
    pub(super) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Read {
    /// The stored principal name; empty for none.
    fn principal(&self) -> &[u8] {
        self.field(keys::REDIS_PRINCIPAL_FIELD).unwrap_or(&[])
    }

    /// The deadline up to which the principal's set covers the session; 0
    /// if unknown.
    fn covered(&self) -> u64 {
        self.field(keys::REDIS_COVERED_FIELD)
            .map_or(0, parse_covered)
    }

    /// The entry of the last write in the field `o` (see `scripts::ONCE`);
    /// empty if there is none.
    fn last_write(&self) -> &[u8] {
        let o = self.field(keys::REDIS_OPS_FIELD).unwrap_or(&[]);
        &o[..o.len().min(scripts::TOKEN_ENTRY)]
    }

    fn field(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// The stored coverage deadline (the field `c`): 0 (unknown: the next write
/// covers again) for bytes that are not a decimal `u64`.
pub(super) fn parse_covered(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// What a save writes, whatever metadata record it checks against.
struct SaveArgs<'a> {
    /// The call: `"save"` or `"save_if_unchanged"`.
    op: &'static str,
    /// The session's id.
    sid: &'a str,
    /// The session's key.
    key: &'a str,
    /// The call's operation token (see `scripts::ONCE`).
    token: &'a [u8],
    /// The scope's field: its version, and the prefix of its data fields;
    /// empty for a save that neither checks nor writes the scope.
    scope: &'a [u8],
    /// The script's mode (see `scripts::SAVE_FIRST`): `?` or `!`, then `c` to
    /// clear the scope first.
    mode: &'a str,
    /// The version expected in the scope's field; empty for none.
    expected: &'a [u8],
    /// Fields to set, with their values.
    sets: &'a [(Vec<u8>, &'a [u8])],
    /// Fields to delete.
    dels: &'a [Vec<u8>],
}

impl RedisStore {
    pub(crate) fn open(config: RedisConfig) -> Result<RedisStore> {
        let conns = Connections::open(&config)?;
        let micros = clock::duration_micros;
        let floor_key = keys::redis_floor(&config.namespace);
        let floor: Option<Vec<u8>> = conns.with("reading the namespace's time floor", |c| {
            redis::cmd("GET").arg(&floor_key).query(c)
        })?;
        let floor = floor.map_or(0, |b| parse_covered(&b));
        let functions = if conns.resends_itself() {
            scripts::Functions::off()
        } else {
            conns.with("loading the store's functions", scripts::Functions::probe)?
        };
        let one = config.connect_timeout + config.io_timeout + RETRY_WAIT;
        let resends = one.saturating_mul(config.attempts).saturating_mul(2);
        let tomb_ms = u64::try_from(resends.as_millis())
            .unwrap_or(u64::MAX)
            .max(TOMBSTONE_MIN_MS);
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conns,
                namespace: config.namespace.clone(),
                policy: Policy {
                    idle: micros(config.idle_timeout),
                    absolute: config.absolute_timeout.map(micros),
                    touch_granularity: micros(config.effective_touch_granularity()),
                },
                floor: AtomicU64::new(floor),
                persisted: AtomicU64::new(floor),
                tomb_ms,
                max_value_size: config.max_value_size,
                clock: config.clock.clone(),
                writes: AtomicU64::new(0),
                versions: AtomicU64::new(crate::meta::fresh_incarnation()?),
                update_attempts: config.update_attempts,
                functions,
                events: Events::new(config.event_capacity),
                locks: Locks::new(),
            }),
        })
    }

    /// The largest encoded value this store accepts, in bytes (`RedisConfig::max_value_size`).
    pub fn max_value_size(&self) -> usize {
        self.inner.max_value_size
    }

    pub(super) fn key(&self, sid: &str) -> String {
        keys::redis_session(&self.inner.namespace, sid)
    }

    /// Now: the clock, but never earlier than a time this store read before.
    pub(super) fn now(&self) -> u64 {
        let clock = clock::micros(self.inner.clock.now());
        self.inner
            .floor
            .fetch_max(clock, std::sync::atomic::Ordering::AcqRel)
            .max(clock)
    }

    /// The stored version of a scope: the field `field` of session `sid`;
    /// 0 if none; [`Error::Decode`] naming the key and field for bytes
    /// that are no version.
    fn read_version(&self, sid: &str, field: &[u8]) -> Result<u64> {
        let key = self.key(sid);
        let bytes: Option<Vec<u8>> = self.with("reading a scope's version", |c| {
            redis::cmd("HGET").arg(&key).arg(field).query(c)
        })?;
        bytes.map_or(Ok(0), |b| self.version_of(sid, field, &b))
    }

    /// A stored scope version: [`Error::Decode`] naming the key and the
    /// field for bytes that are no version (foreign bytes: the scope can
    /// never be checked against them).
    fn version_of(&self, sid: &str, field: &[u8], bytes: &[u8]) -> Result<u64> {
        codec::decode_version(bytes).ok_or_else(|| Error::Decode {
            what: format!(
                "the field {:?} (a scope's version) of the redis key {} on {}",
                String::from_utf8_lossy(field),
                self.key(sid),
                self.inner.conns.target()
            ),
            message: format!("{} bytes that are no version", bytes.len()),
        })
    }

    /// A scope version no write has used: never 0, which means "never written".
    fn next_version(&self) -> u64 {
        loop {
            let v = self
                .inner
                .versions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if v != 0 {
                return v;
            }
        }
    }

    /// An operation token for one call's writes (see `scripts::ONCE`).
    pub(super) fn op_token(&self) -> [u8; 8] {
        scripts::token(self.next_version())
    }

    /// How long a tombstone lives, in ms, as a script argument.
    pub(super) fn tomb_ms(&self) -> u64 {
        self.inner.tomb_ms
    }

    /// Called when a stored session is judged expired at `now`: raises the
    /// namespace's persisted time floor to `now`, so that no store opened
    /// later (after a restart whose clock stepped back) takes it for live
    /// again. One write per newly seen time, not per read. A failure is
    /// logged: the answer "expired" stands.
    pub(super) fn expired_at(&self, now: u64) {
        if self.inner.persisted.load(Ordering::Acquire) >= now {
            return;
        }
        let key = keys::redis_floor(&self.inner.namespace);
        let arg = format!("{now:020}");
        match self.with("persisting the time floor", |c| {
            scripts::eval::<Vec<u8>>(c, &scripts::FLOOR, &key, |cmd| {
                cmd.arg(&arg);
            })
        }) {
            Ok(held) => {
                let held = parse_covered(&held).max(now);
                self.inner.persisted.fetch_max(held, Ordering::AcqRel);
                self.inner.floor.fetch_max(held, Ordering::AcqRel);
            }
            Err(e) => log::warn!("sessionstore: {e}"),
        }
    }

    /// `meta` is live at `now`; if not, the time floor is persisted (see
    /// [`expired_at`](Self::expired_at)).
    pub(super) fn live(&self, meta: &Meta, now: u64) -> bool {
        let live = meta.is_live(now);
        if !live {
            self.expired_at(now);
        }
        live
    }

    /// Reads the scope `component` of `sid`, changes it and saves it only if
    /// nobody wrote it meanwhile, retrying: as [`Store::update`](crate::Store::update),
    /// with [`RedisConfig::update_attempts`](crate::RedisConfig::update_attempts).
    ///
    /// # Errors
    ///
    /// As [`Store::update`](crate::Store::update), with errors naming the server.
    pub fn update<T>(
        &self,
        sid: &str,
        component: Option<&str>,
        change: impl FnMut(&mut Session) -> Result<T>,
    ) -> Result<Option<T>> {
        crate::update::update(self, self.inner.update_attempts, sid, component, change)
    }

    fn new_meta(&self, now: u64) -> Result<Meta> {
        self.inner.policy.new_meta(now)
    }

    fn moves_enough(&self, old: &Meta, new: &Meta) -> bool {
        self.inner.policy.moves_enough(old, new)
    }

    /// The TTL argument for a session with `meta`, written at `now`: the
    /// milliseconds from now to its deadline, rounded up, so that the key
    /// lives at least until the deadline; `"0"` for a session that never expires.
    pub(super) fn ttl(meta: &Meta, now: u64) -> String {
        match meta.deadline() {
            Some(d) => Self::ms_until(d, now).to_string(),
            None => "0".into(),
        }
    }

    /// Whole milliseconds from `now` to `deadline` (µs), rounded up and at
    /// least 1: a TTL that never ends a key before its deadline.
    pub(super) fn ms_until(deadline: u64, now: u64) -> u64 {
        deadline.saturating_sub(now).div_ceil(1000).max(1)
    }

    pub(super) fn wrote(&self) {
        self.inner.writes.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn with<T>(
        &self,
        what: &str,
        f: impl FnMut(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.inner.conns.with(what, f)
    }

    /// A write step of the call `op` on session `sid` (see `Connections::write`).
    pub(super) fn write<T>(
        &self,
        op: &'static str,
        sid: &str,
        what: &str,
        f: impl FnMut(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.inner.conns.write(op, sid, what, f)
    }

    pub(super) fn foreign(&self, sid: &str) -> Error {
        Error::Decode {
            what: format!(
                "the redis key {} on {}",
                self.key(sid),
                self.inner.conns.target()
            ),
            message: "it holds no session metadata record: not a session of this store".into(),
        }
    }

    /// The metadata record of `sid` and its bytes, live or not.
    pub(super) fn read_meta(&self, sid: &str) -> Result<Option<(Meta, Vec<u8>)>> {
        let key = self.key(sid);
        let bytes: Option<Vec<u8>> = self
            .with("reading a session's metadata", |c| {
                redis::cmd("HGET")
                    .arg(&key)
                    .arg(keys::REDIS_META_FIELD)
                    .query(c)
            })
            .map_err(|e| self.wrong_type(sid, e))?;
        match bytes {
            Some(b) => Ok(Some((codec::decode_meta(sid, &b)?, b))),
            None => Ok(None),
        }
    }

    /// The live metadata record of `sid` and its bytes.
    pub(super) fn live_meta(&self, sid: &str, now: u64) -> Result<Option<(Meta, Vec<u8>)>> {
        Ok(self.read_meta(sid)?.filter(|(m, _)| self.live(m, now)))
    }

    /// A server error `WRONGTYPE` on the key of `sid` (a key of another
    /// type, written by another program) as [`Error::Decode`] naming the
    /// key; any other error as it is.
    pub(super) fn wrong_type(&self, sid: &str, e: Error) -> Error {
        match &e {
            Error::Storage { source, .. } if source.to_string().contains("WRONGTYPE") => {
                Error::Decode {
                    what: format!(
                        "the redis key {} on {}",
                        self.key(sid),
                        self.inner.conns.target()
                    ),
                    message: "it is not a hash: not a session of this store".into(),
                }
            }
            _ => e,
        }
    }

    /// The live metadata record of `sid`, with what a save checks against:
    /// its exact bytes and the stored principal (empty for none), read in one
    /// `HMGET`.
    pub(super) fn live_record(&self, sid: &str, now: u64) -> Result<Option<(Meta, ReadToken)>> {
        Ok(self.read_record(sid)?.filter(|(m, _)| self.live(m, now)))
    }

    /// As [`live_record`](Self::live_record), live or not.
    pub(super) fn read_record(&self, sid: &str) -> Result<Option<(Meta, ReadToken)>> {
        let key = self.key(sid);
        type Fields = (
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
        );
        let (m, p, covered, o): Fields = self
            .with("reading a session's metadata", |c| {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg(keys::REDIS_META_FIELD)
                    .arg(keys::REDIS_PRINCIPAL_FIELD)
                    .arg(keys::REDIS_COVERED_FIELD)
                    .arg(keys::REDIS_OPS_FIELD)
                    .query(c)
            })
            .map_err(|e| self.wrong_type(sid, e))?;
        let Some(m) = m else {
            return Ok(None);
        };
        let meta = codec::decode_meta(sid, &m)?;
        let token = ReadToken {
            meta: m,
            principal: p.unwrap_or_default(),
            covered: covered.as_deref().map_or(0, parse_covered),
            last: o.map_or_else(Vec::new, |mut o| {
                o.truncate(scripts::TOKEN_ENTRY);
                o
            }),
        };
        Ok(Some((meta, token)))
    }

    /// Before a write moves the deadline of `sid` to `new`'s: makes the set
    /// of the principal read in `old` (none if empty) cover it. The write
    /// then compares the metadata record read with that principal, which
    /// every change of principal rewrites. Nothing to do if `old` says the
    /// set already covers the new deadline; else the set is made to cover it
    /// and half an idle timeout more ([`RedisStore::coverage`]), and the
    /// answer is that deadline, for the write to store in the field `c`.
    pub(super) fn cover(
        &self,
        old: &ReadToken,
        sid: &str,
        new: &Meta,
        now: u64,
    ) -> Result<Option<u64>> {
        // A stored coverage past what any cover of this record could
        // reach is not ours (foreign bytes): taken as unknown, so that the
        // set covers the session again and never loses it.
        let believable = old.covered <= Self::coverage(new);
        if old.principal.is_empty()
            || new
                .deadline()
                .is_some_and(|deadline| believable && old.covered >= deadline)
        {
            return Ok(None);
        }
        self.index(&old.principal, sid, new, now)?;
        Ok(Some(Self::coverage(new)))
    }

    /// How far a cover of a session whose record is `meta` reaches: its
    /// deadline plus half its idle timeout (so that the saves of the next
    /// half timeout need no `INDEX`), but never past its absolute deadline,
    /// in µs; 0 for a session that never expires (scored `+inf`, and never
    /// taken as covered).
    pub(super) fn coverage(meta: &Meta) -> u64 {
        meta.deadline().map_or(0, |d| {
            let reach = d.saturating_add(meta.idle.map_or(0, |i| i / 2));
            reach
                .min(meta.absolute_deadline.unwrap_or(u64::MAX))
                .max(d)
                .max(1)
        })
    }

    /// The whole hash of `sid`, or `None` if there is no key.
    pub(super) fn read_all(&self, sid: &str) -> Result<Option<Read>> {
        let key = self.key(sid);
        let all: Vec<(Vec<u8>, Vec<u8>)> = self
            .with("reading a session", |c| {
                redis::cmd("HGETALL").arg(&key).query(c)
            })
            .map_err(|e| self.wrong_type(sid, e))?;
        if all.is_empty() {
            return Ok(None);
        }
        let mut meta_bytes = None;
        let mut fields = Vec::with_capacity(all.len());
        for (field, value) in all {
            if field == keys::REDIS_META_FIELD {
                meta_bytes = Some(value);
            } else {
                fields.push((field, value));
            }
        }
        let Some(meta_bytes) = meta_bytes else {
            // A tombstone (see `scripts::ONCE`): no session.
            if fields.iter().any(|(f, _)| f == keys::REDIS_OPS_FIELD) {
                return Ok(None);
            }
            return Err(self.foreign(sid));
        };
        Ok(Some(Read {
            meta: codec::decode_meta(sid, &meta_bytes)?,
            meta_bytes,
            fields,
        }))
    }

    /// Runs `SAVE` with no data changes: a new metadata record only,
    /// against `old`, after the principal's set covers the new deadline.
    fn write_meta(
        &self,
        op: &'static str,
        sid: &str,
        old: &ReadToken,
        new: &Meta,
        now: u64,
    ) -> Result<i64> {
        let covered = self.cover(old, sid, new, now)?.map(|c| c.to_string());
        let key = self.key(sid);
        let new_bytes = codec::encode_meta(new);
        let ttl = Self::ttl(new, now);
        let token = self.op_token();
        let mut sends = 0;
        let again = [&token[..], &old.last].concat();
        let status = self.write(op, sid, "writing a session's metadata", |c| {
            sends += 1;
            let (lua, token) = self.save_script(sends, &token, &again);
            scripts::call(c, lua, &key, &self.inner.functions, |cmd| {
                cmd.arg(&old.meta)
                    .arg(&new_bytes)
                    .arg(&ttl)
                    .arg("")
                    .arg("")
                    .arg("")
                    .arg(token)
                    .arg(usize::from(covered.is_some()));
                if let Some(c) = &covered {
                    cmd.arg(keys::REDIS_COVERED_FIELD).arg(c);
                }
            })
        })?;
        let status = self.resent(op, sid, status, sends)?;
        if status == scripts::WRITTEN || status == scripts::WRITTEN_STALE {
            self.wrote();
        }
        Ok(status)
    }

    /// The `SAVE` script for the `sends`-th send of one call, and its token
    /// argument: a first send looks no token up (`token`); a resend, and
    /// every send of a client that resends by itself (the cluster's), looks
    /// it up and, not finding it in a full `o`, writes only if the newest
    /// entry there is still the one the session last saw (`again`: the
    /// token, then that entry; see `scripts::SAVE_LOOKUP_AGAIN`).
    fn save_script<'a>(
        &self,
        sends: u32,
        token: &'a [u8],
        again: &'a [u8],
    ) -> (&'static scripts::Lua, &'a [u8]) {
        if sends <= 1 && !self.inner.conns.resends_itself() {
            (&scripts::SAVE_FIRST, token)
        } else {
            (&scripts::SAVE_AGAIN, again)
        }
    }

    /// The status `SAVE` answered after `sends` sends of one call `op`: a
    /// refusal with the token history full (`HISTORY_FULL`) is the plain
    /// refusal to a first send, and [`Error::Unknown`] to a resend (the
    /// first send may have been applied, its token pushed out since).
    fn resent(&self, op: &'static str, sid: &str, status: i64, sends: u32) -> Result<i64> {
        if status < scripts::HISTORY_FULL {
            return Ok(status);
        }
        if sends > 1 {
            return Err(Error::Unknown {
                op,
                sid: sid.to_owned(),
                server: self.inner.conns.target().to_owned(),
                cause: "the write was sent again after its reply was lost, and found the session written since by more calls than it remembers".into(),
            });
        }
        Ok(status - scripts::HISTORY_FULL)
    }

    /// A status code no script returns: the server runs something else under our scripts' names.
    pub(super) fn unexpected(&self, what: &str, status: i64) -> Error {
        self.inner.conns.error(
            what,
            redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "unexpected script status",
                status.to_string(),
            )),
        )
    }

    pub(super) fn contention(&self, what: &str, sid: &str) -> Error {
        self.inner.conns.error(
            what,
            redis::RedisError::from((
                redis::ErrorKind::Client,
                "too much contention",
                format!("session {sid:?} changed under {CAS_ATTEMPTS} tries in a row; try again"),
            )),
        )
    }

    /// A fresh random id whose key is free now.
    fn free_id(&self) -> Result<String> {
        for _ in 0..ID_ATTEMPTS {
            let candidate = OsRandom.next_id()?;
            let key = self.key(&candidate);
            let taken: bool = self.with("regenerating a session id", |c| {
                redis::cmd("EXISTS").arg(&key).query(c)
            })?;
            if !taken {
                return Ok(candidate);
            }
        }
        Err(Error::storage(
            "regenerating a session id",
            format!("{ID_ATTEMPTS} fresh random ids in a row were taken; the id source is broken"),
        ))
    }

    /// Writes a fresh session under `sid` unless a live one is there.
    fn create_at(&self, sid: &str) -> Result<Session> {
        validate::sid(sid)?;
        let key = self.key(sid);
        let _guard = self.inner.locks.write(sid);
        for _ in 0..CAS_ATTEMPTS {
            let now = self.now();
            let expected = match self.read_meta(sid)? {
                Some((old, _)) if self.live(&old, now) => {
                    return Err(Error::AlreadyExists { id: sid.to_owned() });
                }
                // An expired session whose key outlived its clock deadline: replaced.
                Some((_, bytes)) => bytes,
                None => Vec::new(),
            };
            let meta = self.new_meta(now)?;
            let bytes = codec::encode_meta(&meta);
            let ttl = Self::ttl(&meta, now);
            let token = self.op_token();
            let status: i64 = self.write("create", sid, "creating a session", |c| {
                scripts::eval(c, &scripts::PUT, &key, |cmd| {
                    cmd.arg(&expected).arg(&bytes).arg(&ttl).arg(&token[..]);
                })
            })?;
            match status {
                scripts::WRITTEN => {
                    self.wrote();
                    if !expected.is_empty() {
                        self.inner.events.send(Event::Expired {
                            sid: sid.to_owned(),
                        });
                    }
                    self.inner.events.send(Event::Created {
                        sid: sid.to_owned(),
                    });
                    return Ok(Session::new(
                        sid.to_owned(),
                        None,
                        meta.incarnation,
                        self.inner.max_value_size,
                        Snapshot::default(),
                    )
                    .with_read_token(ReadToken {
                        meta: bytes,
                        principal: Vec::new(),
                        covered: 0,
                        last: [&token[..], b"1"].concat(),
                    }));
                }
                scripts::FOREIGN => return Err(self.foreign(sid)),
                scripts::CONFLICT => continue,
                other => return Err(self.unexpected("creating a session", other)),
            }
        }
        Err(self.contention("creating a session", sid))
    }

    /// Runs `SAVE` for `args` against `old` (the expected metadata record
    /// and principal), writing `new` and the TTL `ttl`; counts the write if
    /// there was one.
    fn run_save(
        &self,
        args: &SaveArgs<'_>,
        old: &ReadToken,
        new: &[u8],
        ttl: &str,
        covered: Option<&str>,
    ) -> Result<i64> {
        let mut sends = 0;
        let again = [args.token, &old.last].concat();
        let status: i64 = self.write(args.op, args.sid, "saving a session", |c| {
            sends += 1;
            let (lua, token) = self.save_script(sends, args.token, &again);
            scripts::call(c, lua, args.key, &self.inner.functions, |cmd| {
                cmd.arg(&old.meta)
                    .arg(new)
                    .arg(ttl)
                    .arg(args.scope)
                    .arg(args.mode)
                    .arg(args.expected)
                    .arg(token)
                    .arg(args.sets.len() + usize::from(covered.is_some()));
                for (f, v) in args.sets {
                    cmd.arg(f).arg(*v);
                }
                if let Some(c) = covered {
                    cmd.arg(keys::REDIS_COVERED_FIELD).arg(c);
                }
                for f in args.dels {
                    cmd.arg(f);
                }
            })
        })?;
        let status = self.resent(args.op, args.sid, status, sends)?;
        if status == scripts::WRITTEN || status == scripts::WRITTEN_STALE {
            self.wrote();
        }
        Ok(status)
    }

    /// Writes the dirty keys of `session`'s scope, a new version of the
    /// scope if it changes, and the last access; with `check`, only if the
    /// scope's version is still the one the session was read at.
    fn save_session(&self, session: &mut Session, check: bool) -> Result<()> {
        session.check_sizes(self.inner.max_value_size)?;
        let sid = session.id().to_owned();
        let key = self.key(&sid);
        let component = session.component().map(str::to_owned);
        let version_field = keys::redis_version_field(component.as_deref());
        let mut sets: Vec<(Vec<u8>, &[u8])> = Vec::new();
        let mut dels: Vec<Vec<u8>> = Vec::new();
        for (k, v) in session.changes() {
            let field = keys::redis_field(component.as_deref(), k);
            match v {
                Some(v) => sets.push((field, v)),
                None => dels.push(field),
            }
        }
        let writes_scope = !sets.is_empty() || !dels.is_empty() || session.cleared();
        // The script compares the scope's version with the session's: to
        // refuse (`!`, save_if_unchanged), or to report a stale copy (`?`).
        let checks = check || writes_scope;
        let mode = match (check, session.cleared()) {
            (true, true) => "!c",
            (true, false) => "!",
            (false, true) => "?c",
            (false, false) => "?",
        };
        let expected = if checks && session.version() != 0 {
            codec::encode_version(session.version())
        } else {
            Vec::new()
        };
        let scope: &[u8] = if checks { &version_field } else { &[] };
        let version = if writes_scope {
            self.next_version()
        } else {
            session.version()
        };
        let version_bytes = codec::encode_version(version);
        if writes_scope {
            sets.push((version_field.clone(), &version_bytes));
        }
        let token = self.op_token();
        let args = SaveArgs {
            op: if check { "save_if_unchanged" } else { "save" },
            sid: &sid,
            token: &token[..],
            key: &key,
            scope,
            mode,
            expected: &expected,
            sets: &sets,
            dels: &dels,
        };
        // The fast path: one round trip. The session carries the metadata
        // record it was read or last saved with; if that record is live now,
        // of the session's incarnation, and the save writes, the script
        // writes against those exact bytes. Their match proves the stored
        // record is that one, so the liveness judged here from it holds; any
        // write since (a touch, a save, a destroy, a recreate, a regenerate)
        // changed or removed it, and the script answers CONFLICT.
        if let Some(token) = session.read_token().cloned() {
            let now = self.now();
            if let Ok(meta) = codec::decode_meta(&sid, &token.meta)
                && meta.incarnation == session.incarnation()
                && self.live(&meta, now)
            {
                let new = meta.accessed(now);
                if writes_scope || self.moves_enough(&meta, &new) {
                    // `None`: the record changed since; read it, as below.
                    let written = self.save_against(&args, &token, &new, now, &sid, &component)?;
                    if let Some((new_token, fresh)) = written {
                        session.saved_at(if fresh { version } else { session.version() });
                        session.set_read_token(new_token);
                        return Ok(());
                    }
                }
            }
        }
        // The slow path: read the record, judge it, check-and-write.
        for _ in 0..CAS_ATTEMPTS {
            let now = self.now();
            let (meta, old) = match self.live_record(&sid, now)? {
                Some((m, t)) if m.incarnation == session.incarnation() => (m, t),
                _ => return Err(Error::NotFound { id: sid }),
            };
            let new = meta.accessed(now);
            if !writes_scope && !self.moves_enough(&meta, &new) {
                // Nothing to write; `save_if_unchanged` still answers whether
                // the scope moved on, as the embedded store does.
                if check && self.read_version(&sid, scope)? != session.version() {
                    return Err(Error::Conflict { sid, component });
                }
                session.set_read_token(old);
                return Ok(());
            }
            if let Some((new_token, fresh)) =
                self.save_against(&args, &old, &new, now, &sid, &component)?
            {
                session.saved_at(if fresh { version } else { session.version() });
                session.set_read_token(new_token);
                return Ok(());
            }
        }
        Err(self.contention("saving a session", &sid))
    }

    /// Runs `SAVE` against `expected` (the exact metadata bytes judged live,
    /// and the principal read with them: any change of principal rewrites
    /// the metadata), writing the record `new`, after the principal's set
    /// covers its deadline: `Some((what the session now holds, whether its
    /// version was current))` once written, `None` if the record changed
    /// since, and `Conflict` if `save_if_unchanged` found the scope moved on.
    fn save_against(
        &self,
        args: &SaveArgs<'_>,
        expected: &ReadToken,
        new: &Meta,
        now: u64,
        sid: &str,
        component: &Option<String>,
    ) -> Result<Option<(ReadToken, bool)>> {
        let covered = self.cover(expected, sid, new, now)?;
        let new_bytes = codec::encode_meta(new);
        let ttl = Self::ttl(new, now);
        let token = |meta, mark: &[u8]| ReadToken {
            meta,
            principal: expected.principal.clone(),
            covered: covered.unwrap_or(expected.covered),
            last: [args.token, mark].concat(),
        };
        let covered = covered.map(|c| c.to_string());
        match self.run_save(args, expected, &new_bytes, &ttl, covered.as_deref())? {
            scripts::WRITTEN => Ok(Some((token(new_bytes, b"1"), true))),
            scripts::WRITTEN_STALE => Ok(Some((token(new_bytes, b"4"), false))),
            scripts::VERSION_CHANGED => {
                // Garbage in the version field would refuse every check for
                // ever: that is `Decode`, not `Conflict`.
                self.read_version(sid, args.scope)?;
                Err(Error::Conflict {
                    sid: sid.to_owned(),
                    component: component.clone(),
                })
            }
            scripts::CONFLICT => Ok(None),
            other => Err(self.unexpected("saving a session", other)),
        }
    }
}

impl SessionStore for RedisStore {
    fn create_new_session(&self, sid: &str) -> Result<Session> {
        self.create_at(sid)
    }

    fn get(&self, sid: &str, component: Option<&str>) -> Result<Option<Session>> {
        validate::sid(sid)?;
        validate::scope(component)?;
        let now = self.now();
        let Some(read) = self.read_all(sid)? else {
            return Ok(None);
        };
        if !self.live(&read.meta, now) {
            return Ok(None);
        }
        let prefix = keys::redis_scope_prefix(component);
        let version = match read.fields.iter().find(|(f, _)| *f == prefix) {
            Some((f, v)) => self.version_of(sid, f, v)?,
            None => 0,
        };
        let mut scope: Vec<(&str, &[u8])> = read
            .fields
            .iter()
            .filter_map(|(f, v)| keys::key_in_scope(f, &prefix).map(|k| (k, v.as_slice())))
            .collect();
        scope.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut values = Snapshot::default();
        for (k, v) in scope {
            values.push(k, v);
        }
        Ok(Some(
            Session::new(
                sid.to_owned(),
                component.map(str::to_owned),
                read.meta.incarnation,
                self.inner.max_value_size,
                values,
            )
            .with_version(version)
            .with_read_token(ReadToken {
                principal: read.principal().to_vec(),
                covered: read.covered(),
                last: read.last_write().to_vec(),
                meta: read.meta_bytes,
            }),
        ))
    }

    fn save(&self, session: &mut Session) -> Result<()> {
        self.save_session(session, false)
    }

    fn save_if_unchanged(&self, session: &mut Session) -> Result<()> {
        self.save_session(session, true)
    }

    fn update_with(
        &self,
        sid: &str,
        component: Option<&str>,
        change: &mut dyn FnMut(&mut Session) -> Result<()>,
    ) -> Result<bool> {
        Ok(RedisStore::update(self, sid, component, change)?.is_some())
    }

    fn destroy(&self, sid: &str) -> Result<bool> {
        validate::sid(sid)?;
        let key = self.key(sid);
        let _guard = self.inner.locks.write(sid);
        let now = self.now();
        let token = self.op_token();
        let (status, old, principal): (i64, Vec<u8>, Vec<u8>) =
            self.write("destroy", sid, "destroying a session", |c| {
                scripts::eval(c, &scripts::TAKE, &key, |cmd| {
                    cmd.arg(&token[..]).arg(self.tomb_ms());
                })
            })?;
        if status != scripts::WRITTEN || old.is_empty() {
            return Ok(false);
        }
        self.wrote();
        let live = match codec::decode_meta(sid, &old) {
            Ok(meta) => {
                // After the key: a failure here leaves a stale member, which
                // reads prune. The session is gone whatever it says, so it
                // is logged, not returned.
                if let Err(e) = self.unindex(&principal, sid, meta.incarnation) {
                    log::warn!("sessionstore: destroyed {sid:?}, its index entry stays: {e}");
                }
                self.live(&meta, now)
            }
            // A corrupt record: it was there, and it is gone now.
            Err(_) => true,
        };
        let sid = sid.to_owned();
        self.inner.events.send(if live {
            Event::Destroyed { sid }
        } else {
            Event::Expired { sid }
        });
        Ok(live)
    }

    fn create(&self) -> Result<Session> {
        for _ in 0..ID_ATTEMPTS {
            let sid = OsRandom.next_id()?;
            match self.create_at(&sid) {
                Err(Error::AlreadyExists { .. }) => continue,
                other => return other,
            }
        }
        Err(Error::storage(
            "creating a session",
            format!("{ID_ATTEMPTS} fresh random ids in a row were taken; the id source is broken"),
        ))
    }

    fn touch(&self, sid: &str) -> Result<bool> {
        validate::sid(sid)?;
        for _ in 0..CAS_ATTEMPTS {
            let now = self.now();
            let Some((meta, old)) = self.live_record(sid, now)? else {
                return Ok(false);
            };
            let new = meta.accessed(now);
            if !self.moves_enough(&meta, &new)
                || self.write_meta("touch", sid, &old, &new, now)? == scripts::WRITTEN
            {
                return Ok(true);
            }
        }
        Err(self.contention("touching a session", sid))
    }

    fn regenerate(&self, sid: &str) -> Result<String> {
        validate::sid(sid)?;
        let old_key = self.key(sid);
        let token = self.op_token();
        for _ in 0..CAS_ATTEMPTS {
            // 1. A fresh id whose key is free. Both ids are locked from the
            // read to the event, so that no call of this process sends an
            // event of the new id (a destroy) before `Regenerated`.
            let new_sid = self.free_id()?;
            let _guard = self.inner.locks.write_pair(sid, &new_sid);
            // 2. Read the old session.
            let now = self.now();
            let read = match self.read_all(sid)? {
                Some(r) if self.live(&r.meta, now) => r,
                _ => return Err(Error::NotFound { id: sid.to_owned() }),
            };
            // The new id enters its principal's index before the old key
            // goes: a crash from here on leaves a stale entry (pruned on
            // read), never a live session outside the index.
            let principal = Some(read.principal().to_vec()).filter(|p| !p.is_empty());
            let new = read.meta.accessed(now);
            if let Some(name) = &principal {
                self.index(name, &new_sid, &new, now)?;
            }
            // 3. Delete the old id, if nobody wrote to it since the read:
            // its metadata and its last write's token entry are unchanged
            // (the token tells apart writes whose metadata bytes are equal).
            let deleted: i64 = self.write("regenerate", sid, "regenerating a session id", |c| {
                scripts::eval(c, &scripts::DELETE_IF, &old_key, |cmd| {
                    cmd.arg(&read.meta_bytes)
                        .arg(read.last_write())
                        .arg(&token[..])
                        .arg(self.tomb_ms());
                })
            })?;
            if deleted != scripts::WRITTEN {
                if let Some(name) = &principal {
                    self.unindex_logged(name, &new_sid, new.incarnation);
                }
                continue;
            }
            self.wrote();
            // 4. Write the new id. From here on a failure loses the session.
            let new_bytes = codec::encode_meta(&new);
            let ttl = Self::ttl(&new, now);
            let new_key = self.key(&new_sid);
            let written: i64 = self.write(
                "regenerate",
                sid,
                "regenerating a session id (the old id is gone)",
                |c| {
                    scripts::eval(c, &scripts::PUT, &new_key, |cmd| {
                        cmd.arg("").arg(&new_bytes).arg(&ttl).arg(&token[..]);
                        for (f, v) in &read.fields {
                            // Data fields (with a `/`) and the principal; the
                            // store's own fields start afresh.
                            if f == keys::REDIS_PRINCIPAL_FIELD || f.contains(&b'/') {
                                cmd.arg(f).arg(v);
                            }
                        }
                        if principal.is_some() {
                            cmd.arg(keys::REDIS_COVERED_FIELD).arg(Self::coverage(&new));
                        }
                    })
                },
            )?;
            if written != scripts::WRITTEN {
                return Err(Error::storage(
                    format!(
                        "regenerating session {sid:?} on {}",
                        self.inner.conns.target()
                    ),
                    format!(
                        "the new id {new_sid:?} was taken between the check and the write; the old id is gone and the session is lost"
                    ),
                ));
            }
            self.wrote();
            if let Some(name) = &principal {
                // Again: a read that found the new id's member before its
                // key existed took it for a dead one and pruned it. The
                // session has moved whatever these say: logged, not returned.
                if let Err(e) = self.index(name, &new_sid, &new, now) {
                    log::warn!("sessionstore: regenerated {sid:?}, indexing {new_sid:?}: {e}");
                }
                self.unindex_logged(name, sid, read.meta.incarnation);
            }
            self.inner.events.send(Event::Regenerated {
                old: sid.to_owned(),
                new: new_sid.clone(),
            });
            return Ok(new_sid);
        }
        Err(self.contention("regenerating a session id", sid))
    }

    fn set_idle_timeout(&self, sid: &str, timeout: Option<Duration>) -> Result<()> {
        validate::sid(sid)?;
        if let Some(d) = timeout {
            crate::limits::check_timeout("set_idle_timeout", d)?;
        }
        for _ in 0..CAS_ATTEMPTS {
            let now = self.now();
            let Some((meta, old)) = self.live_record(sid, now)? else {
                return Err(Error::NotFound { id: sid.to_owned() });
            };
            let new = Meta {
                idle: timeout.map(clock::duration_micros),
                ..meta
            };
            if self.write_meta("set_idle_timeout", sid, &old, &new, now)? == scripts::WRITTEN {
                return Ok(());
            }
        }
        Err(self.contention("setting a session's idle timeout", sid))
    }

    fn info(&self, sid: &str) -> Result<Option<SessionInfo>> {
        validate::sid(sid)?;
        let now = self.now();
        Ok(self
            .live_meta(sid, now)?
            .map(|(m, _)| SessionInfo::from_meta(&m)))
    }

    /// Events of this store's own calls, in this process: `Created`,
    /// `Destroyed`, `Regenerated`, and `Expired` when a call deletes a
    /// session it finds expired. Sessions that Redis expires by TTL, and
    /// calls of other processes, send nothing here (Redis's keyspace
    /// notifications are lost while nobody listens; this store does not
    /// build on them).
    fn subscribe(&self) -> crossbeam_channel::Receiver<Event> {
        self.inner.events.subscribe()
    }

    fn set_principal(&self, sid: &str, name: Option<&str>) -> Result<()> {
        RedisStore::set_principal(self, sid, name)
    }

    fn principal(&self, sid: &str) -> Result<Option<String>> {
        RedisStore::principal(self, sid)
    }

    fn sessions_of(&self, name: &str) -> Result<Vec<String>> {
        RedisStore::sessions_of(self, name)
    }

    fn destroy_all_of(&self, name: &str) -> Result<usize> {
        RedisStore::destroy_all_of(self, name)
    }
}

impl RedisConfig {
    /// Checks the settings, connects, and checks that the server answers.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidConfig`](crate::Error::InvalidConfig) for an out-of-range setting or a bad URL;
    /// - [`Error::Storage`](crate::Error::Storage) naming the server if it cannot be reached or
    ///   does not answer within the timeouts.
    pub fn open(self) -> Result<RedisStore> {
        self.validate()?;
        RedisStore::open(self)
    }
}

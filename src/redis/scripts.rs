//! The Lua scripts that check and write one session's key atomically, and
//! the status codes they return.
//!
//! Each script touches exactly one key, `KEYS[1]`, the session's hash, so it
//! runs in one Cluster slot. A principal's index is another key, in another
//! slot: it is written by single commands (`ZADD`, `ZADD XX`, `ZREM`), in
//! an order that never leaves a live session out of it (see `principal.rs`). The check is a compare-and-set on the exact
//! bytes of a metadata record the caller holds (read just now, or, for a
//! save, carried by the session since its read or last save): the caller
//! decides, with the store's clock, that the session is live and of the
//! right incarnation by that record, and the script writes only if the
//! stored record is still those bytes. Every
//! script that writes sets the key's TTL in the same step, so the key is
//! never without one (`PERSIST` only for a session that never expires).
//! Scripts return status codes, never errors: a Lua `error()` would arrive as
//! an untyped server error. Every write is exactly once: see `ONCE`.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::{Cmd, ConnectionLike, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind};

/// A script: its source, and its SHA1 for `EVALSHA`; for the scripts of
/// `LIBRARY`, also its name there as a Redis function.
pub(crate) struct Lua {
    source: String,
    script: Script,
    function: Option<&'static str>,
}

impl Lua {
    fn new(source: String) -> Lua {
        Lua {
            script: Script::new(&source),
            source,
            function: None,
        }
    }
}

/// The Redis functions library (Redis 7): the save scripts of this
/// process's first sends and resends on one server, `SAVE_FIRST` and
/// `SAVE_AGAIN`, which run on every save. `FCALL` of a function costs the
/// server about 3,800 fewer instructions than `EVALSHA` of the same script
/// (`benches/redis_server_cost`): about 6 % of a save. Its name and its
/// functions' names end in the hash of their code, so stores of different
/// versions each load and call their own.
pub(crate) struct Library {
    /// `#!lua name=…` and the functions: what `FUNCTION LOAD` takes.
    code: String,
    /// `SAVE_FIRST`'s function name.
    first: &'static str,
    /// `SAVE_AGAIN`'s function name.
    again: &'static str,
}

pub(crate) static LIBRARY: LazyLock<Library> = LazyLock::new(|| {
    let first_body = format!("{SAVE_READ}{SAVE_WRITE}");
    let again_body = format!("{SAVE_READ}{SAVE_LOOKUP_AGAIN}{SAVE_WRITE}");
    let both = Script::new(&format!("{first_body}{again_body}"));
    let hash = &both.get_hash()[..16];
    // Leaked once: a LazyLock static is built once per process.
    let first: &'static str = Box::leak(format!("sessionstore_{hash}_save_first").into_boxed_str());
    let again: &'static str = Box::leak(format!("sessionstore_{hash}_save_again").into_boxed_str());
    let code = format!(
        "#!lua name=sessionstore_{hash}\n\
         redis.register_function('{first}', function(KEYS, ARGV){first_body}end)\n\
         redis.register_function('{again}', function(KEYS, ARGV){again_body}end)\n"
    );
    Library { code, first, again }
});

/// Whether a store calls the scripts of `LIBRARY` by `FCALL`: if the
/// server took the library and knows `FCALL` when the store opened
/// (`Functions::probe`), until it refuses them (a user not allowed
/// `FCALL` or `FUNCTION LOAD`); else by `EVALSHA`, as every other script.
pub(crate) struct Functions(AtomicBool);

impl Functions {
    /// Never `FCALL`: for a client that resends by itself (the cluster's),
    /// which runs `SAVE_AGAIN` by `EVALSHA`, no function.
    pub(crate) fn off() -> Functions {
        Functions(AtomicBool::new(false))
    }

    /// Loads `LIBRARY` on the server (`FUNCTION LOAD REPLACE`) and asks
    /// whether it knows `FCALL` (`COMMAND INFO`; a renamed command is
    /// unknown): both, and the saves go by `FCALL`. Probed once, at open:
    /// a server without `FCALL` answers one with an error that quotes the
    /// call's arguments, binary bytes that the client cannot parse. A
    /// server error is an answer (no); a lost reply is the caller's error.
    pub(crate) fn probe(c: &mut dyn ConnectionLike) -> RedisResult<Functions> {
        let loaded = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(&LIBRARY.code)
            .query::<redis::Value>(c);
        let on = match loaded {
            Ok(_) => {
                let info: Vec<redis::Value> =
                    redis::cmd("COMMAND").arg("INFO").arg("FCALL").query(c)?;
                info.first().is_some_and(|v| *v != redis::Value::Nil)
            }
            Err(e) if e.is_io_error() || e.is_timeout() => return Err(e),
            Err(e) => {
                log::info!("sessionstore: calling scripts by EVALSHA: FUNCTION LOAD failed: {e}");
                false
            }
        };
        Ok(Functions(AtomicBool::new(on)))
    }
}

/// Runs `lua` on the key `key` as [`eval`] does, but a script of `LIBRARY`
/// by `FCALL` while `functions` allows it. A server that does not hold the
/// library (`Function not found`: a restart without persistence, a
/// failover, a `FUNCTION FLUSH`) gets it by `FUNCTION LOAD REPLACE`, then
/// the call again; nothing ran before. A server without functions, or that
/// refuses to load them, turns `functions` off and gets `EVALSHA`.
pub(crate) fn call<T: FromRedisValue>(
    c: &mut dyn ConnectionLike,
    lua: &Lua,
    key: &str,
    functions: &Functions,
    args: impl Fn(&mut Cmd),
) -> RedisResult<T> {
    let Some(name) = lua.function.filter(|_| functions.0.load(Ordering::Relaxed)) else {
        return eval(c, lua, key, args);
    };
    let fcall = |c: &mut dyn ConnectionLike| {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(name).arg(1).arg(key);
        args(&mut cmd);
        cmd.query(c)
    };
    match fcall(c) {
        Err(e) if says(&e, "Function not found") => {
            match redis::cmd("FUNCTION")
                .arg("LOAD")
                .arg("REPLACE")
                .arg(&LIBRARY.code)
                .query::<redis::Value>(c)
            {
                Ok(_) => fcall(c),
                Err(e) if e.is_io_error() || e.is_timeout() => Err(e),
                Err(e) => {
                    log::warn!(
                        "sessionstore: calling scripts by EVALSHA: FUNCTION LOAD failed: {e}"
                    );
                    functions.0.store(false, Ordering::Relaxed);
                    eval(c, lua, key, args)
                }
            }
        }
        Err(e)
            if e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)
                || says(&e, "unknown command") =>
        {
            log::warn!("sessionstore: calling scripts by EVALSHA: FCALL failed: {e}");
            functions.0.store(false, Ordering::Relaxed);
            eval(c, lua, key, args)
        }
        other => other,
    }
}

/// Whether a server error's message holds `what`.
fn says(e: &redis::RedisError, what: &str) -> bool {
    e.detail().is_some_and(|d| d.contains(what)) || e.to_string().contains(what)
}

/// Runs `lua` on the key `key` by `EVALSHA`, its arguments written by
/// `args` into one command buffer (what `ScriptInvocation::invoke` does,
/// without its allocation per argument: the save path's client cost, see
/// `docs/performance.md`). A server that does not hold the script
/// (`NOSCRIPT`: a restart, a failover, a `SCRIPT FLUSH`) gets it by `EVAL`
/// of its source, on the key's node only, which also caches it there: on a
/// cluster, a `SCRIPT LOAD` would need every node to answer.
pub(crate) fn eval<T: FromRedisValue>(
    c: &mut dyn ConnectionLike,
    lua: &Lua,
    key: &str,
    args: impl Fn(&mut Cmd),
) -> RedisResult<T> {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(lua.script.get_hash()).arg(1).arg(key);
    args(&mut cmd);
    match cmd.query(c) {
        Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(&lua.source).arg(1).arg(key);
            args(&mut cmd);
            cmd.query(c)
        }
        other => other,
    }
}

/// The script wrote.
pub(crate) const WRITTEN: i64 = 1;
/// The metadata record was not the expected bytes: the caller reads again.
pub(crate) const CONFLICT: i64 = 0;
/// The key holds a hash without a metadata record: not a session of ours.
pub(crate) const FOREIGN: i64 = 2;
/// The scope's version was not the expected one (`save_if_unchanged`).
pub(crate) const VERSION_CHANGED: i64 = 3;
/// The script wrote, but the scope's version was not the one the session
/// had (a plain `save` of a copy read before another write): the session
/// must not take the new version as its own.
pub(crate) const WRITTEN_STALE: i64 = 4;
/// There is no key (`TAKE_IF_PRINCIPAL`).
pub(crate) const GONE: i64 = 5;
/// Added to `CONFLICT` or `VERSION_CHANGED` by `SAVE` (`SAVE_FIRST`,
/// `SAVE_AGAIN`) when the field `o`
/// holds 16 entries or more: the token of a write applied before the last
/// 16 could have been dropped from it, so to a resend (and only to one) the
/// answer means the outcome is unknown.
pub(crate) const HISTORY_FULL: i64 = 10;

/// The length of one entry of the field `o`: a token (8 bytes) and the
/// status its write answered (one digit).
pub(crate) const TOKEN_ENTRY: usize = 9;

/// The operation token of the `n`-th call: 8 bytes, a bijection of `n`
/// (splitmix64's finaliser), so tokens are unique while `n` is, and look
/// random: no token is likely to appear across two entries of `o`.
pub(crate) fn token(n: u64) -> [u8; 8] {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).to_le_bytes()
}

/// Exactly once: the Lua functions every write script shares.
///
/// Every write of a session's hash records, in its field `o`, the token of
/// the call that made it and the status it answered, newest first (`entry`).
/// The field keeps at least the last 16 entries and at most 20 (180 bytes):
/// it grows by one entry per write up to 20, and the write after that keeps
/// the newest 15 behind its own. (Cutting it on every write cost the server
/// a `string.sub` and a longer string on each save; see `SAVE`.) So a
/// write's entry outlives at least 15 later writes. A script sent again with the same
/// token (its reply was lost, and the connection or the cluster client
/// resent it) finds its entry and answers the first status without writing
/// again (`seen`). A deletion leaves a tombstone: a hash holding `o` (and
/// what the deletion answered) but no `m`, with a TTL that outlasts every
/// resend (`bury`); readers take a tombstone for no session. The first 9
/// bytes of `o` also tell one write from another when their metadata bytes
/// are equal (two app servers writing at the same clock time):
/// `DELETE_IF` compares them.
const ONCE: &str = r"
local function seen(o, t)
  if not o then return nil end
  local at = string.find(o, t, 1, true)
  if at then return at, tonumber(string.sub(o, at + 8, at + 8)) end
  return nil
end
local function entry(o, t, s)
  if not o then return t .. s end
  if #o < 180 then return t .. s .. o end
  return t .. s .. string.sub(o, 1, 135)
end
local function bury(k, o, t, ms, ...)
  redis.call('DEL', k)
  redis.call('HSET', k, 'o', entry(o, t, '1'), ...)
  redis.call('PEXPIRE', k, ms)
end
";

/// Sets the TTL of `KEYS[1]` from `ARGV[ttl_at]`: milliseconds, or `0` for none.
const SET_TTL: &str = r"
local function set_ttl(ms)
  if ms == '0' then
    redis.call('PERSIST', KEYS[1])
  else
    redis.call('PEXPIRE', KEYS[1], ms)
  end
end
";

/// How `SAVE` looks the call's token up in `o` before anything else, by
/// who sends it (see `Connections::resends_itself`).
///
/// - A first send from this process (`SAVE_FIRST`): not at all. The token
///   is new, so it cannot be in `o`.
/// - A resend from this process, and any send of a client that resends by
///   itself (the cluster's) (`SAVE_AGAIN`): the token argument is the
///   call's token, then the newest entry of `o` that the session last saw
///   (empty if unknown). Found, it answers the status recorded. Not found
///   while `o` holds 16 entries or more, the first send may have been
///   applied and pushed out of `o` since, and the metadata compare cannot
///   tell (writes at one clock time write the same bytes): unless the
///   newest entry is still the one the session saw (then nothing, the first
///   send included, wrote since), it answers `HISTORY_FULL` and writes
///   nothing. To a resend that is `Error::Unknown`; to a first send of the
///   cluster's a conflict, after which the caller reads the record again.
const SAVE_LOOKUP_AGAIN: &str = r"
local last = string.sub(t, 9)
t = string.sub(t, 1, 8)
if o then
  local at = string.find(o, t, 1, true)
  if at then return tonumber(string.sub(o, at + 8, at + 8)) end
  if #o >= 144 and string.sub(o, 1, 9) ~= last then return 10 end
end
";

/// `SAVE`'s reads, before the token's lookup.
const SAVE_READ: &str = r"
local k = KEYS[1]
local scope = ARGV[4]
local t = ARGV[7]
local r
if scope == '' then
  r = redis.call('HMGET', k, 'm', 'o')
else
  r = redis.call('HMGET', k, 'm', 'o', scope)
end
local cur, o, v = r[1], r[2], r[3] or ''
";

/// `SAVE`'s checks and writes, after the token's lookup.
const SAVE_WRITE: &str = r"
local full = 0
if o and #o >= 144 then full = 10 end
if cur ~= ARGV[1] then return full end
local status, mark = 1, '1'
local mode = ARGV[5]
if scope ~= '' and v ~= ARGV[6] then
  if mode == '!' or mode == '!c' then return 3 + full end
  status, mark = 4, '4'
end
if mode == '?c' or mode == '!c' then
  local n = #scope
  for _, f in ipairs(redis.call('HKEYS', k)) do
    if string.sub(f, 1, n) == scope then redis.call('HDEL', k, f) end
  end
end
if not o then
  o = t .. mark
elseif #o < 180 then
  o = t .. mark .. o
else
  o = t .. mark .. string.sub(o, 1, 135)
end
local sets = ARGV[8]
local i
if sets == '2' then
  redis.call('HSET', k, 'm', ARGV[2], 'o', o, ARGV[9], ARGV[10], ARGV[11], ARGV[12])
  i = 13
elseif sets == '1' then
  redis.call('HSET', k, 'm', ARGV[2], 'o', o, ARGV[9], ARGV[10])
  i = 11
elseif sets == '0' then
  redis.call('HSET', k, 'm', ARGV[2], 'o', o)
  i = 9
else
  local last = 8 + 2 * sets
  local j = last
  if j > 264 then j = 264 end
  redis.call('HSET', k, 'm', ARGV[2], 'o', o, unpack(ARGV, 9, j))
  i = j + 1
  while i <= last do
    j = i + 255
    if j > last then j = last end
    redis.call('HSET', k, unpack(ARGV, i, j))
    i = j + 1
  end
end
local n = #ARGV
if i == n then
  redis.call('HDEL', k, ARGV[i])
else
  while i <= n do
    local j = i + 255
    if j > n then j = n end
    redis.call('HDEL', k, unpack(ARGV, i, j))
    i = j + 1
  end
end
if ARGV[3] == '0' then
  redis.call('PERSIST', k)
else
  redis.call('PEXPIRE', k, ARGV[3])
end
return status
";

/// Save, touch and `set_idle_timeout`: `SAVE_FIRST`, or `SAVE_AGAIN` (see
/// `SAVE_LOOKUP_AGAIN`).
///
/// `ARGV`: expected metadata, new metadata, TTL, the scope's field (its
/// version, and the prefix of its data fields; empty: no scope work), a
/// mode, the version expected in the scope's field (empty for none), the
/// operation token (see `ONCE`; for `SAVE_AGAIN` followed by the newest
/// entry of `o` the caller saw), then the number `n` of fields to set, then
/// `n` field/value pairs, then the fields to delete.
/// The mode: `!` refuses to write on a version mismatch
/// (`save_if_unchanged`), `?` writes and answers `WRITTEN_STALE` (a plain
/// save); either followed by `c` clears the scope's fields first.
///
/// The expected metadata also pins the principal the caller read with it:
/// every change of `p` rewrites `m` (`SET_PRINCIPAL`). The caller made that
/// principal's set cover the new deadline before this call (see
/// `principal.rs`).
///
/// The fields are set (with the metadata record) by one `HSET` and deleted
/// by one `HDEL`, 256 arguments at a time at most (an even number: whole
/// pairs), so that a save of many keys stays within what Lua's `unpack`
/// takes.
///
/// Written for the server's cost, measured by `benches/redis_server_cost`:
/// every call of a Lua library function (`string.sub`, `tonumber`,
/// `math.min`, `unpack`) costs about a thousand instructions, and every
/// string made in Lua (an argument, a field read, a concatenation) costs
/// about six per byte (Redis's Lua hashes every byte of a new string). So
/// the script compares whole arguments, lets Lua turn `n` into a number,
/// writes up to two fields and deletes one field without `unpack`, records
/// its status as a string (turning a number into one is a `sprintf`), and
/// cuts `o` once every five writes, not on every one (see `ONCE`).
///
/// This one is for this process's first send of a call: no lookup. A
/// function of `LIBRARY` too.
pub(crate) static SAVE_FIRST: LazyLock<Lua> = LazyLock::new(|| Lua {
    function: Some(LIBRARY.first),
    ..Lua::new(format!("{SAVE_READ}{SAVE_WRITE}"))
});

/// `SAVE_FIRST` for this process's resends of a call, and for every send of
/// a client that resends by itself (the cluster's, which calls it by
/// `EVALSHA`): see `SAVE_LOOKUP_AGAIN`. A function of `LIBRARY` too.
pub(crate) static SAVE_AGAIN: LazyLock<Lua> = LazyLock::new(|| Lua {
    function: Some(LIBRARY.again),
    ..Lua::new(format!("{SAVE_READ}{SAVE_LOOKUP_AGAIN}{SAVE_WRITE}"))
});

/// Create (`create_new_session`, import, and the new id of a `regenerate`).
///
/// `ARGV`: expected metadata (empty: the key must not exist, or be a
/// tombstone), new metadata, TTL, the operation token, then field/value
/// pairs to write. An expected record that matches is replaced with
/// everything under it: an expired session nobody reaped yet.
pub(crate) static PUT: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        "{ONCE}{SET_TTL}{}",
        r"
local k = KEYS[1]
local t = ARGV[4]
local o = false
if redis.call('EXISTS', k) == 1 then
  if redis.call('TYPE', k).ok ~= 'hash' then return 0 end
  local r = redis.call('HMGET', k, 'm', 'o')
  o = r[2]
  local at, s = seen(o, t)
  if at then return s end
  if ARGV[1] == '' then
    if r[1] then return 0 end
    if not o then return 2 end
  elseif r[1] ~= ARGV[1] then
    return 0
  end
  redis.call('DEL', k)
elseif ARGV[1] ~= '' then
  return 0
end
local i = 5
while i < #ARGV do
  redis.call('HSET', k, ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', k, 'm', ARGV[2], 'o', entry(o, t, '1'))
set_ttl(ARGV[3])
return 1
"
    ))
});

/// Deletes the key if its metadata is `ARGV[1]` and its last write's token
/// entry `ARGV[2]` (the old id of a `regenerate`: every write since its
/// read changed one or the other). `ARGV[3]`: the operation token;
/// `ARGV[4]`: the tombstone's TTL in ms.
pub(crate) static DELETE_IF: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        "{ONCE}{}",
        r"
local k = KEYS[1]
local r = redis.call('HMGET', k, 'm', 'o')
local o = r[2]
local at, s = seen(o, ARGV[3])
if at then return s end
if r[1] ~= ARGV[1] or string.sub(o or '', 1, 9) ~= ARGV[2] then return 0 end
bury(k, o, ARGV[3], ARGV[4])
return 1
"
    ))
});

/// Destroy: deletes the key whatever it holds and returns `{WRITTEN, its
/// metadata record, its principal}`, each an empty string if it had none
/// (not a hash of ours); `{CONFLICT, '', ''}` if there was no session (no
/// key, or a tombstone). `ARGV`: the operation token, the tombstone's TTL in
/// ms. A resend answers what the first run took (kept in the tombstone).
pub(crate) static TAKE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        "{ONCE}{}",
        r"
local k = KEYS[1]
local ty = redis.call('TYPE', k).ok
if ty == 'none' then return {0, '', ''} end
if ty ~= 'hash' then
  redis.call('DEL', k)
  return {1, '', ''}
end
local r = redis.call('HMGET', k, 'm', 'p', 'o', 'dm', 'dp')
local o = r[3]
if seen(o, ARGV[1]) then return {1, r[4] or '', r[5] or ''} end
if o and not r[1] then return {0, '', ''} end
local m, p = r[1] or '', r[2] or ''
bury(k, o, ARGV[1], ARGV[2], 'dm', m, 'dp', p)
return {1, m, p}
"
    ))
});

/// `set_principal`: if the metadata is `ARGV[1]`, sets the principal field
/// to `ARGV[4]` and the coverage field `c` to `ARGV[5]` (deletes both for an
/// empty name; names are never empty), writes the new metadata `ARGV[2]`
/// with the TTL `ARGV[3]`, and returns
/// `{WRITTEN, the old name or ''}`; else `{CONFLICT, ''}`. `ARGV[6]`: the
/// operation token; a resend answers the old name the first run found
/// while no write followed it (kept in the field `q`), else `''`. The metadata
/// changes with every change of principal (the caller moves the last access
/// at least 1 µs), so a save against the metadata read before it fails its
/// compare and reads the principal again (see `SAVE`).
pub(crate) static SET_PRINCIPAL: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        "{ONCE}{SET_TTL}{}",
        r"
local k = KEYS[1]
local r = redis.call('HMGET', k, 'm', 'p', 'o', 'q')
local o = r[3]
local at = seen(o, ARGV[6])
if at == 1 then return {1, r[4] or ''} end
if at then return {1, ''} end
if r[1] ~= ARGV[1] then return {0, ''} end
local old = r[2] or ''
if ARGV[4] == '' then
  redis.call('HDEL', k, 'p', 'c')
else
  redis.call('HSET', k, 'p', ARGV[4], 'c', ARGV[5])
end
redis.call('HSET', k, 'm', ARGV[2], 'o', entry(o, ARGV[6], '1'), 'q', old)
set_ttl(ARGV[3])
return {1, old}
"
    ))
});

/// `destroy_all_of`: deletes the key if its principal is `ARGV[1]` and
/// returns `{WRITTEN, its metadata}`; `{CONFLICT, ''}` if it belongs to
/// another principal or none (left alone); `{GONE, ''}` if there is no
/// session (no key, or a tombstone). `ARGV[2]`: the operation token;
/// `ARGV[3]`: the tombstone's TTL in ms.
pub(crate) static TAKE_IF_PRINCIPAL: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        "{ONCE}{}",
        r"
local k = KEYS[1]
local ty = redis.call('TYPE', k).ok
if ty == 'none' then return {5, ''} end
if ty ~= 'hash' then return {0, ''} end
local r = redis.call('HMGET', k, 'm', 'p', 'o', 'dm')
local o = r[3]
if seen(o, ARGV[2]) then return {1, r[4] or ''} end
if o and not r[1] then return {5, ''} end
if r[2] ~= ARGV[1] then return {0, ''} end
local m = r[1] or ''
bury(k, o, ARGV[2], ARGV[3], 'dm', m)
return {1, m}
"
    ))
});

/// Raises the persisted time floor `KEYS[1]` to `ARGV[1]` (µs since the
/// epoch, 20 decimal digits, so that strings compare as numbers) and
/// returns the floor it holds now.
pub(crate) static FLOOR: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
local cur = redis.call('GET', KEYS[1])
if not cur or #cur ~= 20 or ARGV[1] > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return cur
"
        .to_owned(),
    )
});

/// Gives a persistent principal's set `KEYS[1]` a TTL again once no member
/// of it is scored `+inf` (a session that never expires): up to its highest
/// score (every member's score is at or after its session's deadline when
/// last covered), `ARGV[2]` being the store clock's now in µs, plus the
/// margin. Shared by `INDEX` and `UNINDEX`.
const RESTORE_TTL: &str = r"
local MARGIN = 1000
local function restore_ttl(now)
  if redis.call('PTTL', KEYS[1]) ~= -1 then return end
  if redis.call('ZCOUNT', KEYS[1], '+inf', '+inf') > 0 then return end
  local top = redis.call('ZRANGE', KEYS[1], '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1, 'WITHSCORES')
  if top[2] == nil then return end
  local ms = math.ceil((tonumber(top[2]) - tonumber(now)) / 1000)
  if ms < 1 then ms = 1 end
  redis.call('PEXPIRE', KEYS[1], ms + MARGIN)
end
";

/// Adds a member to a principal's sorted set, `KEYS[1]` (a key of its own
/// slot), or raises its score, and makes the set's TTL cover that member's
/// session up to its deadline, plus a margin of 1 s (a clock that stands
/// still while real time runs: the set is written a round trip before the
/// session): `ARGV`: score (the deadline in µs, `+inf` for none), member,
/// the milliseconds until the deadline (`0` for a session that never
/// expires), and the store clock's now in µs.
///
/// Scores only rise (`GT`), so a score is at or after its session's
/// deadline whatever order two covers of it land in; except from `+inf`: a
/// session given an idle timeout again (`set_idle_timeout`) must leave it,
/// or its set could never take a TTL again. (The price: two opposite
/// `set_idle_timeout` calls racing, where the one that loses its compare
/// crashes before its retry, can leave a session that never expires scored
/// finite, its set with a TTL.) The TTL only lengthens. A member that never
/// expires makes the set persistent, until no member is scored `+inf`
/// (`RESTORE_TTL`).
pub(crate) static INDEX: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        "{RESTORE_TTL}{}",
        r"
if redis.call('ZSCORE', KEYS[1], ARGV[2]) == 'inf' then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
else
  redis.call('ZADD', KEYS[1], 'GT', ARGV[1], ARGV[2])
end
if ARGV[3] == '0' then
  redis.call('PERSIST', KEYS[1])
  return 1
end
local ms = tonumber(ARGV[3]) + MARGIN
local cur = redis.call('PTTL', KEYS[1])
if cur == -1 then
  restore_ttl(ARGV[4])
elseif cur < ms then
  redis.call('PEXPIRE', KEYS[1], ms)
end
return 1
"
    ))
});

/// Removes member `ARGV[1]` from a principal's set `KEYS[1]`; a persistent
/// set left without a member that never expires takes a TTL again
/// (`RESTORE_TTL`, `ARGV[2]` the store clock's now in µs).
pub(crate) static UNINDEX: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        "{RESTORE_TTL}{}",
        r"
redis.call('ZREM', KEYS[1], ARGV[1])
restore_ttl(ARGV[2])
return 1
"
    ))
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_of_distinct_calls_are_distinct() {
        let mut seen: Vec<[u8; 8]> = (0..10_000u64)
            .chain(u64::MAX - 10_000..=u64::MAX)
            .map(token)
            .collect();
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), n);
        assert_eq!(TOKEN_ENTRY, token(0).len() + 1);
    }
}

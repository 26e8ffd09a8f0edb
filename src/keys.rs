//! The only module that builds or parses storage keys.
//!
//! One ordered key space holds these shapes (see ARCHITECTURE.md):
//!
//! | shape | bytes |
//! |---|---|
//! | data, component scope | `{sid}/{component}/{key}` |
//! | data, global scope | `{sid}//{key}` (the empty component, which no valid name can be) |
//! | scope version | `{sid}/{component}/` and `{sid}//`: the scope prefix itself (no valid key is empty) |
//! | metadata | `{sid}/` |
//! | expiry index | `!` + deadline (u64 microseconds since the epoch, big-endian) + `{sid}` |
//! | format marker | `#sessionstore` |
//! | time floor | `#clock` |
//! | principal of a session | `{sid}/` + NUL (no component holds a control character) |
//! | principal index | `@` + principal name + NUL + `{sid}` (no name holds a control character) |
//!
//! Session ids are `[A-Za-z0-9_-]`, so no id starts with `!`, `#` or `@`, and
//! every key of one session shares the prefix `{sid}/`: a prefix scan finds
//! the whole session and nothing of `{sid}x`.

use crate::error::{Error, Result};

/// The first byte of every expiry index key.
const INDEX_TAG: u8 = b'!';
/// The key of the format marker record.
pub(crate) const FORMAT_KEY: &[u8] = b"#sessionstore";
/// The key of the time floor: the latest time the store wrote at.
pub(crate) const CLOCK_KEY: &[u8] = b"#clock";
/// The key of the journal mark: the sequence number of the last journal
/// record the engine's state holds (see `embedded::journal`).
pub(crate) const JOURNAL_KEY: &[u8] = b"#journal";

/// The first byte of every principal index key.
const PRINCIPAL_TAG: u8 = b'@';
/// Ends the principal name in an index key, and the session prefix in a
/// principal record: a control character, which no name or component holds.
const NUL: u8 = 0;

/// The metadata key of a session: `{sid}/`.
pub(crate) fn meta(sid: &str) -> Vec<u8> {
    session_prefix(sid)
}

/// The prefix of every key of one session, its metadata included: `{sid}/`.
pub(crate) fn session_prefix(sid: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(sid.len() + 1);
    k.extend_from_slice(sid.as_bytes());
    k.push(b'/');
    k
}

/// The prefix of every data key of one scope: `{sid}/{component}/`.
pub(crate) fn scope_prefix(sid: &str, component: Option<&str>) -> Vec<u8> {
    let comp = component.unwrap_or("");
    let mut k = Vec::with_capacity(sid.len() + comp.len() + 2);
    k.extend_from_slice(sid.as_bytes());
    k.push(b'/');
    k.extend_from_slice(comp.as_bytes());
    k.push(b'/');
    k
}

/// The version record of one scope: `{sid}/{component}/`, the scope's
/// prefix itself, which no data key can be (keys are not empty).
pub(crate) fn version(sid: &str, component: Option<&str>) -> Vec<u8> {
    scope_prefix(sid, component)
}

/// The data key of one value: `{sid}/{component}/{key}`.
pub(crate) fn data(sid: &str, component: Option<&str>, key: &str) -> Vec<u8> {
    let mut k = scope_prefix(sid, component);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Moves a key of session `from` to session `to`, keeping the rest of it.
/// Returns `None` if `key` is not under `{from}/`.
pub(crate) fn rebase(key: &[u8], from: &str, to: &str) -> Option<Vec<u8>> {
    let rest = key.strip_prefix(from.as_bytes())?.strip_prefix(b"/")?;
    let mut k = session_prefix(to);
    k.extend_from_slice(rest);
    Some(k)
}

/// The expiry index key of a session with this deadline.
pub(crate) fn index(deadline_micros: u64, sid: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + sid.len());
    k.push(INDEX_TAG);
    k.extend_from_slice(&deadline_micros.to_be_bytes());
    k.extend_from_slice(sid.as_bytes());
    k
}

/// The start of the expiry index: every index key is at or after it.
pub(crate) fn index_start() -> Vec<u8> {
    vec![INDEX_TAG]
}

/// The first index key with a deadline at or after `deadline_micros`.
/// Scanning `[index_start(), index_bound(t))` yields the sessions due before `t`.
pub(crate) fn index_bound(deadline_micros: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(INDEX_TAG);
    k.extend_from_slice(&deadline_micros.to_be_bytes());
    k
}

/// The end of the expiry index: every index key is before it.
pub(crate) fn index_end() -> Vec<u8> {
    vec![INDEX_TAG + 1]
}

/// The record of the principal a session belongs to: `{sid}/` + NUL. It is
/// under the session's prefix, so deleting or moving the session's keys
/// takes it along; it sorts before every scope (NUL is below `/` and every
/// component's first byte).
pub(crate) fn principal_of(sid: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(sid.len() + 2);
    k.extend_from_slice(sid.as_bytes());
    k.extend_from_slice(&[b'/', NUL]);
    k
}

/// The prefix of every index entry of principal `name`: `@{name}` + NUL.
/// No name holds NUL, so it covers this name's entries and no other's.
pub(crate) fn principal_prefix(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 2);
    k.push(PRINCIPAL_TAG);
    k.extend_from_slice(name.as_bytes());
    k.push(NUL);
    k
}

/// The index entry saying that session `sid` belongs to principal `name`:
/// `@{name}` + NUL + `{sid}`.
pub(crate) fn principal_index(name: &str, sid: &str) -> Vec<u8> {
    let mut k = principal_prefix(name);
    k.extend_from_slice(sid.as_bytes());
    k
}

/// The start of the principal index: every principal index key is at or after it.
pub(crate) fn principal_index_start() -> Vec<u8> {
    vec![PRINCIPAL_TAG]
}

/// The end of the principal index: every principal index key is before it.
pub(crate) fn principal_index_end() -> Vec<u8> {
    vec![PRINCIPAL_TAG + 1]
}

/// What a stored key is, as far as its bytes say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed<'a> {
    /// `{sid}/`.
    Meta { sid: &'a str },
    /// `{sid}/{component}/{key}`; the component is `None` for the global scope.
    Data {
        sid: &'a str,
        component: Option<&'a str>,
        key: &'a str,
    },
    /// `{sid}/{component}/`: a scope's version; the component is `None` for the global scope.
    Version {
        sid: &'a str,
        component: Option<&'a str>,
    },
    /// `!{deadline}{sid}`.
    Index { deadline: u64, sid: &'a str },
    /// `#sessionstore`.
    Format,
    /// `#clock`.
    Clock,
    /// `#journal`.
    JournalMark,
    /// `{sid}/` + NUL: the principal of a session.
    Principal { sid: &'a str },
    /// `@{name}` + NUL + `{sid}`: an entry of the principal index.
    PrincipalIndex { name: &'a str, sid: &'a str },
    /// Anything else: not a key this crate writes.
    Unknown,
}

/// Parses a stored key. Never panics, whatever the bytes.
pub(crate) fn parse(key: &[u8]) -> Parsed<'_> {
    if key == FORMAT_KEY {
        return Parsed::Format;
    }
    if key == CLOCK_KEY {
        return Parsed::Clock;
    }
    if key == JOURNAL_KEY {
        return Parsed::JournalMark;
    }
    if let Some(rest) = key.strip_prefix(&[INDEX_TAG]) {
        let Some((deadline, sid)) = rest.split_first_chunk::<8>() else {
            return Parsed::Unknown;
        };
        return match valid_sid(sid) {
            Some(sid) => Parsed::Index {
                deadline: u64::from_be_bytes(*deadline),
                sid,
            },
            None => Parsed::Unknown,
        };
    }
    if let Some(rest) = key.strip_prefix(&[PRINCIPAL_TAG]) {
        return parse_principal_index(rest);
    }
    let Ok(text) = std::str::from_utf8(key) else {
        return Parsed::Unknown;
    };
    let Some((sid, rest)) = text.split_once('/') else {
        return Parsed::Unknown;
    };
    if valid_sid(sid.as_bytes()).is_none() {
        return Parsed::Unknown;
    }
    if rest.is_empty() {
        return Parsed::Meta { sid };
    }
    if rest.as_bytes() == [NUL] {
        return Parsed::Principal { sid };
    }
    let Some((component, key)) = rest.split_once('/') else {
        return Parsed::Unknown;
    };
    if key.is_empty() {
        return Parsed::Version {
            sid,
            component: (!component.is_empty()).then_some(component),
        };
    }
    Parsed::Data {
        sid,
        component: (!component.is_empty()).then_some(component),
        key,
    }
}

/// `{name}` + NUL + `{sid}`, after the tag of a principal index key.
fn parse_principal_index(rest: &[u8]) -> Parsed<'_> {
    let Some(at) = rest.iter().position(|b| *b == NUL) else {
        return Parsed::Unknown;
    };
    let (name, sid) = (&rest[..at], &rest[at + 1..]);
    match (valid_principal(name), valid_sid(sid)) {
        (Some(name), Some(sid)) => Parsed::PrincipalIndex { name, sid },
        _ => Parsed::Unknown,
    }
}

/// A principal name as stored bytes, if it follows the name rules.
pub(crate) fn valid_principal(bytes: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(bytes).ok()?;
    crate::validate::key(s).ok().map(|()| s)
}

/// The key name of a data key under a known scope prefix, if it is valid UTF-8.
pub(crate) fn key_in_scope<'a>(key: &'a [u8], prefix: &[u8]) -> Option<&'a str> {
    let rest = key.strip_prefix(prefix)?;
    std::str::from_utf8(rest).ok().filter(|k| !k.is_empty())
}

fn valid_sid(bytes: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(bytes).ok()?;
    crate::validate::sid(s).ok().map(|()| s)
}

// ---- Redis (cargo feature `redis`) ----------------------------------------
//
// One session is one Redis hash, so everything one operation checks and
// writes is one key, in one Cluster slot:
//
// | what | shape |
// |---|---|
// | the session's key | `{<namespace>:<sid>}` (the whole key is the hash tag) |
// | its metadata field | `m` |
// | a data field, component scope | `<component>/<key>` |
// | a data field, global scope | `/<key>` (the empty component, which no valid name can be) |
// | its principal field | `p` |
// | a principal's index | `{<namespace>/p:<name>}`, a sorted set of `<sid>:<incarnation hex>` |
// | its last writes' operation tokens | `o` (see `redis/scripts.rs`) |
// | a deleted session's tombstone | the same key: a hash of `o` (and `dm`, `dp`, `q`) without `m`, with a short TTL |
// | the namespace's time floor | `{<namespace>/floor}` |
//
// Every data field holds a `/`, so no data field can be `m`. Namespaces are
// `[A-Za-z0-9_.-]` and ids `[A-Za-z0-9_-]`, so neither holds `{`, `}` or `:`,
// and a key names exactly one (namespace, id) pair.

/// The field of a session's Redis hash that holds its metadata record.
#[cfg(feature = "redis")]
pub(crate) const REDIS_META_FIELD: &[u8] = b"m";

/// The field of a session's Redis hash that holds its principal's name.
/// It holds no `/`, so it is no data field.
#[cfg(feature = "redis")]
pub(crate) const REDIS_PRINCIPAL_FIELD: &[u8] = b"p";

/// The field of a session's Redis hash that holds the deadline (µs, in
/// decimal) up to which its principal's set is known to cover it, so that
/// a save whose new deadline is no later needs no `INDEX`. It holds no `/`,
/// so it is no data field.
#[cfg(feature = "redis")]
pub(crate) const REDIS_COVERED_FIELD: &[u8] = b"c";

/// The field of a session's Redis hash that holds the operation tokens of
/// its last writes (see `redis/scripts.rs`). It holds no `/`, so it is no
/// data field; a hash that has it and no metadata field is a tombstone.
#[cfg(feature = "redis")]
pub(crate) const REDIS_OPS_FIELD: &[u8] = b"o";

/// The Redis key of the index of principal `name` in `namespace`: a sorted
/// set, `{<namespace>/p:<name>}`. `/` is no namespace character, so the key
/// is no session key and `SCAN MATCH {<namespace>:*}` never lists it; its
/// hash tag gives each principal a slot of its own (a name holding `}`
/// shortens the tag, which only changes the slot).
#[cfg(feature = "redis")]
pub(crate) fn redis_principal(namespace: &str, name: &str) -> String {
    format!("{{{namespace}/p:{name}}}")
}

/// A member of a principal's sorted set: `<sid>:<incarnation, 16 hex digits>`.
/// The incarnation makes a member name one session, never a later one
/// under the same id, so a member whose session is gone may be removed
/// whatever happens meanwhile.
#[cfg(feature = "redis")]
pub(crate) fn redis_principal_member(sid: &str, incarnation: u64) -> String {
    format!("{sid}:{incarnation:016x}")
}

/// The session id and incarnation of a principal set's member; `None` for
/// anything else.
#[cfg(feature = "redis")]
pub(crate) fn redis_parse_principal_member(member: &[u8]) -> Option<(&str, u64)> {
    let text = std::str::from_utf8(member).ok()?;
    let (sid, inc) = text.rsplit_once(':')?;
    if inc.len() != 16 {
        return None;
    }
    let inc = u64::from_str_radix(inc, 16).ok()?;
    valid_sid(sid.as_bytes()).map(|sid| (sid, inc))
}

/// The Redis key of the time floor of `namespace`: `{<namespace>/floor}`, a
/// string of 20 decimal digits (µs since the epoch), the latest time at
/// which any store of the namespace judged a session expired. `/` is no
/// namespace character, so `SCAN MATCH {<namespace>:*}` never lists it.
#[cfg(feature = "redis")]
pub(crate) fn redis_floor(namespace: &str) -> String {
    format!("{{{namespace}/floor}}")
}

/// The Redis key of session `sid` in `namespace`: `{<namespace>:<sid>}`.
#[cfg(feature = "redis")]
pub(crate) fn redis_session(namespace: &str, sid: &str) -> String {
    format!("{{{namespace}:{sid}}}")
}

/// The `SCAN MATCH` pattern of every session key of `namespace`: `{<namespace>:*}`.
/// Namespaces hold no glob characters, so it matches nothing else.
#[cfg(feature = "redis")]
pub(crate) fn redis_session_pattern(namespace: &str) -> String {
    format!("{{{namespace}:*}}")
}

/// The session id of a Redis key of `namespace`; `None` for any other key.
#[cfg(feature = "redis")]
pub(crate) fn redis_parse_session<'a>(namespace: &str, key: &'a [u8]) -> Option<&'a str> {
    let inner = key.strip_prefix(b"{")?.strip_suffix(b"}")?;
    let sid = inner
        .strip_prefix(namespace.as_bytes())?
        .strip_prefix(b":")?;
    valid_sid(sid)
}

/// The prefix of every data field of one scope: `<component>/`, `/` for the global scope.
#[cfg(feature = "redis")]
pub(crate) fn redis_scope_prefix(component: Option<&str>) -> Vec<u8> {
    let comp = component.unwrap_or("");
    let mut f = Vec::with_capacity(comp.len() + 1);
    f.extend_from_slice(comp.as_bytes());
    f.push(b'/');
    f
}

/// The version field of one scope: `<component>/`, or `/` for the global
/// scope: the scope's prefix itself, which no data field can be.
#[cfg(feature = "redis")]
pub(crate) fn redis_version_field(component: Option<&str>) -> Vec<u8> {
    redis_scope_prefix(component)
}

/// The data field of one value: `<component>/<key>`.
#[cfg(feature = "redis")]
pub(crate) fn redis_field(component: Option<&str>, key: &str) -> Vec<u8> {
    let mut f = redis_scope_prefix(component);
    f.extend_from_slice(key.as_bytes());
    f
}

/// The component and key of a Redis data field (`<component>/<key>`, see
/// [`redis_field`]); `None` for the metadata field or anything that is not a
/// valid field. Components hold no `/`, so the first one ends the component.
#[cfg(feature = "redis")]
pub(crate) fn redis_parse_field(field: &[u8]) -> Option<(Option<&str>, &str)> {
    let field = std::str::from_utf8(field).ok()?;
    let (component, key) = field.split_once('/')?;
    if key.is_empty() {
        return None;
    }
    Some(((!component.is_empty()).then_some(component), key))
}

/// The principal name stored for session `sid`: [`Error::Decode`] if the
/// bytes break the name rules. Both stores read it through this.
pub(crate) fn stored_principal(sid: &str, bytes: &[u8]) -> Result<String> {
    valid_principal(bytes)
        .map(str::to_owned)
        .ok_or_else(|| Error::Decode {
            what: format!("the principal of session {sid:?}"),
            message: "not a valid principal name".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_round_trip() {
        assert_eq!(data("ab", Some("cart"), "x/y"), b"ab/cart/x/y");
        assert_eq!(data("ab", None, "x"), b"ab//x");
        assert_eq!(meta("ab"), b"ab/");
        assert_eq!(
            parse(b"ab/cart/x/y"),
            Parsed::Data {
                sid: "ab",
                component: Some("cart"),
                key: "x/y"
            }
        );
        assert_eq!(
            parse(b"ab//x"),
            Parsed::Data {
                sid: "ab",
                component: None,
                key: "x"
            }
        );
        assert_eq!(parse(b"ab/"), Parsed::Meta { sid: "ab" });
        assert_eq!(version("ab", Some("c")), b"ab/c/");
        assert_eq!(
            parse(&version("ab", Some("c"))),
            Parsed::Version {
                sid: "ab",
                component: Some("c")
            }
        );
        assert_eq!(
            parse(&version("ab", None)),
            Parsed::Version {
                sid: "ab",
                component: None
            }
        );
        assert_eq!(
            parse(&index(7, "ab")),
            Parsed::Index {
                deadline: 7,
                sid: "ab"
            }
        );
        assert_eq!(parse(FORMAT_KEY), Parsed::Format);
        assert_eq!(parse(&principal_of("ab")), Parsed::Principal { sid: "ab" });
        assert_eq!(
            parse(&principal_index("ada/lovelace", "ab")),
            Parsed::PrincipalIndex {
                name: "ada/lovelace",
                sid: "ab"
            }
        );
    }

    #[test]
    fn principal_keys_stay_apart() {
        // A name's prefix never covers a longer name's entries.
        assert!(!principal_index("adam", "s").starts_with(&principal_prefix("ada")));
        // The principal record is no scope's key or version, and sorts
        // inside the session's prefix, before its scopes.
        assert!(principal_of("ab").starts_with(&session_prefix("ab")));
        assert!(principal_of("ab") < version("ab", None));
        assert!(principal_of("ab") < version("ab", Some("!")));
        // Bad halves are unknown.
        for bad in [
            &b"@"[..],
            b"@ada",
            b"@\0s",
            b"@ada\0",
            b"@ada\0a b",
            b"@a\x01\0s",
        ] {
            assert_eq!(parse(bad), Parsed::Unknown, "{bad:?}");
        }
    }

    #[test]
    fn garbage_is_unknown() {
        for bad in [
            &b""[..],
            b"!",
            b"!1234567",
            b"a b/",
            b"ab",
            b"ab/c",
            b"\xff/",
        ] {
            assert_eq!(parse(bad), Parsed::Unknown, "{bad:?}");
        }
    }

    #[test]
    fn index_orders_by_deadline() {
        assert!(index(1, "zzz") < index(2, "aaa"));
        assert!(index_start() <= index(0, "a"));
        assert!(index(u64::MAX, "zz") < index_end());
        assert!(index(5, "a") < index_bound(6));
        assert!(index(6, "a") >= index_bound(6));
    }

    #[test]
    fn session_prefix_does_not_cover_longer_ids() {
        let p = session_prefix("ab");
        assert!(!data("abc", None, "k").starts_with(&p));
        assert!(data("ab", None, "k").starts_with(&p));
    }

    #[test]
    fn rebase_moves_keys() {
        assert_eq!(rebase(b"ab/c/k", "ab", "xy").unwrap(), b"xy/c/k");
        assert_eq!(rebase(b"ab/", "ab", "xy").unwrap(), b"xy/");
        assert_eq!(rebase(b"abc/", "ab", "xy"), None);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_shapes_round_trip() {
        let key = redis_session("app", "ab-1");
        assert_eq!(key, "{app:ab-1}");
        assert_eq!(redis_parse_session("app", key.as_bytes()), Some("ab-1"));
        assert_eq!(redis_parse_session("ap", key.as_bytes()), None);
        assert_eq!(redis_parse_session("app", b"{app:a b}"), None);
        assert_eq!(redis_parse_session("app", b"app:ab"), None);
        assert_eq!(redis_session_pattern("app"), "{app:*}");
        assert_eq!(redis_field(None, "x/y"), b"/x/y");
        assert_eq!(redis_field(Some("cart"), "k"), b"cart/k");
        let prefix = redis_scope_prefix(Some("cart"));
        assert_eq!(key_in_scope(b"cart/k", &prefix), Some("k"));
        assert_eq!(key_in_scope(b"/k", &prefix), None);
        assert_eq!(
            key_in_scope(REDIS_META_FIELD, &redis_scope_prefix(None)),
            None
        );
        assert_eq!(redis_parse_field(REDIS_PRINCIPAL_FIELD), None);
        assert_eq!(redis_parse_field(REDIS_COVERED_FIELD), None);
        let p = redis_principal("app", "ada");
        assert_eq!(p, "{app/p:ada}");
        assert_eq!(redis_parse_session("app", p.as_bytes()), None);
        let m = redis_principal_member("ab-1", 0xfeed);
        assert_eq!(m, "ab-1:000000000000feed");
        assert_eq!(
            redis_parse_principal_member(m.as_bytes()),
            Some(("ab-1", 0xfeed))
        );
        for bad in [
            &b"ab"[..],
            b"ab:12",
            b"a b:000000000000feed",
            b":000000000000feed",
        ] {
            assert_eq!(redis_parse_principal_member(bad), None, "{bad:?}");
        }
    }
}

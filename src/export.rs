//! The export format: building [`ExportedSession`] and [`ExportedScope`]
//! values, reading the stored bytes they hold, and (with the cargo feature
//! `serde`) their JSON Lines shape.
//!
//! With `serde`, one session serializes as one object:
//!
//! ```text
//! {"v":1,"id":"…","created_us":…,"last_access_us":…,"idle_timeout_us":1800000000,
//!  "absolute_deadline_us":null,"scopes":[{"component":null,"values":{"user":"A2FkYQ=="}}]}
//! ```
//!
//! A session with a principal also has `"principal":"<name>"` (absent
//! otherwise, and read as none when absent).
//!
//! Every time is in microseconds since the Unix epoch and every duration in
//! microseconds, the units the store keeps, so a session exported and
//! imported again is stored exactly as it was. Every value is the standard
//! base64 of its stored bytes. Unknown fields, another format version, bad
//! base64 and a scope listed twice are refused.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::{Error, Result};
use crate::meta::Meta;
use crate::{clock, validate};

/// What [`Store::import_session`](crate::Store::import_session) does with a live session under the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportMode {
    /// Refuse it with [`Error::AlreadyExists`]; an expired one is replaced.
    Create,
    /// Replace it: every key of the old session is deleted in the same batch.
    Replace,
}

/// One session as stored: its timestamps and every scope's raw value bytes.
/// [`Store::export_session`](crate::Store::export_session) makes one and [`Store::import_session`](crate::Store::import_session) writes
/// one back, exactly. Build one with [`ExportedSession::new`]; with the cargo
/// feature `serde` it is also `Serialize` and `Deserialize`, in the JSON Lines
/// shape of `sessionctl export`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportedSession {
    /// The session id.
    pub id: String,
    /// When it was created.
    pub created: SystemTime,
    /// Its last access.
    pub last_access: SystemTime,
    /// Its idle timeout; `None` for none.
    pub idle_timeout: Option<Duration>,
    /// Its absolute deadline; `None` for none.
    pub absolute_deadline: Option<SystemTime>,
    /// Its scopes that hold keys: the global one (`None`) first, then components in order.
    pub scopes: Vec<ExportedScope>,
    /// The principal it belongs to ([`Store::set_principal`](crate::Store::set_principal)); `None` for none.
    pub principal: Option<String>,
}

/// One scope of an [`ExportedSession`]. Build one with [`ExportedScope::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportedScope {
    /// The component; `None` for the global scope.
    pub component: Option<String>,
    /// Each key's stored (encoded) bytes.
    pub values: BTreeMap<String, Vec<u8>>,
}

impl ExportedSession {
    /// Checks the id, every component and every key against the input rules,
    /// and every value against `max_value_size`: what
    /// [`Store::import_session`](crate::Store::import_session) checks before it writes anything.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::InvalidComponent`], [`Error::InvalidKey`]
    /// or [`Error::ValueTooLarge`], for the first bad item.
    pub fn validate(&self, max_value_size: usize) -> Result<()> {
        validate::sid(&self.id)?;
        if let Some(name) = &self.principal {
            validate::key(name)?;
        }
        for scope in &self.scopes {
            validate::scope(scope.component.as_deref())?;
            for (key, value) in &scope.values {
                validate::key(key)?;
                if value.len() > max_value_size {
                    return Err(Error::ValueTooLarge {
                        key: key.clone(),
                        size: value.len(),
                        max: max_value_size,
                    });
                }
            }
        }
        Ok(())
    }

    /// When the session expires; `None` if never.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.meta(0).deadline().map(clock::from_micros)
    }

    /// The export of session `sid` whose record is `meta`, with `scopes`:
    /// the inverse of [`meta`](Self::meta), for every store's export.
    pub(crate) fn from_meta(
        sid: &str,
        meta: &Meta,
        scopes: Vec<ExportedScope>,
        principal: Option<String>,
    ) -> Self {
        ExportedSession {
            id: sid.to_owned(),
            created: clock::from_micros(meta.created),
            last_access: clock::from_micros(meta.last_access),
            idle_timeout: meta.idle.map(Duration::from_micros),
            absolute_deadline: meta.absolute_deadline.map(clock::from_micros),
            scopes,
            principal,
        }
    }

    pub(crate) fn meta(&self, incarnation: u64) -> Meta {
        Meta {
            created: clock::micros(self.created),
            last_access: clock::micros(self.last_access),
            idle: self.idle_timeout.map(clock::duration_micros),
            absolute_deadline: self.absolute_deadline.map(clock::micros),
            incarnation,
        }
    }
}

impl ExportedSession {
    /// A session with these timestamps, no idle timeout, no absolute
    /// deadline and no scopes. Add them with [`with_idle_timeout`],
    /// [`with_absolute_deadline`] and [`with_scope`].
    ///
    /// Times are kept to the microsecond, as the store keeps them.
    ///
    /// [`with_idle_timeout`]: ExportedSession::with_idle_timeout
    /// [`with_absolute_deadline`]: ExportedSession::with_absolute_deadline
    /// [`with_scope`]: ExportedSession::with_scope
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use sessionstore::{ExportedScope, ExportedSession, Store};
    ///
    /// let now = SystemTime::now();
    /// let session = ExportedSession::new("visitor-1", now, now)
    ///     .with_idle_timeout(Some(Duration::from_secs(1800)))
    ///     .with_scope(ExportedScope::new(None).with_value("user", vec![3, b'a', b'd', b'a']));
    /// let store = Store::temporary()?;
    /// store.import_session(&session, sessionstore::ImportMode::Create)?;
    /// let global = store.get("visitor-1", None)?.expect("live");
    /// assert_eq!(global.get::<String>("user")?.as_deref(), Some("ada"));
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn new(id: impl Into<String>, created: SystemTime, last_access: SystemTime) -> Self {
        ExportedSession {
            id: id.into(),
            created,
            last_access,
            idle_timeout: None,
            absolute_deadline: None,
            principal: None,
            scopes: Vec::new(),
        }
    }

    /// Sets the idle timeout; `None` for none.
    #[must_use]
    pub fn with_idle_timeout(mut self, idle_timeout: Option<Duration>) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets the absolute deadline; `None` for none.
    #[must_use]
    pub fn with_absolute_deadline(mut self, deadline: Option<SystemTime>) -> Self {
        self.absolute_deadline = deadline;
        self
    }

    /// Adds a scope after the ones already there. The store writes the
    /// scopes in key order whatever their order here.
    #[must_use]
    pub fn with_scope(mut self, scope: ExportedScope) -> Self {
        self.scopes.push(scope);
        self
    }

    /// Sets the principal the session belongs to (see
    /// [`Store::set_principal`](crate::Store::set_principal)). Default: none.
    #[must_use]
    pub fn with_principal(mut self, principal: Option<String>) -> Self {
        self.principal = principal;
        self
    }
}

impl ExportedScope {
    /// An empty scope of `component`; `None` for the global scope.
    pub fn new(component: Option<String>) -> Self {
        ExportedScope {
            component,
            values: BTreeMap::new(),
        }
    }

    /// Adds a key with its stored (encoded) bytes, replacing any bytes the
    /// key had.
    #[must_use]
    pub fn with_value(mut self, key: impl Into<String>, bytes: Vec<u8>) -> Self {
        self.values.insert(key.into(), bytes);
        self
    }

    /// Decodes the stored bytes of `key` as a `T`, the way
    /// [`Session::get`](crate::Session::get) does; `None` if the scope has no
    /// such key.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](crate::Error::Decode) if the bytes are not a `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sessionstore::ExportedScope;
    ///
    /// // A string is stored as its length, then its UTF-8 bytes.
    /// let scope = ExportedScope::new(None).with_value("user", vec![3, b'a', b'd', b'a']);
    /// assert_eq!(scope.get::<String>("user")?.as_deref(), Some("ada"));
    /// assert!(scope.get::<String>("other")?.is_none());
    /// assert!(scope.get::<bool>("user").is_err());
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.values
            .get(key)
            .map(|bytes| codec::decode_value(|| format!("the value of key {key:?}"), bytes))
            .transpose()
    }
}

#[cfg(feature = "serde")]
mod json {
    //! The JSON Lines shape, through two private record types.

    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{ExportedScope, ExportedSession};
    use crate::clock;

    /// The format version written and read.
    const VERSION: u32 = 1;

    #[derive(Serialize)]
    struct RecordOut<'a> {
        v: u32,
        id: &'a str,
        created_us: u64,
        last_access_us: u64,
        idle_timeout_us: Option<u64>,
        absolute_deadline_us: Option<u64>,
        scopes: Vec<ScopeOut<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        principal: Option<&'a str>,
    }

    #[derive(Serialize)]
    struct ScopeOut<'a> {
        component: Option<&'a str>,
        values: BTreeMap<&'a str, String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RecordIn {
        v: u32,
        id: String,
        created_us: u64,
        last_access_us: u64,
        idle_timeout_us: Option<u64>,
        absolute_deadline_us: Option<u64>,
        scopes: Vec<ScopeIn>,
        #[serde(default)]
        principal: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ScopeIn {
        component: Option<String>,
        values: BTreeMap<String, String>,
    }

    impl Serialize for ExportedSession {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            RecordOut {
                v: VERSION,
                id: &self.id,
                created_us: clock::micros(self.created),
                last_access_us: clock::micros(self.last_access),
                idle_timeout_us: self.idle_timeout.map(clock::duration_micros),
                absolute_deadline_us: self.absolute_deadline.map(clock::micros),
                scopes: self.scopes.iter().map(ScopeOut::of).collect(),
                principal: self.principal.as_deref(),
            }
            .serialize(serializer)
        }
    }

    impl<'a> ScopeOut<'a> {
        fn of(scope: &'a ExportedScope) -> Self {
            ScopeOut {
                component: scope.component.as_deref(),
                values: scope
                    .values
                    .iter()
                    .map(|(k, v)| (k.as_str(), BASE64.encode(v)))
                    .collect(),
            }
        }
    }

    impl Serialize for ExportedScope {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            ScopeOut::of(self).serialize(serializer)
        }
    }

    impl<'de> Deserialize<'de> for ExportedSession {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let r = RecordIn::deserialize(deserializer)?;
            if r.v != VERSION {
                return Err(D::Error::custom(format!(
                    "format version {} is not supported; this build reads version {VERSION}",
                    r.v
                )));
            }
            let mut seen = BTreeSet::new();
            let mut scopes = Vec::with_capacity(r.scopes.len());
            for scope in r.scopes {
                if !seen.insert(scope.component.clone()) {
                    return Err(D::Error::custom(match &scope.component {
                        Some(c) => format!("the scope of component {c:?} is listed twice"),
                        None => "the global scope is listed twice".to_owned(),
                    }));
                }
                scopes.push(scope.into_scope().map_err(D::Error::custom)?);
            }
            Ok(ExportedSession {
                id: r.id,
                created: clock::from_micros(r.created_us),
                last_access: clock::from_micros(r.last_access_us),
                idle_timeout: r.idle_timeout_us.map(Duration::from_micros),
                absolute_deadline: r.absolute_deadline_us.map(clock::from_micros),
                scopes,
                principal: r.principal,
            })
        }
    }

    impl ScopeIn {
        fn into_scope(self) -> Result<ExportedScope, String> {
            let mut values = BTreeMap::new();
            for (key, b64) in self.values {
                let bytes = BASE64
                    .decode(b64.as_bytes())
                    .map_err(|e| format!("the value of key {key:?} is not valid base64: {e}"))?;
                values.insert(key, bytes);
            }
            Ok(ExportedScope {
                component: self.component,
                values,
            })
        }
    }

    impl<'de> Deserialize<'de> for ExportedScope {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            ScopeIn::deserialize(deserializer)?
                .into_scope()
                .map_err(D::Error::custom)
        }
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::{ExportedScope, ExportedSession};

    fn alice() -> ExportedSession {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_001);
        ExportedSession::new("alice", t, t + Duration::from_micros(5))
            .with_idle_timeout(Some(Duration::from_secs(1800)))
            .with_scope(ExportedScope::new(None).with_value("user", b"\x03ada".to_vec()))
            .with_scope(ExportedScope::new(Some("cart".into())).with_value("n", vec![7]))
    }

    #[test]
    fn the_json_shape_is_the_one_sessionctl_has_always_written() {
        let line = serde_json::to_string(&alice()).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"id":"alice","created_us":1700000000000001,"last_access_us":1700000000000006,"idle_timeout_us":1800000000,"absolute_deadline_us":null,"scopes":[{"component":null,"values":{"user":"A2FkYQ=="}},{"component":"cart","values":{"n":"Bw=="}}]}"#
        );
        let back: ExportedSession = serde_json::from_str(&line).unwrap();
        assert_eq!(back, alice());
    }

    #[test]
    fn a_principal_is_written_only_when_there_is_one_and_read_back() {
        let with = alice().with_principal(Some("ada".into()));
        let line = serde_json::to_string(&with).unwrap();
        assert!(line.ends_with(r#","principal":"ada"}"#), "{line}");
        let back: ExportedSession = serde_json::from_str(&line).unwrap();
        assert_eq!(back, with);
        let line = serde_json::to_string(&alice()).unwrap();
        assert!(!line.contains("principal"), "{line}");
    }

    #[test]
    fn lines_no_export_writes_are_refused() {
        let line = serde_json::to_string(&alice()).unwrap();
        let cases = [
            (line.replace(r#""v":1"#, r#""v":2"#), "format version 2"),
            (line.replace(r#""v":1"#, r#""v":1,"x":0"#), "unknown field"),
            (line.replace("Bw==", "!!"), "not valid base64"),
            (
                line.replace(r#""component":"cart""#, r#""component":null"#),
                "global scope is listed twice",
            ),
        ];
        for (text, expected) in cases {
            let err = serde_json::from_str::<ExportedSession>(&text).unwrap_err();
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
    }
}

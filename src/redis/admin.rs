//! Whole sessions in and out of a Redis store, for operators and
//! `sessionctl`: export, import, and the listing of expired sessions whose
//! keys Redis has not dropped yet.

use std::collections::BTreeMap;

use crate::codec;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::export::{ExportedScope, ExportedSession, ImportMode};
use crate::keys;
use crate::meta::fresh_incarnation;
use crate::redis::scripts;
use crate::redis::store::RedisStore;
use crate::validate;

/// How many times an import retries after another writer changed the key.
const ATTEMPTS: usize = 64;

impl RedisStore {
    /// The ids of sessions that expired by the store's clock but whose keys
    /// Redis has not dropped yet (their TTL runs a little past the deadline,
    /// or the clock is not Redis's), sorted. Costs what
    /// [`session_ids`](RedisStore::session_ids) costs.
    ///
    /// # Errors
    ///
    /// As [`session_ids`](RedisStore::session_ids).
    pub fn expired_session_ids(&self) -> Result<Vec<String>> {
        let now = self.now();
        let mut expired = Vec::new();
        for sid in self.stored_ids()? {
            if self
                .meta_or_skip(&sid)?
                .is_some_and(|(m, _)| !self.live(&m, now))
            {
                expired.push(sid);
            }
        }
        Ok(expired)
    }

    /// Every stored byte of session `sid`, live or expired but still
    /// stored; `None` if there is no such session. Never writes. The same
    /// shape as [`Store::export_session`](crate::Store::export_session), so
    /// that an export from one store imports into the other.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::Decode`] for a key that is not a
    /// session of this store, and errors naming the server.
    pub fn export_session(&self, sid: &str) -> Result<Option<ExportedSession>> {
        validate::sid(sid)?;
        let Some(read) = self.read_all(sid)? else {
            return Ok(None);
        };
        let mut scopes: BTreeMap<Option<String>, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        let mut principal = None;
        for (field, value) in read.fields {
            if field == keys::REDIS_PRINCIPAL_FIELD {
                principal = keys::valid_principal(&value).map(str::to_owned);
                continue;
            }
            // Fields that are not `<component>/<key>` are not the store's: left out.
            if let Some((component, key)) = keys::redis_parse_field(&field) {
                scopes
                    .entry(component.map(str::to_owned))
                    .or_default()
                    .insert(key.to_owned(), value);
            }
        }
        let meta = read.meta;
        let scopes = scopes
            .into_iter()
            .map(|(component, values)| ExportedScope { component, values })
            .collect();
        Ok(Some(ExportedSession::from_meta(
            sid, &meta, scopes, principal,
        )))
    }

    /// Writes an exported session, in one atomic script on its key, with a
    /// TTL from its deadline as every write has. A live session under the
    /// same id is refused with [`ImportMode::Create`]; with
    /// [`ImportMode::Replace`] the old key is replaced whole. An expired one
    /// is replaced either way.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::InvalidComponent`], [`Error::InvalidKey`]
    /// and [`Error::ValueTooLarge`] for bad contents (nothing is written),
    /// [`Error::AlreadyExists`], [`Error::Decode`] for a key under that id
    /// that is not a session of this store (never overwritten), and errors
    /// naming the server.
    pub fn import_session(&self, session: &ExportedSession, mode: ImportMode) -> Result<()> {
        session.validate(self.max_value_size())?;
        let replace = mode == ImportMode::Replace;
        let sid = session.id.as_str();
        let key = self.key(sid);
        let meta = session.meta(fresh_incarnation()?);
        let bytes = codec::encode_meta(&meta);
        let _guard = self.inner.locks.write(sid);
        // The index first: a failure from here on leaves a stale member.
        if let Some(name) = &session.principal {
            self.index(name.as_bytes(), sid, &meta, self.now())?;
        }
        let token = self.op_token();
        for _ in 0..ATTEMPTS {
            let now = self.now();
            let (expected, ended, stale) = match self.read_record(sid)? {
                Some((old, _)) if !replace && old.is_live(now) => {
                    return Err(Error::AlreadyExists { id: sid.to_owned() });
                }
                Some((old, token)) => {
                    let sid = sid.to_owned();
                    let ended = if old.is_live(now) {
                        Event::Destroyed { sid }
                    } else {
                        Event::Expired { sid }
                    };
                    // The old session's index member, removed once it is replaced.
                    let stale = (token.principal, old.incarnation);
                    (token.meta, Some(ended), Some(stale))
                }
                None => (Vec::new(), None, None),
            };
            let ttl = Self::ttl(&meta, now);
            let status: i64 = self.write("import_session", sid, "importing a session", |c| {
                scripts::eval(c, &scripts::PUT, &key, |cmd| {
                    cmd.arg(&expected).arg(&bytes).arg(&ttl).arg(&token[..]);
                    for scope in &session.scopes {
                        for (k, v) in &scope.values {
                            cmd.arg(keys::redis_field(scope.component.as_deref(), k))
                                .arg(v);
                        }
                    }
                    if let Some(name) = &session.principal {
                        cmd.arg(keys::REDIS_PRINCIPAL_FIELD).arg(name);
                    }
                })
            })?;
            match status {
                scripts::WRITTEN => {
                    self.wrote();
                    if let Some(ended) = ended {
                        self.inner.events.send(ended);
                    }
                    self.inner.events.send(Event::Created {
                        sid: sid.to_owned(),
                    });
                    if let Some(name) = &session.principal {
                        // Again: a read that found the member before the
                        // key existed took it for a dead one and pruned it.
                        self.index(name.as_bytes(), sid, &meta, now)?;
                    }
                    if let Some((name, incarnation)) = &stale {
                        self.unindex(name, sid, *incarnation)?;
                    }
                    return Ok(());
                }
                scripts::FOREIGN => return Err(self.foreign(sid)),
                // Someone wrote the key between the read and the script: again.
                _ => {}
            }
        }
        Err(Error::storage(
            format!("importing session {sid:?}"),
            format!("the key changed under {ATTEMPTS} attempts in a row"),
        ))
    }
}

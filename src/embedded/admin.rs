//! Operator support: listing session ids, exporting and importing whole
//! sessions as raw stored bytes.

use std::collections::{BTreeMap, VecDeque};

use crate::embedded::store::Store;
use crate::embedded::write::WriteSet;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::export::{ExportedScope, ExportedSession, ImportMode};
use crate::keys::{self, Parsed};
use crate::validate;

/// Index entries read per step of a [`SessionIds`] iterator.
const CHUNK: usize = 256;

/// An iterator over session ids, in deadline order, read from the expiry
/// index a chunk at a time. Made by [`Store::session_ids`] and [`Store::expired_session_ids`].
pub struct SessionIds<'a> {
    store: &'a Store,
    next: Vec<u8>,
    end: Vec<u8>,
    buf: VecDeque<String>,
    done: bool,
}

impl std::fmt::Debug for SessionIds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionIds")
            .field("buffered", &self.buf.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Iterator for SessionIds<'_> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        if self.buf.is_empty() && !self.done {
            let chunk = match self
                .store
                .core()
                .scan_range(&self.next, Some(&self.end), CHUNK)
            {
                Ok(c) => c,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            self.done = chunk.len() < CHUNK;
            if let Some((last, _)) = chunk.last() {
                self.next = last.clone();
                self.next.push(0);
            }
            self.buf
                .extend(chunk.iter().filter_map(|(k, _)| match keys::parse(k) {
                    Parsed::Index { sid, .. } => Some(sid.to_owned()),
                    _ => None,
                }));
        }
        self.buf.pop_front().map(Ok)
    }
}

impl Store {
    /// The ids of live sessions, earliest deadline first.
    pub fn session_ids(&self) -> SessionIds<'_> {
        let now = self.core().now();
        self.ids_between(keys::index_bound(now.saturating_add(1)), keys::index_end())
    }

    /// The ids of sessions that expired but are not reaped yet, earliest deadline first.
    pub fn expired_session_ids(&self) -> SessionIds<'_> {
        let now = self.core().now();
        self.ids_between(
            keys::index_start(),
            keys::index_bound(now.saturating_add(1)),
        )
    }

    fn ids_between(&self, next: Vec<u8>, end: Vec<u8>) -> SessionIds<'_> {
        SessionIds {
            store: self,
            next,
            end,
            buf: VecDeque::new(),
            done: false,
        }
    }

    /// Every stored byte of session `sid`, live or expired but not yet
    /// reaped; `None` if there is no such session. Never writes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::Decode`] for a corrupt metadata record, and storage errors.
    pub fn export_session(&self, sid: &str) -> Result<Option<ExportedSession>> {
        validate::sid(sid)?;
        let core = self.core();
        let _guard = core.lock_shared(sid);
        let Some(meta) = core.read_meta(sid)? else {
            return Ok(None);
        };
        let mut scopes: Vec<ExportedScope> = Vec::new();
        let mut principal = None;
        for (key, value) in core.scan_prefix(&keys::session_prefix(sid))? {
            let (component, key) = match keys::parse(&key) {
                Parsed::Data { component, key, .. } => (component, key),
                Parsed::Principal { .. } => {
                    principal = keys::valid_principal(&value).map(str::to_owned);
                    continue;
                }
                _ => continue,
            };
            let component = component.map(str::to_owned);
            match scopes.last_mut() {
                Some(scope) if scope.component == component => {
                    scope.values.insert(key.to_owned(), value);
                }
                _ => scopes.push(ExportedScope {
                    component,
                    values: BTreeMap::from([(key.to_owned(), value)]),
                }),
            }
        }
        Ok(Some(ExportedSession::from_meta(
            sid, &meta, scopes, principal,
        )))
    }

    /// Writes an exported session back, in one atomic batch. A live session
    /// under the same id is refused with [`ImportMode::Create`]; with
    /// [`ImportMode::Replace`], every key of the old one is deleted in the
    /// same batch.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::InvalidComponent`], [`Error::InvalidKey`]
    /// and [`Error::ValueTooLarge`] for bad contents (nothing is written),
    /// [`Error::AlreadyExists`], and storage errors.
    pub fn import_session(&self, session: &ExportedSession, mode: ImportMode) -> Result<()> {
        let replace = mode == ImportMode::Replace;
        let sid = session.id.as_str();
        let core = self.core();
        session.validate(core.max_value_size())?;
        // The principals whose entries the import removes (the replaced
        // session's) and adds: it waits for a `destroy_all_of` or
        // `sessions_of` of any of them.
        let (_guard, _shared) = loop {
            let guard = core.lock(sid);
            let mut names = match core.get(&keys::principal_of(sid))? {
                Some(stored) => core.principal_names(sid, &stored)?,
                None => Vec::new(),
            };
            names.extend(session.principal.clone());
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            match core.try_share_principals(&names) {
                Some(shared) => break (guard, shared),
                None => {
                    drop(guard);
                    core.wait_principals(&names);
                }
            }
        };
        let mut batch = WriteSet::default();
        let now = core.now();
        let mut ended = None;
        let old = match core.read_meta(sid) {
            Ok(old) => old,
            Err(Error::Decode { .. }) if replace => {
                core.delete_index_entries_of(&mut batch, sid)?;
                ended = Some(Event::Destroyed {
                    sid: sid.to_owned(),
                });
                None
            }
            Err(e) => return Err(e),
        };
        if let Some(old) = &old {
            let sid = sid.to_owned();
            ended = Some(if old.is_live(now) {
                Event::Destroyed { sid }
            } else {
                Event::Expired { sid }
            });
        }
        if !replace && old.as_ref().is_some_and(|m| m.is_live(now)) {
            return Err(Error::AlreadyExists { id: sid.to_owned() });
        }
        core.delete_session(&mut batch, sid, old.as_ref())?;
        let meta = session.meta(crate::meta::fresh_incarnation()?);
        batch.put_meta(sid, None, &meta);
        if let Some(name) = &session.principal {
            batch.put(keys::principal_of(sid), name.as_bytes().to_vec());
            batch.put(keys::principal_index(name, sid), Vec::new());
        }
        for scope in &session.scopes {
            for (key, value) in &scope.values {
                batch.put(
                    keys::data(sid, scope.component.as_deref(), key),
                    value.clone(),
                );
            }
        }
        core.write(batch)?;
        if let Some(ended) = ended {
            core.events().send(ended);
        }
        core.events().send(Event::Created {
            sid: sid.to_owned(),
        });
        Ok(())
    }
}

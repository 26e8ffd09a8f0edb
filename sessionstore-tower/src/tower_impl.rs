//! `tower_sessions::SessionStore` and `ExpiredDeletion` for [`TowerStore`].

use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use serde_json::Value;
use sessionstore::{Error, Session, SessionStore};
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{
    ExpiredDeletion, Result as TowerResult, SessionStore as TowerSessionStore,
};

use crate::data;
use crate::error::to_tower;
use crate::expiry;
use crate::reap::Reap;
use crate::store::{Inner, TowerStore};

/// How many fresh ids `create` draws when each is taken by a live session.
/// 128 random bits make a second draw already a sign of a broken random source.
const CREATE_ATTEMPTS: usize = 8;

#[async_trait]
impl<S: SessionStore + Send + Sync + 'static> TowerSessionStore for TowerStore<S> {
    async fn create(&self, record: &mut Record) -> TowerResult<()> {
        let first = record.id;
        let data = record.data.clone();
        let left = expiry::time_left(record.expiry_date);
        let id = self
            .run(move |inner| {
                let mut id = first;
                let mut attempt = 1;
                let mut scope = loop {
                    match inner.store.create_new_session(&id.to_string()) {
                        Ok(scope) => break scope,
                        Err(Error::AlreadyExists { .. }) if attempt < CREATE_ATTEMPTS => {
                            // A live session has this id: never overwrite it, draw another.
                            id = Id::default();
                            attempt += 1;
                        }
                        Err(e) => return Err(to_tower(e)),
                    }
                };
                let sid = id.to_string();
                let target = deadline(inner, left);
                let filled = data::apply(&mut scope, &data).and_then(|_| {
                    if scope.is_empty() {
                        Ok(())
                    } else {
                        inner.store.save(&mut scope)
                    }
                });
                if let Err(e) = filled {
                    // Bad data or a failed write: leave no empty session behind.
                    if let Err(d) = inner.store.destroy(&sid) {
                        log::warn!("destroying session {sid} after a failed create: {d}");
                    }
                    return Err(to_tower(e));
                }
                set_deadline(inner, &sid, target)?;
                Ok(id)
            })
            .await?;
        record.id = id;
        Ok(())
    }

    async fn save(&self, record: &Record) -> TowerResult<()> {
        let task = tokio::task::try_id();
        let id = record.id;
        let data = record.data.clone();
        let left = expiry::time_left(record.expiry_date);
        self.run(move |inner| {
            let sid = id.to_string();
            let base = inner.bases.take(task, id.0);
            let target = deadline(inner, left);
            save_data(inner, &sid, base, &data)?;
            set_deadline(inner, &sid, target)
        })
        .await
    }

    async fn load(&self, session_id: &Id) -> TowerResult<Option<Record>> {
        let task = tokio::task::try_id();
        let id = *session_id;
        self.run(move |inner| {
            let sid = id.to_string();
            let Some(scope) = inner.store.get(&sid, None).map_err(to_tower)? else {
                return Ok(None);
            };
            let data = data::read_scope(&scope).map_err(to_tower)?;
            let Some(info) = inner.store.info(&sid).map_err(to_tower)? else {
                return Ok(None); // destroyed or expired since the read
            };
            let expiry_date = expiry::expiry_date(info.deadline, inner.clock.now());
            inner.bases.keep(task, id.0, scope);
            Ok(Some(Record {
                id,
                data,
                expiry_date,
            }))
        })
        .await
    }

    async fn delete(&self, session_id: &Id) -> TowerResult<()> {
        let task = tokio::task::try_id();
        let id = *session_id;
        self.run(move |inner| {
            drop(inner.bases.take(task, id.0));
            inner.store.destroy(&id.to_string()).map_err(to_tower)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl<S: SessionStore + Reap + Send + Sync + 'static> ExpiredDeletion for TowerStore<S> {
    async fn delete_expired(&self) -> TowerResult<()> {
        self.blocking(|store| store.reap().map(drop)).await
    }
}

/// The store-clock deadline that leaves `left` from now.
fn deadline<S>(inner: &Inner<S>, left: std::time::Duration) -> SystemTime {
    let now = inner.clock.now();
    now.checked_add(left).unwrap_or(now + expiry::TOLERANCE)
}

/// Writes `data` into the global scope of `sid` as one save of only the keys
/// that changed: against `base` (what this request loaded) if there is one,
/// else against the stored scope. A session that is no longer live is not
/// brought back: nothing is written.
fn save_data<S: SessionStore>(
    inner: &Inner<S>,
    sid: &str,
    base: Option<Session>,
    data: &HashMap<String, Value>,
) -> TowerResult<()> {
    let scope = match base {
        Some(scope) => Some(scope),
        None => inner.store.get(sid, None).map_err(to_tower)?,
    };
    let Some(mut scope) = scope else {
        log::debug!("save of session {sid}, which is not live: nothing written");
        return Ok(());
    };
    data::apply(&mut scope, data).map_err(to_tower)?;
    match inner.store.save(&mut scope) {
        Ok(()) => Ok(()),
        Err(Error::NotFound { .. }) => {
            log::debug!("session {sid} ended since it was loaded: its save writes nothing");
            Ok(())
        }
        Err(e) => Err(to_tower(e)),
    }
}

/// Moves the deadline of `sid` to `target` unless it is within
/// [`expiry::TOLERANCE`] of it already, by setting its idle timeout.
fn set_deadline<S: SessionStore>(
    inner: &Inner<S>,
    sid: &str,
    target: SystemTime,
) -> TowerResult<()> {
    let Some(info) = inner.store.info(sid).map_err(to_tower)? else {
        return Ok(());
    };
    // The idle deadline, not `info.deadline`: an absolute timeout of the
    // store may cap the latter, and no idle timeout can move that.
    let idle_deadline = info
        .idle_timeout
        .and_then(|idle| info.last_access.checked_add(idle));
    if !expiry::is_off(idle_deadline, target) {
        return Ok(());
    }
    let idle = expiry::idle_for(target, info.last_access);
    match inner.store.set_idle_timeout(sid, Some(idle)) {
        Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(to_tower(e)),
    }
}

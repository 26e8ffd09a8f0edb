//! `update`: read a scope, change it, and save it only if nobody wrote it
//! meanwhile, retrying on conflict. One loop for every store.

use crate::error::{Error, Result};
use crate::session::Session;
use crate::session_store::SessionStore;

/// Reads the scope `component` of `sid`, runs `change` on it and saves it
/// with `save_if_unchanged`; on [`Error::Conflict`] reads again and runs
/// `change` again, at most `attempts` times in all.
pub(crate) fn update<S, T>(
    store: &S,
    attempts: u32,
    sid: &str,
    component: Option<&str>,
    mut change: impl FnMut(&mut Session) -> Result<T>,
) -> Result<Option<T>>
where
    S: SessionStore + ?Sized,
{
    let mut last = None;
    for _ in 0..attempts.max(1) {
        let Some(mut session) = store.get(sid, component)? else {
            return Ok(None);
        };
        let value = change(&mut session)?;
        match store.save_if_unchanged(&mut session) {
            Ok(()) => return Ok(Some(value)),
            Err(e @ Error::Conflict { .. }) => last = Some(e),
            // Destroyed, expired or regenerated between the read and the save.
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Conflict {
        sid: sid.to_owned(),
        component: component.map(str::to_owned),
    }))
}

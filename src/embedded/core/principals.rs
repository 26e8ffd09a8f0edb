//! The principal index's share of the write path: which index entries a
//! session has, found from its principal record or, for damage, by key.

use super::Core;
use crate::embedded::write::WriteSet;
use crate::error::Result;
use crate::keys::{self, Parsed};

impl Core {
    /// The names whose index lists session `sid`, whose principal record
    /// holds `stored`: the name it holds; or, for a record that is not a
    /// valid name (damage), every name with an entry of `sid`, found by its
    /// key, walking the whole principal index (only damage takes this path;
    /// `verify` reports the damage). So no entry outlives its session,
    /// whatever the record holds.
    pub fn principal_names(&self, sid: &str, stored: &[u8]) -> Result<Vec<String>> {
        if let Some(name) = keys::valid_principal(stored) {
            return Ok(vec![name.to_owned()]);
        }
        log::warn!(
            "sessionstore: session {sid:?} has an unreadable principal record; finding its index entries by key"
        );
        let mut names = Vec::new();
        self.walk(
            &keys::principal_index_start(),
            Some(&keys::principal_index_end()),
            1024,
            &|| true,
            &mut |key, _| {
                if let Parsed::PrincipalIndex { name, sid: s } = keys::parse(key)
                    && s == sid
                {
                    names.push(name.to_owned());
                }
            },
        )?;
        Ok(names)
    }

    /// Adds to `set` the deletion of the index entries of session `sid`,
    /// whose principal record holds `stored` (see `principal_names`). Reads
    /// before it adds: on an error, `set` is unchanged.
    pub fn unindex(&self, set: &mut WriteSet, sid: &str, stored: &[u8]) -> Result<()> {
        for name in self.principal_names(sid, stored)? {
            set.delete(keys::principal_index(&name, sid));
        }
        Ok(())
    }

    /// Whether session `sid`, listed in the index of `name`, belongs to it:
    /// its principal record names it, or is unreadable (damage: the entry is
    /// then the only word on it, and "log out everywhere" errs on the side of
    /// ending it). An entry whose session has no record, or one naming
    /// another principal, is stale (damage, or left by a version that removed
    /// entries through the record): it claims nothing, and `destroy_all_of`
    /// removes it by its key.
    pub fn belongs(&self, sid: &str, name: &str) -> Result<bool> {
        Ok(match self.get(&keys::principal_of(sid))? {
            Some(stored) => keys::valid_principal(&stored).is_none_or(|held| held == name),
            None => false,
        })
    }
}

//! A consistency check of the whole key space.

use std::collections::{BTreeSet, HashMap};

use crate::codec;
use crate::embedded::store::Store;
use crate::error::Result;
use crate::keys::{self, Parsed};

/// Entries read per scan while walking the key space.
const CHUNK: usize = 1024;

/// What [`Store::verify`] found. An empty problem list means the metadata, the
/// expiry index and the data agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Metadata records (sessions, live or expired but not yet reaped).
    pub sessions: u64,
    /// Data keys.
    pub keys: u64,
    /// Index entries.
    pub index_entries: u64,
    /// Data keys whose session has no metadata record.
    pub orphans: Vec<String>,
    /// Index entries with no metadata record, or one with another deadline.
    pub dangling_index: Vec<String>,
    /// Sessions whose metadata has no index entry at its deadline.
    pub missing_index: Vec<String>,
    /// Metadata records that do not decode, and keys of no known shape.
    pub undecodable: Vec<String>,
    /// Principal index entries.
    pub principal_entries: u64,
    /// Principal index entries with no session, or whose session belongs to
    /// another principal or none (`name → sid`).
    pub dangling_principal: Vec<String>,
    /// Sessions with a principal and no entry for it in the principal index
    /// (`name → sid`).
    pub missing_principal: Vec<String>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.orphans.is_empty()
            && self.dangling_index.is_empty()
            && self.missing_index.is_empty()
            && self.undecodable.is_empty()
            && self.dangling_principal.is_empty()
            && self.missing_principal.is_empty()
    }
}

impl Store {
    /// Walks every stored key and checks that metadata, expiry index and data
    /// agree. It takes no locks: run it on a quiet store, or expect to see
    /// writes that were in flight.
    ///
    /// # Errors
    ///
    /// Storage errors. Problems in the data are reported, not returned as errors.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = sessionstore::Store::temporary()?;
    /// store.create()?;
    /// let report = store.verify()?;
    /// assert!(report.is_ok());
    /// assert_eq!(report.sessions, 1);
    /// # Ok::<(), sessionstore::Error>(())
    /// ```
    pub fn verify(&self) -> Result<Report> {
        let mut report = Report::default();
        // sid -> deadlines of its index entries, removed as metadata claims them.
        let mut index: HashMap<String, Vec<u64>> = HashMap::new();
        let mut current_meta: Option<String> = None;
        // (name, sid) of every principal record, and of every index entry.
        let mut owners: BTreeSet<(String, String)> = BTreeSet::new();
        let mut entries: BTreeSet<(String, String)> = BTreeSet::new();
        self.core().walk(
            &[],
            None,
            CHUNK,
            &|| true,
            &mut |key, value| match keys::parse(key) {
                Parsed::Index { deadline, sid } => {
                    report.index_entries += 1;
                    index.entry(sid.to_owned()).or_default().push(deadline);
                }
                Parsed::Format | Parsed::Clock | Parsed::JournalMark => {}
                Parsed::PrincipalIndex { name, sid } => {
                    report.principal_entries += 1;
                    entries.insert((name.to_owned(), sid.to_owned()));
                }
                Parsed::Principal { sid } => {
                    if current_meta.as_deref() != Some(sid) {
                        report
                            .orphans
                            .push(String::from_utf8_lossy(key).into_owned());
                    } else if let Some(name) = keys::valid_principal(value) {
                        owners.insert((name.to_owned(), sid.to_owned()));
                    } else {
                        report
                            .undecodable
                            .push(format!("the principal record of session {sid:?}"));
                    }
                }
                Parsed::Meta { sid } => {
                    report.sessions += 1;
                    current_meta = Some(sid.to_owned());
                    match codec::decode_meta(sid, value) {
                        Ok(meta) => {
                            let found = index.get_mut(sid).and_then(|ds| {
                                let at = ds.iter().position(|d| *d == meta.index_deadline())?;
                                Some(ds.swap_remove(at))
                            });
                            if found.is_none() {
                                report.missing_index.push(sid.to_owned());
                            }
                        }
                        Err(e) => report.undecodable.push(e.to_string()),
                    }
                }
                Parsed::Data { sid, .. } => {
                    report.keys += 1;
                    if current_meta.as_deref() != Some(sid) {
                        report
                            .orphans
                            .push(String::from_utf8_lossy(key).into_owned());
                    }
                }
                Parsed::Version { sid, .. } => {
                    if current_meta.as_deref() != Some(sid) {
                        report
                            .orphans
                            .push(String::from_utf8_lossy(key).into_owned());
                    } else if codec::decode_version(value).is_none() {
                        report.undecodable.push(format!(
                            "the scope version {:?}: {} bytes, not 8",
                            String::from_utf8_lossy(key),
                            value.len()
                        ));
                    }
                }
                Parsed::Unknown => report.undecodable.push(format!(
                    "a key of no known shape: {:?}",
                    String::from_utf8_lossy(key)
                )),
            },
        )?;
        for (sid, deadlines) in index {
            for d in deadlines {
                report.dangling_index.push(format!("{sid} at {d}"));
            }
        }
        report.dangling_index.sort();
        for (name, sid) in owners.difference(&entries) {
            report.missing_principal.push(format!("{name} → {sid}"));
        }
        for (name, sid) in entries.difference(&owners) {
            report.dangling_principal.push(format!("{name} → {sid}"));
        }
        Ok(report)
    }
}

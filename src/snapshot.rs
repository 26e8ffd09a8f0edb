//! The values of one scope as a get read them: every name in one string,
//! every value in one buffer, so that reading a scope of n keys allocates
//! three times instead of 2n times, and dropping it frees three blocks.

use std::cmp::Ordering;

/// Key names and values in key order, packed. Read-only once built.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    names: String,
    values: Vec<u8>,
    /// For each entry, in key order: where its name ends in `names` and where
    /// its value ends in `values`. Each starts where the one before ended.
    ends: Vec<(usize, usize)>,
}

impl Snapshot {
    /// Appends an entry. Entries must come in strictly increasing key order,
    /// as the engine's scans give them; [`get`](Snapshot::get) relies on it.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        if self.ends.is_empty() {
            // Room for a typical scope at once, instead of growing through
            // every small capacity: a few hundred bytes per session read.
            self.ends.reserve(8);
            self.names.reserve(8 * 16);
            self.values.reserve(8 * 32);
        }
        self.names.push_str(name);
        self.values.extend_from_slice(value);
        self.ends.push((self.names.len(), self.values.len()));
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The name and value of entry `i`, if there is one.
    fn entry(&self, i: usize) -> Option<(&str, &[u8])> {
        let (name_start, value_start) = match i.checked_sub(1) {
            Some(prev) => *self.ends.get(prev)?,
            None => (0, 0),
        };
        let &(name_end, value_end) = self.ends.get(i)?;
        // Both `get`s succeed: every bound was a length after a push, and a
        // `push_str` ends on a char boundary. They return Option all the same.
        Some((
            self.names.get(name_start..name_end)?,
            self.values.get(value_start..value_end)?,
        ))
    }

    /// The value stored under `name`: a binary search over the entries.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (key, value) = self.entry(mid)?;
            match key.cmp(name) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Some(value),
            }
        }
        None
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        (0..self.len()).filter_map(|i| self.entry(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_entry_and_nothing_else() {
        let mut s = Snapshot::default();
        let names = ["a", "b/c", "zz", "é"];
        for (i, name) in names.iter().enumerate() {
            s.push(name, &vec![u8::try_from(i).unwrap(); i]);
        }
        assert_eq!(s.len(), 4);
        for (i, name) in names.iter().enumerate() {
            assert_eq!(s.get(name), Some(&vec![u8::try_from(i).unwrap(); i][..]));
        }
        for absent in ["", "0", "b", "b/d", "zzz", "ü"] {
            assert_eq!(s.get(absent), None, "{absent:?}");
        }
        let all: Vec<_> = s.iter().collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all[3], ("é", &[3u8, 3, 3][..]));
    }

    #[test]
    fn empty_finds_nothing() {
        let s = Snapshot::default();
        assert_eq!(s.get("a"), None);
        assert_eq!(s.iter().count(), 0);
    }
}

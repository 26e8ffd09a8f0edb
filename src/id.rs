//! Fresh session ids from the operating system's CSPRNG.

use base64::Engine as _;

use crate::error::{Error, Result};

/// Random bytes per id: 128 bits of entropy.
const ID_BYTES: usize = 16;

/// A source of new session ids. The default draws from the OS CSPRNG; tests
/// inside the crate substitute a scripted one to force collisions.
pub(crate) trait IdSource: Send + Sync {
    fn next_id(&self) -> Result<String>;
}

/// Draws 16 bytes from the OS CSPRNG and encodes them as 22 URL-safe base64 characters.
pub(crate) struct OsRandom;

impl IdSource for OsRandom {
    fn next_id(&self) -> Result<String> {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| {
            Error::storage(
                "drawing a session id from the OS random source",
                e.to_string(),
            )
        })?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_valid_distinct_and_22_chars() {
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let id = OsRandom.next_id().unwrap();
            assert_eq!(id.len(), 22);
            crate::validate::sid(&id).unwrap();
            assert!(seen.insert(id));
        }
    }
}

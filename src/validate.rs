//! The input rules for session ids, component names and keys.
//!
//! Every public entry point checks its input here before it reads or writes anything.

use crate::error::{Error, Result};

/// The longest session id, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// The longest component name, in bytes.
pub const MAX_COMPONENT_LEN: usize = 128;
/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Checks a session id: 1–128 bytes of `[A-Za-z0-9_-]`.
pub(crate) fn sid(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        "it is empty"
    } else if id.len() > MAX_ID_LEN {
        "it is longer than 128 bytes"
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        "only A-Z, a-z, 0-9, '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidId {
        id: id.to_owned(),
        reason,
    })
}

/// Checks a component name: 1–128 bytes of UTF-8, with no `/` and no control characters.
pub(crate) fn component(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_COMPONENT_LEN {
        "it is longer than 128 bytes"
    } else if name.contains('/') {
        "it contains '/'"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(Error::InvalidComponent {
        component: name.to_owned(),
        reason,
    })
}

/// Checks a key: 1–1024 bytes of UTF-8 with no control characters (`/` is allowed).
pub(crate) fn key(key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        "it is empty"
    } else if key.len() > MAX_KEY_LEN {
        "it is longer than 1024 bytes"
    } else if key.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(Error::InvalidKey {
        key: key.to_owned(),
        reason,
    })
}

/// Checks an optional component: `None` is the global scope and always valid.
pub(crate) fn scope(component: Option<&str>) -> Result<()> {
    component.map_or(Ok(()), self::component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(sid("aZ09_-").is_ok());
        assert!(sid(&"a".repeat(128)).is_ok());
        for bad in ["", "a b", "a/b", "é", "a.b", "a\0"] {
            assert!(matches!(sid(bad), Err(Error::InvalidId { .. })), "{bad:?}");
        }
        assert!(sid(&"a".repeat(129)).is_err());
    }

    #[test]
    fn components() {
        assert!(component("cart v2.1 ünïcode").is_ok());
        assert!(component(&"c".repeat(128)).is_ok());
        for bad in ["", "a/b", "a\nb", "\u{7f}"] {
            assert!(
                matches!(component(bad), Err(Error::InvalidComponent { .. })),
                "{bad:?}"
            );
        }
        assert!(component(&"c".repeat(129)).is_err());
    }

    #[test]
    fn keys() {
        assert!(key("user/name").is_ok());
        assert!(key(&"k".repeat(1024)).is_ok());
        for bad in ["", "a\tb", "\u{0}"] {
            assert!(matches!(key(bad), Err(Error::InvalidKey { .. })), "{bad:?}");
        }
        assert!(key(&"k".repeat(1025)).is_err());
    }
}

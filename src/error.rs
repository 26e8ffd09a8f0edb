//! The crate's one error type.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The result type of every fallible operation in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed underlying error from the storage engine or the operating system.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in a [`Store`](crate::Store) or a [`Session`](crate::Session).
///
/// Every variant's message names the input or the path it is about, so that a
/// log line is enough to act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A session id broke the id rules: 1–128 bytes of `[A-Za-z0-9_-]`.
    #[error("invalid session id {}: {reason}", Shown(.id))]
    InvalidId {
        /// The rejected id.
        id: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A component name broke the rules: 1–128 bytes of UTF-8, no `/`, no control characters.
    #[error("invalid component name {}: {reason}", Shown(.component))]
    InvalidComponent {
        /// The rejected component name.
        component: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A key broke the rules: 1–1024 bytes of UTF-8 with no control characters.
    #[error("invalid key {}: {reason}", Shown(.key))]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// An encoded value is larger than the store's `max_value_size`.
    #[error("value for key {} is {size} bytes encoded, over the limit of {max} bytes", Shown(.key))]
    ValueTooLarge {
        /// The key the value was set under.
        key: String,
        /// The encoded size in bytes.
        size: usize,
        /// The configured limit in bytes.
        max: usize,
    },
    /// `create_new_session` was given an id that is already live.
    #[error("session {} already exists", Shown(.id))]
    AlreadyExists {
        /// The id that is taken.
        id: String,
    },
    /// The session does not exist: it was never created, was destroyed, expired, or was regenerated.
    #[error("session {} does not exist (never created, destroyed, expired or regenerated)", Shown(.id))]
    NotFound {
        /// The id that was looked up.
        id: String,
    },
    /// `save_if_unchanged` (or `update`, after its last attempt) found the
    /// scope written since the session was read. Nothing was written.
    #[error(
        "the {} of session {} changed since it was read; read it again and retry",
        match .component { Some(c) => format!("component {:?}", c), None => "global scope".to_owned() },
        Shown(.sid)
    )]
    Conflict {
        /// The session id.
        sid: String,
        /// The scope's component; `None` for the global scope.
        component: Option<String>,
    },
    /// Stored bytes could not be decoded as the requested type.
    #[error("cannot decode {what}: {message}")]
    Decode {
        /// What was being decoded: a key, or a session's metadata record.
        what: String,
        /// Why decoding failed.
        message: String,
    },
    /// A value could not be encoded.
    #[error("cannot encode the value for key {}: {message}", Shown(.key))]
    Encode {
        /// The key the value was set under.
        key: String,
        /// Why encoding failed.
        message: String,
    },
    /// The storage engine reported an error.
    #[error("storage error while {context}: {source}")]
    Storage {
        /// What the store was doing.
        context: String,
        /// The engine's error.
        #[source]
        source: BoxError,
    },
    /// The database at this path is already open, in this process or another one.
    #[error("the store at {} is in use by another handle or process; close it first", .path.display())]
    InUse {
        /// The path that is locked.
        path: PathBuf,
    },
    /// The path holds something that is not a sessionstore database.
    #[error("{} is not a sessionstore database: {reason}", .path.display())]
    NotAStore {
        /// The path given to `open`.
        path: PathBuf,
        /// What was found there instead.
        reason: String,
    },
    /// A file system operation on the store's directory failed.
    #[error("I/O error on {}: {source}", .path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A write handed to the commit thread was not done within
    /// `write_timeout`: the engine is stuck. The store refuses all further
    /// writes; log this and restart the process.
    #[error(
        "a write did not complete within {after:?}; the storage engine is stalled and the store refuses further writes, restart the process"
    )]
    Stalled {
        /// The configured write timeout.
        after: Duration,
    },
}

impl Error {
    pub(crate) fn storage(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Storage {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Shows caller input in a message: quoted, escaped, and cut to a readable length.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 80;
        if self.0.len() <= MAX {
            return write!(f, "{:?}", self.0);
        }
        let mut end = MAX;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{:?}… ({} bytes)", &self.0[..end], self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_input() {
        let e = Error::InvalidId {
            id: "a/b".into(),
            reason: "contains '/'",
        };
        assert_eq!(e.to_string(), r#"invalid session id "a/b": contains '/'"#);
    }

    #[test]
    fn long_input_is_cut_on_a_char_boundary() {
        let key = "é".repeat(100);
        let e = Error::InvalidKey {
            key,
            reason: "too long",
        };
        let s = e.to_string();
        assert!(s.contains("(200 bytes)"), "{s}");
        assert!(s.len() < 150, "{s}");
    }
}

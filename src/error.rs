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
    /// A Redis server (or every node a cluster command was routed to) sent
    /// no reply within the store's I/O timeout, on every attempt. Nothing
    /// that writes is behind this error: a write whose reply did not come is
    /// [`Error::Unknown`].
    #[error(
        "{op} on {server}: no reply within the I/O timeout of {after:?} (on each of {attempts} attempts); the server is stopped, overloaded or unreachable"
    )]
    Timeout {
        /// What the store was doing, such as `"reading a session"`.
        op: String,
        /// The server or cluster, as configured.
        server: String,
        /// The I/O timeout of one attempt (`RedisConfig::io_timeout`).
        after: Duration,
        /// How many attempts were made (`RedisConfig::attempts`).
        attempts: u32,
    },
    /// A write was sent to Redis and no reply came (a timeout, or the
    /// connection dropped after the command went out), on every attempt:
    /// it may have been applied, or not. The store never guesses: it does
    /// not answer `Conflict`, `NotFound`, `AlreadyExists` or `false` for it.
    /// Read the session again to learn its state.
    #[error(
        "the outcome of {op} of session {} on {server} is unknown: the command was sent and no reply came ({cause}); read the session again to learn its state",
        Shown(.sid)
    )]
    Unknown {
        /// The call, such as `"update"` or `"destroy"`.
        op: &'static str,
        /// The session the write was about.
        sid: String,
        /// The server or cluster, as configured.
        server: String,
        /// Why no reply came: the timeout or the dropped connection.
        cause: String,
    },
    /// The control socket of a store (`Config::control_socket`) could not be
    /// served, or its server refused or broke off a request.
    #[error("control socket {}: {reason}", .path.display())]
    Control {
        /// The socket's path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A request over a store's control socket failed in the process that
    /// owns the store: the message is that store's error, as it displayed it.
    #[error("{message}")]
    Remote {
        /// The owning process's error message.
        message: String,
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

//! [`Engine`]: which storage engine a store runs on.

use std::fmt;

use crate::error::{Error, Result};

/// The storage engine under the store. Each is compiled in by the cargo
/// feature of the same name; both are by default.
///
/// The engines keep the same keys but in different files: a store is opened
/// with the engine that created it, and opening it with the other one fails
/// with [`Error::NotAStore`](crate::Error::NotAStore) naming the engine found.
/// Moving a store to the other engine is an export, then an import.
///
/// # Examples
///
/// ```
/// use sessionstore::Engine;
///
/// for engine in Engine::ALL {
///     assert_eq!(engine.name().parse::<Engine>()?, *engine);
/// }
/// assert!("lmdb".parse::<Engine>().is_err());
/// # Ok::<(), sessionstore::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Engine {
    /// sled 0.34.7. Cargo feature `sled`; the default engine of a build without redb.
    #[cfg(feature = "sled")]
    #[cfg_attr(not(feature = "redb"), default)]
    Sled,
    /// redb 4.6: one file, `data.redb`, of copy-on-write B-trees. Cargo
    /// feature `redb`. The default for new stores: under create/destroy churn
    /// it kept 3.5–11× the live data on disk where sled kept 24–33×, and
    /// sled stalled in `Periodic` mode (see docs/reliability.md, churn soak).
    #[cfg(feature = "redb")]
    #[default]
    Redb,
}

impl Engine {
    /// The engine's name, as errors, [`FromStr`](std::str::FromStr) and `Stats::engine` spell it.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "sled")]
            Engine::Sled => "sled",
            #[cfg(feature = "redb")]
            Engine::Redb => "redb",
        }
    }

    /// Every engine compiled into this build, the default first.
    pub const ALL: &'static [Engine] = &[
        #[cfg(feature = "redb")]
        Engine::Redb,
        #[cfg(feature = "sled")]
        Engine::Sled,
    ];
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Engine {
    type Err = Error;

    /// Parses an engine's name, `"sled"` or `"redb"`, ignoring ASCII case.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the input, if it is no engine's name
    /// or names an engine this build was compiled without.
    fn from_str(s: &str) -> Result<Self> {
        if let Some(e) = Engine::ALL
            .iter()
            .find(|e| e.name().eq_ignore_ascii_case(s))
        {
            return Ok(*e);
        }
        let known: Vec<&str> = Engine::ALL.iter().map(|e| e.name()).collect();
        let reason = if ["sled", "redb"].iter().any(|n| n.eq_ignore_ascii_case(s)) {
            format!(
                "engine {s:?} is not compiled into this build (enable the cargo feature {:?})",
                s.to_ascii_lowercase()
            )
        } else {
            format!("unknown engine {s:?}")
        };
        Err(Error::InvalidConfig(format!(
            "{reason}; this build has: {}",
            known.join(", ")
        )))
    }
}

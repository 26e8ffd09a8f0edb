//! What a command works on: the embedded store at `--db`, or (cargo feature
//! `redis`) the Redis store at `--redis`.

use sessionstore::{ExportedSession, ImportMode, Result, SessionStore, Store};
#[cfg(feature = "redis")]
use sessionstore::{RedisConfig, RedisStore};

use crate::Fail;
use crate::args::Cli;

/// The store a command works on.
pub enum Target {
    /// A store directory, opened by this process alone.
    Embedded(Store),
    /// A Redis server or cluster, shared with the running applications.
    #[cfg(feature = "redis")]
    Redis {
        /// The store.
        store: RedisStore,
        /// The URLs as given.
        url: String,
        /// The namespace.
        namespace: String,
    },
}

/// An iterator of session ids.
pub type Ids<'a> = Box<dyn Iterator<Item = Result<String>> + 'a>;

/// The namespace when `--namespace` is not given: the library's default.
#[cfg(feature = "redis")]
const DEFAULT_NAMESPACE: &str = "sessionstore";

/// Opens the Redis store `--redis` names, in `--namespace`; `max_value_size`
/// for an import. SCAN runs on every master of a cluster.
#[cfg(feature = "redis")]
pub fn open_redis(cli: &Cli, url: &str, max_value_size: Option<usize>) -> Result<Target, Fail> {
    let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
    let config = if cli.cluster {
        RedisConfig::cluster(nodes)
    } else if let [one] = nodes.as_slice() {
        RedisConfig::new(*one)
    } else {
        return Err(Fail(format!(
            "--redis {url:?} lists several servers; add --cluster if they are the nodes of one Redis Cluster"
        )));
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let mut config = config.namespace(&namespace);
    if let Some(bytes) = max_value_size {
        config = config.max_value_size(bytes);
    }
    Ok(Target::Redis {
        store: config.open()?,
        url: url.to_owned(),
        namespace,
    })
}

/// Without the feature `redis`: says how to get it.
#[cfg(not(feature = "redis"))]
pub fn open_redis(_: &Cli, _: &str, _: Option<usize>) -> Result<Target, Fail> {
    Err(Fail(
        "this sessionctl was built without Redis support; build it with --features redis".into(),
    ))
}

impl Target {
    /// The per-session API.
    pub fn api(&self) -> &dyn SessionStore {
        match self {
            Target::Embedded(s) => s,
            #[cfg(feature = "redis")]
            Target::Redis { store, .. } => store,
        }
    }

    /// The embedded store, for a command only it has.
    #[cfg_attr(
        not(feature = "redis"),
        expect(unused_variables, reason = "only the Redis arm names the command")
    )]
    pub fn embedded(&self, command: &str) -> Result<&Store, Fail> {
        match self {
            Target::Embedded(s) => Ok(s),
            #[cfg(feature = "redis")]
            Target::Redis { .. } => Err(Fail(format!(
                "{command} is for a --db store only: Redis drops expired sessions by their TTLs, and keeps no index to verify"
            ))),
        }
    }

    /// How many sessions are live.
    pub fn live_sessions(&self) -> Result<u64> {
        match self {
            Target::Embedded(s) => Ok(s.stats()?.live_sessions),
            #[cfg(feature = "redis")]
            Target::Redis { store, .. } => Ok(store.stats()?.live_sessions),
        }
    }

    /// The live sessions, earliest deadline first (then by id).
    pub fn live_ids(&self) -> Ids<'_> {
        match self {
            Target::Embedded(s) => Box::new(s.session_ids()),
            #[cfg(feature = "redis")]
            Target::Redis { store, .. } => by_deadline(store, store.session_ids()),
        }
    }

    /// The sessions that expired but are still stored, earliest deadline first.
    pub fn expired_ids(&self) -> Ids<'_> {
        match self {
            Target::Embedded(s) => Box::new(s.expired_session_ids()),
            #[cfg(feature = "redis")]
            Target::Redis { store, .. } => by_deadline(store, store.expired_session_ids()),
        }
    }

    /// Every stored byte of one session, live or expired but still stored.
    pub fn export_session(&self, sid: &str) -> Result<Option<ExportedSession>> {
        match self {
            Target::Embedded(s) => s.export_session(sid),
            #[cfg(feature = "redis")]
            Target::Redis { store, .. } => store.export_session(sid),
        }
    }

    /// Writes one exported session whole.
    pub fn import_session(&self, session: &ExportedSession, mode: ImportMode) -> Result<()> {
        match self {
            Target::Embedded(s) => s.import_session(session, mode),
            #[cfg(feature = "redis")]
            Target::Redis { store, .. } => store.import_session(session, mode),
        }
    }

    /// Makes the writes so far durable: a flush of the embedded store; on
    /// Redis every write was acknowledged already (what that promises is the
    /// server's `appendfsync`).
    pub fn flush(&self) -> Result<()> {
        match self {
            Target::Embedded(s) => s.flush(),
            #[cfg(feature = "redis")]
            Target::Redis { .. } => Ok(()),
        }
    }
}

/// Redis lists ids in no useful order: sorted here as the embedded store's
/// index orders them, by deadline (none last), then id, so that an export
/// from either store of the same sessions is the same file.
#[cfg(feature = "redis")]
fn by_deadline<'a>(store: &'a RedisStore, ids: Result<Vec<String>>) -> Ids<'a> {
    let sorted = ids.and_then(|ids| {
        let mut keyed = Vec::with_capacity(ids.len());
        for id in ids {
            // Gone since it was listed: left out.
            if let Some(s) = store.export_session(&id)? {
                keyed.push((s.deadline().is_none(), s.deadline(), id));
            }
        }
        keyed.sort();
        Ok(keyed.into_iter().map(|(_, _, id)| id).collect::<Vec<_>>())
    });
    match sorted {
        Ok(ids) => Box::new(ids.into_iter().map(Ok)),
        Err(e) => Box::new(std::iter::once(Err(e))),
    }
}

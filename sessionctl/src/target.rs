//! What a command works on: the embedded store at `--db` (opened by this
//! process, or, while the application has it open, that application's
//! control socket), or (cargo feature `redis`) the Redis store at `--redis`.

use std::collections::HashSet;
#[cfg(unix)]
use std::path::PathBuf;

#[cfg(unix)]
use sessionstore::ControlClient;
use sessionstore::{ExportedSession, ImportMode, Report, Result, SessionStore, Stats, Store};
#[cfg(feature = "redis")]
use sessionstore::{RedisConfig, RedisStore};

use crate::Fail;
use crate::args::Cli;

/// The store a command works on.
pub enum Target {
    /// A store directory, opened by this process alone.
    Embedded(Store),
    /// A store directory that the application has open: its control socket.
    #[cfg(unix)]
    Live {
        /// The connection.
        client: std::cell::RefCell<ControlClient>,
        /// The store's directory, as given.
        path: PathBuf,
    },
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
    /// The per-session API of a store this process opened (not of a live one).
    pub fn api(&self) -> Result<&dyn SessionStore, Fail> {
        match self {
            Target::Embedded(s) => Ok(s),
            #[cfg(unix)]
            Target::Live { path, .. } => Err(Fail(format!(
                "the store at {} is in use by the application; this command needs it stopped",
                path.display()
            ))),
            #[cfg(feature = "redis")]
            Target::Redis { store, .. } => Ok(store),
        }
    }

    /// The one line for a command only a --db store has.
    #[cfg(feature = "redis")]
    fn db_only(command: &str) -> Fail {
        Fail(format!(
            "{command} is for a --db store only: Redis drops expired sessions by their TTLs, and keeps no index to verify"
        ))
    }

    /// The store's figures.
    pub fn stats(&self) -> Result<Stats> {
        match self {
            Target::Embedded(s) => s.stats(),
            #[cfg(unix)]
            Target::Live { client, .. } => client.borrow_mut().stats(),
            #[cfg(feature = "redis")]
            Target::Redis { store, .. } => store.stats(),
        }
    }

    /// How many sessions are live.
    pub fn live_sessions(&self) -> Result<u64> {
        Ok(self.stats()?.live_sessions)
    }

    /// The sessions that expired but are still stored, earliest deadline first.
    pub fn expired_ids(&self) -> Ids<'_> {
        match self {
            Target::Embedded(s) => Box::new(s.expired_session_ids()),
            #[cfg(unix)]
            Target::Live { client, .. } => {
                let mut client = client.borrow_mut();
                match client.expired_session_ids() {
                    Ok(ids) => Box::new(ids.collect::<Vec<_>>().into_iter()),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                }
            }
            #[cfg(feature = "redis")]
            Target::Redis { store, .. } => by_deadline(store, store.expired_session_ids()),
        }
    }

    /// Calls `f` with every live (or, with `expired`, expired but still
    /// stored) session, earliest deadline first, until it returns `false`.
    /// The application may write meanwhile: a session saved during the walk
    /// moves to a later deadline and is met again (given once), and one
    /// deleted before it is read is left out.
    pub fn each_session<E: From<sessionstore::Error>>(
        &self,
        expired: bool,
        mut f: impl FnMut(ExportedSession) -> Result<bool, E>,
    ) -> Result<(), E> {
        let mut seen = HashSet::new();
        let mut once = |s: ExportedSession| {
            if seen.insert(s.id.clone()) {
                f(s)
            } else {
                Ok(true)
            }
        };
        #[cfg(unix)]
        if let Target::Live { client, .. } = self {
            let mut client = client.borrow_mut();
            let sessions = if expired {
                client.export_expired()?
            } else {
                client.export()?
            };
            for s in sessions {
                if !once(s?)? {
                    break;
                }
            }
            return Ok(());
        }
        let ids = match self {
            Target::Embedded(s) if expired => Box::new(s.expired_session_ids()) as Ids<'_>,
            Target::Embedded(s) => Box::new(s.session_ids()),
            #[cfg(unix)]
            Target::Live { .. } => Box::new(std::iter::empty()),
            #[cfg(feature = "redis")]
            Target::Redis { store, .. } if expired => {
                by_deadline(store, store.expired_session_ids())
            }
            #[cfg(feature = "redis")]
            Target::Redis { store, .. } => by_deadline(store, store.session_ids()),
        };
        for id in ids {
            if let Some(s) = self.export_session(&id?)?
                && !once(s)?
            {
                break;
            }
        }
        Ok(())
    }

    /// Every stored byte of one session, live or expired but still stored.
    pub fn export_session(&self, sid: &str) -> Result<Option<ExportedSession>> {
        match self {
            Target::Embedded(s) => s.export_session(sid),
            #[cfg(unix)]
            Target::Live { client, .. } => client.borrow_mut().export_session(sid),
            #[cfg(feature = "redis")]
            Target::Redis { store, .. } => store.export_session(sid),
        }
    }

    /// Destroys a session: `Some(true)` if it was live, `Some(false)` if it
    /// had expired but was still stored, `None` if there was none.
    pub fn destroy(&self, sid: &str) -> Result<Option<bool>, Fail> {
        #[cfg(unix)]
        if let Target::Live { client, .. } = self {
            return Ok(client.borrow_mut().destroy(sid)?);
        }
        // This process holds an embedded store's lock, so the session found
        // here is the one deleted; whether it was live is the store's own
        // answer. (On Redis an application may destroy it in between; then
        // it was not live.)
        if self.export_session(sid)?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.api()?.destroy(sid)?))
    }

    /// The live sessions of principal `name`.
    pub fn sessions_of(&self, name: &str) -> Result<Vec<String>, Fail> {
        #[cfg(unix)]
        if let Target::Live { client, .. } = self {
            return Ok(client.borrow_mut().sessions_of(name)?);
        }
        Ok(self.api()?.sessions_of(name)?)
    }

    /// Destroys every session of principal `name`: how many were live.
    pub fn destroy_all_of(&self, name: &str) -> Result<usize, Fail> {
        #[cfg(unix)]
        if let Target::Live { client, .. } = self {
            return Ok(client.borrow_mut().destroy_all_of(name)?);
        }
        Ok(self.api()?.destroy_all_of(name)?)
    }

    /// Deletes every expired session now: how many.
    pub fn reap(&self) -> Result<usize, Fail> {
        match self {
            Target::Embedded(s) => Ok(s.reap_expired()?),
            #[cfg(unix)]
            Target::Live { client, .. } => Ok(client.borrow_mut().reap_expired()?),
            #[cfg(feature = "redis")]
            Target::Redis { .. } => Err(Self::db_only("reap")),
        }
    }

    /// The consistency report.
    pub fn verify(&self) -> Result<Report, Fail> {
        match self {
            Target::Embedded(s) => Ok(s.verify()?),
            #[cfg(unix)]
            Target::Live { client, .. } => Ok(client.borrow_mut().verify()?),
            #[cfg(feature = "redis")]
            Target::Redis { .. } => Err(Self::db_only("verify")),
        }
    }

    /// The store's directory, or the Redis URL.
    pub fn place(&self) -> String {
        match self {
            Target::Embedded(s) => s.path().display().to_string(),
            #[cfg(unix)]
            Target::Live { path, .. } => path.display().to_string(),
            #[cfg(feature = "redis")]
            Target::Redis { url, .. } => url.clone(),
        }
    }

    /// Writes one exported session whole.
    pub fn import_session(&self, session: &ExportedSession, mode: ImportMode) -> Result<(), Fail> {
        match self {
            Target::Embedded(s) => Ok(s.import_session(session, mode)?),
            #[cfg(feature = "redis")]
            Target::Redis { store, .. } => Ok(store.import_session(session, mode)?),
            #[cfg(unix)]
            Target::Live { .. } => self.api().map(|_| ()),
        }
    }

    /// Makes the writes so far durable: a flush of the embedded store; on
    /// Redis every write was acknowledged already (what that promises is the
    /// server's `appendfsync`).
    pub fn flush(&self) -> Result<()> {
        match self {
            Target::Embedded(s) => s.flush(),
            // Every write there was the application's own, with its durability.
            #[cfg(unix)]
            Target::Live { .. } => Ok(()),
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

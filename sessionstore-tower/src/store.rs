//! [`TowerStore`]: the handle, its construction, and the blocking-pool bridge.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sessionstore::{Clock, SessionStore, SystemClock};
use tower_sessions_core::session::Id;
use tower_sessions_core::session_store::{Error as TowerError, Result as TowerResult};

use crate::bases::Bases;
use crate::data;
use crate::error::to_tower;

/// How many times [`TowerStore::update`] runs the store's `update_with`
/// (each with the store's `update_attempts` tries) before a conflict is its error.
pub const UPDATE_ROUNDS: u32 = 16;

/// A sessionstore store as a tower-sessions store: hand it to
/// `SessionManagerLayer::new`. Cheap to clone; clones share the store.
///
/// Every call runs the store's blocking API on tokio's blocking pool
/// (`spawn_blocking`), never on an async worker thread. How records map
/// to sessions is in the crate's README.
///
/// # Examples
///
/// ```
/// use sessionstore::Store;
/// use sessionstore_tower::TowerStore;
/// use tower_sessions_core::{SessionStore as _, session::{Id, Record}};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = TowerStore::new(Store::temporary()?);
/// let mut record = Record {
///     id: Id::default(),
///     data: [("user".to_owned(), serde_json::json!("ada"))].into(),
///     expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
/// };
/// store.create(&mut record).await?;
/// let loaded = store.load(&record.id).await?.expect("live");
/// assert_eq!(loaded.data, record.data);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct TowerStore<S> {
    inner: Arc<Inner<S>>,
}

pub(crate) struct Inner<S> {
    pub(crate) store: S,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) bases: Bases,
}

impl<S> Clone for TowerStore<S> {
    fn clone(&self) -> Self {
        TowerStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> fmt::Debug for TowerStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerStore").finish_non_exhaustive()
    }
}

impl<S: SessionStore + Send + Sync + 'static> TowerStore<S> {
    /// Wraps `store`: an embedded [`Store`](sessionstore::Store), a
    /// `RedisStore`, or anything else that implements the trait.
    #[must_use]
    pub fn new(store: S) -> Self {
        TowerStore {
            inner: Arc::new(Inner {
                store,
                clock: Arc::new(SystemClock),
                bases: Bases::default(),
            }),
        }
    }

    /// The clock the store keeps time by, to turn `expiry_date` into its
    /// deadline and back (see the README). Default: the system clock. Give
    /// it the clock you gave `Config::clock` (or `RedisConfig::clock`).
    #[must_use]
    pub fn with_clock(store: S, clock: Arc<dyn Clock>) -> Self {
        TowerStore {
            inner: Arc::new(Inner {
                store,
                clock,
                bases: Bases::default(),
            }),
        }
    }

    /// The store, for what tower-sessions has no call for: `set_principal`,
    /// `destroy_all_of`, `subscribe`, `info`. Its calls block: run them with
    /// [`blocking`](Self::blocking) from async code.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// Runs `f` with the store on tokio's blocking pool and waits for it.
    ///
    /// # Errors
    ///
    /// `f`'s error, mapped to tower-sessions' kinds with our message kept;
    /// `Backend` if no tokio runtime is running or the task panicked.
    pub async fn blocking<T, F>(&self, f: F) -> TowerResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&S) -> sessionstore::Result<T> + Send + 'static,
    {
        self.run(move |inner| f(&inner.store).map_err(to_tower))
            .await
    }

    /// Reads the value under `key` in the global scope of the live session
    /// `id`, runs `change` on it (`None` if unset) and stores what it
    /// returns, as one atomic read-modify-write: concurrent updates of the
    /// same key never lose one another (the store's `update_with`, which
    /// retries on a conflict, so `change` may run more than once; and when
    /// all of its `update_attempts` lose, up to [`UPDATE_ROUNDS`] times
    /// more, since with many requests at once on a loaded machine they can). Returns
    /// the value stored, or `None` if the session is not live.
    ///
    /// A tower-sessions `Session` that loaded the key before still holds the
    /// old value; it writes it back only if the request changes it there too.
    ///
    /// # Errors
    ///
    /// `Decode` if the stored value is not JSON text of a `T`, `Encode` if
    /// the new one does not encode, and the store's errors, as `Backend`;
    /// among them a conflict when every one of the store's
    /// `update_attempts` lost to a concurrent write in each of
    /// [`UPDATE_ROUNDS`] rounds.
    pub async fn update<T, F>(&self, id: Id, key: &str, mut change: F) -> TowerResult<Option<T>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnMut(Option<T>) -> T + Send + 'static,
    {
        let key = key.to_owned();
        self.blocking(move |store| {
            let sid = id.to_string();
            let mut round = 1;
            loop {
                let mut stored = None;
                let result = store.update_with(&sid, None, &mut |scope| {
                    stored = Some(update_key(scope, &key, &mut change)?);
                    Ok(())
                });
                match result {
                    Ok(live) => return Ok(if live { stored } else { None }),
                    // Every try of this round lost to another writer: each
                    // round has a winner, so go again, a bounded number of times.
                    Err(sessionstore::Error::Conflict { .. }) if round < UPDATE_ROUNDS => {
                        round += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        })
        .await
    }

    /// Runs `f` on the blocking pool with the shared state.
    pub(crate) async fn run<T, F>(&self, f: F) -> TowerResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner<S>) -> TowerResult<T> + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            TowerError::Backend(format!("sessionstore-tower needs a tokio runtime: {e}"))
        })?;
        let inner = Arc::clone(&self.inner);
        runtime
            .spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| {
                TowerError::Backend(format!("a blocking store call did not finish: {e}"))
            })?
    }
}

/// Runs `change` on the value under `key` in `scope` and sets what it
/// returns, as JSON text; returns it.
fn update_key<T, F>(
    scope: &mut sessionstore::Session,
    key: &str,
    change: &mut F,
) -> sessionstore::Result<T>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> T,
{
    let old = match data::read_key(scope, key)? {
        None => None,
        Some(v) => Some(
            serde_json::from_value(v).map_err(|e| sessionstore::Error::Decode {
                what: format!("key {key:?}"),
                message: e.to_string(),
            })?,
        ),
    };
    let new = change(old);
    let value = serde_json::to_value(&new).map_err(|e| sessionstore::Error::Encode {
        key: key.to_owned(),
        message: e.to_string(),
    })?;
    data::write_key(scope, key, &value)?;
    Ok(new)
}

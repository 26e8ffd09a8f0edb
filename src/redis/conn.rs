//! Connections: the `redis` crate's clients pooled by r2d2, with timeouts, and
//! its errors turned into ours, naming the server.

use std::time::Duration;

use redis::ConnectionLike;
use redis::cluster::{ClusterClient, ClusterClientBuilder};

use crate::error::{Error, Result};
use crate::redis::config::{RedisConfig, Target};

/// A pool of connections to one server or to one cluster.
enum Pool {
    Single(r2d2::Pool<redis::Client>),
    Cluster(r2d2::Pool<ClusterClient>),
}

/// The store's connections, shared by its clones.
pub(crate) struct Connections {
    pool: Pool,
    io_timeout: Duration,
    /// The server or cluster, as errors name it.
    target: String,
}

impl Connections {
    /// Builds the pool and checks that the server answers a PING.
    pub fn open(config: &RedisConfig) -> Result<Connections> {
        let target = config.target.to_string();
        let invalid =
            |e: redis::RedisError| Error::InvalidConfig(format!("cannot use {target}: {e}"));
        let pool_error = |e: r2d2::Error| Error::storage(format!("connecting to {target}"), e);
        let pool = match &config.target {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(invalid)?;
                Pool::Single(pool_builder(config).build(client).map_err(pool_error)?)
            }
            Target::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.io_timeout)
                    .build()
                    .map_err(invalid)?;
                Pool::Cluster(pool_builder(config).build(client).map_err(pool_error)?)
            }
        };
        let conns = Connections {
            pool,
            io_timeout: config.io_timeout,
            target: target.clone(),
        };
        conns.with("checking the server", |c| {
            redis::cmd("PING").query::<String>(c).map(drop)
        })?;
        Ok(conns)
    }

    /// The server or cluster, as errors name it.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `f` on a pooled connection. A call that finds its connection
    /// dropped (the server restarted, or a proxy closed it) is run once more
    /// on a fresh one; every step the store sends is a check-and-write, so
    /// running it twice is safe. Any other failure is an error naming the
    /// server and `what` the store was doing.
    pub fn with<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T> {
        match self.once(what, &mut f)? {
            Ok(v) => Ok(v),
            Err(e) if e.is_connection_dropped() => match self.once(what, &mut f)? {
                Ok(v) => Ok(v),
                Err(e) => Err(self.error(what, e)),
            },
            Err(e) => Err(self.error(what, e)),
        }
    }

    /// One try: `Err` if no connection could be had, `Ok(Err)` if the call failed.
    fn once<T>(
        &self,
        what: &str,
        f: &mut impl FnMut(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<redis::RedisResult<T>> {
        let checkout =
            |e: r2d2::Error| Error::storage(format!("{what} on {}: no connection", self.target), e);
        match &self.pool {
            Pool::Single(pool) => {
                let mut conn = pool.get().map_err(checkout)?;
                let timeouts = conn
                    .set_read_timeout(Some(self.io_timeout))
                    .and_then(|()| conn.set_write_timeout(Some(self.io_timeout)));
                if let Err(e) = timeouts {
                    return Ok(Err(e));
                }
                Ok(f(&mut *conn))
            }
            Pool::Cluster(pool) => {
                let mut conn = pool.get().map_err(checkout)?;
                Ok(f(&mut *conn))
            }
        }
    }

    /// A `redis` error as ours, naming the server.
    pub fn error(&self, what: &str, e: redis::RedisError) -> Error {
        Error::storage(format!("{what} on {}", self.target), e)
    }
}

/// The pool settings, for either kind of client.
fn pool_builder<M: r2d2::ManageConnection>(config: &RedisConfig) -> r2d2::Builder<M> {
    r2d2::Pool::builder()
        .max_size(config.pool_size)
        .min_idle(Some(0))
        .connection_timeout(config.connect_timeout)
        // A broken connection is noticed when a call fails on it (see
        // `Connections::with`), not by a PING before every call.
        .test_on_check_out(false)
}

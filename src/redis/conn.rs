//! Connections: the `redis` crate's clients pooled by r2d2, with timeouts, and
//! its errors turned into ours, naming the server.

use std::time::Duration;

use redis::ConnectionLike;
use redis::cluster::{ClusterClient, ClusterClientBuilder};

use crate::error::{Error, Result};
use crate::redis::config::{RETRY_WAIT, RedisConfig, Target};

/// A pool of connections to one server or to one cluster.
enum Pool {
    Single(r2d2::Pool<redis::Client>),
    Cluster(r2d2::Pool<ClusterClient>),
}

/// The store's connections, shared by its clones.
pub(crate) struct Connections {
    pool: Pool,
    /// The pool's size: how many stale connections a restart can leave.
    max_size: u32,
    io_timeout: Duration,
    /// How many times one command is sent at most (`RedisConfig::attempts`).
    attempts: u32,
    /// The server or cluster, as errors name it.
    target: String,
    /// The first URL configured: the credentials and settings for direct
    /// connections to each cluster node (for `scan`).
    seed: redis::ConnectionInfo,
}

impl Connections {
    /// Builds the pool and checks that the server answers a PING.
    pub fn open(config: &RedisConfig) -> Result<Connections> {
        let target = config.target.to_string();
        let seed_url = match &config.target {
            Target::Single(url) => url.as_str(),
            Target::Cluster(nodes) => nodes.first().map_or("", String::as_str),
        };
        let invalid =
            |e: redis::RedisError| Error::InvalidConfig(format!("cannot use {target}: {e}"));
        let pool_error = |e: r2d2::Error| Error::storage(format!("connecting to {target}"), e);
        let pool = match &config.target {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(invalid)?;
                let pool = pool_builder(config)
                    .connection_customizer(Box::new(Timeouts(config.io_timeout)))
                    .build(client)
                    .map_err(pool_error)?;
                Pool::Single(pool)
            }
            Target::Cluster(nodes) => {
                // Every knob of the client's retries set, so that one
                // command is bounded as `RedisConfig::attempts` says: its
                // defaults retry 16 times with a backoff of up to seconds.
                // Its resends are safe: every write is token-idempotent.
                let wait = u64::try_from(RETRY_WAIT.as_millis()).unwrap_or(u64::MAX);
                let client = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.io_timeout)
                    .retries(config.attempts.saturating_sub(1))
                    .min_retry_wait(wait)
                    .max_retry_wait(wait)
                    .build()
                    .map_err(invalid)?;
                Pool::Cluster(pool_builder(config).build(client).map_err(pool_error)?)
            }
        };
        let seed = redis::IntoConnectionInfo::into_connection_info(seed_url).map_err(invalid)?;
        let conns = Connections {
            seed,
            pool,
            max_size: config.pool_size,
            io_timeout: config.io_timeout,
            attempts: config.attempts,
            target: target.clone(),
        };
        conns.with("checking the server", |c| {
            redis::cmd("PING").query::<String>(c).map(drop)
        })?;
        Ok(conns)
    }

    /// Whether the client may send a command again by itself, unseen by
    /// [`with`](Self::with): the cluster client does (on a timeout, a
    /// dropped connection, a redirection), a connection to one server never
    /// does, so there every send but the first of a call is one of
    /// `with`'s resends.
    pub fn resends_itself(&self) -> bool {
        matches!(self.pool, Pool::Cluster(_))
    }

    /// The server or cluster, as errors name it.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `f` on a pooled connection, resending it when its connection
    /// drops (the server restarted, or a proxy closed it) or, on one server,
    /// when its reply does not come in time, up to `attempts` times in all
    /// (plus one per pooled connection a restart may have left stale: those
    /// fail at once). Resending is safe for every command the store sends:
    /// reads, idempotent index updates, and scripts that record an operation
    /// token (see `scripts.rs`). Any other failure is an error naming the
    /// server and `what` the store was doing: [`Error::Timeout`] if no reply
    /// came.
    pub fn with<T>(
        &self,
        what: &str,
        f: impl FnMut(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.run(what, f).map_err(|e| self.error(what, e))
    }

    /// As [`with`](Self::with), for a write of session `sid` by the call
    /// `op`: a failure after which the write may have been applied (no reply
    /// on the last attempt) is [`Error::Unknown`].
    pub fn write<T>(
        &self,
        op: &'static str,
        sid: &str,
        what: &str,
        f: impl FnMut(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.run(what, f).map_err(|e| {
            if lost(&e) {
                Error::Unknown {
                    op,
                    sid: sid.to_owned(),
                    server: self.target.clone(),
                    cause: self.error(what, e).to_string(),
                }
            } else {
                self.error(what, e)
            }
        })
    }

    /// The loop of [`with`](Self::with): `Err` with the last failure.
    fn run<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> std::result::Result<T, Failure> {
        // Every idle connection in the pool may be stale after a restart:
        // each is tried (and, found broken, dropped by the pool) before a
        // fresh one is opened.
        let mut stale = self.max_size;
        let mut attempts = self.attempts;
        loop {
            let e = match self.once(what, &mut f).map_err(Failure::Checkout)? {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            // A cluster connection made its own attempts already.
            let single = matches!(self.pool, Pool::Single(_));
            if e.is_timeout() {
                attempts -= 1;
                if single && attempts > 0 {
                    continue;
                }
            } else if e.is_connection_dropped() {
                if stale > 0 {
                    stale -= 1;
                    continue;
                }
                attempts -= 1;
                if attempts > 0 {
                    continue;
                }
            }
            return Err(Failure::Redis(e));
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
            // Its timeouts were set once, when it connected (`Timeouts`).
            Pool::Single(pool) => {
                let mut conn = pool.get().map_err(checkout)?;
                Ok(f(&mut *conn))
            }
            Pool::Cluster(pool) => {
                let mut conn = pool.get().map_err(checkout)?;
                Ok(f(&mut *conn))
            }
        }
    }

    /// Calls `f` with every key matching `pattern`, on every master of a
    /// cluster. A key may be seen twice (SCAN's guarantee is "at least once").
    pub fn scan(&self, pattern: &str, f: &mut dyn FnMut(&[u8])) -> Result<()> {
        let what = "listing sessions";
        let mut scan_one = |c: &mut dyn ConnectionLike| -> redis::RedisResult<()> {
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)?;
                keys.iter().for_each(|k| f(k));
                if next == 0 {
                    return Ok(());
                }
                cursor = next;
            }
        };
        match &self.pool {
            Pool::Single(_) => self.with(what, |c| scan_one(c)),
            Pool::Cluster(_) => {
                let nodes: String =
                    self.with(what, |c| redis::cmd("CLUSTER").arg("NODES").query(c))?;
                for (host, port) in masters(&nodes) {
                    let info = self
                        .seed
                        .clone()
                        .set_addr(redis::ConnectionAddr::Tcp(host.clone(), port));
                    let node = format!("{what} on node {host}:{port}");
                    let mut conn = redis::Client::open(info)
                        .and_then(|c| c.get_connection_with_timeout(self.io_timeout))
                        .map_err(|e| self.error(&node, e))?;
                    conn.set_read_timeout(Some(self.io_timeout))
                        .and_then(|()| conn.set_write_timeout(Some(self.io_timeout)))
                        .map_err(|e| self.error(&node, e))?;
                    scan_one(&mut conn).map_err(|e| self.error(&node, e))?;
                }
                Ok(())
            }
        }
    }

    /// A `redis` error as ours, naming the server: [`Error::Timeout`] when
    /// no reply came in time.
    pub fn error(&self, what: &str, e: impl Into<Failure>) -> Error {
        match e.into() {
            Failure::Checkout(e) => e,
            Failure::Redis(e) if e.is_timeout() => Error::Timeout {
                op: what.to_owned(),
                server: self.target.clone(),
                after: self.io_timeout,
                attempts: self.attempts,
            },
            Failure::Redis(e) => Error::storage(format!("{what} on {}", self.target), e),
        }
    }
}

/// Why a command failed: no connection, or the command itself.
pub(crate) enum Failure {
    /// No connection could be had (nothing was sent).
    Checkout(Error),
    /// The command failed.
    Redis(redis::RedisError),
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Failure {
        Failure::Redis(e)
    }
}

/// Whether a failure may have come after the server received the command:
/// no reply in time, or the connection dropped (or failed) mid-call.
fn lost(e: &Failure) -> bool {
    match e {
        Failure::Checkout(_) => false,
        Failure::Redis(e) => {
            e.is_timeout() || e.is_connection_dropped() || e.kind() == redis::ErrorKind::Io
        }
    }
}

/// Sets the read and write timeouts of each new connection to one server,
/// once, when the pool opens it: not on every checkout, which would cost two
/// system calls per call. Nothing else changes a pooled connection's timeouts.
#[derive(Debug)]
struct Timeouts(Duration);

impl r2d2::CustomizeConnection<redis::Connection, redis::RedisError> for Timeouts {
    fn on_acquire(&self, conn: &mut redis::Connection) -> redis::RedisResult<()> {
        conn.set_read_timeout(Some(self.0))?;
        conn.set_write_timeout(Some(self.0))
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

/// The (host, port) of every master that is not failing, from `CLUSTER NODES`.
fn masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let addr = fields.nth(1)?;
            let flags = fields.next()?;
            let is_master = flags.split(',').any(|f| f == "master");
            let failing = flags.split(',').any(|f| f == "fail" || f == "noaddr");
            if !is_master || failing {
                return None;
            }
            // ip:port@cport[,hostname]
            let host_port = addr.split(['@', ',']).next()?;
            let (host, port) = host_port.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_are_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002,host-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7003@17003 slave a1 0 0 1 connected
d4 127.0.0.1:7004@17004 master,fail - 0 0 4 disconnected
";
        assert_eq!(
            masters(nodes),
            vec![
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002)
            ]
        );
    }
}

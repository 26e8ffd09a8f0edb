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
    /// The pool's size: how many stale connections a restart can leave.
    max_size: u32,
    io_timeout: Duration,
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
                let client = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.io_timeout)
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
    /// dropped (the server restarted, or a proxy closed it) is run again on
    /// another one; every step the store sends is a check-and-write, so
    /// running it twice is safe. Any other failure is an error naming the
    /// server and `what` the store was doing.
    pub fn with<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T> {
        // Every idle connection in the pool may be stale after a restart:
        // each is tried (and, found broken, dropped by the pool) before a
        // fresh one is opened.
        let mut tries = self.max_size + 1;
        loop {
            tries -= 1;
            match self.once(what, &mut f)? {
                Ok(v) => return Ok(v),
                Err(e) if e.is_connection_dropped() && tries > 0 => continue,
                Err(e) => return Err(self.error(what, e)),
            }
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
                        .map_err(|e| self.error(&node, e))?;
                    scan_one(&mut conn).map_err(|e| self.error(&node, e))?;
                }
                Ok(())
            }
        }
    }

    /// A `redis` error as ours, naming the server.
    pub fn error(&self, what: &str, e: redis::RedisError) -> Error {
        Error::storage(format!("{what} on {}", self.target), e)
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

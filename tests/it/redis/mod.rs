//! What only the Redis store has: a server that dies and comes back, bytes
//! under its keys that another program wrote, and TTLs. (Everything it shares
//! with the embedded store runs through `store_test!`.)

mod admin;
mod bad_bytes;
mod cluster_faults;
mod findings;
mod lost_replies;
mod principals;
mod races;
mod restart;
mod round_trips;
mod timeouts;
mod ttl;

use std::sync::Arc;
use std::time::Duration;

use sessionstore::{ManualClock, RedisConfig};

/// A configuration for `url` with a manual clock and short timeouts, in a
/// namespace of its own.
fn config(url: &str, clock: &ManualClock, namespace: &str) -> RedisConfig {
    RedisConfig::new(url)
        .namespace(namespace)
        .clock(Arc::new(clock.clone()))
        .idle_timeout(Duration::from_secs(600))
        .connect_timeout(Duration::from_secs(2))
        .io_timeout(Duration::from_secs(2))
}

/// Every key of `namespace` on the server at `port`, as redis-cli lists them.
fn keys_of(server: &crate::common::servers::Server, namespace: &str) -> Vec<String> {
    server
        .cli(&["--scan", "--pattern", &format!("*{namespace}*")])
        .lines()
        .map(str::to_owned)
        .collect()
}

//! The harness every behaviour test runs through, once per engine.
//!
//! `engine_test!` turns one test body into a module with one `#[test]` per
//! engine, so a second engine runs the whole suite unchanged.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sessionstore::{Config, Engine, ManualClock, Result, Store};

/// A fresh directory, a manual clock, and the engine under test.
pub struct Db {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub clock: ManualClock,
    pub engine: Engine,
}

impl Db {
    pub fn new(engine: Engine) -> Db {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("store");
        Db {
            dir,
            path,
            clock: ManualClock::default(),
            engine,
        }
    }

    /// The test configuration: this engine, this directory, this clock, no
    /// reaper thread, a 10 minute idle timeout and a touch granularity of 1 minute.
    pub fn config(&self) -> Config {
        Config::new(&self.path)
            .engine(self.engine)
            .clock(Arc::new(self.clock.clone()))
            .reap_interval(None)
            .idle_timeout(Duration::from_secs(600))
            .touch_granularity(Duration::from_secs(60))
    }

    pub fn open(&self) -> Result<Store> {
        self.config().open()
    }
}

/// `engine_test!(name, |db| { body })`: one test per engine compiled in
/// (`name::sled`, `name::redb`); the body returns `Result<()>`.
#[macro_export]
macro_rules! engine_test {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($db: $crate::common::Db) -> sessionstore::Result<()> {
                $body
            }

            #[cfg(feature = "sled")]
            #[test]
            fn sled() -> sessionstore::Result<()> {
                run($crate::common::Db::new(sessionstore::Engine::Sled))
            }

            #[cfg(feature = "redb")]
            #[test]
            fn redb() -> sessionstore::Result<()> {
                run($crate::common::Db::new(sessionstore::Engine::Redb))
            }
        }
    };
}

//! The `decode` target: arbitrary bytes stored where the store keeps values,
//! metadata records, expiry index entries, and under arbitrary keys. Every
//! public read must return a value or an error, never panic, and `verify`
//! must report what it cannot make sense of.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/decode.rs`) and by
//! `tests/fuzz_regressions.rs`, which replays checked-in inputs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sessionstore::{Config, Durability, Engine, Error, ManualClock, RawTarget, Result, Session};

/// Reads the input a piece at a time; an exhausted input reads as zeros and empty slices.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    /// A length-prefixed slice (one byte of length).
    fn slice(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte()).min(self.0.len());
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        s
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_be_bytes(b)
    }
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Record {
    name: String,
    tags: Vec<String>,
    score: Option<f64>,
    kind: Kind,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
enum Kind {
    A,
    B(u32),
    C { x: i64, y: Vec<u8> },
}

/// Reads `key` of `scope` as every type a caller might ask for: each read is a value or `Decode`.
fn read_all_types(scope: &Session, key: &str) {
    fn check<T: serde::de::DeserializeOwned + std::fmt::Debug>(scope: &Session, key: &str) {
        match scope.get::<T>(key) {
            Ok(_) => {}
            Err(e @ Error::Decode { .. }) => {
                let _ = e.to_string();
            }
            Err(e) => panic!("reading {key:?}: want a value or Decode, got {e:?}"),
        }
    }
    check::<u8>(scope, key);
    check::<u64>(scope, key);
    check::<i128>(scope, key);
    check::<bool>(scope, key);
    check::<char>(scope, key);
    check::<f32>(scope, key);
    check::<String>(scope, key);
    check::<Vec<u8>>(scope, key);
    check::<Vec<String>>(scope, key);
    check::<(u32, String, Option<bool>)>(scope, key);
    check::<BTreeMap<String, Vec<u64>>>(scope, key);
    check::<Option<Record>>(scope, key);
    check::<Kind>(scope, key);
}

/// A read that may fail only because the metadata record does not decode.
fn ok_or_decode<T>(what: &str, r: Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e @ Error::Decode { .. }) => {
            let _ = e.to_string();
            None
        }
        Err(e) => panic!("{what}: want Ok or Decode, got {e:?}"),
    }
}

/// Runs one input; panics on any broken promise.
pub fn run(data: &[u8]) {
    let mut input = Bytes(data);
    let engine = Engine::ALL[usize::from(input.byte()) % Engine::ALL.len()];
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("store");
    let clock = ManualClock::default();
    let config = || {
        Config::new(&path)
            .engine(engine)
            .clock(Arc::new(clock.clone()))
            .reap_interval(None)
            .durability(Durability::Periodic(Duration::from_secs(3600)))
            .idle_timeout(Duration::from_secs(600))
    };
    let store = config().open().expect("opening a new store");
    let setup = || -> Result<()> {
        for sid in ["s", "m", "t"] {
            let mut s = store.create_new_session(sid)?;
            s.set("n", &1u64)?;
            store.save(&mut s)?;
            let mut c = store.get(sid, Some("c"))?.expect("live");
            c.set("w", "text")?;
            store.save(&mut c)?;
        }
        Ok(())
    };
    setup().expect("writing the starting sessions");

    let value = input.slice();
    let meta = input.slice();
    let index_deadline = input.u64();
    let raw_key = input.slice();
    let raw_value = input.slice();
    store
        .__write_raw(
            RawTarget::Value {
                sid: "s",
                component: None,
                key: "v",
            },
            value,
        )
        .expect("writing a value");
    store
        .__write_raw(
            RawTarget::Value {
                sid: "s",
                component: Some("c"),
                key: "w",
            },
            value,
        )
        .expect("writing a value");
    store
        .__write_raw(RawTarget::Meta("m"), meta)
        .expect("writing metadata");
    store
        .__write_raw(
            RawTarget::Index {
                deadline_micros: index_deadline,
                sid: "x",
            },
            raw_value,
        )
        .expect("writing an index entry");
    store
        .__write_raw(RawTarget::Key(raw_key), raw_value)
        .expect("writing a raw key");
    // Whether the raw key landed inside a session or the index, where it may
    // legitimately change what reads of that session return.
    let touches = |sid: &str| raw_key.starts_with(sid.as_bytes()) || raw_key.first() == Some(&b'!');

    // Values: every type reads as a value or Decode.
    if let Some(scope) = ok_or_decode("get s", store.get("s", None)).flatten() {
        read_all_types(&scope, "v");
        if !touches("s") {
            assert_eq!(scope.get::<u64>("n").expect("an intact key"), Some(1));
        }
    } else {
        assert!(touches("s"), "session s reads");
    }
    if let Some(scope) = ok_or_decode("get s/c", store.get("s", Some("c"))).flatten() {
        read_all_types(&scope, "w");
    }

    // The metadata record: every operation on the session is Ok or Decode.
    let meta_ok = ok_or_decode("info m", store.info("m")).is_some();
    ok_or_decode("get m", store.get("m", None));
    ok_or_decode("export m", store.export_session("m"));
    ok_or_decode("touch m", store.touch("m"));
    if let Some(Some(mut scope)) = ok_or_decode("get m/c", store.get("m", Some("c"))) {
        scope.set("w", "again").expect("a valid key");
        match store.save(&mut scope) {
            Ok(()) | Err(Error::NotFound { .. } | Error::Decode { .. }) => {}
            Err(e) => panic!("save m: {e:?}"),
        }
    }
    match store.set_idle_timeout("m", Some(Duration::from_secs(60))) {
        Ok(()) | Err(Error::NotFound { .. } | Error::Decode { .. }) => {}
        Err(e) => panic!("set_idle_timeout m: {e:?}"),
    }

    // The bystander is untouched.
    if !touches("t") {
        let t = store.get("t", None).expect("t reads").expect("t lives");
        assert_eq!(t.get::<u64>("n").expect("t's key"), Some(1));
    }

    // Listing, statistics and verify work, and verify reports the damage.
    for id in store.session_ids().chain(store.expired_session_ids()) {
        let id = id.expect("listing ids");
        let _ = store.export_session(&id);
    }
    store.stats().expect("stats");
    let report = store.verify().expect("verify");
    if !meta_ok && !touches("m") {
        assert!(
            report.undecodable.iter().any(|u| u.contains("\"m\"")),
            "verify reports the metadata of m: {report:?}"
        );
    }
    if !touches("x") {
        assert!(
            report.dangling_index.iter().any(|d| d.starts_with("x at")),
            "verify reports the index entry of nobody: {report:?}"
        );
    }

    // The reaper skips what it cannot read and deletes the rest.
    clock.advance(Duration::from_secs(3600));
    store
        .reap_expired()
        .expect("a reap pass skips what it cannot read");
    let _ = store.regenerate("m");
    let _ = store.destroy("m");
    let _ = store.verify().expect("verify");

    // The store reopens, or refuses with an error (a raw key may have hit the format marker).
    drop(store);
    match config().open() {
        Ok(store) => {
            store.verify().expect("verify after reopening");
            store.reap_expired().expect("reaping after reopening");
        }
        Err(Error::NotAStore { .. }) => assert!(
            raw_key.starts_with(b"#"),
            "only the marker makes it no store"
        ),
        Err(e) => panic!("reopening: {e:?}"),
    }
}

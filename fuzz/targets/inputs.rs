//! The `inputs` target: arbitrary session ids, component names, keys and
//! values through every public method. Each call must return `Ok` or exactly
//! the error the crate docs' input rules (src/contract.md) document for the
//! first bad input, and every error must display without panicking.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/inputs.rs`) and by
//! `tests/fuzz_regressions.rs`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sessionstore::{
    Config, Durability, Engine, Error, ExportedScope, ExportedSession, ManualClock, Result, Store,
};

/// The store's `max_value_size` here: small, so that the limit is reachable.
const MAX_VALUE: usize = 200;

/// Reads the input a piece at a time; an exhausted input reads as zeros and empty strings.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    /// A string of up to `max` bytes (a two-byte length, then the bytes, made valid UTF-8 lossily),
    /// or one of a few long strings when the length's top bit is set.
    fn string(&mut self) -> String {
        let n = usize::from(u16::from_be_bytes([self.byte(), self.byte()]));
        if n & 0x8000 != 0 {
            // Long inputs at and around every limit, ASCII and multi-byte.
            let c = ["a", "é", "\u{1F600}", "/", "\u{7}"][n % 5];
            let len = [127, 128, 129, 1023, 1024, 1025, 5000][(n >> 3) % 7];
            return c.repeat(len / c.len().max(1) + usize::from((n >> 6) & 1 == 1));
        }
        let n = n.min(self.0.len());
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        String::from_utf8_lossy(s).into_owned()
    }
}

fn valid_sid(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_component(s: &str) -> bool {
    (1..=128).contains(&s.len()) && !s.contains('/') && !s.chars().any(char::is_control)
}

fn valid_key(s: &str) -> bool {
    (1..=1024).contains(&s.len()) && !s.chars().any(char::is_control)
}

/// What a call must return given its inputs, in the order the store checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    InvalidId,
    InvalidComponent,
    InvalidKey,
    ValueTooLarge,
    Valid,
}

fn want(sid: Option<&str>, component: Option<&str>, key: Option<&str>, value_len: usize) -> Want {
    if sid.is_some_and(|s| !valid_sid(s)) {
        Want::InvalidId
    } else if component.is_some_and(|c| !valid_component(c)) {
        Want::InvalidComponent
    } else if key.is_some_and(|k| !valid_key(k)) {
        Want::InvalidKey
    } else if value_len > MAX_VALUE {
        Want::ValueTooLarge
    } else {
        Want::Valid
    }
}

/// Checks a result against what the inputs call for. `allowed` lists the
/// errors a valid input may still give (say `NotFound`). Returns the value if Ok.
fn check<T>(what: &str, want: Want, got: Result<T>, allowed: &[fn(&Error) -> bool]) -> Option<T> {
    if let Err(e) = &got {
        // Every message displays, whatever the input.
        assert!(!e.to_string().is_empty());
    }
    let matches = match (&got, want) {
        (Err(Error::InvalidId { .. }), Want::InvalidId)
        | (Err(Error::InvalidComponent { .. }), Want::InvalidComponent)
        | (Err(Error::InvalidKey { .. }), Want::InvalidKey)
        | (Err(Error::ValueTooLarge { .. }), Want::ValueTooLarge)
        | (Ok(_), Want::Valid) => true,
        (Err(e), Want::Valid) => allowed.iter().any(|f| f(e)),
        _ => false,
    };
    assert!(
        matches,
        "{what}: want {want:?}, got {:?}",
        got.as_ref().map(|_| "Ok").map_err(|e| e.to_string())
    );
    got.ok()
}

fn not_found(e: &Error) -> bool {
    matches!(e, Error::NotFound { .. })
}

fn already_exists(e: &Error) -> bool {
    matches!(e, Error::AlreadyExists { .. })
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    clock: ManualClock,
}

/// One store per engine for the whole process: each input adds to it.
fn fixture(engine: Engine) -> &'static Fixture {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    let all = FIXTURES.get_or_init(|| {
        Engine::ALL
            .iter()
            .map(|e| {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let clock = ManualClock::default();
                let store = Config::new(dir.path().join("store"))
                    .engine(*e)
                    .clock(Arc::new(clock.clone()))
                    .reap_interval(None)
                    .durability(Durability::Periodic(Duration::from_secs(3600)))
                    .max_value_size(MAX_VALUE)
                    .open()
                    .expect("opening the store");
                Fixture {
                    _dir: dir,
                    store,
                    clock,
                }
            })
            .collect()
    });
    &all[Engine::ALL
        .iter()
        .position(|e| *e == engine)
        .expect("compiled in")]
}

/// Runs one input; panics on any broken promise.
pub fn run(data: &[u8]) {
    let mut input = Bytes(data);
    let engine = Engine::ALL[usize::from(input.byte()) % Engine::ALL.len()];
    let Fixture { store, clock, .. } = fixture(engine);
    let flags = input.byte();
    let sid = input.string();
    let component = (flags & 1 == 1).then(|| input.string());
    let key = input.string();
    let value = input.string();
    let comp = component.as_deref();
    // The encoded size of a string is its length plus a varint of it.
    let encoded = value.len() + if value.len() < 251 { 1 } else { 3 };

    let only_sid = want(Some(&sid), None, None, 0);
    let sid_comp = want(Some(&sid), comp, None, 0);

    // Engine names.
    if let Ok(e) = value.parse::<Engine>() {
        assert!(e.name().eq_ignore_ascii_case(&value));
    }

    // create_new_session, then get of the scope.
    check(
        "create_new_session",
        only_sid,
        store.create_new_session(&sid).map(drop),
        &[already_exists],
    );
    let scope = check("get", sid_comp, store.get(&sid, comp), &[]).flatten();

    // Session-level calls on whatever scope there is.
    if let Some(mut scope) = scope {
        check(
            "Session::get",
            want(None, None, Some(&key), 0),
            scope.get::<String>(&key),
            &[|e| matches!(e, Error::Decode { .. })],
        );
        let set = check(
            "Session::set",
            want(None, None, Some(&key), encoded),
            scope.set(&key, &value),
            &[],
        );
        if set.is_some() {
            assert_eq!(
                scope.get::<String>(&key).ok().flatten().as_deref(),
                Some(value.as_str())
            );
        }
        check(
            "Session::set_raw",
            want(None, None, Some(&key), value.len()),
            scope.set_raw(&key, value.as_bytes().to_vec()),
            &[],
        );
        check("save", Want::Valid, store.save(&mut scope), &[not_found]);
        if flags & 2 == 2 {
            scope.remove(&key);
            scope.clear();
            check("save", Want::Valid, store.save(&mut scope), &[not_found]);
        }
    }

    // Every other call that takes an id.
    check("info", only_sid, store.info(&sid), &[]);
    check("touch", only_sid, store.touch(&sid), &[]);
    check("export_session", only_sid, store.export_session(&sid), &[]);
    let idle = (flags & 4 == 4).then(|| Duration::from_secs(u64::from(flags)));
    check(
        "set_idle_timeout",
        only_sid,
        store.set_idle_timeout(&sid, idle),
        &[not_found],
    );

    // import_session of a session made of the inputs.
    let at = |n: u8| -> SystemTime {
        let d = Duration::from_secs(u64::from(n) << 24);
        if n & 1 == 1 {
            UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH)
        } else {
            UNIX_EPOCH + d
        }
    };
    // The input's bytes are taken in this order: created, last access, idle
    // timeout, absolute deadline.
    let created = at(input.byte());
    let last_access = at(input.byte());
    let idle_timeout = (flags & 8 == 8).then(|| Duration::from_secs(u64::from(input.byte()) * 60));
    let absolute_deadline = (flags & 16 == 16).then(|| at(input.byte()));
    let exported = ExportedSession::new(sid.clone(), created, last_access)
        .with_idle_timeout(idle_timeout)
        .with_absolute_deadline(absolute_deadline)
        .with_scope(
            ExportedScope::new(component.clone())
                .with_value(key.clone(), value.as_bytes().to_vec()),
        );
    let import_want = want(Some(&sid), comp, Some(&key), value.len());
    check(
        "import_session",
        import_want,
        store.import_session(
            &exported,
            if flags & 32 == 32 {
                sessionstore::ImportMode::Replace
            } else {
                sessionstore::ImportMode::Create
            },
        ),
        &[already_exists],
    );
    if flags & 64 == 64 {
        clock.advance(Duration::from_secs(u64::from(flags) * 60));
    }

    // regenerate and destroy.
    if let Some(new_id) = check("regenerate", only_sid, store.regenerate(&sid), &[not_found]) {
        assert!(
            valid_sid(&new_id),
            "a fresh id follows the id rules: {new_id:?}"
        );
        check("destroy", Want::Valid, store.destroy(&new_id), &[]);
    }
    check("destroy", only_sid, store.destroy(&sid), &[]);
    if flags & 128 == 128 {
        store.reap_expired().expect("reaping");
        let report = store.verify().expect("verify");
        assert!(report.is_ok(), "{report:?}");
    }
}

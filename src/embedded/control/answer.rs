//! Answers one request through the store's public API, in the process that
//! owns the store: the same locks, durability and events as the
//! application's own calls (a `destroy` here sends `Destroyed` to the
//! application's subscribers). Replies are written line by line as they are
//! made, so an export holds one session in memory at a time.

use std::io;
use std::time::Instant;

use crate::clock;
use crate::embedded::control::protocol::{Line, Request, SessionHead, Which};
use crate::embedded::store::Store;
use crate::error::Error;
use crate::export::ExportedSession;

/// Where reply lines go.
pub(crate) trait Sink {
    /// Writes one line. An error means the client is gone: the answer stops.
    fn line(&mut self, line: &Line) -> io::Result<()>;
}

/// Answers `request` on `store`, ending with `ok` or `error`. A streamed
/// answer that runs past `deadline` ends with `error timeout`.
///
/// # Errors
///
/// Only the sink's: the client cannot be written to.
pub(crate) fn answer(
    store: &Store,
    request: &Request,
    deadline: Instant,
    out: &mut dyn Sink,
) -> io::Result<()> {
    match run(store, request, deadline, out)? {
        Ok(()) => out.line(&Line::Ok),
        Err(Fail::Store(e)) => out.line(&Line::Error {
            code: "store".into(),
            message: e.to_string(),
        }),
        Err(Fail::Timeout) => out.line(&Line::Error {
            code: "timeout".into(),
            message: "the request ran past the per-request time limit; what was sent before this line is complete".into(),
        }),
    }
}

enum Fail {
    Store(Error),
    Timeout,
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Store(e)
    }
}

/// The body of [`answer`]: the outer result is the sink's, the inner the request's.
fn run(
    store: &Store,
    request: &Request,
    deadline: Instant,
    out: &mut dyn Sink,
) -> io::Result<Result<(), Fail>> {
    let stat = |name: &str, value: String| Line::Stat {
        name: name.into(),
        value,
    };
    macro_rules! tried {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => return Ok(Err(Fail::from(e))),
            }
        };
    }
    match request {
        Request::Stats => {
            let s = tried!(store.stats());
            out.line(&stat("path", store.path().display().to_string()))?;
            out.line(&stat(
                "engine",
                s.engine.map_or("unknown", |e| e.name()).into(),
            ))?;
            for (name, value) in [
                ("live_sessions", s.live_sessions),
                ("reaped_since_open", s.reaped_since_open),
                ("flushes_since_open", s.flushes_since_open),
                ("failed_reap_passes", s.failed_reap_passes),
                ("bytes_on_disk", s.bytes_on_disk),
                ("writes_since_open", s.writes_since_open),
            ] {
                out.line(&stat(name, value.to_string()))?;
            }
        }
        Request::List(which) => {
            let ids = match which {
                Which::Live => store.session_ids(),
                Which::Expired => store.expired_session_ids(),
            };
            for id in ids {
                if Instant::now() > deadline {
                    return Ok(Err(Fail::Timeout));
                }
                out.line(&Line::Id(tried!(id)))?;
            }
        }
        Request::Export(which) => {
            let ids = match which {
                Which::Live => store.session_ids(),
                Which::Expired => store.expired_session_ids(),
            };
            for id in ids {
                if Instant::now() > deadline {
                    return Ok(Err(Fail::Timeout));
                }
                // Gone since it was listed (destroyed, reaped): left out.
                if let Some(s) = tried!(store.export_session(&tried!(id))) {
                    session(&s, out)?;
                }
            }
        }
        Request::Show(sid) => {
            if let Some(s) = tried!(store.export_session(sid)) {
                session(&s, out)?;
            }
        }
        Request::SessionsOf(name) => {
            for id in tried!(store.sessions_of(name)) {
                out.line(&Line::Id(id))?;
            }
        }
        Request::Verify => {
            let r = tried!(verify_live(store));
            for (name, n) in [
                ("sessions", r.sessions),
                ("keys", r.keys),
                ("index_entries", r.index_entries),
                ("principal_entries", r.principal_entries),
            ] {
                out.line(&stat(name, n.to_string()))?;
            }
            for (kind, items) in [
                ("orphans", &r.orphans),
                ("dangling_index", &r.dangling_index),
                ("missing_index", &r.missing_index),
                ("undecodable", &r.undecodable),
                ("dangling_principal", &r.dangling_principal),
                ("missing_principal", &r.missing_principal),
            ] {
                for item in items {
                    out.line(&Line::Problem {
                        kind: kind.into(),
                        item: item.clone(),
                    })?;
                }
            }
        }
        Request::Destroy(sid) => {
            // Whether there was a session at all, then the store's own
            // answer of whether it was live (another writer may act between).
            let there = tried!(store.export_session(sid)).is_some();
            let live = tried!(store.destroy(sid));
            let state = match (live, there) {
                (true, _) => "live",
                (false, true) => "expired",
                (false, false) => "none",
            };
            out.line(&stat("destroyed", state.into()))?;
        }
        Request::DestroyAllOf(name) => {
            let n = tried!(store.destroy_all_of(name));
            out.line(&stat("destroyed", n.to_string()))?;
        }
        Request::Reap => {
            let n = tried!(store.reap_expired());
            out.line(&stat("reaped", n.to_string()))?;
        }
    }
    Ok(Ok(()))
}

/// Walks made at most by [`verify_live`].
const VERIFY_WALKS: usize = 3;

/// `Store::verify` on a store whose application writes meanwhile: a walk
/// takes no locks, so it can meet a write half-way (an index entry moved
/// after its record was read). A problem is reported only if every walk
/// found it, up to [`VERIFY_WALKS`] walks; a clean walk ends at once. Real
/// damage stays put and is seen by every walk.
fn verify_live(store: &Store) -> crate::error::Result<crate::embedded::verify::Report> {
    let mut report = store.verify()?;
    for _ in 1..VERIFY_WALKS {
        if report.is_ok() {
            break;
        }
        let again = store.verify()?;
        let keep = |old: &mut Vec<String>, new: &[String]| old.retain(|item| new.contains(item));
        keep(&mut report.orphans, &again.orphans);
        keep(&mut report.dangling_index, &again.dangling_index);
        keep(&mut report.missing_index, &again.missing_index);
        keep(&mut report.undecodable, &again.undecodable);
        keep(&mut report.dangling_principal, &again.dangling_principal);
        keep(&mut report.missing_principal, &again.missing_principal);
        report.sessions = again.sessions;
        report.keys = again.keys;
        report.index_entries = again.index_entries;
        report.principal_entries = again.principal_entries;
    }
    Ok(report)
}

/// The lines of one session record.
fn session(s: &ExportedSession, out: &mut dyn Sink) -> io::Result<()> {
    out.line(&Line::Session(SessionHead {
        id: s.id.clone(),
        created: clock::micros(s.created),
        last_access: clock::micros(s.last_access),
        idle: s.idle_timeout.map(clock::duration_micros),
        absolute: s.absolute_deadline.map(clock::micros),
        principal: s.principal.clone(),
    }))?;
    for scope in &s.scopes {
        out.line(&Line::Scope(scope.component.clone()))?;
        for (key, bytes) in &scope.values {
            out.line(&Line::Value {
                key: key.clone(),
                bytes: bytes.clone(),
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Collects lines.
    struct Lines(Vec<Line>);

    impl Sink for Lines {
        fn line(&mut self, line: &Line) -> io::Result<()> {
            self.0.push(line.clone());
            Ok(())
        }
    }

    fn answered(store: &Store, request: &Request, deadline: Instant) -> Vec<Line> {
        let mut out = Lines(Vec::new());
        answer(store, request, deadline, &mut out).unwrap();
        out.0
    }

    #[test]
    fn a_streamed_answer_stops_at_its_deadline_with_a_timeout_line() {
        let store = crate::Store::temporary().unwrap();
        for i in 0..3 {
            store.create_new_session(&format!("s{i}")).unwrap();
        }
        let later = Instant::now() + Duration::from_secs(3600);
        let all = answered(&store, &Request::Export(Which::Live), later);
        assert_eq!(
            all.iter().filter(|l| matches!(l, Line::Session(_))).count(),
            3
        );
        assert_eq!(all.last(), Some(&Line::Ok));
        let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();
        for request in [Request::Export(Which::Live), Request::List(Which::Live)] {
            let cut = answered(&store, &request, past);
            assert!(
                matches!(cut.as_slice(), [Line::Error { code, .. }] if code == "timeout"),
                "{cut:?}"
            );
        }
    }

    #[test]
    fn a_store_error_ends_the_answer_with_its_message() {
        let store = crate::Store::temporary().unwrap();
        let later = Instant::now() + Duration::from_secs(3600);
        let got = answered(&store, &Request::Show("not an id".into()), later);
        let [Line::Error { code, message }] = got.as_slice() else {
            panic!("{got:?}");
        };
        assert_eq!(code, "store");
        assert!(message.contains("invalid session id"), "{message}");
        let got = answered(&store, &Request::Destroy("gone".into()), later);
        assert_eq!(
            got,
            [
                Line::Stat {
                    name: "destroyed".into(),
                    value: "none".into()
                },
                Line::Ok
            ]
        );
    }
}

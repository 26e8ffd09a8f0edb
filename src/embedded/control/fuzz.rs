//! For `fuzz/`: arbitrary bytes through the control protocol's parsers.
//! Compiled only under `cfg(test)` or the cargo feature `corruption-testing`.

use crate::embedded::control::protocol::{self, Line};

/// Splits `bytes` into lines and parses each as a request (what the server
/// reads from any local user of the store's uid) and as a reply line (what
/// the client reads). Neither may panic, and whatever parses must render to
/// one line that parses back the same: a request to at most
/// `MAX_REQUEST` bytes if its line was that short.
pub fn fuzz_protocol(bytes: &[u8]) {
    for line in bytes.split(|b| *b == b'\n') {
        if let Ok(request) = protocol::parse_request(line) {
            let again = protocol::render_request(&request);
            assert_eq!(again.matches('\n').count(), 1, "{again:?}");
            let body = again.trim_end_matches('\n');
            assert_eq!(protocol::parse_request(body.as_bytes()), Ok(request));
        }
        if let Ok(reply) = protocol::parse_line(line) {
            let mut again = String::new();
            protocol::render_line(&reply, &mut again);
            assert_eq!(again.matches('\n').count(), 1, "{again:?}");
            let back = protocol::parse_line(again.trim_end_matches('\n').as_bytes());
            assert_eq!(back.as_ref(), Ok(&reply), "{again:?}");
        }
        // A refusal's message is sent back as one line too.
        if let Err(refusal) = protocol::parse_request(line) {
            let mut out = String::new();
            protocol::render_line(
                &Line::Error {
                    code: refusal.code.into(),
                    message: refusal.message,
                },
                &mut out,
            );
            assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        }
    }
}

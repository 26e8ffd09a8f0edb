//! The control protocol, version 1: requests and reply lines, parsed and
//! rendered. No I/O here: `serve.rs` and `client.rs` move the bytes, and the
//! fuzz target feeds this module arbitrary ones.
//!
//! Every message is one line ending in `\n`. Words are separated by one
//! space; a word that carries a name (an id, a principal, a component, a key,
//! a path, a message) is percent-escaped: `%`, space, and every byte below
//! `0x21` or equal to `0x7f` is written `%XX` (two upper-case hex digits), so
//! no word holds a space or a line break. docs/control.md is the reference.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The first line the server sends to a client it serves.
pub(crate) const GREETING: &str = "sessionstore-control v1";
/// The version word that starts every request.
pub(crate) const VERSION: &str = "v1";
/// The longest request line, `\n` included.
pub(crate) const MAX_REQUEST: usize = 4096;

/// Which sessions a listing walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    /// Live sessions, earliest deadline first.
    Live,
    /// Expired sessions not reaped yet, earliest deadline first.
    Expired,
}

impl Which {
    fn word(self) -> &'static str {
        match self {
            Which::Live => "live",
            Which::Expired => "expired",
        }
    }
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// `stats`: the store's `Stats`.
    Stats,
    /// `list live|expired`: session ids, one `id` line each.
    List(Which),
    /// `export live|expired`: whole sessions, streamed.
    Export(Which),
    /// `show SID`: one whole session, or none.
    Show(String),
    /// `sessions-of NAME`: one principal's live sessions.
    SessionsOf(String),
    /// `verify`: the consistency report.
    Verify,
    /// `destroy SID`: `stat destroyed live|expired|none`.
    Destroy(String),
    /// `destroy-all-of NAME`: `stat destroyed N`.
    DestroyAllOf(String),
    /// `reap`: `stat reaped N`.
    Reap,
}

/// Why a request line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The error code: `version` or `bad-request`.
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Parses one request line (without its `\n`; a `\r` before it is allowed).
pub(crate) fn parse_request(line: &[u8]) -> Result<Request, Refusal> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text =
        std::str::from_utf8(line).map_err(|_| refuse("bad-request", "the request is not UTF-8"))?;
    let mut words = text.split(' ');
    match words.next() {
        Some(VERSION) => {}
        Some(v)
            if v.starts_with('v') && v.len() > 1 && v[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            return Err(refuse(
                "version",
                format!("protocol {v} is not spoken here; this store speaks {VERSION}"),
            ));
        }
        _ => {
            return Err(refuse(
                "bad-request",
                format!(
                    "a request starts with the protocol version {VERSION}, as in `{VERSION} stats`"
                ),
            ));
        }
    }
    let command = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    let none = |r: Request| {
        if args.is_empty() {
            Ok(r)
        } else {
            Err(refuse(
                "bad-request",
                format!("`{command}` takes no argument"),
            ))
        }
    };
    let one = |what: &str| -> Result<String, Refusal> {
        match args.as_slice() {
            [word] => unescape(word).filter(|w| !w.is_empty()).ok_or_else(|| {
                refuse(
                    "bad-request",
                    format!("the {what} of `{command}` is empty or not well escaped"),
                )
            }),
            _ => Err(refuse(
                "bad-request",
                format!("`{command}` takes one argument, the {what}"),
            )),
        }
    };
    let which = || match args.as_slice() {
        ["live"] => Ok(Which::Live),
        ["expired"] => Ok(Which::Expired),
        _ => Err(refuse(
            "bad-request",
            format!("`{command}` takes `live` or `expired`"),
        )),
    };
    match command {
        "stats" => none(Request::Stats),
        "verify" => none(Request::Verify),
        "reap" => none(Request::Reap),
        "list" => which().map(Request::List),
        "export" => which().map(Request::Export),
        "show" => one("session id").map(Request::Show),
        "destroy" => one("session id").map(Request::Destroy),
        "sessions-of" => one("principal").map(Request::SessionsOf),
        "destroy-all-of" => one("principal").map(Request::DestroyAllOf),
        "" => Err(refuse(
            "bad-request",
            "no command; one of stats, list, export, show, sessions-of, verify, destroy, destroy-all-of, reap",
        )),
        other => Err(refuse(
            "bad-request",
            format!(
                "unknown command {:?}; one of stats, list, export, show, sessions-of, verify, destroy, destroy-all-of, reap",
                shorten(other)
            ),
        )),
    }
}

/// The line of `request`, `\n` included.
pub(crate) fn render_request(request: &Request) -> String {
    let (command, arg) = match request {
        Request::Stats => ("stats", None),
        Request::Verify => ("verify", None),
        Request::Reap => ("reap", None),
        Request::List(w) => ("list", Some(w.word().to_owned())),
        Request::Export(w) => ("export", Some(w.word().to_owned())),
        Request::Show(s) => ("show", Some(escape(s))),
        Request::Destroy(s) => ("destroy", Some(escape(s))),
        Request::SessionsOf(n) => ("sessions-of", Some(escape(n))),
        Request::DestroyAllOf(n) => ("destroy-all-of", Some(escape(n))),
    };
    match arg {
        Some(a) => format!("{VERSION} {command} {a}\n"),
        None => format!("{VERSION} {command}\n"),
    }
}

/// The head of one session record: `session ID CREATED LAST_ACCESS IDLE ABSOLUTE PRINCIPAL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionHead {
    pub id: String,
    /// µs since the epoch.
    pub created: u64,
    /// µs since the epoch.
    pub last_access: u64,
    /// µs; `None` for none.
    pub idle: Option<u64>,
    /// µs since the epoch; `None` for none.
    pub absolute: Option<u64>,
    pub principal: Option<String>,
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// `ok`: the reply ended well.
    Ok,
    /// `error CODE MESSAGE`: the reply ended in an error.
    Error { code: String, message: String },
    /// `stat NAME VALUE`: one named figure or word.
    Stat { name: String, value: String },
    /// `id SID`: one session id of a listing.
    Id(String),
    /// `session …`: a session record starts.
    Session(SessionHead),
    /// `scope -` or `scope =COMPONENT`: a scope of the current session starts.
    Scope(Option<String>),
    /// `value KEY BASE64`: one stored value of the current scope (`-` for no bytes).
    Value { key: String, bytes: Vec<u8> },
    /// `problem KIND ITEM`: one problem `verify` found.
    Problem { kind: String, item: String },
}

/// Appends `line`, `\n` included, to `out`.
pub(crate) fn render_line(line: &Line, out: &mut String) {
    match line {
        Line::Ok => out.push_str("ok"),
        Line::Error { code, message } => {
            let _ = write!(
                out,
                "error {} {}",
                escape_or_dash(code),
                escape_or_dash(message)
            );
        }
        Line::Stat { name, value } => {
            let _ = write!(
                out,
                "stat {} {}",
                escape_or_dash(name),
                escape_or_dash(value)
            );
        }
        Line::Id(sid) => {
            let _ = write!(out, "id {}", escape_or_dash(sid));
        }
        Line::Session(h) => {
            let _ = write!(
                out,
                "session {} {} {} {} {} {}",
                escape_or_dash(&h.id),
                h.created,
                h.last_access,
                number_or_dash(h.idle),
                number_or_dash(h.absolute),
                optional(h.principal.as_deref())
            );
        }
        Line::Scope(c) => {
            let _ = write!(out, "scope {}", optional(c.as_deref()));
        }
        Line::Value { key, bytes } => {
            let b64 = if bytes.is_empty() {
                "-".to_owned()
            } else {
                STANDARD.encode(bytes)
            };
            let _ = write!(out, "value {} {b64}", escape_or_dash(key));
        }
        Line::Problem { kind, item } => {
            let _ = write!(
                out,
                "problem {} {}",
                escape_or_dash(kind),
                escape_or_dash(item)
            );
        }
    }
    out.push('\n');
}

/// Parses one reply line (without its `\n`).
pub(crate) fn parse_line(line: &[u8]) -> Result<Line, String> {
    let text = std::str::from_utf8(line).map_err(|_| "a reply line is not UTF-8".to_owned())?;
    let words: Vec<&str> = text.split(' ').collect();
    // A rendered line has no empty word: an empty text is written `-`.
    let word = |w: &str| {
        unescape(w)
            .filter(|w| !w.is_empty())
            .ok_or_else(|| format!("an empty or badly escaped word in {:?}", shorten(text)))
    };
    let number = |w: &str| {
        w.parse::<u64>()
            .map_err(|_| format!("{:?} is not a number, in {:?}", shorten(w), shorten(text)))
    };
    let opt_number = |w: &str| {
        if w == "-" {
            Ok(None)
        } else {
            number(w).map(Some)
        }
    };
    let bad = || Err(format!("an unknown reply line {:?}", shorten(text)));
    match words.as_slice() {
        ["ok"] => Ok(Line::Ok),
        ["error", code, message] => Ok(Line::Error {
            code: word(code)?,
            message: word(message)?,
        }),
        ["stat", name, value] => Ok(Line::Stat {
            name: word(name)?,
            value: word(value)?,
        }),
        ["id", sid] => Ok(Line::Id(word(sid)?)),
        ["session", id, created, last, idle, absolute, principal] => {
            Ok(Line::Session(SessionHead {
                id: word(id)?,
                created: number(created)?,
                last_access: number(last)?,
                idle: opt_number(idle)?,
                absolute: opt_number(absolute)?,
                principal: parse_optional(principal)
                    .ok_or_else(|| format!("a bad principal in {:?}", shorten(text)))?,
            }))
        }
        ["scope", c] => {
            Ok(Line::Scope(parse_optional(c).ok_or_else(|| {
                format!("a bad component in {:?}", shorten(text))
            })?))
        }
        ["value", key, b64] => Ok(Line::Value {
            key: word(key)?,
            bytes: if *b64 == "-" {
                Vec::new()
            } else {
                STANDARD
                    .decode(b64)
                    .map_err(|e| format!("a value that is not base64 ({e})"))?
            },
        }),
        ["problem", kind, item] => Ok(Line::Problem {
            kind: word(kind)?,
            item: word(item)?,
        }),
        _ => bad(),
    }
}

/// Percent-escapes `s` (see the module docs).
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || (c as u32) < 0x21 || c as u32 == 0x7f {
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Undoes [`escape`]: `None` for a `%` not followed by two hex digits, or
/// for bytes that are not UTF-8 once unescaped.
pub(crate) fn unescape(word: &str) -> Option<String> {
    let bytes = word.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `escape(s)`, or `-` for an empty `s`, which would leave an empty word and
/// break the line's split. Names (ids, keys, principals, paths) are never
/// empty; free text (an error message) can be, and reads back as `-`.
fn escape_or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        escape(s)
    }
}

fn number_or_dash(n: Option<u64>) -> String {
    n.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// `-` for none, `=` and the escaped text for some.
fn optional(s: Option<&str>) -> String {
    s.map_or_else(|| "-".to_owned(), |s| format!("={}", escape(s)))
}

fn parse_optional(w: &str) -> Option<Option<String>> {
    if w == "-" {
        return Some(None);
    }
    unescape(w.strip_prefix('=')?)
        .filter(|w| !w.is_empty())
        .map(Some)
}

/// At most 60 characters of `s`, for a message.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_reads_back_as_itself() {
        let requests = [
            Request::Stats,
            Request::Verify,
            Request::Reap,
            Request::List(Which::Live),
            Request::List(Which::Expired),
            Request::Export(Which::Live),
            Request::Export(Which::Expired),
            Request::Show("abc_-1".into()),
            Request::Destroy("x".into()),
            Request::SessionsOf("ada lovelace %20 é\u{7f}\t".into()),
            Request::DestroyAllOf("-".into()),
        ];
        for r in requests {
            let line = render_request(&r);
            assert!(
                line.ends_with('\n') && line.matches('\n').count() == 1,
                "{line:?}"
            );
            assert_eq!(parse_request(line.trim_end_matches('\n').as_bytes()), Ok(r));
        }
    }

    #[test]
    fn bad_requests_name_what_is_wrong() {
        let code = |line: &[u8]| parse_request(line).unwrap_err().code;
        assert_eq!(code(b"v2 stats"), "version");
        assert_eq!(code(b"stats"), "bad-request");
        assert_eq!(code(b""), "bad-request");
        assert_eq!(code(b"v1"), "bad-request");
        assert_eq!(code(b"v1 stats now"), "bad-request");
        assert_eq!(code(b"v1 show"), "bad-request");
        assert_eq!(code(b"v1 show a b"), "bad-request");
        assert_eq!(code(b"v1 show "), "bad-request", "an empty id");
        assert_eq!(code(b"v1 show %zz"), "bad-request");
        assert_eq!(
            code(b"v1 show %ff"),
            "bad-request",
            "not UTF-8 once unescaped"
        );
        assert_eq!(code(b"v1 list all"), "bad-request");
        assert_eq!(code(b"v1 \xff"), "bad-request");
        assert_eq!(code(b"v1 drop-table"), "bad-request");
        let long = parse_request(format!("v1 {}", "x".repeat(500)).as_bytes()).unwrap_err();
        assert!(long.message.len() < 300, "{}", long.message);
        assert_eq!(parse_request(b"v1 stats\r"), Ok(Request::Stats));
    }

    #[test]
    fn every_reply_line_reads_back_as_itself() {
        let lines = [
            Line::Ok,
            Line::Error {
                code: "store".into(),
                message: "a message\nover two lines, 100% sure".into(),
            },
            Line::Error {
                code: "store".into(),
                message: "".into(),
            },
            Line::Stat {
                name: "path".into(),
                value: "/tmp/a dir/x".into(),
            },
            Line::Id("s1".into()),
            Line::Session(SessionHead {
                id: "s1".into(),
                created: 1,
                last_access: u64::MAX,
                idle: None,
                absolute: Some(0),
                principal: Some("-".into()),
            }),
            Line::Session(SessionHead {
                id: "s2".into(),
                created: 0,
                last_access: 0,
                idle: Some(5),
                absolute: None,
                principal: None,
            }),
            Line::Scope(None),
            Line::Scope(Some("=cart =".into())),
            Line::Value {
                key: "k y".into(),
                bytes: vec![0, 255, 10],
            },
            Line::Value {
                key: "empty".into(),
                bytes: vec![],
            },
            Line::Problem {
                kind: "orphans".into(),
                item: "a/b".into(),
            },
        ];
        for l in lines {
            let mut out = String::new();
            render_line(&l, &mut out);
            assert_eq!(out.matches('\n').count(), 1, "{out:?}");
            let back = parse_line(out.trim_end_matches('\n').as_bytes()).unwrap();
            match (&l, &back) {
                // An empty message travels as `-`.
                (Line::Error { message, .. }, Line::Error { message: m2, .. })
                    if message.is_empty() =>
                {
                    assert_eq!(m2, "-")
                }
                _ => assert_eq!(back, l),
            }
        }
        assert!(parse_line(b"session a 1 2").is_err());
        assert!(parse_line(b"value k !!!").is_err());
        assert!(parse_line(b"nonsense").is_err());
        // Found by the fuzzer: `id ` (an empty word) read back as `id -`.
        assert!(parse_line(b"id ").is_err());
        assert!(parse_line(b"scope =").is_err());
        assert!(parse_line(b"stat  x").is_err());
    }

    #[test]
    fn escaping_leaves_no_space_or_line_break() {
        let s = "a b\nc\r%\u{0}\u{7f}é";
        let e = escape(s);
        assert!(!e.contains([' ', '\n', '\r', '\u{0}', '\u{7f}']), "{e}");
        assert_eq!(unescape(&e).as_deref(), Some(s));
        assert_eq!(unescape("%4"), None);
        assert_eq!(unescape("%"), None);
        assert_eq!(
            unescape("%+1"),
            None,
            "from_str_radix alone would take a sign"
        );
    }
}

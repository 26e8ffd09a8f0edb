//! A blocking web app that keeps its visitors' sessions in sessionstore,
//! through a cookie, the way RAIN's session middleware does.
//!
//! ```text
//! cargo run --example webapp -- [--engine sled|redb] [PORT] [DB]
//! cargo run --features redis --example webapp -- --redis URL [--namespace NS] [PORT]
//! ```
//!
//! `PORT` (or `WEBAPP_PORT`) defaults to 8000; 0 picks a free port. `DB` (or
//! `WEBAPP_DB`) defaults to `./webapp-sessions`. The server listens on
//! 127.0.0.1 only and prints the address it is bound to. `--engine` picks
//! the storage engine of a new store (default: the store's own, else redb).
//!
//! While it runs, `sessionctl --db DB` operates its store through the
//! store's control socket (docs/control.md): `sessionctl --db DB list`,
//! `destroy SID` (that visitor's next request starts a new session, and the
//! app logs the `Destroyed` event), `destroy-all-of NAME`.
//!
//! With `--redis URL` the sessions live on that Redis server instead (in the
//! namespace `NS`, default `webapp`), so several app servers, on several
//! ports or machines, share them: a visitor logged in on one is logged in on
//! all. The app is written against the `SessionStore` trait and does not
//! know which store it runs on.
//!
//! - A visitor without a valid session gets a new one and a cookie
//!   `sid=…; HttpOnly; SameSite=Lax; Path=/`. The cookie's id is only ever
//!   used to look a session up: an unknown, forged or expired id is never
//!   adopted, the visitor gets a fresh random one (strict mode).
//! - `GET /` counts requests in the session's global scope and page views in
//!   the `home` component's scope, and shows both. The counters go through
//!   `update_with`, so concurrent requests of one visitor never lose a count.
//! - Requests are served by [`THREADS`] threads.
//! - `POST /login` (form field `user`) moves the session to a new id with
//!   `regenerate`, against session fixation, and stores the user name.
//! - `POST /logout` destroys the session and clears the cookie.
//! - `POST /logout-all` ("log out of all devices") destroys every session of
//!   the logged-in user (`destroy_all_of`: the login made the user the
//!   session's principal with `set_principal`) and clears the cookie: the
//!   user's other browsers are logged out at their next request.
//! - Every lifecycle event of the store (`subscribe`) is logged on stderr by
//!   a thread of its own, `webapp-events`.
//! - Every request that has a session ends with a save of its global scope:
//!   the heartbeat that keeps an idle session alive.
//!
//! Behind TLS, add `Secure` to the cookie ([`COOKIE_ATTRIBUTES`]).

use std::io::{Cursor, Read};
use std::net::SocketAddr;
use std::sync::Arc;

use sessionstore::{Error, Session, SessionStore};
use tiny_http::{Header, Method, Request, Response, Server};

/// The cookie that carries the session id.
pub const COOKIE: &str = "sid";
/// The attributes of every session cookie.
pub const COOKIE_ATTRIBUTES: &str = "HttpOnly; SameSite=Lax; Path=/";
/// The component whose scope holds the home page's view counter.
pub const HOME: &str = "home";
/// The largest request body read, in bytes.
const MAX_BODY: u64 = 4096;
/// The longest user name accepted, in characters.
const MAX_USER: usize = 64;

/// How many threads serve requests.
pub const THREADS: usize = 4;

/// The namespace of the app's keys on Redis, unless `--namespace` says otherwise.
pub const REDIS_NAMESPACE: &str = "webapp";

/// The web app: a store, and a handler for each request.
#[derive(Clone)]
pub struct App {
    store: Arc<dyn SessionStore + Send + Sync>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

type Reply = Response<Cursor<Vec<u8>>>;

/// A request's session: its global scope, and whether the visitor needs a new cookie.
struct Visit {
    session: Session,
    new_cookie: bool,
}

impl App {
    /// An app that keeps its sessions in `store`: an embedded `Store`, a
    /// `RedisStore`, or any other `SessionStore`.
    ///
    /// Starts the thread that logs the store's events on stderr. It holds
    /// only the receiver, and ends when the store (and so its sender) is gone.
    pub fn new(store: impl SessionStore + Send + Sync + 'static) -> App {
        let events = store.subscribe();
        let spawned = std::thread::Builder::new()
            .name("webapp-events".into())
            .spawn(move || {
                for event in events {
                    eprintln!("webapp: event {event:?}");
                }
            });
        if let Err(e) = spawned {
            eprintln!("webapp: events are not logged: cannot start a thread: {e}");
        }
        App {
            store: Arc::new(store),
        }
    }

    /// Answers requests on [`THREADS`] threads until the server is unblocked.
    pub fn serve(&self, server: &Server) {
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    while let Ok(request) = server.recv() {
                        self.respond(request);
                    }
                    // `unblock` wakes one waiting thread: pass it on, so
                    // that every serving thread stops.
                    server.unblock();
                });
            }
        });
    }

    /// Answers one request. A store error is logged and answered with 500;
    /// nothing about it reaches the visitor.
    pub fn respond(&self, mut request: Request) {
        let reply = self.handle(&mut request).unwrap_or_else(|e| {
            eprintln!("webapp: {} {}: {e}", request.method(), request.url());
            text(500, "internal error\n")
        });
        if let Err(e) = request.respond(reply) {
            eprintln!("webapp: cannot send a response: {e}");
        }
    }

    fn handle(&self, request: &mut Request) -> Result<Reply, Error> {
        let method = request.method().clone();
        let path = request.url().split('?').next().unwrap_or("").to_owned();
        match (method, path.as_str()) {
            (Method::Get, "/") => self.with_session(request, |app, visit, _| app.home(visit)),
            (Method::Post, "/login") => self.with_session(request, App::login),
            (Method::Post, "/logout") => self.logout(request),
            (Method::Post, "/logout-all") => self.logout_all(request),
            (_, "/" | "/login" | "/logout" | "/logout-all") => {
                Ok(text(405, "method not allowed\n"))
            }
            _ => Ok(text(404, "not found\n")),
        }
    }

    /// The middleware: find or create the session, run `page`, save the
    /// global scope (the heartbeat), and set the cookie if the id is new.
    fn with_session(
        &self,
        request: &mut Request,
        page: impl FnOnce(&App, &mut Visit, &mut Request) -> Result<Reply, Error>,
    ) -> Result<Reply, Error> {
        let mut visit = self.begin(request)?;
        let reply = page(self, &mut visit, request)?;
        self.store.save(&mut visit.session)?;
        Ok(if visit.new_cookie {
            reply.with_header(set_cookie(&format!(
                "{COOKIE}={}; {COOKIE_ATTRIBUTES}",
                visit.session.id()
            )))
        } else {
            reply
        })
    }

    /// Strict mode: a cookie's id is used only if it names a live session.
    fn begin(&self, request: &Request) -> Result<Visit, Error> {
        if let Some(sid) = cookie_sid(request) {
            match self.store.get(&sid, None) {
                Ok(Some(session)) => {
                    return Ok(Visit {
                        session,
                        new_cookie: false,
                    });
                }
                // Unknown, destroyed or expired: a fresh id below.
                Ok(None) => {}
                // Not even a well-formed id: forged; a fresh id below.
                Err(Error::InvalidId { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Visit {
            session: self.store.create()?,
            new_cookie: true,
        })
    }

    fn home(&self, visit: &mut Visit) -> Result<Reply, Error> {
        let sid = visit.session.id().to_owned();
        let requests = self.count(&sid, None, "requests")?;
        let views = self.count(&sid, Some(HOME), "views")?;
        let user = visit.session.get::<String>("user")?;
        Ok(page(user.as_deref(), requests, views))
    }

    /// Adds one to the counter `key` of a scope and returns its new value,
    /// through `update_with`: a concurrent request of the same visitor makes
    /// it read and add again, never lose a count.
    fn count(&self, sid: &str, component: Option<&str>, key: &str) -> Result<u64, Error> {
        let mut value = 0;
        let live = self.store.update_with(sid, component, &mut |s| {
            value = s.get::<u64>(key)?.unwrap_or(0) + 1;
            s.set(key, &value)
        })?;
        if !live {
            return Err(Error::NotFound { id: sid.to_owned() });
        }
        Ok(value)
    }

    fn login(&self, visit: &mut Visit, request: &mut Request) -> Result<Reply, Error> {
        let mut body = String::new();
        let read = request
            .as_reader()
            .take(MAX_BODY + 1)
            .read_to_string(&mut body);
        if read.is_err() || body.len() as u64 > MAX_BODY {
            return Ok(text(400, "the form must be at most 4 KiB of UTF-8\n"));
        }
        let user = form_field(&body, "user").unwrap_or_default();
        let user = user.trim();
        if user.is_empty() || user.chars().count() > MAX_USER || user.chars().any(char::is_control)
        {
            return Ok(text(400, "user must be 1 to 64 printable characters\n"));
        }
        // Keep what the visitor did before logging in, under a new id.
        let requests = visit.session.get::<u64>("requests")?.unwrap_or(0) + 1;
        let sid = self.store.regenerate(visit.session.id())?;
        visit.session = self
            .store
            .get(&sid, None)?
            .ok_or_else(|| Error::NotFound { id: sid.clone() })?;
        visit.session.set("requests", &requests)?;
        visit.session.set("user", user)?;
        // The user owns the session now: "log out of all devices" finds it.
        self.store.set_principal(&sid, Some(user))?;
        visit.new_cookie = true;
        Ok(redirect_home())
    }

    /// Destroys every session of the user the cookie's session belongs to
    /// (only that session, for a visitor who is not logged in).
    fn logout_all(&self, request: &Request) -> Result<Reply, Error> {
        if let Some(sid) = cookie_sid(request) {
            match self.store.principal(&sid) {
                Ok(Some(user)) => {
                    let ended = self.store.destroy_all_of(&user)?;
                    eprintln!("webapp: logged {user:?} out of {ended} sessions");
                }
                Ok(None) => {
                    self.store.destroy(&sid)?;
                }
                Err(Error::InvalidId { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(redirect_home().with_header(set_cookie(&format!(
            "{COOKIE}=; Max-Age=0; {COOKIE_ATTRIBUTES}"
        ))))
    }

    /// Logout needs no session: it destroys the one the cookie names, if any.
    fn logout(&self, request: &Request) -> Result<Reply, Error> {
        if let Some(sid) = cookie_sid(request) {
            match self.store.destroy(&sid) {
                Ok(_) | Err(Error::InvalidId { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(redirect_home().with_header(set_cookie(&format!(
            "{COOKIE}=; Max-Age=0; {COOKIE_ATTRIBUTES}"
        ))))
    }
}

/// The value of the `sid` cookie, if the request has one.
fn cookie_sid(request: &Request) -> Option<String> {
    request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Cookie"))
        .flat_map(|h| h.value.as_str().split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// One field of an `application/x-www-form-urlencoded` body, decoded.
fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| url_decode(k).as_deref() == Some(name))
        .and_then(|(_, v)| url_decode(v))
}

/// Decodes `+` and `%XX`; `None` for a bad escape or bytes that are not UTF-8.
fn url_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                // Two hex digits are at most 255.
                out.push((hi * 16 + lo) as u8);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn page(user: Option<&str>, requests: u64, views: u64) -> Reply {
    let (greeting, form) = match user {
        Some(u) => (
            format!("Hello, <b id=\"user\">{}</b>.", html_escape(u)),
            "<form method=\"post\" action=\"/logout\"><button>Log out</button></form>\n\
             <form method=\"post\" action=\"/logout-all\"><button>Log out of all devices</button></form>"
                .to_owned(),
        ),
        None => (
            "Hello, visitor.".to_owned(),
            "<form method=\"post\" action=\"/login\"><input name=\"user\" placeholder=\"name\"> \
             <button>Log in</button></form>"
                .to_owned(),
        ),
    };
    let body = format!(
        "<!doctype html>\n<title>sessionstore web app</title>\n<p>{greeting}</p>\n\
         <p>Requests in this session (global scope): <b id=\"requests\">{requests}</b></p>\n\
         <p>Views of this page (component \"{HOME}\"): <b id=\"views\">{views}</b></p>\n{form}\n"
    );
    Response::from_data(body.into_bytes())
        .with_header(header("Content-Type", "text/html; charset=utf-8"))
}

fn text(status: u16, body: &str) -> Reply {
    Response::from_data(body.as_bytes().to_vec())
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn redirect_home() -> Reply {
    text(303, "see /\n").with_header(header("Location", "/"))
}

fn set_cookie(value: &str) -> Header {
    header("Set-Cookie", value)
}

fn header(name: &str, value: &str) -> Header {
    match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
        Ok(h) => h,
        // Every name and value here is ASCII without line breaks, made above.
        Err(()) => unreachable!("a header built by this program is invalid: {name}: {value}"),
    }
}

/// Binds 127.0.0.1:`port` (0 for any free port).
///
/// # Errors
///
/// The address is taken or cannot be bound.
pub fn bind(port: u16) -> Result<(Server, SocketAddr), Box<dyn std::error::Error + Send + Sync>> {
    let server = Server::http(("127.0.0.1", port))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or("the server is not bound to an IP address")?;
    Ok((server, addr))
}

/// What the command line asks for.
struct Args {
    port: u16,
    db: String,
    engine: Option<sessionstore::Engine>,
    redis: Option<String>,
    namespace: String,
}

fn parse_args() -> Result<Args, Box<dyn std::error::Error + Send + Sync>> {
    let mut positional = Vec::new();
    let mut redis = None;
    let mut namespace = None;
    let mut engine = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--engine" => {
                let name = args.next().ok_or("--engine needs sled or redb")?;
                engine = Some(name.parse::<sessionstore::Engine>()?);
            }
            "--redis" => redis = Some(args.next().ok_or("--redis needs a URL")?),
            "--namespace" => namespace = Some(args.next().ok_or("--namespace needs a name")?),
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}").into()),
            _ => positional.push(arg),
        }
    }
    if engine.is_some() && redis.is_some() {
        return Err("--engine is for a DB directory, not --redis".into());
    }
    if namespace.is_some() && redis.is_none() {
        return Err("--namespace is for --redis only".into());
    }
    let mut positional = positional.into_iter();
    let port = positional
        .next()
        .or_else(|| std::env::var("WEBAPP_PORT").ok())
        .unwrap_or_else(|| "8000".into());
    let port: u16 = port
        .parse()
        .map_err(|e| format!("bad port {port:?}: {e}"))?;
    let db = positional.next();
    if db.is_some() && redis.is_some() {
        return Err("give a DB directory or --redis, not both".into());
    }
    if let Some(extra) = positional.next() {
        return Err(format!("unexpected argument {extra:?}").into());
    }
    Ok(Args {
        port,
        db: db
            .or_else(|| std::env::var("WEBAPP_DB").ok())
            .unwrap_or_else(|| "webapp-sessions".into()),
        engine,
        redis,
        namespace: namespace.unwrap_or_else(|| REDIS_NAMESPACE.into()),
    })
}

/// The app on the Redis server at `url`, in `namespace`.
///
/// # Errors
///
/// The server cannot be reached, or the namespace is not valid.
#[cfg(feature = "redis")]
pub fn on_redis(url: &str, namespace: &str) -> sessionstore::Result<App> {
    let store = sessionstore::RedisConfig::new(url)
        .namespace(namespace)
        .open()?;
    Ok(App::new(store))
}

#[cfg(feature = "redis")]
fn open_redis(url: &str, namespace: &str) -> Result<App, Box<dyn std::error::Error + Send + Sync>> {
    Ok(on_redis(url, namespace)?)
}

#[cfg(not(feature = "redis"))]
fn open_redis(_: &str, _: &str) -> Result<App, Box<dyn std::error::Error + Send + Sync>> {
    Err(
        "this build has no Redis store: cargo run --features redis --example webapp -- --redis URL"
            .into(),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = parse_args()?;
    let (app, place) = match &args.redis {
        Some(url) => (
            open_redis(url, &args.namespace)?,
            format!("{url} (namespace {})", args.namespace),
        ),
        None => {
            let mut config = sessionstore::Config::new(&args.db);
            if let Some(engine) = args.engine {
                config = config.engine(engine);
            }
            (App::new(config.open()?), args.db.clone())
        }
    };
    let (server, addr) = bind(args.port)?;
    println!("webapp: sessions in {place}, listening on http://{addr}/");
    app.serve(&server);
    Ok(())
}

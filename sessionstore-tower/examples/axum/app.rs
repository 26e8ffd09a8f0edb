//! The example's application, shared by `main.rs`, the tests and the
//! benchmark: a visit counter, login, logout, and "log out everywhere".
//!
//! | route | what it does |
//! |---|---|
//! | `GET /counter` | counts this visitor's requests; the first one starts a session |
//! | `GET /whoami` | the logged-in user, or `anonymous` |
//! | `POST /login?user=NAME` | logs in: a new session id (`cycle_id`), the user saved, the session tied to the user (`set_principal`) |
//! | `POST /logout` | ends this session (`flush`) |
//! | `POST /logout-everywhere` | ends every session of this user (`destroy_all_of`), then this one |

#![allow(dead_code)] // each user of this file calls a part of it

use std::future::Future;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use sessionstore::SessionStore;
use sessionstore_tower::TowerStore;
use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

/// The session key of the visit counter.
pub const COUNTER: &str = "counter";
/// The session key of the logged-in user.
pub const USER: &str = "user";

/// An error as a response: 500 with the message, which also goes to stderr.
pub struct AppError(String);

impl<E: std::fmt::Display> From<E> for AppError {
    fn from(e: E) -> Self {
        AppError(e.to_string())
    }
}

impl axum::response::IntoResponse for AppError {
    fn into_response(self) -> axum::response::Response {
        eprintln!("error: {}", self.0);
        (StatusCode::INTERNAL_SERVER_ERROR, self.0).into_response()
    }
}

/// What the app needs from its session store beyond tower-sessions.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Adds one to this visitor's counter and returns it.
    fn increment(&self, session: Session) -> impl Future<Output = Result<u64, AppError>> + Send;
    /// Ties the (saved) session to `user`.
    fn set_user(
        &self,
        session: Session,
        user: String,
    ) -> impl Future<Output = Result<(), AppError>> + Send;
    /// Ends every session of `user`; how many were live.
    fn end_all_of(&self, user: String) -> impl Future<Output = Result<usize, AppError>> + Send;
}

impl<S: SessionStore + Send + Sync + 'static> Backend for TowerStore<S> {
    async fn increment(&self, session: Session) -> Result<u64, AppError> {
        if let Some(id) = session.id() {
            // One atomic read-modify-write in the store: exact under
            // concurrent requests of the same visitor.
            let add_one = |n: Option<u64>| n.unwrap_or(0) + 1;
            if let Some(n) = self.update(id, COUNTER, add_one).await? {
                return Ok(n);
            }
        }
        // A new visitor (or a cookie of a session that ended): the first
        // value starts the session, saved by the middleware.
        session.insert(COUNTER, 1u64).await?;
        Ok(1)
    }

    async fn set_user(&self, session: Session, user: String) -> Result<(), AppError> {
        // Save now, so that the new id exists in the store.
        session.save().await?;
        let id = session
            .id()
            .ok_or("no session id after a save")?
            .to_string();
        self.blocking(move |store| store.set_principal(&id, Some(&user)))
            .await?;
        Ok(())
    }

    async fn end_all_of(&self, user: String) -> Result<usize, AppError> {
        Ok(self
            .blocking(move |store| store.destroy_all_of(&user))
            .await?)
    }
}

/// The same app on tower-sessions' `MemoryStore`, for the benchmark: its
/// counter is a read and an insert, as tower-sessions' own example does.
impl Backend for MemoryStore {
    async fn increment(&self, session: Session) -> Result<u64, AppError> {
        let n = session.get::<u64>(COUNTER).await?.unwrap_or(0) + 1;
        session.insert(COUNTER, n).await?;
        Ok(n)
    }

    async fn set_user(&self, _: Session, _: String) -> Result<(), AppError> {
        Ok(())
    }

    async fn end_all_of(&self, _: String) -> Result<usize, AppError> {
        Err(AppError("MemoryStore keeps no principals".into()))
    }
}

/// The app's routes over `backend`, with sessions from `layer`.
pub fn router<B, T>(backend: B, layer: SessionManagerLayer<T>) -> Router
where
    B: Backend,
    T: tower_sessions::SessionStore + Clone,
{
    Router::new()
        .route("/counter", get(counter::<B>))
        .route("/whoami", get(whoami))
        .route("/login", post(login::<B>))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere::<B>))
        .with_state(backend)
        .layer(layer)
}

async fn counter<B: Backend>(State(b): State<B>, session: Session) -> Result<String, AppError> {
    Ok(b.increment(session).await?.to_string())
}

async fn whoami(session: Session) -> Result<String, AppError> {
    let user: Option<String> = session.get(USER).await?;
    Ok(user.unwrap_or_else(|| "anonymous".into()))
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login<B: Backend>(
    State(b): State<B>,
    session: Session,
    Query(Login { user }): Query<Login>,
) -> Result<String, AppError> {
    // A new id on login, against session fixation; the data moves with it.
    session.cycle_id().await?;
    session.insert(USER, &user).await?;
    b.set_user(session, user.clone()).await?;
    Ok(format!("logged in as {user}"))
}

async fn logout(session: Session) -> Result<&'static str, AppError> {
    session.flush().await?;
    Ok("logged out")
}

async fn logout_everywhere<B: Backend>(
    State(b): State<B>,
    session: Session,
) -> Result<String, AppError> {
    let Some(user) = session.get::<String>(USER).await? else {
        return Ok("not logged in".into());
    };
    let ended = b.end_all_of(user).await?;
    session.flush().await?;
    Ok(format!("ended {ended} sessions"))
}

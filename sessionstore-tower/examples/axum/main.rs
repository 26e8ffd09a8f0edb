//! An axum server whose sessions live in a sessionstore on disk.
//!
//! ```sh
//! cargo run -p sessionstore-tower --example axum   # listens on 127.0.0.1:3000
//! ```
//!
//! Then, with curl keeping cookies in a jar:
//!
//! ```sh
//! curl -c jar -b jar localhost:3000/counter           # 1, 2, 3, …
//! curl -c jar -b jar -X POST 'localhost:3000/login?user=ada'
//! curl -c jar -b jar localhost:3000/whoami            # ada
//! curl -c jar -b jar -X POST localhost:3000/logout-everywhere
//! ```
//!
//! Arguments: `[DIR] [ADDR]`, by default `./axum-sessions` and `127.0.0.1:3000`.
//! Stop it and start it again: the counter goes on where it was.

mod app;

use std::time::Duration;

use sessionstore::Config;
use sessionstore_tower::TowerStore;
use tower_sessions::cookie::time;
use tower_sessions::{Expiry, SessionManagerLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "axum-sessions".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());

    let store = Config::new(&dir)
        .idle_timeout(Duration::from_secs(30 * 60))
        .open()?;
    let sessions = TowerStore::new(store);
    let layer = SessionManagerLayer::new(sessions.clone())
        .with_secure(false) // plain http on localhost; keep the default (true) behind TLS
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30)));
    let app = app::router(sessions, layer);

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "listening on http://{}, sessions in {dir}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

//! [`Config::open`]: the store, then its control socket (docs/control.md).
//! Apart from `store.rs` so that the control socket's code, which calls the
//! store's public API, and the store do not import each other.

use crate::embedded::config::Config;
use crate::embedded::store::Store;
use crate::error::Result;

impl Config {
    /// Opens the store, creating it if the directory does not hold one yet,
    /// replays its journal, and starts serving its control socket ([`control_socket`](Config::control_socket)).
    ///
    /// # Errors
    ///
    /// - [`Error::InUse`](crate::Error::InUse) if the store is already open, here or in another process;
    /// - [`Error::NotAStore`](crate::Error::NotAStore) if the path holds something else;
    /// - [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming the setting, for an
    ///   empty path or a setting out of the range its setter documents, before
    ///   anything is created or written;
    /// - [`Error::Storage`](crate::Error::Storage) or [`Error::Io`](crate::Error::Io) if the engine or the file system fails;
    /// - with `control_socket(true)`, [`Error::Control`](crate::Error::Control)
    ///   or [`Error::Io`](crate::Error::Io) if the socket cannot be served.
    pub fn open(self) -> Result<Store> {
        let (serve, required) = self.effective_control_socket();
        let store = Store::from_config(self)?;
        if serve {
            serve_control(&store, required)?;
        }
        Ok(store)
    }
}

#[cfg(unix)]
fn serve_control(store: &Store, required: bool) -> Result<()> {
    let join_limit = store.core().write_timeout();
    match crate::embedded::control::Server::start(store.core_handle(), store.path(), join_limit) {
        Ok(server) => {
            store.attach(Box::new(server));
            Ok(())
        }
        Err(e) if required => Err(e),
        Err(e) => {
            log::warn!(
                "sessionstore: the store at {} serves no control socket: {e} (Config::control_socket(true) makes this an error at open)",
                store.path().display()
            );
            Ok(())
        }
    }
}

#[cfg(not(unix))]
fn serve_control(_: &Store, _: bool) -> Result<()> {
    Ok(())
}

//! The I/O timeout holds on every pooled connection, set once when the pool
//! opens it: a server that stops answering gives an error naming it, not a
//! call that hangs.

use std::time::{Duration, Instant};

use sessionstore::{Error, ManualClock, SessionStore};

use crate::common::servers::Server;

#[test]
fn a_server_that_stops_answering_is_an_error_after_the_io_timeout() -> sessionstore::Result<()> {
    let server = Server::start(&["--enable-debug-command", "yes"]);
    let store = super::config(&server.url(), &ManualClock::default(), "timeouts")
        .io_timeout(Duration::from_millis(500))
        .open()?;
    // Connections in the pool before the server stalls.
    let sid = store.create()?.id().to_owned();
    assert!(store.get(&sid, None)?.is_some());
    std::thread::scope(|scope| {
        scope.spawn(|| server.cli(&["DEBUG", "SLEEP", "3"]));
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        let got = store.get(&sid, None);
        let took = start.elapsed();
        assert!(matches!(got, Err(Error::Timeout { .. })), "{got:?}");
        let message = got.unwrap_err().to_string();
        assert!(message.contains("reading a session"), "{message}");
        assert!(message.contains(&server.url()), "{message}");
        assert!(message.contains("500ms"), "{message}");
        assert!(took < Duration::from_millis(2_500), "took {took:?}");
    });
    Ok(())
}

//! The control socket: a running store serves `sessionstore.sock` in its
//! directory, so that an operator (`sessionctl`) can see and end sessions
//! while the application runs. See docs/control.md.

mod answer;
mod client;
#[cfg(any(test, feature = "corruption-testing"))]
mod fuzz;
mod listener;
mod peer;
mod protocol;
mod serve;

pub use client::{ControlClient, ControlIds, ControlSessions};
#[cfg(any(test, feature = "corruption-testing"))]
pub use fuzz::fuzz_protocol;
pub(crate) use listener::is_control_file;
pub(crate) use serve::Server;

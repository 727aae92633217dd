//! The control socket: the wire protocol shared by the daemon and the CLI, the
//! daemon's server, claiming the socket path, the CLI's client and the socket probe.

pub mod client;
pub mod follow;
pub mod probe;
pub mod protocol;
pub mod reply;
pub mod server;
pub mod socket;
pub mod status;

#[cfg(test)]
mod golden;

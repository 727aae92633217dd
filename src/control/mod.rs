//! The control socket: the wire protocol shared by the daemon and the CLI, the
//! daemon's server, and claiming the socket path.

pub mod protocol;
pub mod server;
pub mod socket;

//! The proxy on its own: forwarding, hostile clients, the relay and splice paths, against upstreams written in Rust.
//!
//! One test binary per part (see docs/testing.md); the shared harness is `tests/support/`.

#[path = "../support/mod.rs"]
mod support;

mod forwarding;
mod hostile;
mod relay;
mod splice;

//! Logs, metrics and systemd notification of the real daemon.
//!
//! One test binary per part (see docs/testing.md); the shared harness is `tests/support/`.

#[path = "../support/mod.rs"]
mod support;

mod logging;
mod metrics;
mod process_logs;
mod systemd;

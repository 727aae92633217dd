//! The real daemon end to end: bootstrap, the control socket, deploys, faults, the state file, services, supervision at scale, zero downtime and Lua hooks in a running daemon.
//!
//! One test binary per part (see docs/testing.md); the shared harness is `tests/support/`.

#[path = "../support/mod.rs"]
mod support;

mod bootstrap;
mod control;
mod deploy;
mod faults;
mod lua;
mod persist;
mod protocol_golden;
mod rollout;
mod services;
mod supervision;
mod traffic;
mod upgrade;
mod upgrade_counters;
mod upgrade_fallback;
mod zero_downtime;

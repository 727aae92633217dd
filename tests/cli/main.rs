//! The command line driven as a user drives it: the real `rollbridge` binary against fake and real daemons, guides, and the JavaScript tool's compatibility.
//!
//! One test binary per part (see docs/testing.md); the shared harness is `tests/support/`.

#[path = "../support/mod.rs"]
mod support;

mod client;
mod doctor;
mod e2e;
mod ensure;
mod follow;
mod guides;
mod human;
mod lua;
mod operator;
mod predeploy;
mod recover;

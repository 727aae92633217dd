//! The daemon: the single owner of releases, services, singletons and the event
//! history, and the orchestration of deploy, rollback, stop, restart and shutdown.
//!
//! `state.rs` explains who owns what and which locks exist; each flow lives in
//! its own file (`deploy.rs`, `drain.rs`, `rollback.rs`, `stop.rs`,
//! `restart.rs`, `shutdown.rs`, `retire.rs`), and `run.rs` starts a daemon.

pub mod bootstrap;
pub mod definition;
pub mod deploy;
pub mod drain;
pub mod errors;
pub mod fd_store;
pub mod handler;
mod hook_warnings;
pub mod orphans;
pub mod ports;
pub mod release;
pub mod reload;
pub mod restart;
pub mod retention;
pub mod retire;
pub mod rollback;
pub mod rollout;
pub mod run;
pub mod runtime;
pub mod setup;
pub mod shutdown;
pub mod signals;
pub mod startup_exits;
pub mod state;
pub mod state_file;
pub mod state_writer;
pub mod status;
pub mod stop;
pub mod traffic;
pub mod upgrade;

pub use deploy::{DeployOutcome, DeployRequest};
pub use state::Daemon;

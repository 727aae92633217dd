//! The daemon: the single owner of releases, services, singletons and the event
//! history, and the orchestration of deploy, rollback, stop, restart and shutdown.

pub mod bootstrap;
pub mod events;
pub mod persist;
pub mod ports;
pub mod reload;
pub mod retention;
pub mod runtime;

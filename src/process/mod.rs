//! Spawning and supervising managed processes.
//!
//! A managed process is a `/bin/sh -c <command>` wrapper that leads its own session
//! and process group. [`ManagedProcess`] tracks it (state, exit, output, crash
//! restarts, memory) and stops it gracefully; [`wait_healthy`] runs the readiness
//! loop; [`proc_table`] and [`group_alive`] read `/proc` for the rest of the daemon.
//!
//! The daemon is deliberately *not* a child subreaper: tokio reaps only the children
//! it spawned (by pid), so orphans adopted through `PR_SET_CHILD_SUBREAPER` would
//! stay zombies unless we reaped with `waitpid(-1)`, which would steal the exit
//! statuses tokio waits for. Group liveness ignores zombies instead.

pub mod definition;
pub mod group;
pub mod health;
pub mod managed;
pub mod memory;
pub mod output;
pub mod proc_table;
pub mod restart_policy;
pub mod spawn;
mod status;
mod stop;

pub use definition::{ProcessDefinition, ProcessState, StartReason};
pub use group::{ProcessGroup, group_alive};
pub use health::{HealthError, health_deadline, wait_healthy};
pub use managed::{ManagedProcess, Supervision};
pub use output::{LogLine, Stream};
pub use proc_table::{GroupMember, proc_table};
pub use spawn::SpawnError;

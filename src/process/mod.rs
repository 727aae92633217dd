//! Spawning and supervising managed processes.
//!
//! A managed process is a `/bin/sh -c <command>` wrapper that leads its own session
//! and process group. [`ManagedProcess`] tracks it (state, exit, output, crash
//! restarts, memory) and stops it gracefully; [`wait_healthy`] runs the readiness
//! loop. One [`sampler::Sampler`] per daemon reads `/proc` in one pass for every
//! supervised process (`children`, memory verdicts, liveness); [`tree`] decides
//! which process belongs to which managed process, also after it left the
//! group; [`cgroup`] gives each process a cgroup of its own where the daemon may.
//!
//! The daemon is a child subreaper ([`sampler::become_subreaper`]): orphans of
//! managed processes are reparented to it and stay findable. It never reaps with
//! `waitpid(-1)` (that would steal the exit statuses tokio waits for); the
//! sampler reaps adopted zombies by pid.

pub mod adoption;
pub mod cgroup;
pub mod definition;
pub mod group;
pub mod handover;
pub mod health;
pub mod leftovers;
pub mod managed;
pub mod memory;
pub mod output;
pub mod pidfd;
pub mod proc_table;
pub mod restart_policy;
pub mod sampler;
pub mod snapshot;
pub mod spawn;
mod status;
mod stop;
pub mod tree;

pub use definition::{ProcessDefinition, ProcessState, StartReason};
pub use group::{ProcessGroup, group_alive};
pub use handover::ProcessHandover;
pub use health::{HealthError, health_deadline, wait_healthy};
pub use managed::{ManagedProcess, Supervision};
pub use output::{LogLine, Stream};
pub use proc_table::{GroupMember, proc_table};
pub use spawn::SpawnError;

//! Built-in lifecycle plugins: `command`, `signal` and `wait-exit`.

use super::shell::{ShellOutcome, millis_until, run_bounded};
use crate::events::{CommandHookOutcome, Event, ProcessEvent, ProcessScope};
use crate::plugins::{HookCall, HookError, HookFuture, LifecyclePlugin, Stage};
use crate::process::ProcessGroup;
use crate::util::signals::parse_signal;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use std::sync::Arc;

/// The event label of a command hook on a stage (`quiet command timed out`, …).
pub fn command_label(stage: Stage) -> &'static str {
    match stage {
        Stage::Quiet => "quiet command",
        Stage::Drain => "drain command",
        Stage::Stop => "stop command",
        Stage::Health => "health command",
        Stage::Match => "match command",
    }
}

/// A shell command as a lifecycle hook. `ROLLBRIDGE_PID` is the current wrapper
/// pid for quiet and drain (empty once the wrapper has exited) and the retained
/// process-group id for stop, so a stop command can still reach stragglers.
pub struct CommandHook {
    /// `None` when `{plugin = "command"}` came without a `command` option.
    pub command: Option<String>,
}

impl LifecyclePlugin for CommandHook {
    fn name(&self) -> &str {
        "command"
    }

    fn run(&self, call: HookCall) -> HookFuture<()> {
        let command = self.command.clone();
        Box::pin(async move {
            let Some(command) = command else {
                return Err(HookError::Failed(
                    "the command plugin needs a `command` option holding the shell command to run"
                        .into(),
                ));
            };
            let label = command_label(call.stage);
            let target = match call.stage {
                Stage::Stop => call.process.pgid,
                _ => call.process.pid,
            };
            let mut env = call.process.env.clone();
            env.push((
                "ROLLBRIDGE_PID".into(),
                target.map(|p| p.to_string()).unwrap_or_default(),
            ));
            let timeout_ms = millis_until(call.deadline);
            let outcome = run_bounded(&command, &call.process.cwd, &env, call.deadline).await;
            let outcome = match outcome {
                ShellOutcome::Exited(0) => return Ok(()),
                ShellOutcome::Exited(code) => CommandHookOutcome::ExitedNonZero { code },
                ShellOutcome::Signaled(signal) => CommandHookOutcome::ExitedOnSignal { signal },
                ShellOutcome::TimedOut => CommandHookOutcome::TimedOut { timeout_ms },
                ShellOutcome::Failed(error) => CommandHookOutcome::Failed { error },
            };
            let event = Event::Process {
                scope: ProcessScope {
                    process_id: call.process.instance_id.clone(),
                    release_id: call.process.release_id.clone(),
                },
                event: ProcessEvent::CommandHook {
                    hook: label,
                    id: call.process.instance_id.clone(),
                    outcome,
                },
            };
            let message = event.to_parts().0.into_owned();
            call.events.emit(event);
            Err(HookError::Reported(message))
        })
    }
}

/// Sends a named signal (option `signal`, default `SIGTERM`) to the whole process
/// group.
pub struct SignalHook;

impl LifecyclePlugin for SignalHook {
    fn name(&self) -> &str {
        "signal"
    }

    fn run(&self, call: HookCall) -> HookFuture<()> {
        Box::pin(async move {
            let name = match call.options.get("signal") {
                None => "SIGTERM".to_string(),
                Some(value) => value.as_str().map(str::to_string).ok_or_else(|| {
                    HookError::Failed(
                        "the signal plugin's `signal` option must be a signal name such as \"TSTP\""
                            .into(),
                    )
                })?,
            };
            let signal = parse_signal(&name).ok_or_else(|| {
                HookError::Failed(format!(
                    "the signal plugin got an unknown signal name {name:?}; use a name such as \"TERM\" or \"SIGTSTP\""
                ))
            })?;
            let Some(pgid) = call.process.pgid.or(call.process.pid) else {
                return Ok(());
            };
            match kill(Pid::from_raw(-pgid), signal) {
                Ok(()) | Err(Errno::ESRCH) => Ok(()),
                Err(e) => Err(HookError::Failed(format!(
                    "could not send {} to process group {pgid}: {e}",
                    signal.as_str()
                ))),
            }
        })
    }
}

/// Waits until the process group has exited, up to the stage's deadline. On the
/// drain stage running out of time is the normal end of a drain and counts as
/// done; on the quiet and stop stages it is a failure (so a stop falls back to
/// the stop signal).
pub struct WaitExitHook;

impl LifecyclePlugin for WaitExitHook {
    fn name(&self) -> &str {
        "wait-exit"
    }

    fn run(&self, call: HookCall) -> HookFuture<()> {
        Box::pin(async move {
            let Some(pgid) = call.process.pgid.or(call.process.pid) else {
                return Ok(());
            };
            let group = Arc::new(ProcessGroup::new(pgid));
            let bound = call
                .deadline
                .saturating_duration_since(tokio::time::Instant::now());
            if group.wait_empty(Some(bound)).await || call.stage == Stage::Drain {
                return Ok(());
            }
            Err(HookError::Failed(format!(
                "process group {pgid} was still running after {} ms",
                bound.as_millis()
            )))
        })
    }
}

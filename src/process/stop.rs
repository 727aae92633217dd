//! The graceful stop sequence: quiet → drain → stop signal or hook → wait for the
//! whole tree (the group and every descendant that left it) → SIGKILL to all of
//! them as the last resort → `cgroup.kill` where processes have cgroups.
//!
//! Every step is bounded (except the group wait under `gracefulStopMs:
//! "indefinite"`), every hook is resolved through the plugin registry, and no hook
//! failure ever aborts the sequence.

use super::definition::ProcessState;
use super::group::ProcessGroup;
use super::managed::{ManagedProcess, RunFlag};
use crate::config::hook::HookSpec;
use crate::config::model::GracefulStop;
use crate::events::ProcessEvent;
use crate::plugins::{HookCall, HookError, Stage};
use crate::util::signals::parse_signal;
use nix::sys::signal::Signal;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

/// How long the group may take to vanish after SIGKILL.
const AFTER_KILL_WAIT: Duration = Duration::from_millis(5000);
/// How long we wait for the wrapper's exit to be reaped once its group is empty.
const EXIT_NOTICE_WAIT: Duration = Duration::from_millis(5000);
/// Extra time a plugin gets past its deadline to report its own outcome before it
/// is abandoned.
const HOOK_GRACE: Duration = Duration::from_millis(250);

/// Clears a run slot when the run ends, even if its task panics or is aborted, so
/// a later call starts a fresh run instead of waiting on a dead one.
struct RunGuard<F: Fn()> {
    clear: F,
}

impl<F: Fn()> Drop for RunGuard<F> {
    fn drop(&mut self) {
        (self.clear)()
    }
}

async fn wait_flag(mut flag: RunFlag) {
    let _ = flag.wait_for(|done| *done).await;
}

impl ManagedProcess {
    /// Joins the run in `slot` or starts `run` in a task of its own (so it finishes
    /// even if every caller goes away), and waits for it.
    async fn shared_run<Fut>(
        self: &Arc<Self>,
        slot: fn(&mut super::managed::Inner) -> &mut Option<RunFlag>,
        clear_when_done: bool,
        run: impl FnOnce(Arc<Self>) -> Fut,
    ) where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let flag = {
            let mut inner = self.lock();
            match slot(&mut inner) {
                Some(flag) => flag.clone(),
                None => {
                    let (done_tx, done_rx) = watch::channel(false);
                    *slot(&mut inner) = Some(done_rx.clone());
                    let me = self.clone();
                    let work = run(self.clone());
                    tokio::spawn(async move {
                        let _guard = RunGuard {
                            clear: || {
                                if clear_when_done {
                                    *slot(&mut me.lock()) = None;
                                }
                                done_tx.send_replace(true);
                            },
                        };
                        work.await;
                    });
                    done_rx
                }
            }
        };
        wait_flag(flag).await;
    }

    /// The quiet step alone, memoised until the next start: marks the stop as
    /// intentional, stops memory supervision, cancels a pending crash restart and
    /// runs the quiet hook. Concurrent callers share one run.
    pub async fn quiesce(self: &Arc<Self>) {
        self.shared_run(
            |inner| &mut inner.quiesce_run,
            false,
            |me| async move { me.run_quiesce().await },
        )
        .await;
    }

    async fn run_quiesce(self: &Arc<Self>) {
        let quiet = {
            let mut inner = self.lock();
            inner.intentional = true;
            inner.sampling = None;
            if let Some(timer) = inner.restart_timer.take() {
                timer.abort();
            }
            if inner.child.is_none() {
                inner.state = ProcessState::Stopped;
                return;
            }
            inner.state = ProcessState::Stopping;
            inner.def.config.lifecycle.quiet.clone()
        };
        if let Some(spec) = quiet {
            let bound = self.hook_timeout();
            self.run_hook(Stage::Quiet, &spec, bound).await;
        }
    }

    /// The full graceful stop. Concurrent callers share one run. It never waits
    /// longer than its bounds, except for the group wait under
    /// `gracefulStopMs: "indefinite"`.
    pub async fn stop(self: &Arc<Self>) {
        self.shared_run(
            |inner| &mut inner.stop_run,
            true,
            |me| async move { me.run_stop().await },
        )
        .await;
    }

    async fn run_stop(self: &Arc<Self>) {
        let (group, exited) = {
            let inner = self.lock();
            (
                inner.group.clone(),
                inner.child.as_ref().map(|c| c.exited.clone()),
            )
        };
        self.quiesce().await;
        if let Some(group) = group {
            self.stop_group(&group, exited.clone()).await;
            // The last step: whatever is left in the process's cgroup (it may
            // have escaped every other way of finding it) is killed.
            if let Some(cgroup) = group.cgroup() {
                cgroup.kill_and_remove(AFTER_KILL_WAIT).await;
            }
        }
        if let Some(exited) = exited {
            let _ = timeout(EXIT_NOTICE_WAIT, wait_flag(exited)).await;
        }
        let mut inner = self.lock();
        if inner.child.is_none() {
            inner.state = ProcessState::Stopped;
        }
    }

    async fn stop_group(self: &Arc<Self>, group: &Arc<ProcessGroup>, exited: Option<RunFlag>) {
        let def = self.definition();
        let lifecycle = &def.config.lifecycle;
        if !group.alive_now().await {
            return;
        }
        // Stragglers of an exited wrapper are being stopped too: say so.
        self.lock().state = ProcessState::Stopping;
        if lifecycle.drain_timeout_ms > 0 {
            let bound = Duration::from_millis(lifecycle.drain_timeout_ms);
            match (&lifecycle.drain, exited) {
                (Some(spec), _) => {
                    self.run_hook(Stage::Drain, spec, bound).await;
                }
                (None, Some(exited)) => {
                    let _ = timeout(bound, wait_flag(exited)).await;
                }
                (None, None) => {}
            }
        }
        if !group.alive_now().await {
            return;
        }
        let hook_succeeded = match &lifecycle.stop {
            Some(spec) => self.run_hook(Stage::Stop, spec, self.hook_timeout()).await,
            None => false,
        };
        if !hook_succeeded {
            let signal = parse_signal(&def.config.stop_signal).unwrap_or(Signal::SIGTERM);
            let _ = group.signal(signal);
        }
        let window = match def.config.graceful_stop {
            GracefulStop::Millis(ms) => Some(Duration::from_millis(ms)),
            GracefulStop::Indefinite => None,
        };
        if group.wait_empty(window).await {
            return;
        }
        self.emit(ProcessEvent::StopTimedOut {
            id: def.instance_id.clone(),
            pid: group.pgid(),
        });
        let _ = group.signal(Signal::SIGKILL);
        if let Some(cgroup) = group.cgroup() {
            let _ = cgroup.kill();
        }
        group.wait_empty(Some(AFTER_KILL_WAIT)).await;
    }

    /// The bound of the quiet and stop hooks: `gracefulStopMs`, or 30 s when the
    /// stop window is indefinite.
    fn hook_timeout(&self) -> Duration {
        Duration::from_millis(self.lock().def.config.graceful_stop.hook_timeout_ms())
    }

    /// Runs one lifecycle hook through the registry, bounded by `bound`. Returns
    /// true when the hook reported success. Failures become events; they never stop
    /// the sequence.
    pub(super) async fn run_hook(
        self: &Arc<Self>,
        stage: Stage,
        spec: &HookSpec,
        bound: Duration,
    ) -> bool {
        let plugin_name = spec.plugin_name();
        let report = |reason: String| {
            self.emit(ProcessEvent::HookFailed {
                stage: stage.as_str(),
                plugin: plugin_name.clone(),
                reason,
            });
        };
        let registry = self.lock().registry.clone();
        let plugin = match registry.lifecycle(spec, stage) {
            Ok(plugin) => plugin,
            Err(unresolved) => {
                report(unresolved.to_string());
                return false;
            }
        };
        let call = HookCall {
            stage,
            process: self.process_info(),
            deadline: Instant::now() + bound,
            options: spec.options(),
            events: self.supervision.events.clone(),
        };
        match timeout(bound + HOOK_GRACE, plugin.run(call)).await {
            Ok(Ok(())) => true,
            Ok(Err(HookError::Reported(_))) => false,
            Ok(Err(error)) => {
                report(error.to_string());
                false
            }
            Err(_) => {
                report(format!(
                    "did not finish within {} ms and was abandoned",
                    bound.as_millis()
                ));
                false
            }
        }
    }
}

//! Where Lua hooks run: one OS thread per config's Lua state, with its own
//! single-threaded tokio runtime.
//!
//! Why a thread of its own: Lua code that burns CPU (or loops inside a C callback,
//! where no hook can interrupt it until the deadline) would otherwise starve
//! whatever else shares its thread — the proxy above all. Here it can only delay
//! other Lua hooks of the same config, and only until its deadline.
//!
//! Why one thread per state: a Lua state runs one piece of code at a time (mlua
//! locks it for every resume), so more threads would only queue on that lock.
//! Concurrency comes from coroutines instead: every hook call is a Lua thread of
//! its own, and every `ctx` helper is an async function that yields while it
//! waits, so 50 replicas quieting at once interleave instead of queueing for the
//! whole length of a hook. Hooks that compute for long are paused every
//! [`TIME_SLICE`] (a yield from the instruction hook) so the others get a turn.
//!
//! Each call has its own deadline (the stage's bound). It is enforced twice: a
//! timer ends a call that is waiting, and the instruction hook raises an error in
//! a call that is running Lua past it (see [`Budget::run_on_thread`]).

use super::ctx::CallScope;
use super::runtime::LuaRuntime;
use super::sandbox::Budget;
use crate::plugins::HookError;
use futures_util::future::BoxFuture;
use mlua::{Function, HookTriggers, Lua, MultiValue, VmState};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

/// How long one hook call may run Lua code without a pause before the others of
/// the same config get a turn.
pub const TIME_SLICE: Duration = Duration::from_millis(10);

/// How many Lua instructions run between two checks of the deadline and the time
/// slice.
const CHECK_EVERY: u32 = 1000;

thread_local! {
    /// The call being polled on this thread: its Lua thread and when its current
    /// time slice ends. Only that Lua thread is paused by the instruction hook; a
    /// coroutine the script made itself must not be (its `coroutine.resume` would
    /// return early).
    static SLICE: Cell<Option<(usize, std::time::Instant)>> = const { Cell::new(None) };
}

/// Work for the engine thread: builds a future there (where the Lua state is used).
type Job = Box<dyn FnOnce(LuaRuntime) -> BoxFuture<'static, ()> + Send>;

/// Builds the arguments of one call, on the engine thread.
pub(crate) type Setup = Box<dyn FnOnce(&Lua) -> mlua::Result<MultiValue> + Send>;

/// Turns what the hook returned into the caller's answer, on the engine thread.
pub(crate) type Finish<T> = Box<dyn FnOnce(MultiValue) -> Result<T, HookError> + Send>;

/// The hook engine of one config's Lua state. Cheap to clone; the thread ends
/// once every clone is gone and the calls in flight have finished.
#[derive(Clone)]
pub struct LuaEngine {
    shared: Arc<Shared>,
}

struct Shared {
    runtime: LuaRuntime,
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for LuaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LuaEngine")
            .field("runtime", &self.shared.runtime)
            .finish()
    }
}

/// The engine could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot start the Lua hook engine: {0}")]
    Thread(#[from] std::io::Error),
    #[error("cannot prepare the Lua state for hooks: {0}")]
    Lua(String),
}

impl LuaEngine {
    /// Starts the engine thread for `runtime` and installs the instruction hook
    /// that enforces deadlines and time slices.
    pub fn start(runtime: &LuaRuntime) -> Result<LuaEngine, EngineError> {
        install_instruction_hook(runtime)
            .map_err(|error| EngineError::Lua(super::error_line(&error)))?;
        let executor = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("rollbridge-lua")
            .build()?;
        let (jobs, receiver) = mpsc::unbounded_channel();
        let served = runtime.clone();
        std::thread::Builder::new()
            .name("rollbridge-lua".to_string())
            .spawn(move || executor.block_on(serve(served, receiver)))?;
        Ok(LuaEngine {
            shared: Arc::new(Shared {
                runtime: runtime.clone(),
                jobs,
            }),
        })
    }

    pub fn runtime(&self) -> &LuaRuntime {
        &self.shared.runtime
    }

    /// Calls `function` on the engine thread with the arguments `setup` builds,
    /// bounded by `deadline`, and converts its results with `finish`.
    ///
    /// Dropping the returned future abandons the call: the engine stops it at its
    /// next pause and ends whatever its helpers started (commands, requests).
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        function: Function,
        scope: Arc<CallScope>,
        setup: Setup,
        finish: Finish<T>,
    ) -> Result<T, HookError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |runtime| {
            Box::pin(async move {
                let mut reply = reply;
                let run = run_call(&runtime, function, scope, setup, finish);
                tokio::select! {
                    outcome = run => {
                        let _ = reply.send(outcome);
                    }
                    // The caller gave up: drop the call (ending it) right away.
                    () = reply.closed() => {}
                }
            })
        });
        if self.shared.jobs.send(job).is_err() {
            return Err(HookError::Failed("the Lua hook engine has stopped".into()));
        }
        answer.await.unwrap_or_else(|_| {
            Err(HookError::Failed(
                "the Lua hook engine stopped while the hook was running".into(),
            ))
        })
    }
}

async fn serve(runtime: LuaRuntime, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let tracker = TaskTracker::new();
    while let Some(job) = jobs.recv().await {
        tracker.spawn(job(runtime.clone()));
    }
    // Every handle is gone; let the calls in flight finish before the thread ends.
    tracker.close();
    tracker.wait().await;
}

/// One hook call from start to finish, on the engine thread.
async fn run_call<T>(
    runtime: &LuaRuntime,
    function: Function,
    scope: Arc<CallScope>,
    setup: Setup,
    finish: Finish<T>,
) -> Result<T, HookError> {
    // Whatever the hook's helpers still run (a command, a request) ends with the
    // call, also when the caller gives up and this future is dropped.
    let _end = EndOnDrop(scope.clone());
    let deadline = scope.deadline;
    let bound_ms = scope.bound_ms;
    let lua = runtime.lua();
    let started = setup(lua).and_then(|args| {
        let thread = lua.create_thread(function)?;
        let top = thread.to_pointer() as usize;
        Ok((thread.into_async::<MultiValue>(args)?, top))
    });
    match started {
        Err(error) => Err(HookError::Failed(format!(
            "could not start the Lua hook: {}",
            super::error_line(&error)
        ))),
        Ok((thread, top)) => {
            let sliced = Sliced {
                inner: thread,
                top,
                deadline: deadline.into_std(),
            };
            tokio::select! {
                biased;
                outcome = sliced => match outcome {
                    Ok(values) => finish(values),
                    Err(Stopped::Deadline) => Err(HookError::TimedOut(bound_ms)),
                    Err(Stopped::Error(error)) => Err(HookError::Failed(describe_error(runtime, &error))),
                },
                () = tokio::time::sleep_until(deadline) => Err(HookError::TimedOut(bound_ms)),
            }
        }
    }
}

struct EndOnDrop(Arc<CallScope>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A Lua error as a `hook failed` reason.
fn describe_error(runtime: &LuaRuntime, error: &mlua::Error) -> String {
    if super::is_memory_error(error) {
        format!(
            "Lua ran out of memory (the limit for a config's Lua is {} MiB)",
            runtime.limits().memory_bytes / (1024 * 1024)
        )
    } else {
        super::error_line(error)
    }
}

enum Stopped {
    Deadline,
    Error(mlua::Error),
}

/// Polls a hook's Lua thread with its deadline and a fresh time slice.
struct Sliced {
    inner: mlua::thread::AsyncThread<MultiValue>,
    /// The address of the call's Lua thread, to recognise it in the hook.
    top: usize,
    deadline: std::time::Instant,
}

impl Future for Sliced {
    type Output = Result<MultiValue, Stopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let slice_end = std::time::Instant::now() + TIME_SLICE;
        let top = self.top;
        let deadline = self.deadline;
        let previous = SLICE.replace(Some((top, slice_end)));
        let (poll, tripped) =
            Budget::run_on_thread(deadline, || Pin::new(&mut self.inner).poll(cx));
        SLICE.set(previous);
        match poll {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(values)) => Poll::Ready(Ok(values)),
            Poll::Ready(Err(_)) if tripped => Poll::Ready(Err(Stopped::Deadline)),
            Poll::Ready(Err(error)) => Poll::Ready(Err(Stopped::Error(error))),
        }
    }
}

/// Replaces the sandbox's instruction hook with one that also pauses a hook call
/// whose time slice is over.
fn install_instruction_hook(runtime: &LuaRuntime) -> mlua::Result<()> {
    let budget = runtime.budget_handle();
    runtime.lua().set_global_hook(
        HookTriggers::new().every_nth_instruction(CHECK_EVERY),
        move |lua, _| {
            budget.check()?;
            Ok(slice_verdict(lua))
        },
    )
}

fn slice_verdict(lua: &Lua) -> VmState {
    let Some((top, slice_end)) = SLICE.get() else {
        return VmState::Continue;
    };
    let now = std::time::Instant::now();
    if now < slice_end {
        return VmState::Continue;
    }
    // Look again one slice later, whether or not this pause happens: the code may
    // be inside the script's own coroutine or a C function, where it cannot.
    SLICE.set(Some((top, now + TIME_SLICE)));
    if lua.current_thread().to_pointer() as usize == top {
        VmState::Yield
    } else {
        VmState::Continue
    }
}
